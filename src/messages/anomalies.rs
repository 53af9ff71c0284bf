//! Messages to and from the anomaly detector.

use actix::Message;

use crate::processors::anomaly::{Anomaly, AnomalyFilter};

/// Recent anomalies, newest first.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<Anomaly>")]
pub struct ListAnomalies(pub AnomalyFilter);

/// One anomaly by id.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Option<Anomaly>")]
pub struct GetAnomaly(pub u64);
