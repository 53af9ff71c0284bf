//! Anomaly detector actor: receives every stored batch from the window store
//! (`ProcessBatch`), scores the watched series one sample at a time (see
//! `engine.rs`), and answers with the score samples (`pulse_anomaly_score`), which the
//! store keeps and passes to the sinks, so rules and `/metrics` see them. It keeps the recent
//! anomalies for `GET /api/phase4/anomalies` and logs each one it opens.

use actix::dev::SendError;
use actix::prelude::*;

use super::messages::AnomalyOpened;
use crate::messages::page::Page;
use crate::messages::samples::ProcessBatch;
use crate::model::series::Sample;
use crate::processors::anomaly::messages::{GetAnomaly, ListAnomalies, ListWorkloadEvents};
use crate::processors::anomaly::workload::WorkloadEvent;
use crate::processors::anomaly::{Anomaly, AnomalyEngine, EngineSettings};
use crate::runtime::mailbox::MailboxGauge;
use crate::runtime::stats::{figure, ComponentState, ComponentStats, GetStats};

/// Batches that may wait in the detector's mailbox before the window store waits.
pub const MAILBOX_CAPACITY: usize = 64;

/// Owns the anomaly engine.
pub struct AnomalyDetector {
    engine: AnomalyEngine,
    /// This actor's backlog, shared with the window store that sends to it.
    gauge: MailboxGauge,
    /// Samples received (watched or not).
    received: u64,
    /// Where opened anomalies are also written, when Redis is configured.
    redis: Option<AnomalyList>,
    redis_failures: u64,
    redis_error: Option<String>,
    /// Where opened anomalies go as events (the Kafka sink), and how many could not.
    events: Vec<Recipient<AnomalyOpened>>,
    events_dropped: u64,
}

/// `<prefix>anomalies` in Redis: a list of anomalies as they were opened (the same JSON as
/// `GET /api/phase4/anomalies/{id}` at that moment), oldest first, at most `max`.
pub struct AnomalyList {
    pub conn: redis::aio::ConnectionManager,
    pub key: String,
    pub max: usize,
}

impl AnomalyDetector {
    pub fn new(settings: EngineSettings, gauge: MailboxGauge) -> Self {
        AnomalyDetector {
            engine: AnomalyEngine::new(settings),
            gauge,
            received: 0,
            redis: None,
            redis_failures: 0,
            redis_error: None,
            events: Vec::new(),
            events_dropped: 0,
        }
    }

    /// Also sends each opened anomaly to `recipient` (the Kafka sink).
    pub fn with_events(mut self, recipient: Recipient<AnomalyOpened>) -> Self {
        self.events.push(recipient);
        self
    }

    /// Also writes each opened anomaly to Redis.
    pub fn with_redis(mut self, list: AnomalyList) -> Self {
        self.redis = Some(list);
        self
    }

    /// Appends anomalies to the Redis list, without making the stream wait.
    fn write_to_redis(&mut self, opened: Vec<String>, ctx: &mut Context<Self>) {
        let Some(list) = &self.redis else {
            return;
        };
        if opened.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for json in &opened {
            pipe.rpush(&list.key, json).ignore();
        }
        pipe.ltrim(&list.key, -(list.max as isize), -1).ignore();
        let mut conn = list.conn.clone();
        let n = opened.len() as u64;
        let write = async move { pipe.query_async::<()>(&mut conn).await };
        ctx.spawn(write.into_actor(self).map(move |r, act, _| match r {
            Ok(()) => act.redis_error = None,
            Err(e) => {
                act.redis_failures += n;
                act.redis_error = Some(e.to_string());
            }
        }));
    }
}

impl Actor for AnomalyDetector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

impl Handler<ProcessBatch> for AnomalyDetector {
    type Result = MessageResult<ProcessBatch>;

