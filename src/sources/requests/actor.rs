//! Request sampler: takes validated request batches from `POST /api/v1/requests` (awaited
//! sends from the handler: the client hears 202 only once its batch is counted) and Pulse's
//! own handler records (a buffer drained each tick). Each interval it sends the counters
//! and latency histograms to the window store; it answers the request summary.

use std::time::Duration;

use actix::prelude::*;

use crate::messages::samples::SampleBatch;
use crate::runtime::clock::Clock;
use crate::runtime::mailbox::{Mailbox, MailboxGauge};
use crate::runtime::stats::{figure, ComponentState, ComponentStats, GetStats};
use crate::sources::requests::aggregate::{
    RequestAggregator, RequestRecord, RequestSummary, SelfMetricsBuffer,
};
use crate::sources::sampling::{emit_and_reschedule, Sampler, SamplerCounters, Tick};

/// Batches that may wait in the mailbox before the ingest handler waits.
pub const MAILBOX_CAPACITY: usize = 1024;

/// A validated batch of request records.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct IngestRequests {
    pub records: Vec<RequestRecord>,
}

/// Asks for rate, error rate and percentiles over the trailing window.
#[derive(Debug, Message)]
#[rtype(result = "RequestSummary")]
pub struct GetRequestSummary;

/// The request sampler.
pub struct RequestSampler {
    aggregator: RequestAggregator,
    /// Pulse's own handler records.
    own: SelfMetricsBuffer,
    /// Own records dropped because the buffer was full (last seen total).
    own_dropped: u64,
    interval: Duration,
    downstream: Mailbox<SampleBatch>,
    clock: Clock,
    gauge: MailboxGauge,
    counters: SamplerCounters,
    batches: u64,
    /// When the cardinality warning was last logged.
    last_fold_warning_ms: i64,
    telemetry: crate::telemetry::Telemetry,
}

impl RequestSampler {
    pub fn new(
        aggregator: RequestAggregator,
        own: SelfMetricsBuffer,
        interval: Duration,
        downstream: Mailbox<SampleBatch>,
        clock: Clock,
        gauge: MailboxGauge,
    ) -> Self {
        RequestSampler {
            aggregator,
            own,
            own_dropped: 0,
            last_fold_warning_ms: i64::MIN / 2,
            interval,
            downstream,
            clock,
            gauge,
            counters: SamplerCounters::default(),
            batches: 0,
            telemetry: Default::default(),
        }
    }

    /// Traces each batch through `telemetry` (off by default).
    pub fn with_telemetry(mut self, telemetry: crate::telemetry::Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }
}

impl Actor for RequestSampler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.notify_later(Tick, self.interval);
    }
}

impl Sampler for RequestSampler {
    fn counters(&mut self) -> &mut SamplerCounters {
        &mut self.counters
    }
}

impl Handler<Tick> for RequestSampler {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Self::Context) {
        let now = self.clock.now_ms();
        let (own, dropped) = self.own.drain();
        self.own_dropped = dropped;
        self.aggregator.record(now, &own);
        let batch =
            SampleBatch::new(self.aggregator.samples(now)).traced(&self.telemetry, "requests");
        let downstream = self.downstream.clone();
        emit_and_reschedule(self, ctx, &downstream, batch, self.interval);
    }
}

impl Handler<IngestRequests> for RequestSampler {
    type Result = usize;

    fn handle(&mut self, msg: IngestRequests, _: &mut Self::Context) -> usize {
        self.batches += 1;
        let now = self.clock.now_ms();
        self.aggregator.record(now, &msg.records);
        // Once a minute at most: which service is exploding its routes.
        if let Some((service, at)) = &self.aggregator.last_folded {
            if *at == now && now - self.last_fold_warning_ms >= FOLD_WARNING_EVERY_MS {
                self.last_fold_warning_ms = now;
                tracing::warn!(
                    service = %service,
                    folded_total = self.aggregator.folded_total,
                    "request records: too many distinct routes (ids in the route?); new routes are counted under route=\"__other__\" (sources.requests.max_routes_per_service, max_series)"
                );
            }
        }
        msg.records.len()
    }
}

