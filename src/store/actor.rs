//! Window store actor: keeps every series' recent points (see `window.rs`) and answers
//! queries from the query actor. Receives [`SampleBatch`] from the samplers; stores each
//! batch, forwards it to its downstream (sinks) and hands it to its processors (the
//! anomaly detector); what they derive (scores) is stored and forwarded when they answer.
//!
//! The processors work on one batch while the store takes the next: up to
//! [`PROCESSING_AHEAD`] batches wait for them, in order, before the store's intake waits.
//! Every send is awaited, so a slow processor or sink slows the intake instead of losing
//! data. [`ProcessingDone`] answers once everything handed to the processors so far has
//! been stored and forwarded (`pulse aggregate` waits for it before committing offsets).

use std::collections::HashSet;
use std::time::Duration;

use actix::prelude::*;

use crate::messages::samples::{ProcessBatch, SampleBatch};
use crate::model::series::Sample;
use crate::runtime::clock::Clock;
use crate::runtime::mailbox::{Mailbox, MailboxGauge};
use crate::runtime::stats::{figure, ComponentState, ComponentStats, GetStats};
use crate::store::messages::{
    Backfill, ReadStore, SelectLatest, SelectPoints, SelectStats, Stored, WriteStore, Written,
};
use crate::store::window::{Retention, WindowStore};

/// Batches that may wait in the store's mailbox before senders wait.
pub const MAILBOX_CAPACITY: usize = 256;
/// Batches handed to the processors that may wait for them before the store's intake
/// waits. The processors run on their own threads: the store stores the next batches
/// while they work.
pub const PROCESSING_AHEAD: usize = 4;
/// How often points past `max_age` are dropped.
pub const EVICT_INTERVAL: Duration = Duration::from_secs(1);

/// Owns the window store.
pub struct WindowStoreActor {
    store: WindowStore,
    /// Where each stored batch goes too; what they answer is stored and forwarded.
    processors: Vec<Mailbox<ProcessBatch>>,
    /// The queue of batches for the processors (see [`process_in_order`]); set when the
    /// actor starts, if it has processors.
    to_process: Option<tokio::sync::mpsc::Sender<Job>>,
    /// Where each stored batch, and what the processors derived from it, goes next.
    downstream: Vec<Mailbox<SampleBatch>>,
    /// Time source for age eviction.
    clock: Clock,
    /// This actor's own backlog, shared with its senders.
    gauge: MailboxGauge,
    /// Samples received.
    received: u64,
    /// Samples stored.
    stored: u64,
    /// Samples refused (series limit, out of order): counted, reported as dropped.
    refused: u64,
    /// Batches a downstream actor could not take (it had stopped).
    forward_failures: u64,
    /// Told which metric names each stored batch held (the rule engine, when it evaluates
    /// on ingest).
    on_stored: Option<Recipient<Stored>>,
}

/// Sets who hears of each stored batch's metric names.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NotifyStored(pub Recipient<Stored>);

impl Handler<NotifyStored> for WindowStoreActor {
    type Result = ();

    fn handle(&mut self, NotifyStored(to): NotifyStored, _: &mut Self::Context) {
        self.on_stored = Some(to);
    }
}

impl WindowStoreActor {
    pub fn new(
        retention: Retention,
        downstream: Vec<Mailbox<SampleBatch>>,
        clock: Clock,
        gauge: MailboxGauge,
    ) -> Self {
        WindowStoreActor {
            store: WindowStore::new(retention),
            processors: Vec::new(),
            to_process: None,
            downstream,
            clock,
            gauge,
            received: 0,
            stored: 0,
            refused: 0,
            forward_failures: 0,
            on_stored: None,
        }
    }

    /// Tells the listener which metric names the last ingest stored. A full mailbox drops the
    /// notice: the groups still run on their interval.
    fn notify_stored(&self) {
        let Some(to) = &self.on_stored else { return };
        let names: Vec<String> = self.store.stored_names().map(str::to_string).collect();
        if !names.is_empty() {
            let _ = to.try_send(Stored { names });
        }
    }

