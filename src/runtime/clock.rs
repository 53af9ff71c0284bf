//! Where "now" comes from.
//!
//! Window, timeout and freshness logic takes the time as an argument; actors ask their
//! [`Clock`] for it. Production uses the wall clock; tests anchor a clock on tokio's
//! (pausable) monotonic time so that `tokio::time::advance` moves sample timestamps too.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in Unix milliseconds.
#[derive(Debug, Clone)]
pub enum Clock {
    /// `SystemTime::now()`.
    System,
    /// A fixed wall time plus the tokio time elapsed since `start` (follows paused time).
    Tokio {
        /// Wall time, in Unix ms, that `start` stands for.
        wall_at_start_ms: i64,
        /// The tokio instant the clock was anchored at.
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Clock::System
    }

    /// A clock that reads `wall_ms` now and advances with tokio time (paused or not).
    pub fn tokio_anchored(wall_ms: i64) -> Self {
        Clock::Tokio {
            wall_at_start_ms: wall_ms,
            start: tokio::time::Instant::now(),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => system_now_ms(),
            Clock::Tokio {
                wall_at_start_ms,
                start,
            } => wall_at_start_ms + start.elapsed().as_millis() as i64,
        }
    }
}

/// Milliseconds since the Unix epoch from the system clock.
pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
