//! The messages the rule engine receives, and what it answers.

use std::collections::{BTreeMap, HashSet};

use actix::prelude::*;
use serde::Serialize;

use crate::rules::view::{AlertCounts, AlertFilter, AlertView};
/// Result of loading the rule files.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LoadStatus {
    /// When the rule files were last read, Unix ms.
    pub loaded_at_ms: i64,
    /// Rule groups running.
    pub groups: usize,
    /// Rules running, in all groups.
    pub rules: usize,
    /// The last reload's error; the rules loaded before it keep running.
    pub last_error: Option<String>,
}

/// Active (pending and firing) alerts.
#[derive(Debug, Message)]
#[rtype(result = "Vec<AlertView>")]
pub struct GetActiveAlerts(pub AlertFilter);

/// Resolved alerts, newest first: (total matching, page).
#[derive(Debug, Message)]
#[rtype(result = "(usize, Vec<AlertView>)")]
pub struct GetAlertHistory {
    pub filter: AlertFilter,
    pub offset: usize,
    pub limit: usize,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AckError {
    #[error("no alert with id {0}")]
    NotFound(String),
    #[error("alert {0} is resolved; only active alerts can be acknowledged")]
    Resolved(String),
    /// The acknowledgement could not be stored in Redis; it was not taken.
    #[error("the acknowledgement could not be stored in Redis, so it was not taken: {0}")]
    NotStored(String),
}

/// Acknowledge an active alert.
#[derive(Debug, Message)]
#[rtype(result = "Result<AlertView, AckError>")]
pub struct Acknowledge {
    pub id: String,
    pub by: String,
    pub comment: String,
}

/// Reload the rule files.
#[derive(Debug, Message)]
#[rtype(result = "Result<LoadStatus, String>")]
pub struct ReloadRules;

#[derive(Debug, Message)]
#[rtype(result = "AlertCounts")]
pub struct GetAlertCounts;

/// The loaded groups and rules, with their health.
#[derive(Debug, Message)]
#[rtype(result = "Vec<GroupInfo>")]
pub struct GetRules;

/// One group as loaded (`GET /api/phase4/rules`; Prometheus' shape is `GET /api/v1/rules`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupInfo {
    /// The rule file.
    pub file: String,
    /// The group's name.
    pub name: String,
    /// How often it is evaluated.
    pub interval_ms: i64,
    /// When the group last ran (null before its first evaluation, or while it runs).
    #[serde(rename = "last_eval_at_ms")]
    pub last_eval_ms: Option<i64>,
    pub rules: Vec<RuleInfo>,
}

/// One rule as loaded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RuleInfo {
    /// `alert` or `record`.
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// The alert's or the recorded series' name.
    pub name: String,
    /// The PromQL expression.
    pub expr: String,
    /// The last evaluation's error, if it failed.
    pub last_error: Option<String>,
    /// Pending and firing alerts of an alerting rule.
    pub active_alerts: usize,
    /// An alerting rule's `for` (0 for a recording rule).
    pub for_ms: i64,
    /// An alerting rule's `keep_firing_for` (0 for a recording rule).
    pub keep_firing_for_ms: i64,
    /// Labels as written (templates unexpanded).
    pub labels: BTreeMap<String, String>,
    /// Annotations as written (templates unexpanded).
    pub annotations: BTreeMap<String, String>,
    /// The pending and firing alerts, for Prometheus' rules API (`GET /api/v1/rules`).
    #[serde(skip)]
    pub alerts: Vec<crate::rules::alerting::Alert>,
}

/// `pulse aggregate` took over these hosts: read their active alerts and acknowledgements
/// back from Redis into the rules. Answers how many alerts were placed.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, String>")]
pub struct AdoptAlerts(pub HashSet<String>);

/// `pulse aggregate` gave these hosts away: forget their alerts without writing anything
/// (their new owner keeps them). Answers how many were dropped.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct ReleaseAlerts(pub HashSet<String>);
