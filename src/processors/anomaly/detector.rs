//! One series' streaming anomaly detector: one sample in, one score out, no look-ahead.
//!
//! The method, in short: values are cut into `bins` equal bins over the range the series has
//! shown so far, and a bounded table counts which bin followed which (orders 1 to
//! `context_order`). A value is anomalous when the bins before it have been seen often, but
//! neither its bin nor a neighbouring one has ever followed them; or when it leaves the
//! range seen so far by more than `range_tolerance_bins`, which also re-bins the series on
//! the wider range and relearns the recent past (`RING` values) on it. A new extreme reached
//! by an ordinary step (no larger than `drift_step_factor` times the series' mean step) is
//! the series drifting, not an anomaly: the range widens without a score. After a score at or
//! above `FIRE_LEVEL` the detector rests for `rest_samples`, reporting only new highs and
//! lows meanwhile: one event per incident, not a storm.
//!
//! The same code is driven by the anomaly-detector actor and by `examples/nab.rs`, which
//! scores it on the Numenta Anomaly Benchmark.

use serde::{Deserialize, Serialize};

use super::context_table::ContextTable;
pub use super::detector_config::{DetectorConfig, MAX_ORDER};

/// A raw score at or above this starts a rest period.
pub const FIRE_LEVEL: f64 = 0.75;
/// Recent values kept for relearning after the range widens.
const RING: usize = 1024;
/// Samples the mean step is taken over (an exponential average; plain mean before that).
const STEP_MEMORY: f64 = 128.0;

/// Why a score is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Still learning (during the settle period, only new highs and lows are scored).
    WarmingUp,
    /// Quiet after an anomaly.
    Resting,
    /// Nothing unusual.
    Normal,
    /// The value followed its recent past in a way never seen before.
    NovelTransition,
    /// Above everything seen so far.
    NewHigh,
    /// Below everything seen so far.
    NewLow,
    /// A GPU fell away from (or rose above) the other GPUs of its host, which held steady.
    PeerDivergence,
}

impl Reason {
    pub fn describe(self) -> &'static str {
        match self {
            Reason::WarmingUp => "still learning the series",
            Reason::Resting => "quiet after a recent anomaly",
            Reason::Normal => "as expected",
            Reason::NovelTransition => "the series moved in a way it never has from where it was",
            Reason::NewHigh => "above every value seen so far",
            Reason::NewLow => "below every value seen so far",
            Reason::PeerDivergence => "unlike the other GPUs of its host, which held steady",
        }
    }
}

/// The detector's verdict on one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// In [0, 1]; 0 while warming up or resting.
    pub score: f64,
    pub reason: Reason,
    /// Range the detector expected the value in, from what followed the same context before
    /// (or the range seen so far where the context says nothing); `None` while warming up,
    /// and for a novel-transition score below [`Detector::expecting_from`]'s level (working
    /// it out reads every bin's count, a large share of the cost of a sample).
    pub expected: Option<(f64, f64)>,
    /// How many samples the judged value averages: 1, or the coarser scale's block
    /// (`DetectorConfig::coarse_block`), in which case `expected` is a range of such means.
    pub over: u32,
}

impl Verdict {
    /// What the anomaly list says about it: the reason, and for the coarser scale that the
    /// judged value (and the expected range) is a mean of `over` samples.
    pub fn detail(&self) -> String {
        if self.over > 1 {
            format!(
                "{}, as a mean of its last {} samples (the expected range is of such means)",
                self.reason.describe(),
                self.over
            )
        } else {
            self.reason.describe().to_string()
        }
    }
}