/// The cardinality warning is logged at most this often.
const FOLD_WARNING_EVERY_MS: i64 = 60_000;
/// The status names a service folding routes for this long after its last fold.
const FOLD_REPORT_MS: i64 = 300_000;

impl Handler<GetRequestSummary> for RequestSampler {
    type Result = MessageResult<GetRequestSummary>;

    fn handle(&mut self, _: GetRequestSummary, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.aggregator.summary(self.clock.now_ms()))
    }
}

impl Handler<GetStats> for RequestSampler {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let mut st = ComponentStats::new("request_sampler", "source");
        self.counters.fill(&mut st);
        st.received_total = self.aggregator.recorded_total;
        st.dropped_total += self.own_dropped;
        st.mailbox_backlog = self.gauge.get();
        st.set(figure::BATCHES_TOTAL, self.batches as f64);
        st.set(figure::ROUTES, self.aggregator.route_count() as f64);
        st.set(figure::FOLDED_TOTAL, self.aggregator.folded_total as f64);
        // A client exploding its routes is named for five minutes after its last fold.
        if let Some((service, at)) = &self.aggregator.last_folded {
            if self.clock.now_ms() - at < FOLD_REPORT_MS {
                st.state = ComponentState::Degraded;
                st.reason = Some(format!(
                    "service {service:?} sends more routes than sources.requests allows: new ones are counted under route \"__other__\""
                ));
            }
        }
        st.set(
            figure::EVICTED_EARLY_TOTAL,
            self.aggregator.evicted_early_total as f64,
        );
        MessageResult(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::Recorder;
    use crate::sources::requests::aggregate::AggregatorLimits;

    #[actix::test]
    async fn ingested_batches_become_counters_on_the_next_tick() {
        tokio::time::pause();
        let rec = Recorder::start();
        let clock = Clock::tokio_anchored(1_000_000);
        let own = SelfMetricsBuffer::new(10);
        let limits = AggregatorLimits {
            window_ms: 60_000,
            max_recent: 100,
            max_series: 100,
            max_routes_per_service: 100,
        };
        let sampler = RequestSampler::new(
            RequestAggregator::new(limits, clock.now_ms()),
            own.clone(),
            Duration::from_secs(1),
            rec.mailbox(),
            clock,
            MailboxGauge::default(),
        )
        .start();
        let records: Vec<RequestRecord> = serde_json::from_str(
            r#"[{"route":"/gen","status":200,"latency_ms":20},{"route":"/gen","status":500,"latency_ms":40}]"#,
        )
        .unwrap();
        assert_eq!(sampler.send(IngestRequests { records }).await.unwrap(), 2);
        own.push(
            serde_json::from_str(
                r#"{"route":"/metrics","status":200,"latency_ms":1,"service":"pulse"}"#,
            )
            .unwrap(),
        );
        assert!(
            rec.samples().await.is_empty(),
            "nothing before the first tick"
        );

        tokio::time::sleep(Duration::from_millis(1001)).await;
        tokio::task::yield_now().await;
        let samples = rec.samples().await;
        let total = |status: &str, service: &str| {
            samples
                .iter()
                .find(|s| {
                    s.series.name() == "http_requests_total"
                        && s.series.label("status") == Some(status)
                        && s.series.label("service") == Some(service)
                })
                .map(|s| s.value)
        };
        assert_eq!(total("200", "unknown"), Some(1.0));
        assert_eq!(total("500", "unknown"), Some(1.0));
        assert_eq!(total("200", "pulse"), Some(1.0));
        let summary = sampler.send(GetRequestSummary).await.unwrap();
        assert_eq!(summary.count, 2);
        assert_eq!(summary.error_rate, Some(0.5));
    }
}