    /// Stores `samples`, counting what was received, stored and refused, and tells the
    /// listener which metric names were stored.
    fn store_counted(&mut self, samples: &[Sample]) -> crate::store::window::IngestOutcome {
        let outcome = self.store.ingest(samples);
        if outcome.stored + outcome.replaced > 0 {
            self.notify_stored();
        }
        self.received += samples.len() as u64;
        self.stored += outcome.stored + outcome.replaced;
        self.refused += outcome.refused_series_limit + outcome.refused_out_of_order;
        outcome
    }

    /// Sets the windows' memory budget (see [`WindowStore::set_max_bytes`]).
    pub fn with_max_bytes(mut self, bytes: usize) -> Self {
        self.store.set_max_bytes(bytes);
        self
    }

    /// Adds processors, which see every sampler batch after it is stored and passed to the
    /// sinks (see `process_in_order`).
    pub fn with_processors(mut self, processors: Vec<Mailbox<ProcessBatch>>) -> Self {
        self.processors = processors;
        self
    }
}

impl Actor for WindowStoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        if !self.processors.is_empty() {
            let (tx, rx) = tokio::sync::mpsc::channel(PROCESSING_AHEAD);
            self.to_process = Some(tx);
            actix::spawn(process_in_order(rx, self.processors.clone(), ctx.address()));
        }
        ctx.run_interval(EVICT_INTERVAL, |act, _| {
            act.store.evict(act.clock.now_ms());
        });
    }
}

impl Handler<SampleBatch> for WindowStoreActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, batch: SampleBatch, _ctx: &mut Self::Context) -> Self::Result {
        let span = batch.span("window_store.ingest");
        let outcome = self.store_counted(&batch.samples);
        if let Some(s) = &span {
            s.set("pulse.stored", (outcome.stored + outcome.replaced) as i64);
            s.set(
                "pulse.refused",
                (outcome.refused_series_limit + outcome.refused_out_of_order) as i64,
            );
            s.set("pulse.series", self.store.series_count() as i64);
        }
        // Processors and sinks hang their spans from this one; the batch's root stays
        // open while `root` is held, until the processors' answer is stored.
        let (batch, root) = (batch.with_trace(span.clone()), batch);
        let Some(to_process) = self.to_process.clone() else {
            return AtomicResponse::new(Box::pin(self.forward_all(batch).map(move |(), _, _| {
                // The store's span first: the root (held by `root`) ends after it.
                end(span);
                drop(root);
            })));
        };
        let job = Job::Batch {
            batch: batch.clone(),
            root,
            span,
        };
        let queued = async move { to_process.send(job).await.is_ok() };
        AtomicResponse::new(Box::pin(queued.into_actor(self).then(
            move |queued, act, _| {
                if !queued {
                    act.forward_failures += 1;
                }
                act.forward_all(batch)
            },
        )))
    }
}

/// What the store hands to [`process_in_order`].
enum Job {
    /// A stored batch, traced under the store's span; the root is held until the end.
    Batch {
        batch: SampleBatch,
        root: SampleBatch,
        span: Option<crate::telemetry::SpanCx>,
    },
    /// Answered when everything queued before it has been stored and forwarded.
    Marker(tokio::sync::oneshot::Sender<()>),
}

/// Runs beside the store: hands each queued batch to every processor, in order, and
/// sends what they answer back to the store ([`Derived`]), in the same order. The store's
/// mailbox takes these past its capacity (`do_send`, one per batch the store took), so
/// this task never waits for the store, and the store, waiting for room in the queue,
/// never waits for itself.
async fn process_in_order(
    mut jobs: tokio::sync::mpsc::Receiver<Job>,
    processors: Vec<Mailbox<ProcessBatch>>,
    store: Addr<WindowStoreActor>,
) {
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Batch { batch, root, span } => {
                let mut derived = Vec::new();
                let mut failures = 0;
                for p in &processors {
                    match p.send(ProcessBatch(batch.clone())).await {
                        Ok(mut samples) => derived.append(&mut samples),
                        Err(_) => failures += 1,
                    }
                }
                store.do_send(Derived {
                    derived,
                    failures,
                    trace: batch.trace,
                    root,
                    span,
                });
            }
            Job::Marker(done) => store.do_send(Drained(done)),
        }
    }
}

