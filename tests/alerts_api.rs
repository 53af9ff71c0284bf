//! Alerts through the API: a rule file in a temporary directory, the simulated fleet, the
//! real rule engine. Active list and filters, acknowledgement (kept while firing, found in
//! the history), reload with a bad file (old rules keep running), 404 and 409.

mod common;

use std::path::Path;

use axum::http::StatusCode;
use axum::Router;
use common::{call, get, poll_until as poll, post_json as post};
use serde_json::Value;

const HOT: &str = r#"
groups:
  - name: test
    interval: 100ms
    rules:
      - alert: Hot
        expr: DCGM_FI_DEV_GPU_TEMP > 0
        labels: {severity: critical}
        annotations: {summary: 'GPU {{ $labels.gpu }} at {{ $value }}'}
"#;

const CALM: &str = r#"
groups:
  - name: test
    interval: 100ms
    rules:
      - alert: Hot
        expr: DCGM_FI_DEV_GPU_TEMP > 1000
        labels: {severity: critical}
"#;

fn app(rules_dir: &Path) -> Router {
    let (mut service, pipeline) = common::fast_simulated();
    service.rules.builtin_pack = false;
    service.rules.paths = vec![rules_dir.to_path_buf()];
    common::app(&service, &pipeline)
}

#[actix::test]
async fn alerts_fire_are_acknowledged_resolve_and_land_in_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hot.yml");
    std::fs::write(&file, HOT).unwrap();
    let app = app(dir.path());

    let active = poll(&app, "/api/phase4/alerts/active?state=firing", |v| {
        v["count"] == 3
    })
    .await;
    let first = &active["alerts"][0];
    assert_eq!(first["name"], "Hot");
    assert_eq!(first["labels"]["severity"], "critical");
    assert!(first["annotations"]["summary"]
        .as_str()
        .unwrap()
        .starts_with("GPU "));
    assert!(first["acknowledgement"].is_null());

    // The rules as loaded, with their active alerts.
    let (status, rules) = call(&app, get("/api/phase4/rules")).await;
    assert_eq!(status, StatusCode::OK);
    common::schema::assert_conforms(&rules, "RuleGroups");
    let rule = &rules["groups"][0]["rules"][0];
    assert_eq!(
        (rule["kind"].as_str(), rule["name"].as_str()),
        (Some("alert"), Some("Hot"))
    );
    assert_eq!(rule["expr"], "DCGM_FI_DEV_GPU_TEMP > 0");
    assert_eq!(rule["active_alerts"], 3);
    assert!(rule["last_error"].is_null());

    // ALERTS and ALERTS_FOR_STATE in the exposition, as Prometheus writes them.
    let (_, metrics) = call(&app, get("/metrics")).await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains(r#"ALERTS{Hostname="sim-host",UUID="#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"alertname="Hot",alertstate="firing""#));
    assert!(metrics.contains("ALERTS_FOR_STATE{"));

    let (status, one) = call(
        &app,
        get("/api/phase4/alerts/active?match=%7Bgpu%3D%221%22%7D"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["count"], 1);
    assert_eq!(one["alerts"][0]["labels"]["gpu"], "1");
    common::schema::assert_conforms(&one, "AlertPage");
    let id = one["alerts"][0]["id"].as_str().unwrap().to_string();

    // Paged as the history is: the second of three, and the total before paging.
    let (status, second) = call(&app, get("/api/phase4/alerts/active?limit=1&offset=1")).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(
        (second["total"].as_u64(), second["count"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(second["alerts"][0]["id"], active["alerts"][1]["id"]);
    let (status, v) = call(&app, get("/api/phase4/alerts/active?limit=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    // Acknowledge, twice: the same acknowledgement comes back.
    let uri = format!("/api/phase4/alerts/{id}/acknowledge");
    let (status, acked) = call(&app, post(&uri, r#"{"by": "ana", "comment": "looking"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    assert_eq!(acked["acknowledgement"]["by"], "ana");
    common::schema::assert_conforms(&acked, "AlertView");
    let (_, again) = call(&app, post(&uri, r#"{"by": "bob"}"#)).await;
    assert_eq!(again["acknowledgement"], acked["acknowledgement"]);
    let summary = poll(&app, "/api/phase4/dashboard/summary", |v| {
        v["alerts"]["acknowledged"] == 1
    })
    .await;
    assert_eq!(summary["alerts"]["firing"], 3);

    // Bad input and unknown ids.
    let (status, _) = call(
        &app,
        post("/api/phase4/alerts/0000/acknowledge", r#"{"by": "ana"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = call(&app, post(&uri, r#"{"who": "ana"}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = call(&app, get("/api/phase4/alerts/active?state=burning")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["detail"].as_str().unwrap().contains("state"));

    // A bad rule file: refused, named, and the old rules keep running.
    std::fs::write(
        &file,
        "groups:\n  - name: test\n    rules:\n      - alert: Hot\n        expr: rate(\n",
    )
    .unwrap();
    let (status, v) = call(&app, post("/api/v1/rules/reload", "")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("hot.yml")
            && detail.contains("group \"test\"")
            && detail.contains("alert \"Hot\""),
        "{detail}"
    );
    let (_, still) = call(&app, get("/api/phase4/alerts/active")).await;
    assert_eq!(still["count"], 3);
    // Status reports are reused for up to 100 ms: poll until this one shows the reload.
    let engine_state = |v: &Value| {
        v["components"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "rule_engine"))
            .map(|c| c["state"].clone())
    };
    let report = poll(&app, "/api/phase4/status", |v| {
        engine_state(v) == Some("degraded".into())
    })
    .await;
    assert!(engine_state(&report).is_some());

    // The condition clears: the alerts resolve and the acknowledged one is in the history.
    std::fs::write(&file, CALM).unwrap();
    let (status, v) = call(&app, post("/api/v1/rules/reload", "")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["rules"], 1);
    let history = poll(&app, "/api/phase4/alerts/history?name=Hot", |v| {
        v["total"] == 3
    })
    .await;
    let entry = history["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap();
    assert_eq!(entry["acknowledgement"]["by"], "ana");
    assert!(entry["resolved_at_ms"].as_i64().unwrap() >= entry["active_at_ms"].as_i64().unwrap());
    let (_, active) = call(&app, get("/api/phase4/alerts/active")).await;
    assert_eq!(active["count"], 0);
    let (status, v) = call(&app, post(&uri, r#"{"by": "ana"}"#)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    common::schema::assert_conforms(&history, "AlertPage");
    let (_, page) = call(&app, get("/api/phase4/alerts/history?limit=2&offset=2")).await;
    assert_eq!(
        (page["total"].as_u64(), page["count"].as_u64()),
        (Some(3), Some(1))
    );
}
