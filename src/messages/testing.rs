//! Test helpers: a recording actor that stands in for any downstream of sample batches.

use actix::prelude::*;

use crate::messages::samples::SampleBatch;
use crate::model::series::Sample;
use crate::runtime::mailbox::{Mailbox, MailboxGauge};

/// Records every sample it receives.
#[derive(Default)]
pub struct Recorder {
    samples: Vec<Sample>,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<SampleBatch> for Recorder {
    type Result = ();
    fn handle(&mut self, batch: SampleBatch, _: &mut Self::Context) {
        self.samples.extend(batch.samples.iter().cloned());
    }
}

/// Returns what was recorded so far.
#[derive(Message)]
#[rtype(result = "Vec<Sample>")]
pub struct Take;

impl Handler<Take> for Recorder {
    type Result = MessageResult<Take>;
    fn handle(&mut self, _: Take, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.samples.clone())
    }
}

/// A started recorder.
pub struct RecorderHandle(pub Addr<Recorder>);

impl Recorder {
    pub fn start() -> RecorderHandle {
        RecorderHandle(Actor::start(Recorder::default()))
    }
}

impl RecorderHandle {
    pub fn mailbox(&self) -> Mailbox<SampleBatch> {
        Mailbox::new(self.0.clone().recipient(), MailboxGauge::default())
    }

    pub async fn samples(&self) -> Vec<Sample> {
        self.0.send(Take).await.unwrap()
    }

    pub async fn values(&self) -> Vec<f64> {
        self.samples().await.iter().map(|s| s.value).collect()
    }
}
