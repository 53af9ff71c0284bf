//! Alert events: what the rule engine tells the sinks and streams.

use actix::Message;
use serde::Serialize;

use crate::rules::alerting::Alert;

/// What happened to an alert.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AlertEventKind {
    Pending,
    Firing,
    Resolved,
    Cancelled,
    Acknowledged,
}

/// A state change of an alert, as it goes on the stream.
#[derive(Debug, Clone, Serialize, Message)]
#[rtype(result = "()")]
pub struct AlertEvent {
    pub kind: AlertEventKind,
    pub at_ms: i64,
    pub alert: Alert,
}
