//! Which forecast a series gets: every candidate is backtested on the series' own window
//! (fitted on all but its last steps and scored on them: the level methods from
//! `SIMPLE_BACKTEST_ORIGINS` origins, the others from `BACKTEST_ORIGINS`),
//! and for each band of horizons the baseline (seasonal naive where a season is detected,
//! naive otherwise) is shipped unless another candidate does better on that backtest.
//!
//! The candidates: the naive forecast (the last value), the seasonal naive one (the value
//! one season back, where a season is detected), the local level (the mean of the last 4 or
//! 16 values), simple exponential smoothing (a level whose weight on the newest value is
//! fitted on the window's one-step errors: naive at weight 1, a long mean near 0), the
//! seasonal mean (the mean of the same phase over the last 4 seasons), the
//! drift (the line from the window's first value to its last), the window's mean, and the
//! fitted model (AutoETS, or MSTL + AutoETS with a season; [`super::model::fit`]).
//!
//! Two kinds, two rules. The *level* methods (naive, seasonal naive, local level, smoothing,
//! seasonal mean) forecast values the series has just shown: they cannot run away, and the local
//! ones average the noise that the last value carries. One of them replaces the baseline
//! whenever its backtest error is lower. The others extrapolate (drift, model) or reach
//! back over the whole window (mean), and lose badly when the backtest misjudges them: they
//! replace the baseline only when their error is below `SWITCH_MARGIN` of its own, and the
//! two that extrapolate only when that holds from each backtest origin on its own
//! (`worst_origin_ratio`): a trend younger than the backtest is not carried on. A method
//! that loses to the baseline on its own backtest is never shipped. Among those that beat
//! it, a later candidate (longer memory, or extrapolating) takes over only when clearly
//! better (`PARSIMONY`), and in the shortest band of horizons only the level methods that
//! follow the latest values compete (`competes`).
//!
//! A level method is not shipped alone where another level method beat the baseline too:
//! the band's forecast is the mean of the two with the least backtest error (the chosen
//! one and the runner-up), and its intervals the mean of their bounds. Picking one of
//! several near-equal methods on a short backtest is partly luck, and the mean of two
//! forecasts errs less than the worse and often less than the better (forecast
//! combination; docs/perf/2026-12-04-forecast.md). An extrapolating method is shipped
//! alone: averaged with a level it would carry half its trend (a leak's exhaustion twice
//! as far off).
//!
//! The simple candidates' intervals are Gaussian: the spread of naive and drift is a random
//! walk's, growing with the square root of the steps; the window's mean has the window's
//! spread; the local level and the seasonal mean have the spread of their own h-step errors
//! inside the window; smoothing has its one-step spread widened as smoothing's own
//! (`1 + (h - 1) weight²`). The fitted model's intervals are its own. The predictor's
//! calibration ([`super::calibration`]) then corrects whichever is shipped.

use std::time::Instant;

use super::model::{detect_period, fit, BacktestBand, Forecast, Interval, MIN_POINTS};

/// Share of the window held out for the backtest (at most the horizon).
const BACKTEST_SHARE: f64 = 1.0 / 3.0;
/// Backtest origins of the fitted model: the held-out steps end the window, then end half of
/// them earlier.
const BACKTEST_ORIGINS: usize = 2;
/// Backtest origins of the level methods: every quarter of the held-out steps.
const SIMPLE_BACKTEST_ORIGINS: usize = 6;
/// An extrapolating method (drift, model) or the window's mean replaces the baseline
/// (seasonal naive, or naive) for a band of horizons only when its backtest error is below
/// this share of the baseline's: one short backtest is a noisy judge, and switching to them
/// on a near-tie lost more than it won (docs/perf). Level methods need only be better.
const SWITCH_MARGIN: f64 = 0.75;
/// A candidate that beat the baseline is replaced by a later one (longer memory, or one that
/// extrapolates) only when the later one's backtest error is this share of its own or
/// less: picking the least of many noisy backtest errors favours luck (docs/perf).
const PARSIMONY: f64 = 0.95;
/// The local levels: means of the last few values.
const LEVEL_SPANS: [usize; 2] = [4, 16];
/// Seasons the seasonal mean averages.
const SEASONAL_MEAN_SEASONS: usize = 4;

