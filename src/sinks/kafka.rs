//! Kafka sink: JSON records on five topics (`<p>` is `kafka.topic_prefix`, `pulse.`):
//!
//! | topic | key | value |
//! |---|---|---|
//! | `<p>samples` | the sample's `Hostname` label (this host's name without one) | `{"metric","labels","timestamp_ms","value"}` |
//! | `<p>predictions` | the series | the same, for `pulse_forecast` and `pulse_exhaustion_seconds` |
//! | `<p>alerts` | the alert id (a fingerprint of its labels) | `{"kind","at_ms","alert":{...}}` |
//! | `<p>anomalies` | the anomaly's series | the anomaly as `GET /api/phase4/anomalies/{id}` shows it when opened |
//! | `<p>actions` | the action record's id | the record as `GET /api/phase4/actions/{id}` shows it, again each time it changes |
//!
//! Samples are keyed by host so that all of a host's series land on one partition, in
//! order: `pulse aggregate` instances split the load by partition, and each sees whole
//! hosts. The sink of a `pulse aggregate` instance leaves `<p>samples` alone (it reads it).
//!
//! The producer is idempotent with `acks=all`, so a record is written once and in order per
//! partition, and records never time out: while the brokers are away they wait in the
//! producer's queue (`kafka.buffer_max_records`). A record that finds the queue full is
//! dropped and counted (the newest goes: librdkafka owns the queue and cannot give the
//! oldest back). Every delivery report is counted, so `received = delivered + dropped +
//! failed + in flight`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::actions::messages::ActionTaken;
use crate::messages::samples::SampleBatch;
use crate::model::catalog as m;
use crate::processors::anomaly::messages::AnomalyOpened;
use crate::rules::alerting::AlertEvent;
use crate::runtime::mailbox::MailboxGauge;
use crate::runtime::stats::{figure, ComponentState, ComponentStats, GetStats};

/// Batches that may wait before the window store waits.
pub const MAILBOX_CAPACITY: usize = 64;

/// What the sink is configured with.
#[derive(Debug, Clone)]
pub struct KafkaSinkSettings {
    pub brokers: String,
    pub topic_prefix: String,
    pub create_topics: bool,
    pub partitions: i32,
    pub replication_factor: i32,
    pub buffer_max_records: usize,
    /// Write stream samples to `<p>samples` (off in `pulse aggregate`, which reads them).
    pub samples_topic: bool,
    /// The key of samples without a `Hostname` label: this host's name.
    pub fallback_key: String,
}

/// Waits (up to the duration) until every record handed to the producer so far is
/// delivered; answers why not otherwise. `pulse aggregate` commits offsets after this.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), String>")]
pub struct Flush(pub Duration);

/// Delivery reports and client errors, counted on librdkafka's thread.
#[derive(Default)]
pub struct Reports {
    delivered: AtomicU64,
    failed: AtomicU64,
    /// The last delivery or broker error; cleared by the next delivery.
    last_error: Mutex<Option<String>>,
}

/// The producer's context: the shared counters.
#[derive(Clone, Default)]
pub struct Counting(Arc<Reports>);

impl ClientContext for Counting {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!("kafka: {error}: {reason}");
        *self.0.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
    }
}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
                *self.0.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                *self.0.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
        }
    }
}

pub struct KafkaSink {
    settings: KafkaSinkSettings,
    producer: Arc<ThreadedProducer<Counting>>,
    reports: Arc<Reports>,
    gauge: MailboxGauge,
    /// Records handed to the producer, and those refused because its queue was full.
    sent: u64,
    queue_full: u64,
    /// Records the producer refused for another reason (e.g. larger than the broker takes).
    refused: u64,
    topics_note: Option<String>,
}

impl KafkaSink {
    /// Creates the producer (it connects in the background: Pulse starts while the brokers
    /// are away, and says so).
    pub fn new(settings: KafkaSinkSettings, gauge: MailboxGauge) -> Result<Self, String> {
        let reports = Arc::new(Reports::default());
        let producer: ThreadedProducer<Counting> = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Never give a record up while the brokers are away; the queue bounds it.
            .set("message.timeout.ms", "0")
            .set(
                "queue.buffering.max.messages",
                settings.buffer_max_records.min(10_000_000).to_string(),
            )
            .set("queue.buffering.max.kbytes", "2097151")
            .set("linger.ms", "20")
            .create_with_context(Counting(reports.clone()))
            .map_err(|e| format!("kafka producer for {}: {e}", settings.brokers))?;
        Ok(KafkaSink {
            settings,
            producer: Arc::new(producer),
            reports,
            gauge,
            sent: 0,
            queue_full: 0,
            refused: 0,
            topics_note: None,
        })
    }

    fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.settings.topic_prefix)
    }

    /// Hands one record to the producer; a full queue drops it (counted).
    fn produce(&mut self, topic: &str, key: &str, value: &[u8]) {
        let record = BaseRecord::to(topic).key(key).payload(value);
        match self.producer.send(record) {
            Ok(()) => self.sent += 1,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                self.queue_full += 1;
            }
            Err((e, _)) => {
                self.refused += 1;
                *self
                    .reports
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
        }
    }

    fn create_topics(&self, ctx: &mut Context<Self>) {
        let names: Vec<String> = ["samples", "alerts", "anomalies", "predictions", "actions"]
            .iter()
            .map(|t| self.topic(t))
            .collect();
        let (brokers, partitions, replication) = (
            self.settings.brokers.clone(),
            self.settings.partitions,
            self.settings.replication_factor,
        );
        let create = async move {
            let admin: AdminClient<_> = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .create()
                .map_err(|e| e.to_string())?;
            let topics: Vec<NewTopic> = names
                .iter()
                .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(replication)))
                .collect();
            let opts = AdminOptions::new()
                .operation_timeout(Some(Duration::from_secs(10)))
                .request_timeout(Some(Duration::from_secs(10)));
            let results = tokio::time::timeout(
                Duration::from_secs(15),
                admin.create_topics(topics.iter(), &opts),
            )
            .await
            .map_err(|_| "the brokers did not answer within 15 s".to_string())?
            .map_err(|e| e.to_string())?;
            let mut created = Vec::new();
            for r in results {
                match r {
                    Ok(name) => created.push(name),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, e)) => return Err(format!("topic {name}: {e}")),
                }
            }
            Ok(created)
        };
        ctx.spawn(create.into_actor(self).map(|r, act, _| {
            let note = match r {
                Ok(created) if created.is_empty() => "topics exist".to_string(),
                Ok(created) => format!("created topics {}", created.join(", ")),
                Err(e) => {
                    tracing::warn!("kafka: topics not created: {e}");
                    format!("topics not created ({e}); the brokers' auto-creation applies")
                }
            };
            act.topics_note = Some(note);
        }));
    }
}

impl Actor for KafkaSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        if self.settings.create_topics {
            self.create_topics(ctx);
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}

impl Handler<SampleBatch> for KafkaSink {
    type Result = ();

    fn handle(&mut self, batch: SampleBatch, _: &mut Self::Context) {
        let span = batch.span("sink.kafka");
        let (samples, predictions) = (self.topic("samples"), self.topic("predictions"));
        let full_before = self.queue_full;
        for s in batch.samples.iter() {
            let Ok(value) = serde_json::to_vec(s) else {
                continue;
            };
            let name = s.series.name();
            if name == m::FORECAST || name == m::EXHAUSTION_SECONDS {
                self.produce(&predictions, &s.series.to_string(), &value);
            } else if self.settings.samples_topic {
                let key = s.series.label(m::HOSTNAME).map(str::to_string);
                let key = key.unwrap_or_else(|| self.settings.fallback_key.clone());
                self.produce(&samples, &key, &value);
            }
        }
        if let Some(span) = span {
            let dropped = self.queue_full - full_before;
            span.set("pulse.dropped", dropped as i64);
            if dropped > 0 {
                span.error(format!(
                    "{dropped} records dropped: the producer queue is full"
                ));
            }
        }
    }
}

impl Handler<Flush> for KafkaSink {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, Flush(within): Flush, _: &mut Self::Context) -> Self::Result {
        let producer = self.producer.clone();
        let reports = self.reports.clone();
        Box::pin(async move {
            let flushed = tokio::task::spawn_blocking(move || producer.flush(within))
                .await
                .map_err(|e| e.to_string())?;
            flushed.map_err(|e| {
                let last = reports
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                match last {
                    Some(last) => format!("{e}: {last}"),
                    None => e.to_string(),
                }
            })
        })
    }
}

impl Handler<AlertEvent> for KafkaSink {
    type Result = ();

    fn handle(&mut self, event: AlertEvent, _: &mut Self::Context) {
        if let Ok(value) = serde_json::to_vec(&event) {
            let topic = self.topic("alerts");
            self.produce(&topic, &event.alert.id.clone(), &value);
        }
    }
}

impl Handler<AnomalyOpened> for KafkaSink {
    type Result = ();

    fn handle(&mut self, AnomalyOpened(a): AnomalyOpened, _: &mut Self::Context) {
        if let Ok(value) = serde_json::to_vec(&a) {
            let topic = self.topic("anomalies");
            self.produce(&topic, &a.series.to_string(), &value);
        }
    }
}

impl Handler<ActionTaken> for KafkaSink {
    type Result = ();

    fn handle(&mut self, ActionTaken(r): ActionTaken, _: &mut Self::Context) {
        if let Ok(value) = serde_json::to_vec(&r) {
            let topic = self.topic("actions");
            self.produce(&topic, &r.id.to_string(), &value);
        }
    }
}

impl Handler<GetStats> for KafkaSink {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let delivered = self.reports.delivered.load(Ordering::Relaxed);
        let failed = self.reports.failed.load(Ordering::Relaxed);
        let in_flight = self.producer.in_flight_count().max(0) as u64;
        let mut st = ComponentStats::new("kafka_sink", "sink");
        st.received_total = self.sent + self.queue_full + self.refused;
        st.emitted_total = delivered;
        st.dropped_total = self.queue_full + self.refused + failed;
        st.mailbox_backlog = self.gauge.get();
        st.set(figure::KAFKA_IN_FLIGHT_RECORDS, in_flight as f64);
        st.set(figure::KAFKA_QUEUE_FULL_DROPS_TOTAL, self.queue_full as f64);
        st.set(figure::KAFKA_DELIVERY_FAILURES_TOTAL, failed as f64);
        st.set(figure::KAFKA_REFUSED_RECORDS_TOTAL, self.refused as f64);
        st.reason = Some(format!(
            "producing to {}{}",
            self.settings.brokers,
            self.topics_note
                .as_ref()
                .map(|n| format!("; {n}"))
                .unwrap_or_default()
        ));
        let last_error = self
            .reports
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(e) = last_error {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!(
                "kafka at {}: {e}; {in_flight} records waiting, {} dropped so far",
                self.settings.brokers,
                self.queue_full + self.refused + failed
            ));
        }
        MessageResult(st)
    }
}
