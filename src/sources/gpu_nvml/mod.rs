//! Real GPUs through NVML: the sampler [`actor`] and the [`device`] reads it (and
//! `pulse probe gpu`) makes.

pub mod actor;
pub mod device;
