//! What every sampler actor does on a tick: send its batch downstream with an awaited
//! send (the actor does nothing else until the batch is taken: backpressure), then
//! schedule the next tick so ticks keep their cadence. A tick that could not start on time
//! because the previous send waited is counted as late.

use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;
use tokio::time::Instant;

use crate::messages::samples::SampleBatch;
use crate::runtime::mailbox::Mailbox;
use crate::runtime::stats::{figure, ComponentStats};

/// Private tick message of a sampler.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Tick;

/// Counters every sampler keeps.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct SamplerCounters {
    /// When the next tick is due; ticks follow deadlines so timing errors do not add up.
    #[serde(skip)]
    pub next_deadline: Option<Instant>,
    pub ticks: u64,
    pub samples_emitted: u64,
    /// Samples the downstream could not take (it had stopped).
    pub samples_dropped: u64,
    /// Ticks that started late because the previous batch waited for room downstream.
    pub ticks_late: u64,
}

impl SamplerCounters {
    /// Copies the counters into a stats record.
    pub fn fill(&self, st: &mut ComponentStats) {
        st.emitted_total = self.samples_emitted;
        st.dropped_total = self.samples_dropped;
        st.set(figure::TICKS_TOTAL, self.ticks as f64);
        st.set(figure::TICKS_LATE_TOTAL, self.ticks_late as f64);
    }
}

/// An actor that samples on a tick.
pub trait Sampler: Actor<Context = Context<Self>> + Handler<Tick> {
    fn counters(&mut self) -> &mut SamplerCounters;
}

/// Sends `batch` to `downstream`, counts the outcome, and schedules the next [`Tick`]
/// one `interval` after this tick's deadline.
pub fn emit_and_reschedule<A: Sampler>(
    act: &mut A,
    ctx: &mut Context<A>,
    downstream: &Mailbox<SampleBatch>,
    batch: SampleBatch,
    interval: Duration,
) {
    let deadline = *act
        .counters()
        .next_deadline
        .get_or_insert_with(Instant::now);
    act.counters().ticks += 1;
    let n = batch.len() as u64;
    let downstream = downstream.clone();
    let send = async move { downstream.send(batch).await.is_ok() };
    ctx.wait(send.into_actor(act).map(move |delivered, act, ctx| {
        let c = act.counters();
        if delivered {
            c.samples_emitted += n;
        } else {
            c.samples_dropped += n;
        }
        let now = Instant::now();
        let mut next = deadline + interval;
        if next < now {
            c.ticks_late += 1;
            next = now;
        }
        c.next_deadline = Some(next);
        ctx.notify_later(Tick, next - now);
    }));
}
