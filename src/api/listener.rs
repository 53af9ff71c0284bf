//! The HTTP listener (HTTP/1.1): at most `server.max_connections` connections (more are
//! closed at once, counted), a request header must arrive within
//! `server.header_read_timeout_ms` (an idle keep-alive connection is closed after it too),
//! and a graceful stop: no new connections once shutdown begins, then connections under way
//! finish or are closed when the grace runs out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::runtime::shutdown::Shutdown;

/// What the listener counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub accepted: AtomicU64,
    /// Closed at once: `server.max_connections` were open.
    pub refused_at_limit: AtomicU64,
    /// Closed because a request header did not arrive in time (idle or slow clients).
    pub header_timeouts: AtomicU64,
    pub open: AtomicU64,
}

/// How the listener treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub grace: Duration,
}

/// Past this many header fields hyper itself answers 431, with an empty body; up to it
/// the router answers past its own limit ([`super::MAX_HEADERS`]), in JSON.
pub const HYPER_MAX_HEADERS: usize = 1000;

/// Serves `app` on `listener` until `stopping` begins, then for at most the grace.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    stats: Arc<ConnectionStats>,
    stopping: Shutdown,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .max_headers(HYPER_MAX_HEADERS)
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopping.begun() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.refused_at_limit.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let stats = stats.clone();
        tokio::spawn(async move {
            if connection.await.is_err_and(|e| e.is_timeout()) {
                stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open {} ms after the shutdown began: closed",
            limits.grace.as_millis()
        );
    }
}
