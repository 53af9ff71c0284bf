//! Calibration of one series' intervals, per horizon, from its own recent forecasts
//! (conformal prediction on a rolling window of normalised errors).
//!
//! Each forecast given is remembered at a few steps ahead (`CHECKPOINTS`, spread evenly on
//! a log scale from the first step to the last), with the model's own interval there. When
//! the time of a checkpoint has come, the actual value's distance from the point, as a share
//! of the model's half-width on its side, is kept (the last `KEPT` per checkpoint and
//! level). A new forecast's half-width at that checkpoint is then the model's times the
//! `level` quantile of those shares: the width that would have covered `level` of the
//! recent actual values there. Steps between checkpoints take a scale interpolated on the
//! same log scale. Until a checkpoint has `MIN_OWN` shares, all checkpoints' shares are
//! pooled; until there are `MIN_POOLED`, the model's intervals are shown as they are.
//!
//! Why per horizon and per level: a model's intervals have a shape over the steps ahead (a
//! random walk's widen with the square root of the steps) and between levels (Gaussian)
//! that real series do not follow. On the real GPU series the model's own 80 % intervals
//! covered 93 % a minute ahead while its 95 % ones covered 95 %; one scale per level for
//! every step, learnt by adaptive conformal inference on the steps that came true before
//! the next refit, left them at 90 % a minute ahead and 83 % ten minutes ahead
//! (docs/perf/2026-12-04-intervals.md).

use std::collections::VecDeque;

use super::model::Forecast;

/// Steps ahead at which forecasts are scored, at most.
const CHECKPOINTS: usize = 10;
/// Normalised errors kept per checkpoint and level (the newest).
const KEPT: usize = 50;
/// Errors a checkpoint needs before its own quantile is used.
const MIN_OWN: usize = 20;
/// Errors all checkpoints together need before any calibration is applied.
const MIN_POOLED: usize = 20;
/// Forecasts remembered while their checkpoints come true, at most (refits much faster than
/// the horizon would otherwise keep many). When full, a new forecast is not remembered, so
/// that the remembered ones live to their last checkpoint: every checkpoint keeps being
/// scored, from fewer forecasts (the default refit and horizon keep 11).
const MAX_PENDING: usize = 32;
/// Bounds of the scale: intervals are widened or narrowed by 20 at most.
const SCALE_RANGE: (f64, f64) = (0.05, 20.0);

/// A forecast remembered at the checkpoints.
#[derive(Debug, Clone, PartialEq)]
struct Pending {
    /// The grid step of the window's last value: step `h` (0-based) of the forecast is at
    /// `end + h + 1`.
    end: i64,
    /// Checkpoints already scored.
    scored: usize,
    /// Per checkpoint: the point, and per level the model's (lower, upper).
    at: Vec<(f64, Vec<(f64, f64)>)>,
}

/// One series' calibration state.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// The interval levels, in the forecasts' order.
    levels: Vec<f64>,
    /// Steps ahead (0-based) that are scored, ascending.
    checkpoints: Vec<usize>,
    /// Per level, per checkpoint: the newest normalised errors (distance from the point over
    /// the model's half-width on that side).
    errors: Vec<Vec<VecDeque<f32>>>,
    /// Forecasts given whose last checkpoint has not come yet, oldest first.
    pending: VecDeque<Pending>,
}

/// Up to `CHECKPOINTS` steps (0-based) spread evenly on a log scale over `horizon` steps,
/// the first and the last included.
fn checkpoints(horizon: usize) -> Vec<usize> {
    let last = horizon.max(1) as f64;
    let mut steps: Vec<usize> = (0..CHECKPOINTS)
        .map(|i| (last.powf(i as f64 / (CHECKPOINTS - 1) as f64).round() as usize).max(1) - 1)
        .collect();
    steps.dedup();
    steps
}

/// The conformal quantile: the smallest kept error at or above a `level` share of them
/// (with the finite-sample correction), None when too few are kept for it.
fn quantile<'a>(errors: impl Iterator<Item = &'a f32>, level: f64) -> Option<f64> {
    let mut sorted: Vec<f32> = errors.copied().collect();
    let rank = ((sorted.len() + 1) as f64 * level).ceil() as usize;
    if rank == 0 || rank > sorted.len() {
        return None;
    }
    sorted.sort_unstable_by(f32::total_cmp);
    Some(f64::from(sorted[rank - 1]))
}

/// How far `actual` is from `point`, as a share of the half-width on its side.
fn normalised(actual: f64, point: f64, (lower, upper): (f64, f64)) -> Option<f32> {
    let (distance, half) = if actual >= point {
        (actual - point, upper - point)
    } else {
        (point - actual, point - lower)
    };
    if half > 0.0 && half.is_finite() {
        Some((distance / half) as f32)
    } else {
        None
    }
}

impl Calibration {
    /// A calibration for forecasts of `horizon` steps with intervals at `levels`.
    pub fn new(levels: &[f64], horizon: usize) -> Self {
        let checkpoints = checkpoints(horizon);
        Calibration {
            levels: levels.to_vec(),
            errors: vec![vec![VecDeque::new(); checkpoints.len()]; levels.len()],
            checkpoints,
            pending: VecDeque::new(),
        }
    }

