//! Request metrics from inference services: the sampler [`actor`] and the [`aggregate`] it
//! keeps (validation, counters, histograms, trailing-window rates).

pub mod actor;
pub mod aggregate;
