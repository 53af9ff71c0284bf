//! Predictions: the newest forecast of every forecast series, filtered.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{match_param, page, PAGE_MAX};
use super::AppState;
use crate::processors::predict::engine::PredictionFilter;
use crate::processors::predict::messages::ListPredictions;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Label matchers on the forecast series, e.g. `{__name__="DCGM_FI_DEV_FB_USED", gpu="3"}`.
    #[serde(rename = "match")]
    matchers: Option<String>,
    /// Keep the forecast up to this many seconds ahead.
    horizon_s: Option<u64>,
    /// Paging of the predictions (every one when absent).
    limit: Option<usize>,
    offset: Option<usize>,
}

/// `GET /api/phase4/predictions?match={gpu="3"}&horizon_s=600`
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if p.horizon_s == Some(0) {
        return Err(ApiError::BadRequest(
            "horizon_s: must be at least 1".to_string(),
        ));
    }
    let matchers = match_param(p.matchers.as_deref())?;
    let Some(predictor) = &state.handles.predictor else {
        return Ok(Json(json!({
            "enabled": false,
            "count": 0,
            "total": 0,
            "offset": 0,
            "limit": p.limit,
            "predictions": [],
            "failures": [],
        })));
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
    let mut answer = json!(paging);
    answer["enabled"] = json!(true);
    answer["predictions"] = json!(predictions);
    answer["failures"] = json!(failures);
    Ok(Json(answer))
}
