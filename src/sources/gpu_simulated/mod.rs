//! The simulated fleet: stands in for NVML when no GPU is present, or when the pipeline
//! asks for it.

pub mod actor;
pub mod fleet;
pub mod rng;
