//! Where samples come from, one folder per source, each with its actor and its logic: the
//! GPUs through NVML ([`gpu_nvml`]), the simulated fleet ([`gpu_simulated`]), request
//! metrics posted by inference services ([`requests`]), and, in `pulse aggregate`, the
//! agents' samples from Kafka ([`kafka`]). The samplers share one tick skeleton
//! ([`sampling`]).

pub mod gpu_nvml;
pub mod gpu_simulated;
pub mod kafka;
pub mod requests;
pub mod sampling;
