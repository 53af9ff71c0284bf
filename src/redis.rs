//! The one Redis connection policy every part of Pulse that talks to Redis uses (the Redis
//! sink, the rule engine's alert state, the anomaly list, the view cache's second tier, the
//! Kafka source's history reads): connect on first use, reconnect after failures, and give
//! every round trip a deadline, so Pulse starts and reports what is degraded when Redis is
//! not there yet or hangs.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// One round trip may take this long before it counts as failed.
pub const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a (re)connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest wait between two reconnection attempts.
pub const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);

/// A Redis connection that connects on first use and reconnects after failures.
pub fn lazy_connection(url: &str) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(ROUND_TRIP_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(RECONNECT_MAX_DELAY);
    ConnectionManager::new_lazy_with_config(client, config)
}

/// A Redis round trip that fails after [`ROUND_TRIP_TIMEOUT`], with the error as text.
pub async fn timed<T>(
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(ROUND_TRIP_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "no answer within {} s",
            ROUND_TRIP_TIMEOUT.as_secs()
        )),
    }
}
