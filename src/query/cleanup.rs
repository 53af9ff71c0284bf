//! GPU cleanup reports: used memory per GPU before the command and after the settle
//! period, as measured. A GPU with no sample newer than the command has no "after": the
//! report says it was not measured rather than guess.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::series::Series;

/// Body of `POST /api/phase4/gpu/cleanup` (all optional).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"gpus": ["0", 1], "settle_ms": 3000}))]
pub struct CleanupRequest {
    /// `gpu` labels to clean (strings or integers); all GPUs when absent.
    #[serde(default, deserialize_with = "crate::model::gpu_id::optional_list")]
    #[schema(value_type = Option<Vec<crate::model::gpu_id::GpuId>>, min_items = 1)]
    pub gpus: Option<Vec<String>>,
    /// Wait before measuring again, ms; the configured default when absent.
    #[serde(default)]
    pub settle_ms: Option<u64>,
}

/// The answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CleanupReport {
    /// The command's id on the command stream.
    pub command_id: String,
    /// When it was sent, Unix ms.
    pub issued_at_ms: i64,
    /// How long Pulse waited before measuring again.
    pub settle_ms: u64,
    /// Subscribers the command was delivered to (the simulator and `/api/v1/commands` clients).
    pub delivered_to: usize,
    /// Each GPU cleaned, before and after.
    pub gpus: Vec<GpuCleanup>,
    /// Sum of `released_mib` over measured GPUs (negative if usage grew).
    pub released_mib_total: f64,
    /// GPUs for which no sample newer than the command arrived in time.
    pub not_measured: usize,
}

/// One GPU's before and after.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GpuCleanup {
    /// The host (dcgm-exporter's label name, as everywhere in the API).
    #[serde(rename = "Hostname")]
    pub hostname: String,
    /// The GPU (its `gpu` label).
    pub gpu: String,
    /// Memory used before the command.
    pub before_mib: f64,
    /// When that was read, Unix ms.
    pub before_at_ms: i64,
    /// Memory used after the settle period; null when no newer sample came.
    pub after_mib: Option<f64>,
    /// When that was read, Unix ms.
    pub after_at_ms: Option<i64>,
    /// before − after; negative when usage grew; null when not measured.
    pub released_mib: Option<f64>,
}

/// Pairs `DCGM_FI_DEV_FB_USED` readings before and after; `after` holds only samples newer
/// than the command.
pub fn pair_readings(
    before: &[(Series, i64, f64)],
    after: &[(Series, i64, f64)],
    issued_at_ms: i64,
) -> Vec<GpuCleanup> {
    let key = |s: &Series| {
        (
            s.label("Hostname").unwrap_or("").to_string(),
            s.label("gpu").unwrap_or("").to_string(),
        )
    };
    let after: BTreeMap<_, _> = after
        .iter()
        .filter(|(_, t, _)| *t > issued_at_ms)
        .map(|(s, t, v)| (key(s), (*t, *v)))
        .collect();
    let mut out: Vec<GpuCleanup> = before
        .iter()
        .map(|(s, t, v)| {
            let (hostname, gpu) = key(s);
            let a = after.get(&(hostname.clone(), gpu.clone()));
            GpuCleanup {
                hostname,
                gpu,
                before_mib: *v,
                before_at_ms: *t,
                after_mib: a.map(|a| a.1),
                after_at_ms: a.map(|a| a.0),
                released_mib: a.map(|a| v - a.1),
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.hostname, &a.gpu).cmp(&(&b.hostname, &b.gpu)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::series::SeriesKey;

    #[test]
    fn only_samples_newer_than_the_command_count_as_after() {
        let s0 = SeriesKey::shared("DCGM_FI_DEV_FB_USED", [("gpu", "0"), ("Hostname", "h")]);
        let s1 = SeriesKey::shared("DCGM_FI_DEV_FB_USED", [("gpu", "1"), ("Hostname", "h")]);
        let before = vec![(s0.clone(), 900, 5000.0), (s1.clone(), 900, 7000.0)];
        let after = vec![(s0, 1500, 3000.0), (s1, 1000, 6000.0)];
        let r = pair_readings(&before, &after, 1000);
        assert_eq!(r[0].released_mib, Some(2000.0));
        assert_eq!(
            r[1].after_mib, None,
            "a sample at the command time is not after it"
        );
    }
}
