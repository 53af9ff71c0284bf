//! The coarser time scale of one series' detector: the same method judges the means of
//! blocks of `k` samples (`DetectorConfig::coarse_block`). A change of shape slower than a few samples
//! (a wave losing half its swing, a shift within the usual range, a burst of noise) moves
//! no single sample in a way never seen, but the block means do. The scale's detector is
//! smaller (it sees `k` times fewer values) and learns, warms up and rests in its own
//! blocks. It reports new highs and lows of the block means, and novel transitions away
//! from the edges of their range; the series' own detector mutes it while the series
//! drifts (`Detector::update`).

use super::detector::{Detector, DetectorConfig, Reason, Verdict};

/// Fewest blocks a coarser scale learns from before it judges (and settles for).
const MIN_WARMUP_BLOCKS: u32 = 20;
/// Fewest blocks a coarser scale rests after firing.
const MIN_REST_BLOCKS: u32 = 5;

/// The coarser scale: the block being summed, and the detector of block means.
pub struct Coarse {
    k: u32,
    sum: f64,
    n: u32,
    detector: Detector,
}

/// The settings of the scale of `k`-sample blocks: the same, with the warm-up, settling and
/// rest counted in blocks (not fewer than a few), and no scales of its own.
pub(super) fn coarse_config(cfg: &DetectorConfig, k: u32) -> DetectorConfig {
    DetectorConfig {
        warmup_samples: (cfg.warmup_samples / k).max(MIN_WARMUP_BLOCKS),
        settle_samples: (cfg.settle_samples / k).max(MIN_WARMUP_BLOCKS),
        rest_samples: (cfg.rest_samples / k).max(MIN_REST_BLOCKS),
        coarse_block: 0,
        ..cfg.clone()
    }
}

impl Coarse {
    pub(super) fn new(k: u32, detector: Detector) -> Self {
        Coarse {
            k,
            sum: 0.0,
            n: 0,
            detector,
        }
    }

    #[cfg(test)]
    pub(super) fn ring_capacity(&self) -> usize {
        self.detector.ring_capacity()
    }

    pub(super) fn expecting_from(&mut self, level: f64) {
        self.detector.set_expecting_from(level);
    }

    /// A gap: the block in progress is dropped, and the next block has no context.
    pub(super) fn break_context(&mut self) {
        self.sum = 0.0;
        self.n = 0;
        self.detector.break_context();
    }

    /// Adds `value` to the block; the verdict on the block's mean when it completes it.
    pub(super) fn update(&mut self, value: f64) -> Option<Verdict> {
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
