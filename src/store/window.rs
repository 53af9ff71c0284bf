//! The window store's logic: per-series ring buffers with retention by count and age,
//! queried by label matchers and time range. Plain methods, time passed in; the actor
//! in `actor.rs` owns one of these.
//!
//! A series' points live in one `Vec` whose live part starts at `head`: dropping the oldest
//! point moves `head`, and the dead prefix is cut off once it reaches a quarter of the
//! window. The live points are therefore always one contiguous slice, so queries (range
//! functions of the rule engine above all) read them in place instead of copying.

use std::collections::HashMap;

use serde::Serialize;

use crate::model::selector::Selector;
use crate::model::series::is_stale;
use crate::model::series::{BuildPrehashed, Sample, Series, SeriesKey};
use crate::promql::{SelectedRange, Storage};

/// Retention settings (the pipeline file's `[window]`).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Points kept per series; the oldest fall out first.
    pub max_points: usize,
    /// Points older than this (relative to "now") are dropped on eviction.
    pub max_age_ms: i64,
    /// Distinct series kept; samples of new series past this are refused and counted.
    pub max_series: usize,
}

impl Retention {
    /// The most a ring's buffer holds: `max_points` live points and a dead prefix of at
    /// most a quarter of that (see [`Ring::compact`]), and the point being pushed.
    fn dense_capacity(&self) -> usize {
        self.max_points + self.max_points / 4 + 1
    }
}

/// What one `ingest` call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Samples stored.
    pub stored: u64,
    /// Samples of a new series refused because `max_series` or the memory budget
    /// ([`WindowStore::set_max_bytes`]) was reached.
    pub refused_series_limit: u64,
    /// Samples older than the series' newest point, refused (windows are append-only).
    pub refused_out_of_order: u64,
    /// Samples with the same timestamp as the newest point: the value was replaced.
    pub replaced: u64,
}

/// Summary statistics of one series over a time range.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesStats {
    pub series: Series,
    /// Newest point in the range: (timestamp ms, value).
    pub latest: (i64, f64),
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub count: usize,
}

/// Raw points of one series over a time range.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesPoints {
    pub series: Series,
    pub points: Vec<(i64, f64)>,
}

/// Writes the whole spare capacity of a ring's final buffer once, so that the kernel backs
/// it with memory now. Without this the buffer's pages became resident one by one as points
/// arrived, and the process' RSS kept rising until every window had filled and cycled its
/// dead prefix: 37 minutes after a series first appeared, with the default 30-minute window
/// (an hour soak before this change). With it, a series reaches its final memory when its
/// ring takes its final size (its 129th point at the default window, two minutes in), and RSS
/// says early what the fleet will cost.
fn prefault(points: &mut Vec<(i64, f64)>) {
    let len = points.len();
    points.resize(points.capacity(), (0, 0.0));
    points.truncate(len);
}

/// The buffer a ring settles in: the live points its window will hold at the cadence seen
/// so far (a quarter more, for a cadence that wavers; at most `max_points`), and as many
/// again for the dead prefix [`Ring::compact`] lets pile up. A series sampled every second
/// gets `max_points` and a quarter (2 251 points at the defaults); one sampled every 10 s
/// gets 451 instead of the same 2 251. A series that turns denser fills it and grows
/// again, to at most the dense buffer. Under 16 live points tell too little of the cadence:
/// the dense buffer.
fn settled_capacity(ring: &Ring, retention: &Retention) -> usize {
    let live = ring.live();
    let dense = retention.dense_capacity();
    let (Some(first), Some(last)) = (live.first(), live.last()) else {
        return dense;
    };
    let span_ms = last.0 - first.0;
    if live.len() < 16 || span_ms <= 0 {
        return dense;
    }
    let per_window = retention.max_age_ms as f64 / span_ms as f64 * (live.len() - 1) as f64;
    let kept = ((per_window * 1.25).ceil() as usize).min(retention.max_points);
    kept + kept.min(retention.max_points / 4) + 1
}

