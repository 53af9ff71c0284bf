//! The Redis sink against a real `redis-server` (Debian package `redis-server`) started on a
//! free loopback port: every series' latest value and bounded history land in Redis; when
//! the server is killed Pulse keeps serving, the sink turns degraded with the reason and
//! counts what it cannot hold; when the server comes back on the same port the sink turns
//! operational and catches up. Every sample received is written, dropped or still buffered.

mod common;

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::redis::{connection, RedisServer};
use common::{call, free_port, get};
use pulse::config::service::RedisUrl;
use redis::Commands;
use serde_json::Value;

async fn sink_stats(app: &axum::Router) -> Value {
    let (status, v) = call(app, get("/api/phase4/status")).await;
    assert!(status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE);
    v["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "redis_sink")
        .cloned()
        .expect("a redis_sink component")
}

async fn wait_for(app: &axum::Router, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = sink_stats(app).await;
        if ready(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Received = written + dropped + buffered.
fn accounted(s: &Value) -> bool {
    let n = |k: &str| {
        s[k].as_f64()
            .unwrap_or(s["extra"][k].as_f64().unwrap_or(-1.0))
    };
    n("received_total") == n("emitted_total") + n("dropped_total") + n("redis_buffered_samples")
}

#[actix::test]
async fn series_land_in_redis_and_an_outage_is_survived_counted_and_caught_up() {
    let port = free_port();
    let server = RedisServer::start(port);
    let (mut service, pipeline) = common::fast_simulated();
    service.redis.url = Some(RedisUrl(format!("redis://127.0.0.1:{port}")));
    service.redis.history_max_points = NonZeroUsize::new(5).unwrap();
    // About 2 s of the fast fleet's samples.
    service.redis.buffer_max_samples = NonZeroUsize::new(2000).unwrap();
    let app = common::app(&service, &pipeline);

    // Latest values and trimmed histories.
    let series = "DCGM_FI_DEV_GPU_UTIL{Hostname=\"sim-host\"";
    let mut conn = connection(port).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (field, latest) = loop {
        let all: std::collections::HashMap<String, String> = conn.hgetall("pulse:latest").unwrap();
        let found = all
            .into_iter()
            .find(|(k, _)| k.starts_with(series) && k.contains("gpu=\"0\""));
        if let Some(f) = found {
            break f;
        }
        assert!(Instant::now() < deadline, "no GPU utilisation in Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v: Value = serde_json::from_str(&latest).unwrap();
    assert!(v["t_ms"].as_i64().unwrap() > 1_700_000_000_000, "{latest}");
    assert!(v["value"].as_f64().is_some(), "{latest}");
    let history_key = format!("pulse:history:{field}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while conn.llen::<_, usize>(&history_key).unwrap() < 5 {
        assert!(Instant::now() < deadline, "history never reached 5 points");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let history: Vec<String> = conn.lrange(&history_key, 0, -1).unwrap();
    assert_eq!(history.len(), 5, "trimmed to history_max_points");
    let times: Vec<i64> = history
        .iter()
        .map(|h| {
            serde_json::from_str::<Value>(h).unwrap()["t_ms"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {times:?}"
    );
    let ttl: i64 = conn.ttl(&history_key).unwrap();
    assert!(ttl > 3000 && ttl <= 3600, "{ttl}");
    let s = sink_stats(&app).await;
    assert_eq!(s["state"], "operational", "{s}");

    // Redis goes away: Pulse keeps serving; the sink says why and counts what it drops.
    drop(conn);
    drop(server);
    let s = wait_for(&app, "never degraded", |s| s["state"] == "degraded").await;
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("redis at redis://127.0.0.1:{port} unreachable")),
        "{s}"
    );
    let s = wait_for(&app, "the buffer never overflowed", |s| {
        s["dropped_total"].as_u64() > Some(0)
    })
    .await;
    assert!(
        s["extra"]["redis_buffered_samples"].as_f64() <= Some(2000.0),
        "{s}"
    );
    assert!(accounted(&s), "{s}");
    let (status, _) = call(&app, get("/api/phase4/dashboard/summary")).await;
    assert_eq!(status, StatusCode::OK);

    // Back on the same port: operational again, new values written, everything accounted.
    let restarted = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let _server = RedisServer::start(port);
    let s = wait_for(&app, "never recovered", |s| s["state"] == "operational").await;
    assert!(accounted(&s), "{s}");
    let mut conn = connection(port).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let latest: Option<String> = conn.hget("pulse:latest", &field).unwrap();
        let t = latest
            .map(|l| {
                serde_json::from_str::<Value>(&l).unwrap()["t_ms"]
                    .as_i64()
                    .unwrap()
            })
            .unwrap_or(0);
        if t >= restarted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no fresh value after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_bad_redis_url_names_the_key() {
    let err = pulse::config::service::ServiceConfig::load(
        "x.toml",
        "[redis]\nurl = \"http://localhost:6379\"\n",
        |_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("x.toml:2:7: `redis.url`"), "{err}");
    assert!(err.contains("not a Redis URL"), "{err}");
}

#[actix::test]
async fn opened_anomalies_are_listed_in_redis() {
    let port = free_port();
    let _server = RedisServer::start(port);
    let (mut service, mut pipeline) = common::fast_simulated();
    service.redis.url = Some(RedisUrl(format!("redis://127.0.0.1:{port}")));
    pipeline.sources.gpu.simulated.scenarios = vec![pulse::Scenario::LoadSpike];
    pipeline.anomaly.detector.warmup_samples = 20;
    pipeline.anomaly.detector.rest_samples = 20;
    // Every GPU bursts at once, a workload change: here every firing opens an anomaly.
    pipeline.anomaly.workload_window_ms = 0;
    let app = common::app(&service, &pipeline);
    let mut conn = connection(port).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let list: Vec<String> = conn.lrange("pulse:anomalies", 0, -1).unwrap();
        if let Some(first) = list.first() {
            break serde_json::from_str::<Value>(first).unwrap();
        }
        assert!(Instant::now() < deadline, "no anomaly in Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let id = first["id"].as_u64().unwrap();
    let (status, api) = call(&app, get(&format!("/api/phase4/anomalies/{id}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api["series"], first["series"]);
    assert_eq!(api["first_at_ms"], first["first_at_ms"]);
    assert_eq!(api["reason"], first["reason"]);
}

#[actix::test]
async fn drain_writes_everything_buffered_before_it_answers() {
    use actix::Actor;
    use pulse::model::series::{Sample, SeriesKey};
    use pulse::SampleBatch;
    use pulse::{Drain, RedisSink, RedisSinkSettings};

    let port = free_port();
    let _server = RedisServer::start(port);
    let sink = RedisSink::new(
        RedisSinkSettings {
            url: format!("redis://127.0.0.1:{port}"),
            key_prefix: "drain:".to_string(),
            history_max_points: 10,
            history_ttl_s: 60,
            buffer_max_samples: 1_000_000,
            write_batch_samples: 100,
        },
        pulse::MailboxGauge::default(),
    )
    .unwrap()
    .start();
    let samples: Vec<Sample> = (0..5000)
        .map(|i| Sample::new(SeriesKey::shared("m", [("i", i.to_string())]), 1, i as f64))
        .collect();
    sink.send(SampleBatch::new(samples)).await.unwrap();
    // 50 round trips of 100 are needed; the answer comes when they are done.
    let left = sink.send(Drain(Duration::from_secs(10))).await.unwrap();
    assert_eq!(left, 0);
    let mut conn = connection(port).unwrap();
    let n: usize = conn.hlen("drain:latest").unwrap();
    assert_eq!(n, 5000);
}
