//! The query cache's second tier in a real `redis-server`: a computed view is written to
//! `pulse:cache:<view>:<epoch>`; a Pulse restarted with `kill -9` serves that same view
//! from Redis instead of computing it; clearing the cache clears both tiers; with Redis
//! gone, views are computed and the failures are counted, never answered as errors; with
//! Redis hung (stopped), views do not wait for it.

mod common;

use std::time::{Duration, Instant};

use common::free_port;
use common::process::Pulse;
use common::redis::{connection, RedisServer};
use serde_json::Value;

/// One refresh period of an hour: the test runs well inside one period (checked).
const REFRESH_MS: i64 = 3_600_000;

fn start(redis: &str) -> Pulse {
    Pulse::start(&[
        ("PULSE_REDIS_URL", redis),
        ("PULSE_DASHBOARD_REFRESH_MS", "3600000"),
        ("PULSE_CACHE_TTL_MS", "3600000"),
    ])
}

fn cached(redis_port: u16, key: &str) -> Option<String> {
    let mut conn = connection(redis_port).unwrap();
    redis::cmd("GET").arg(key).query(&mut conn).unwrap()
}

fn tier(p: &Pulse) -> Value {
    let (status, v) = p.get("/api/phase4/cache/stats");
    assert_eq!(status, 200, "{v}");
    v["redis_tier"].clone()
}

#[test]
fn views_outlive_a_restart_in_redis_and_clear_empties_both_tiers() {
    let port = free_port();
    let redis = RedisServer::start(port);
    let url = format!("redis://127.0.0.1:{port}");

    let first = start(&url);
    let body = first.get_text("/api/phase4/dashboard/summary");
    let summary: Value = serde_json::from_str(&body).unwrap();
    let generated = summary["generated_at_ms"].as_i64().unwrap();
    let key = format!("pulse:cache:summary:{}", generated.div_euclid(REFRESH_MS));
    let deadline = Instant::now() + Duration::from_secs(10);
    while cached(port, &key).is_none() {
        assert!(Instant::now() < deadline, "{key} never written");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(cached(port, &key).as_deref(), Some(body.as_str()));
    let t = tier(&first);
    assert_eq!(
        (t["hits"].as_u64(), t["misses"].as_u64()),
        (Some(0), Some(1)),
        "{t}"
    );

    // A new process, same period: the view comes from Redis, byte for byte.
    first.kill9();
    let second = start(&url);
    let again = second.get_text("/api/phase4/dashboard/summary");
    let same_period = (generated.div_euclid(REFRESH_MS))
        == (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64)
            .div_euclid(REFRESH_MS);
    if same_period {
        assert_eq!(again, body);
        let t = tier(&second);
        assert_eq!(
            (t["hits"].as_u64(), t["errors"].as_u64()),
            (Some(1), Some(0)),
            "{t}"
        );
    }

    // Clear: both tiers; the next view is computed anew.
    let (status, cleared) = second.post("/api/phase4/cache/clear", "application/json", "");
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["cleared"], 1, "{cleared}");
    assert!(cleared["cleared_redis"].as_u64() >= Some(1), "{cleared}");
    assert_eq!(cached(port, &key), None);
    let fresh: Value =
        serde_json::from_str(&second.get_text("/api/phase4/dashboard/summary")).unwrap();
    assert_ne!(fresh["generated_at_ms"], summary["generated_at_ms"]);

    // Redis gone: views are still served (computed), the tier counts its failures, and a
    // clear says which tier it could not empty.
    drop(redis);
    second.post("/api/phase4/cache/clear", "application/json", "");
    let (status, _) = second.get("/api/phase4/dashboard/summary");
    assert_eq!(status, 200);
    let t = tier(&second);
    assert!(t["errors"].as_u64() > Some(0), "{t}");
    assert!(t["last_error"].is_string(), "{t}");
    let (status, v) = second.post("/api/phase4/cache/clear", "application/json", "");
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"], "unavailable", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("Redis tier"), "{v}");
    second.stop();
}

#[test]
fn a_hung_redis_does_not_hold_the_views() {
    let port = free_port();
    let redis = RedisServer::start(port);
    let pulse = Pulse::start(&[
        (
            "PULSE_REDIS_URL",
            format!("redis://127.0.0.1:{port}").as_str(),
        ),
        ("PULSE_DASHBOARD_REFRESH_MS", "200"),
        ("PULSE_CACHE_TTL_MS", "200"),
    ]);
    let (status, _) = pulse.get("/api/phase4/dashboard/summary");
    assert_eq!(status, 200);
    redis.pause(true);
    // Each request below misses the first tier (a new refresh period): before, each waited
    // Redis' 5 s round-trip timeout; now the Redis tier gets 25 ms, then is skipped.
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(250));
        let started = Instant::now();
        let (status, _) = pulse.get("/api/phase4/dashboard/summary");
        assert_eq!(status, 200);
        slowest = slowest.max(started.elapsed());
    }
    redis.pause(false);
    eprintln!("slowest summary with Redis stopped: {slowest:?}");
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
    let t = tier(&pulse);
    assert!(t["errors"].as_u64() >= Some(1), "{t}");
}