/// A forecast method.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Candidate {
    Naive,
    SeasonalNaive(usize),
    Drift,
    Mean,
    /// The mean of the last `k` values.
    Level(usize),
    /// The mean of the same phase over the last `seasons` seasons of `period` steps.
    SeasonalMean {
        period: usize,
        seasons: usize,
    },
    Model,
    /// Simple exponential smoothing, its weight fitted on the window's one-step errors.
    Smoothed,
}

impl Candidate {
    fn name(self) -> String {
        match self {
            Candidate::Naive => "naive".to_string(),
            Candidate::SeasonalNaive(p) => format!("seasonal_naive({p})"),
            Candidate::Drift => "drift".to_string(),
            Candidate::Mean => "mean".to_string(),
            Candidate::Level(k) => format!("level({k})"),
            Candidate::SeasonalMean { period, seasons } => {
                format!("seasonal_mean({period}x{seasons})")
            }
            Candidate::Model => "model".to_string(),
            Candidate::Smoothed => "smoothed".to_string(),
        }
    }

    /// Whether the method extrapolates past the values the series has shown (a trend).
    fn extrapolates(self) -> bool {
        matches!(self, Candidate::Drift | Candidate::Model)
    }

    /// Whether the method forecasts values the series has just shown (see the module doc).
    fn is_level(self) -> bool {
        matches!(
            self,
            Candidate::Naive
                | Candidate::SeasonalNaive(_)
                | Candidate::Level(_)
                | Candidate::SeasonalMean { .. }
                | Candidate::Smoothed
        )
    }
}

/// The standard normal quantile at `p` in (0, 1) (Acklam's rational approximation,
/// relative error below 1.2e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Per step, the mean absolute error over the origins (rows) of a backtest's errors.
fn mean_abs(rows: &[Vec<f64>]) -> Vec<f64> {
    let steps = rows.first().map_or(0, Vec::len);
    (0..steps)
        .map(|k| rows.iter().map(|r| r[k].abs()).sum::<f64>() / rows.len() as f64)
        .collect()
}

/// Per step, the mean absolute error of the mean of two forecasts from the same origins,
/// given each one's errors.
fn mean_abs_of_mean(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<f64> {
    let rows: Vec<Vec<f64>> = a
        .iter()
        .zip(b)
        .map(|(ra, rb)| ra.iter().zip(rb).map(|(x, y)| (x + y) / 2.0).collect())
        .collect();
    mean_abs(&rows)
}

/// A candidate's backtest error as a share of the baseline's: below 1 it did better.
fn error_ratio(err: f64, base_err: f64) -> f64 {
    if base_err > 0.0 {
        err / base_err
    } else if err > 0.0 {
        f64::INFINITY
    } else {
        1.0
    }
}

/// The largest error ratio to the baseline (rows: one per origin, the same origins) over
/// the steps `from..to`, origin by origin. An extrapolating method must beat the baseline
/// by the margin from every origin, not only on average: a line that one origin's data
/// bore out and the other's did not was, on real series, more often a level that moved
/// than a trend that lasted, and out of sample such picks lost to naive
/// (docs/perf/2026-12-04-forecast.md).
fn worst_origin_ratio(rows: &[Vec<f64>], base_rows: &[Vec<f64>], from: usize, to: usize) -> f64 {
    let err = |r: &[f64]| r[from..to].iter().map(|e| e.abs()).sum::<f64>();
    rows.iter()
        .zip(base_rows)
        .map(|(r, b)| error_ratio(err(r), err(b)))
        .fold(0.0, f64::max)
}

fn rms(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v * v, n + 1));
    if n == 0 {
        0.0
    } else {
        (sum / n as f64).sqrt()
    }
}

