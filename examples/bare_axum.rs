//! Baseline for the REST load script: a bare axum JSON handler on the same kind of
//! multi-thread tokio runtime Pulse uses, with no actor, cache or pipeline behind it.
//!
//! `cargo run --release --example bare_axum -- 127.0.0.1:5999`

use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5999".to_string());
    let app = Router::new().route(
        "/bare",
        get(|| async {
            Json(json!({"status": "operational", "gpus": 4, "utilization_pct": 61.5}))
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    eprintln!(
        "bare axum listening on http://{}",
        listener.local_addr().unwrap()
    );
    axum::serve(listener, app).await.unwrap();
}
