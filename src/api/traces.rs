//! Traces: the recent ones Pulse recorded, one as a span tree (with the request records
//! that carry its trace id, each beside the GPU samples of its moment), and the traced
//! request records.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{limit_param, paging, PAGE, PAGE_MAX};
use super::AppState;
use crate::model::catalog as m;
use crate::model::selector::{MatchOp, Matcher, Selector};
use crate::sources::requests::aggregate::{RequestRecord, TracedFilter};
use crate::store::messages::SelectPoints;
use crate::telemetry::parse_trace_id;
use crate::telemetry::store::{TraceFilter, TraceStatus};

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

fn tracing_off() -> Json<Value> {
    Json(json!({
        "enabled": false,
        "reason": "tracing is switched off (tracing.enabled = false)",
        "total": 0,
        "count": 0,
        "traces": [],
    }))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Part of the root span's name, e.g. `pipeline.batch` or `GET /api/phase4`.
    name: Option<String>,
    min_duration_ms: Option<f64>,
    /// `ok` or `error`.
    status: Option<String>,
    /// Started at or after, Unix ms.
    since_ms: Option<i64>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// `GET /api/phase4/traces?name=...&min_duration_ms=5&status=error&since_ms=...&limit=50`
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
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
    let Some(store) = state.handles.telemetry.store() else {
        return Ok(tracing_off());
    };
    let (traces, total) = store.list(&TraceFilter {
        name: p.name,
        min_duration_ms: p.min_duration_ms,
        status,
        since_ms: p.since_ms,
        offset: p.offset.unwrap_or(0),
        limit,
    });
    let mut answer = paging(total, p.offset.unwrap_or(0), Some(limit));
    answer["enabled"] = json!(true);
    answer["count"] = json!(traces.len());
    answer["traces"] = json!(traces);
    Ok(Json(answer))
}

/// A request record with the GPU samples of its moment.
#[derive(Debug, Serialize)]
struct RecordView {
    #[serde(flatten)]
    record: RequestRecord,
    /// The newest samples of the record's GPU at or before its time (empty when the record
    /// names no GPU, or none is known by that index).
    #[serde(skip_serializing_if = "Option::is_none")]
    gpu_context: Option<Vec<GpuSample>>,
}

#[derive(Debug, Serialize)]
struct GpuSample {
    metric: String,
    labels: std::collections::BTreeMap<String, String>,
    #[serde(rename = "at_ms")]
    t_ms: i64,
    value: f64,
}

/// `GET /api/phase4/traces/{trace_id}`: the span tree and the request records of a trace.
pub async fn one(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
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
    let mut body = match detail {
        Some(d) => serde_json::to_value(d).map_err(anyhow::Error::from)?,
        None => json!({ "trace_id": id.to_string(), "spans": [] }),
    };
    body["requests"] = serde_json::to_value(views).map_err(anyhow::Error::from)?;
    Ok(Json(body))
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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TracedParams {
    trace_id: Option<String>,
    min_latency_ms: Option<f64>,
    route: Option<String>,
    since_ms: Option<i64>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// `GET /api/v1/requests/traced?min_latency_ms=500&route=/v1/generate&limit=20`: ingested
/// records that carry a trace id, newest first.
pub async fn traced_requests(
    State(state): State<AppState>,
    q: Result<Query<TracedParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
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
    let (records, total) = state.handles.traced_requests.find(&TracedFilter {
        trace_id: p.trace_id,
        min_latency_ms: p.min_latency_ms,
        route: p.route,
        since_ms: p.since_ms,
        offset: p.offset.unwrap_or(0),
        limit,
    });
    let (held, evicted) = state.handles.traced_requests.stats();
    let mut answer = paging(total, p.offset.unwrap_or(0), Some(limit));
    answer["count"] = json!(records.len());
    answer["held"] = json!(held);
    answer["evicted"] = json!(evicted);
    answer["requests"] = json!(records);
    Ok(Json(answer))
}