/// The spread of a method's own h-step errors inside the window, for h = 1..=`horizon`:
/// `at(i, h)` forecasts step `h` from the values before index `i`, which needs `needs`
/// values. Where it has no errors to go by, a random walk's spread.
fn own_spread(
    values: &[f64],
    horizon: usize,
    needs: usize,
    at: impl Fn(usize, usize) -> f64,
) -> Vec<f64> {
    let n = values.len();
    let walk = rms(values.windows(2).map(|w| w[1] - w[0]));
    (1..=horizon)
        .map(|h| {
            let origins = needs.max(1)..(n + 1).saturating_sub(h);
            let e = rms(origins.map(|i| values[i + h - 1] - at(i, h)));
            if e > 0.0 {
                e
            } else {
                walk * (h as f64).sqrt()
            }
        })
        .collect()
}

/// A simple candidate's forecast of `horizon` steps from `values`, with Gaussian intervals.
fn simple(c: Candidate, values: &[f64], horizon: usize, levels: &[f64]) -> Forecast {
    let n = values.len();
    let last = values[n - 1];
    let diffs = || values.windows(2).map(|w| w[1] - w[0]);
    let (point, spread): (Vec<f64>, Vec<f64>) = match c {
        Candidate::Naive => {
            let s = rms(diffs());
            (1..=horizon).map(|k| (last, s * (k as f64).sqrt())).unzip()
        }
        Candidate::SeasonalNaive(p) => {
            let s = rms(values.windows(p + 1).map(|w| w[p] - w[0]));
            (1..=horizon)
                .map(|k| {
                    let back = k.div_ceil(p) * p;
                    let v = values[n + k - 1 - back.min(n + k - 1)];
                    (v, s * (k.div_ceil(p) as f64).sqrt())
                })
                .unzip()
        }
        Candidate::Drift => {
            let slope = (last - values[0]) / (n - 1) as f64;
            let s = rms(diffs().map(|d| d - slope));
            (1..=horizon)
                .map(|k| {
                    let k = k as f64;
                    (last + slope * k, s * (k * (1.0 + k / n as f64)).sqrt())
                })
                .unzip()
        }
        Candidate::Level(k) => {
            let k = k.min(n);
            let mut prefix = vec![0.0; n + 1];
            for (i, v) in values.iter().enumerate() {
                prefix[i + 1] = prefix[i] + v;
            }
            let level_before = |i: usize| (prefix[i] - prefix[i - k]) / k as f64;
            let spread = own_spread(values, horizon, k, |i, _| level_before(i));
            (vec![level_before(n); horizon], spread)
        }
        Candidate::SeasonalMean { period, seasons } => {
            // The forecast of step `h` (from 1) by a window ending before index `end`.
            let at = |end: usize, h: usize| {
                let target = end + h - 1;
                let first_back = h.div_ceil(period) * period;
                let (sum, m) = (0..seasons)
                    .map(|j| first_back + j * period)
                    .filter(|back| *back <= target && target - back < end)
                    .fold((0.0, 0usize), |(s, m), back| {
                        (s + values[target - back], m + 1)
                    });
                if m == 0 {
                    values[end - 1]
                } else {
                    sum / m as f64
                }
            };
            let spread = own_spread(values, horizon, seasons * period, at);
            ((1..=horizon).map(|h| at(n, h)).collect(), spread)
        }
        Candidate::Smoothed => {
            // The weight whose one-step errors over the window are least (a grid of 20).
            let run = |alpha: f64| {
                let mut level = values[0];
                let mut sse = 0.0;
                for v in &values[1..] {
                    let e = v - level;
                    sse += e * e;
                    level += alpha * e;
                }
                (sse, level)
            };
            let (alpha, (sse, level)) = (1..=20)
                .map(|i| f64::from(i) / 20.0)
                .map(|a| (a, run(a)))
                .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
                .expect("twenty weights");
            let s = (sse / (n - 1) as f64).sqrt();
            (1..=horizon)
                .map(|k| (level, s * (1.0 + (k - 1) as f64 * alpha * alpha).sqrt()))
                .unzip()
        }
        Candidate::Mean | Candidate::Model => {
            let mean = values.iter().sum::<f64>() / n as f64;
            let s = rms(values.iter().map(|v| v - mean)) * (1.0 + 1.0 / n as f64).sqrt();
            (vec![mean; horizon], vec![s; horizon])
        }
    };
    let intervals = levels
        .iter()
        .map(|&level| {
            let z = normal_quantile(0.5 + level / 2.0);
            Interval {
                level,
                lower: point.iter().zip(&spread).map(|(p, s)| p - z * s).collect(),
                upper: point.iter().zip(&spread).map(|(p, s)| p + z * s).collect(),
            }
        })
        .collect();
    Forecast {
        model: c.name(),
        period: match c {
            Candidate::SeasonalNaive(p) | Candidate::SeasonalMean { period: p, .. } => Some(p),
            _ => None,
        },
        fit_ms: 0.0,
        point,
        intervals,
        backtest: Vec::new(),
    }
}

