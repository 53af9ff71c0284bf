//! Samples on the stream.

use std::sync::Arc;

use actix::Message;

use opentelemetry::trace::SpanKind;

use crate::model::series::Sample;
use crate::telemetry::{SpanCx, Telemetry};

/// Span name of a batch's root: its whole way through the pipeline.
pub const BATCH_SPAN: &str = "pipeline.batch";

/// A batch of samples. Shared (`Arc`) so fan-out to several downstream actors copies nothing.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SampleBatch {
    pub samples: Arc<Vec<Sample>>,
    /// The span the next actor's span hangs from, when this batch is traced.
    pub trace: Option<SpanCx>,
}

impl SampleBatch {
    pub fn new(samples: Vec<Sample>) -> Self {
        SampleBatch {
            samples: Arc::new(samples),
            trace: None,
        }
    }

    /// Starts the batch's trace (when sampled): a `pipeline.batch` root naming its source.
    /// The root ends when the last actor holding the batch lets it go.
    pub fn traced(mut self, telemetry: &Telemetry, source: &'static str) -> Self {
        self.trace = telemetry.root(BATCH_SPAN, SpanKind::Internal, None);
        if let Some(t) = &self.trace {
            t.set("pulse.source", source);
            t.set("pulse.samples", self.samples.len() as i64);
        }
        self
    }

    /// The same samples, with children of `trace` hanging from it.
    pub fn with_trace(&self, trace: Option<SpanCx>) -> Self {
        SampleBatch {
            samples: self.samples.clone(),
            trace,
        }
    }

    /// A span for the actor now handling this batch, child of the batch's trace.
    pub fn span(&self, name: &'static str) -> Option<SpanCx> {
        let span = self.trace.as_ref()?.child(name, SpanKind::Internal);
        span.set("pulse.samples", self.samples.len() as i64);
        Some(span)
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
