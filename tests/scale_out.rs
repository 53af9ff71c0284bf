//! Scaling out on Kafka, with the real binaries: a `pulse agent` (simulated GPUs of host
//! `agent-host`) and this test (twelve more hosts, as an agent writes them) produce to
//! `pulse.samples`; two `pulse aggregate` instances in one consumer group share the hosts
//! by partition, with a real `redis-server`. When one aggregator is killed with SIGKILL the
//! other takes its partitions over: every alert is still active, with its first
//! `active_at_ms`, and none fires twice; the rule's action is decided once per alert,
//! across both instances and the handover; each alert goes to the webhook once per resend
//! delay, by the instance that owns its host, through the split and the take-over.
//!
//! The brokers are librdkafka's mock cluster (`rdkafka::mocking::MockCluster`, 3 brokers,
//! in this process, reached by the Pulse processes through its bootstrap address): the
//! Kafka-protocol broker available here (tansu) does not serve librdkafka's consumer groups.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::alertmanager::receiver;
use common::free_port;
use common::process::Pulse;
use common::redis::{connection, RedisServer};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

const HOSTS: usize = 12;
/// The alerts' resend delay (`alerting.resend_delay_ms`).
const RESEND_MS: u64 = 4_000;

const AGENT_PIPELINE: &str = r#"
[sources.gpu]
mode = "simulated"
interval_ms = 200
[sources.gpu.simulated]
gpus = 2
hostname = "agent-host"
scenarios = ["steady"]
[sources.requests]
interval_ms = 200
"#;

const AGGREGATE_PIPELINE: &str = r#"
[predictor]
enabled = false
"#;

const RULES: &str = r#"
groups:
  - name: scale-out
    interval: 200ms
    rules:
      - alert: HostHot
        expr: max by (Hostname) (scale_test_temp) > 90
        for: 1s
        labels: {severity: warning}
        annotations: {pulse_action: "command:cool_down"}
"#;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Twelve hosts' samples, every 200 ms, keyed by host as `pulse agent` writes them.
fn produce_hosts(bootstrap: &str, stop: Arc<AtomicBool>) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let t = now_ms();
            for h in 0..HOSTS {
                let host = format!("h{h:02}");
                let value = json!({"metric": "scale_test_temp",
                    "labels": {"Hostname": host}, "timestamp_ms": t, "value": 95.0})
                .to_string();
                let _ = producer.send(BaseRecord::to("pulse.samples").key(&host).payload(&value));
            }
            producer.poll(Duration::from_millis(200));
        }
        let _ = producer.flush(Duration::from_secs(5));
    });
}

/// Every `pulse.alerts` record: (alert id, kind).
type Events = Arc<Mutex<Vec<(String, String)>>>;

fn consume_alerts(bootstrap: &str, stop: Arc<AtomicBool>) -> Events {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "scale-out-test-reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..6 {
        tpl.add_partition_offset("pulse.alerts", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let events: Events = Arc::default();
    let out = events.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let v: Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
                out.lock().unwrap().push((
                    v["alert"]["id"].as_str().unwrap().to_string(),
                    v["kind"].as_str().unwrap().to_string(),
                ));
            }
        }
    });
    events
}

/// The webhook's firing posts: alert id → [(when, the sender's externalURL)], in order.
fn firing_sends(posts: &[(SystemTime, Value)]) -> BTreeMap<String, Vec<(SystemTime, String)>> {
    let mut out: BTreeMap<String, Vec<(SystemTime, String)>> = BTreeMap::new();
    for (at, body) in posts {
        let who = body["externalURL"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/');
        for a in body["alerts"].as_array().into_iter().flatten() {
            if a["status"] == "firing" {
                let id = a["fingerprint"].as_str().unwrap().to_string();
                out.entry(id).or_default().push((*at, who.to_string()));
            }
        }
    }
    out
}

/// The alert ids `who` sent after `since`.
fn sent_by(posts: &[(SystemTime, Value)], who: &str, since: SystemTime) -> BTreeSet<String> {
    firing_sends(posts)
        .into_iter()
        .filter(|(_, sends)| sends.iter().any(|(at, w)| w == who && *at > since))
        .map(|(id, _)| id)
        .collect()
}

/// Firing `HostHot` alerts of one instance: id → (host, active_at_ms).
fn firing(p: &Pulse) -> BTreeMap<String, (String, i64)> {
    let (_, v) = p.get("/api/phase4/alerts/active");
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == "HostHot" && a["state"] == "firing")
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_string(),
                (
                    a["labels"]["Hostname"].as_str().unwrap().to_string(),
                    a["active_at_ms"].as_i64().unwrap(),
                ),
            )
        })
        .collect()
}

