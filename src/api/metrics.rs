//! `GET /metrics`: Prometheus text exposition of every fresh series on the stream and of
//! Pulse's own pipeline metrics.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::error::ApiError;
use super::status::gather;
use super::AppState;
use crate::api::exposition::{render_components, render_series};
use crate::messages::queries::SelectLatest;
use crate::model::selector::Selector;

pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let since_ms = state.handles.clock.now_ms() - state.handles.stale_after_ms;
    let latest = state
        .handles
        .window
        .send(SelectLatest {
            selector: Selector::all(),
            since_ms,
        })
        .await
        .map_err(|e| ApiError::Unavailable(format!("window store is not running: {e}")))?;
    let (_, reports) = gather(&state).await;
    let components: Vec<_> = reports.iter().map(|c| c.stats.clone()).collect();
    let mut body = String::with_capacity(latest.len() * 120 + 4096);
    render_series(&mut body, &latest);
    render_components(&mut body, &components);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    ))
}
