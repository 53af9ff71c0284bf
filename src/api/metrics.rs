//! `GET /metrics`: Prometheus text exposition of every fresh series on the stream and of
//! Pulse's own pipeline metrics. Forecast and exhaustion series are written once per refit,
//! so they count as fresh until the next refit is due (plus the usual grace): Prometheus
//! sees them in every scrape, and a rule on them with `for:` can fire.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::error::ApiError;
use super::status::gather;
use super::AppState;
use crate::api::exposition::{render_components, render_connections, render_series};
use crate::model::catalog;
use crate::model::selector::Selector;
use crate::store::messages::SelectLatest;

/// Series written once per refit, held in `/metrics` until the next one is due.
const PER_REFIT: [&str; 2] = [catalog::FORECAST, catalog::EXHAUSTION_SECONDS];

/// `GET /metrics`: the Prometheus text exposition (docs/metrics.md).
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    summary = "Prometheus text exposition (docs/metrics.md)",
    responses(
        (status = 200, description = "the exposition", content_type = "text/plain", body = String),
        (status = 503, description = "the window store is not running", body = super::error::ErrorBody),
    ))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let now = state.handles.clock.now_ms();
    let select = |selector: Selector, since_ms: i64| {
        state
            .handles
            .window
            .send(SelectLatest { selector, since_ms })
    };
    let down =
        |e: actix::MailboxError| ApiError::Unavailable(format!("window store is not running: {e}"));
    let mut latest = select(Selector::all(), now - state.handles.stale_after_ms)
        .await
        .map_err(down)?;
    latest.retain(|(series, ..)| !PER_REFIT.contains(&series.name()));
    for name in PER_REFIT {
        let since = now - state.handles.forecast_stale_after_ms;
        latest.extend(select(Selector::metric(name), since).await.map_err(down)?);
    }
    let (_, reports) = gather(&state).await;
    let components: Vec<_> = reports.iter().map(|c| c.stats.clone()).collect();
    let mut body = String::with_capacity(latest.len() * 120 + 4096);
    render_series(&mut body, &latest);
    render_components(&mut body, &components);
    render_connections(&mut body, &state.connections);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    ))
}
