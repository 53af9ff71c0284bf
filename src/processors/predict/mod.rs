//! Forecasting: the per-series [`model`] functions (augurs), the backtest that [`select`]s
//! each series' method, and the [`engine`] the predictor actor runs.

pub mod actor;
pub mod calibration;
pub mod engine;
pub mod messages;
pub mod model;
pub mod select;
