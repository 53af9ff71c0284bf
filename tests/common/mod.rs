//! Shared by the router tests: a pipeline with the simulated fleet on fast intervals, and
//! helpers that call the router with no port.
#![allow(dead_code)]

pub mod alertmanager;
pub mod process;
pub mod prometheus;
pub mod redis;
pub mod schema;

use std::num::{NonZeroU64, NonZeroUsize};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use pulse::config::pipeline::{GpuMode, PipelineConfig};
use pulse::config::service::ServiceConfig;
use pulse::Clock;
use pulse::{router, ApiLimits, AppState};
use serde_json::Value;
use tower::ServiceExt;

/// Body limit of the test routers.
pub const BODY_LIMIT: usize = 4096;

/// Settings for 3 simulated GPUs sampled every 50 ms, views refreshed every 50 ms.
pub fn fast_simulated() -> (ServiceConfig, PipelineConfig) {
    let mut pipeline = PipelineConfig::default();
    pipeline.sources.gpu.mode = GpuMode::Simulated;
    pipeline.sources.gpu.interval_ms = NonZeroU64::new(50).unwrap();
    pipeline.sources.requests.interval_ms = NonZeroU64::new(50).unwrap();
    pipeline.sources.gpu.simulated.gpus = NonZeroUsize::new(3).unwrap();
    let mut service = ServiceConfig::default();
    service.dashboard.refresh_ms = NonZeroU64::new(50).unwrap();
    (service, pipeline)
}

/// Starts the pipeline and returns its router.
pub fn app(service: &ServiceConfig, pipeline: &PipelineConfig) -> Router {
    let handles = pulse::start_pipeline(service, pipeline, Clock::system()).unwrap();
    router(AppState::new(
        handles,
        ApiLimits {
            max_body_bytes: BODY_LIMIT,
            max_settle_ms: 5000,
            max_profile_window_s: 1800,
            max_query_samples: pulse::config::service::DEFAULT_RULE_MAX_SAMPLES,
        },
    ))
}

/// Calls the router; the body as JSON (or as a JSON string when it is not JSON).
pub async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// Percent-encodes a query parameter's value (all but unreserved characters).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn post_json(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

/// Polls `uri` until `ready` accepts the body (at most 5 s).
pub async fn poll_until(app: &Router, uri: &str, ready: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..250 {
        let (status, v) = call(app, get(uri)).await;
        if status == StatusCode::OK && ready(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{uri} never became ready");
}

/// Each `(uri, word)`: GET answers 400 with a JSON detail that mentions `word`.
pub async fn expect_bad_requests(app: &Router, cases: &[(&str, &str)]) {
    for (uri, mentions) in cases {
        let (status, body) = call(app, get(uri)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            body["detail"].as_str().unwrap().contains(mentions),
            "{uri}: {body}"
        );
    }
}

/// A loopback port nothing listens on (bound once by the OS, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