    fn handle(
        &mut self,
        ProcessBatch(batch): ProcessBatch,
        ctx: &mut Self::Context,
    ) -> Self::Result {
        let span = batch.span("processor.anomaly_detector");
        self.received += batch.len() as u64;
        let (scores, opened): (Vec<Sample>, Vec<u64>) = self.engine.process(&batch.samples);
        if let Some(s) = &span {
            s.set("pulse.scores", scores.len() as i64);
            s.set("pulse.anomalies_opened", opened.len() as i64);
        }
        let mut for_redis = Vec::new();
        for id in opened {
            if let Some(a) = self.engine.get(id) {
                if self.redis.is_some() {
                    if let Ok(json) = serde_json::to_string(a) {
                        for_redis.push(json);
                    }
                }
                for r in &self.events {
                    // Past the sink's mailbox bound it is queued anyway (anomalies are
                    // few); only a stopped sink drops it (counted).
                    match r.try_send(AnomalyOpened(a.clone())) {
                        Ok(()) => {}
                        Err(SendError::Full(m)) => r.do_send(m),
                        Err(SendError::Closed(_)) => self.events_dropped += 1,
                    }
                }
                if let Some(s) = &span {
                    s.event(
                        "anomaly opened",
                        vec![
                            opentelemetry::KeyValue::new("anomaly.id", id as i64),
                            opentelemetry::KeyValue::new("series", a.series.to_string()),
                            opentelemetry::KeyValue::new("reason", a.detail.clone()),
                        ],
                    );
                }
                tracing::info!(
                    id,
                    metric = a.series.name(),
                    score = a.score,
                    value = a.value,
                    "anomaly {id}: {}: {} (expected {:.3}..{:.3})",
                    a.series,
                    a.detail,
                    a.expected_low,
                    a.expected_high
                );
            }
        }
        self.write_to_redis(for_redis, ctx);
        MessageResult(scores)
    }
}

impl Handler<ListAnomalies> for AnomalyDetector {
    type Result = MessageResult<ListAnomalies>;

    fn handle(
        &mut self,
        ListAnomalies(filter): ListAnomalies,
        _: &mut Self::Context,
    ) -> Self::Result {
        MessageResult(self.engine.page(&filter))
    }
}

impl Handler<ListWorkloadEvents> for AnomalyDetector {
    type Result = MessageResult<ListWorkloadEvents>;

    fn handle(&mut self, q: ListWorkloadEvents, _: &mut Self::Context) -> Self::Result {
        let kept = self
            .engine
            .workload_events()
            .filter(|e| q.host.as_ref().is_none_or(|h| *h == e.host))
            .filter(|e| q.metric.as_ref().is_none_or(|m| *m == e.metric))
            .filter(|e| q.since_ms.is_none_or(|s| e.last_ms >= s));
        MessageResult(Page::of(kept, q.offset, q.limit).map(WorkloadEvent::clone))
    }
}

impl Handler<GetAnomaly> for AnomalyDetector {
    type Result = Option<Anomaly>;

    fn handle(&mut self, GetAnomaly(id): GetAnomaly, _: &mut Self::Context) -> Self::Result {
        self.engine.get(id).cloned()
    }
}

impl Handler<GetStats> for AnomalyDetector {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let counts = self.engine.counts();
        let mut st = ComponentStats::new("anomaly_detector", "processor");
        st.received_total = self.received;
        st.emitted_total = counts.scored;
        st.dropped_total = counts.refused;
        st.mailbox_backlog = self.gauge.get();
        let watched = self.engine.watched_series();
        st.set(figure::ANOMALY_SERIES_WATCHED, watched as f64);
        st.set(
            figure::ANOMALY_DETECTOR_BYTES,
            self.engine.detector_bytes() as f64,
        );
        st.set(figure::ANOMALIES_OPENED_TOTAL, counts.opened as f64);
        st.set(figure::ANOMALY_FIRINGS_MERGED_TOTAL, counts.merged as f64);
        st.set(figure::ANOMALY_SAMPLES_SKIPPED_TOTAL, counts.skipped as f64);
        st.set(figure::ANOMALY_GAPS_TOTAL, counts.gaps as f64);
        st.set(figure::ANOMALY_SERIES_RESETS_TOTAL, counts.resets as f64);
        st.set(figure::ANOMALY_SERIES_EVICTED_TOTAL, counts.evicted as f64);
        st.set(
            figure::ANOMALY_WORKLOAD_CHANGES_TOTAL,
            counts.workload_changes as f64,
        );
        st.set(
            figure::ANOMALY_WORKLOAD_FIRINGS_TOTAL,
            counts.workload_firings as f64,
        );
        st.set(
            figure::ANOMALY_PEER_DIVERGENCES_TOTAL,
            counts.peer_divergences as f64,
        );
        st.set(figure::ANOMALY_SLIGHT_FIRINGS_TOTAL, counts.slight as f64);
        let settings = self.engine.settings();
        st.reason = Some(format!(
            "{watched} series watched, threshold {}",
            settings.threshold
        ));
        if counts.refused > 0 {
            st.reason = Some(format!(
                "{watched} series watched; samples of further series refused: max_series {} reached",
                settings.max_series
            ));
        }
        st.dropped_total += self.events_dropped;
        if self.redis.is_some() {
            st.set(
                figure::ANOMALY_REDIS_WRITE_FAILURES_TOTAL,
                self.redis_failures as f64,
            );
        }
        if let Some(e) = &self.redis_error {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!(
                "anomalies cannot be written to Redis ({} lost so far): {e}",
                self.redis_failures
            ));
        }
        MessageResult(st)
    }
}
