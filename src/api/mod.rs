//! The REST API (axum): every route in [`router`]. Handlers reach actors through their
//! addresses; computed views come from the query actor.

mod actions;
mod alerts;
mod anomalies;
mod commands;
pub mod error;
pub mod exposition;
mod extract;
mod ingest;
pub mod listener;
mod metrics;
pub mod openapi;
mod predictions;
mod prom;
mod prom_meta;
mod prom_rules;
mod query;
mod status;
mod traces;
mod web;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use opentelemetry::trace::{SpanContext, SpanKind};

use crate::pipeline::Handles;
use crate::runtime::clock::system_now_ms;
use crate::sources::requests::aggregate::{RequestRecord, PULSE_SERVICE};
use crate::telemetry::parse_traceparent;
use error::ApiError;

/// Limits the API enforces.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// Larger bodies get 413.
    pub max_body_bytes: usize,
    /// Largest `settle_ms` a cleanup request may ask for.
    pub max_settle_ms: u64,
    /// Largest `window_s` of the GPU profile (the window store's age limit).
    pub max_profile_window_s: u64,
    /// Samples one PromQL evaluation of the query API may read (an instant query, each
    /// step of a range query; `rules.max_samples`, 0: no limit).
    pub max_query_samples: u64,
}

/// What handlers share, behind one `Arc`: axum clones the state for the middleware and
/// for every handler of every request, and one reference count is cheaper than several
/// (cloning actor addresses would allocate).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The fields of [`AppState`], reached through `Deref`.
pub struct Shared {
    pub handles: Handles,
    pub limits: ApiLimits,
    /// When the server started, for uptime.
    pub started: Instant,
    /// Recent component reports, shared by status and `/metrics`.
    pub status_cache: Arc<status::StatusCache>,
    /// Who may call what.
    pub auth: Auth,
    /// Begun at SIGTERM: open event streams end.
    pub shutdown: crate::runtime::shutdown::Shutdown,
    /// What the listener counted.
    pub connections: Arc<listener::ConnectionStats>,
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The API's authentication: a bearer token for mutating endpoints, and optionally for
/// reads.
#[derive(Debug, Default)]
pub struct Auth {
    pub token: Option<String>,
    pub protect_reads: bool,
}

impl Auth {
    /// Whether a request with this method and these headers may go on; why not otherwise.
    fn check(
        &self,
        method: &axum::http::Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(), String> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        // Prometheus' query API takes POST for long queries: still a read.
        let query = path == "/api/v1/query" || path == "/api/v1/query_range";
        let read = method == axum::http::Method::GET
            || method == axum::http::Method::HEAD
            || (query && method == axum::http::Method::POST);
        // The live page's files hold no data (a browser cannot send a bearer token when
        // it opens a page); the page then calls the API with the token. Nor do the probes,
        // which kubelets and compose health checks call without one, or the API's
        // description.
        let page = path == "/"
            || path.starts_with("/assets/")
            || path == "/healthz"
            || path == "/readyz"
            || path == "/api/openapi.json";
        if read && (!self.protect_reads || page) {
            return Ok(());
        }
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Err("this endpoint needs `Authorization: Bearer <token>`".to_string());
        };
        // The scheme is case-insensitive (RFC 7235): `bearer` and `BEARER` too.
        let given = value
            .to_str()
            .ok()
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
            .ok_or("the Authorization header is not `Bearer <token>`")?;
        if constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
            Ok(())
        } else {
            Err("the bearer token is not the configured one".to_string())
        }
    }
}

/// Compares without stopping at the first difference, so the time taken says nothing of
/// where the token differs.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AppState {
    /// The state of an API that asks no token (see [`AppState::with_auth`]).
    pub fn new(handles: Handles, limits: ApiLimits) -> Self {
        Self::with_auth(handles, limits, Auth::default())
    }

    /// The state of an API that checks requests against `auth`.
    pub fn with_auth(handles: Handles, limits: ApiLimits, auth: Auth) -> Self {
        AppState(Arc::new(Shared {
            handles,
            limits,
            started: Instant::now(),
            status_cache: Arc::default(),
            auth,
            shutdown: Default::default(),
            connections: Arc::default(),
        }))
    }
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(web::index))
        .route("/assets/pulse.js", get(web::script))
        .route("/assets/pulse.css", get(web::style))
        .route("/api/v1/series", get(web::series))
        .route("/api/v1/labels", get(prom_meta::labels))
        .route("/api/v1/label/{name}/values", get(prom_meta::label_values))
        .route("/api/v1/query", get(prom::query_get).post(prom::query_post))
        .route(
            "/api/v1/query_range",
            get(prom::query_range_get).post(prom::query_range_post),
        )
        .route("/api/phase4/gpu/profile", get(query::gpu_profile))
        .route("/api/phase4/gpu/cleanup", post(query::gpu_cleanup))
        .route(
            "/api/phase4/dashboard/summary",
            get(query::dashboard_summary),
        )
        .route("/api/phase4/cache/stats", get(query::cache_stats))
        .route("/api/phase4/cache/clear", post(query::cache_clear))
        .route("/api/phase4/status", get(status::status))
        .route("/healthz", get(status::healthz))
        .route("/readyz", get(status::readyz))
        .route("/api/openapi.json", get(openapi::openapi))
        .route("/api/phase4/predictions", get(predictions::list))
        .route("/api/phase4/anomalies", get(anomalies::list))
        .route("/api/phase4/anomalies/{id}", get(anomalies::one))
        .route("/api/v1/workload-events", get(anomalies::workload_events))
        .route("/api/phase4/traces", get(traces::list))
        .route("/api/phase4/traces/{trace_id}", get(traces::one))
        .route("/api/v1/requests/traced", get(traces::traced_requests))
        .route("/api/phase4/alerts/active", get(alerts::active))
        .route("/api/phase4/alerts/history", get(alerts::history))
        .route(
            "/api/phase4/alerts/{id}/acknowledge",
            post(alerts::acknowledge),
        )
        .route("/api/phase4/rules", get(alerts::rules))
        .route("/api/v1/rules", get(prom_rules::rules))
        .route("/api/v1/alerts", get(prom_rules::alerts))
        .route("/api/v1/rules/reload", post(alerts::reload))
        .route("/api/v1/requests", post(ingest::ingest_requests))
        .route("/api/v1/commands", get(commands::subscribe))
        .route("/api/v1/commands/{id}/ack", post(actions::ack))
        .route("/api/phase4/actions", get(actions::list))
        .route("/api/phase4/actions/pause", post(actions::pause))
        .route("/api/phase4/actions/resume", post(actions::resume))
        .route("/api/phase4/actions/{id}", get(actions::one))
        .route("/metrics", get(metrics::metrics))
        // One middleware, not two: each `from_fn` layer clones the route's service and the
        // state for every request, which showed in profiles of the summary under load.
        .route_layer(from_fn_with_state(state.clone(), guard_and_record))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .with_state(state)
}

