//! The pipeline file: which sources run, how the window store keeps data, which sinks
//! receive the stream. Each section is the factory of its component.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::{parse_toml, ConfigError};
use crate::sources::gpu_simulated::fleet::Scenario;
use crate::store::window::Retention;

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
    /// The anomaly detector.
    pub anomaly: AnomalyConfig,
    /// The predictor.
    pub predictor: PredictorConfig,
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
    /// Distinct routes one service may have; its further routes fold into `__other__`,
    /// so a client that puts ids in its routes takes only its share.
    pub max_routes_per_service: NonZeroUsize,
    /// Records with a trace id kept for trace lookups; the oldest fall out first.
    pub max_traced: NonZeroUsize,
}

impl Default for RequestSourceConfig {
    fn default() -> Self {
        RequestSourceConfig {
            interval_ms: NonZeroU64::new(1000).unwrap(),
            window_s: NonZeroU64::new(60).unwrap(),
            max_recent: NonZeroUsize::new(200_000).unwrap(),
            max_series: NonZeroUsize::new(2_000).unwrap(),
            max_routes_per_service: NonZeroUsize::new(200).unwrap(),
            max_traced: NonZeroUsize::new(10_000).unwrap(),
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
    /// The windows' memory budget, MiB (0: none): past it samples of new series are
    /// refused and counted, and the series held keep storing.
    pub max_mib: u64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            max_points: NonZeroUsize::new(1800).unwrap(),
            max_age_s: NonZeroU64::new(1800).unwrap(),
            max_series: NonZeroUsize::new(100_000).unwrap(),
            max_mib: 1024,
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

/// Environment variables that override the anomaly threshold. `ANOMALY_THRESHOLD` is the
/// original system's name, honoured as is.
pub const THRESHOLD_ENV: [&str; 2] = ["PULSE_ANOMALY_THRESHOLD", "ANOMALY_THRESHOLD"];

/// The anomaly detector: which series it watches and how it judges them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// Off: no detector actor, no score series, an empty anomaly list.
    pub enabled: bool,
    /// Series matching any of these selectors are watched (PromQL selectors).
    pub watch: Vec<WatchSelector>,
    /// A score at or above this is an anomaly (`ANOMALY_THRESHOLD` overrides).
    pub threshold: f64,
    /// Watched series at most (about 12 KiB each); samples of further series are counted.
    pub max_series: NonZeroUsize,
    /// Anomalies kept for the API; the oldest fall out first.
    pub max_anomalies: NonZeroUsize,
    /// A pause longer than this many usual sampling intervals starts the series' context
    /// afresh, so a gap is not an anomaly.
    pub gap_intervals: f64,
    /// How long a GPU's firing waits to see whether most GPUs of its host fire too (then it
    /// is one workload change: a job starting, a checkpoint, a job stopping), in ms of
    /// sample time; 0 opens every firing at once.
    pub workload_window_ms: u64,
    /// A GPU whose value leaves its usual place among the other GPUs of its host by more
    /// than this fraction of their median, while they hold steady, is an anomaly (peer
    /// divergence: a straggler, a throttled card); 0 turns the comparison off.
    pub peer_tolerance: f64,
    /// How long (ms of sample time) a GPU must stay out of line before it is reported.
    pub peer_hold_ms: u64,
    /// Which watched GPU series are compared with their peers (PromQL selectors).
    pub peer_watch: Vec<WatchSelector>,
    /// The per-series detector.
    pub detector: crate::processors::anomaly::DetectorConfig,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            enabled: true,
            watch: {
                static PARSED: OnceLock<Vec<WatchSelector>> = OnceLock::new();
                built_in(&PARSED, DEFAULT_WATCH)
            },
            threshold: 0.78,
            max_series: NonZeroUsize::new(10_000).unwrap(),
            max_anomalies: NonZeroUsize::new(10_000).unwrap(),
            gap_intervals: 5.0,
            workload_window_ms: 5_000,
            peer_tolerance: 0.15,
            peer_hold_ms: 5_000,
            peer_watch: {
                static PARSED: OnceLock<Vec<WatchSelector>> = OnceLock::new();
                built_in(&PARSED, DEFAULT_PEER_WATCH)
            },
            detector: crate::processors::anomaly::DetectorConfig::default(),
        }
    }
}

