//! `GET /api/v1/commands`: server-sent events of the command stream, for workers that own
//! GPU memory (event `cleanup` or `action`, data = the command as JSON). When Pulse shuts down the
//! stream ends with an event `shutdown`: a worker reconnects to the next instance.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::Stream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use super::AppState;

/// `GET /api/v1/commands`: the command stream (never ends while Pulse runs).
#[utoipa::path(get, path = "/api/v1/commands", operation_id = "command_stream", tag = "ingest",
    summary = "the command stream for workers (server-sent events, never ends)",
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "events `cleanup` and `action` (data: a Command as JSON, id: its id), \
            `lagged` (commands this subscriber missed), `shutdown` (the last one)")))]
pub async fn subscribe(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.handles.commands.subscribe();
    let shutdown = state.shutdown.clone();
    let stream = BroadcastStream::new(rx).map(|item| {
        Ok(match item {
            Ok(cmd) => Event::default()
                .event(cmd.event())
                .id(cmd.id())
                .json_data(&cmd)
                .unwrap_or_else(|_| Event::default().comment("unserialisable command")),
            Err(BroadcastStreamRecvError::Lagged(n)) => Event::default()
                .event("lagged")
                .data(format!("{n} commands were missed by this subscriber")),
        })
    });
    let last = futures_util::stream::once(async {
        Ok(Event::default()
            .event("shutdown")
            .data("pulse is shutting down; reconnect"))
    });
    let stream = futures_util::StreamExt::take_until(stream, async move { shutdown.begun().await })
        .chain(last);
    Sse::new(stream).keep_alive(KeepAlive::default())
}
