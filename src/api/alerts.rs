//! Alerts: active, history, acknowledge; rule reload.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{limit_param, match_param, page, JsonBody, Paging};
use super::AppState;
use crate::rules::alerting::AlertState;
use crate::rules::engine::{
    AckError, Acknowledge, GetActiveAlerts, GetAlertHistory, LoadStatus, ReloadRules,
};
use crate::rules::engine::{GetRules, GroupInfo};
use crate::rules::view::{AlertFilter, AlertView};

/// Default and largest page of the history.
pub const HISTORY_PAGE: usize = 100;
pub const HISTORY_PAGE_MAX: usize = 1000;

fn down(e: actix::MailboxError) -> ApiError {
    ApiError::Unavailable(format!("rule engine is not running: {e}"))
}

#[derive(Debug, Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    /// `pending` or `firing` (the active alerts only).
    state: Option<String>,
    /// The `severity` label.
    severity: Option<String>,
    /// The alert's name.
    name: Option<String>,
    /// A PromQL series selector on the alert's labels, e.g. `{gpu="0",Hostname=~"node-.*"}`.
    #[serde(rename = "match")]
    #[param(example = "{gpu=\"0\"}")]
    matchers: Option<String>,
    /// Resolved at or after, Unix ms (the history only).
    since_ms: Option<i64>,
    /// Resolved at or before, Unix ms (the history only).
    until_ms: Option<i64>,
    /// Items on the page (the active alerts: every one when absent; the history: 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Items to skip (`total` counts them all).
    offset: Option<usize>,
}

/// A page of alerts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    #[serde(flatten)]
    paging: Paging,
    alerts: Vec<AlertView>,
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
#[utoipa::path(get, path = "/api/phase4/alerts/active", operation_id = "list_active_alerts",
    tag = "phase4", summary = "pending and firing alerts",
    params(FilterParams),
    responses(
        (status = 200, description = "the alerts", body = AlertPage),
        (status = 400, description = "a parameter out of range, a bad selector, or a history-only filter, named", body = ErrorBody),
        (status = 503, description = "the rule engine is not running", body = ErrorBody),
    ))]
pub async fn active(
    State(state): State<AppState>,
    q: Result<Query<FilterParams>, QueryRejection>,
) -> Result<Json<AlertPage>, ApiError> {
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
    let (alerts, paging) = page(alerts, p.offset, p.limit, HISTORY_PAGE_MAX)?;
    Ok(Json(AlertPage { paging, alerts }))
}

/// `GET /api/phase4/alerts/history?name=GpuHot&since_ms=...&limit=50&offset=0`
#[utoipa::path(get, path = "/api/phase4/alerts/history", operation_id = "list_alert_history",
    tag = "phase4", summary = "resolved alerts, newest first",
    params(FilterParams),
    responses(
        (status = 200, description = "a page of the history", body = AlertPage),
        (status = 400, description = "a parameter out of range, a bad selector, or `state`, named", body = ErrorBody),
        (status = 503, description = "the rule engine is not running", body = ErrorBody),
    ))]
pub async fn history(
    State(state): State<AppState>,
    q: Result<Query<FilterParams>, QueryRejection>,
) -> Result<Json<AlertPage>, ApiError> {
    let p = params(q)?;
    if p.state.is_some() {
        return Err(ApiError::BadRequest(
            "state: the history holds resolved alerts only".to_string(),
        ));
    }
    let limit = limit_param(p.limit, HISTORY_PAGE, HISTORY_PAGE_MAX)?;
    let offset = p.offset.unwrap_or(0);
    let (total, alerts): (usize, Vec<AlertView>) = state
        .handles
        .rules
        .send(GetAlertHistory {
            filter: filter(&p)?,
            offset,
            limit,
        })
        .await
        .map_err(down)?;
    let paging = Paging::new(total, offset, Some(limit), alerts.len());
    Ok(Json(AlertPage { paging, alerts }))
}

/// Who acknowledges an alert, and why.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"by": "ana", "comment": "expected: batch job"}))]
pub struct AcknowledgeBody {
    /// Who acknowledges it (not blank).
    #[schema(min_length = 1)]
    by: String,
    /// Why, or what is being done.
    #[serde(default)]
    comment: String,
}

/// `POST /api/phase4/alerts/{id}/acknowledge` with `{"by": "...", "comment": "..."}`
#[utoipa::path(post, path = "/api/phase4/alerts/{id}/acknowledge", operation_id = "acknowledge_alert",
    tag = "phase4", summary = "acknowledge a pending or firing alert",
    params(("id" = String, Path, description = "the alert's id")),
    request_body = AcknowledgeBody,
    responses(
        (status = 200, description = "the alert, acknowledged", body = AlertView),
        (status = 400, description = "a bad body or a blank `by`, named", body = ErrorBody),
        (status = 404, description = "no pending or firing alert has this id", body = ErrorBody),
        (status = 409, description = "the alert has resolved", body = ErrorBody),
        (status = 503, description = "the rule engine is not running, or the acknowledgement could not be stored", body = ErrorBody),
    ))]
pub async fn acknowledge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AcknowledgeBody>,
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

/// The rule groups as loaded.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleGroups {
    groups: Vec<GroupInfo>,
}

/// `GET /api/phase4/rules`: the loaded groups and rules, with their last error and active
/// alerts (Prometheus' shape is `GET /api/v1/rules`).
#[utoipa::path(get, path = "/api/phase4/rules", operation_id = "list_rules", tag = "phase4",
    summary = "the rule groups and rules as loaded, with their last error and active alerts",
    responses(
        (status = 200, description = "the groups", body = RuleGroups),
        (status = 503, description = "the rule engine is not running", body = ErrorBody),
    ))]
pub async fn rules(State(state): State<AppState>) -> Result<Json<RuleGroups>, ApiError> {
    let groups = state.handles.rules.send(GetRules).await.map_err(down)?;
    Ok(Json(RuleGroups { groups }))
}

/// `POST /api/v1/rules/reload`
#[utoipa::path(post, path = "/api/v1/rules/reload", operation_id = "reload_rules", tag = "phase4", summary = "read the rule files again",
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
