//! Anomalies: the recent ones, filtered; one by id; the workload changes told apart from them.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{id_param, limit_param, match_param, paging, PAGE, PAGE_MAX};
use super::AppState;
use crate::processors::anomaly::messages::{GetAnomaly, ListAnomalies, ListWorkloadEvents};
use crate::processors::anomaly::AnomalyFilter;

fn down(e: actix::MailboxError) -> ApiError {
    ApiError::Unavailable(format!("anomaly detector is not running: {e}"))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Label matchers on the watched series, e.g. `{__name__="DCGM_FI_DEV_GPU_TEMP", gpu="0"}`.
    #[serde(rename = "match")]
    matchers: Option<String>,
    /// Detected (last) at or after, Unix ms.
    since_ms: Option<i64>,
    /// Peak score at least this, 0..1.
    min_score: Option<f64>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// `GET /api/phase4/anomalies?match={gpu="0"}&since_ms=...&min_score=0.9&limit=50`
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (limit, offset) = (limit_param(p.limit, PAGE, PAGE_MAX)?, p.offset.unwrap_or(0));
    if let Some(m) = p.min_score {
        if !(0.0..=1.0).contains(&m) {
            return Err(ApiError::BadRequest(format!(
                "min_score: {m} is out of range (0-1)"
            )));
        }
    }
    let matchers = match_param(p.matchers.as_deref())?;
    let Some(detector) = &state.handles.anomalies else {
        let mut answer = paging(0, offset, Some(limit));
        answer["enabled"] = json!(false);
        answer["count"] = json!(0);
        answer["anomalies"] = json!([]);
        return Ok(Json(answer));
    };
    let filter = AnomalyFilter {
        matchers,
        since_ms: p.since_ms,
        min_score: p.min_score,
        offset,
        limit,
    };
    let page = detector.send(ListAnomalies(filter)).await.map_err(down)?;
    let mut answer = paging(page.total, offset, Some(limit));
    answer["enabled"] = json!(true);
    answer["count"] = json!(page.items.len());
    answer["anomalies"] = json!(page.items);
    Ok(Json(answer))
}

/// `GET /api/phase4/anomalies/{id}`
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = id_param(&id, "an anomaly")?;
    let not_found = || ApiError::NotFound(format!("no anomaly {id} (it may have aged out)"));
    let detector = state.handles.anomalies.as_ref().ok_or_else(not_found)?;
    match detector.send(GetAnomaly(id)).await.map_err(down)? {
        Some(a) => Ok(Json(serde_json::to_value(a).map_err(anyhow::Error::from)?)),
        None => Err(not_found()),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WorkloadParams {
    /// Only this host's (its `Hostname` label).
    host: Option<String>,
    /// Only this metric's, e.g. `DCGM_FI_DEV_GPU_UTIL`.
    metric: Option<String>,
    /// Last firing at or after, Unix ms.
    since_ms: Option<i64>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// `GET /api/v1/workload-events?host=host-a&metric=DCGM_FI_DEV_GPU_UTIL&since_ms=...&limit=50`:
/// most GPUs of a host moving together on a metric (a job starting, a checkpoint, a stop),
/// kept apart from the anomalies, newest first.
pub async fn workload_events(
    State(state): State<AppState>,
    q: Result<Query<WorkloadParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (limit, offset) = (limit_param(p.limit, PAGE, PAGE_MAX)?, p.offset.unwrap_or(0));
    let Some(detector) = &state.handles.anomalies else {
        let mut answer = paging(0, offset, Some(limit));
        answer["enabled"] = json!(false);
        answer["count"] = json!(0);
        answer["events"] = json!([]);
        return Ok(Json(answer));
    };
    let page = detector
        .send(ListWorkloadEvents {
            host: p.host,
            metric: p.metric,
            since_ms: p.since_ms,
            offset,
            limit,
        })
        .await
        .map_err(down)?;
    let mut answer = paging(page.total, offset, Some(limit));
    answer["enabled"] = json!(true);
    answer["count"] = json!(page.items.len());
    answer["events"] = json!(page.items);
    Ok(Json(answer))
}
