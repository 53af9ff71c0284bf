//! Computed views: the dashboard summary and the GPU profile, from window-store answers.
//! Pure functions; the query actor gathers the inputs and caches the outputs.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::messages::figures;
use crate::model::catalog::{self as m, unit_of};
use crate::model::series::Series;
use crate::rules::view::AlertCounts;
use crate::sources::requests::aggregate::RequestSummary;
use crate::store::window::SeriesStats;

/// Which GPU source runs, and why.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(as = GpuSource)]
pub struct GpuSourceInfo {
    /// `nvml` or `simulated`.
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// Why this source was chosen (e.g. why NVML could not be used).
    pub detail: String,
}

/// `GET /api/phase4/dashboard/summary`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DashboardSummary {
    /// When it was computed, Unix ms (views are recomputed at most every `refresh_ms`).
    pub generated_at_ms: i64,
    /// `dashboard.refresh_ms`.
    pub refresh_ms: u64,
    pub gpu_source: GpuSourceInfo,
    pub gpus: GpuFleetSummary,
    pub requests: RequestSummary,
    /// Active alerts: firing, pending, acknowledged.
    pub alerts: AlertCounts,
    /// The resource forecast to run out first, if any is on course to (from the predictor's
    /// `pulse_exhaustion_seconds`).
    pub nearest_exhaustion: Option<NearestExhaustion>,
}

/// The soonest predicted exhaustion in the fleet.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct NearestExhaustion {
    /// The host (dcgm-exporter's label name, as everywhere in the API).
    #[serde(rename = "Hostname")]
    pub hostname: String,
    /// The GPU (its `gpu` label).
    pub gpu: String,
    /// The metric that runs out, e.g. `DCGM_FI_DEV_FB_USED`.
    pub metric: String,
    /// e.g. `memory`.
    pub resource: String,
    /// Seconds until the forecast reaches the limit.
    #[serde(serialize_with = "figures::six")]
    pub seconds: f64,
    /// The range's early end (the first level's upper bound).
    #[serde(serialize_with = "figures::six_opt")]
    pub earliest_seconds: Option<f64>,
    /// The range's late end (its lower bound).
    #[serde(serialize_with = "figures::six_opt")]
    pub latest_seconds: Option<f64>,
    /// As of, Unix ms.
    pub estimated_at_ms: i64,
}

/// The soonest `pulse_exhaustion_seconds{bound="estimate"}` among the newest samples, with
/// its earliest/latest bounds.
pub fn nearest_exhaustion(latest: &[(Series, i64, f64)]) -> Option<NearestExhaustion> {
    let key = |s: &Series| {
        (
            gpu_key(s),
            s.label("metric").unwrap_or("").to_string(),
            s.label("resource").unwrap_or("").to_string(),
        )
    };
    let exhaustion = || {
        latest
            .iter()
            .filter(|(s, _, v)| s.name() == m::EXHAUSTION_SECONDS && v.is_finite())
    };
    let (series, at, seconds) = exhaustion()
        .filter(|(s, _, _)| s.label("bound") == Some("estimate"))
        .min_by(|a, b| a.2.total_cmp(&b.2))?;
    let bound = |name: &str| {
        exhaustion()
            .find(|(s, _, _)| s.label("bound") == Some(name) && key(s) == key(series))
            .map(|(_, _, v)| *v)
    };
    let ((hostname, gpu), metric, resource) = key(series);
    Some(NearestExhaustion {
        hostname,
        gpu,
        metric,
        resource,
        seconds: *seconds,
        earliest_seconds: bound("earliest"),
        latest_seconds: bound("latest"),
        estimated_at_ms: *at,
    })
}

/// Fleet-wide GPU figures from each GPU's newest samples.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct GpuFleetSummary {
    /// GPUs with a recent utilisation sample.
    pub count: usize,
    /// Utilisation, percent, over those GPUs.
    pub utilization_pct: AvgMax,
    pub memory: MemorySummary,
    /// The hottest GPU (null: no temperature).
    pub hottest: Option<HottestGpu>,
}

/// Average and maximum, null when there is no data.
#[derive(Debug, Clone, Serialize, Default, PartialEq, utoipa::ToSchema)]
pub struct AvgMax {
    /// The average.
    #[serde(serialize_with = "figures::six_opt")]
    pub avg: Option<f64>,
    /// The maximum.
    #[serde(serialize_with = "figures::six_opt")]
    pub max: Option<f64>,
}

/// Framebuffer memory across the fleet.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct MemorySummary {
    /// Used, all GPUs together.
    #[serde(serialize_with = "figures::six")]
    pub used_mib: f64,
    /// Total, all GPUs together.
    #[serde(serialize_with = "figures::six")]
    pub total_mib: f64,
    /// Per-GPU used/total, in %.
    pub used_pct: AvgMax,
}

