//! Kafka source of `pulse aggregate`: reads `<p>samples` (written by `pulse agent`) in a
//! consumer group shared by every aggregate instance, so the load splits by partition, and
//! samples are keyed by host, so each instance sees whole hosts.
//!
//! One batch at a time, in this order:
//! 1. partitions a rebalance took away (revoked and, once it settles, not assigned back):
//!    their hosts' windows and alerts are forgotten here (their new owner has them);
//!    records of partitions not held now are left for whoever holds them next;
//! 2. hosts seen for the first time: their windows are rebuilt from the Redis history and
//!    their active alerts and acknowledgements read back from Redis, before their samples;
//! 3. the batch goes into the window store (then processors and sinks, as on one Pulse);
//! 4. the processors' scores for the batch are stored and forwarded, then the sinks
//!    confirm: the Redis sink has written everything it held, the Kafka producer has
//!    delivered everything it was handed;
//! 5. only then are the batch's offsets committed.
//!
//! A crash between 3 and 5 means the batch is read again, by this instance or another:
//! at-least-once. A sample read twice is harmless: the window store keeps one point per
//! timestamp, and Redis gets the same value again.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::StreamConsumer;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;

use crate::messages::samples::SampleBatch;
use crate::model::catalog::HOSTNAME;
use crate::model::series::{Sample, SeriesKey};
use crate::rules::engine::{AdoptAlerts, ReleaseAlerts, RuleEngine};
use crate::runtime::mailbox::Mailbox;
use crate::runtime::stats::{figure, ComponentState, ComponentStats, GetStats};
use crate::sinks::kafka::{Flush, KafkaSink};
use crate::sinks::redis::{Drain, RedisSink};
use crate::store::actor::{ProcessingDone, ReleaseHosts, WindowStoreActor};
use crate::store::messages::Backfill;

/// How long a batch waits for more records once it has one.
pub const LINGER: Duration = Duration::from_millis(100);
/// How long the sinks may take to confirm a batch before its offsets wait for the next one.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// What the source is configured with.
#[derive(Clone)]
pub struct KafkaSourceSettings {
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    pub batch_records: usize,
    pub session_timeout_ms: u64,
    /// Where windows are rebuilt from (the Redis sink's keys), when Redis is configured.
    pub redis: Option<(redis::aio::ConnectionManager, String)>,
}

/// Where the source hands samples, and who must confirm before a commit.
pub struct KafkaSourceLinks {
    pub window: Addr<WindowStoreActor>,
    pub to_window: Mailbox<SampleBatch>,
    pub rules: Addr<RuleEngine>,
    pub redis_sink: Option<Addr<RedisSink>>,
    pub kafka_sink: Option<Addr<KafkaSink>>,
}

/// Counters shared between the consuming task and the actor that reports them.
#[derive(Default)]
struct Shared {
    consumed: AtomicU64,
    stored: AtomicU64,
    invalid: AtomicU64,
    committed_batches: AtomicU64,
    uncommitted_batches: AtomicU64,
    rebalances: AtomicU64,
    rebuilt_points: AtomicU64,
    adopted_alerts: AtomicU64,
    assigned: Mutex<Vec<i32>>,
    hosts: Mutex<usize>,
    /// Partitions revoked and not yet handled by the consuming task.
    revoked: Mutex<Vec<i32>>,
    /// A rebalance revoked partitions and has not assigned any yet (since when).
    rebalancing_since: Mutex<Option<std::time::Instant>>,
    last_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The consumer's context: errors and rebalances, noted for the consuming task.
#[derive(Clone)]
struct GroupContext(Arc<Shared>);

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!("kafka consumer: {error}: {reason}");
        *lock(&self.0.last_error) = Some(reason.to_string());
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!("kafka: partitions {parts:?} revoked");
            lock(&self.0.assigned).retain(|p| !parts.contains(p));
            lock(&self.0.revoked).extend(parts);
            lock(&self.0.rebalancing_since).get_or_insert_with(std::time::Instant::now);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.0.rebalances.fetch_add(1, Ordering::Relaxed);
        if let Rebalance::Assign(tpl) = rebalance {
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!("kafka: partitions {parts:?} assigned");
            let mut assigned = lock(&self.0.assigned);
            assigned.extend(parts);
            assigned.sort_unstable();
            assigned.dedup();
            *lock(&self.0.rebalancing_since) = None;
        }
    }
}

