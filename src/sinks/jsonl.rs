//! JSON-lines sink: appends every sample it receives to a file as one JSON object per
//! line (`{"metric","labels","timestamp_ms","value"}`), flushed on an interval. A write
//! error marks the sink degraded and counts the samples it could not write.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;

use crate::messages::samples::SampleBatch;
use crate::runtime::mailbox::MailboxGauge;
use crate::runtime::stats::{ComponentState, ComponentStats, GetStats};

/// Batches that may wait before the window store waits.
pub const MAILBOX_CAPACITY: usize = 64;

/// Appends samples to a file.
pub struct JsonlSink {
    path: PathBuf,
    writer: BufWriter<File>,
    flush_interval: Duration,
    gauge: MailboxGauge,
    received: u64,
    written: u64,
    failed: u64,
    last_error: Option<String>,
}

impl JsonlSink {
    /// Opens (creates) the file for appending.
    pub fn open(
        path: PathBuf,
        flush_interval: Duration,
        gauge: MailboxGauge,
    ) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(JsonlSink {
            path,
            writer: BufWriter::new(file),
            flush_interval,
            gauge,
            received: 0,
            written: 0,
            failed: 0,
            last_error: None,
        })
    }

    /// The file this sink appends to.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn flush(&mut self) {
        if let Err(e) = self.writer.flush() {
            self.last_error = Some(e.to_string());
        }
    }
}

impl Actor for JsonlSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.run_interval(self.flush_interval, |act, _| act.flush());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.flush();
    }
}

impl Handler<SampleBatch> for JsonlSink {
    type Result = ();

    fn handle(&mut self, batch: SampleBatch, _: &mut Self::Context) {
        let span = batch.span("sink.jsonl");
        let failed_before = self.failed;
        self.received += batch.len() as u64;
        for s in batch.samples.iter() {
            let res = serde_json::to_writer(&mut self.writer, s)
                .map_err(std::io::Error::from)
                .and_then(|_| self.writer.write_all(b"\n"));
            match res {
                Ok(()) => self.written += 1,
                Err(e) => {
                    self.failed += 1;
                    self.last_error = Some(e.to_string());
                }
            }
        }
        if let Some(span) = span {
            span.set("pulse.sink.path", self.path.display().to_string());
            let failed = self.failed - failed_before;
            span.set("pulse.failed", failed as i64);
            if failed > 0 {
                span.error(format!(
                    "{failed} samples not written: {}",
                    self.last_error.as_deref().unwrap_or("unknown error")
                ));
            }
        }
    }
}

impl Handler<GetStats> for JsonlSink {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let mut st = ComponentStats::new(format!("jsonl_sink:{}", self.path.display()), "sink");
        st.received_total = self.received;
        st.emitted_total = self.written;
        st.dropped_total = self.failed;
        st.mailbox_backlog = self.gauge.get();
        if let Some(e) = &self.last_error {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!("write to {} failed: {e}", self.path.display()));
        }
        MessageResult(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::series::{Sample, SeriesKey};

    #[actix::test]
    async fn writes_one_json_line_per_sample_flushed_on_the_interval() {
        tokio::time::pause();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let sink = JsonlSink::open(
            path.clone(),
            Duration::from_secs(1),
            MailboxGauge::default(),
        )
        .unwrap()
        .start();
        let s = SeriesKey::shared("m", [("gpu", "0")]);
        sink.send(SampleBatch::new(vec![
            Sample::new(s.clone(), 1, 1.5),
            Sample::new(s, 2, 2.5),
        ]))
        .await
        .unwrap();
        let stats = sink.send(GetStats).await.unwrap();
        assert_eq!((stats.received_total, stats.emitted_total), (2, 2));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sink.send(GetStats).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["value"], 2.5);
        assert_eq!(lines[0]["labels"]["gpu"], "0");
    }
}
