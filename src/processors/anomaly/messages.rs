//! Messages to and from the anomaly detector.

use actix::Message;

use crate::messages::page::Page;
use crate::processors::anomaly::workload::WorkloadEvent;
use crate::processors::anomaly::{Anomaly, AnomalyFilter};

/// Recent anomalies, newest first.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Page<Anomaly>")]
pub struct ListAnomalies(pub AnomalyFilter);

/// One anomaly by id.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Option<Anomaly>")]
pub struct GetAnomaly(pub u64);

/// Recent workload changes (most GPUs of a host moving together), newest first.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Page<WorkloadEvent>")]
pub struct ListWorkloadEvents {
    /// Only this host's.
    pub host: Option<String>,
    /// Only this metric's.
    pub metric: Option<String>,
    /// Last firing at or after, Unix ms.
    pub since_ms: Option<i64>,
    pub offset: usize,
    pub limit: usize,
}

/// News the detector publishes: an anomaly opened (the Kafka sink's anomalies topic).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct AnomalyOpened(pub Anomaly);