    /// The half-width scale of each level at each checkpoint.
    fn checkpoint_scales(&self) -> Vec<Vec<f64>> {
        self.levels
            .iter()
            .zip(&self.errors)
            .map(|(&level, per_checkpoint)| {
                let pooled = quantile(per_checkpoint.iter().flatten(), level)
                    .filter(|_| {
                        per_checkpoint.iter().map(VecDeque::len).sum::<usize>() >= MIN_POOLED
                    })
                    .unwrap_or(1.0);
                per_checkpoint
                    .iter()
                    .map(|errors| {
                        quantile(errors.iter(), level)
                            .filter(|_| errors.len() >= MIN_OWN)
                            .unwrap_or(pooled)
                            .clamp(SCALE_RANGE.0, SCALE_RANGE.1)
                    })
                    .collect()
            })
            .collect()
    }

    /// The half-width scale of each level at step `h` (0-based).
    #[cfg(test)]
    fn scales_at(&self, h: usize) -> Vec<f64> {
        self.checkpoint_scales()
            .iter()
            .map(|per_checkpoint| self.interpolate(per_checkpoint, h))
            .collect()
    }

    /// The half-width scale of each level at the last step.
    #[cfg(test)]
    fn scales(&self) -> Vec<f64> {
        self.scales_at(self.checkpoints.last().copied().unwrap_or(0))
    }

    /// `scales` (one per checkpoint) at step `h`, linear in the logs of the scale and of
    /// the steps ahead.
    fn interpolate(&self, scales: &[f64], h: usize) -> f64 {
        let cps = &self.checkpoints;
        let after = cps.partition_point(|&c| c < h);
        if after == 0 {
            return scales[0];
        }
        if after == cps.len() {
            return scales[cps.len() - 1];
        }
        let (a, b) = (cps[after - 1], cps[after]);
        let x = |s: usize| ((s + 1) as f64).ln();
        let w = (x(h) - x(a)) / (x(b) - x(a));
        (scales[after - 1].ln() * (1.0 - w) + scales[after].ln() * w).exp()
    }

    /// Scores every remembered checkpoint whose time has come by grid step `now`, reading
    /// the actual value of a grid step from `actual` (None: not known, skipped).
    pub fn observe(&mut self, now: i64, actual: impl Fn(i64) -> Option<f64>) {
        for p in &mut self.pending {
            while let Some(&h) = self.checkpoints.get(p.scored) {
                let at = p.end + h as i64 + 1;
                if at > now {
                    break;
                }
                let (point, bounds) = &p.at[p.scored];
                if let Some(v) = actual(at).filter(|v| v.is_finite()) {
                    for (l, &b) in bounds.iter().enumerate() {
                        if let Some(e) = normalised(v, *point, b) {
                            let kept = &mut self.errors[l][p.scored];
                            if kept.len() == KEPT {
                                kept.pop_front();
                            }
                            kept.push_back(e);
                        }
                    }
                }
                p.scored += 1;
            }
        }
        let all = self.checkpoints.len();
        self.pending.retain(|p| p.scored < all);
    }

