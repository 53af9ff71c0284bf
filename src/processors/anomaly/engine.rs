//! The anomaly detector's logic, without the actor: which series are watched, one
//! [`Detector`] per watched series, counters turned into rates, gaps and resets handled,
//! score samples built, anomalies opened and merged, and a bounded list of recent ones.
//! Time comes in with the samples; nothing here reads a clock.

use hashbrown::hash_map::EntryRef;
use serde::Serialize;
use std::collections::VecDeque;

use super::detector::{Detector, DetectorConfig, Reason};
use super::jobs::JobTracker;
use super::peers::{MemberRef, PeerMonitor, PeerSettings};
pub use super::record::{Anomaly, AnomalyFilter, PeerContext};
use super::rhythm::{DipTracker, Rhythm, Rhythms};
use super::slight::{departs_enough, is_back};
use super::workload::{gpu_of, OwnSignals, WorkloadCoalescer, WorkloadEvent};
use crate::messages::page::Page;
use crate::model::catalog;
use crate::model::selector::Selector;
use crate::model::series::{
    derived_series, BuildPrehashed, Sample, Series, SeriesKey, DERIVED_FROM_LABEL,
};

/// Name of the score series the detector emits, one per watched series.
pub const SCORE_METRIC: &str = catalog::ANOMALY_SCORE;
/// Label of a score series that names the watched series' metric.
pub const METRIC_LABEL: &str = DERIVED_FROM_LABEL;

/// A watched series silent this long (in sample time) is forgotten, freeing its slot.
pub const IDLE_MS: i64 = 10 * 60 * 1000;
/// How often (in sample time) idle series are looked for.
const SWEEP_EVERY_MS: i64 = 60 * 1000;

/// What the engine needs from the configuration.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Series matching any of these are watched.
    pub watch: Vec<Selector>,
    /// A score at or above this opens (or extends) an anomaly.
    pub threshold: f64,
    pub detector: DetectorConfig,
    /// Watched series at most; further series are counted, not watched.
    pub max_series: usize,
    /// Anomalies kept for the API; the oldest fall out first.
    pub max_anomalies: usize,
    /// A gap longer than this many usual intervals breaks the series' context.
    pub gap_intervals: f64,
    /// A GPU's firing waits this long (sample time) to see whether most of its host's GPUs
    /// fire too: then it is a workload change, not an anomaly (see [`super::workload`]).
    /// 0: every firing opens at once.
    pub workload_window_ms: i64,
    /// The GPU unlike its peers (see [`super::peers`]).
    pub peers: PeerSettings,
}

/// Firings of a host's GPUs within this long after a workload event's last firing join it
/// (and a GPU's firings within this long after its job started or stopped).
pub const WORKLOAD_EPISODE_MS: i64 = 60 * 1000;
/// The metric whose moves between idle and in use are a GPU's jobs (see [`super::jobs`]).
pub const JOB_METRIC: &str = catalog::FB_USED;
/// The metrics whose moves are a GPU's job changing phase (and its rhythm, see
/// [`super::rhythm`]).
const ACTIVITY_METRICS: [&str; 2] = [catalog::GPU_UTIL, catalog::POWER_USAGE];

/// Counts for stats and `/metrics`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct EngineCounts {
    /// Samples scored (warm-up included).
    pub scored: u64,
    /// Samples of watched series that could not be scored: NaN, out of order, a counter's
    /// first sample or the sample of its reset.
    pub skipped: u64,
    /// Samples of series refused because `max_series` was reached.
    pub refused: u64,
    /// Anomalies opened.
    pub opened: u64,
    /// Firings merged into an open anomaly.
    pub merged: u64,
    /// Context breaks after gaps.
    pub gaps: u64,
    /// Counter resets seen.
    pub resets: u64,
    /// Watched series forgotten after `IDLE_MS` of silence.
    pub evicted: u64,
    /// Workload changes (most GPUs of a host firing together), and the firings folded
    /// into them instead of opening anomalies.
    pub workload_changes: u64,
    pub workload_firings: u64,
    /// GPUs reported as unlike their peers.
    pub peer_divergences: u64,
    /// GPU firings dropped alone as smaller than their metric's least departure, or as
    /// blips, back by the time they were decided ([`super::slight`]).
    pub slight: u64,
}

