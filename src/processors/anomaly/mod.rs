//! Streaming anomaly detection: the per-series [`detector`] (scored on NAB by
//! `examples/nab.rs`) and the [`engine`] the anomaly-detector actor runs.

pub mod actor;
pub mod detector;
pub mod engine;
pub mod nab;
pub mod workload;

pub use detector::{Detector, DetectorConfig, Reason, Verdict};
pub use engine::{Anomaly, AnomalyEngine, AnomalyFilter, EngineSettings};
