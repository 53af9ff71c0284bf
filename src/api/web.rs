//! The live page at `/` and what it reads besides the REST API: `GET /api/v1/series`, the
//! points of matching series over a trailing window. The page's assets are built into the
//! binary, so it needs no network beyond Pulse itself.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{match_param, window_param};
use super::AppState;
use crate::store::messages::SelectPoints;

const INDEX_HTML: &str = include_str!("../web/index.html");
const PULSE_JS: &str = include_str!("../web/pulse.js");
const PULSE_CSS: &str = include_str!("../web/pulse.css");

/// Most series one `/api/v1/series` call returns; a broader match gets 400.
pub const MAX_SERIES: usize = 500;

/// `GET /`: the live page.
#[utoipa::path(get, path = "/", operation_id = "live_page", tag = "operations",
    summary = "the live page", security(()),
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)))]
pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
}

pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PULSE_JS,
    )
}

pub async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PULSE_CSS,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesParams {
    /// Label matchers, e.g. `{__name__="DCGM_FI_DEV_GPU_UTIL", gpu="0"}`; required.
    #[serde(rename = "match")]
    matchers: Option<String>,
    /// Trailing window, seconds (default 300, at most the window store's retention).
    window_s: Option<u64>,
}

/// Matching series and their points over a trailing window (Pulse's shape of
/// `GET /api/v1/series`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SeriesWindow {
    /// The window, seconds.
    window_s: u64,
    /// Series matched.
    count: usize,
    series: Vec<SeriesPoints>,
}

/// One series and its points.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SeriesPoints {
    /// The metric name.
    metric: String,
    /// The other labels.
    labels: std::collections::BTreeMap<String, String>,
    /// `[Unix ms, value]` pairs, oldest first.
    #[schema(value_type = Vec<Vec<f64>>)]
    points: Vec<(i64, f64)>,
}

/// What `GET /api/v1/series` answers: Pulse's shape, or Prometheus' with `match[]`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SeriesAnswer {
    Pulse(SeriesWindow),
    Prometheus(super::prom::PromSuccess<Vec<std::collections::BTreeMap<String, String>>>),
}

/// An error of `GET /api/v1/series`, in the shape of the API asked. Only its schema is
/// used: `ApiError` and `PromError` build the bodies.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum SeriesError {
    Pulse(super::error::ErrorBody),
    Prometheus(super::prom::PromErrorBody),
}

/// `GET /api/v1/series?match={__name__="DCGM_FI_DEV_GPU_UTIL"}&window_s=300`; with
/// Prometheus' `match[]`, Prometheus' answer instead (`prom_meta::series`).
#[utoipa::path(get, path = "/api/v1/series", operation_id = "series", tag = "phase4",
    summary = "with `match`: matching series and their points (Pulse); with `match[]`: their label sets (Prometheus)",
    params(
        ("match" = Option<String>, Query,
            description = "Pulse's shape: a PromQL series selector, e.g. `{__name__=\"DCGM_FI_DEV_GPU_UTIL\",gpu=\"0\"}`"),
        ("window_s" = Option<u64>, Query, minimum = 1,
            description = "Pulse's shape: the trailing window, seconds (default 300)"),
        ("match[]" = Option<Vec<String>>, Query, style = Form, explode,
            description = "Prometheus' shape: a series selector (repeatable)"),
        ("start" = Option<String>, Query,
            description = "Prometheus' shape: series with a point since then (Unix seconds or RFC 3339)"),
    ),
    responses(
        (status = 200, description = "the series, in the shape of the API asked", body = SeriesAnswer),
        (status = 400, description = "a bad parameter, in the shape of the API asked", body = SeriesError),
        (status = 503, description = "the window store is down", body = SeriesError),
    ))]
pub async fn series(State(state): State<AppState>, uri: Uri) -> Response {
    if super::prom_meta::is_prometheus(&uri) {
        return match super::prom_meta::series(state, uri).await {
            Ok(sets) => Json(SeriesAnswer::Prometheus(sets)).into_response(),
            Err(e) => e,
        };
    }
    match own_series(state, Query::try_from_uri(&uri)).await {
        Ok(Json(answer)) => Json(SeriesAnswer::Pulse(answer)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn own_series(
    state: AppState,
    q: Result<Query<SeriesParams>, QueryRejection>,
) -> Result<Json<SeriesWindow>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let Some(text) = p.matchers.as_deref() else {
        return Err(ApiError::BadRequest(
            "match: give label matchers, e.g. {__name__=\"DCGM_FI_DEV_GPU_UTIL\"}".to_string(),
        ));
    };
    let selector = match_param(Some(text))?;
    let window_s = window_param(
        p.window_s,
        super::query::DEFAULT_PROFILE_WINDOW_S,
        state.limits.max_profile_window_s,
    )?;
    let now = state.handles.clock.now_ms();
    let found = state
        .handles
        .window
        .send(SelectPoints {
            selector,
            start_ms: now - window_s as i64 * 1000,
            end_ms: now,
        })
        .await
        .map_err(|e| ApiError::Unavailable(format!("window store is not running: {e}")))?;
    if found.len() > MAX_SERIES {
        return Err(ApiError::BadRequest(format!(
            "match: {} series match, more than {MAX_SERIES}; narrow the matchers",
            found.len()
        )));
    }
    let series: Vec<SeriesPoints> = found
        .into_iter()
        .map(|s| SeriesPoints {
            metric: s.series.name().to_string(),
            labels: s
                .series
                .labels()
                .iter()
                .filter(|(k, _)| &**k != "__name__")
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            points: s.points,
        })
        .collect();
    Ok(Json(SeriesWindow {
        window_s,
        count: series.len(),
        series,
    }))
}
