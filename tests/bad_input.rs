//! The bad-input table: one test per class of bad input, each asserting the exact answer a
//! user gets and that what was accepted before is still there. docs/bad-input-and-fuzzing.md's "Bad input"
//! section summarises this file.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{call, get, post_json, urlencode};
use pulse::model::series::{Sample, SeriesKey};
use pulse::{Retention, WindowStore};
use serde_json::{json, Value};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn bad(detail: &str) -> Value {
    json!({"error": "bad request", "detail": detail})
}

const ACCEPTED: &str = r#"[{"route":"/ok","status":200,"latency_ms":10,"service":"bad-input"},
                          {"route":"/ok","status":500,"latency_ms":20,"service":"bad-input"}]"#;

/// A router with one valid batch (2 records) accepted first, and a rules folder.
async fn app_with_accepted_batch(rules: &std::path::Path) -> Router {
    let (mut service, pipeline) = common::fast_simulated();
    service.rules.builtin_pack = false;
    service.rules.paths = vec![rules.to_path_buf()];
    let app = common::app(&service, &pipeline);
    let (status, v) = call(&app, post_json("/api/v1/requests", ACCEPTED)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    app
}

/// Requests of service `bad-input` Pulse has counted: (total, errors), from `/metrics`.
async fn counted(app: &Router) -> (f64, f64) {
    let (_, text) = call(app, get("/metrics")).await;
    let (mut total, mut errors) = (0.0, 0.0);
    for line in text.as_str().unwrap().lines() {
        if line.starts_with("http_requests_total{") && line.contains("service=\"bad-input\"") {
            let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            total += v;
            if line.contains("status=\"500\"") {
                errors += v;
            }
        }
    }
    (total, errors)
}

/// Every bad batch is refused whole with the exact answer; the accepted batch stays
/// counted, and nothing of a refused batch is.
#[actix::test]
async fn request_batches() {
    let rules = tempfile::tempdir().unwrap();
    let app = app_with_accepted_batch(rules.path()).await;
    let future = now_ms() + 3_600_500;
    let past = now_ms() - 48 * 3_600_000;
    let long_route = "r".repeat(300);
    let cases: Vec<(&str, String, Value)> = vec![
        (
            "malformed JSON",
            r#"[{"route":"/a","status":200,"#.to_string(),
            bad("invalid JSON: EOF while parsing a value at line 1 column 28"),
        ),
        (
            "wrong type",
            r#"[{"route":"/a","status":"200","latency_ms":1}]"#.to_string(),
            bad("invalid JSON at `[0].status`: invalid type: string \"200\", expected u16 at line 1 column 29"),
        ),
        (
            "unknown field",
            r#"[{"route":"/a","status":200,"latency_ms":1,"latency":2}]"#.to_string(),
            bad("invalid JSON at `[0].latency`: unknown field `latency`, expected one of `timestamp`, `route`, `status`, `latency_ms`, `gpu`, `trace_id`, `service` at line 1 column 52"),
        ),
        (
            "infinity (a number JSON cannot hold)",
            r#"[{"route":"/a","status":200,"latency_ms":1e999}]"#.to_string(),
            bad("invalid JSON at `[0].latency_ms`: number out of range at line 1 column 46"),
        ),
        (
            "NaN as a string",
            r#"[{"route":"/a","status":200,"latency_ms":"NaN"}]"#.to_string(),
            bad("invalid JSON at `[0].latency_ms`: invalid type: string \"NaN\", expected f64 at line 1 column 46"),
        ),
        (
            "negative latency, second record",
            r#"[{"route":"/a","status":200,"latency_ms":1},{"route":"/a","status":200,"latency_ms":-5}]"#.to_string(),
            bad("[1].latency_ms: -5 is not a latency from 0 to 86400000 ms (a day)"),
        ),
        (
            "status out of range",
            r#"[{"route":"/a","status":700,"latency_ms":1}]"#.to_string(),
            bad("[0].status: 700 is not an HTTP status (100-599)"),
        ),
        (
            "timestamp an hour in the future",
            format!(r#"[{{"route":"/a","status":200,"latency_ms":1,"timestamp":{future}}}]"#),
            bad(&format!("[0].timestamp: {future} is 3600 s ahead of Pulse's clock (at most 300 s)")),
        ),
        (
            "timestamp two days old",
            format!(r#"[{{"route":"/a","status":200,"latency_ms":1,"timestamp":{past}}}]"#),
            bad(&format!("[0].timestamp: {past} is 48 h old (at most 24 h)")),
        ),
        (
            "timestamp zero",
            r#"[{"route":"/a","status":200,"latency_ms":1,"timestamp":0}]"#.to_string(),
            bad("[0].timestamp: 0 is not a Unix time in milliseconds"),
        ),
        (
            "enormous label (route)",
            format!(r#"[{{"route":"{long_route}","status":200,"latency_ms":1}}]"#),
            bad("[0].route: must be 1 to 256 bytes long"),
        ),
        (
            "invalid trace id",
            r#"[{"route":"/a","status":200,"latency_ms":1,"trace_id":"xyz"}]"#.to_string(),
            bad("[0].trace_id: must be 32 hex digits, not all zero (W3C trace id)"),
        ),
        (
            "not an array",
            r#"{"route":"/a"}"#.to_string(),
            bad("invalid JSON: invalid type: map, expected a sequence at line 1 column 0"),
        ),
    ];
    for (class, body, expected) in &cases {
        let (status, v) = call(&app, post_json("/api/v1/requests", body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{class}: {v}");
        assert_eq!(&v, expected, "{class}");
    }

    // Wrong content type, no body, huge body.
    let req = Request::post("/api/v1/requests")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(ACCEPTED))
        .unwrap();
    let (status, v) = call(&app, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        v,
        json!({"error":"unsupported media type","detail":"Content-Type \"text/plain\": expected application/json"})
    );
    let huge = format!(
        "[{}]",
        vec![r#"{"route":"/a","status":200,"latency_ms":1}"#; 60_000].join(",")
    );
    assert!(huge.len() > common::BODY_LIMIT);
    let (status, v) = call(&app, post_json("/api/v1/requests", huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        v,
        json!({"error":"payload too large","detail":format!("request body larger than {} bytes", common::BODY_LIMIT)})
    );

    // The accepted batch is counted once, and nothing refused was. (The request sampler
    // publishes its counters on its next tick.)
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let c = counted(&app).await;
        if c == (2.0, 1.0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "counted {c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Unknown ids and invalid ids: 404 and 400 with the exact answer.
#[actix::test]
async fn unknown_and_invalid_ids() {
    let rules = tempfile::tempdir().unwrap();
    let app = app_with_accepted_batch(rules.path()).await;
    let cases = [
        (
            get("/api/phase4/anomalies/999999"),
            StatusCode::NOT_FOUND,
            json!({"error":"not found","detail":"no anomaly 999999 (it may have aged out)"}),
        ),
        (
            get("/api/phase4/anomalies/nine"),
            StatusCode::BAD_REQUEST,
            bad("id: \"nine\" is not an anomaly id (a number)"),
        ),
        (
            get("/api/phase4/traces/4bf92f3577b34da6a3ce929d0e0e4736"),
            StatusCode::NOT_FOUND,
            json!({"error":"not found","detail":"no trace 4bf92f3577b34da6a3ce929d0e0e4736: no spans and no request records with this id (traces age out; the store keeps the newest)"}),
        ),
        (
            get("/api/phase4/traces/not-a-trace"),
            StatusCode::BAD_REQUEST,
            bad("trace_id: \"not-a-trace\" is not a trace id (32 hex digits, not all zero)"),
        ),
        (
            post_json(
                "/api/phase4/alerts/ffffffffffffffff/acknowledge",
                r#"{"by":"ana"}"#,
            ),
            StatusCode::NOT_FOUND,
            json!({"error":"not found","detail":"no alert with id ffffffffffffffff"}),
        ),
        (
            get("/api/phase4/nothing-here"),
            StatusCode::NOT_FOUND,
            json!({"error":"not found","detail":"no route for GET /api/phase4/nothing-here"}),
        ),
    ];
    for (req, status, expected) in cases {
        let uri = req.uri().to_string();
        let (s, v) = call(&app, req).await;
        assert_eq!((s, &v), (status, &expected), "{uri}");
    }
}

/// A label matcher whose regex would compile to more than 4 MiB (here a million states): 400
/// naming the regex and the limit; the same selector with a small regex is served.
#[actix::test]
async fn oversized_regex_in_a_selector() {
    let rules = tempfile::tempdir().unwrap();
    let app = app_with_accepted_batch(rules.path()).await;
    let (status, v) = call(
        &app,
        get(&format!(
            "/api/v1/series?match={}",
            urlencode(r#"{__name__=~"(a{1000}){1000}"}"#)
        )),
    )
    .await;
    assert_eq!(
        (status, v),
        (
            StatusCode::BAD_REQUEST,
            bad(
                "match: the regex \"(a{1000}){1000}\" is too large: compiled, it would take \
                 more than 4096 KiB (the limit for one label matcher)"
            )
        )
    );
    let (status, v) = call(
        &app,
        get(&format!(
            "/api/v1/series?match={}",
            urlencode(r#"{__name__=~"(a{10}){10}"}"#)
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

/// A bad rule file: the reload is refused with 422 naming file, group, rule and field; the
/// rules loaded before keep running.
#[actix::test]
async fn bad_rule_file_keeps_the_old_rules() {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(
        rules.path().join("good.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: Busy\n        expr: DCGM_FI_DEV_GPU_UTIL > 1000\n",
    )
    .unwrap();
    let app = app_with_accepted_batch(rules.path()).await;
    let (_, before) = call(&app, get("/api/phase4/rules")).await;
    assert_eq!(before["groups"].as_array().unwrap().len(), 1, "{before}");
    let bad_file = rules.path().join("bad.yml");
    std::fs::write(
        &bad_file,
        "groups:\n  - name: b\n    rules:\n      - alert: Broken\n        expr: rate(DCGM_FI_DEV_GPU_UTIL[5m]\n",
    )
    .unwrap();
    let (status, v) = call(&app, post_json("/api/v1/rules/reload", "")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(
        v["detail"],
        format!(
            "rules not reloaded, the previous rules keep running: {}: group \"b\", alert \"Broken\" (line 4): \
             expr \"rate(DCGM_FI_DEV_GPU_UTIL[5m]\": unclosed left parenthesis",
            bad_file.display()
        )
    );
    let (_, after) = call(&app, get("/api/phase4/rules")).await;
    // The same groups and rules; an evaluation between the two reads may move
    // `last_eval_at_ms`, which says nothing of which rules run.
    let without_eval_time = |v: &serde_json::Value| {
        let mut groups = v["groups"].clone();
        for g in groups.as_array_mut().unwrap() {
            g.as_object_mut().unwrap().remove("last_eval_at_ms");
        }
        groups
    };
    assert_eq!(without_eval_time(&after), without_eval_time(&before));
}

/// A bad config value: the error names file, line, column and key (and the process would
/// exit 2 before starting; `tests/config_files.rs` checks that through the binary).
#[test]
fn bad_config_names_file_line_and_key() {
    use pulse::config::service::ServiceConfig;
    let text = "[server]\nlisten = \"127.0.0.1:5000\"\n\n[cache]\nttl_ms = -5\n";
    let err = ServiceConfig::load("pulse.toml", text, |_| None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pulse.toml:5:10: `cache.ttl_ms`: invalid value: integer `-5`, expected a nonzero u64"
    );
    let err =
        ServiceConfig::load("pulse.toml", "[auth]\ntoken = \"short\"\n", |_| None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pulse.toml:2:9: `auth.token`: a token must be at least 16 characters (this one has 5)"
    );
}

/// Duplicate and out-of-order samples (what `pulse aggregate` may read twice after a
/// rebalance): a duplicate timestamp replaces the point, an older one is refused and
/// counted, and every point stored before is kept.
#[test]
fn duplicate_and_out_of_order_samples() {
    let mut store = WindowStore::new(Retention {
        max_points: 100,
        max_age_ms: 3_600_000,
        max_series: 10,
    });
    let s = SeriesKey::shared("DCGM_FI_DEV_GPU_UTIL", [("gpu", "0"), ("Hostname", "h")]);
    let first: Vec<Sample> = (1..=5)
        .map(|i| Sample::new(s.clone(), i * 1000, i as f64))
        .collect();
    let out = store.ingest(&first);
    assert_eq!(
        (out.stored, out.replaced, out.refused_out_of_order),
        (5, 0, 0)
    );
    // The same batch again (an at-least-once replay): each point's value is replaced by
    // itself except the newest, which is the only one not older than the newest stored.
    let out = store.ingest(&first);
    assert_eq!(
        (out.stored, out.replaced, out.refused_out_of_order),
        (0, 1, 4)
    );
    // Out of order: refused, counted.
    let out = store.ingest(&[Sample::new(s.clone(), 2_500, 99.0)]);
    assert_eq!(out.refused_out_of_order, 1);
    let sel = pulse::model::selector::Selector::metric("DCGM_FI_DEV_GPU_UTIL");
    let points = store.select(&sel, 0, 10_000);
    assert_eq!(
        points[0].points,
        vec![
            (1000, 1.0),
            (2000, 2.0),
            (3000, 3.0),
            (4000, 4.0),
            (5000, 5.0)
        ]
    );
}