/// What the detector watches by default: GPU load, memory, heat, power, clocks, XID and
/// double-bit ECC errors, and the request rates of the services Pulse watches (not its own
/// API's, which follow whoever polls it).
pub const DEFAULT_WATCH: &[&str] = &[
    r#"{__name__=~"DCGM_FI_DEV_(GPU_UTIL|FB_USED|GPU_TEMP|POWER_USAGE|SM_CLOCK|XID_ERRORS|ECC_DBE_VOL_TOTAL)"}"#,
    r#"{__name__="http_requests_total", service!="pulse"}"#,
];

/// What is compared across a host's GPUs by default: the activity a straggler, a throttled
/// or degraded card falls away in. Not temperature (it lags a change of load by minutes, and
/// a hot card is caught by the per-series detector), not memory (rank 0 holds more).
pub const DEFAULT_PEER_WATCH: &[&str] =
    &[r#"{__name__=~"DCGM_FI_DEV_(GPU_UTIL|POWER_USAGE|SM_CLOCK)"}"#];

/// A built-in selector list ([`DEFAULT_WATCH`], [`DEFAULT_FORECAST`]), parsed once into
/// `parsed`: every pipeline file without its own list starts from it, and parsing the
/// anomaly list's regex again for each file took 11 % of the `config` fuzz target's time.
fn built_in(parsed: &'static OnceLock<Vec<WatchSelector>>, texts: &[&str]) -> Vec<WatchSelector> {
    parsed
        .get_or_init(|| {
            texts
                .iter()
                .map(|s| WatchSelector::try_from(s.to_string()).expect("built-in selector"))
                .collect()
        })
        .clone()
}

/// A PromQL selector in the pipeline file, checked when the file is read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WatchSelector {
    text: String,
    #[serde(skip)]
    selector: crate::model::selector::Selector,
}

impl WatchSelector {
    pub fn selector(&self) -> &crate::model::selector::Selector {
        &self.selector
    }
}

impl PartialEq for WatchSelector {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl TryFrom<String> for WatchSelector {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let selector = crate::promql::parse_matchers(&text)?;
        if selector.matchers.is_empty() {
            return Err(format!(
                "{text:?} selects nothing; name a metric or a label"
            ));
        }
        Ok(WatchSelector { text, selector })
    }
}

impl From<WatchSelector> for String {
    fn from(w: WatchSelector) -> String {
        w.text
    }
}

/// The longest `anomaly.workload_window_ms`: a GPU fault is reported at most this late.
pub const MAX_WORKLOAD_WINDOW_MS: u64 = 60_000;

impl AnomalyConfig {
    /// The engine's settings.
    pub fn settings(&self) -> crate::processors::anomaly::EngineSettings {
        crate::processors::anomaly::EngineSettings {
            watch: self.watch.iter().map(|w| w.selector().clone()).collect(),
            threshold: self.threshold,
            detector: self.detector.clone(),
            max_series: self.max_series.get(),
            max_anomalies: self.max_anomalies.get(),
            gap_intervals: self.gap_intervals,
            workload_window_ms: self.workload_window_ms as i64,
            peers: crate::processors::anomaly::peers::PeerSettings {
                watch: self
                    .peer_watch
                    .iter()
                    .map(|w| w.selector().clone())
                    .collect(),
                tolerance: self.peer_tolerance,
                hold_ms: self.peer_hold_ms as i64,
            },
        }
    }

