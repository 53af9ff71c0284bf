//! `[actions]` in `config/pulse.toml`: the guardrails of the actions alerting rules take
//! (see the module above).

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};

use serde::{Deserialize, Serialize};

/// Guardrails. The defaults act on nothing: `dry_run` records what would have happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsConfig {
    /// Log and record what would have been done, do nothing. On by default: turn it off
    /// once the records show the actions you want. `PULSE_ACTIONS_DRY_RUN`.
    pub dry_run: bool,
    /// An alert acts only after firing this long (on top of its rule's `for`).
    pub min_firing_ms: u64,
    /// After an action on a target (a GPU: `Hostname` and `gpu`; else the alert), no other
    /// action on it for this long.
    pub cooldown_ms: NonZeroU64,
    /// At most this many actions in any hour, over all rules and targets.
    pub max_per_hour: NonZeroU32,
    /// At most this many actions awaiting their outcome (a cleanup's settle time, a
    /// webhook's answer, a command's acknowledgement) at once.
    pub max_concurrent: NonZeroUsize,
    /// Act only when the target has a sample this recent (its `Hostname` and `gpu`).
    pub max_data_age_ms: NonZeroU64,
    /// How long after a cleanup its effect (memory used) is measured again.
    pub settle_ms: NonZeroU64,
    /// How long a command waits for a worker's acknowledgement before it is shown as
    /// unacknowledged.
    pub ack_timeout_ms: NonZeroU64,
    /// Per webhook POST, and how many times a failed one is tried again.
    pub webhook_timeout_ms: NonZeroU64,
    pub webhook_retries: u32,
    /// Action records kept for the API, newest first; the oldest fall out.
    pub max_records: NonZeroUsize,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        ActionsConfig {
            dry_run: true,
            min_firing_ms: 0,
            cooldown_ms: NonZeroU64::new(10 * 60 * 1000).unwrap(),
            max_per_hour: NonZeroU32::new(20).unwrap(),
            max_concurrent: NonZeroUsize::new(4).unwrap(),
            max_data_age_ms: NonZeroU64::new(30_000).unwrap(),
            settle_ms: NonZeroU64::new(10_000).unwrap(),
            ack_timeout_ms: NonZeroU64::new(30_000).unwrap(),
            webhook_timeout_ms: NonZeroU64::new(5_000).unwrap(),
            webhook_retries: 2,
            max_records: NonZeroUsize::new(1_000).unwrap(),
        }
    }
}
