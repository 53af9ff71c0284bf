//! Rule evaluation requests and alert events.

use actix::Message;
use serde::Serialize;

use crate::rules::alerting::Alert;
use crate::rules::group::{GroupOutcome, GroupState};

/// Evaluate these groups at `t_ms` on the window store's thread (recording rules write
/// into the store). The groups travel with their state and come back in the answer.
#[derive(Debug, Message)]
#[rtype(result = "Vec<(GroupState, GroupOutcome)>")]
pub struct EvalGroups {
    pub groups: Vec<GroupState>,
    pub t_ms: i64,
}

/// Samples of these metric names were just stored (a sampler's or processor's batch; not
/// what rules wrote). The window store tells the rule engine, which evaluates the groups
/// reading them without waiting for their interval.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Stored {
    pub names: Vec<String>,
}

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
