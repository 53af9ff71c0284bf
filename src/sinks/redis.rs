//! Redis sink: the latest value of every series in one hash, and each series' recent
//! history in a bounded list, written in pipelined round trips.
//!
//! Keys (`<p>` is `redis.key_prefix`, `pulse:` by default; `<series>` is the series as
//! Prometheus writes it, e.g. `DCGM_FI_DEV_GPU_UTIL{Hostname="h1",gpu="0"}`):
//! - `<p>latest`: hash, field `<series>`, value `{"t_ms":...,"value":...}`;
//! - `<p>history:<series>`: list of the same JSON, oldest first, at most
//!   `history_max_points`, expiring `history_ttl_s` after its last write.
//!
//! The sink never makes the window store wait for Redis: a batch is buffered and the
//! handler returns. A writer drains the buffer, one pipelined round trip of up to
//! `write_batch_samples` samples at a time. While Redis is unreachable the buffer holds up
//! to `buffer_max_samples`; past that the oldest batches are dropped and counted, never
//! silently. The sink is degraded (with the error) until a write succeeds again, then
//! catches up with what it held. Every sample received is either written, dropped (counted)
//! or still buffered.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use actix::prelude::*;
use redis::aio::ConnectionManager;

use crate::messages::samples::SampleBatch;
use crate::model::series::Sample;
use crate::redis::{lazy_connection, timed};
use crate::runtime::mailbox::MailboxGauge;
use crate::runtime::stats::{figure, ComponentState, ComponentStats, GetStats};

/// Batches that may wait before the window store waits.
pub const MAILBOX_CAPACITY: usize = 64;
/// First wait before retrying a failed write; doubled up to `RETRY_MAX`.
pub const RETRY_MIN: Duration = Duration::from_millis(200);
pub const RETRY_MAX: Duration = Duration::from_secs(5);

/// What the sink is configured with.
#[derive(Debug, Clone)]
pub struct RedisSinkSettings {
    pub url: String,
    pub key_prefix: String,
    pub history_max_points: usize,
    pub history_ttl_s: u64,
    pub buffer_max_samples: usize,
    pub write_batch_samples: usize,
}

pub struct RedisSink {
    settings: RedisSinkSettings,
    conn: ConnectionManager,
    /// Samples waiting to be written, oldest first.
    buffer: VecDeque<Sample>,
    /// A round trip is in flight (its samples are out of `buffer`).
    writing: usize,
    retry_delay: Duration,
    /// After a failure, no write before this (the scheduled retry makes it).
    retry_at: Option<std::time::Instant>,
    gauge: MailboxGauge,
    received: u64,
    written: u64,
    dropped: u64,
    round_trips: u64,
    last_error: Option<String>,
}

impl RedisSink {
    pub fn new(settings: RedisSinkSettings, gauge: MailboxGauge) -> redis::RedisResult<Self> {
        let conn = lazy_connection(&settings.url)?;
        Ok(RedisSink {
            settings,
            conn,
            buffer: VecDeque::new(),
            writing: 0,
            retry_delay: RETRY_MIN,
            retry_at: None,
            gauge,
            received: 0,
            written: 0,
            dropped: 0,
            round_trips: 0,
            last_error: None,
        })
    }

    /// Drops the oldest buffered samples past the bound.
    fn enforce_bound(&mut self) {
        let max = self.settings.buffer_max_samples;
        while self.buffer.len() + self.writing > max && !self.buffer.is_empty() {
            self.buffer.pop_front();
            self.dropped += 1;
        }
    }