/// A candidate's forecast, `None` when the fitted model fails.
fn candidate(
    c: Candidate,
    values: &[f64],
    period: Option<usize>,
    horizon: usize,
    levels: &[f64],
) -> Option<Forecast> {
    match c {
        Candidate::Model => fit(
            values,
            period.filter(|p| 2 * p <= values.len()),
            horizon,
            levels,
        )
        .ok(),
        _ => Some(simple(c, values, horizon, levels)),
    }
}

/// Whether `c` competes for the band of horizons `from..to` (steps, from 0). A local level
/// averages no more values than the band reaches ahead. In the first band only the methods
/// that follow the latest values compete: there the extrapolating methods are judged from
/// two origins of a few steps each, too few to tell a trend from noise, and out of sample
/// they lost to naive at the shortest horizons (docs/perf/2026-12-04-forecast.md).
fn competes(c: Candidate, from: usize, to: usize) -> bool {
    match c {
        Candidate::Level(k) => k <= to,
        _ => from > 0 || c.is_level(),
    }
}

/// The ends of the bands of horizons a method is chosen for: the first tenth of the
/// backtest's steps, up to half, the rest.
fn bands(steps: usize) -> Vec<usize> {
    let mut ends = vec![steps.div_ceil(10), steps.div_ceil(2), steps];
    ends.dedup();
    ends
}

/// Forecasts `values` (an even grid, oldest first) `horizon` steps ahead with intervals at
/// `levels` (each in (0, 1)), by the method that did best on the window's own backtest
/// ([`best`]); a constant is itself.
pub fn forecast(values: &[f64], horizon: usize, levels: &[f64]) -> Result<Forecast, String> {
    if values.len() < MIN_POINTS {
        return Err(format!(
            "{} points in the window, {MIN_POINTS} needed",
            values.len()
        ));
    }
    let started = Instant::now();
    let flat = values.iter().all(|v| *v == values[0]);
    if flat {
        // A constant: ETS cannot fit it, and its forecast is itself with no spread.
        let point = vec![values[0]; horizon];
        return Ok(Forecast {
            model: "constant".to_string(),
            period: None,
            fit_ms: started.elapsed().as_secs_f64() * 1e3,
            intervals: levels
                .iter()
                .map(|l| Interval {
                    level: *l,
                    lower: point.clone(),
                    upper: point.clone(),
                })
                .collect(),
            point,
            backtest: Vec::new(),
        });
    }
    let period = detect_period(values);
    let mut f = best(values, period, horizon, levels)?;
    f.fit_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(f)
}

