//! What alerting rules did (`pulse_action`): the records, one by id, the kill switch, and
//! workers' acknowledgements of commands.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{id_param, limit_param, JsonBody, PAGE, PAGE_MAX};
use super::AppState;
use crate::actions::actor::ActionRunner;
use crate::actions::messages::{
    AckOutcome, ActionList, ActionRecord, CommandAck, GetAction, ListActions, SetPaused,
};

fn runner(state: &AppState) -> Result<&actix::Addr<ActionRunner>, ApiError> {
    state
        .handles
        .actions
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this role runs no actions (pulse agent)".to_string()))
}

fn down(e: actix::MailboxError) -> ApiError {
    ApiError::Unavailable(format!("the action runner is not running: {e}"))
}

#[derive(Debug, Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// Only this rule's (alert name).
    rule: Option<String>,
    /// `executed`, `dry_run`, `failed`, or a refusal: `cooldown`, `rate_limited`,
    /// `max_concurrent`, `stale_data`, `acknowledged`, `silenced`, `paused`.
    outcome: Option<String>,
    /// Decided at or after, Unix ms.
    since_ms: Option<i64>,
    /// Records on the page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Records to skip (`total` counts them all).
    offset: Option<usize>,
}

/// `GET /api/phase4/actions?rule=...&outcome=...&since_ms=...&limit=...`, newest first.
#[utoipa::path(get, path = "/api/phase4/actions", operation_id = "list_actions", tag = "phase4",
    summary = "what alerting rules did, newest first",
    params(Params),
    responses(
        (status = 200, description = "a page of action records", body = ActionList),
        (status = 400, description = "a parameter out of range, named", body = ErrorBody),
        (status = 404, description = "this role runs no actions (`pulse agent`)", body = ErrorBody),
        (status = 503, description = "the action runner is not running", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Json<ActionList>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = limit_param(p.limit, PAGE, PAGE_MAX)?;
    let msg = ListActions {
        rule: p.rule,
        outcome: p.outcome,
        since_ms: p.since_ms,
        offset: p.offset.unwrap_or(0),
        limit,
    };
    Ok(Json(runner(&state)?.send(msg).await.map_err(down)?))
}

/// `GET /api/phase4/actions/{id}`
#[utoipa::path(get, path = "/api/phase4/actions/{id}", operation_id = "get_action", tag = "phase4",
    summary = "one action record",
    params(("id" = u64, Path, description = "the record's id")),
    responses(
        (status = 200, description = "the record", body = ActionRecord),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 404, description = "no such record (it may have aged out), or this role runs no actions", body = ErrorBody),
        (status = 503, description = "the action runner is not running", body = ErrorBody),
    ))]
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ActionRecord>, ApiError> {
    let id = id_param(&id, "an action")?;
    match runner(&state)?.send(GetAction(id)).await.map_err(down)? {
        Some(r) => Ok(Json(r)),
        None => Err(ApiError::NotFound(format!(
            "no action {id} (it may have aged out)"
        ))),
    }
}

/// The kill switch's position.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"paused": true, "was_paused": false}))]
pub struct KillSwitch {
    /// Whether every action is refused (as `paused`) from now on.
    paused: bool,
    /// Whether they were before this request.
    was_paused: bool,
}

/// `POST /api/phase4/actions/pause`: the kill switch; every action is refused (`paused`)
/// until `POST /api/phase4/actions/resume`.
#[utoipa::path(post, path = "/api/phase4/actions/pause", operation_id = "pause_actions", tag = "phase4", summary = "the kill switch on",
    responses(
        (status = 200, description = "the kill switch", body = KillSwitch),
        (status = 404, description = "this role runs no actions (`pulse agent`)", body = ErrorBody),
        (status = 503, description = "the action runner is not running", body = ErrorBody),
    ))]
pub async fn pause(State(state): State<AppState>) -> Result<Json<KillSwitch>, ApiError> {
    set_paused(state, true).await
}

/// `POST /api/phase4/actions/resume`: the kill switch off.
#[utoipa::path(post, path = "/api/phase4/actions/resume", operation_id = "resume_actions", tag = "phase4", summary = "the kill switch off",
    responses(
        (status = 200, description = "the kill switch", body = KillSwitch),
        (status = 404, description = "this role runs no actions (`pulse agent`)", body = ErrorBody),
        (status = 503, description = "the action runner is not running", body = ErrorBody),
    ))]
pub async fn resume(State(state): State<AppState>) -> Result<Json<KillSwitch>, ApiError> {
    set_paused(state, false).await
}

async fn set_paused(state: AppState, paused: bool) -> Result<Json<KillSwitch>, ApiError> {
    let was_paused = runner(&state)?
        .send(SetPaused(paused))
        .await
        .map_err(down)?;
    Ok(Json(KillSwitch { paused, was_paused }))
}

/// Body of a worker's acknowledgement.
/// A worker's acknowledgement of a command.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"outcome": "done", "detail": "drained in 2 s"}))]
pub struct CommandAckBody {
    outcome: AckOutcome,
    /// What the worker did or why it failed.
    #[serde(default)]
    detail: Option<String>,
}

/// The acknowledgement, taken.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandAcknowledged {
    /// The command's id.
    command_id: String,
    /// Always true: the action's record has it (`GET /api/phase4/actions/{id}`).
    acknowledged: bool,
}

/// `POST /api/v1/commands/{id}/ack` with `{"outcome": "done"|"failed", "detail": "..."}`:
/// a worker acknowledges a command an action sent.
#[utoipa::path(post, path = "/api/v1/commands/{id}/ack", operation_id = "acknowledge_command",
    tag = "ingest", summary = "a worker's acknowledgement of a command an action sent",
    params(("id" = String, Path, description = "the command's id (`action-N`)")),
    request_body = CommandAckBody,
    responses(
        (status = 200, description = "taken", body = CommandAcknowledged),
        (status = 400, description = "a bad body, named", body = ErrorBody),
        (status = 404, description = "no command of an action awaits this acknowledgement, or this role runs no actions", body = ErrorBody),
        (status = 503, description = "the action runner is not running", body = ErrorBody),
    ))]
pub async fn ack(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CommandAckBody>,
) -> Result<Json<CommandAcknowledged>, ApiError> {
    let msg = CommandAck {
        command_id: id.clone(),
        outcome: body.outcome,
        detail: body.detail,
    };
    if runner(&state)?.send(msg).await.map_err(down)? {
        Ok(Json(CommandAcknowledged {
            command_id: id,
            acknowledged: true,
        }))
    } else {
        Err(ApiError::NotFound(format!(
            "no command {id:?} awaits an acknowledgement (commands of actions are named action-N)"
        )))
    }
}