    /// Starts a round trip unless one is in flight or nothing waits.
    fn write_next(&mut self, ctx: &mut Context<Self>) {
        if self.writing > 0 || self.buffer.is_empty() {
            return;
        }
        if self
            .retry_at
            .is_some_and(|at| std::time::Instant::now() < at)
        {
            return;
        }
        let n = self.buffer.len().min(self.settings.write_batch_samples);
        let samples: Vec<Sample> = self.buffer.drain(..n).collect();
        self.writing = samples.len();
        let pipe = pipeline(&self.settings, &samples);
        let mut conn = self.conn.clone();
        let write = async move { timed(pipe.query_async::<()>(&mut conn)).await };
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            act.writing = 0;
            act.round_trips += 1;
            match result {
                Ok(()) => {
                    act.written += samples.len() as u64;
                    if act.last_error.take().is_some() {
                        tracing::info!("redis sink: {} reachable again", act.settings.url);
                    }
                    act.retry_delay = RETRY_MIN;
                    act.retry_at = None;
                    act.write_next(ctx);
                }
                Err(e) => {
                    if act.last_error.is_none() {
                        tracing::warn!("redis sink: write to {} failed: {e}", act.settings.url);
                    }
                    act.last_error = Some(e);
                    // Back in front, in order; the bound then drops the oldest.
                    for s in samples.into_iter().rev() {
                        act.buffer.push_front(s);
                    }
                    act.enforce_bound();
                    let delay = act.retry_delay;
                    act.retry_delay = (delay * 2).min(RETRY_MAX);
                    act.retry_at = Some(std::time::Instant::now() + delay);
                    ctx.run_later(delay, |act, ctx| act.write_next(ctx));
                }
            }
        }));
    }
}

/// One round trip: the latest values, the histories, their trimming and expiry. In one
/// transaction (MULTI/EXEC), so that a reader never sees a history longer than
/// `history_max_points` between a push and its trim.
fn pipeline(settings: &RedisSinkSettings, samples: &[Sample]) -> redis::Pipeline {
    let latest = format!("{}latest", settings.key_prefix);
    let mut pipe = redis::pipe();
    pipe.atomic();
    let mut touched = std::collections::HashSet::new();
    for s in samples {
        let series = s.series.to_string();
        let value = point_json(s.timestamp_ms, s.value);
        pipe.hset(&latest, &series, &value).ignore();
        let history = format!("{}history:{series}", settings.key_prefix);
        pipe.rpush(&history, &value).ignore();
        touched.insert(history);
    }
    let keep = settings.history_max_points as isize;
    for history in touched {
        pipe.ltrim(&history, -keep, -1).ignore();
        pipe.expire(&history, settings.history_ttl_s as i64)
            .ignore();
    }
    pipe
}

/// `{"t_ms":...,"value":...}`; a value JSON cannot hold (NaN, infinities, used as staleness
/// markers) is written as a string, as Prometheus writes it.
fn point_json(t_ms: i64, value: f64) -> String {
    if value.is_finite() {
        serde_json::json!({"t_ms": t_ms, "value": value}).to_string()
    } else {
        let text = if value.is_nan() {
            "NaN".to_string()
        } else if value > 0.0 {
            "+Inf".to_string()
        } else {
            "-Inf".to_string()
        };
        serde_json::json!({"t_ms": t_ms, "value": text}).to_string()
    }
}

/// Reads back the history of every series whose `Hostname` is one of `hosts`, oldest point
/// first per series: how `pulse aggregate` rebuilds the windows of hosts whose partitions it
/// has just taken over. Entries that do not parse are skipped.
pub async fn read_history(
    conn: &ConnectionManager,
    prefix: &str,
    hosts: &std::collections::HashSet<String>,
) -> Result<Vec<Sample>, String> {
    let mut conn = conn.clone();
    let keys: Vec<String> = timed(
        redis::cmd("HKEYS")
            .arg(format!("{prefix}latest"))
            .query_async(&mut conn),
    )
    .await?;
    let series: Vec<_> = keys
        .iter()
        .filter_map(|k| crate::model::series::SeriesKey::parse(k))
        .filter(|s| {
            s.label(crate::model::catalog::HOSTNAME)
                .is_some_and(|h| hosts.contains(h))
        })
        .collect();
    let mut out = Vec::new();
    for chunk in series.chunks(1_000) {
        let mut pipe = redis::pipe();
        for s in chunk {
            pipe.lrange(format!("{prefix}history:{s}"), 0, -1);
        }
        let lists: Vec<Vec<String>> = timed(pipe.query_async(&mut conn)).await?;
        for (s, points) in chunk.iter().zip(lists) {
            out.extend(points.iter().filter_map(|p| {
                let (t_ms, value) = parse_point(p)?;
                Some(Sample::new(s.clone(), t_ms, value))
            }));
        }
    }
    Ok(out)
}

