//! What the anomaly engine reports: one [`Anomaly`] (with its peers' values for a peer
//! divergence), and the filters of the anomaly list. Shared by the engine, the workload
//! coalescer and the peer monitor.

use serde::Serialize;

use super::detector::Reason;
use crate::model::selector::Selector;
use crate::model::series::Series;

/// One anomaly: a series that scored at or above the threshold. Later firings of the same
/// series for the same reason, each within `2 × rest_samples` samples of the last, are
/// merged into it (a leak that keeps setting new highs is one anomaly, not a storm).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(example = json!({"id": 9,
    "series": {"metric": "DCGM_FI_DEV_XID_ERRORS", "labels": {"gpu": "4", "Hostname": "sim-host"}},
    "first_at_ms": 1795844263129_i64, "last_at_ms": 1795844263129_i64, "value": 79.0,
    "expected_low": 0.0, "expected_high": 0.0, "score": 1.0, "peak_score": 1.0, "count": 1,
    "reason": "new_high", "detail": "above every value seen so far", "is_rate": false}))]
pub struct Anomaly {
    /// Unique within this process, increasing.
    pub id: u64,
    /// The watched series.
    #[schema(value_type = crate::model::series::SeriesShape)]
    pub series: Series,
    /// When it was first detected, Unix ms.
    #[serde(rename = "first_at_ms")]
    pub first_ms: i64,
    /// When it was last detected (a firing merged into it), Unix ms.
    #[serde(rename = "last_at_ms")]
    pub last_ms: i64,
    /// The value that opened it (a rate, per second, for counters).
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub value: f64,
    /// Where the detector expected that value: the low end.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub expected_low: f64,
    /// Where the detector expected that value: the high end.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub expected_high: f64,
    /// The opening score, 0 to 1.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub score: f64,
    /// The highest score since.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub peak_score: f64,
    /// Firings merged into this anomaly.
    pub count: u32,
    pub reason: Reason,
    /// The reason, for people.
    pub detail: String,
    /// Whether the value is a counter's rate.
    pub is_rate: bool,
    /// The peers the GPU was compared with, for a peer divergence.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub peers: Option<PeerContext>,
}

impl Anomaly {
    /// How far `value` lies outside the range expected of this anomaly (0 inside it).
    pub fn outside(&self, value: f64) -> f64 {
        (self.expected_low - value)
            .max(value - self.expected_high)
            .max(0.0)
    }
}

/// The peers of a GPU that diverged from them: how many, and their smoothed values.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, utoipa::ToSchema)]
pub struct PeerContext {
    /// The other GPUs of the host on this metric.
    pub count: usize,
    /// Their median value.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub median: f64,
    /// Their lowest value.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub low: f64,
    /// Their highest value.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub high: f64,
}

/// Filters of the anomaly list.
#[derive(Debug, Clone, Default)]
pub struct AnomalyFilter {
    pub matchers: Selector,
    /// Last detected at or after, Unix ms.
    pub since_ms: Option<i64>,
    pub min_score: Option<f64>,
    /// Paging: skip `offset` of those kept, then at most `limit`.
    pub offset: usize,
    pub limit: usize,
}