/// The W3C `traceparent` a request carries: `None` when absent, `Err` (why) when invalid.
/// An invalid one is ignored for tracing, as the W3C recommendation says.
pub fn traceparent(headers: &HeaderMap) -> Option<Result<SpanContext, &'static str>> {
    let value = headers.get("traceparent")?;
    Some(
        value
            .to_str()
            .map_err(|_| "not ASCII")
            .and_then(parse_traceparent),
    )
}

/// The most header fields a request may carry (hyper's own default, which the listener
/// raises to [`listener::HYPER_MAX_HEADERS`] so that Pulse answers, in JSON), their bytes,
/// and the request target's bytes (below the 64 KiB the `http` crate parses at all, past
/// which hyper answers an empty 414): a reverse proxy's limits, generous for any client.
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
pub const MAX_URI_BYTES: usize = 32 * 1024;

/// 414 or 431, in JSON, for a request head past [`MAX_URI_BYTES`], [`MAX_HEADERS`] or
/// [`MAX_HEADER_BYTES`].
fn head_within_limits(req: &Request) -> Result<(), ApiError> {
    let len = req.uri().to_string().len();
    if len > MAX_URI_BYTES {
        return Err(ApiError::UriTooLong {
            len,
            limit: MAX_URI_BYTES,
        });
    }
    let headers = req.headers();
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::HeadersTooLarge(format!(
            "{} header fields (at most {MAX_HEADERS})",
            headers.len()
        )));
    }
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(ApiError::HeadersTooLarge(format!(
            "{bytes} bytes of header fields (at most {MAX_HEADER_BYTES})"
        )));
    }
    Ok(())
}

/// Every matched request goes through here. Without the configured token where one is
/// needed it is answered 401 (see [`Auth`]). Either way Pulse's own handlers are measured
/// like the services it watches (`service="pulse"`), and traced: a server span per request
/// (continuing the caller's `traceparent`), which handlers find in the request's
/// extensions to hang their own spans from. A traced response carries `traceresponse`
/// with the trace id.
async fn guard_and_record(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let remote = traceparent(req.headers()).and_then(Result::ok);
    let span = state
        .handles
        .telemetry
        .root("HTTP request", SpanKind::Server, remote.as_ref());
    if let Some(s) = &span {
        s.rename(format!("{} {route}", req.method()));
        s.set("http.request.method", req.method().to_string());
        s.set("http.route", route.clone());
        s.set("url.path", req.uri().path().to_string());
        req.extensions_mut().insert(s.clone());
    }
    let allowed = head_within_limits(&req).and_then(|()| {
        state
            .auth
            .check(req.method(), req.uri().path(), req.headers())
            .map_err(ApiError::Unauthorized)
    });
    // A body declared larger than the limit is refused before it is read.
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let limit = state.limits.max_body_bytes;
    let mut response = match allowed {
        Ok(()) if declared.is_some_and(|n| n > limit as u64) => {
            axum::response::IntoResponse::into_response(ApiError::PayloadTooLarge { limit })
        }
        Ok(()) => next.run(req).await,
        Err(e) => axum::response::IntoResponse::into_response(e),
    };
    let status = response.status().as_u16();
    let trace_id = span.as_ref().map(|s| {
        s.set("http.response.status_code", status as i64);
        if status >= 500 {
            s.error(format!("HTTP {status}"));
        }
        if let Ok(v) = HeaderValue::from_str(&s.traceparent()) {
            response.headers_mut().insert("traceresponse", v);
        }
        s.end();
        s.trace_id().to_string()
    });
    state.handles.self_metrics.push(RequestRecord {
        timestamp: Some(system_now_ms()),
        route,
        status,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        gpu: None,
        trace_id,
        service: Some(PULSE_SERVICE.to_string()),
    });
    response
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
