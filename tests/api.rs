//! API tests through the router, no port: a real pipeline (simulated fleet, fast
//! intervals) behind `api::router`, called with `oneshot`.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{call, get, poll_until, post_json, BODY_LIMIT};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

fn app() -> Router {
    let (service, pipeline) = common::fast_simulated();
    common::app(&service, &pipeline)
}

fn assert_error(v: &Value, error: &str, detail_has: &str) {
    assert_eq!(v["error"], error, "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains(detail_has),
        "detail {detail:?} lacks {detail_has:?}"
    );
}

#[actix::test]
async fn summary_and_profile_show_the_simulated_fleet() {
    let app = app();
    let summary = poll_until(&app, "/api/phase4/dashboard/summary", |v| {
        v["gpus"]["count"] == 3
    })
    .await;
    assert_eq!(summary["gpu_source"]["kind"], "simulated");
    common::schema::assert_conforms(&summary, "DashboardSummary");
    assert!(summary["gpus"]["utilization_pct"]["avg"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["gpus"]["memory"]["total_mib"], 3.0 * 81559.0);

    let profile = poll_until(&app, "/api/phase4/gpu/profile?window_s=60", |v| {
        v["gpus"].as_array().map_or(0, |g| g.len()) == 3
    })
    .await;
    common::schema::assert_conforms(&profile, "GpuProfile");
    let gpu0 = &profile["gpus"][0];
    assert_eq!(gpu0["Hostname"], "sim-host");
    assert!(gpu0["UUID"].as_str().unwrap().starts_with("GPU-"), "{gpu0}");
    assert!(gpu0["modelName"].is_string(), "{gpu0}");
    let util = &gpu0["metrics"]["DCGM_FI_DEV_GPU_UTIL"];
    assert_eq!(util["unit"], "percent");
    assert!(util["min"].as_f64().unwrap() <= util["max"].as_f64().unwrap());
    // Units are words; figures carry six significant digits at most (no binary noise of
    // averages such as 52.317953873882715).
    let metrics = gpu0["metrics"].as_object().unwrap();
    assert_eq!(metrics["DCGM_FI_DEV_FB_USED"]["unit"], "mebibytes");
    assert_eq!(metrics["DCGM_FI_DEV_SM_CLOCK"]["unit"], "megahertz");
    assert_eq!(metrics["DCGM_FI_DEV_GPU_TEMP"]["unit"], "celsius");
    for (name, figures) in metrics {
        for key in ["latest", "min", "avg", "max"] {
            let text = figures[key].to_string();
            let digits = text
                .trim_start_matches('-')
                .split(['e', 'E'])
                .next()
                .unwrap()
                .replace('.', "")
                .trim_start_matches('0')
                .trim_end_matches('0')
                .len();
            assert!(digits <= 6, "{name} {key}: {text}");
        }
    }
    assert_eq!(gpu0["processes"][0]["name"], "sim-worker");
}

#[actix::test]
async fn request_batches_are_counted_and_bad_ones_rejected_without_losing_accepted_ones() {
    let app = app();
    let good = json!([
        {"route": "/v1/generate", "status": 200, "latency_ms": 120.5, "gpu": 0, "service": "llm"},
        {"route": "/v1/generate", "status": 503, "latency_ms": 30, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}
    ]);
    let (status, v) = call(&app, post_json("/api/v1/requests", good.to_string())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["accepted"], 2);

    // Malformed JSON.
    let (status, v) = call(&app, post_json("/api/v1/requests", "[{\"route\": ")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad request", "invalid JSON");
    // Wrong type: the path names the record and the field.
    let (status, v) = call(&app, post_json("/api/v1/requests", r#"[{"route":"/a","status":200,"latency_ms":1},{"route":"/a","status":"ok","latency_ms":1}]"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad request", "[1].status");
    // Out-of-range value: the whole batch is refused, the first record too.
    let (status, v) = call(&app, post_json("/api/v1/requests", r#"[{"route":"/a","status":200,"latency_ms":1},{"route":"/a","status":700,"latency_ms":1}]"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad request", "[1].status: 700 is not an HTTP status");
    // Unknown field.
    let (status, v) = call(
        &app,
        post_json(
            "/api/v1/requests",
            r#"[{"route":"/a","status":200,"latency":1}]"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad request", "unknown field `latency`");
    // Wrong content type.
    let req = Request::post("/api/v1/requests")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(good.to_string()))
        .unwrap();
    let (status, v) = call(&app, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error(&v, "unsupported media type", "text/plain");
    // Too large.
    let big: Vec<Value> = (0..200)
        .map(|_| json!({"route": "/v1/generate", "status": 200, "latency_ms": 1}))
        .collect();
    let (status, v) = call(
        &app,
        post_json("/api/v1/requests", Value::Array(big).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&v, "payload too large", &BODY_LIMIT.to_string());

    // Exactly the two accepted records are in the summary.
    let summary = poll_until(&app, "/api/phase4/dashboard/summary", |v| {
        v["requests"]["count"] == 2
    })
    .await;
    assert_eq!(summary["requests"]["error_rate"], 0.5);
    assert_eq!(summary["requests"]["latency_ms"]["p99"], 120.5);
}

#[actix::test]
async fn unknown_routes_methods_and_parameters_get_json_errors() {
    let app = app();
    let (status, v) = call(&app, get("/api/phase4/nothing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&v, "not found", "/api/phase4/nothing");
    let (status, v) = call(&app, get("/api/phase4/gpu/cleanup")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["error"], "method not allowed");
    let (status, v) = call(&app, get("/api/phase4/gpu/profile?window_s=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad request", "window_s");
    let (status, v) = call(&app, get("/api/phase4/gpu/profile?windows=5")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad request", "windows");
    let (status, v) = call(
        &app,
        post_json("/api/phase4/gpu/cleanup", r#"{"gpu": ["0"]}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad request", "unknown field `gpu`");
    let (status, v) = call(
        &app,
        post_json("/api/phase4/gpu/cleanup", r#"{"settle_ms": 999999}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad request", "settle_ms");
}

#[actix::test]
async fn cleanup_reports_memory_before_and_after_as_measured() {
    let app = app();
    poll_until(&app, "/api/phase4/dashboard/summary", |v| {
        v["gpus"]["count"] == 3
    })
    .await;
    let (status, report) = call(
        &app,
        post_json(
            "/api/phase4/gpu/cleanup",
            r#"{"gpus": [0, "2"], "settle_ms": 300}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    common::schema::assert_conforms(&report, "CleanupReport");
    assert_eq!(report["delivered_to"], 1, "the simulator subscribes");
    let gpus = report["gpus"].as_array().unwrap();
    assert_eq!(
        gpus.iter()
            .map(|g| g["gpu"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["0", "2"]
    );
    for g in gpus {
        assert!(g["after_at_ms"].as_i64().unwrap() > report["issued_at_ms"].as_i64().unwrap());
        assert!(g["released_mib"].as_f64().unwrap() > 5000.0, "{g}");
    }
    assert_eq!(report["not_measured"], 0);
    // A `null` body is no body: every GPU.
    let (status, every) = call(&app, post_json("/api/phase4/gpu/cleanup", "null")).await;
    assert_eq!(status, StatusCode::OK, "{every}");
    assert_eq!(every["gpus"].as_array().map(Vec::len), Some(3), "{every}");
}

#[actix::test]
async fn a_cleanup_of_a_gpu_nobody_has_seen_is_a_404_and_sends_nothing() {
    let app = app();
    poll_until(&app, "/api/phase4/dashboard/summary", |v| {
        v["gpus"]["count"] == 3
    })
    .await;
    let sampler_cleanups = |status: &serde_json::Value| {
        status["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "gpu_sampler")
            .unwrap()["extra"]["cleanups_total"]
            .clone()
    };
    let (_, before) = call(&app, get("/api/phase4/status")).await;
    let (status, v) = call(
        &app,
        post_json(
            "/api/phase4/gpu/cleanup",
            r#"{"gpus": ["0", 9], "settle_ms": 0}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_error(
        &v,
        "not found",
        "no GPU 9 reported its memory in the last 10 s; GPUs that did: 0, 1, 2",
    );
    let (_, after) = call(&app, get("/api/phase4/status")).await;
    assert_eq!(sampler_cleanups(&before), sampler_cleanups(&after));
    assert_eq!(sampler_cleanups(&after), 0.0);
}

#[actix::test]
async fn status_metrics_and_cache_endpoints() {
    let app = app();
    let (status, v) = call(&app, get("/api/phase4/status")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "operational");
    common::schema::assert_conforms(&v, "StatusReport");
    let names: Vec<&str> = v["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "anomaly_detector",
            "window_store",
            "actions",
            "rule_engine",
            "predictor",
            "gpu_sampler",
            "request_sampler",
            "query",
            "tracing"
        ]
    );
    // The status shape of the system Pulse replaces, tiers and all.
    let (status, v) = call(&app, get("/api/phase4/status?format=phase4")).await;
    assert_eq!(status, StatusCode::OK);
    common::schema::assert_conforms(&v, "Phase4Status");
    assert_eq!(
        v,
        serde_json::json!({
            "status": "success",
            "phase4_enabled": true,
            "components": {
                "tier1": {"gpu_optimizer": "operational", "dashboard": "operational", "cache_manager": "operational"},
                "tier2": {"predictive_optimizer": "operational", "alerting_system": "operational"},
                "tier3": {"anomaly_detector": "operational", "tracing_system": "operational"},
            },
        })
    );
    let (status, v) = call(&app, get("/api/phase4/status?format=xml")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["detail"].as_str().unwrap().contains("xml"), "{v}");

    poll_until(&app, "/api/phase4/dashboard/summary", |v| {
        v["gpus"]["count"] == 3
    })
    .await;
    call(&app, get("/api/phase4/dashboard/summary")).await;
    let (_, stats) = call(&app, get("/api/phase4/cache/stats")).await;
    assert!(
        stats["hits"].as_u64().unwrap() + stats["misses"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    let (status, cleared) = call(
        &app,
        Request::post("/api/phase4/cache/clear")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(cleared["cleared"].as_u64().unwrap() >= 1);
    let (_, stats) = call(&app, get("/api/phase4/cache/stats")).await;
    assert_eq!(stats["entries"], 0);

    let resp = app.clone().oneshot(get("/metrics")).await.unwrap();
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("# TYPE DCGM_FI_DEV_GPU_UTIL gauge"));
    assert!(text.contains("DCGM_FI_DEV_FB_USED{Hostname=\"sim-host\""));
    assert!(text.contains("pulse_mailbox_backlog{component=\"window_store\"}"));
    assert!(text.contains("pulse_samples_dropped_total 0"));
}

#[actix::test]
async fn the_probes_say_alive_and_ready() {
    let app = app();
    let (status, v) = call(&app, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "alive");
    common::schema::assert_conforms(&v, "Alive");
    let v = poll_until(&app, "/readyz", |v| v["ready"] == true).await;
    common::schema::assert_conforms(&v, "Readiness");
    assert_eq!(v["down"], json!([]));
    assert_ne!(v["status"], "down");
}