/// What the processors derived from one batch, to store and forward.
#[derive(Message)]
#[rtype(result = "()")]
struct Derived {
    derived: Vec<Sample>,
    failures: u64,
    trace: Option<crate::telemetry::SpanCx>,
    root: SampleBatch,
    span: Option<crate::telemetry::SpanCx>,
}

/// Comes after the [`Derived`] of every batch queued before a [`ProcessingDone`]; those
/// are handled one at a time, forwarding included, so by then they are all done.
#[derive(Message)]
#[rtype(result = "()")]
struct Drained(tokio::sync::oneshot::Sender<()>);

impl Handler<Drained> for WindowStoreActor {
    type Result = ();

    fn handle(&mut self, Drained(done): Drained, _: &mut Self::Context) {
        let _ = done.send(());
    }
}

impl Handler<Derived> for WindowStoreActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Derived, _: &mut Self::Context) -> Self::Result {
        let Derived {
            derived,
            failures,
            trace,
            root,
            span,
        } = msg;
        self.forward_failures += failures;
        if let Some(s) = &span {
            s.set("pulse.derived", derived.len() as i64);
            if failures > 0 {
                s.error(format!("{failures} processors did not answer"));
            }
        }
        self.store_counted(&derived);
        let batch = SampleBatch::new(derived).with_trace(trace);
        AtomicResponse::new(Box::pin(self.forward_all(batch).map(move |(), _, _| {
            end(span);
            drop(root);
        })))
    }
}

/// Answers once every batch the store handed to its processors before this message has
/// had what they derived stored and forwarded downstream. At once without processors.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProcessingDone;

impl Handler<ProcessingDone> for WindowStoreActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: ProcessingDone, _: &mut Self::Context) -> Self::Result {
        let to_process = self.to_process.clone();
        Box::pin(async move {
            let Some(to_process) = to_process else { return };
            let (done, wait) = tokio::sync::oneshot::channel();
            if to_process.send(Job::Marker(done)).await.is_ok() {
                let _ = wait.await;
            }
        })
    }
}

fn end(span: Option<crate::telemetry::SpanCx>) {
    if let Some(s) = span {
        s.end();
    }
}

impl WindowStoreActor {
    /// Sends a batch to every downstream actor, in order, waiting for each.
    fn forward(&mut self, batch: SampleBatch) -> AtomicResponse<Self, ()> {
        AtomicResponse::new(Box::pin(self.forward_all(batch)))
    }

    /// Sends `batch` (unless empty) to every downstream actor, in order, waiting for each.
    fn forward_all(&mut self, batch: SampleBatch) -> impl ActorFuture<Self, Output = ()> + 'static {
        let downstream = self.downstream.clone();
        let forward = async move {
            let mut failures = 0;
            if !batch.is_empty() {
                for d in &downstream {
                    if d.send(batch.clone()).await.is_err() {
                        failures += 1;
                    }
                }
            }
            failures
        };
        forward
            .into_actor(self)
            .map(|failures, act, _| act.forward_failures += failures)
    }
}

impl Handler<Backfill> for WindowStoreActor {
    type Result = usize;

    fn handle(&mut self, Backfill(samples): Backfill, _: &mut Self::Context) -> usize {
        self.store.ingest(&samples).stored as usize
    }
}

/// `pulse aggregate` gave these hosts' partitions away: forget their series (another
/// instance owns them now). Answers the series removed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ReleaseHosts(pub HashSet<String>);

