//! The moment shutdown begins, for whoever must end on their own: open event streams end
//! with a final `shutdown` event so that the server's graceful stop is not held by a worker
//! that keeps its stream open.

use std::sync::Arc;

use tokio::sync::watch;

/// Shared by the server (which begins it) and the handlers (which wait for it).
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl Shutdown {
    /// Shutdown begins: every waiter wakes.
    pub fn begin(&self) {
        self.tx.send_replace(true);
    }

    /// Resolves once shutdown has begun (at once if it has).
    pub async fn begun(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|started| *started).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_when_it_begins_and_late_ones_at_once() {
        let s = Shutdown::default();
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.begun().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        s.begin();
        waiter.await.unwrap();
        tokio::time::timeout(std::time::Duration::from_millis(100), s.begun())
            .await
            .unwrap();
    }
}
