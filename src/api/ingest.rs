//! `POST /api/v1/requests`: request records from inference services.
//!
//! The whole batch is validated first; one bad record rejects the batch with 400 naming
//! it, so nothing is half-accepted. 202 means every record was counted. If the request
//! sampler's mailbox stays full past `INGEST_TIMEOUT`, the answer is 503: nothing of that
//! batch was accepted and the client may retry it.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use opentelemetry::trace::SpanKind;
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::AppState;
use crate::sources::requests::actor::IngestRequests;
use crate::sources::requests::aggregate::RequestRecord;
use crate::telemetry::SpanCx;

/// How long a batch may wait for room in the request sampler's mailbox.
pub const INGEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A batch, counted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// Records counted (all of the batch).
    accepted: usize,
    /// Of them, those that carry a trace id (kept for `GET /api/v1/requests/traced`).
    traced: usize,
    /// The `traceparent`'s trace id, which records without their own took.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    trace_id: Option<String>,
    /// Why the `traceparent` header was ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    warning: Option<String>,
}

/// `POST /api/v1/requests` with a JSON array of records.
#[utoipa::path(post, path = "/api/v1/requests", operation_id = "ingest_requests", tag = "ingest",
    summary = "request records from inference services",
    params(("traceparent" = Option<String>, Header,
        description = "W3C trace context; records without a trace id take its trace id")),
    request_body = Vec<RequestRecord>,
    responses(
        (status = 202, description = "every record counted", body = Accepted),
        (status = 400, description = "a bad record, named by its index and field; none of the batch counted", body = ErrorBody),
        (status = 503, description = "the request sampler is busy or down; none of the batch counted, retry", body = ErrorBody),
    ))]
pub async fn ingest_requests(
    State(state): State<AppState>,
    span: Option<Extension<SpanCx>>,
    headers: HeaderMap,
    JsonBody(mut records): JsonBody<Vec<RequestRecord>>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let now = state.handles.clock.now_ms();
    for (i, r) in records.iter().enumerate() {
        r.validate_at(now)
            .map_err(|(field, why)| ApiError::BadRequest(format!("[{i}].{field}: {why}")))?;
    }
    // Records without a trace id of their own take the batch's `traceparent`.
    let (batch_trace, ignored) = match super::traceparent(&headers) {
        Some(Ok(sc)) => (Some(sc.trace_id().to_string()), None),
        Some(Err(why)) => (None, Some(format!("traceparent ignored: {why}"))),
        None => (None, None),
    };
    let mut traced = Vec::new();
    for r in &mut records {
        if r.trace_id.is_none() {
            r.trace_id = batch_trace.clone();
        }
        if r.trace_id.is_some() {
            let mut t = r.clone();
            t.timestamp.get_or_insert(now);
            traced.push(t);
        }
    }
    let n = records.len();
    let child = span.map(|Extension(s)| {
        let c = s.child("request_sampler.ingest", SpanKind::Client);
        c.set("pulse.records", n as i64);
        c.set("pulse.records_traced", traced.len() as i64);
        c
    });
    let send = state.handles.requests.send(IngestRequests { records });
    let outcome = tokio::time::timeout(INGEST_TIMEOUT, send).await;
    if let (Some(c), Err(_) | Ok(Err(_))) = (&child, &outcome) {
        c.error("the request sampler did not take the batch");
    }
    drop(child);
    match outcome {
        Ok(Ok(accepted)) => {
            let body = Accepted {
                accepted,
                traced: traced.len(),
                trace_id: batch_trace,
                warning: ignored,
            };
            state.handles.traced_requests.extend(traced);
            Ok((StatusCode::ACCEPTED, Json(body)))
        }
        Ok(Err(e)) => Err(ApiError::Unavailable(format!(
            "request sampler is not running: {e}"
        ))),
        Err(_) => Err(ApiError::Unavailable(format!(
            "request sampler is busy; the batch of {n} records was not accepted, retry later"
        ))),
    }
}
