//! Tracing through the API: REST calls continue the caller's `traceparent` and come back as
//! span trees; request batches carry their trace id onto the records, found beside the GPU
//! samples of their moment; batches are traced through window store, processor and sink;
//! the store stays within its bounds and says so in `/metrics`; bad requests get 400.

mod common;

use std::num::{NonZeroU64, NonZeroUsize};

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use common::{call, get, poll_until as poll};
use http_body_util::BodyExt;
use pulse::config::pipeline::SinkConfig;
use serde_json::{json, Value};
use tower::ServiceExt;

const T1: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const T2: &str = "5bf92f3577b34da6a3ce929d0e0e4736";
const T3: &str = "6bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// Calls with headers; returns status, response headers, JSON body.
async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, v)
}

fn traceparent(trace: &str, flags: &str) -> String {
    format!("00-{trace}-{PARENT}-{flags}")
}

fn shape(trace: &Value) -> Vec<(u64, String)> {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["depth"].as_u64().unwrap(),
                s["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[actix::test]
async fn a_rest_call_continues_the_callers_trace_and_comes_back_as_a_span_tree() {
    let (service, pipeline) = common::fast_simulated();
    let app = common::app(&service, &pipeline);

    let req = Request::get("/api/phase4/dashboard/summary")
        .header("traceparent", traceparent(T1, "01"))
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    let answer = headers["traceresponse"].to_str().unwrap();
    assert!(answer.starts_with(&format!("00-{T1}-")), "{answer}");

    let (status, trace) = call(&app, get(&format!("/api/phase4/traces/{T1}"))).await;
    assert_eq!(status, StatusCode::OK, "{trace}");
    common::schema::assert_conforms(&trace, "TraceAnswer");
    assert_eq!(trace["root_name"], "GET /api/phase4/dashboard/summary");
    assert_eq!(trace["remote_parent"], true);
    let root = &trace["spans"][0];
    assert_eq!(root["kind"], "server");
    assert_eq!(root["parent_span_id"], PARENT);
    assert_eq!(root["parent_is_remote"], true);
    assert_eq!(
        root["attributes"]["http.route"],
        "/api/phase4/dashboard/summary"
    );
    assert_eq!(root["attributes"]["http.response.status_code"], 200);
    assert_eq!(root["span_id"].as_str(), answer.split('-').nth(2));

    // The caller said "not sampled": Pulse does not trace it.
    let req = Request::get("/api/phase4/status")
        .header("traceparent", traceparent(T3, "00"))
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = send(&app, req).await;
    assert!(headers.get("traceresponse").is_none());
    let (status, _) = call(&app, get(&format!("/api/phase4/traces/{T3}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The listing finds it by name and by time; errors are ok/error.
    let (_, list) = call(
        &app,
        get("/api/phase4/traces?name=dashboard/summary&limit=5"),
    )
    .await;
    assert_eq!(list["traces"][0]["trace_id"], T1, "{list}");
    common::schema::assert_conforms(&list, "TracePage");
    assert_eq!(list["traces"][0]["status"], "ok");
    let (_, none) = call(
        &app,
        get("/api/phase4/traces?name=dashboard/summary&status=error"),
    )
    .await;
    assert_eq!(none["count"], 0);
}

#[actix::test]
async fn a_request_batch_puts_its_trace_id_on_the_records_beside_the_gpu_samples() {
    let (service, pipeline) = common::fast_simulated();
    let app = common::app(&service, &pipeline);
    // GPU samples first, so the records have a moment to be placed in.
    poll(&app, "/api/phase4/dashboard/summary", |v| {
        v["gpus"]["count"] == 3
    })
    .await;

    let batch = json!([
        {"route": "/v1/generate", "status": 200, "latency_ms": 950.0, "gpu": 0},
        {"route": "/v1/generate", "status": 200, "latency_ms": 12.0, "gpu": "1", "trace_id": T3},
        {"route": "/v1/embed", "status": 200, "latency_ms": 3.0},
    ]);
    let req = Request::post("/api/v1/requests")
        .header(header::CONTENT_TYPE, "application/json")
        .header("traceparent", traceparent(T2, "01"))
        .body(Body::from(batch.to_string()))
        .unwrap();
    let (status, _, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"accepted": 3, "traced": 3, "trace_id": T2}));
    common::schema::assert_conforms(&body, "Accepted");

    // The batch's trace: Pulse's handler and its hand-off to the request sampler, and the
    // two records that took the batch's trace id, each with its GPU's samples.
    let (status, trace) = call(&app, get(&format!("/api/phase4/traces/{T2}"))).await;
    assert_eq!(status, StatusCode::OK, "{trace}");
    assert_eq!(
        shape(&trace),
        [
            (0, "POST /api/v1/requests".into()),
            (1, "request_sampler.ingest".into())
        ]
    );
    assert_eq!(trace["spans"][1]["attributes"]["pulse.records"], 3);
    common::schema::assert_conforms(&trace, "TraceAnswer");
    let records = trace["requests"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{trace}");
    let slow = records.iter().find(|r| r["latency_ms"] == 950.0).unwrap();
    assert_eq!(slow["trace_id"], T2);
    let context = slow["gpu_context"].as_array().unwrap();
    let util = context
        .iter()
        .find(|s| s["metric"] == "DCGM_FI_DEV_GPU_UTIL")
        .unwrap_or_else(|| panic!("no utilisation beside the request: {slow}"));
    assert_eq!(util["labels"]["gpu"], "0");
    assert!(util["at_ms"].as_i64() <= slow["timestamp"].as_i64());
    let embed = records.iter().find(|r| r["route"] == "/v1/embed").unwrap();
    assert!(embed.get("gpu_context").is_none());

    // A record's own trace id wins over the batch's; Pulse has no spans of that trace,
    // but the record is found by it.
    let (status, own) = call(&app, get(&format!("/api/phase4/traces/{T3}"))).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert_eq!(own["spans"], json!([]));
    common::schema::assert_conforms(&own, "TraceAnswer");
    assert_eq!(own["requests"][0]["gpu"], "1");

    // Slow traced requests, newest first.
    let (_, slow) = call(&app, get("/api/v1/requests/traced?min_latency_ms=500")).await;
    assert_eq!(slow["count"], 1);
    common::schema::assert_conforms(&slow, "TracedPage");
    assert_eq!(slow["requests"][0]["trace_id"], T2);

    // A malformed traceparent is ignored, and the answer says so.
    let req = Request::post("/api/v1/requests")
        .header(header::CONTENT_TYPE, "application/json")
        .header("traceparent", "00-xyz-01")
        .body(Body::from(
            r#"[{"route":"/x","status":200,"latency_ms":1}]"#,
        ))
        .unwrap();
    let (status, _, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["traced"], 0);
    assert!(
        body["warning"]
            .as_str()
            .unwrap()
            .contains("traceparent ignored"),
        "{body}"
    );
}

#[actix::test]
async fn a_batch_is_traced_through_store_processor_and_sink() {
    let dir = tempfile::tempdir().unwrap();
    let (service, mut pipeline) = common::fast_simulated();
    pipeline.sinks = vec![SinkConfig::Jsonl {
        path: dir.path().join("samples.jsonl"),
        flush_interval_ms: NonZeroU64::new(100).unwrap(),
    }];
    let app = common::app(&service, &pipeline);
    let list = poll(
        &app,
        "/api/phase4/traces?name=pipeline.batch&limit=1000",
        |v| v["count"].as_u64() >= Some(5),
    )
    .await;
    // A GPU batch: sampler root, window store, then the detector and the sink under it.
    let mut found = None;
    for t in list["traces"].as_array().unwrap() {
        let id = t["trace_id"].as_str().unwrap();
        let (_, trace) = call(&app, get(&format!("/api/phase4/traces/{id}"))).await;
        if trace["spans"][0]["attributes"]["pulse.source"] == "gpu_simulated" {
            found = Some(trace);
            break;
        }
    }
    let trace = found.expect("a traced GPU batch");
    let mut names = shape(&trace);
    names[2..].sort();
    assert_eq!(
        names[..4],
        [
            (0, "pipeline.batch".into()),
            (1, "window_store.ingest".into()),
            (2, "processor.anomaly_detector".into()),
            (2, "sink.jsonl".into()),
        ],
        "{trace}"
    );
    let spans = trace["spans"].as_array().unwrap();
    let samples = spans[0]["attributes"]["pulse.samples"].as_i64().unwrap();
    assert!(samples > 0);
    assert_eq!(spans[1]["attributes"]["pulse.samples"], samples);
    assert_eq!(spans[1]["attributes"]["pulse.stored"], samples);
    // The root lasts until the last actor let the batch go.
    let end = |s: &Value| s["offset_ms"].as_f64().unwrap() + s["duration_ms"].as_f64().unwrap();
    assert!(
        spans.iter().all(|s| end(s) <= end(&spans[0]) + 0.01),
        "{trace}"
    );
    // The sink wrote the scores too: a second sink span under the same store span.
    assert!(spans.iter().filter(|s| s["name"] == "sink.jsonl").count() >= 1);
}

#[actix::test]
async fn the_store_stays_within_its_bounds_and_reports_its_size() {
    let (mut service, pipeline) = common::fast_simulated();
    service.tracing.store_max_traces = NonZeroUsize::new(5).unwrap();
    let app = common::app(&service, &pipeline);
    let list = poll(&app, "/api/phase4/traces?limit=1000", |v| {
        v["total"].as_u64() == Some(5)
    })
    .await;
    assert_eq!(list["count"], 5);
    let metrics = poll(&app, "/api/phase4/status", |v| {
        v["components"].as_array().unwrap().iter().any(|c| {
            c["name"] == "tracing"
                && c["extra"]["trace_store_evicted_traces_total"].as_f64() > Some(0.0)
        })
    })
    .await;
    let tracing = metrics["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tracing")
        .unwrap();
    assert_eq!(tracing["extra"]["trace_store_traces"], 5.0);
    let (status, text) = call(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap();
    assert!(
        text.contains("pulse_trace_store_traces{component=\"tracing\"} 5"),
        "{text}"
    );
    assert!(text.contains("pulse_trace_store_bytes{component=\"tracing\"}"));
}

#[actix::test]
async fn tracing_can_be_switched_off_and_bad_requests_name_the_parameter() {
    let (mut service, pipeline) = common::fast_simulated();
    service.tracing.enabled = false;
    let app = common::app(&service, &pipeline);
    let req = Request::get("/api/phase4/status")
        .header("traceparent", traceparent(T1, "01"))
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = send(&app, req).await;
    assert!(headers.get("traceresponse").is_none());
    let (status, v) = call(&app, get("/api/phase4/traces")).await;
    assert_eq!((status, &v["enabled"]), (StatusCode::OK, &json!(false)));
    common::schema::assert_conforms(&v, "TracePage");
    let (status, _) = call(&app, get(&format!("/api/phase4/traces/{T1}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    common::expect_bad_requests(
        &app,
        &[
            ("/api/phase4/traces?limit=0", "limit"),
            ("/api/phase4/traces?status=maybe", "status"),
            ("/api/phase4/traces?min_duration_ms=-1", "min_duration_ms"),
            ("/api/phase4/traces?since_ms=yesterday", "since_ms"),
            ("/api/phase4/traces?colour=red", "colour"),
            ("/api/phase4/traces/xyz", "trace_id"),
            (
                "/api/phase4/traces/00000000000000000000000000000000",
                "trace_id",
            ),
            ("/api/v1/requests/traced?trace_id=12", "trace_id"),
            (
                "/api/v1/requests/traced?min_latency_ms=-5",
                "min_latency_ms",
            ),
        ],
    )
    .await;
}

#[actix::test]
async fn rule_evaluations_and_predictor_refits_are_traced() {
    let (service, mut pipeline) = common::fast_simulated();
    pipeline.predictor.refit_interval_ms = NonZeroU64::new(100).unwrap();
    let app = common::app(&service, &pipeline);

    let rules = poll(&app, "/api/phase4/traces?name=rules.evaluate", |v| {
        v["count"].as_u64() > Some(0)
    })
    .await;
    let id = rules["traces"][0]["trace_id"].as_str().unwrap();
    let (_, trace) = call(&app, get(&format!("/api/phase4/traces/{id}"))).await;
    let root = &trace["spans"][0];
    assert_eq!(root["name"], "rules.evaluate");
    assert!(
        root["attributes"]["pulse.rules"].as_i64() > Some(0),
        "{trace}"
    );
    assert_eq!(root["attributes"]["pulse.rule_errors"], 0);

    let refits = poll(&app, "/api/phase4/traces?name=predictor.refit", |v| {
        v["count"].as_u64() > Some(0)
    })
    .await;
    let id = refits["traces"][0]["trace_id"].as_str().unwrap();
    let (_, trace) = call(&app, get(&format!("/api/phase4/traces/{id}"))).await;
    let names = shape(&trace);
    assert_eq!(names[0], (0, "predictor.refit".into()), "{trace}");
    assert!(
        names.contains(&(1, "predictor.read_windows".into())),
        "{trace}"
    );
    assert!(names.contains(&(1, "predictor.fit".into())), "{trace}");
}
