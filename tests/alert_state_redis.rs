//! Alert state survives `kill -9`: the real binary with a real `redis-server`. Active
//! alerts come back with their ids, `active_at_ms` (a pending alert's `for` timer keeps
//! running) and acknowledgements, and the history comes back with a resolved alert. With
//! Redis gone, an acknowledgement is refused with 503 instead of being taken and lost; when
//! Redis comes back empty, Pulse writes its whole state again.

mod common;

use std::time::{Duration, Instant};

use common::free_port;
use common::process::Pulse;
use common::redis::RedisServer;
use serde_json::{json, Value};

const PIPELINE: &str = r#"
[sources.gpu]
mode = "simulated"
interval_ms = 100
[sources.gpu.simulated]
gpus = 2
scenarios = ["steady"]
[sources.requests]
interval_ms = 100
"#;

const RULES: &str = r#"
groups:
  - name: restart-test
    interval: 200ms
    rules:
      - alert: AlwaysFiring
        expr: max by (Hostname) (DCGM_FI_DEV_GPU_UTIL) >= 0
        labels: {severity: info}
      - alert: WaitingAnHour
        expr: max by (Hostname) (DCGM_FI_DEV_GPU_UTIL) >= 0
        for: 1h
        labels: {severity: info}
      - alert: FlagRaised
        expr: sum(rate(http_requests_total{service="flag"}[1s])) > 0
        labels: {severity: warning}
"#;

fn start(dir: &std::path::Path, redis: &str) -> Pulse {
    Pulse::start_with_files(
        dir,
        PIPELINE,
        RULES,
        &[
            ("PULSE_RULES_BUILTIN_PACK", "false"),
            ("PULSE_REDIS_URL", redis),
        ],
    )
}

fn alert<'a>(active: &'a Value, name: &str) -> Option<&'a Value> {
    active["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == name)
}

