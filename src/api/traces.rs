//! Traces: the recent ones Pulse recorded, one as a span tree (with the request records
//! that carry its trace id, each beside the GPU samples of its moment), and the traced
//! request records.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{limit_param, Paging, PAGE, PAGE_MAX};
use super::AppState;
use crate::model::catalog as m;
use crate::model::selector::{MatchOp, Matcher, Selector};
use crate::sources::requests::aggregate::{RequestRecord, TracedFilter};
use crate::store::messages::SelectPoints;
use crate::telemetry::parse_trace_id;
use crate::telemetry::store::{SpanView, TraceDetail, TraceFilter, TraceStatus, TraceSummary};

/// Records of one trace given their GPU's samples; the rest are listed without.
pub const GPU_CONTEXT_MAX: usize = 20;
/// How far before a record's time the GPU's newest samples are looked for.
pub const GPU_CONTEXT_LOOKBACK_MS: i64 = 10_000;
/// The GPU series shown beside a request.
pub const GPU_CONTEXT_METRICS: [&str; 5] = [
    m::GPU_UTIL,
    m::FB_USED,
    m::GPU_TEMP,
    m::POWER_USAGE,
    m::THROTTLE_REASONS,
];

/// A page of the traces Pulse kept of its own work, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TracePage {
    /// Whether tracing runs (`tracing.enabled`).
    enabled: bool,
    /// Why not, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    reason: Option<&'static str>,
    #[serde(flatten)]
    paging: Paging,
    traces: Vec<TraceSummary>,
}

#[derive(Debug, Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Part of the root span's name, e.g. `pipeline.batch` or `GET /api/phase4`.
    name: Option<String>,
    /// At least this long.
    #[param(minimum = 0)]
    min_duration_ms: Option<f64>,
    /// `ok` or `error`.
    #[param(pattern = "^(ok|error)$")]
    status: Option<String>,
    /// Started at or after, Unix ms.
    since_ms: Option<i64>,
    /// Traces on the page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Traces to skip (`total` counts them all).
    offset: Option<usize>,
}

/// `GET /api/phase4/traces?name=...&min_duration_ms=5&status=error&since_ms=...&limit=50`
#[utoipa::path(get, path = "/api/phase4/traces", operation_id = "list_traces", tag = "phase4",
    summary = "traces Pulse kept of its own work, newest first",
    params(ListParams),
    responses(
        (status = 200, description = "a page of traces", body = TracePage),
        (status = 400, description = "a parameter out of range, named", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<TracePage>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = limit_param(p.limit, PAGE, PAGE_MAX)?;
    if let Some(d) = p.min_duration_ms {
        if !d.is_finite() || d < 0.0 {
            return Err(ApiError::BadRequest(format!(
                "min_duration_ms: {d} is not a non-negative number"
            )));
        }
    }
    let status = match p.status.as_deref() {
        None => None,
        Some("ok") => Some(TraceStatus::Ok),
        Some("error") => Some(TraceStatus::Error),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "status: {other:?} is not `ok` or `error`"
            )))
        }
    };
    let offset = p.offset.unwrap_or(0);
    let Some(store) = state.handles.telemetry.store() else {
        return Ok(Json(TracePage {
            enabled: false,
            reason: Some("tracing is switched off (tracing.enabled = false)"),
            paging: Paging::empty(offset, Some(limit)),
            traces: Vec::new(),
        }));
    };
    let (traces, total) = store.list(&TraceFilter {
        name: p.name,
        min_duration_ms: p.min_duration_ms,
        status,
        since_ms: p.since_ms,
        offset,
        limit,
    });
    let paging = Paging::new(total, offset, Some(limit), traces.len());
    Ok(Json(TracePage {
        enabled: true,
        reason: None,
        paging,
        traces,
    }))
}

/// A request record with the GPU samples of its moment.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordView {
    #[serde(flatten)]
    record: RequestRecord,
    /// The newest samples of the record's GPU at or before its time (empty when the record
    /// names no GPU, or none is known by that index; absent past the trace's first 20
    /// records).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    gpu_context: Option<Vec<GpuSample>>,
}

/// One GPU series' newest sample at a record's time.
#[derive(Debug, Serialize, ToSchema)]
pub struct GpuSample {
    /// The metric, e.g. `DCGM_FI_DEV_GPU_UTIL`.
    metric: String,
    /// Its labels.
    labels: std::collections::BTreeMap<String, String>,
    /// The sample's time, Unix ms.
    #[serde(rename = "at_ms")]
    t_ms: i64,
    /// The sample's value.
    value: f64,
}

/// One trace: the spans Pulse kept of it (none when only request records carry its id)
/// and the request records that carry its id.
#[derive(Debug, Serialize, ToSchema)]
pub struct TraceAnswer {
    /// 32 hex digits.
    trace_id: String,
    /// Name of the root span (absent, like the fields below, when Pulse kept no span).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    root_name: Option<String>,
    /// Whether the root continues a trace from another service (`traceparent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    remote_parent: Option<bool>,
    /// When its first span started, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    started_at_ms: Option<i64>,
    /// From the first span's start to the last one's end.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    duration_ms: Option<f64>,
    /// Spans kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    span_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    status: Option<TraceStatus>,
    /// The spans in tree order (each parent before its children, siblings by start).
    spans: Vec<SpanView>,
    /// The request records that carry this trace id.
    requests: Vec<RecordView>,
}

