//! Forecasting: the per-series [`model`] functions (augurs) and the [`engine`] the predictor
//! actor runs.

pub mod actor;
pub mod engine;
pub mod model;