fn mix(mut h: u64, x: u64) -> u64 {
    h ^= x
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(h << 6)
        .wrapping_add(h >> 2);
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Context-table slots and ring values of a detector at the finest scale; the coarser scale
/// sees fewer values and holds `COARSE_TABLE` and `COARSE_RING`.
const TABLE: usize = 2048;
const COARSE_TABLE: usize = 512;
const COARSE_RING: usize = 256;

const NO_SYMBOL: i32 = i32::MIN;

// Checked when compiling: a detector stays within its memory budget.
const _: () = assert!(Detector::MEMORY_BYTES <= Detector::MEMORY_BUDGET);
const SEED: u64 = 0x5151;

/// One series' detector. At most 16 KiB with its coarser scale (`Detector::MEMORY_BYTES`).
pub struct Detector {
    cfg: DetectorConfig,
    /// Values seen, warm-up included.
    seen: u64,
    /// The last `RING` values, to relearn from when the range widens.
    ring: Vec<f32>,
    ring_head: usize,
    /// Bin 0 starts here.
    lo: f64,
    /// Bin width.
    width: f64,
    /// Range of every value seen.
    seen_lo: f64,
    seen_hi: f64,
    /// Previous bins, newest first.
    history: [i32; MAX_ORDER],
    /// Hashes of the n-grams that ended at the previous value (index = length).
    prev_ngrams: [u64; MAX_ORDER + 2],
    counts: ContextTable,
    /// Values since the detector last fired.
    since_fire: u64,
    /// How many times the series was re-binned (reported in stats).
    rebins: u64,
    /// Bins in use: `cfg.bins`, or fewer for a series with few distinct values (one bin per
    /// step between them, so that neighbouring values are neighbouring bins).
    bins: u32,
    /// Scores below this come without the expected range (see [`Verdict::expected`]).
    expected_from: f64,
    /// The previous value (NaN at the start and after a gap), and the mean size of a step
    /// from one value to the next: a new extreme reached by an ordinary step is drift.
    last_value: f64,
    mean_step: f64,
    ring_cap: usize,
    /// Values since the range last widened by drift (a new extreme reached by an ordinary step).
    since_drift: u64,
    /// The same method on block means (`DetectorConfig::coarse_block`).
    coarse: Option<Box<Coarse>>,
}

impl Detector {
    /// Heap and inline bytes one detector holds once its rings are full, its coarser scale
    /// included.
    pub const MEMORY_BYTES: usize = std::mem::size_of::<Detector>()
        + TABLE * 4
        + RING * std::mem::size_of::<f32>()
        + std::mem::size_of::<Coarse>()
        + COARSE_TABLE * 4
        + COARSE_RING * std::mem::size_of::<f32>();

    /// Bytes this detector holds once its rings are full: [`Detector::MEMORY_BYTES`], less
    /// the coarser scale where it has none (GPU series).
    pub fn memory_bytes(&self) -> usize {
        let coarse = std::mem::size_of::<Coarse>()
            + COARSE_TABLE * 4
            + COARSE_RING * std::mem::size_of::<f32>();
        Self::MEMORY_BYTES - if self.coarse.is_none() { coarse } else { 0 }
    }

    /// Bytes one detector may hold at most (the target is 16 KiB per series).
    pub const MEMORY_BUDGET: usize = 16 * 1024;

    /// `cfg` must have passed [`DetectorConfig::validate`].
    pub fn new(cfg: DetectorConfig) -> Self {
        let coarse = (cfg.coarse_block >= 2).then(|| {
            let k = cfg.coarse_block;
            let at_scale = coarse_config(&cfg, k);
            Coarse::new(
                k,
                Detector::sized(at_scale, COARSE_TABLE, COARSE_RING, None),
            )
        });
        Detector::sized(cfg, TABLE, RING, coarse.map(Box::new))
    }

    fn sized(cfg: DetectorConfig, table: usize, ring: usize, coarse: Option<Box<Coarse>>) -> Self {
        let bins = cfg.bins;
        Detector {
            cfg,
            seen: 0,
            ring: Vec::with_capacity(ring),
            ring_head: 0,
            lo: 0.0,
            width: 1.0,
            seen_lo: f64::INFINITY,
            seen_hi: f64::NEG_INFINITY,
            history: [NO_SYMBOL; MAX_ORDER],
            prev_ngrams: [0; MAX_ORDER + 2],
            counts: ContextTable::new(table),
            since_fire: u64::MAX / 2,
            bins,
            rebins: 0,
            expected_from: 0.0,
            last_value: f64::NAN,
            mean_step: 0.0,
            ring_cap: ring,
            since_drift: u64::MAX / 2,
            coarse,
        }
    }

    /// Works out the expected range only for scores at or above `level` (the level at which
    /// the caller reports an anomaly); by default for every score. Scores do not change.
    pub fn expecting_from(mut self, level: f64) -> Self {
        self.set_expecting_from(level);
        self
    }

    fn set_expecting_from(&mut self, level: f64) {
        self.expected_from = level;
        if let Some(c) = &mut self.coarse {
            c.detector.set_expecting_from(level);
        }
    }

    pub fn samples_seen(&self) -> u64 {
        self.seen
    }

    pub fn rebins(&self) -> u64 {
        self.rebins
    }

    pub fn is_warm(&self) -> bool {
        self.seen >= self.cfg.warmup_samples as u64
    }

    /// Forgets the recent past (not what was learned): the next value is judged without a
    /// context. Called after a gap in the series, so a missing stretch is not an anomaly.
    pub fn break_context(&mut self) {
        self.history = [NO_SYMBOL; MAX_ORDER];
        self.prev_ngrams = [0; MAX_ORDER + 2];
        self.last_value = f64::NAN;
        if let Some(c) = &mut self.coarse {
            c.break_context();
        }
    }

    /// Scores `value` and learns from it, at both scales: the verdict is this value's, or
    /// the coarser scale's on the block this value completes where that scores higher and
    /// the series has not drifted (widened its range by an ordinary step) in its last `RING`
    /// values. Non-finite values are ignored (score 0).
    pub fn update(&mut self, value: f64) -> Verdict {
        let verdict = self.update_one(value);
        // A drifting series has no settled shape for its blocks to be compared with.
        let drifting = self.since_drift < RING as u64;
        match self.coarse.as_mut().and_then(|c| c.update(value)) {
            Some(v) if v.score > verdict.score && !drifting => v,
            _ => verdict,
        }
    }

    /// [`Detector::update`] at this detector's own scale.
    fn update_one(&mut self, value: f64) -> Verdict {
        if !value.is_finite() {
            return Verdict {
                over: 1,
                score: 0.0,
                reason: Reason::Normal,
                expected: self.is_warm().then(|| self.seen_range()),
            };
        }
        self.seen += 1;
        let tolerance = self.width * self.cfg.range_tolerance_bins;
        let warm = self.seen > self.cfg.warmup_samples as u64;
        let new_extreme = if !warm {
            None
        } else if value > self.lo + self.width * self.bins as f64 + tolerance {
            Some(Reason::NewHigh)
        } else if value < self.lo - tolerance {
            Some(Reason::NewLow)
        } else {
            None
        };
        // NaN after a gap or at the start: then a new extreme is never taken for drift.
        let step = (value - self.last_value).abs();
        let drifted = new_extreme.is_some() && step <= self.cfg.drift_step_factor * self.mean_step;
        if step.is_finite() {
            let weight = 1.0 / ((self.seen - 1).max(1) as f64).min(STEP_MEMORY);
            self.mean_step += weight * (step - self.mean_step);
        }
        self.last_value = value;
        self.seen_lo = self.seen_lo.min(value);
        self.seen_hi = self.seen_hi.max(value);
        self.push_ring(value);
        self.since_drift = self.since_drift.saturating_add(1);
        if drifted {
            self.since_drift = 0;
            self.rebin();
            return Verdict {
                over: 1,
                score: 0.0,
                reason: Reason::Normal,
                expected: None,
            };
        }
        if !warm {
            if self.seen == self.cfg.warmup_samples as u64 {
                self.rebin();
            }
            return Verdict {
                over: 1,
                score: 0.0,
                reason: Reason::WarmingUp,
                expected: None,
            };
        }

        let (raw, reason, expected) = match new_extreme {
            Some(reason) => {
                let expected = self.bins_range(0, self.bins as i32 - 1);
                self.rebin();
                (1.0, reason, Some(expected))
            }
            None => {
                let s = self.symbol(value);
                let judged = self.judge(s);
                // Before the value is counted in, so the range is what was expected of it.
                let expected =
                    (judged.novelty >= self.expected_from).then(|| self.expected_successors());
                self.count_in(s, &judged);
                let reason = if judged.novelty >= FIRE_LEVEL {
                    Reason::NovelTransition
                } else {
                    Reason::Normal
                };
                (judged.novelty, reason, expected)
            }
        };

        // Right after the warm-up the context table is thin: a successor never seen may just
        // not have come up yet. Novel transitions count once it has settled.
        let settled = self.seen > (self.cfg.warmup_samples + self.cfg.settle_samples) as u64;
        let (raw, reason) = if new_extreme.is_none() && !settled {
            (0.0, Reason::WarmingUp)
        } else {
            (raw, reason)
        };
        // A new high or low is always reported: resting mutes only novel transitions.
        self.since_fire = self.since_fire.saturating_add(1);
        if self.since_fire <= self.cfg.rest_samples as u64 && new_extreme.is_none() {
            return Verdict {
                over: 1,
                score: 0.0,
                reason: Reason::Resting,
                expected,
            };
        }
        if raw >= FIRE_LEVEL {
            self.since_fire = 0;
        }
        Verdict {
            over: 1,
            score: raw,
            reason,
            expected,
        }
    }

    fn push_ring(&mut self, value: f64) {
        if self.ring.len() < self.ring_cap {
            self.ring.push(value as f32);
        } else {
            self.ring[self.ring_head] = value as f32;
            self.ring_head = (self.ring_head + 1) % self.ring_cap;
        }
    }

    /// Cuts the range seen so far into bins and relearns the ring on them.
    fn rebin(&mut self) {
        self.rebins += 1;
        let (lo, hi) = (self.seen_lo, self.seen_hi);
        // A series with few distinct values (utilisation in whole %, temperature in °C)
        // gets one bin per step between them: with more bins some would stay empty, and a
        // value next to an empty bin would have no neighbour to be judged with.
        let mut values: Vec<f32> = self.ring.clone();
        values.sort_by(f32::total_cmp);
        values.dedup();
        self.bins = if values.len() >= 2 && values.len() - 1 < self.cfg.bins as usize {
            (values.len() - 1) as u32
        } else {
            self.cfg.bins
        };
        self.lo = lo;
        self.width = if hi > lo {
            (hi - lo) / self.bins as f64
        } else {
            // A flat line: any move of 1 % (or of 1e-9 around zero) is news.
            (lo.abs() * 0.01).max(1e-9)
        };
        self.counts.clear();
        self.break_context();
        let n = self.ring.len();
        for i in 0..n {
            let v = self.ring[(self.ring_head + i) % n] as f64;
            self.learn(v);
        }
    }

    /// Whether `value` falls in the lowest or highest bin of the range seen so far (or out).
    fn at_edge(&self, value: f64) -> bool {
        let s = self.symbol(value);
        s <= 0 || s >= self.bins as i32 - 1
    }

    fn symbol(&self, value: f64) -> i32 {
        ((value - self.lo) / self.width)
            .floor()
            .clamp(0.0, self.bins as f64) as i32
    }

    fn bins_range(&self, first: i32, last: i32) -> (f64, f64) {
        (
            self.lo + first as f64 * self.width,
            self.lo + (last + 1) as f64 * self.width,
        )
    }

    fn seen_range(&self) -> (f64, f64) {
        (self.seen_lo, self.seen_hi)
    }

    /// The bins that have followed the current order-1 context, as a value range.
    fn expected_successors(&self) -> (f64, f64) {
        let prev = self.history[0];
        if prev == NO_SYMBOL {
            return self.seen_range();
        }
        let mut first = None;
        let mut last = None;
        for s in 0..=self.bins as i32 {
            let bigram = mix(mix(SEED, s as u64), prev as u64);
            if self.counts.get(bigram) > 0 {
                first.get_or_insert(s);
                last = Some(s);
            }
        }
        match (first, last) {
            (Some(first), Some(last)) => self.bins_range(first, last),
            _ => self.seen_range(),
        }
    }

    /// Scores `value` against the contexts, then counts it in.
    fn learn(&mut self, value: f64) -> f64 {
        let s = self.symbol(value);
        let judged = self.judge(s);
        self.count_in(s, &judged);
        judged.novelty
    }

    /// Scores bin `s` against the contexts (reads only). The score is high when the
    /// preceding bins are well known and neither this bin nor a neighbour ever followed them.
    fn judge(&self, s: i32) -> Judged {
        let order = self.cfg.context_order as usize;
        // ngrams[d][n]: hash of the n-gram (newest first) ending in bin s - 1 + d.
        let mut ngrams = [[0u64; MAX_ORDER + 2]; 3];
        for (d, chain) in ngrams.iter_mut().enumerate() {
            chain[1] = mix(SEED, (s - 1 + d as i32) as u64);
        }
        let mut len = 1;
        for n in 1..=order {
            let prev = self.history[n - 1];
            if prev == NO_SYMBOL {
                break;
            }
            for chain in ngrams.iter_mut() {
                chain[n + 1] = mix(chain[n], prev as u64);
            }
            len = n + 1;
        }

        let mut lowest: f64 = 1.0;
        let mut sum = 0.0;
        let mut supported = 0;
        for k in 1..len {
            let context = self.counts.get(self.prev_ngrams[k]);
            if context < self.cfg.min_support {
                continue;
            }
            let followed: u32 = ngrams.iter().map(|c| self.counts.get(c[k + 1])).sum();
            let context = context as f64;
            let novelty = (context / (context + 1.0)) / (1.0 + followed as f64);
            lowest = lowest.min(novelty);
            sum += novelty;
            supported += 1;
        }

        let novelty = if len == 1 {
            // No context at all (start, or after a gap): nothing to judge by.
            0.0
        } else if supported == 0 {
            // The preceding bins are themselves (nearly) new: the series is somewhere it has
            // not been.
            1.0
        } else {
            0.5 * lowest + 0.5 * sum / supported as f64
        };
        Judged {
            novelty,
            own: ngrams[1],
            len,
        }
    }

    /// Counts bin `s` in after [`judge`](Self::judge): its n-grams, and it as the newest
    /// context.
    fn count_in(&mut self, s: i32, judged: &Judged) {
        for hash in &judged.own[1..=judged.len] {
            self.counts.bump(*hash);
        }
        self.prev_ngrams = judged.own;
        self.history.rotate_right(1);
        self.history[0] = s;
    }
}

/// A bin judged against the contexts, before it is counted in.
struct Judged {
    novelty: f64,
    /// Hashes of the n-grams ending in the bin (index = length).
    own: [u64; MAX_ORDER + 2],
    /// N-grams of lengths 1..len exist (the history was that long).
    len: usize,
}

// The coarser time scale of one series' detector: the same method judges the means of
// blocks of `k` samples (`DetectorConfig::coarse_block`). A change of shape slower than a
// few samples (a wave losing half its swing, a shift within the usual range, a burst of
// noise) moves no single sample in a way never seen, but the block means do. The scale's
// detector is smaller (it sees `k` times fewer values) and learns, warms up and rests in its
// own blocks. It reports new highs and lows of the block means, and novel transitions away
// from the edges of their range; the series' own detector mutes it while the series
// drifts (`Detector::update`).

/// Fewest blocks a coarser scale learns from before it judges (and settles for).
const MIN_WARMUP_BLOCKS: u32 = 20;
/// Fewest blocks a coarser scale rests after firing.
const MIN_REST_BLOCKS: u32 = 5;

/// The coarser scale: the block being summed, and the detector of block means.
struct Coarse {
    k: u32,
    sum: f64,
    n: u32,
    detector: Detector,
}

/// The settings of the scale of `k`-sample blocks: the same, with the warm-up, settling and
/// rest counted in blocks (not fewer than a few), and no scales of its own.
fn coarse_config(cfg: &DetectorConfig, k: u32) -> DetectorConfig {
    DetectorConfig {
        warmup_samples: (cfg.warmup_samples / k).max(MIN_WARMUP_BLOCKS),
        settle_samples: (cfg.settle_samples / k).max(MIN_WARMUP_BLOCKS),
        rest_samples: (cfg.rest_samples / k).max(MIN_REST_BLOCKS),
        coarse_block: 0,
        ..cfg.clone()
    }
}

impl Coarse {
    fn new(k: u32, detector: Detector) -> Self {
        Coarse {
            k,
            sum: 0.0,
            n: 0,
            detector,
        }
    }

    /// A gap: the block in progress is dropped, and the next block has no context.
    fn break_context(&mut self) {
        self.sum = 0.0;
        self.n = 0;
        self.detector.break_context();
    }

    /// Adds `value` to the block; the verdict on the block's mean when it completes it.
    fn update(&mut self, value: f64) -> Option<Verdict> {
        if !value.is_finite() {
            return None;
        }
        self.sum += value;
        self.n += 1;
        if self.n < self.k {
            return None;
        }
        let mean = self.sum / self.k as f64;
        self.sum = 0.0;
        self.n = 0;
        let edge = self.detector.at_edge(mean);
        let mut v = self.detector.update_one(mean);
        // A block mean in the lowest or highest bin is the series moving along the edge of
        // its range (a ramp, a drift): new contexts there are expected, not news.
        if edge && v.reason == Reason::NovelTransition {
            v.score = 0.0;
            v.reason = Reason::Normal;
        }
        v.over = self.k;
        Some(v)
    }
}

#[cfg(test)]
#[path = "detector_tests.rs"]
mod tests;