impl TraceAnswer {
    fn new(trace_id: String, detail: Option<TraceDetail>, requests: Vec<RecordView>) -> Self {
        let (s, spans) = match detail {
            Some(d) => (Some(d.summary), d.spans),
            None => (None, Vec::new()),
        };
        TraceAnswer {
            trace_id,
            root_name: s.as_ref().map(|s| s.root_name.clone()),
            remote_parent: s.as_ref().map(|s| s.remote_parent),
            started_at_ms: s.as_ref().map(|s| s.start_ms),
            duration_ms: s.as_ref().map(|s| s.duration_ms),
            span_count: s.as_ref().map(|s| s.span_count),
            status: s.as_ref().map(|s| s.status),
            spans,
            requests,
        }
    }
}

/// `GET /api/phase4/traces/{trace_id}`: the span tree and the request records of a trace.
#[utoipa::path(get, path = "/api/phase4/traces/{trace_id}", operation_id = "get_trace",
    tag = "phase4", summary = "one trace: its spans and its request records",
    params(("trace_id" = String, Path, description = "32 hex digits")),
    responses(
        (status = 200, description = "the trace", body = TraceAnswer),
        (status = 400, description = "not a trace id", body = ErrorBody),
        (status = 404, description = "no span and no request record carries this id", body = ErrorBody),
        (status = 503, description = "the window store is not running", body = ErrorBody),
    ))]
pub async fn one(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
) -> Result<Json<TraceAnswer>, ApiError> {
    let id =
        parse_trace_id(&trace_id).map_err(|e| ApiError::BadRequest(format!("trace_id: {e}")))?;
    let detail = state.handles.telemetry.store().and_then(|s| s.get(id));
    let (records, _) = state.handles.traced_requests.find(&TracedFilter {
        trace_id: Some(id.to_string()),
        limit: PAGE_MAX,
        ..TracedFilter::default()
    });
    if detail.is_none() && records.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no trace {id}: no spans and no request records with this id (traces age out; \
             the store keeps the newest)"
        )));
    }
    let mut views = Vec::with_capacity(records.len());
    for (i, record) in records.into_iter().enumerate() {
        let gpu_context = match (&record.gpu, record.timestamp) {
            (Some(gpu), Some(t)) if i < GPU_CONTEXT_MAX => Some(gpu_context(&state, gpu, t).await?),
            _ => None,
        };
        views.push(RecordView {
            record,
            gpu_context,
        });
    }
    Ok(Json(TraceAnswer::new(id.to_string(), detail, views)))
}

/// The newest sample of each GPU series for `gpu` at or before `t_ms`.
async fn gpu_context(state: &AppState, gpu: &str, t_ms: i64) -> Result<Vec<GpuSample>, ApiError> {
    let names = Matcher::new("__name__", MatchOp::Re, &GPU_CONTEXT_METRICS.join("|"))
        .map_err(anyhow::Error::from)?;
    let selector = Selector::all().with(names).with(Matcher::eq("gpu", gpu));
    let series = state
        .handles
        .window
        .send(SelectPoints {
            selector,
            start_ms: t_ms - GPU_CONTEXT_LOOKBACK_MS,
            end_ms: t_ms,
        })
        .await
        .map_err(|e| ApiError::Unavailable(format!("window store is not running: {e}")))?;
    Ok(series
        .into_iter()
        .filter_map(|s| {
            let (t, v) = *s.points.last()?;
            Some(GpuSample {
                metric: s.series.name().to_string(),
                labels: s
                    .series
                    .labels()
                    .iter()
                    .filter(|(k, _)| &**k != "__name__")
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                t_ms: t,
                value: v,
            })
        })
        .collect())
}

#[derive(Debug, Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TracedParams {
    /// Only this trace's records (32 hex digits).
    trace_id: Option<String>,
    /// At least this slow.
    #[param(minimum = 0)]
    min_latency_ms: Option<f64>,
    /// Only this route's.
    route: Option<String>,
    /// Finished at or after, Unix ms.
    since_ms: Option<i64>,
    /// Records on the page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Records to skip (`total` counts them all).
    offset: Option<usize>,
}

/// A page of the request records that carried a trace id, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TracedPage {
    #[serde(flatten)]
    paging: Paging,
    /// Records held (`sources.requests.max_traced` at most).
    held: usize,
    /// Records dropped to stay within it.
    evicted: u64,
    requests: Vec<RequestRecord>,
}

/// `GET /api/v1/requests/traced?min_latency_ms=500&route=/v1/generate&limit=20`: ingested
/// records that carry a trace id, newest first.
#[utoipa::path(get, path = "/api/v1/requests/traced", operation_id = "list_traced_requests",
    tag = "ingest", summary = "request records that carried a trace id, newest first",
    params(TracedParams),
    responses(
        (status = 200, description = "a page of records", body = TracedPage),
        (status = 400, description = "a parameter out of range, named", body = ErrorBody),
    ))]
pub async fn traced_requests(
    State(state): State<AppState>,
    q: Result<Query<TracedParams>, QueryRejection>,
) -> Result<Json<TracedPage>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = limit_param(p.limit, PAGE, PAGE_MAX)?;
    if let Some(t) = &p.trace_id {
        parse_trace_id(t).map_err(|e| ApiError::BadRequest(format!("trace_id: {e}")))?;
    }
    if let Some(l) = p.min_latency_ms {
        if !l.is_finite() || l < 0.0 {
            return Err(ApiError::BadRequest(format!(
                "min_latency_ms: {l} is not a non-negative number"
            )));
        }
    }
    let offset = p.offset.unwrap_or(0);
    let (records, total) = state.handles.traced_requests.find(&TracedFilter {
        trace_id: p.trace_id,
        min_latency_ms: p.min_latency_ms,
        route: p.route,
        since_ms: p.since_ms,
        offset,
        limit,
    });
    let (held, evicted) = state.handles.traced_requests.stats();
    let paging = Paging::new(total, offset, Some(limit), records.len());
    Ok(Json(TracedPage {
        paging,
        held,
        evicted,
        requests: records,
    }))
}
