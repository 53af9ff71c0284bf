//! Samples on the stream.

use std::sync::Arc;

use actix::Message;

use crate::model::series::Sample;

/// A batch of samples. Shared (`Arc`) so fan-out to several downstream actors copies nothing.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SampleBatch {
    pub samples: Arc<Vec<Sample>>,
}

impl SampleBatch {
    pub fn new(samples: Vec<Sample>) -> Self {
        SampleBatch {
            samples: Arc::new(samples),
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// A stored batch handed to a processor (the anomaly detector) by the window store; the
/// processor answers with the samples it derived (scores), which the store keeps and passes
/// on to the sinks.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<Sample>")]
pub struct ProcessBatch(pub SampleBatch);
