//! Alert delivery: one actor per destination (an Alertmanager's `POST /api/v2/alerts`, or a
//! webhook that takes Alertmanager's webhook payload). It receives [`NotifyAlerts`] from the
//! rule engine, which decides what to send as Prometheus' notifier does (firing alerts every
//! `resend_delay_ms`, resolved ones for 15 minutes, `endsAt` four resend periods ahead while
//! firing). Alerts wait in a bounded queue (oldest dropped first, counted) and are sent in
//! batches; a failed POST keeps them queued and is retried with a backoff, so an outage
//! shorter than the queue loses nothing. The destination is degraded while its last POST
//! failed.

pub mod config;
pub mod payload;
pub mod silences;

use std::collections::VecDeque;
use std::time::Duration;

use actix::prelude::*;

use crate::runtime::clock::Clock;
use crate::runtime::stats::{figure, ComponentState, ComponentStats, GetStats};
use config::{Destination, Protocol};
pub use payload::OutgoingAlert;

/// Alerts the rule engine wants delivered.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct NotifyAlerts {
    pub alerts: Vec<OutgoingAlert>,
}

/// First wait after a failed POST; it doubles up to [`MAX_RETRY_MS`].
pub const FIRST_RETRY_MS: u64 = 500;
/// Longest wait between two tries: delivery resumes within this of the destination's return.
pub const MAX_RETRY_MS: u64 = 5_000;

/// Posts alerts to one destination.
pub struct AlertNotifier {
    destination: Destination,
    /// The HTTP client, kept for every POST (it pools connections).
    agent: ureq::Agent,
    /// Sent in webhook payloads (`externalURL`).
    external_url: String,
    /// (sequence number, alert), oldest first.
    queue: VecDeque<(u64, OutgoingAlert)>,
    next_seq: u64,
    capacity: usize,
    max_batch: usize,
    /// A POST is under way (one at a time, in order).
    in_flight: bool,
    retry_ms: u64,
    clock: Clock,
    received: u64,
    delivered: u64,
    dropped: u64,
    failed_posts: u64,
    /// Why the last POST failed; `None` once one succeeds.
    last_error: Option<String>,
}

impl AlertNotifier {
    pub fn new(
        destination: Destination,
        external_url: String,
        capacity: usize,
        max_batch: usize,
        clock: Clock,
    ) -> Self {
        AlertNotifier {
            agent: destination.agent(),
            destination,
            external_url,
            queue: VecDeque::new(),
            next_seq: 0,
            capacity: capacity.max(1),
            max_batch: max_batch.max(1),
            in_flight: false,
            retry_ms: FIRST_RETRY_MS,
            clock,
            received: 0,
            delivered: 0,
            dropped: 0,
            failed_posts: 0,
            last_error: None,
        }
    }

    /// Queues alerts, dropping the oldest past the capacity.
    fn enqueue(&mut self, alerts: Vec<OutgoingAlert>) {
        for a in alerts {
            self.received += 1;
            self.queue.push_back((self.next_seq, a));
            self.next_seq += 1;
            if self.queue.len() > self.capacity {
                self.queue.pop_front();
                self.dropped += 1;
            }
        }
    }

    /// The bodies of the next batch and the last sequence number in it.
    fn next_batch(&self) -> Option<(Vec<String>, u64, usize)> {
        let batch: Vec<OutgoingAlert> = self
            .queue
            .iter()
            .take(self.max_batch)
            .map(|(_, a)| a.clone())
            .collect();
        let last = self.queue.get(batch.len().checked_sub(1)?)?.0;
        let bodies = match self.destination.protocol {
            Protocol::AlertmanagerV2 => vec![payload::alertmanager_v2(&batch)],
            Protocol::Webhook => payload::webhooks(&batch, self.clock.now_ms(), &self.external_url),
        };
        Some((bodies, last, batch.len()))
    }

