//! `POST /api/v1/requests`: request records from inference services.
//!
//! The whole batch is validated first; one bad record rejects the batch with 400 naming
//! it, so nothing is half-accepted. 202 means every record was counted. If the request
//! sampler's mailbox stays full past `INGEST_TIMEOUT`, the answer is 503: nothing of that
//! batch was accepted and the client may retry it.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;

use super::error::ApiError;
use super::extract::JsonBody;
use super::AppState;
use crate::actors::request_sampler::IngestRequests;
use crate::requests::RequestRecord;

/// How long a batch may wait for room in the request sampler's mailbox.
pub const INGEST_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn ingest_requests(
    State(state): State<AppState>,
    JsonBody(records): JsonBody<Vec<RequestRecord>>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    for (i, r) in records.iter().enumerate() {
        r.validate()
            .map_err(|(field, why)| ApiError::BadRequest(format!("[{i}].{field}: {why}")))?;
    }
    let n = records.len();
    let send = state.handles.requests.send(IngestRequests { records });
    match tokio::time::timeout(INGEST_TIMEOUT, send).await {
        Ok(Ok(accepted)) => Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": accepted })))),
        Ok(Err(e)) => Err(ApiError::Unavailable(format!(
            "request sampler is not running: {e}"
        ))),
        Err(_) => Err(ApiError::Unavailable(format!(
            "request sampler is busy; the batch of {n} records was not accepted, retry later"
        ))),
    }
}