/// The GPU with the highest temperature.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HottestGpu {
    /// The host (dcgm-exporter's label name, as everywhere in the API).
    #[serde(rename = "Hostname")]
    pub hostname: String,
    /// The GPU (its `gpu` label).
    pub gpu: String,
    /// Its temperature, °C.
    #[serde(serialize_with = "figures::six")]
    pub temperature_c: f64,
}

/// (Hostname, gpu) of a series.
fn gpu_key(s: &Series) -> (String, String) {
    (
        s.label("Hostname").unwrap_or("").to_string(),
        s.label("gpu").unwrap_or("").to_string(),
    )
}

fn avg_max(values: &[f64]) -> AvgMax {
    if values.is_empty() {
        return AvgMax::default();
    }
    AvgMax {
        avg: Some(values.iter().sum::<f64>() / values.len() as f64),
        max: Some(values.iter().cloned().fold(f64::NEG_INFINITY, f64::max)),
    }
}

/// Summarises the newest GPU samples (already filtered to fresh ones).
pub fn gpu_fleet_summary(latest: &[(Series, i64, f64)]) -> GpuFleetSummary {
    let mut util = Vec::new();
    let mut used: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut total: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut hottest: Option<HottestGpu> = None;
    for (series, _, value) in latest {
        if value.is_nan() {
            continue;
        }
        match series.name() {
            m::GPU_UTIL => util.push(*value),
            m::FB_USED => {
                used.insert(gpu_key(series), *value);
            }
            m::FB_TOTAL => {
                total.insert(gpu_key(series), *value);
            }
            m::GPU_TEMP if hottest.as_ref().is_none_or(|h| *value > h.temperature_c) => {
                let (hostname, gpu) = gpu_key(series);
                hottest = Some(HottestGpu {
                    hostname,
                    gpu,
                    temperature_c: *value,
                });
            }
            _ => {}
        }
    }
    let pct: Vec<f64> = used
        .iter()
        .filter_map(|(k, u)| total.get(k).filter(|t| **t > 0.0).map(|t| u / t * 100.0))
        .collect();
    GpuFleetSummary {
        count: util.len(),
        utilization_pct: avg_max(&util),
        memory: MemorySummary {
            used_mib: used.values().sum(),
            total_mib: total.values().sum(),
            used_pct: avg_max(&pct),
        },
        hottest,
    }
}

/// `GET /api/phase4/gpu/profile`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GpuProfile {
    /// When it was computed, Unix ms.
    pub generated_at_ms: i64,
    /// The range min/avg/max cover.
    pub window_s: u64,
    pub gpu_source: GpuSourceInfo,
    /// Every GPU seen within `dashboard.stale_after_ms`.
    pub gpus: Vec<GpuEntry>,
}

/// One GPU in the profile.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GpuEntry {
    /// The host (dcgm-exporter's label name, as everywhere in the API).
    #[serde(rename = "Hostname")]
    pub hostname: String,
    /// The GPU (its `gpu` label).
    pub gpu: String,
    /// The GPU's UUID.
    #[serde(rename = "UUID")]
    pub uuid: String,
    /// The GPU's model, e.g. `NVIDIA H200`.
    #[serde(rename = "modelName")]
    pub model_name: String,
    /// Newest sample time of this GPU.
    #[serde(rename = "last_seen_at_ms")]
    pub last_seen_ms: i64,
    /// By dcgm-exporter metric name.
    pub metrics: BTreeMap<String, MetricFigures>,
    /// The processes holding its memory, seen within `dashboard.stale_after_ms`.
    pub processes: Vec<ProcessEntry>,
}

/// Latest and min/avg/max of one metric over the window.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MetricFigures {
    /// A word: `percent`, `mebibytes`, `celsius`, `watts`, `megahertz`,
    /// `kilobytes_per_second`, `code`, `bitmask`, `errors`, `boolean`.
    #[schema(value_type = String)]
    pub unit: &'static str,
    /// The newest value.
    #[serde(serialize_with = "figures::six")]
    pub latest: f64,
    /// Over the window: the lowest.
    #[serde(serialize_with = "figures::six")]
    pub min: f64,
    /// Over the window: the mean.
    #[serde(serialize_with = "figures::six")]
    pub avg: f64,
    /// Over the window: the highest.
    #[serde(serialize_with = "figures::six")]
    pub max: f64,
    /// Samples in the window.
    pub samples: usize,
}

