//! What the action runner receives, and the records it keeps.

use std::collections::BTreeMap;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::guard::{Firing, Refusal};
use super::Action;
use crate::messages::commands::Command;

/// The firing alerts with an action after an evaluation at `now_ms` (from the rule engine).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ActOn {
    pub now_ms: i64,
    pub firing: Vec<Firing>,
}

/// Recent action records, newest first, and the runner's mode.
#[derive(Debug, Message, Default)]
#[rtype(result = "ActionList")]
pub struct ListActions {
    pub rule: Option<String>,
    /// `executed`, `dry_run`, `failed` or a refusal (`cooldown`, ...).
    pub outcome: Option<String>,
    pub since_ms: Option<i64>,
    pub offset: usize,
    pub limit: usize,
}

/// What [`ListActions`] answers.
#[derive(Debug, Clone, Serialize)]
pub struct ActionList {
    pub paused: bool,
    pub dry_run: bool,
    /// Actions awaiting their outcome.
    pub awaiting: usize,
    /// The records the filter kept, before paging; the page's `offset` and `limit`.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub count: usize,
    pub actions: Vec<ActionRecord>,
}

#[derive(Debug, Message)]
#[rtype(result = "Option<ActionRecord>")]
pub struct GetAction(pub u64);

/// The kill switch: `true` pauses every action (refused as `paused`). Answers whether it
/// was paused before.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct SetPaused(pub bool);

/// A worker's acknowledgement of a command (`POST /api/v1/commands/{id}/ack`). Answers
/// `false` for a command no action sent.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct CommandAck {
    pub command_id: String,
    pub outcome: AckOutcome,
    pub detail: Option<String>,
}

/// What a worker says it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckOutcome {
    Done,
    Failed,
}

/// One decision that acted (or would have, in a dry run) or refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionRecord {
    pub id: u64,
    pub at_ms: i64,
    /// The trigger.
    pub rule: String,
    pub alert_id: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub action: Action,
    pub target: String,
    pub dry_run: bool,
    /// `executed`, `dry_run`, `failed`, or the refusal's name.
    pub outcome: String,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// The command sent (or that would have been), and to how many subscribers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<usize>,
    /// For a command: `awaiting`, then `done` once a worker did it, `failed` while every
    /// worker that answered failed, or `unacknowledged` when none answered in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack: Option<String>,
    /// Every worker's acknowledgement, in order (a command goes to every subscriber).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acks: Vec<AckEntry>,
    /// For a cleanup: the GPU's memory used before and after `settle_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
    /// For a webhook: the HTTP status, the tries, the last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookOutcome>,
}

/// One worker's acknowledgement of a command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AckEntry {
    pub outcome: AckOutcome,
    pub detail: Option<String>,
    pub at_ms: i64,
}

impl ActionRecord {
    /// Whether it acted (or would have, in a dry run): it counts for the cooldown.
    pub fn acted(&self) -> bool {
        matches!(
            self.outcome.as_str(),
            "executed" | "dry_run" | "failed" | "sending"
        )
    }
}

/// A cleanup's effect on the target GPU's memory used (`DCGM_FI_DEV_FB_USED`, MiB).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Effect {
    pub before_mib: Option<f64>,
    pub after_mib: Option<f64>,
    pub released_mib: Option<f64>,
    /// When the after value was read; null until then.
    pub measured_at_ms: Option<i64>,
    /// The predictor's first forecast of the GPU's memory fitted after the cleanup; null
    /// until there is one (or without a predictor).
    #[serde(default)]
    pub forecast_after: Option<ForecastAfter>,
}

/// What the predictor says of the GPU's memory after a cleanup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ForecastAfter {
    pub fitted_at_ms: i64,
    pub model: String,
    /// Seconds until the memory runs out, and the sentence; null when it no longer does
    /// within the forecast.
    pub exhaustion_seconds: Option<f64>,
    pub exhaustion: Option<String>,
}

/// The predictor to read forecasts from (sent once it runs: it starts after the runner).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UsePredictor(pub Recipient<crate::processors::predict::messages::ListPredictions>);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WebhookOutcome {
    pub status: Option<u16>,
    pub tries: u32,
    pub error: Option<String>,
}

/// News the action runner publishes: an action record made or changed (the Kafka sink's
/// actions topic).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ActionTaken(pub ActionRecord);