impl Handler<ReleaseHosts> for WindowStoreActor {
    type Result = usize;

    fn handle(&mut self, ReleaseHosts(hosts): ReleaseHosts, _: &mut Self::Context) -> usize {
        self.store.remove_where(|s| {
            s.label(crate::model::catalog::HOSTNAME)
                .is_some_and(|h| hosts.contains(h))
        })
    }
}

/// Writes run here, on the store's thread; what they wrote goes downstream.
impl<R: Send + 'static> Handler<WriteStore<R>> for WindowStoreActor {
    type Result = MessageResult<WriteStore<R>>;

    fn handle(&mut self, WriteStore(work): WriteStore<R>, ctx: &mut Self::Context) -> Self::Result {
        let Written {
            value,
            samples,
            refused,
        } = work(&mut self.store);
        self.received += samples.len() as u64;
        self.stored += samples.len() as u64 - refused;
        self.refused += refused;
        if !self.downstream.is_empty() && !samples.is_empty() {
            // Forwarded after this answer, through the mailbox like any batch.
            ctx.notify(SampleBatchFromRules(SampleBatch::new(samples)));
        }
        MessageResult(value)
    }
}

/// Samples written through [`WriteStore`], already stored, to pass downstream.
#[derive(Message)]
#[rtype(result = "()")]
struct SampleBatchFromRules(SampleBatch);

impl Handler<SampleBatchFromRules> for WindowStoreActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: SampleBatchFromRules, _: &mut Self::Context) -> Self::Result {
        self.forward(msg.0)
    }
}

impl Handler<SelectPoints> for WindowStoreActor {
    type Result = MessageResult<SelectPoints>;

    fn handle(&mut self, q: SelectPoints, _: &mut Self::Context) -> Self::Result {
        let mut points = self.store.select(&q.selector, q.start_ms, q.end_ms);
        points.sort_by(|a, b| a.series.cmp(&b.series));
        MessageResult(points)
    }
}

impl<R: Send + 'static> Handler<ReadStore<R>> for WindowStoreActor {
    type Result = MessageResult<ReadStore<R>>;

    fn handle(&mut self, ReadStore(read): ReadStore<R>, _: &mut Self::Context) -> Self::Result {
        MessageResult(read(&self.store))
    }
}

impl Handler<SelectStats> for WindowStoreActor {
    type Result = MessageResult<SelectStats>;

    fn handle(&mut self, q: SelectStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.store.stats(&q.selector, q.start_ms, q.end_ms))
    }
}

impl Handler<SelectLatest> for WindowStoreActor {
    type Result = MessageResult<SelectLatest>;

    fn handle(&mut self, q: SelectLatest, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.store.latest(&q.selector, q.since_ms))
    }
}

impl Handler<GetStats> for WindowStoreActor {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let mut st = ComponentStats::new("window_store", "store");
        st.received_total = self.received;
        st.emitted_total = self.stored;
        st.dropped_total = self.refused;
        st.mailbox_backlog = self.gauge.get();
        st.set(figure::SERIES, self.store.series_count() as f64);
        st.set(figure::POINTS, self.store.point_count() as f64);
        st.set(figure::WINDOW_BYTES, self.store.bytes() as f64);
        st.set(
            figure::WINDOW_REFUSED_FOR_MEMORY_TOTAL,
            self.store.refused_for_memory() as f64,
        );
        st.set(figure::FORWARD_FAILURES_TOTAL, self.forward_failures as f64);
        if self.store.refused_for_memory() > 0 && self.store.bytes() >= self.store.max_bytes() {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!(
                "memory budget reached (window.max_mib): {} samples of new series refused",
                self.store.refused_for_memory()
            ));
        }
        if self.forward_failures > 0 {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!(
                "{} batches could not be forwarded downstream",
                self.forward_failures
            ));
        }
        MessageResult(st)
    }
}

#[cfg(test)]
#[path = "actor_tests.rs"]
mod tests;
