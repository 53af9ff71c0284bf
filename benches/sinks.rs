//! Sink throughput: samples/s written by the Redis sink into a real `redis-server`, and by
//! the Kafka sink into librdkafka's mock cluster, each beside a raw client loop doing the
//! same writes in the same run (the baseline).
//!
//! `cargo bench --bench sinks` prints a markdown table. Under `cargo test` (no `--bench`
//! argument) it runs a tiny size once. Needs `redis-server` (Debian package).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix::prelude::*;
use pulse::model::series::{Sample, Series, SeriesKey};
use pulse::MailboxGauge;
use pulse::SampleBatch;
use pulse::{ComponentStats, GetStats};
use pulse::{KafkaSink, KafkaSinkSettings};
use pulse::{RedisSink, RedisSinkSettings};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const BATCH: usize = 1000;

fn series(n: usize) -> Vec<Series> {
    (0..n)
        .map(|i| {
            SeriesKey::shared(
                "DCGM_FI_DEV_GPU_UTIL",
                [
                    ("gpu".to_string(), (i % 8).to_string()),
                    ("Hostname".to_string(), format!("host-{}", i / 8)),
                ],
            )
        })
        .collect()
}

fn batches(series: &[Series], rounds: usize) -> Vec<Vec<Sample>> {
    let mut out = Vec::new();
    for r in 0..rounds {
        for chunk in series.chunks(BATCH) {
            out.push(
                chunk
                    .iter()
                    .map(|s| Sample::new(s.clone(), 1_000_000 + r as i64 * 1000, r as f64))
                    .collect(),
            );
        }
    }
    out
}

struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_server() -> Redis {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (Debian package redis-server) is needed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection())
        .is_err()
    {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Redis(child, port)
}

/// The baseline: the same keys and values, pipelined in the same round-trip size, from a
/// plain async connection.
async fn raw_redis(url: &str, batches: &[Vec<Sample>]) -> Duration {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let start = Instant::now();
    for chunk in batches.chunks(5) {
        let mut pipe = redis::pipe();
        let mut touched = std::collections::HashSet::new();
        for s in chunk.iter().flatten() {
            let series = s.series.to_string();
            let value = serde_json::json!({"t_ms": s.timestamp_ms, "value": s.value}).to_string();
            pipe.hset("raw:latest", &series, &value).ignore();
            let key = format!("raw:history:{series}");
            pipe.rpush(&key, &value).ignore();
            touched.insert(key);
        }
        for key in touched {
            pipe.ltrim(&key, -1000, -1).ignore();
            pipe.expire(&key, 3600).ignore();
        }
        pipe.query_async::<()>(&mut conn).await.unwrap();
    }
    start.elapsed()
}

/// Sends every batch to a sink (awaited, as the window store does) and waits until it has
/// written them all; none may be dropped.
async fn drive<A>(addr: Addr<A>, batches: &[Vec<Sample>]) -> Duration
where
    A: Actor<Context = Context<A>> + Handler<SampleBatch> + Handler<GetStats>,
{
    let n: u64 = batches.iter().map(|b| b.len() as u64).sum();
    let start = Instant::now();
    for b in batches {
        addr.send(SampleBatch::new(b.clone())).await.unwrap();
    }
    let s: ComponentStats = loop {
        let s = addr.send(GetStats).await.unwrap();
        if s.emitted_total + s.dropped_total >= n {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert_eq!(s.dropped_total, 0);
    start.elapsed()
}

async fn redis_sink(url: &str, batches: &[Vec<Sample>]) -> Duration {
    let settings = RedisSinkSettings {
        url: url.to_string(),
        key_prefix: "sink:".to_string(),
        history_max_points: 1000,
        history_ttl_s: 3600,
        buffer_max_samples: 10_000_000,
        write_batch_samples: 5000,
    };
    drive(
        RedisSink::new(settings, MailboxGauge::default())
            .unwrap()
            .start(),
        batches,
    )
    .await
}

/// The baseline: a raw idempotent producer sending the same JSON records, then flushing.
fn raw_kafka(bootstrap: &str, batches: &[Vec<Sample>]) -> Duration {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "10000000")
        .create()
        .unwrap();
    let start = Instant::now();
    for s in batches.iter().flatten() {
        let value = serde_json::to_vec(s).unwrap();
        // The sink's key: the host.
        let key = s.series.label("Hostname").unwrap().to_string();
        let mut record = BaseRecord::to("raw.samples").key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    start.elapsed()
}

async fn kafka_sink(bootstrap: &str, batches: &[Vec<Sample>]) -> Duration {
    let settings = KafkaSinkSettings {
        brokers: bootstrap.to_string(),
        topic_prefix: "sink.".to_string(),
        create_topics: false,
        partitions: 3,
        replication_factor: 1,
        buffer_max_records: 10_000_000,
        samples_topic: true,
        fallback_key: "bench-host".to_string(),
    };
    drive(
        KafkaSink::new(settings, MailboxGauge::default())
            .unwrap()
            .start(),
        batches,
    )
    .await
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (n_series, rounds, repeats) = if bench { (10_000, 20, 3) } else { (1000, 2, 1) };
    let system = System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    });
    system.block_on(async move {
        let batches = batches(&series(n_series), rounds);
        let n = n_series * rounds;
        let server = redis_server();
        let url = format!("redis://127.0.0.1:{}", server.1);
        let cluster = rdkafka::mocking::MockCluster::new(3).unwrap();
        for t in ["raw.samples", "sink.samples"] {
            cluster.create_topic(t, 3, 1).unwrap();
        }
        let bootstrap = cluster.bootstrap_servers();
        let (mut rr, mut rs, mut kr, mut ks) = (vec![], vec![], vec![], vec![]);
        for _ in 0..repeats {
            rr.push(rate(n, raw_redis(&url, &batches).await));
            rs.push(rate(n, redis_sink(&url, &batches).await));
            let (b, bs) = (bootstrap.clone(), batches.clone());
            let d = tokio::task::spawn_blocking(move || raw_kafka(&b, &bs)).await.unwrap();
            kr.push(rate(n, d));
            ks.push(rate(n, kafka_sink(&bootstrap, &batches).await));
        }
        let (rr, rs, kr, ks) = (median(rr), median(rs), median(kr), median(ks));
        println!("\nSink throughput, {n} samples ({n_series} series x {rounds} rounds, batches of {BATCH}), median of {repeats} runs\n");
        println!("| path | samples/s | ratio to its raw client |");
        println!("|---|---:|---:|");
        println!("| raw redis client, pipelined (baseline) | {:.0} k | 1.00 |", rr / 1e3);
        println!("| Redis sink actor | {:.0} k | {:.2} |", rs / 1e3, rs / rr);
        println!("| raw rdkafka producer, idempotent (baseline) | {:.0} k | 1.00 |", kr / 1e3);
        println!("| Kafka sink actor | {:.0} k | {:.2} |", ks / 1e3, ks / kr);
        System::current().stop();
    });
}