/// One series' points, oldest first.
#[derive(Debug, Default)]
struct Ring {
    points: Vec<(i64, f64)>,
    /// Index of the oldest live point.
    head: usize,
    /// Live staleness markers: queries skip the scan for them when there are none.
    stale: usize,
    /// Timestamp of the newest point (meaningless while the ring is empty). Kept beside the
    /// map's key so that ingest checks a sample's order without reading the points buffer:
    /// that read missed the cache for nearly every sample (`perf annotate` of the pipeline
    /// bench: 40 % of `ingest`); the append that follows is a write, which does not stall.
    newest_ms: i64,
    /// The series' metric name, as an index into `WindowStore::names`: ingest tells which
    /// names a batch stored without reading the series keys (see `stored_names`).
    name_id: u32,
}

impl Ring {
    fn live(&self) -> &[(i64, f64)] {
        &self.points[self.head..]
    }

    fn len(&self) -> usize {
        self.points.len() - self.head
    }

    fn drop_oldest(&mut self) {
        // Reads the oldest point (cold memory) only when a staleness marker may be there.
        if self.stale > 0 && is_stale(self.points[self.head].1) {
            self.stale -= 1;
        }
        self.head += 1;
    }

    /// Cuts the dead prefix off once it is as long as the live points (at least 16 of
    /// them) or a quarter of `max_points`, whichever comes first. Amortised O(1): a cut
    /// moves at most as many live points as were dropped since the last one. A series held
    /// by age with few points (a forecast written once a minute keeps about 30) keeps a
    /// buffer the size of its window; with a quarter of `max_points` alone, its dead prefix
    /// piled up toward 450 points and, at 129, took it to a dense series' final buffer.
    fn compact(&mut self, max_points: usize) {
        let most_dead = (max_points / 4).min(self.len().max(16));
        if self.head > 0 && (self.head >= most_dead || self.head == self.points.len()) {
            self.points.drain(..self.head);
            self.head = 0;
        }
    }

    /// Live points with `start_ms <= t <= end_ms`.
    fn range(&self, start_ms: i64, end_ms: i64) -> &[(i64, f64)] {
        let live = self.live();
        // Usually the window ends at the newest point: no search through cold memory.
        let end = match live.last() {
            Some(last) if last.0 <= end_ms => live.len(),
            _ => live.partition_point(|p| p.0 <= end_ms),
        };
        // And often starts before the oldest point (a range as long as the window).
        let first = match live.first() {
            Some(oldest) if oldest.0 >= start_ms => 0,
            _ => live[..end].partition_point(|p| p.0 < start_ms),
        };
        &live[first..end]
    }

    /// The newest live point with `start_ms <= t <= end_ms`.
    fn last_in(&self, start_ms: i64, end_ms: i64) -> Option<(i64, f64)> {
        let live = self.live();
        let &last = live.last()?;
        let p = if last.0 <= end_ms {
            last
        } else {
            *live.get(live.partition_point(|p| p.0 <= end_ms).checked_sub(1)?)?
        };
        (p.0 >= start_ms).then_some(p)
    }
}

/// Per-series ring buffers.
#[derive(Debug)]
pub struct WindowStore {
    retention: Retention,
    series: hashbrown::HashMap<Series, Ring, BuildPrehashed>,
    /// Series by metric name: selectors that name their metric scan only these.
    by_name: HashMap<String, NameEntry>,
    /// Metric names by id (a ring's `name_id`), with the last ingest that stored one; ids
    /// of names whose last series went away are in `free_name_ids`, for reuse.
    names: Vec<NameSlot>,
    free_name_ids: Vec<u32>,
    /// Ingests so far, and the names the last one stored (ids, each once).
    ingests: u64,
    stored_name_ids: Vec<u32>,
    /// Points currently held across all series.
    points: usize,
    /// Points the rings' buffers can hold, all together (what their memory is).
    buffered: usize,
    /// The memory budget: no new series while [`WindowStore::bytes`] is at or past it (0:
    /// none); and samples of new series refused for it.
    max_bytes: usize,
    refused_for_memory: u64,
}

/// Bytes of one buffered point: a timestamp and a value.
pub const POINT_BYTES: usize = std::mem::size_of::<(i64, f64)>();
/// Bytes a series costs besides its points: its ring, its key in the map and in the name
/// index, and its labels. 689 were measured for dcgm-exporter GPU series (five labels) by
/// `tests/window_memory.rs`, which counts what the store allocates.
pub const SERIES_BYTES: usize = 700;

