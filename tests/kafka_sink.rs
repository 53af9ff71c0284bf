//! The Kafka sink against librdkafka's mock cluster (`rdkafka::mocking::MockCluster`, 3
//! brokers, in this process): the Kafka-protocol brokers available here (tansu) do not
//! serve librdkafka's consumer groups, and no Apache Kafka package exists for this machine.
//! Records reach their topics with their keys; with every broker down, Pulse keeps serving
//! and the sink says why; records produced during the outage arrive afterwards (none lost
//! below the bound); past the bound the drop count is exact: every record received is
//! delivered (and read back by a consumer) or counted as dropped.

mod common;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{call, get};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;

const RULES: &str = r#"
groups:
  - name: kafka-test
    interval: 200ms
    rules:
      - alert: KafkaTestAlways
        expr: max by (Hostname) (DCGM_FI_DEV_GPU_UTIL) >= 0
        labels: {severity: info}
        annotations: {pulse_action: "command:drain"}
"#;

/// Everything read so far: (topic, key, value).
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

/// A consumer thread reading every topic of Pulse from the start.
fn consume(bootstrap: &str, stop: Arc<AtomicBool>) -> Seen {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kafka-sink-test")
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .unwrap();
    let seen: Seen = Arc::default();
    let out = seen.clone();
    std::thread::spawn(move || {
        // Every partition of Pulse's topics from the beginning, once Pulse has created them.
        let topics = [
            "pulse.samples",
            "pulse.alerts",
            "pulse.anomalies",
            "pulse.predictions",
            "pulse.actions",
        ];
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(md) = consumer.fetch_metadata(None, Duration::from_secs(1)) else {
                continue;
            };
            let mut tpl = TopicPartitionList::new();
            for t in md.topics().iter().filter(|t| topics.contains(&t.name())) {
                for p in t.partitions() {
                    tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)
                        .unwrap();
                }
            }
            let found = md
                .topics()
                .iter()
                .filter(|t| topics.contains(&t.name()) && !t.partitions().is_empty())
                .count();
            if found == topics.len() {
                consumer.assign(&tpl).unwrap();
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or(Value::Null);
                out.lock()
                    .unwrap()
                    .push((m.topic().to_string(), key, value));
            }
        }
    });
    seen
}

async fn sink(app: &axum::Router) -> Value {
    let (_, v) = call(app, get("/api/phase4/status")).await;
    v["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kafka_sink")
        .cloned()
        .expect("a kafka_sink component")
}

