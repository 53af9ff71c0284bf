//! Streaming anomaly detection: the per-series [`detector`] (scored on NAB by
//! `examples/nab.rs`), the [`engine`] the anomaly-detector actor runs, and the engine's
//! comparisons across a host's GPUs: [`workload`] changes (with a GPU's [`jobs`] starting
//! and stopping, and its [`rhythm`] of checkpoints) and [`peers`] divergence.

pub mod actor;
mod context_table;
pub mod detector;
mod detector_config;
pub mod engine;
pub mod jobs;
pub mod messages;
/// The NAB replay, for `examples/nab.rs` and `tests/nab.rs` (feature `nab`).
#[cfg(feature = "nab")]
pub mod nab;
pub mod peers;
pub mod record;
pub mod rhythm;
pub mod slight;
pub mod workload;

pub use detector::{Detector, DetectorConfig, Reason, Verdict};
pub use engine::{Anomaly, AnomalyEngine, AnomalyFilter, EngineSettings};