/// Reads what [`point_json`] writes.
fn parse_point(text: &str) -> Option<(i64, f64)> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Value {
        Number(f64),
        Text(String),
    }
    #[derive(serde::Deserialize)]
    struct Point {
        t_ms: i64,
        value: Value,
    }
    let p: Point = serde_json::from_str(text).ok()?;
    let value = match p.value {
        Value::Number(v) => v,
        Value::Text(t) => match t.as_str() {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            _ => return None,
        },
    };
    Some((p.t_ms, value))
}

impl Actor for RedisSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

impl Handler<SampleBatch> for RedisSink {
    type Result = ();

    fn handle(&mut self, batch: SampleBatch, ctx: &mut Self::Context) {
        let span = batch.span("sink.redis");
        self.received += batch.len() as u64;
        let dropped_before = self.dropped;
        self.buffer.extend(batch.samples.iter().cloned());
        self.enforce_bound();
        if let Some(s) = span {
            s.set("pulse.buffered", (self.buffer.len() + self.writing) as i64);
            let dropped = self.dropped - dropped_before;
            if dropped > 0 {
                s.error(format!("{dropped} samples dropped: the buffer is full"));
            }
        }
        self.write_next(ctx);
    }
}

/// Writes what is buffered, for at most the given time; answers how many samples are still
/// buffered (lost if the process now exits). Sent once the API has stopped, at shutdown.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct Drain(pub Duration);

impl Handler<Drain> for RedisSink {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, Drain(within): Drain, ctx: &mut Self::Context) -> Self::Result {
        self.retry_at = None;
        self.write_next(ctx);
        self.drain_until(tokio::time::Instant::now() + within, ctx)
    }
}

impl RedisSink {
    /// Starts round trips until the buffer is empty, the deadline passes or a write fails,
    /// looking again every 20 ms; answers what is left.
    fn drain_until(
        &mut self,
        deadline: tokio::time::Instant,
        ctx: &mut Context<Self>,
    ) -> Pin<Box<dyn ActorFuture<Self, Output = usize>>> {
        let left = self.buffer.len() + self.writing;
        // A failure counts once its round trip is over (an error from before the drain
        // does not stop it while a new attempt is in flight).
        let failed = self.last_error.is_some() && self.writing == 0;
        if left == 0 || tokio::time::Instant::now() >= deadline || failed {
            return Box::pin(fut::ready(left));
        }
        self.write_next(ctx);
        Box::pin(
            tokio::time::sleep(Duration::from_millis(20))
                .into_actor(self)
                .then(move |(), act, ctx| act.drain_until(deadline, ctx)),
        )
    }
}

impl Handler<GetStats> for RedisSink {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let mut st = ComponentStats::new("redis_sink", "sink");
        st.received_total = self.received;
        st.emitted_total = self.written;
        st.dropped_total = self.dropped;
        st.mailbox_backlog = self.gauge.get();
        let buffered = self.buffer.len() + self.writing;
        st.set(figure::REDIS_BUFFERED_SAMPLES, buffered as f64);
        st.set(figure::REDIS_ROUND_TRIPS_TOTAL, self.round_trips as f64);
        st.reason = Some(format!("writing to {}", self.settings.url));
        if let Some(e) = &self.last_error {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!(
                "redis at {} unreachable: {e}; {buffered} samples buffered, {} dropped so far",
                self.settings.url, self.dropped
            ));
        }
        MessageResult(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_json_and_non_finite_values_are_strings() {
        assert_eq!(point_json(5, 1.5), r#"{"t_ms":5,"value":1.5}"#);
        assert_eq!(point_json(5, f64::NAN), r#"{"t_ms":5,"value":"NaN"}"#);
        assert_eq!(
            point_json(5, f64::NEG_INFINITY),
            r#"{"t_ms":5,"value":"-Inf"}"#
        );
    }

    #[test]
    fn points_read_back() {
        for v in [1.5, f64::INFINITY, f64::NEG_INFINITY, -0.25] {
            assert_eq!(parse_point(&point_json(7, v)), Some((7, v)));
        }
        let (t, nan) = parse_point(&point_json(7, f64::NAN)).unwrap();
        assert!(t == 7 && nan.is_nan());
        assert_eq!(parse_point(r#"{"t_ms":1,"value":"x"}"#), None);
        assert_eq!(parse_point("nope"), None);
    }
}
