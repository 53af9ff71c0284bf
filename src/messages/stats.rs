//! The stats message every actor answers: status and `/metrics` read the same numbers.

use std::collections::BTreeMap;

use actix::Message;
use serde::Serialize;

/// A component's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    Operational,
    Degraded,
    Down,
}

impl ComponentState {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentState::Operational => "operational",
            ComponentState::Degraded => "degraded",
            ComponentState::Down => "down",
        }
    }
}

/// Ask an actor for its [`ComponentStats`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ComponentStats")]
pub struct GetStats;

/// What one component reports about itself.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentStats {
    /// Component name, e.g. `window_store`.
    pub name: String,
    /// `source`, `store`, `sink`, `query`.
    pub kind: &'static str,
    pub state: ComponentState,
    /// Why the component is not operational, or what it is doing (e.g. "simulated fleet").
    pub reason: Option<String>,
    /// Items (samples or records) received.
    pub received_total: u64,
    /// Items passed downstream or stored.
    pub emitted_total: u64,
    /// Items that could not be processed, counted, never silent.
    pub dropped_total: u64,
    /// Messages sent to this actor and not yet answered.
    pub mailbox_backlog: i64,
    /// Component-specific figures (series held, cache entries...).
    pub extra: BTreeMap<&'static str, f64>,
    /// Component-specific figures with labels of their own (`pulse_<key>{component, ...}`).
    pub labelled: Vec<LabelledFigure>,
}

/// One labelled figure: `pulse_<key>{component="...", <labels>} value`.
#[derive(Debug, Clone, Serialize)]
pub struct LabelledFigure {
    pub key: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl ComponentStats {
    pub fn new(name: impl Into<String>, kind: &'static str) -> Self {
        ComponentStats {
            name: name.into(),
            kind,
            state: ComponentState::Operational,
            reason: None,
            received_total: 0,
            emitted_total: 0,
            dropped_total: 0,
            mailbox_backlog: 0,
            extra: BTreeMap::new(),
            labelled: Vec::new(),
        }
    }
}