fn source(p: &Pulse) -> Value {
    let (_, v) = p.get("/api/phase4/status");
    v["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kafka_source")
        .cloned()
        .expect("a kafka_source component")
}

/// The actions (here, dry runs) an instance lists, its own and those read back from Redis:
/// record id → alert id.
fn acted(p: &Pulse) -> BTreeMap<u64, String> {
    let (_, v) = p.get("/api/phase4/actions?outcome=dry_run&limit=1000");
    v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_u64().unwrap(),
                a["alert_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `pulse:alerts:active` in Redis: id → active_at_ms.
fn stored_active(redis_port: u16) -> BTreeMap<String, i64> {
    let mut conn = connection(redis_port).unwrap();
    let raw: HashMap<String, String> = redis::cmd("HGETALL")
        .arg("pulse:alerts:active")
        .query(&mut conn)
        .unwrap();
    raw.into_iter()
        .map(|(id, v)| {
            let v: Value = serde_json::from_str(&v).unwrap();
            (id, v["alert"]["active_at_ms"].as_i64().unwrap())
        })
        .collect()
}

fn wait(what: &str, secs: u64, mut ready: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match ready() {
            None => return,
            Some(why) => assert!(Instant::now() < deadline, "{what}: {why}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_aggregators_share_the_hosts_and_one_takes_over_when_the_other_is_killed() {
    let cluster = MockCluster::new(3).unwrap();
    for t in [
        "pulse.samples",
        "pulse.alerts",
        "pulse.anomalies",
        "pulse.predictions",
        "pulse.actions",
    ] {
        cluster.create_topic(t, 6, 3).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let redis_port = free_port();
    let _redis = RedisServer::start(redis_port);
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let stop = Arc::new(AtomicBool::new(false));
    let events = consume_alerts(&bootstrap, stop.clone());
    let (hook_port, hook) = receiver();
    let hook_url = format!("http://127.0.0.1:{hook_port}/");
    let resend = RESEND_MS.to_string();

    let env = [
        ("PULSE_KAFKA_BROKERS", bootstrap.as_str()),
        ("PULSE_REDIS_URL", redis_url.as_str()),
        ("PULSE_RULES_BUILTIN_PACK", "false"),
        ("PULSE_KAFKA_SESSION_TIMEOUT_MS", "6000"),
        ("PULSE_ALERTING_WEBHOOK_URLS", hook_url.as_str()),
        ("PULSE_ALERTING_RESEND_DELAY_MS", resend.as_str()),
    ];
    // The mock cluster does not answer CreateTopics: the topics exist already.
    let env: Vec<(&str, &str)> = env
        .into_iter()
        .chain([("PULSE_KAFKA_CREATE_TOPICS", "false")])
        .collect();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let agent = Pulse::start_with_files_as("agent", dirs[0].path(), AGENT_PIPELINE, RULES, &env);
    produce_hosts(&bootstrap, stop.clone());

    // One aggregator: every host is its own.
    let a =
        Pulse::start_with_files_as("aggregate", dirs[1].path(), AGGREGATE_PIPELINE, RULES, &env);
    wait("aggregator A fires for every host", 60, || {
        let f = firing(&a);
        (f.len() != HOSTS).then(|| format!("{} firing: {f:?}", f.len()))
    });
    // The agent's GPUs went through the aggregator into Redis.
    wait("agent-host's GPU samples in Redis", 30, || {
        let mut conn = connection(redis_port).unwrap();
        let keys: Vec<String> = redis::cmd("HKEYS")
            .arg("pulse:latest")
            .query(&mut conn)
            .unwrap();
        let found = keys.iter().any(|k| {
            k.starts_with("DCGM_FI_DEV_GPU_UTIL{") && k.contains("Hostname=\"agent-host\"")
        });
        (!found).then(|| format!("{} keys", keys.len()))
    });

    // A second aggregator joins: the hosts split between them, no alert held twice.
    let b =
        Pulse::start_with_files_as("aggregate", dirs[2].path(), AGGREGATE_PIPELINE, RULES, &env);
    let mut before = BTreeMap::new();
    wait("the hosts split between A and B", 60, || {
        let (fa, fb) = (firing(&a), firing(&b));
        let both: BTreeSet<&String> = fa.keys().filter(|id| fb.contains_key(*id)).collect();
        let ok =
            !fa.is_empty() && !fb.is_empty() && both.is_empty() && fa.len() + fb.len() == HOSTS;
        before = fa.into_iter().chain(fb).collect();
        (!ok).then(|| format!("A {:?} B {:?}", firing(&a).len(), firing(&b).len()))
    });
    let sa = source(&a);
    let sb = source(&b);
    assert!(
        sa["extra"]["kafka_committed_batches_total"].as_f64() > Some(0.0),
        "{sa}"
    );
    assert!(
        sb["extra"]["kafka_assigned_partitions"].as_f64() > Some(0.0),
        "{sb}"
    );
    let stored = stored_active(redis_port);
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "Redis holds exactly the active alerts"
    );
    for (id, (_, at)) in &before {
        assert_eq!(stored[id], *at, "{id}");
    }

    // A is killed: B takes every partition over; no alert is lost, none starts again.
    let a_actions = acted(&a);
    let a_base = a.base.clone();
    let killed_at = SystemTime::now();
    a.kill9();
    wait("B fires for every host", 60, || {
        let f = firing(&b);
        (f.len() != HOSTS).then(|| format!("{} firing", f.len()))
    });
    let after = firing(&b);
    assert_eq!(after, before, "same alerts, same hosts, same active_at_ms");
    assert_eq!(stored_active(redis_port), stored);
    let sb = source(&b);
    assert_eq!(sb["extra"]["kafka_assigned_partitions"], 6.0, "{sb}");
    assert!(
        sb["extra"]["kafka_adopted_alerts_total"].as_f64() > Some(0.0),
        "{sb}"
    );
    // And steadily so for the next 3 s (the windows were rebuilt, nothing resolves, no
    // alert drops out of the API while the group settles).
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(firing(&b), before);
    }

    // Each alert's action (a dry run) was decided once, by whichever instance owned its
    // host first; the other, taking the host over, found the cooldown in Redis.
    let mut all = acted(&b);
    all.extend(a_actions);
    for id in before.keys() {
        let n = all.values().filter(|a| *a == id).count();
        assert_eq!(n, 1, "{id}: {all:?}");
    }

    // Each alert went pending and firing once, across both instances and the handover.
    stop.store(true, Ordering::Relaxed);
    let events = events.lock().unwrap().clone();
    for id in before.keys() {
        let kinds: Vec<&str> = events
            .iter()
            .filter(|(i, _)| i == id)
            .map(|(_, k)| k.as_str())
            .collect();
        assert_eq!(kinds, ["pending", "firing"], "{id}");
    }
    // The webhook got each alert from one instance at a time, never twice within a resend
    // delay (the sender's last send is in Redis beside the alert: the instance that takes
    // its host over, at the split or after the kill, waits for the delay), and B sends
    // every alert after A is gone.
    let mut posts: Vec<(SystemTime, Value)> = Vec::new();
    wait("B sends every alert to the webhook", 30, || {
        posts.extend(hook.rx.try_iter());
        let from_b = sent_by(&posts, &b.base, killed_at);
        (from_b.len() != HOSTS).then(|| {
            let senders: BTreeSet<&str> = posts
                .iter()
                .filter_map(|(_, p)| p["externalURL"].as_str())
                .collect();
            format!(
                "{} of {HOSTS}; {} posts from {senders:?}",
                from_b.len(),
                posts.len()
            )
        })
    });
    let sent = firing_sends(&posts);
    for id in before.keys() {
        let sends = sent.get(id).map(Vec::as_slice).unwrap_or_default();
        for w in sends.windows(2) {
            let gap = w[1].0.duration_since(w[0].0).unwrap_or_default();
            assert!(
                gap >= Duration::from_millis(RESEND_MS * 3 / 4),
                "{id} sent twice within {gap:?}: {sends:?}"
            );
        }
        assert!(
            sends
                .iter()
                .all(|(at, who)| *who != a_base || *at <= killed_at),
            "{id} sent by A after its death: {sends:?}"
        );
    }
    // A clean stop says what became of what the Redis sink held.
    let log = b.stop();
    assert!(
        log.iter().any(|l| l.contains("redis sink drained")),
        "{log:#?}"
    );
    agent.stop();
}