/// A process holding GPU memory.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProcessEntry {
    /// Its process id (on the GPU's host).
    pub pid: u32,
    /// Its command name (`unknown` when it could not be read).
    pub name: String,
    /// GPU memory it holds now.
    #[serde(serialize_with = "figures::six")]
    pub memory_used_mib: f64,
    /// The most it held within the window.
    #[serde(serialize_with = "figures::six")]
    pub memory_max_mib: f64,
}

/// Groups window statistics per (host, GPU); drops GPUs and processes not seen since
/// `fresh_since_ms`.
pub fn gpu_entries(stats: Vec<SeriesStats>, fresh_since_ms: i64) -> Vec<GpuEntry> {
    let mut gpus: BTreeMap<(String, String), GpuEntry> = BTreeMap::new();
    for st in stats {
        let key = gpu_key(&st.series);
        let entry = gpus.entry(key.clone()).or_insert_with(|| GpuEntry {
            hostname: key.0.clone(),
            gpu: key.1.clone(),
            uuid: st.series.label("UUID").unwrap_or("").to_string(),
            model_name: st.series.label("modelName").unwrap_or("").to_string(),
            last_seen_ms: 0,
            metrics: BTreeMap::new(),
            processes: Vec::new(),
        });
        let (t, latest) = st.latest;
        if st.series.name() == m::PROCESS_FB_USED {
            if t >= fresh_since_ms {
                entry.processes.push(ProcessEntry {
                    pid: st
                        .series
                        .label("pid")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0),
                    name: st.series.label("process_name").unwrap_or("").to_string(),
                    memory_used_mib: latest,
                    memory_max_mib: st.max,
                });
            }
            continue;
        }
        entry.last_seen_ms = entry.last_seen_ms.max(t);
        entry.metrics.insert(
            st.series.name().to_string(),
            MetricFigures {
                unit: unit_of(st.series.name()),
                latest,
                min: st.min,
                avg: st.avg,
                max: st.max,
                samples: st.count,
            },
        );
    }
    gpus.into_values()
        .filter(|g| g.last_seen_ms >= fresh_since_ms)
        .map(|mut g| {
            g.processes
                .sort_by(|a, b| b.memory_used_mib.total_cmp(&a.memory_used_mib));
            g
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::series::SeriesKey;

    fn s(name: &str, gpu: &str) -> Series {
        SeriesKey::shared(name, [("gpu", gpu), ("Hostname", "h")])
    }

    #[test]
    fn fleet_summary_averages_and_finds_the_hottest() {
        let latest = vec![
            (s(m::GPU_UTIL, "0"), 1, 50.0),
            (s(m::GPU_UTIL, "1"), 1, 100.0),
            (s(m::FB_USED, "0"), 1, 10.0),
            (s(m::FB_TOTAL, "0"), 1, 100.0),
            (s(m::FB_USED, "1"), 1, 50.0),
            (s(m::FB_TOTAL, "1"), 1, 100.0),
            (s(m::GPU_TEMP, "0"), 1, 60.0),
            (s(m::GPU_TEMP, "1"), 1, 85.0),
        ];
        let f = gpu_fleet_summary(&latest);
        assert_eq!(f.count, 2);
        assert_eq!(
            f.utilization_pct,
            AvgMax {
                avg: Some(75.0),
                max: Some(100.0)
            }
        );
        assert_eq!(
            f.memory.used_pct,
            AvgMax {
                avg: Some(30.0),
                max: Some(50.0)
            }
        );
        assert_eq!((f.memory.used_mib, f.memory.total_mib), (60.0, 200.0));
        assert_eq!(f.hottest.unwrap().gpu, "1");
        assert_eq!(gpu_fleet_summary(&[]).utilization_pct, AvgMax::default());
    }

    #[test]
    fn profile_groups_per_gpu_and_drops_stale_ones() {
        let stat = |series: Series, t: i64, v: f64| SeriesStats {
            series,
            latest: (t, v),
            min: v - 1.0,
            max: v + 1.0,
            avg: v,
            count: 3,
        };
        let proc_series = SeriesKey::shared(
            m::PROCESS_FB_USED,
            [
                ("gpu", "0"),
                ("Hostname", "h"),
                ("pid", "42"),
                ("process_name", "python"),
            ],
        );
        let entries = gpu_entries(
            vec![
                stat(s(m::GPU_UTIL, "0"), 100, 50.0),
                stat(proc_series, 100, 900.0),
                stat(s(m::GPU_UTIL, "1"), 10, 50.0),
            ],
            50,
        );
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].metrics[m::GPU_UTIL].unit, "percent");
        assert_eq!(entries[0].processes[0].pid, 42);
        assert_eq!(entries[0].processes[0].memory_max_mib, 901.0);
    }
}
