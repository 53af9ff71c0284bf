//! Alerts: active, history, acknowledge; rule reload.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ErrorBody};
use super::extract::{limit_param, match_param, page, JsonBody};
use super::AppState;
use crate::rules::alerting::AlertState;
use crate::rules::engine::GetRules;
use crate::rules::engine::{
    AckError, Acknowledge, GetActiveAlerts, GetAlertHistory, LoadStatus, ReloadRules,
};
use crate::rules::view::{AlertFilter, AlertView};

/// Default and largest page of the history.
pub const HISTORY_PAGE: usize = 100;
pub const HISTORY_PAGE_MAX: usize = 1000;

fn down(e: actix::MailboxError) -> ApiError {
    ApiError::Unavailable(format!("rule engine is not running: {e}"))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FilterParams {
    /// `pending` or `firing` (active list only).
    state: Option<String>,
    severity: Option<String>,
    /// Alert name.
    name: Option<String>,
    /// Label matchers, e.g. `{gpu="0", Hostname=~"node-.*"}`.
    #[serde(rename = "match")]
    matchers: Option<String>,
    /// History only: resolved at or after / before, Unix ms.
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    /// History only: paging.
    limit: Option<usize>,
    offset: Option<usize>,
}

fn filter(p: &FilterParams) -> Result<AlertFilter, ApiError> {
    let state = match p.state.as_deref() {
        None => None,
        Some("pending") => Some(AlertState::Pending),
        Some("firing") => Some(AlertState::Firing),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "state: {other:?} is not `pending` or `firing`"
            )))
        }
    };
    let matchers = match_param(p.matchers.as_deref())?;
    Ok(AlertFilter {
        state,
        severity: p.severity.clone(),
        name: p.name.clone(),
        matchers,
        since_ms: p.since_ms,
        until_ms: p.until_ms,
    })
}

fn params(q: Result<Query<FilterParams>, QueryRejection>) -> Result<FilterParams, ApiError> {
    q.map(|Query(p)| p)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// `GET /api/phase4/alerts/active?state=firing&severity=critical&match={gpu="0"}`
pub async fn active(
    State(state): State<AppState>,
    q: Result<Query<FilterParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = params(q)?;
    if p.since_ms.is_some() || p.until_ms.is_some() {
        return Err(ApiError::BadRequest(
            "since_ms and until_ms apply to the history".to_string(),
        ));
    }
    let alerts = state
        .handles
        .rules
        .send(GetActiveAlerts(filter(&p)?))
        .await
        .map_err(down)?;
    let (alerts, mut answer) = page(alerts, p.offset, p.limit, HISTORY_PAGE_MAX)?;
    answer["count"] = json!(alerts.len());
    answer["alerts"] = json!(alerts);
    Ok(Json(answer))
}

/// `GET /api/phase4/alerts/history?name=GpuHot&since_ms=...&limit=50&offset=0`
pub async fn history(
    State(state): State<AppState>,
    q: Result<Query<FilterParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = params(q)?;
    if p.state.is_some() {
        return Err(ApiError::BadRequest(
            "state: the history holds resolved alerts only".to_string(),
        ));
    }
    let limit = limit_param(p.limit, HISTORY_PAGE, HISTORY_PAGE_MAX)?;
    let offset = p.offset.unwrap_or(0);
    let (total, alerts) = state
        .handles
        .rules
        .send(GetAlertHistory {
            filter: filter(&p)?,
            offset,
            limit,
        })
        .await
        .map_err(down)?;
    Ok(Json(
        json!({ "total": total, "offset": offset, "limit": limit, "alerts": alerts }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    by: String,
    #[serde(default)]
    comment: String,
}

/// `POST /api/phase4/alerts/{id}/acknowledge` with `{"by": "...", "comment": "..."}`
pub async fn acknowledge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AckBody>,
) -> Result<Json<AlertView>, ApiError> {
    if body.by.trim().is_empty() {
        return Err(ApiError::BadRequest("by: say who acknowledges".to_string()));
    }
    let msg = Acknowledge {
        id,
        by: body.by,
        comment: body.comment,
    };
    match state.handles.rules.send(msg).await.map_err(down)? {
        Ok(view) => Ok(Json(view)),
        Err(e @ AckError::NotFound(_)) => Err(ApiError::NotFound(e.to_string())),
        Err(e @ AckError::Resolved(_)) => Err(ApiError::Conflict(e.to_string())),
        Err(e @ AckError::NotStored(_)) => Err(ApiError::Unavailable(e.to_string())),
    }
}

/// `GET /api/phase4/rules`: the loaded groups and rules, with their last error and active
/// alerts (Prometheus' shape is `GET /api/v1/rules`).
pub async fn rules(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let groups = state.handles.rules.send(GetRules).await.map_err(down)?;
    Ok(Json(json!({ "groups": groups })))
}

/// `POST /api/v1/rules/reload`
#[utoipa::path(post, path = "/api/v1/rules/reload", tag = "phase4", summary = "read the rule files again",
    responses(
        (status = 200, description = "loaded", body = LoadStatus),
        (status = 422, description = "the rule files do not load; the previous rules keep running", body = ErrorBody),
        (status = 503, description = "the rule engine is down", body = ErrorBody),
    ))]
pub async fn reload(State(state): State<AppState>) -> Result<Json<LoadStatus>, ApiError> {
    match state.handles.rules.send(ReloadRules).await.map_err(down)? {
        Ok(status) => Ok(Json(status)),
        Err(e) => Err(ApiError::Unprocessable(format!(
            "rules not reloaded, the previous rules keep running: {e}"
        ))),
    }
}
