//! Messages that cross actors, one file per family.

pub mod alerts;
pub mod anomalies;
pub mod commands;
pub mod predictions;
pub mod queries;
pub mod samples;
pub mod stats;
