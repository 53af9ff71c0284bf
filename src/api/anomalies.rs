//! Anomalies: the recent ones, filtered; one by id; the workload changes told apart from them.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{id_param, limit_param, match_param, Paging, PAGE, PAGE_MAX};
use super::AppState;
use crate::processors::anomaly::messages::{GetAnomaly, ListAnomalies, ListWorkloadEvents};
use crate::processors::anomaly::workload::WorkloadEvent;
use crate::processors::anomaly::{Anomaly, AnomalyFilter};

fn down(e: actix::MailboxError) -> ApiError {
    ApiError::Unavailable(format!("anomaly detector is not running: {e}"))
}

#[derive(Debug, Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// A PromQL series selector on the watched series, e.g.
    /// `{__name__="DCGM_FI_DEV_GPU_TEMP",gpu="0"}`.
    #[serde(rename = "match")]
    #[param(example = "{__name__=\"DCGM_FI_DEV_GPU_UTIL\",gpu=\"0\"}")]
    matchers: Option<String>,
    /// Detected (last) at or after, Unix ms.
    since_ms: Option<i64>,
    /// Peak score at least this.
    #[param(minimum = 0, maximum = 1)]
    min_score: Option<f64>,
    /// Items on the page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Items to skip (`total` counts them all).
    offset: Option<usize>,
}

/// A page of anomalies, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnomalyPage {
    /// Whether the anomaly detector runs (`anomaly.enabled`).
    enabled: bool,
    #[serde(flatten)]
    paging: Paging,
    anomalies: Vec<Anomaly>,
}

/// A page of workload events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkloadEventPage {
    /// Whether the anomaly detector runs (`anomaly.enabled`).
    enabled: bool,
    #[serde(flatten)]
    paging: Paging,
    events: Vec<WorkloadEvent>,
}

/// `GET /api/phase4/anomalies?match={gpu="0"}&since_ms=...&min_score=0.9&limit=50`
#[utoipa::path(get, path = "/api/phase4/anomalies", operation_id = "list_anomalies", tag = "phase4", summary = "anomalies, newest first",
    params(Params),
    responses(
        (status = 200, description = "a page of anomalies", body = AnomalyPage),
        (status = 400, description = "a parameter out of range or a bad selector, named", body = ErrorBody),
        (status = 503, description = "the anomaly detector is not running", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Json<AnomalyPage>, ApiError> {
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
        return Ok(Json(AnomalyPage {
            enabled: false,
            paging: Paging::empty(offset, Some(limit)),
            anomalies: Vec::new(),
        }));
    };
    let filter = AnomalyFilter {
        matchers,
        since_ms: p.since_ms,
        min_score: p.min_score,
        offset,
        limit,
    };
    let page = detector.send(ListAnomalies(filter)).await.map_err(down)?;
    Ok(Json(AnomalyPage {
        enabled: true,
        paging: Paging::of(&page, offset, Some(limit)),
        anomalies: page.items,
    }))
}

/// `GET /api/phase4/anomalies/{id}`
#[utoipa::path(get, path = "/api/phase4/anomalies/{id}", operation_id = "get_anomaly", tag = "phase4", summary = "one anomaly",
    params(("id" = u64, Path, description = "the anomaly's id")),
    responses(
        (status = 200, description = "the anomaly", body = Anomaly),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 404, description = "no such anomaly (it may have aged out)", body = ErrorBody),
        (status = 503, description = "the anomaly detector is not running", body = ErrorBody),
    ))]
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Anomaly>, ApiError> {
    let id = id_param(&id, "an anomaly")?;
    let not_found = || ApiError::NotFound(format!("no anomaly {id} (it may have aged out)"));
    let detector = state.handles.anomalies.as_ref().ok_or_else(not_found)?;
    match detector.send(GetAnomaly(id)).await.map_err(down)? {
        Some(a) => Ok(Json(a)),
        None => Err(not_found()),
    }
}

#[derive(Debug, Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WorkloadParams {
    /// Only this host's (its `Hostname` label).
    host: Option<String>,
    /// Only this metric's, e.g. `DCGM_FI_DEV_GPU_UTIL`.
    metric: Option<String>,
    /// Last firing at or after, Unix ms.
    since_ms: Option<i64>,
    /// Items on the page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Items to skip (`total` counts them all).
    offset: Option<usize>,
}

/// `GET /api/v1/workload-events?host=host-a&metric=DCGM_FI_DEV_GPU_UTIL&since_ms=...&limit=50`:
/// most GPUs of a host moving together on a metric (a job starting, a checkpoint, a stop),
/// kept apart from the anomalies, newest first.
#[utoipa::path(get, path = "/api/v1/workload-events", operation_id = "list_workload_events", tag = "phase4",
    summary = "workload changes (a job starting, a checkpoint, a job stopping), not anomalies",
    params(WorkloadParams),
    responses(
        (status = 200, description = "a page of workload events", body = WorkloadEventPage),
        (status = 400, description = "a parameter out of range, named", body = ErrorBody),
        (status = 503, description = "the anomaly detector is not running", body = ErrorBody),
    ))]
pub async fn workload_events(
    State(state): State<AppState>,
    q: Result<Query<WorkloadParams>, QueryRejection>,
) -> Result<Json<WorkloadEventPage>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (limit, offset) = (limit_param(p.limit, PAGE, PAGE_MAX)?, p.offset.unwrap_or(0));
    let Some(detector) = &state.handles.anomalies else {
        return Ok(Json(WorkloadEventPage {
            enabled: false,
            paging: Paging::empty(offset, Some(limit)),
            events: Vec::new(),
        }));
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
    Ok(Json(WorkloadEventPage {
        enabled: true,
        paging: Paging::of(&page, offset, Some(limit)),
        events: page.items,
    }))
}