    /// Checks what serde cannot; the error names the key.
    fn validate(&self) -> Result<(), (String, String)> {
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err((
                "anomaly.threshold".into(),
                format!("must be between 0 and 1, got {}", self.threshold),
            ));
        }
        if !(self.gap_intervals >= 1.0 && self.gap_intervals.is_finite()) {
            return Err((
                "anomaly.gap_intervals".into(),
                format!("must be a number >= 1, got {}", self.gap_intervals),
            ));
        }
        if self.workload_window_ms > MAX_WORKLOAD_WINDOW_MS {
            return Err((
                "anomaly.workload_window_ms".into(),
                format!(
                    "must be at most {MAX_WORKLOAD_WINDOW_MS} (a fault would be reported that late), got {}",
                    self.workload_window_ms
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.peer_tolerance) {
            return Err((
                "anomaly.peer_tolerance".into(),
                format!(
                    "must be between 0 (off) and 1 (a fraction of the peers' median), got {}",
                    self.peer_tolerance
                ),
            ));
        }
        if self.peer_hold_ms > MAX_WORKLOAD_WINDOW_MS {
            return Err((
                "anomaly.peer_hold_ms".into(),
                format!(
                    "must be at most {MAX_WORKLOAD_WINDOW_MS} (a straggler would be reported that late), got {}",
                    self.peer_hold_ms
                ),
            ));
        }
        self.detector
            .validate()
            .map_err(|(field, message)| (format!("anomaly.detector.{field}"), message))
    }
}

/// The predictor: which series are forecast, on what window, how often, how far ahead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictorConfig {
    /// Off: no predictor actor, no forecast series, an empty prediction list.
    pub enabled: bool,
    /// Series matching any of these selectors are forecast. Counters are forecast as rates.
    pub watch: Vec<WatchSelector>,
    /// Window each fit sees.
    pub window_s: NonZeroU64,
    /// Grid step the window is averaged onto (and the forecast's step).
    pub step_ms: NonZeroU64,
    /// How often every series is refitted.
    pub refit_interval_ms: NonZeroU64,
    /// Horizons put on the stream as `pulse_forecast{horizon="<h>s"}`; multiples of `step_ms`.
    pub horizons_s: Vec<u64>,
    /// Prediction-interval levels, each in (0, 1).
    pub levels: Vec<f64>,
    /// Series forecast at most; further series are counted.
    pub max_series: NonZeroUsize,
    /// A fit slower than this is discarded and reported.
    pub fit_timeout_ms: NonZeroU64,
    /// Refit cycles a series whose fit failed waits before it is tried again.
    pub failure_backoff_cycles: u32,
    /// Bounded resources: `metric` runs out when it reaches the same-labelled `limit_metric`.
    pub limits: Vec<LimitConfig>,
}

/// A bounded resource for time-to-exhaustion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub metric: String,
    pub limit_metric: String,
    /// Name used in sentences and the `resource` label, e.g. `memory`.
    pub resource: String,
}

/// What the predictor forecasts by default: GPU memory and utilisation, request rates (not
/// of Pulse's own API), and
/// the request p95 the built-in rule pack records.
pub const DEFAULT_FORECAST: &[&str] = &[
    r#"{__name__=~"DCGM_FI_DEV_(FB_USED|GPU_UTIL)"}"#,
    r#"{__name__="http_requests_total", service!="pulse"}"#,
    r#"{__name__="service_route:http_request_duration_seconds:p95_5m", service!="pulse"}"#,
];

impl Default for PredictorConfig {
    fn default() -> Self {
        PredictorConfig {
            enabled: true,
            watch: {
                static PARSED: OnceLock<Vec<WatchSelector>> = OnceLock::new();
                built_in(&PARSED, DEFAULT_FORECAST)
            },
            window_s: NonZeroU64::new(1800).unwrap(),
            step_ms: NonZeroU64::new(10_000).unwrap(),
            refit_interval_ms: NonZeroU64::new(60_000).unwrap(),
            horizons_s: vec![60, 300, 600],
            levels: vec![0.8, 0.95],
            max_series: NonZeroUsize::new(1000).unwrap(),
            fit_timeout_ms: NonZeroU64::new(2000).unwrap(),
            failure_backoff_cycles: 5,
            limits: vec![LimitConfig {
                metric: "DCGM_FI_DEV_FB_USED".to_string(),
                limit_metric: "DCGM_FI_DEV_FB_TOTAL".to_string(),
                resource: "memory".to_string(),
            }],
        }
    }
}