    /// Remembers `forecast` (its window ending at grid step `end`, its intervals the
    /// model's own) to be scored as its checkpoints come true, then scales its intervals
    /// around its point, step by step. Returns each level's scale at the last step.
    pub fn apply(&mut self, forecast: &mut Forecast, end: i64) -> Vec<f64> {
        let at = self
            .checkpoints
            .iter()
            .map(|&h| {
                let point = forecast.point.get(h).copied().unwrap_or(f64::NAN);
                let bounds = forecast
                    .intervals
                    .iter()
                    .map(|iv| match (iv.lower.get(h), iv.upper.get(h)) {
                        (Some(&l), Some(&u)) => (l, u),
                        _ => (f64::NAN, f64::NAN),
                    })
                    .collect();
                (point, bounds)
            })
            .collect();
        if self.pending.len() < MAX_PENDING {
            self.pending.push_back(Pending { end, scored: 0, at });
        }
        let scales = self.checkpoint_scales();
        for h in 0..forecast.point.len() {
            let p = forecast.point[h];
            for (per_checkpoint, iv) in scales.iter().zip(&mut forecast.intervals) {
                let scale = self.interpolate(per_checkpoint, h);
                iv.lower[h] = p - scale * (p - iv.lower[h]);
                iv.upper[h] = p + scale * (iv.upper[h] - p);
            }
        }
        // The last step is the last checkpoint.
        scales
            .iter()
            .map(|s| s.last().copied().unwrap_or(1.0))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::predict::model::Interval;

    /// A forecast of `steps` steps at 10 with an 80 % interval of ±1 at every step.
    fn flat(steps: usize) -> Forecast {
        Forecast {
            model: "test".into(),
            period: None,
            fit_ms: 0.0,
            point: vec![10.0; steps],
            intervals: vec![Interval {
                level: 0.8,
                lower: vec![9.0; steps],
                upper: vec![11.0; steps],
            }],
            backtest: Vec::new(),
        }
    }

    /// Refits every `every` steps for `refits` refits over a series given by `actual`;
    /// returns the calibration.
    fn run(steps: usize, every: i64, refits: i64, actual: impl Fn(i64) -> f64) -> Calibration {
        let mut c = Calibration::new(&[0.8], steps);
        for r in 0..refits {
            let end = r * every;
            c.observe(end, |t| Some(actual(t)));
            c.apply(&mut flat(steps), end);
        }
        c
    }

    #[test]
    fn checkpoints_spread_from_the_first_step_to_the_last() {
        assert_eq!(checkpoints(60), vec![0, 1, 3, 5, 9, 14, 23, 37, 59]);
        assert_eq!(checkpoints(3), vec![0, 1, 2]);
        assert_eq!(checkpoints(1), vec![0]);
    }

    #[test]
    fn the_quantile_needs_enough_errors_and_takes_the_conformal_rank() {
        let e: Vec<f32> = (1..=9).map(|i| i as f32).collect();
        assert_eq!(quantile(e.iter(), 0.8), Some(8.0)); // ceil(10 × 0.8) = 8th
        assert_eq!(quantile(e.iter(), 0.95), None); // the 10th of 9
        assert_eq!(normalised(12.0, 10.0, (9.0, 14.0)), Some(0.5));
        assert_eq!(normalised(8.0, 10.0, (9.0, 14.0)), Some(2.0));
        assert_eq!(normalised(8.0, 10.0, (10.0, 10.0)), None);
    }

    #[test]
    fn widens_after_misses_and_narrows_after_hits() {
        let fresh = run(6, 6, 3, |_| 20.0);
        assert_eq!(fresh.scales(), vec![1.0], "too few errors: the model's own");
        let wide = run(6, 6, 40, |_| 20.0); // 10 above the point: 10 half-widths
        assert!(
            (wide.scales()[0] - 10.0).abs() < 1e-6,
            "{:?}",
            wide.scales()
        );
        let narrow = run(6, 6, 40, |t| 10.0 + 0.1 * (t % 5) as f64);
        assert!(narrow.scales()[0] < 0.45, "{:?}", narrow.scales());
        // One miss in ten (2 half-widths out, the rest at half of one): the 80 % interval
        // is made just wide enough for the nine.
        let balanced = run(1, 1, 200, |t| if t % 10 == 0 { 12.0 } else { 10.5 });
        assert!((balanced.scales()[0] - 0.5).abs() < 1e-6, "{balanced:?}");
    }

    #[test]
    fn each_horizon_learns_its_own_width() {
        // Forecasts of 10 ± 1 refitted every 60 steps, while the series climbs 0.1 a step
        // from the forecast's start: the first steps fall inside, the far ones outside. One
        // scale for every step would widen both or neither.
        let c = run(60, 60, 60, |t| 10.0 + 0.1 * (t - 1).rem_euclid(60) as f64);
        let (near, far) = (c.scales_at(0)[0], c.scales_at(59)[0]);
        assert!(near < 0.1 && far > 5.0, "near {near}, far {far}");
        let all: Vec<f64> = (0..60).map(|h| c.scales_at(h)[0]).collect();
        assert!(all.windows(2).all(|w| w[1] >= w[0] - 1e-9), "{all:?}");
    }

    #[test]
    fn applies_the_scale_of_each_step_and_keeps_the_point() {
        let mut c = Calibration::new(&[0.8], 60);
        // Errors of 1 + k/10 half-widths at checkpoint k.
        for (k, kept) in c.errors[0].iter_mut().enumerate() {
            kept.extend(std::iter::repeat_n(1.0 + k as f32 / 10.0, MIN_OWN));
        }
        let mut f = flat(60);
        c.apply(&mut f, 0);
        assert_eq!(f.point, vec![10.0; 60]);
        let half = |h: usize| f.intervals[0].upper[h] - 10.0;
        assert!((half(0) - 1.0).abs() < 1e-12);
        let last = (c.checkpoints.len() - 1) as f64;
        assert!((half(59) - (1.0 + last / 10.0)).abs() < 1e-6);
        assert!(half(30) > half(10) && half(10) > half(0));
    }

    #[test]
    fn remembers_a_bounded_number_of_forecasts_and_still_scores_the_far_steps() {
        // A refit every step with a 600-step horizon: at most `MAX_PENDING` are kept, and
        // those live to be scored at step 600.
        let mut c = Calibration::new(&[0.8], 600);
        for r in 0..700 {
            c.observe(r, |_| Some(10.0));
            c.apply(&mut flat(600), r);
            assert!(c.pending.len() <= MAX_PENDING);
        }
        assert_eq!(c.pending.len(), MAX_PENDING);
        let last = c.errors[0].len() - 1;
        assert_eq!(c.checkpoints[last], 599);
        assert!(
            !c.errors[0][last].is_empty(),
            "the last step was never scored"
        );
    }
}
