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

/// What [`ListActions`] answers: a page of records, newest first, and the runner's mode.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActionList {
    /// Whether the kill switch is on.
    pub paused: bool,
    /// Whether actions are only recorded (`actions.dry_run`).
    pub dry_run: bool,
    /// Actions awaiting their outcome.
    pub awaiting: usize,
    /// The records the filter kept, on every page.
    pub total: usize,
    /// Records skipped.
    pub offset: usize,
    /// Records at most on this page.
    pub limit: usize,
    /// Records on this page.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AckOutcome {
    /// The worker did it.
    Done,
    /// The worker tried and failed.
    Failed,
}

/// One decision that acted (or would have, in a dry run) or refused.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActionRecord {
    /// Unique within this process (and in Redis), increasing.
    pub id: u64,
    /// When it was decided, Unix ms.
    pub at_ms: i64,
    /// The trigger: the alerting rule's name.
    pub rule: String,
    /// The alert that fired it.
    pub alert_id: String,
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// The alert's value (null when it was not a number).
    #[schema(value_type = Option<f64>)]
    pub value: f64,
    pub action: Action,
    /// What it acts on: `HOST/GPU`, the host, or the alert.
    pub target: String,
    /// Whether it was only recorded.
    pub dry_run: bool,
    /// `executed`, `dry_run`, `failed`, or the refusal's name.
    pub outcome: String,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub refusal: Option<Refusal>,
    /// The command sent (or that would have been).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub command: Option<Command>,
    /// Command-stream subscribers the command reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub delivered_to: Option<usize>,
    /// For a command: `awaiting`, then `done` once a worker did it, `failed` while every
    /// worker that answered failed, or `unacknowledged` when none answered in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub ack: Option<String>,
    /// Every worker's acknowledgement, in order (a command goes to every subscriber).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub acks: Vec<AckEntry>,
    /// For a cleanup: the GPU's memory used before and after `settle_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub effect: Option<Effect>,
    /// For a webhook: the HTTP status, the tries, the last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub webhook: Option<WebhookOutcome>,
}

/// One worker's acknowledgement of a command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AckEntry {
    pub outcome: AckOutcome,
    /// What the worker said.
    pub detail: Option<String>,
    /// When, Unix ms.
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Effect {
    /// Used before the command.
    pub before_mib: Option<f64>,
    /// Used after `settle_ms`; null until measured.
    pub after_mib: Option<f64>,
    /// Before − after (negative if use grew).
    pub released_mib: Option<f64>,
    /// When the after value was read; null until then.
    pub measured_at_ms: Option<i64>,
    /// The predictor's first forecast of the GPU's memory fitted after the cleanup; null
    /// until there is one (or without a predictor).
    #[serde(default)]
    pub forecast_after: Option<ForecastAfter>,
}

/// What the predictor says of the GPU's memory after a cleanup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ForecastAfter {
    /// When the forecast was fitted, Unix ms.
    pub fitted_at_ms: i64,
    /// What was fitted.
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

/// How a webhook action's POST went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct WebhookOutcome {
    /// The last answer's HTTP status (null: no answer).
    pub status: Option<u16>,
    /// POSTs made.
    pub tries: u32,
    /// The last error.
    pub error: Option<String>,
}

/// News the action runner publishes: an action record made or changed (the Kafka sink's
/// actions topic).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ActionTaken(pub ActionRecord);