/// Backtests the candidates on `values` and forecasts `horizon` steps with the best for each
/// band of horizons (`values` is not flat and has at least `MIN_POINTS` points).
pub fn best(
    values: &[f64],
    period: Option<usize>,
    horizon: usize,
    levels: &[f64],
) -> Result<Forecast, String> {
    let n = values.len();
    let held = ((n as f64 * BACKTEST_SHARE) as usize).clamp(1, horizon);
    // Each origin leaves enough to fit on (and a season to look back on); a short window
    // still gets the latest origin, where only the simple methods can be backtested.
    // `count` origins `spacing` apart, the latest leaving `held` steps to score, as long as
    // each leaves enough to fit on (and a season to look back on).
    let min_train = super::model::MIN_POINTS.max(period.map_or(0, |p| p + 1));
    let origins_every = |count: usize, spacing: usize| -> Vec<usize> {
        (0..count)
            .map(|j| (n - held).saturating_sub(j * spacing))
            .take_while(|o| *o >= min_train)
            .collect()
    };
    let mut origins = origins_every(BACKTEST_ORIGINS, held.div_ceil(2));
    if origins.is_empty() {
        origins.push(n - held);
    }
    let train_len = *origins.last().expect("one origin at least");
    // The baseline first: the seasonal naive forecast where there is a season, else naive.
    let mut candidates = match period.filter(|p| *p < train_len) {
        Some(p) => vec![Candidate::SeasonalNaive(p), Candidate::Naive],
        None => vec![Candidate::Naive],
    };
    candidates.extend(LEVEL_SPANS.map(Candidate::Level));
    candidates.push(Candidate::Smoothed);
    if let Some(period) = period.filter(|p| 2 * p < train_len) {
        candidates.push(Candidate::SeasonalMean {
            period,
            seasons: SEASONAL_MEAN_SEASONS,
        });
    }
    candidates.extend([Candidate::Drift, Candidate::Mean, Candidate::Model]);
    // The level methods are cheap to backtest and cannot run away: from more origins (every
    // quarter of the held-out steps), a steadier judge of which level suits the series.
    // The others are judged from the latest `origins` only, where a change of regime
    // (a climb that stopped) counts most. Each is compared with the baseline from the same
    // origins.
    let simple_origins = origins_every(SIMPLE_BACKTEST_ORIGINS, held.div_ceil(4));
    let simple_origins = if simple_origins.is_empty() {
        origins.clone()
    } else {
        simple_origins
    };
    // The errors (forecast less actual) of `c` from every origin of `os`, one row per
    // origin, `None` where it cannot be backtested.
    let errors_from = |c: Candidate, os: &[usize]| -> Option<Vec<Vec<f64>>> {
        os.iter()
            .map(|&o| {
                // Only the points are scored: the simple methods skip their intervals.
                let lv = if c == Candidate::Model { levels } else { &[] };
                let f = candidate(c, &values[..o], period, held, lv)?;
                Some(
                    f.point
                        .iter()
                        .zip(&values[o..o + held])
                        .map(|(p, a)| p - a)
                        .collect(),
                )
            })
            .collect()
    };
    let origin_sets = [&simple_origins, &origins];
    let set_of = |c: Candidate| usize::from(!c.is_level());
    // Per origin set: the baseline's errors (one row per origin), its and naive's mean
    // absolute errors.
    type Reference = (Vec<Vec<f64>>, Vec<f64>, Vec<f64>);
    let reference: Vec<Reference> = origin_sets
        .iter()
        .map(|os| {
            let naive = errors_from(Candidate::Naive, os).expect("naive is always backtested");
            let base = match candidates[0] {
                Candidate::Naive => naive.clone(),
                b => errors_from(b, os).expect("the baseline is always backtested"),
            };
            let (base_mae, naive_mae) = (mean_abs(&base), mean_abs(&naive));
            (base, base_mae, naive_mae)
        })
        .collect();
    let signed: Vec<(Candidate, Vec<Vec<f64>>)> = candidates[1..]
        .iter()
        .filter_map(|&c| Some((c, errors_from(c, origin_sets[set_of(c)])?)))
        .collect();
    let errors: Vec<(Candidate, Vec<f64>)> =
        signed.iter().map(|(c, e)| (*c, mean_abs(e))).collect();
    let of = |c: Candidate| &signed.iter().find(|(s, _)| *s == c).expect("backtested").1;
    let mut shipped: Vec<(usize, Vec<Candidate>, f64, f64)> = Vec::new();
    let mut from = 0;
    for to in bands(held) {
        let mae = |e: &[f64]| e[from..to].iter().sum::<f64>() / (to - from) as f64;
        // The baseline stays unless a level method does better, or another method beats it
        // by `SWITCH_MARGIN` (see the module doc), each against the baseline from the same
        // origins; a candidate that beat it yields only to a clearly better one.
        let (_, base, naive) = &reference[0];
        let mut best = (candidates[0], 1.0, mae(base), mae(naive));
        // Every candidate that beat the baseline by its own rule, with its error ratio.
        let mut beat: Vec<(Candidate, f64)> = Vec::new();
        for (c, e) in errors.iter().filter(|(c, _)| competes(*c, from, to)) {
            let (base_rows, base, naive) = &reference[set_of(*c)];
            let err = mae(e);
            let mut ratio = error_ratio(err, mae(base));
            if c.extrapolates() {
                // Judged by its worst origin (see `worst_origin_ratio`).
                ratio = ratio.max(worst_origin_ratio(of(*c), base_rows, from, to));
            }
            let margin = if c.is_level() { 1.0 } else { SWITCH_MARGIN };
            if ratio < margin {
                beat.push((*c, ratio));
            }
            let to_beat = if best.0 == candidates[0] || !c.is_level() {
                best.1
            } else {
                best.1 * PARSIMONY
            };
            if ratio < to_beat && ratio < margin {
                best = (*c, ratio, err, mae(naive));
            }
        }
        // A level method is shipped with the runner-up among the level methods that beat the
        // baseline, as their mean (see the module doc). Both were backtested from the same
        // origins, where their mean's error is at most the mean of their errors: it beats
        // the baseline too. (Something beat the baseline whenever `beat` has an entry.)
        let partner = beat
            .iter()
            .filter(|(c, _)| *c != best.0 && c.is_level() && best.0.is_level())
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(c, _)| *c);
        match partner {
            Some(p) => {
                let err = mae(&mean_abs_of_mean(of(best.0), of(p)));
                shipped.push((to, vec![best.0, p], err, best.3));
            }
            None => shipped.push((to, vec![best.0], best.2, best.3)),
        }
        from = to;
    }

    // The shipped methods, fitted on the whole window.
    let mut forecasts: Vec<(Candidate, Forecast)> = Vec::new();
    for c in shipped.iter().flat_map(|s| &s.1) {
        if forecasts.iter().all(|(f, _)| f != c) {
            let f = candidate(*c, values, period, horizon, levels)
                .or_else(|| candidate(Candidate::Naive, values, period, horizon, levels))
                .ok_or("no forecast")?;
            forecasts.push((*c, f));
        }
    }
    let fitted = |c: &Candidate| &forecasts.iter().find(|(f, _)| f == c).expect("fitted").1;
    // Step `k` of the shipped forecast: the mean of what its band's methods say there.
    let at_step = |k: usize, of: &dyn Fn(&Forecast) -> f64| {
        let members = &shipped
            .iter()
            .find(|(to, ..)| k < *to)
            .unwrap_or(shipped.last().expect("a band"))
            .1;
        members.iter().map(|c| of(fitted(c))).sum::<f64>() / members.len() as f64
    };
    let point = (0..horizon).map(|k| at_step(k, &|f| f.point[k])).collect();
    let intervals = levels
        .iter()
        .enumerate()
        .map(|(i, &level)| Interval {
            level,
            lower: (0..horizon)
                .map(|k| at_step(k, &|f| f.intervals[i].lower[k]))
                .collect(),
            upper: (0..horizon)
                .map(|k| at_step(k, &|f| f.intervals[i].upper[k]))
                .collect(),
        })
        .collect();
    let backtest: Vec<BacktestBand> = shipped
        .iter()
        .map(|(to, members, mae, naive_mae)| {
            let names: Vec<&str> = members.iter().map(|c| fitted(c).model.as_str()).collect();
            BacktestBand {
                to_step: *to,
                model: match names.as_slice() {
                    [one] => one.to_string(),
                    _ => format!("combined({})", names.join(", ")),
                },
                mae: *mae,
                naive_mae: *naive_mae,
            }
        })
        .collect();
    let mut names: Vec<String> = Vec::new();
    for b in &backtest {
        if names.last() != Some(&b.model) {
            names.push(b.model.clone());
        }
    }
    let period = forecasts.iter().find_map(|(_, f)| f.period);
    Ok(Forecast {
        model: names.join(" then "),
        period,
        fit_ms: 0.0,
        point,
        intervals,
        backtest,
    })
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
