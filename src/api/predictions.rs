//! Predictions: the newest forecast of every forecast series, filtered.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{match_param, page, Paging, PAGE_MAX};
use super::AppState;
use crate::processors::predict::engine::{FitFailure, Prediction, PredictionFilter};
use crate::processors::predict::messages::ListPredictions;

#[derive(Debug, Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// A PromQL series selector on the forecast series, e.g.
    /// `{__name__="DCGM_FI_DEV_FB_USED",gpu="3"}`.
    #[serde(rename = "match")]
    matchers: Option<String>,
    /// Keep each forecast up to this many seconds ahead.
    #[param(minimum = 1)]
    horizon_s: Option<u64>,
    /// Predictions on the page (every one when absent).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Predictions to skip (`total` counts them all).
    offset: Option<usize>,
}

/// The newest forecast of every forecast series, and the series whose last fit failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct PredictionPage {
    /// Whether the predictor runs (`predictor.enabled`).
    enabled: bool,
    #[serde(flatten)]
    paging: Paging,
    predictions: Vec<Prediction>,
    /// Every series whose last fit failed (not paged).
    failures: Vec<FitFailure>,
}

/// `GET /api/phase4/predictions?match={gpu="3"}&horizon_s=600`
#[utoipa::path(get, path = "/api/phase4/predictions", operation_id = "list_predictions",
    tag = "phase4", summary = "forecasts, their intervals and times to exhaustion",
    params(Params),
    responses(
        (status = 200, description = "the forecasts", body = PredictionPage),
        (status = 400, description = "a parameter out of range or a bad selector, named", body = ErrorBody),
        (status = 503, description = "the predictor is not running", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Json<PredictionPage>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if p.horizon_s == Some(0) {
        return Err(ApiError::BadRequest(
            "horizon_s: must be at least 1".to_string(),
        ));
    }
    let matchers = match_param(p.matchers.as_deref())?;
    let Some(predictor) = &state.handles.predictor else {
        return Ok(Json(PredictionPage {
            enabled: false,
            paging: Paging::empty(p.offset.unwrap_or(0), p.limit),
            predictions: Vec::new(),
            failures: Vec::new(),
        }));
    };
    let filter = PredictionFilter {
        matchers,
        horizon_s: p.horizon_s,
    };
    let (predictions, failures) = predictor
        .send(ListPredictions(filter))
        .await
        .map_err(|e| ApiError::Unavailable(format!("predictor is not running: {e}")))?;
    let (predictions, paging) = page(predictions, p.offset, p.limit, PAGE_MAX)?;
    Ok(Json(PredictionPage {
        enabled: true,
        paging,
        predictions,
        failures,
    }))
}
