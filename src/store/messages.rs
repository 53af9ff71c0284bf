//! What the window store receives (queries, reads and writes run on its thread, backfills)
//! and the news it sends ([`Stored`]).

use actix::Message;

use crate::model::selector::Selector;
use crate::model::series::{Sample, Series};
use crate::store::window::{SeriesPoints, SeriesStats, WindowStore};

/// Raw points of matching series in `[start_ms, end_ms]`.
#[derive(Debug, Message)]
#[rtype(result = "Vec<SeriesPoints>")]
pub struct SelectPoints {
    pub selector: Selector,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Latest/min/max/avg of matching series in `[start_ms, end_ms]`.
#[derive(Debug, Message)]
#[rtype(result = "Vec<SeriesStats>")]
pub struct SelectStats {
    pub selector: Selector,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Newest point of matching series, if it is at or after `since_ms`.
#[derive(Debug, Message)]
#[rtype(result = "Vec<(Series, i64, f64)>")]
pub struct SelectLatest {
    pub selector: Selector,
    pub since_ms: i64,
}

/// Any read of the store, run on its thread: the caller brings the work (a PromQL
/// evaluation, ...), so the store needs to know nothing about it. Keep each one short:
/// ingest waits meanwhile.
pub struct ReadStore<R: Send + 'static>(pub Box<dyn FnOnce(&WindowStore) -> R + Send>);

impl<R: Send + 'static> Message for ReadStore<R> {
    type Result = R;
}

/// Any write of the store by a component that derives series from it, run on its thread:
/// rule groups (recording rules write into the store, and later rules of a group read what
/// earlier ones wrote). The store counts what the work wrote and passes it downstream like
/// any stored batch; it needs to know nothing about the work.
pub struct WriteStore<R: Send + 'static>(pub WriteWork<R>);

/// The work a [`WriteStore`] brings.
pub type WriteWork<R> = Box<dyn FnOnce(&mut WindowStore) -> Written<R> + Send>;

/// What a [`WriteStore`]'s work answers.
pub struct Written<R> {
    /// Its result, for the sender.
    pub value: R,
    /// The samples it wrote into the store (refused ones included), to pass downstream.
    pub samples: Vec<Sample>,
    /// How many of them the store refused (series limit, out of order).
    pub refused: u64,
}

impl<R: Send + 'static> Message for WriteStore<R> {
    type Result = R;
}

/// Points from before this instance saw them (a host's history read back from Redis when
/// `pulse aggregate` takes the host over): stored, not passed downstream. Answers how many
/// were stored.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct Backfill(pub Vec<Sample>);

/// Samples of these metric names were just stored (a sampler's or processor's batch; not
/// what rules wrote): the store's news to whoever asked for it (`NotifyStored`);
/// the rule engine, which evaluates the groups
/// reading them without waiting for their interval.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Stored {
    pub names: Vec<String>,
}