/// Per watched series.
struct Watched {
    detector: Detector,
    /// The score series (built once).
    score_series: Series,
    is_counter: bool,
    last_ms: Option<i64>,
    /// The latest raw value, and the one before it.
    last_raw: f64,
    prev_raw: f64,
    /// Usual interval between samples (EWMA), ms.
    interval_ms: f64,
    /// Samples seen since the last firing, and the anomaly still open (id, reason).
    since_fire: u64,
    open: Option<(u64, Reason)>,
    /// Its place in the peer comparison (GPU gauges only).
    peer: Option<MemberRef>,
    /// Jobs starting and stopping (a GPU's framebuffer use only).
    job: Option<JobTracker>,
    /// Its job's rhythm (a GPU's utilisation and power only).
    dips: Option<DipTracker>,
}

enum Slot {
    Ignored,
    Watched(Box<Watched>),
}

/// The newest raw value of a watched series that has had a sample.
fn latest_raw(
    series: &hashbrown::HashMap<Series, Slot, BuildPrehashed>,
    s: &Series,
) -> Option<f64> {
    match series.get(s) {
        Some(Slot::Watched(w)) => w.last_ms.map(|_| w.last_raw),
        _ => None,
    }
}

/// The engine.
pub struct AnomalyEngine {
    settings: EngineSettings,
    series: hashbrown::HashMap<Series, Slot, BuildPrehashed>,
    watched: usize,
    anomalies: VecDeque<Anomaly>,
    next_id: u64,
    counts: EngineCounts,
    /// Newest sample time seen, and when idle series were last swept.
    latest_ms: i64,
    swept_ms: i64,
    /// GPU firings held to tell workload changes from anomalies.
    workload: WorkloadCoalescer,
    /// GPUs compared with the other GPUs of their host.
    peers: PeerMonitor,
    /// Hosts' checkpoint rhythms, reported as workload events, and the hosts and metrics
    /// with a rhythm completed in the batch under way.
    rhythms: Rhythms,
    rhythm_hosts: Vec<(String, String)>,
}

impl AnomalyEngine {
    pub fn new(settings: EngineSettings) -> Self {
        let workload = WorkloadCoalescer::new(
            settings.workload_window_ms,
            WORKLOAD_EPISODE_MS,
            settings.max_anomalies,
            Some(OwnSignals {
                job: JOB_METRIC.to_string(),
                activity: ACTIVITY_METRICS.map(String::from).to_vec(),
            }),
        );
        AnomalyEngine {
            workload,
            peers: PeerMonitor::new(settings.peers.clone()),
            rhythms: Rhythms::default(),
            rhythm_hosts: Vec::new(),
            settings,
            series: hashbrown::HashMap::default(),
            watched: 0,
            anomalies: VecDeque::new(),
            next_id: 1,
            counts: EngineCounts::default(),
            latest_ms: i64::MIN,
            swept_ms: i64::MIN,
        }
    }

    pub fn counts(&self) -> EngineCounts {
        EngineCounts {
            workload_changes: self.workload.decided,
            workload_firings: self.workload.folded,
            peer_divergences: self.peers.reported,
            ..self.counts
        }
    }

    /// Recent workload changes, newest first.
    pub fn workload_events(&self) -> impl Iterator<Item = &WorkloadEvent> {
        self.workload.events()
    }

    pub fn watched_series(&self) -> usize {
        self.watched
    }