/// The series of one metric name.
#[derive(Debug)]
struct NameEntry {
    id: u32,
    series: Vec<Series>,
}

#[derive(Debug, Default)]
struct NameSlot {
    name: String,
    stored_in: u64,
}

impl WindowStore {
    pub fn new(retention: Retention) -> Self {
        WindowStore {
            retention,
            series: hashbrown::HashMap::default(),
            by_name: HashMap::new(),
            names: Vec::new(),
            free_name_ids: Vec::new(),
            ingests: 0,
            stored_name_ids: Vec::new(),
            points: 0,
            buffered: 0,
            max_bytes: 0,
            refused_for_memory: 0,
        }
    }

    /// Sets the memory budget (0: none): past it, samples of new series are refused and
    /// counted (`refused_series_limit`, and [`WindowStore::refused_for_memory`]); the series
    /// held keep storing.
    pub fn set_max_bytes(&mut self, bytes: usize) {
        self.max_bytes = bytes;
    }

    /// The memory the windows take, estimated: every ring's buffer and each series' own
    /// cost (`POINT_BYTES`, [`SERIES_BYTES`]).
    pub fn bytes(&self) -> usize {
        self.buffered * POINT_BYTES + self.series.len() * SERIES_BYTES
    }

    /// The memory budget (0: none).
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Samples of new series refused because the memory budget was reached, so far.
    pub fn refused_for_memory(&self) -> u64 {
        self.refused_for_memory
    }

    /// Files a new series under its metric name; answers the name's id (given to a name
    /// with its first series).
    fn index_by_name(&mut self, series: &Series) -> u32 {
        if let Some(entry) = self.by_name.get_mut(series.name()) {
            entry.series.push(series.clone());
            return entry.id;
        }
        let slot = NameSlot {
            name: series.name().to_string(),
            stored_in: 0,
        };
        let id = match self.free_name_ids.pop() {
            Some(id) => {
                self.names[id as usize] = slot;
                id
            }
            None => {
                self.names.push(slot);
                (self.names.len() - 1) as u32
            }
        };
        let entry = NameEntry {
            id,
            series: vec![series.clone()],
        };
        self.by_name.insert(series.name().to_string(), entry);
        id
    }

