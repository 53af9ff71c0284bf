//! Messages to the predictor.

use actix::Message;

use crate::processors::predict::engine::{FitFailure, Prediction, PredictionFilter};

/// The newest predictions, and the series whose last fit failed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "(Vec<Prediction>, Vec<FitFailure>)")]
pub struct ListPredictions(pub PredictionFilter);
