//! The detector's settings (`[anomaly.detector]` in the pipeline file) and their checks.

use serde::{Deserialize, Serialize};

/// Longest context the detector supports.
pub const MAX_ORDER: usize = 6;

/// The detector's knobs. Defaults were chosen on the NAB development subset
/// (docs/anomaly-detection.md) and are the same for every series.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Samples used only to learn the range and the first contexts; scores are 0 meanwhile.
    pub warmup_samples: u32,
    /// Samples after the warm-up during which only new highs and lows are scored, while the
    /// context table fills.
    pub settle_samples: u32,
    /// Samples kept quiet (score 0) after the detector fires.
    pub rest_samples: u32,
    /// How many equal bins the range seen so far is cut into (fewer for a series with fewer
    /// distinct values in its last 1 024).
    pub bins: u32,
    /// Longest context, in preceding samples (1 to `MAX_ORDER`).
    pub context_order: u32,
    /// How often a context must have been seen before a novel successor counts.
    pub min_support: u32,
    /// How far (in bins) a value may step outside the range seen so far before it counts as
    /// a new extreme and the series is re-binned.
    pub range_tolerance_bins: f64,
    /// A new high or low counts only when the step that reached it is more than this many
    /// times the series' mean step (over about `STEP_MEMORY` samples); otherwise the series
    /// is drifting and its range widens quietly. 0: every new high or low counts.
    pub drift_step_factor: f64,
    /// A coarser time scale, in samples: the same method also judges the means of blocks
    /// of this many samples, so a change of shape slower than a few samples (a stuck
    /// sensor, a shift within the usual range, a burst of noise) is seen. 0: off.
    pub coarse_block: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            warmup_samples: 150,
            settle_samples: 150,
            rest_samples: 100,
            bins: 10,
            context_order: 2,
            min_support: 2,
            range_tolerance_bins: 0.5,
            drift_step_factor: 3.0,
            coarse_block: 24,
        }
    }
}

impl DetectorConfig {
    /// Checks the values; the error is the field's name and what is wrong with it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(2..=1000).contains(&self.bins) {
            return Err((
                "bins",
                format!("bins must be between 2 and 1000, got {}", self.bins),
            ));
        }
        if !(1..=MAX_ORDER as u32).contains(&self.context_order) {
            return Err((
                "context_order",
                format!(
                    "context_order must be between 1 and {MAX_ORDER}, got {}",
                    self.context_order
                ),
            ));
        }
        if self.warmup_samples < 2 {
            return Err((
                "warmup_samples",
                format!(
                    "warmup_samples must be at least 2, got {}",
                    self.warmup_samples
                ),
            ));
        }
        finite_non_negative("range_tolerance_bins", self.range_tolerance_bins)?;
        finite_non_negative("drift_step_factor", self.drift_step_factor)?;
        if self.coarse_block == 1 || self.coarse_block > 1000 {
            return Err((
                "coarse_block",
                format!(
                    "coarse_block must be 0 (off) or between 2 and 1000 samples, got {}",
                    self.coarse_block
                ),
            ));
        }
        Ok(())
    }
}

/// `Ok` for a finite `value` >= 0, else the field and what is wrong with it.
fn finite_non_negative(field: &'static str, value: f64) -> Result<(), (&'static str, String)> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err((
            field,
            format!("{field} must be a finite number >= 0, got {value}"),
        ))
    }
}