    /// Bytes held by the detectors (an upper bound: rings full).
    pub fn detector_bytes(&self) -> usize {
        self.series
            .values()
            .map(|slot| match slot {
                Slot::Watched(w) => w.detector.memory_bytes(),
                Slot::Ignored => 0,
            })
            .sum()
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Scores a batch; returns one score sample per scored input sample, and the ids of the
    /// anomalies opened.
    pub fn process(&mut self, samples: &[Sample]) -> (Vec<Sample>, Vec<u64>) {
        let mut scores = Vec::new();
        let mut opened = Vec::new();
        for sample in samples {
            self.latest_ms = self.latest_ms.max(sample.timestamp_ms);
            if let Some(score) = self.process_one(sample, &mut opened) {
                scores.push(score);
            }
        }
        self.report_rhythms();
        let series = &self.series;
        let latest = |s: &Series| latest_raw(series, s);
        let job = |s: &Series| match series.get(s) {
            Some(Slot::Watched(w)) => w.job.as_ref().and_then(JobTracker::last_change),
            _ => None,
        };
        for held in self.workload.decide(self.latest_ms, latest, job) {
            let now = latest_raw(&self.series, &held.series).unwrap_or(f64::NAN);
            if is_back(&held, now) {
                self.counts.slight += 1;
                continue;
            }
            self.open_if_departs_enough(held, &mut opened);
        }
        for divergence in self.peers.check(self.latest_ms) {
            self.open(divergence, &mut opened);
        }
        if self.latest_ms.saturating_sub(self.swept_ms) >= SWEEP_EVERY_MS {
            self.swept_ms = self.latest_ms;
            self.evict_idle(self.latest_ms - IDLE_MS);
            self.rhythms.forget_old(self.latest_ms);
        }
        (scores, opened)
    }

    /// Forgets watched series whose newest sample is older than `before_ms`.
    fn evict_idle(&mut self, before_ms: i64) {
        let before = self.series.len();
        self.series.retain(|_, slot| match slot {
            Slot::Watched(w) => w.last_ms.is_some_and(|t| t >= before_ms),
            Slot::Ignored => true,
        });
        let evicted = before - self.series.len();
        self.watched -= evicted;
        self.counts.evicted += evicted as u64;
    }

    fn slot(&mut self, sample: &Sample) -> Option<&mut Watched> {
        let series = &sample.series;
        // One probe for a known series (every sample but a series' first).
        let slot = match self.series.entry_ref(&sample.key()) {
            EntryRef::Occupied(o) => o.into_mut(),
            EntryRef::Vacant(v) => {
                let watch = series.name() != SCORE_METRIC
                    && self.settings.watch.iter().any(|s| s.matches(series));
                let slot = if !watch {
                    Slot::Ignored
                } else if self.watched >= self.settings.max_series {
                    // Not remembered: the series may get its turn when others go away.
                    self.counts.refused += 1;
                    return None;
                } else {
                    self.watched += 1;
                    let mut watched =
                        Watched::new(series, &self.settings.detector, self.settings.threshold);
                    if let Some((host, metric, gpu)) = gpu_of(series) {
                        self.workload.saw(&host, &metric, &gpu, series);
                        if !watched.is_counter && self.peers.compares(series) {
                            watched.peer = Some(self.peers.join(&host, &metric, &gpu, series));
                        }
                        if metric == JOB_METRIC {
                            watched.job = Some(JobTracker::new());
                        }
                        if ACTIVITY_METRICS.contains(&metric.as_str()) {
                            watched.dips = Some(DipTracker::default());
                        }
                    }
                    Slot::Watched(Box::new(watched))
                };
                v.insert_with_key(series.clone(), slot)
            }
        };
        match slot {
            Slot::Watched(w) => Some(w),
            Slot::Ignored => None,
        }
    }

    fn process_one(&mut self, sample: &Sample, opened: &mut Vec<u64>) -> Option<Sample> {
        let gap_intervals = self.settings.gap_intervals;
        let threshold = self.settings.threshold;
        let merge_samples = 2 * self.settings.detector.rest_samples as u64;
        let w = self.slot(sample)?;
        let t = sample.timestamp_ms;
        let mut gap = false;
        let mut reset = false;

        // Order, gaps, counters.
        let value = match w.last_ms {
            Some(last) if t <= last => None,
            _ if !sample.value.is_finite() => None,
            None => {
                w.last_ms = Some(t);
                w.last_raw = sample.value;
                (!w.is_counter).then_some(sample.value)
            }
            Some(last) => {
                let dt = (t - last) as f64;
                if w.interval_ms > 0.0 && dt > gap_intervals * w.interval_ms {
                    gap = true;
                    w.detector.break_context();
                } else {
                    w.interval_ms = if w.interval_ms == 0.0 {
                        dt
                    } else {
                        w.interval_ms + (dt - w.interval_ms) * 0.1
                    };
                }
                let raw = sample.value;
                let value = if !w.is_counter {
                    Some(raw)
                } else if raw < w.last_raw {
                    // A reset (the process restarted): what happened in between is unknown,
                    // so this sample has no rate, and the next one starts a fresh context.
                    reset = true;
                    w.detector.break_context();
                    None
                } else {
                    Some((raw - w.last_raw) * 1000.0 / dt)
                };
                w.last_ms = Some(t);
                w.prev_raw = w.last_raw;
                w.last_raw = raw;
                value
            }
        };
        let Some(value) = value else {
            self.counts.gaps += gap as u64;
            self.counts.resets += reset as u64;
            self.counts.skipped += 1;
            return None;
        };
        let verdict = w.detector.update(value);
        if let Some(job) = &mut w.job {
            job.observe(t, value);
        }
        let rhythm = w.dips.as_mut().and_then(|d| d.observe(t, value));
        w.since_fire = w.since_fire.saturating_add(1);
        let peer = w.peer;
        let score_series = w.score_series.clone();
        let is_counter = w.is_counter;
        let prev = w.prev_raw;
        let mut merge_into = None;
        if verdict.score >= threshold {
            if w.since_fire <= merge_samples {
                merge_into = w
                    .open
                    .filter(|(_, r)| *r == verdict.reason)
                    .map(|(id, _)| id);
            }
            w.since_fire = 0;
        } else if w.since_fire > merge_samples {
            w.open = None;
        }

        if let Some(peer) = peer {
            self.peers.observe(peer, t, value);
        }
        if let Some(rhythm) = rhythm {
            self.rhythm_found(&sample.series, rhythm, t);
        }
        self.counts.scored += 1;
        self.counts.gaps += gap as u64;
        self.counts.resets += reset as u64;
        if verdict.score >= threshold {
            match merge_into.and_then(|id| self.anomalies.iter_mut().rev().find(|a| a.id == id)) {
                Some(a) => {
                    a.last_ms = t;
                    a.count += 1;
                    a.peak_score = a.peak_score.max(verdict.score);
                    self.counts.merged += 1;
                }
                None => {
                    let (low, high) = verdict.expected.unwrap_or((value, value));
                    let anomaly = Anomaly {
                        id: 0,
                        series: sample.series.clone(),
                        first_ms: t,
                        last_ms: t,
                        value,
                        expected_low: low,
                        expected_high: high,
                        score: verdict.score,
                        peak_score: verdict.score,
                        count: 1,
                        reason: verdict.reason,
                        detail: verdict.detail(),
                        is_rate: is_counter,
                        peers: None,
                    };
                    match gpu_of(&sample.series) {
                        Some((host, metric, _)) if self.workload.enabled() && !is_counter => {
                            let moved = value - prev;
                            let series = &self.series;
                            // A GPU's value just before `t`.
                            let before = |s: &Series| match series.get(s) {
                                Some(Slot::Watched(p)) if p.last_ms >= Some(t) => {
                                    Some(p.prev_raw).filter(|v| v.is_finite())
                                }
                                Some(Slot::Watched(p)) => p.last_ms.map(|_| p.last_raw),
                                _ => None,
                            };
                            self.workload.hold(host, metric, anomaly, moved, before);
                        }
                        _ => self.open_if_departs_enough(anomaly, opened),
                    }
                }
            }
        }
        Some(Sample::new(score_series, t, verdict.score))
    }

    /// A GPU series completed a rhythm: noted for its host, reported after the batch.
    fn rhythm_found(&mut self, series: &Series, rhythm: Rhythm, t: i64) {
        if let Some((host, metric, gpu)) = gpu_of(series) {
            self.rhythms.found(&host, &metric, &gpu, rhythm, t);
            self.rhythm_hosts.push((host, metric));
        }
    }

    /// The hosts whose GPUs completed a rhythm in this batch: a new one is reported once,
    /// with every GPU of the sampling round that shares it ([`super::rhythm`]).
    fn report_rhythms(&mut self) {
        let mut hosts = std::mem::take(&mut self.rhythm_hosts);
        hosts.sort();
        hosts.dedup();
        for (host, metric) in hosts {
            let host_gpus = self.workload.host_gpus(&host, &metric);
            let t = self.latest_ms;
            if let Some(event) = self.rhythms.report(&host, &metric, t, host_gpus) {
                self.workload.keep(event);
            }
        }
    }

    /// Opens a detector's firing as an anomaly where it departs enough ([`super::slight`]).
    fn open_if_departs_enough(&mut self, anomaly: Anomaly, opened: &mut Vec<u64>) {
        if departs_enough(&anomaly) {
            self.open(anomaly, opened);
        } else {
            self.counts.slight += 1;
        }
    }

    /// Opens `anomaly` with the next id; later firings of its series merge into it.
    fn open(&mut self, mut anomaly: Anomaly, opened: &mut Vec<u64>) {
        let id = self.next_id;
        self.next_id += 1;
        anomaly.id = id;
        let (key, reason) = (anomaly.series.clone(), anomaly.reason);
        self.anomalies.push_back(anomaly);
        while self.anomalies.len() > self.settings.max_anomalies {
            self.anomalies.pop_front();
        }
        if let Some(Slot::Watched(w)) = self.series.get_mut(&key) {
            w.open = Some((id, reason));
        }
        self.counts.opened += 1;
        opened.push(id);
    }

    /// Recent anomalies, newest first: one page of those the filter keeps.
    pub fn list(&self, filter: &AnomalyFilter) -> Vec<Anomaly> {
        self.page(filter).items
    }

    /// [`AnomalyEngine::list`], and how many the filter kept before paging.
    pub fn page(&self, filter: &AnomalyFilter) -> Page<Anomaly> {
        let kept = self
            .anomalies
            .iter()
            .rev()
            .filter(|a| filter.since_ms.is_none_or(|s| a.last_ms >= s))
            .filter(|a| filter.min_score.is_none_or(|m| a.peak_score >= m))
            .filter(|a| filter.matchers.matches(&a.series));
        Page::of(kept, filter.offset, filter.limit).map(Anomaly::clone)
    }

    pub fn get(&self, id: u64) -> Option<&Anomaly> {
        self.anomalies.iter().find(|a| a.id == id)
    }
}

impl Watched {
    fn new(series: &SeriesKey, cfg: &DetectorConfig, threshold: f64) -> Self {
        // A GPU's series are judged at the sample's scale only: their slow changes of shape
        // are a job's phases, which the workload and peer comparisons read.
        let cfg = match super::workload::gpu_of(series) {
            Some(_) => DetectorConfig {
                coarse_block: 0,
                ..cfg.clone()
            },
            None => cfg.clone(),
        };
        Watched {
            // The expected range is shown only with an anomaly.
            detector: Detector::new(cfg).expecting_from(threshold),
            score_series: derived_series(series, SCORE_METRIC, &[]),
            // Counters and histogram parts only grow: they are judged by their rate.
            is_counter: catalog::is_cumulative(series.name()),
            last_ms: None,
            last_raw: 0.0,
            prev_raw: f64::NAN,
            interval_ms: 0.0,
            since_fire: u64::MAX / 2,
            open: None,
            peer: None,
            job: None,
            dips: None,
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
