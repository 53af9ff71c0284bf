//! Alerts as the API, the query views and the Redis alert store see them: shared data,
//! with no behaviour of the rule engine.

use serde::Serialize;

use crate::model::selector::Selector;
use crate::rules::alerting::{Alert, AlertState};

/// An acknowledgement: someone has seen the alert. Not a silence: the alert keeps firing.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Acknowledgement {
    /// Who acknowledged it.
    pub by: String,
    /// What they said.
    pub comment: String,
    /// When, Unix ms.
    pub at_ms: i64,
}

/// An alert as the API shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AlertView {
    #[serde(flatten)]
    pub alert: Alert,
    /// The rule's name (`alertname`).
    pub name: String,
    /// The rule's group.
    pub group: String,
    /// The rule file.
    pub file: String,
    pub acknowledgement: Option<Acknowledgement>,
    /// Ids of the Alertmanager silences that match it now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub silenced_by: Vec<String>,
}

/// Filters of the active-alerts list.
#[derive(Debug, Default, Clone)]
pub struct AlertFilter {
    pub state: Option<AlertState>,
    pub severity: Option<String>,
    pub name: Option<String>,
    pub matchers: Selector,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

impl AlertFilter {
    pub(crate) fn accepts(&self, a: &AlertView, at_ms: i64) -> bool {
        let series = crate::model::series::SeriesKey::new(a.name.clone(), a.alert.labels.clone());
        self.state.is_none_or(|s| a.alert.state == s)
            && self
                .severity
                .as_ref()
                .is_none_or(|s| a.alert.labels.get("severity") == Some(s))
            && self.name.as_ref().is_none_or(|n| &a.name == n)
            && self.matchers.matches(&series)
            && self.since_ms.is_none_or(|t| at_ms >= t)
            && self.until_ms.is_none_or(|t| at_ms <= t)
    }
}

/// Counts for the dashboard summary.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AlertCounts {
    /// Alerts firing.
    pub firing: usize,
    /// Alerts pending.
    pub pending: usize,
    /// Of the active alerts, those acknowledged.
    pub acknowledged: usize,
}