/// A sample as `pulse agent` writes it (`Sample`'s JSON; a NaN value arrives as `null`).
#[derive(Deserialize)]
struct WireSample {
    metric: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    timestamp_ms: i64,
    value: Option<f64>,
}

/// Labels a sample may carry; more is not a GPU or request series but a mistake.
pub const MAX_LABELS: usize = 64;
/// Longest metric name, label name or label value accepted.
pub const MAX_LABEL_BYTES: usize = 1024;

/// Reads one record; `None` for a record that is not a sample, or one with an enormous
/// label set (counted by the caller).
fn decode(payload: &[u8]) -> Option<Sample> {
    let w: WireSample = serde_json::from_slice(payload).ok()?;
    if w.metric.is_empty()
        || w.metric.len() > MAX_LABEL_BYTES
        || w.labels.len() > MAX_LABELS
        || w.labels
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > MAX_LABEL_BYTES || v.len() > MAX_LABEL_BYTES)
    {
        return None;
    }
    let series = SeriesKey::shared(w.metric, w.labels);
    Some(Sample::new(
        series,
        w.timestamp_ms,
        w.value.unwrap_or(f64::NAN),
    ))
}

/// One record taken off a partition.
struct Record {
    partition: i32,
    offset: i64,
    sample: Option<Sample>,
}

pub struct KafkaSource {
    settings: KafkaSourceSettings,
    shared: Arc<Shared>,
    links: Option<KafkaSourceLinks>,
}

impl KafkaSource {
    pub fn new(settings: KafkaSourceSettings, links: KafkaSourceLinks) -> Self {
        KafkaSource {
            settings,
            shared: Arc::default(),
            links: Some(links),
        }
    }

    fn consumer(&self) -> Result<StreamConsumer<GroupContext>, KafkaError> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .set("group.id", &self.settings.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                self.settings.session_timeout_ms.to_string(),
            )
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(GroupContext(self.shared.clone()))
    }
}

impl Actor for KafkaSource {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let consumer = match self.consumer() {
            Ok(c) => c,
            Err(e) => {
                *lock(&self.shared.last_error) = Some(format!("consumer not created: {e}"));
                return;
            }
        };
        if let Err(e) = consumer.subscribe(&[&self.settings.topic]) {
            *lock(&self.shared.last_error) = Some(format!("subscribe: {e}"));
            return;
        }
        let links = self.links.take().expect("started once");
        let task = consume(
            Arc::new(consumer),
            self.settings.clone(),
            links,
            self.shared.clone(),
        );
        ctx.spawn(task.into_actor(self));
    }
}

