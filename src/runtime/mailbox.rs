//! A recipient plus a gauge of messages sent to it and not yet answered, so mailbox
//! backlog shows in status and `/metrics`. Sends are awaited: a full mailbox makes the
//! sender wait (backpressure), it never drops.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use actix::prelude::*;

/// Messages in flight to one actor (queued, being handled, or waiting for room).
#[derive(Debug, Clone, Default)]
pub struct MailboxGauge(Arc<AtomicI64>);

impl MailboxGauge {
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Decrements the gauge when the send completes or is abandoned.
struct InFlight<'a>(&'a MailboxGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where an actor sends a message type, with the receiver's backlog gauge.
pub struct Mailbox<M>
where
    M: Message + Send,
    M::Result: Send,
{
    recipient: Recipient<M>,
    gauge: MailboxGauge,
}

impl<M> Clone for Mailbox<M>
where
    M: Message + Send,
    M::Result: Send,
{
    fn clone(&self) -> Self {
        Mailbox {
            recipient: self.recipient.clone(),
            gauge: self.gauge.clone(),
        }
    }
}

impl<M> Mailbox<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    pub fn new(recipient: Recipient<M>, gauge: MailboxGauge) -> Self {
        Mailbox { recipient, gauge }
    }

    /// Sends and waits for the answer; waits for room when the mailbox is full.
    pub async fn send(&self, msg: M) -> Result<M::Result, MailboxError> {
        self.gauge.0.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(&self.gauge);
        self.recipient.send(msg).await
    }
}