    /// Sends the next batch unless one is under way.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            return;
        }
        let Some((bodies, last_seq, count)) = self.next_batch() else {
            return;
        };
        self.in_flight = true;
        let (destination, agent) = (self.destination.clone(), self.agent.clone());
        let post = tokio::task::spawn_blocking(move || post_all(&agent, &destination, &bodies));
        ctx.spawn(post.into_actor(self).map(move |result, act, ctx| {
            act.in_flight = false;
            match result.unwrap_or_else(|e| Err(format!("sender task failed: {e}"))) {
                Ok(()) => {
                    // Those still queued (some may have been dropped meanwhile).
                    while act.queue.front().is_some_and(|(seq, _)| *seq <= last_seq) {
                        act.queue.pop_front();
                    }
                    act.delivered += count as u64;
                    act.last_error = None;
                    act.retry_ms = FIRST_RETRY_MS;
                    act.pump(ctx);
                }
                Err(e) => {
                    act.failed_posts += 1;
                    if act.last_error.is_none() {
                        tracing::warn!(destination = %act.destination.url, "alert delivery failed, retrying: {e}");
                    }
                    act.last_error = Some(e);
                    let wait = Duration::from_millis(act.retry_ms);
                    act.retry_ms = (act.retry_ms * 2).min(MAX_RETRY_MS);
                    ctx.run_later(wait, |act, ctx| act.pump(ctx));
                }
            }
        }));
    }
}

/// POSTs each body; the first failure is the error.
fn post_all(
    agent: &ureq::Agent,
    destination: &Destination,
    bodies: &[String],
) -> Result<(), String> {
    for body in bodies {
        let mut request = agent
            .post(&destination.url)
            .set("Content-Type", "application/json")
            .set("User-Agent", concat!("pulse/", env!("CARGO_PKG_VERSION")));
        if let Some(auth) = &destination.authorization {
            request = request.set("Authorization", auth);
        }
        match request.send_string(body) {
            Ok(_) => {}
            Err(ureq::Error::Status(code, response)) => {
                let text = response.into_string().unwrap_or_default();
                return Err(format!("HTTP {code}: {}", text.trim()));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

impl Actor for AlertNotifier {
    type Context = Context<Self>;
}

impl Handler<NotifyAlerts> for AlertNotifier {
    type Result = ();
    fn handle(&mut self, msg: NotifyAlerts, ctx: &mut Self::Context) {
        self.enqueue(msg.alerts);
        self.pump(ctx);
    }
}

impl Handler<GetStats> for AlertNotifier {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let mut st = ComponentStats::new(self.destination.name(), "sink");
        st.received_total = self.received;
        st.emitted_total = self.delivered;
        st.dropped_total = self.dropped;
        st.set(figure::ALERTS_QUEUED, self.queue.len() as f64);
        st.set(figure::ALERT_POSTS_FAILED_TOTAL, self.failed_posts as f64);
        if let Some(e) = &self.last_error {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!(
                "unreachable ({e}); {} alerts queued, retrying",
                self.queue.len()
            ));
        }
        MessageResult(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier(capacity: usize) -> AlertNotifier {
        let destination = Destination {
            url: "http://127.0.0.1:9/api/v2/alerts".into(),
            protocol: Protocol::AlertmanagerV2,
            timeout_ms: 100,
            authorization: None,
            tls: None,
        };
        AlertNotifier::new(destination, String::new(), capacity, 2, Clock::System)
    }

    fn alert(n: usize) -> OutgoingAlert {
        OutgoingAlert {
            labels: [("alertname".to_string(), format!("A{n}"))].into(),
            annotations: Default::default(),
            starts_at_ms: 0,
            ends_at_ms: 1,
            generator_url: String::new(),
            fingerprint: n.to_string(),
        }
    }

    #[test]
    fn the_queue_is_bounded_and_drops_the_oldest_counted() {
        let mut n = notifier(3);
        n.enqueue((0..5).map(alert).collect());
        assert_eq!((n.received, n.dropped, n.queue.len()), (5, 2, 3));
        assert_eq!(n.queue[0].1.fingerprint, "2");
        let (bodies, last, count) = n.next_batch().unwrap();
        assert_eq!((bodies.len(), last, count), (1, 3, 2));
        assert!(bodies[0].contains("\"A2\"") && bodies[0].contains("\"A3\""));
    }
}
