//! The pipeline file: which sources run, how the window store keeps data, which sinks
//! receive the stream. Each section is the factory of its component.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{parse_toml, ConfigError};
use crate::sim::fleet::Scenario;
use crate::window::Retention;

/// The built-in `pipelines/default.toml`.
pub const EMBEDDED: &str = include_str!("../../pipelines/default.toml");
/// Name used in errors for the built-in file.
pub const EMBEDDED_NAME: &str = "<built-in pipelines/default.toml>";

/// A whole pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    pub sources: SourcesConfig,
    pub window: WindowConfig,
    /// Where the stream goes besides the window store.
    pub sinks: Vec<SinkConfig>,
}

/// The samplers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    pub gpu: GpuSourceConfig,
    pub requests: RequestSourceConfig,
}

/// Which GPU source runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuMode {
    /// NVML when it loads and sees at least one GPU, the simulated fleet otherwise.
    Auto,
    /// NVML or fail at start.
    Nvml,
    /// The simulated fleet.
    Simulated,
}

/// GPU sampler settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuSourceConfig {
    pub mode: GpuMode,
    /// Sampling interval.
    pub interval_ms: NonZeroU64,
    /// The simulated fleet, when it runs.
    pub simulated: SimulatedConfig,
}

impl Default for GpuSourceConfig {
    fn default() -> Self {
        GpuSourceConfig {
            mode: GpuMode::Auto,
            interval_ms: NonZeroU64::new(1000).unwrap(),
            simulated: SimulatedConfig::default(),
        }
    }
}

/// The simulated fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatedConfig {
    /// Number of GPUs.
    pub gpus: NonZeroUsize,
    /// Seed: the same seed gives the same series.
    pub seed: u64,
    /// `Hostname` label of the simulated host.
    pub hostname: String,
    /// GPU i runs `scenarios[i % len]`.
    pub scenarios: Vec<Scenario>,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        SimulatedConfig {
            gpus: NonZeroUsize::new(4).unwrap(),
            seed: 42,
            hostname: "sim-host".to_string(),
            scenarios: vec![
                Scenario::Steady,
                Scenario::MemoryLeak,
                Scenario::ThermalThrottle,
                Scenario::LoadSpike,
            ],
        }
    }
}

/// Request metrics (`POST /api/v1/requests` and Pulse's own handlers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestSourceConfig {
    /// How often counters and histograms go on the stream.
    pub interval_ms: NonZeroU64,
    /// Rate, percentiles and error rate are computed over this trailing window.
    pub window_s: NonZeroU64,
    /// Raw records kept for percentiles; past this the oldest fall out early (counted).
    pub max_recent: NonZeroUsize,
    /// Distinct (service, route, status) kept; others are folded into route `__other__`.
    pub max_series: NonZeroUsize,
}

impl Default for RequestSourceConfig {
    fn default() -> Self {
        RequestSourceConfig {
            interval_ms: NonZeroU64::new(1000).unwrap(),
            window_s: NonZeroU64::new(60).unwrap(),
            max_recent: NonZeroUsize::new(200_000).unwrap(),
            max_series: NonZeroUsize::new(10_000).unwrap(),
        }
    }
}

/// Window store retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Points kept per series (`DASHBOARD_HISTORY_SIZE` overrides).
    pub max_points: NonZeroUsize,
    /// Points older than this are dropped.
    pub max_age_s: NonZeroU64,
    /// Distinct series kept; samples of further series are refused and counted.
    pub max_series: NonZeroUsize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            max_points: NonZeroUsize::new(1800).unwrap(),
            max_age_s: NonZeroU64::new(1800).unwrap(),
            max_series: NonZeroUsize::new(100_000).unwrap(),
        }
    }
}

impl WindowConfig {
    pub fn retention(&self) -> Retention {
        Retention {
            max_points: self.max_points.get(),
            max_age_ms: self.max_age_s.get() as i64 * 1000,
            max_series: self.max_series.get(),
        }
    }
}

/// A sink for the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// Every sample as one JSON line, appended to a file.
    Jsonl {
        /// File to append to (created if missing).
        path: PathBuf,
        /// How often buffered lines are flushed to the file.
        #[serde(default = "default_flush_interval_ms")]
        flush_interval_ms: NonZeroU64,
    },
}

fn default_flush_interval_ms() -> NonZeroU64 {
    NonZeroU64::new(1000).unwrap()
}

impl PipelineConfig {
    /// Parses a pipeline file.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        parse_toml(file, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_pipeline_is_the_default() {
        assert_eq!(
            PipelineConfig::parse(EMBEDDED_NAME, EMBEDDED).unwrap(),
            PipelineConfig::default()
        );
    }

    #[test]
    fn errors_name_line_and_key() {
        let err = PipelineConfig::parse("p.toml", "[sources.gpu]\nmode = \"cuda\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("p.toml:2:8: `sources.gpu.mode`: unknown variant `cuda`"),
            "{err}"
        );
        let err = PipelineConfig::parse(
            "p.toml",
            "[sources.gpu.simulated]\nscenarios = [\"steady\", \"meltdown\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("p.toml:2:") && err.contains("sources.gpu.simulated.scenarios"),
            "{err}"
        );
        let err = PipelineConfig::parse(
            "p.toml",
            "[[sinks]]\ntype = \"jsonl\"\npath = \"x\"\nflush = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("unknown field `flush`") && err.starts_with("p.toml:"),
            "{err}"
        );
    }

    #[test]
    fn sinks_parse() {
        let p = PipelineConfig::parse(
            "p.toml",
            "[[sinks]]\ntype = \"jsonl\"\npath = \"/tmp/x.jsonl\"\n",
        )
        .unwrap();
        assert!(
            matches!(&p.sinks[0], SinkConfig::Jsonl { flush_interval_ms, .. } if flush_interval_ms.get() == 1000)
        );
    }
}
