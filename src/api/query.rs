//! The query actor's endpoints (`/api/phase4/...`): dashboard summary, GPU profile and cleanup, cache stats and clear.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::error::{ApiError, ErrorBody};
use super::extract::{window_param, OptionalJsonBody};
use super::AppState;
use crate::query::actor::{CleanupError, ClearCache, GetCacheStats, RunCleanup};
use crate::query::cache::{CacheStats, Cleared, View};
use crate::query::cleanup::{CleanupReport, CleanupRequest};
use crate::query::views::{DashboardSummary, GpuProfile};

/// Default range of the profile's min/avg/max.
pub const DEFAULT_PROFILE_WINDOW_S: u64 = 300;

fn json_bytes(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn mailbox_down(component: &str) -> impl FnOnce(actix::MailboxError) -> ApiError + '_ {
    move |e| ApiError::Unavailable(format!("{component} is not running: {e}"))
}

async fn view(state: &AppState, view: View) -> Result<Response, ApiError> {
    let bytes = state
        .handles
        .views
        .get(view)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(json_bytes(bytes))
}

/// `GET /api/phase4/dashboard/summary` (the cached view's bytes: a [`DashboardSummary`]).
#[utoipa::path(get, path = "/api/phase4/dashboard/summary", operation_id = "dashboard_summary",
    tag = "phase4", summary = "the fleet in one view",
    responses(
        (status = 200, description = "the summary", body = DashboardSummary),
        (status = 503, description = "the query actor is not running", body = ErrorBody),
    ))]
pub async fn dashboard_summary(State(state): State<AppState>) -> Result<Response, ApiError> {
    view(&state, View::Summary).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProfileParams {
    /// Range of min/avg/max, seconds (default 300, at most the window store's retention).
    #[param(minimum = 1)]
    window_s: Option<u64>,
}

/// `GET /api/phase4/gpu/profile?window_s=300` (the cached view's bytes: a [`GpuProfile`]).
#[utoipa::path(get, path = "/api/phase4/gpu/profile", operation_id = "gpu_profile",
    tag = "phase4", summary = "every GPU: labels, each metric's latest, min, avg and max, processes",
    params(ProfileParams),
    responses(
        (status = 200, description = "the profile", body = GpuProfile),
        (status = 400, description = "`window_s` out of range, named", body = ErrorBody),
        (status = 503, description = "the query actor is not running", body = ErrorBody),
    ))]
pub async fn gpu_profile(
    State(state): State<AppState>,
    params: Result<Query<ProfileParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let window_s = window_param(
        params.window_s,
        DEFAULT_PROFILE_WINDOW_S,
        state.limits.max_profile_window_s,
    )?;
    view(&state, View::Profile { window_s }).await
}

/// `POST /api/phase4/gpu/cleanup` with an optional body `{"gpus": ["0"], "settle_ms": 3000}`.
#[utoipa::path(post, path = "/api/phase4/gpu/cleanup", operation_id = "gpu_cleanup", tag = "phase4",
    summary = "ask workers to release cached GPU memory, and measure what was released",
    request_body = Option<CleanupRequest>,
    responses(
        (status = 200, description = "before and after, as measured", body = CleanupReport),
        (status = 400, description = "a bad body, an empty `gpus` or a `settle_ms` over its limit, named", body = ErrorBody),
        (status = 404, description = "a GPU asked for has not reported (named with those that have); nothing sent", body = ErrorBody),
        (status = 503, description = "the query actor or the command stream is not running", body = ErrorBody),
    ))]
pub async fn gpu_cleanup(
    State(state): State<AppState>,
    OptionalJsonBody(req): OptionalJsonBody<CleanupRequest>,
) -> Result<Json<CleanupReport>, ApiError> {
    if let Some(ms) = req.settle_ms {
        if ms > state.limits.max_settle_ms {
            return Err(ApiError::BadRequest(format!(
                "settle_ms: {ms} is above the limit of {}",
                state.limits.max_settle_ms
            )));
        }
    }
    if req.gpus.as_ref().is_some_and(|g| g.is_empty()) {
        return Err(ApiError::BadRequest(
            "gpus: an empty list cleans nothing; leave it out to clean every GPU".to_string(),
        ));
    }
    let report = state
        .handles
        .query
        .send(RunCleanup(req))
        .await
        .map_err(mailbox_down("query"))?
        .map_err(|e| match e {
            CleanupError::UnknownGpus { .. } => ApiError::NotFound(e.to_string()),
            CleanupError::Unavailable(e) => ApiError::Unavailable(e.to_string()),
        })?;
    Ok(Json(report))
}

/// `GET /api/phase4/cache/stats`
#[utoipa::path(get, path = "/api/phase4/cache/stats", tag = "phase4", summary = "the view cache",
    responses(
        (status = 200, description = "counts", body = CacheStats),
        (status = 503, description = "the query actor is not running", body = ErrorBody),
    ))]
pub async fn cache_stats(State(state): State<AppState>) -> Result<Json<CacheStats>, ApiError> {
    let stats = state
        .handles
        .query
        .send(GetCacheStats)
        .await
        .map_err(mailbox_down("query"))?;
    Ok(Json(stats))
}

/// `POST /api/phase4/cache/clear`
#[utoipa::path(post, path = "/api/phase4/cache/clear", tag = "phase4", summary = "empty the view cache",
    responses(
        (status = 200, description = "what was cleared", body = Cleared),
        (status = 503, description = "the Redis tier could not be cleared", body = ErrorBody),
    ))]
pub async fn cache_clear(State(state): State<AppState>) -> Result<Json<Cleared>, ApiError> {
    let cleared = state
        .handles
        .query
        .send(ClearCache)
        .await
        .map_err(mailbox_down("query"))?
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "this process's cache was cleared, the Redis tier was not: {e}"
            ))
        })?;
    Ok(Json(cleared))
}