    /// Metric names the last [`WindowStore::ingest`] stored a point of (each once).
    pub fn stored_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.stored_name_ids
            .iter()
            .map(|&id| self.names[id as usize].name.as_str())
    }

    /// Stores a batch, one sample at a time, in order.
    pub fn ingest(&mut self, samples: &[Sample]) -> IngestOutcome {
        let mut out = IngestOutcome::default();
        let max_points = self.retention.max_points;
        self.ingests += 1;
        self.stored_name_ids.clear();
        for s in samples {
            let ring = match self.series.get_mut(&s.key()) {
                Some(ring) => ring,
                None => {
                    if self.series.len() >= self.retention.max_series {
                        out.refused_series_limit += 1;
                        continue;
                    }
                    if self.max_bytes > 0 && self.bytes() >= self.max_bytes {
                        out.refused_series_limit += 1;
                        self.refused_for_memory += 1;
                        continue;
                    }
                    let name_id = self.index_by_name(&s.series);
                    let ring = self.series.entry(s.series.clone()).or_default();
                    ring.name_id = name_id;
                    ring
                }
            };
            let named = &mut self.names[ring.name_id as usize].stored_in;
            if *named != self.ingests {
                // Marked before the order check: an out-of-order sample marks its name
                // too, which at worst runs a rule group once more.
                *named = self.ingests;
                self.stored_name_ids.push(ring.name_id);
            }
            if ring.len() > 0 {
                if s.timestamp_ms < ring.newest_ms {
                    out.refused_out_of_order += 1;
                    continue;
                }
                if s.timestamp_ms == ring.newest_ms {
                    let last = ring.points.last_mut().expect("live point");
                    ring.stale =
                        ring.stale + usize::from(is_stale(s.value)) - usize::from(is_stale(last.1));
                    last.1 = s.value;
                    out.replaced += 1;
                    continue;
                }
            }
            if ring.len() >= max_points {
                ring.drop_oldest();
                self.points -= 1;
            }
            ring.stale += usize::from(is_stale(s.value));
            // The ring never holds more than `max_points` live points plus a dead prefix of
            // at most a quarter of that, and at most as many as it holds live (see
            // `compact`; a sparse series stays small): grow by doubling while it is young,
            // never past that size (doubling past it would give every full series twice the
            // memory it uses). Once a doubling would reach an eighth of `max_points` (from
            // 128 to 256 points with 1 800: two minutes in at 1 s), take the final buffer
            // at once, sized for the series' cadence so far (`settled_capacity`), and back
            // it with memory (`prefault`): a series that has lived that long usually lives
            // on, and doubling on moved every series' buffer again 4, 9 and 17 minutes in,
            // each a step in the soak's RSS.
            //
            // A sparse series settles earlier, as soon as its settled size is within two
            // doublings (from its 17th point on): a forecast series, one point a minute,
            // took 32 points at 17 minutes and 64 at 33, a step in the hour soak's RSS half
            // an hour after the predictor's series appeared, past the soak's warm-up.
            if ring.points.len() == ring.points.capacity() {
                let before = ring.points.capacity();
                let doubled = (ring.points.capacity() * 2).max(4);
                let settled = settled_capacity(ring, &self.retention);
                if doubled >= max_points / 8 || settled <= 4 * doubled {
                    let most = self.retention.dense_capacity();
                    let size = settled.max(doubled).min(most).max(ring.points.len() + 1);
                    ring.points.reserve_exact(size - ring.points.len());
                    prefault(&mut ring.points);
                } else {
                    ring.points.reserve_exact(doubled - ring.points.len());
                }
                self.buffered += ring.points.capacity() - before;
            }
            ring.points.push((s.timestamp_ms, s.value));
            ring.newest_ms = s.timestamp_ms;
            ring.compact(max_points);
            self.points += 1;
            out.stored += 1;
        }
        out
    }

    /// Drops points older than `now_ms - max_age_ms` and series left empty.
    /// Returns the number of series removed.
    pub fn evict(&mut self, now_ms: i64) -> usize {
        let cutoff = now_ms - self.retention.max_age_ms;
        let max_points = self.retention.max_points;
        let before = self.series.len();
        let mut dropped_points = 0;
        let mut freed = 0;
        self.series.retain(|_, ring| {
            // Counted from the oldest point rather than searched for: a sweep every second
            // finds one point or none per series, so this reads the ring's first cache line
            // only, where a binary search missed the cache at every step (profiles of the
            // pipeline bench had the sweep at the top).
            let old = ring.live().iter().take_while(|p| p.0 < cutoff).count();
            if ring.stale > 0 {
                ring.stale -= ring.live()[..old].iter().filter(|p| is_stale(p.1)).count();
            }
            ring.head += old;
            dropped_points += old;
            ring.compact(max_points);
            if ring.len() == 0 {
                freed += ring.points.capacity();
            }
            ring.len() > 0
        });
        self.points -= dropped_points;
        self.buffered -= freed;
        let removed = before - self.series.len();
        if removed > 0 {
            self.forget_removed_in_index();
        }
        removed
    }

    /// Removes every series `drop` says so of (with its points); returns how many.
    pub fn remove_where(&mut self, mut drop: impl FnMut(&SeriesKey) -> bool) -> usize {
        let before = self.series.len();
        let (mut dropped_points, mut freed) = (0, 0);
        self.series.retain(|s, ring| {
            let gone = drop(s);
            if gone {
                dropped_points += ring.len();
                freed += ring.points.capacity();
            }
            !gone
        });
        self.points -= dropped_points;
        self.buffered -= freed;
        self.forget_removed_in_index();
        before - self.series.len()
    }

    /// Takes series no longer held out of the name index; a name left with none goes, and
    /// its id is free for the next new name.
    fn forget_removed_in_index(&mut self) {
        let series = &self.series;
        let free = &mut self.free_name_ids;
        self.by_name.retain(|_, entry| {
            entry.series.retain(|s| series.contains_key(s));
            if entry.series.is_empty() {
                free.push(entry.id);
            }
            !entry.series.is_empty()
        });
    }

    /// Number of series held.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Number of points held.
    pub fn point_count(&self) -> usize {
        self.points
    }

    /// Points of matching series with `start_ms <= t <= end_ms`, borrowed, in no
    /// particular order; series with no point in the range are left out.
    pub fn select_slices<'a>(
        &'a self,
        sel: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(&'a Series, &'a [(i64, f64)])> {
        self.select_marked(sel, start_ms, end_ms)
            .into_iter()
            .map(|(series, points, _)| (series, points))
            .collect()
    }

    /// As [`select_slices`](Self::select_slices), with whether the series holds any
    /// staleness marker (so callers scan for them only when it does).
    pub fn select_marked<'a>(
        &'a self,
        sel: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SelectedRange<'a>> {
        self.matching(sel)
            .map(|(series, ring)| (series, ring.range(start_ms, end_ms), ring.stale > 0))
            .filter(|(_, points, _)| !points.is_empty())
            .collect()
    }

    /// Points of matching series with `start_ms <= t <= end_ms`, copied, in no particular order.
    pub fn select(&self, sel: &Selector, start_ms: i64, end_ms: i64) -> Vec<SeriesPoints> {
        self.select_slices(sel, start_ms, end_ms)
            .into_iter()
            .map(|(series, points)| SeriesPoints {
                series: series.clone(),
                points: points.to_vec(),
            })
            .collect()
    }

    /// The newest point with `start_ms <= t <= end_ms` of each matching series, in no
    /// particular order (what an instant selector needs).
    pub fn select_last(
        &self,
        sel: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(Series, i64, f64)> {
        self.matching(sel)
            .filter_map(|(series, ring)| {
                let (t, v) = ring.last_in(start_ms, end_ms)?;
                Some((series.clone(), t, v))
            })
            .collect()
    }

    /// Latest, min, max, avg over `[start_ms, end_ms]` of matching series (NaN skipped
    /// in min/max/avg), series in sorted order.
    pub fn stats(&self, sel: &Selector, start_ms: i64, end_ms: i64) -> Vec<SeriesStats> {
        let mut out: Vec<SeriesStats> = self
            .select_slices(sel, start_ms, end_ms)
            .into_iter()
            .filter_map(|(series, points)| {
                let latest = *points.last()?;
                let (mut min, mut max, mut sum, mut count) =
                    (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0);
                for &(_, v) in points.iter().filter(|p| !p.1.is_nan()) {
                    min = min.min(v);
                    max = max.max(v);
                    sum += v;
                    count += 1;
                }
                let avg = if count > 0 {
                    sum / count as f64
                } else {
                    f64::NAN
                };
                if count == 0 {
                    (min, max) = (f64::NAN, f64::NAN);
                }
                Some(SeriesStats {
                    series: series.clone(),
                    latest,
                    min,
                    max,
                    avg,
                    count,
                })
            })
            .collect();
        out.sort_by(|a, b| a.series.cmp(&b.series));
        out
    }

    /// Newest point of each matching series whose newest point is at or after `since_ms`;
    /// a series whose newest point is a staleness marker has ended and is left out.
    pub fn latest(&self, sel: &Selector, since_ms: i64) -> Vec<(Series, i64, f64)> {
        let mut out: Vec<(Series, i64, f64)> = self
            .matching(sel)
            .filter_map(|(series, ring)| {
                let &(t, v) = ring.live().last()?;
                (t >= since_ms && !is_stale(v)).then(|| (series.clone(), t, v))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn matching<'s, 'q>(
        &'s self,
        sel: &'q Selector,
    ) -> Box<dyn Iterator<Item = (&'s Series, &'s Ring)> + 'q>
    where
        's: 'q,
    {
        match sel.metric_name() {
            // The index already matched the name: check only the other matchers.
            Some(name) => Box::new(
                self.by_name
                    .get(name)
                    .into_iter()
                    .flat_map(|entry| &entry.series)
                    .filter(move |s| sel.matches_besides_name(s))
                    .filter_map(move |s| self.series.get_key_value(s)),
            ),
            None => Box::new(self.series.iter().filter(move |(s, _)| sel.matches(s))),
        }
    }
}

/// PromQL reads the store through its [`Storage`] trait.
impl Storage for WindowStore {
    fn select_slices<'a>(
        &'a self,
        selector: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SelectedRange<'a>> {
        WindowStore::select_marked(self, selector, start_ms, end_ms)
    }
    fn select_last(
        &self,
        selector: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(Series, i64, f64)> {
        WindowStore::select_last(self, selector, start_ms, end_ms)
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
