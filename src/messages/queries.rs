//! Queries the window store answers.

use actix::Message;

use crate::model::selector::Selector;
use crate::model::series::Series;
use crate::store::window::{SeriesPoints, SeriesStats};

/// Raw points of matching series in `[start_ms, end_ms]`.
#[derive(Debug, Message)]
#[rtype(result = "Vec<SeriesPoints>")]
pub struct SelectPoints {
    pub selector: Selector,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Matching series' points in `[start_ms, end_ms]`, put onto `buckets` steps of `step_ms`
/// ending at `end_ms` where they are ([`crate::processors::predict::model::resample`], counters as
/// rates), sorted by series. The predictor's read: copying its windows out instead took 29 MB
/// a refit (30 minutes of 1 000 series at 1 s), a copy that grew as the windows filled.
#[derive(Debug, Message)]
#[rtype(result = "Vec<crate::processors::predict::model::SeriesGrid>")]
pub struct SelectGrids {
    pub selector: Selector,
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
    pub buckets: usize,
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
pub struct ReadStore<R: Send + 'static>(
    pub Box<dyn FnOnce(&crate::store::window::WindowStore) -> R + Send>,
);

impl<R: Send + 'static> Message for ReadStore<R> {
    type Result = R;
}