impl PredictorConfig {
    /// Checks what serde cannot; the error names the key.
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((format!("predictor.{k}"), m));
        let step = self.step_ms.get();
        let window_ms = self.window_s.get() * 1000;
        let points = window_ms / step;
        if points < crate::processors::predict::model::MIN_POINTS as u64 {
            return err(
                "window_s",
                format!(
                    "{} s at step_ms {step} gives {points} points; at least {} are needed",
                    self.window_s,
                    crate::processors::predict::model::MIN_POINTS
                ),
            );
        }
        if self.horizons_s.is_empty() {
            return err("horizons_s", "give at least one horizon".into());
        }
        for h in &self.horizons_s {
            let h_ms = h * 1000;
            if *h == 0 || h_ms % step != 0 || h_ms > window_ms {
                return err(
                    "horizons_s",
                    format!("{h} must be a positive multiple of step_ms ({step} ms) no longer than window_s"),
                );
            }
        }
        if self.levels.is_empty() || self.levels.iter().any(|l| !(*l > 0.0 && *l < 1.0)) {
            return err(
                "levels",
                format!("each level must be in (0, 1), got {:?}", self.levels),
            );
        }
        Ok(())
    }

    /// The engine's settings.
    pub fn settings(&self) -> crate::processors::predict::engine::PredictorSettings {
        crate::processors::predict::engine::PredictorSettings {
            watch: self.watch.iter().map(|w| w.selector().clone()).collect(),
            window_ms: self.window_s.get() as i64 * 1000,
            step_ms: self.step_ms.get() as i64,
            horizons_s: self.horizons_s.clone(),
            levels: self.levels.clone(),
            limits: self
                .limits
                .iter()
                .map(|l| crate::processors::predict::engine::Limit {
                    metric: l.metric.clone(),
                    limit_metric: l.limit_metric.clone(),
                    resource: l.resource.clone(),
                })
                .collect(),
            max_series: self.max_series.get(),
            fit_timeout_ms: self.fit_timeout_ms.get() as f64,
            failure_backoff_cycles: self.failure_backoff_cycles,
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
        let config: PipelineConfig = parse_toml(file, text)?;
        config
            .anomaly
            .validate()
            .and_then(|()| config.predictor.validate())
            .and_then(|()| {
                let (keep, want) = (config.window.max_age_s.get(), config.predictor.window_s.get());
                if config.predictor.enabled && want > keep {
                    Err((
                        "predictor.window_s".to_string(),
                        format!("{want} s is longer than the window store keeps (window.max_age_s = {keep})"),
                    ))
                } else {
                    Ok(())
                }
            })
            .map_err(|(key, message)| {
                let (line, column) = super::locate_key(text, &key);
                ConfigError::Invalid {
                    file: file.to_string(),
                    line,
                    column,
                    key,
                    message,
                }
            })?;
        Ok(config)
    }

    /// Applies `THRESHOLD_ENV` found through `env`.
    pub fn with_env(mut self, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        for var in THRESHOLD_ENV {
            let Some(raw) = env(var) else { continue };
            let t: f64 = raw.trim().parse().map_err(|_| ConfigError::Env {
                var: var.to_string(),
                message: format!("anomaly.threshold: {raw:?} is not a number"),
            })?;
            if !(0.0..=1.0).contains(&t) {
                return Err(ConfigError::Env {
                    var: var.to_string(),
                    message: format!("anomaly.threshold: must be between 0 and 1, got {t}"),
                });
            }
            self.anomaly.threshold = t;
            break;
        }
        Ok(self)
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