fn wait(pulse: &Pulse, path: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = pulse.get(path);
        if status == 200 && ready(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn active_alerts_acknowledgements_and_history_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = RedisServer::start(port);
    let url = format!("redis://127.0.0.1:{port}");

    let pulse = start(dir.path(), &url);
    let active = wait(
        &pulse,
        "/api/phase4/alerts/active",
        "alerts never active",
        |v| {
            alert(v, "AlwaysFiring").is_some_and(|a| a["state"] == "firing")
                && alert(v, "WaitingAnHour").is_some()
        },
    );
    let firing = alert(&active, "AlwaysFiring").unwrap().clone();
    let waiting = alert(&active, "WaitingAnHour").unwrap().clone();
    assert_eq!(waiting["state"], "pending");
    let id = firing["id"].as_str().unwrap();
    let (status, v) = pulse.post(
        &format!("/api/phase4/alerts/{id}/acknowledge"),
        "application/json",
        r#"{"by": "ana", "comment": "looking"}"#,
    );
    assert_eq!(status, 200, "{v}");

    // An alert that fires while a flag is raised, then resolves into the history.
    let flag = json!([{"route": "/flag", "status": 200, "latency_ms": 1.0, "service": "flag"}]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        pulse.post("/api/v1/requests", "application/json", &flag.to_string());
        let (_, v) = pulse.get("/api/phase4/alerts/active");
        if alert(&v, "FlagRaised").is_some_and(|a| a["state"] == "firing") {
            break;
        }
        assert!(Instant::now() < deadline, "FlagRaised never fired: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let history = wait(
        &pulse,
        "/api/phase4/alerts/history",
        "FlagRaised never resolved",
        |v| {
            v["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["name"] == "FlagRaised")
        },
    );
    let resolved = history["alerts"][0].clone();

    pulse.kill9();

    // A new process finds everything again, as soon as it answers.
    let pulse = start(dir.path(), &url);
    let (status, active) = pulse.get("/api/phase4/alerts/active");
    assert_eq!(status, 200);
    let again = alert(&active, "AlwaysFiring").expect("the firing alert is back");
    assert_eq!(again["id"], firing["id"]);
    assert_eq!(again["state"], "firing");
    assert_eq!(again["active_at_ms"], firing["active_at_ms"]);
    assert_eq!(again["fired_at_ms"], firing["fired_at_ms"]);
    assert_eq!(again["acknowledgement"]["by"], "ana");
    assert_eq!(again["acknowledgement"]["comment"], "looking");
    let pending = alert(&active, "WaitingAnHour").expect("the pending alert is back");
    assert_eq!(pending["state"], "pending");
    assert_eq!(
        pending["active_at_ms"], waiting["active_at_ms"],
        "its `for` timer kept running"
    );
    let (_, history) = pulse.get("/api/phase4/alerts/history");
    assert_eq!(history["alerts"][0]["id"], resolved["id"]);
    assert_eq!(
        history["alerts"][0]["resolved_at_ms"],
        resolved["resolved_at_ms"]
    );
    let restored = engine(&pulse);
    assert!(
        restored["reason"]
            .as_str()
            .unwrap()
            .contains("restored 2 active alerts, 1 acknowledgements, 1 history entries"),
        "{restored}"
    );

    // Without Redis an acknowledgement cannot be kept, so it is refused, not lost later.
    drop(server);
    let pending_id = pending["id"].as_str().unwrap();
    let (status, v) = pulse.post(
        &format!("/api/phase4/alerts/{pending_id}/acknowledge"),
        "application/json",
        r#"{"by": "bo"}"#,
    );
    assert_eq!(status, 503, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("could not be stored in Redis"),
        "{v}"
    );
    let (_, active) = pulse.get("/api/phase4/alerts/active");
    assert!(alert(&active, "WaitingAnHour").unwrap()["acknowledgement"].is_null());
    let e = engine_in(&pulse, "degraded");
    assert!(
        e["reason"]
            .as_str()
            .unwrap()
            .contains("cannot be written to Redis"),
        "{e}"
    );

    // Redis comes back empty (no persistence on its side): Pulse writes its whole state
    // again, so a second kill -9 still loses nothing.
    let (_server, _pulse, active) = back_empty_then_kill_9(pulse, dir.path(), port);
    let again = alert(&active, "AlwaysFiring").expect("back after the resync");
    assert_eq!(again["active_at_ms"], firing["active_at_ms"]);
    assert_eq!(again["acknowledgement"]["by"], "ana");
    assert_eq!(
        alert(&active, "WaitingAnHour").unwrap()["active_at_ms"],
        waiting["active_at_ms"]
    );
}

/// The rule engine's entry in a status answer.
fn rule_engine(status: &Value) -> Value {
    status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "rule_engine")
        .cloned()
        .unwrap()
}

/// The rule engine's entry in status.
fn engine(pulse: &Pulse) -> Value {
    rule_engine(&pulse.get("/api/phase4/status").1)
}

/// The rule engine's entry in status once it is in `state` (within 20 s; status reports
/// are reused for 100 ms).
fn engine_in(pulse: &Pulse, state: &str) -> Value {
    let what = format!("rule engine never {state}");
    rule_engine(&wait(pulse, "/api/phase4/status", &what, |s| {
        rule_engine(s)["state"] == state
    }))
}

/// Starts an empty Redis on `port` where one went away, waits until `pulse` has written its
/// state again (operational), kills it with SIGKILL and starts it again: the new Redis,
/// the new Pulse and its active alerts.
fn back_empty_then_kill_9(
    pulse: Pulse,
    dir: &std::path::Path,
    port: u16,
) -> (RedisServer, Pulse, Value) {
    let server = RedisServer::start(port);
    engine_in(&pulse, "operational");
    pulse.kill9();
    let pulse = start(dir, &format!("redis://127.0.0.1:{port}"));
    let (_, active) = pulse.get("/api/phase4/alerts/active");
    (server, pulse, active)
}

#[test]
fn redis_going_away_shows_before_any_alert_changes_and_gets_the_whole_state_back() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let server = RedisServer::start(port);
    let pulse = start(dir.path(), &url);
    let active = wait(
        &pulse,
        "/api/phase4/alerts/active",
        "alerts never active",
        |v| alert(v, "AlwaysFiring").is_some_and(|a| a["state"] == "firing"),
    );
    let firing = alert(&active, "AlwaysFiring").unwrap().clone();

    // Redis goes away while every alert holds (one firing, one pending for an hour):
    // nothing is written, and status says so anyway.
    drop(server);
    let e = engine_in(&pulse, "degraded");
    assert!(e["reason"].as_str().unwrap().contains("Redis"), "{e}");

    // It comes back empty (no persistence on its side), with no alert having changed:
    // Pulse writes its whole state again, so a kill -9 loses nothing.
    let (_server, _pulse, active) = back_empty_then_kill_9(pulse, dir.path(), port);
    let again = alert(&active, "AlwaysFiring").expect("back after the resync");
    assert_eq!(again["active_at_ms"], firing["active_at_ms"]);
}

#[test]
fn an_acknowledgement_answers_quickly_when_redis_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = RedisServer::start(port);
    let pulse = start(dir.path(), &format!("redis://127.0.0.1:{port}"));
    let active = wait(
        &pulse,
        "/api/phase4/alerts/active",
        "alerts never active",
        |v| alert(v, "AlwaysFiring").is_some_and(|a| a["state"] == "firing"),
    );
    let id = alert(&active, "AlwaysFiring").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    server.pause(true);
    let started = Instant::now();
    let (status, v) = pulse.post(
        &format!("/api/phase4/alerts/{id}/acknowledge"),
        "application/json",
        r#"{"by": "ana"}"#,
    );
    let took = started.elapsed();
    server.pause(false);
    // Not kept, and said so within the acknowledgement's budget (1 s), not Redis' 5 s.
    assert_eq!(status, 503, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("Redis"), "{v}");
    assert!(took < Duration::from_secs(4), "{took:?}");
}