/// The consuming loop: batch, store, confirm, commit (see the module's docs).
async fn consume(
    consumer: Arc<StreamConsumer<GroupContext>>,
    settings: KafkaSourceSettings,
    links: KafkaSourceLinks,
    shared: Arc<Shared>,
) {
    // Hosts this instance holds, with the partition their samples come from.
    let mut hosts: HashMap<String, i32> = HashMap::new();
    loop {
        let mut records = Vec::new();
        let first = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await;
        match first {
            Err(_) => {}
            Ok(Err(e)) => {
                *lock(&shared.last_error) = Some(e.to_string());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(Ok(m)) => {
                records.push(record(&m));
                let deadline = tokio::time::Instant::now() + LINGER;
                while records.len() < settings.batch_records {
                    match tokio::time::timeout_at(deadline, consumer.recv()).await {
                        Ok(Ok(m)) => records.push(record(&m)),
                        Ok(Err(e)) => {
                            *lock(&shared.last_error) = Some(e.to_string());
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
        }

        // 1. Only records of partitions held now are stored (the rest is read again by
        // whoever holds them next, from the last commit). Partitions revoked are let go
        // once the rebalance has settled, and only those not assigned back: a rebalance
        // revokes every partition and then assigns most of them again.
        let assigned: HashSet<i32> = lock(&shared.assigned).iter().copied().collect();
        records.retain(|r| assigned.contains(&r.partition));
        let settled = match *lock(&shared.rebalancing_since) {
            None => true,
            // No assignment for this long: this instance has left the group.
            Some(since) => since.elapsed() > Duration::from_millis(2 * settings.session_timeout_ms),
        };
        if settled {
            let lost: HashSet<i32> = std::mem::take(&mut *lock(&shared.revoked))
                .into_iter()
                .filter(|p| !assigned.contains(p))
                .collect();
            let gone: HashSet<String> = hosts
                .iter()
                .filter(|(_, p)| lost.contains(p))
                .map(|(h, _)| h.clone())
                .collect();
            hosts.retain(|h, _| !gone.contains(h));
            if !gone.is_empty() {
                let _ = links.window.send(ReleaseHosts(gone.clone())).await;
                let _ = links.rules.send(ReleaseAlerts(gone)).await;
            }
        }
        *lock(&shared.hosts) = hosts.len();
        if records.is_empty() {
            continue;
        }
        shared
            .consumed
            .fetch_add(records.len() as u64, Ordering::Relaxed);

        // 2. Hosts seen for the first time.
        let mut new_hosts = HashSet::new();
        for r in &records {
            let Some(host) = r.sample.as_ref().and_then(|s| s.series.label(HOSTNAME)) else {
                continue;
            };
            if !hosts.contains_key(host) {
                hosts.insert(host.to_string(), r.partition);
                new_hosts.insert(host.to_string());
            }
        }
        if !new_hosts.is_empty() {
            adopt(&settings, &links, &shared, new_hosts).await;
        }

        // 3. Store.
        let mut offsets: HashMap<i32, i64> = HashMap::new();
        let mut samples = Vec::with_capacity(records.len());
        for r in records {
            let next = offsets.entry(r.partition).or_insert(r.offset + 1);
            *next = (*next).max(r.offset + 1);
            match r.sample {
                Some(s) => samples.push(s),
                None => {
                    shared.invalid.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let n = samples.len() as u64;
        if !samples.is_empty()
            && links
                .to_window
                .send(SampleBatch::new(samples))
                .await
                .is_err()
        {
            *lock(&shared.last_error) = Some("the window store stopped".to_string());
            return;
        }
        shared.stored.fetch_add(n, Ordering::Relaxed);

        // 4. The processors' scores are stored and forwarded, then the sinks confirm.
        if links.window.send(ProcessingDone).await.is_err() {
            *lock(&shared.last_error) = Some("the window store stopped".to_string());
            return;
        }
        if let Err(why) = confirm(&links).await {
            shared.uncommitted_batches.fetch_add(1, Ordering::Relaxed);
            *lock(&shared.last_error) = Some(format!("offsets not committed: {why}"));
            continue;
        }

        // 5. Commit, for the partitions still held.
        let held: Vec<i32> = lock(&shared.assigned).clone();
        let mut tpl = TopicPartitionList::new();
        for (p, next) in offsets {
            if !held.contains(&p) {
                continue;
            }
            if let Err(e) = tpl.add_partition_offset(&settings.topic, p, Offset::Offset(next)) {
                tracing::warn!("kafka: offset for partition {p}: {e}");
            }
        }
        if tpl.count() == 0 {
            continue;
        }
        // A synchronous commit (its outcome is known here), off the actors' thread: it
        // waits for the brokers.
        let c = consumer.clone();
        let committed = tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync)).await;
        match committed {
            Ok(Ok(())) => {
                shared.committed_batches.fetch_add(1, Ordering::Relaxed);
                *lock(&shared.last_error) = None;
            }
            Ok(Err(e)) => {
                shared.uncommitted_batches.fetch_add(1, Ordering::Relaxed);
                *lock(&shared.last_error) = Some(format!("commit: {e}"));
            }
            Err(e) => {
                shared.uncommitted_batches.fetch_add(1, Ordering::Relaxed);
                *lock(&shared.last_error) = Some(format!("commit: {e}"));
            }
        }
    }
}

fn record(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    Record {
        partition: m.partition(),
        offset: m.offset(),
        sample: m.payload().and_then(decode),
    }
}

/// Rebuilds the new hosts' windows from Redis, then gives their alerts back to the rules.
async fn adopt(
    settings: &KafkaSourceSettings,
    links: &KafkaSourceLinks,
    shared: &Shared,
    new_hosts: HashSet<String>,
) {
    let mut names: Vec<&String> = new_hosts.iter().collect();
    names.sort();
    tracing::info!("taking over hosts {names:?}");
    if let Some((redis, prefix)) = &settings.redis {
        // Read before these hosts' records go to the store, so their history goes in first.
        match crate::sinks::redis::read_history(redis, prefix, &new_hosts).await {
            Ok(samples) => {
                if let Ok(points) = links.window.send(Backfill(samples)).await {
                    shared
                        .rebuilt_points
                        .fetch_add(points as u64, Ordering::Relaxed);
                }
            }
            Err(e) => {
                *lock(&shared.last_error) = Some(format!("windows not rebuilt from Redis: {e}"));
            }
        }
    }
    match links.rules.send(AdoptAlerts(new_hosts)).await {
        Ok(Ok(alerts)) => {
            shared
                .adopted_alerts
                .fetch_add(alerts as u64, Ordering::Relaxed);
        }
        Ok(Err(e)) => {
            *lock(&shared.last_error) = Some(format!("alerts not read back from Redis: {e}"));
        }
        Err(_) => {}
    }
}

/// Waits until the sinks hold nothing unwritten: Redis has what the sink was given, and
/// the brokers have what the producer was given.
async fn confirm(links: &KafkaSourceLinks) -> Result<(), String> {
    if let Some(redis) = &links.redis_sink {
        match redis.send(Drain(CONFIRM_TIMEOUT)).await {
            Ok(0) => {}
            Ok(left) => return Err(format!("{left} samples not yet written to Redis")),
            Err(e) => return Err(format!("redis sink: {e}")),
        }
    }
    if let Some(kafka) = &links.kafka_sink {
        match kafka.send(Flush(CONFIRM_TIMEOUT)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("kafka sink: {e}")),
            Err(e) => return Err(format!("kafka sink: {e}")),
        }
    }
    Ok(())
}

impl Handler<GetStats> for KafkaSource {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let s = &self.shared;
        let mut st = ComponentStats::new("kafka_source", "source");
        st.received_total = s.consumed.load(Ordering::Relaxed);
        st.emitted_total = s.stored.load(Ordering::Relaxed);
        st.dropped_total = s.invalid.load(Ordering::Relaxed);
        let assigned = lock(&s.assigned).clone();
        let extra = [
            (figure::KAFKA_COMMITTED_BATCHES_TOTAL, &s.committed_batches),
            (
                figure::KAFKA_UNCOMMITTED_BATCHES_TOTAL,
                &s.uncommitted_batches,
            ),
            (figure::KAFKA_REBALANCES_TOTAL, &s.rebalances),
            (figure::KAFKA_REBUILT_POINTS_TOTAL, &s.rebuilt_points),
            (figure::KAFKA_ADOPTED_ALERTS_TOTAL, &s.adopted_alerts),
        ];
        for (f, v) in extra {
            st.set(f, v.load(Ordering::Relaxed) as f64);
        }
        st.set(figure::KAFKA_ASSIGNED_PARTITIONS, assigned.len() as f64);
        let hosts = *lock(&s.hosts);
        st.set(figure::KAFKA_HOSTS, hosts as f64);
        st.reason = Some(format!(
            "consuming {} in group {} from {}: partitions {assigned:?}, {hosts} hosts",
            self.settings.topic, self.settings.group_id, self.settings.brokers
        ));
        if let Some(e) = lock(&s.last_error).clone() {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!(
                "{e} (group {}, brokers {}, partitions {assigned:?})",
                self.settings.group_id, self.settings.brokers
            ));
        }
        MessageResult(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_the_sink_writes_and_refuses_the_rest() {
        let s = Sample::new(SeriesKey::shared("m", [("Hostname", "h1")]), 5, f64::NAN);
        let json = serde_json::to_vec(&s).unwrap();
        let back = decode(&json).expect("decodes");
        assert_eq!(back.series, s.series);
        assert_eq!(back.timestamp_ms, 5);
        assert!(back.value.is_nan());
        let s = Sample::new(SeriesKey::shared("m", [("gpu", "0")]), 6, 2.5);
        let back = decode(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(back.value, 2.5);
        for bad in [
            &b"nope"[..],
            br#"{"metric":"","timestamp_ms":1,"value":1}"#,
            br#"{"metric":"m"}"#,
        ] {
            assert!(decode(bad).is_none());
        }
        // Enormous label sets are refused.
        let many: std::collections::BTreeMap<String, String> = (0..=MAX_LABELS)
            .map(|i| (format!("l{i}"), "v".to_string()))
            .collect();
        let rec = serde_json::json!({"metric":"m","labels":many,"timestamp_ms":1,"value":1.0});
        assert!(decode(rec.to_string().as_bytes()).is_none());
        let long = "v".repeat(MAX_LABEL_BYTES + 1);
        let rec =
            serde_json::json!({"metric":"m","labels":{"a":long},"timestamp_ms":1,"value":1.0});
        assert!(decode(rec.to_string().as_bytes()).is_none());
    }
}
