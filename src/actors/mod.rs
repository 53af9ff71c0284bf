//! The actors of the pipeline, one per file.

pub mod anomaly_detector;
pub mod gpu_nvml;
pub mod gpu_simulated;
pub mod jsonl_sink;
pub mod kafka_sink;
pub mod kafka_source;
pub mod predictor;
pub mod query;
pub mod redis_sink;
pub mod request_sampler;
pub mod rule_engine;
pub mod tracer;
pub mod window_store;

#[cfg(test)]
pub mod testing;