async fn wait_for(
    app: &axum::Router,
    what: &str,
    secs: u64,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = sink(app).await;
        if ready(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn app(bootstrap: &str, buffer: usize, rules: &std::path::Path, interval_ms: u64) -> axum::Router {
    let (mut service, mut pipeline) = common::fast_simulated();
    pipeline.sources.gpu.interval_ms = std::num::NonZeroU64::new(interval_ms).unwrap();
    pipeline.sources.requests.interval_ms = std::num::NonZeroU64::new(interval_ms).unwrap();
    service.kafka.brokers = Some(bootstrap.to_string());
    service.kafka.partitions = std::num::NonZeroU64::new(3).unwrap();
    service.kafka.replication_factor = std::num::NonZeroU64::new(3).unwrap();
    // The mock cluster does not answer CreateTopics: the test creates them (below).
    service.kafka.create_topics = false;
    service.kafka.buffer_max_records = NonZeroUsize::new(buffer).unwrap();
    service.rules.builtin_pack = false;
    service.rules.paths = vec![rules.to_path_buf()];
    pipeline.sources.gpu.simulated.gpus = NonZeroUsize::new(2).unwrap();
    common::app(&service, &pipeline)
}

/// Pulse's five topics, 3 partitions each, on the mock cluster.
fn create_topics(cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>) {
    for t in [
        "pulse.samples",
        "pulse.alerts",
        "pulse.anomalies",
        "pulse.predictions",
        "pulse.actions",
    ] {
        cluster.create_topic(t, 3, 3).unwrap();
    }
}

fn all_down(cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>, down: bool) {
    for id in 1..=3 {
        if down {
            cluster.broker_down(id).unwrap();
        } else {
            cluster.broker_up(id).unwrap();
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[actix::test]
async fn records_reach_their_topics_and_an_outage_below_the_bound_loses_nothing() {
    let cluster = MockCluster::new(3).unwrap();
    create_topics(&cluster);
    let bootstrap = cluster.bootstrap_servers();
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("kafka.yml"), RULES).unwrap();
    let app = app(&bootstrap, 1_000_000, rules.path(), 50);
    let stop = Arc::new(AtomicBool::new(false));
    let seen = consume(&bootstrap, stop.clone());

    // Samples keyed by host, alert events keyed by alert id.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = seen.lock().unwrap().clone();
        let sample = s
            .iter()
            .find(|(t, _, v)| t == "pulse.samples" && v["metric"] == "DCGM_FI_DEV_GPU_UTIL");
        let alert = s.iter().find(|(t, _, _)| t == "pulse.alerts");
        // The rule's action, in the default dry run: its record, keyed by its id (the
        // refusals that follow it, within its cooldown, may be read first: other partitions).
        let action = s
            .iter()
            .find(|(t, _, v)| t == "pulse.actions" && v["outcome"] == "dry_run");
        if let (Some(sample), Some(alert), Some(action)) = (sample, alert, action) {
            assert_eq!(action.1, action.2["id"].to_string(), "{action:?}");
            assert_eq!(
                sample.1,
                sample.2["labels"]["Hostname"].as_str().unwrap(),
                "{sample:?}"
            );
            assert!(sample.2["timestamp_ms"].as_i64() > Some(1_700_000_000_000));
            assert_eq!(alert.1, alert.2["alert"]["id"].as_str().unwrap());
            assert!(["pending", "firing"].contains(&alert.2["kind"].as_str().unwrap()));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no sample, alert and action records yet: {} read",
            s.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = sink(&app).await;
    assert_eq!(s["state"], "operational", "{s}");

    // Every broker down for 2 s: Pulse keeps serving, the sink waits and says why.
    all_down(&cluster, true);
    let down_at = now_ms();
    let s = wait_for(&app, "never degraded", 20, |s| s["state"] == "degraded").await;
    assert!(s["reason"].as_str().unwrap().contains("kafka at"), "{s}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, _) = call(&app, get("/api/phase4/dashboard/summary")).await;
    assert_eq!(status, StatusCode::OK);
    let up_at = now_ms();
    all_down(&cluster, false);

    // Back: what waited is delivered, nothing was dropped.
    let s = wait_for(&app, "never caught up", 30, |s| {
        s["state"] == "operational" && s["extra"]["kafka_in_flight_records"] == 0.0
    })
    .await;
    assert_eq!(s["dropped_total"], 0, "{s}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let during = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _, v)| {
                t == "pulse.samples"
                    && v["timestamp_ms"]
                        .as_i64()
                        .is_some_and(|ts| ts > down_at + 500 && ts < up_at)
            })
            .count();
        if during > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no record from the outage arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
}

#[actix::test]
async fn past_the_bound_the_drop_count_is_exact() {
    let cluster = MockCluster::new(3).unwrap();
    create_topics(&cluster);
    let bootstrap = cluster.bootstrap_servers();
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("kafka.yml"), RULES).unwrap();
    // One batch a second, so that nothing is in flight between two of them.
    let app = app(&bootstrap, 100, rules.path(), 1000);
    let stop = Arc::new(AtomicBool::new(false));
    let seen = consume(&bootstrap, stop.clone());
    wait_for(&app, "nothing delivered", 30, |s| {
        s["emitted_total"].as_u64() > Some(0)
    })
    .await;

    all_down(&cluster, true);
    wait_for(&app, "the queue never filled", 20, |s| {
        s["extra"]["kafka_queue_full_drops_total"].as_f64() > Some(0.0)
    })
    .await;
    all_down(&cluster, false);

    // Once nothing is in flight: received = delivered + dropped, and the consumer reads
    // exactly what was delivered.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = sink(&app).await;
        let n = |k: &str| s[k].as_u64().unwrap();
        let in_flight = s["extra"]["kafka_in_flight_records"].as_f64().unwrap();
        if in_flight == 0.0 {
            // Records keep coming: compare one consistent report.
            assert_eq!(
                n("received_total"),
                n("emitted_total") + n("dropped_total"),
                "{s}"
            );
            assert_eq!(s["extra"]["kafka_delivery_failures_total"], 0.0, "{s}");
            let delivered = n("emitted_total") as usize;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let read = seen.lock().unwrap().len();
                if read >= delivered {
                    let by_topic: HashMap<String, usize> =
                        seen.lock()
                            .unwrap()
                            .iter()
                            .fold(HashMap::new(), |mut m, (t, _, _)| {
                                *m.entry(t.clone()).or_default() += 1;
                                m
                            });
                    assert!(by_topic.contains_key("pulse.samples"), "{by_topic:?}");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "read {read} of {delivered} delivered records"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            break;
        }
        assert!(Instant::now() < deadline, "records stayed in flight: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
}
