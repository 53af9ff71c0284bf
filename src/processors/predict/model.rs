//! Forecasting one series, as plain functions: resampling a window onto an even grid, the
//! model choice (MSTL + AutoETS when a season is detected, AutoETS otherwise), the forecast
//! with its intervals, a robust linear trend (taken out before looking for a season), and the
//! time until the forecast reaches a limit. The predictor actor and
//! `examples/forecast_accuracy.rs` both call these.

use std::time::Instant;

use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::seasons::PeriodogramDetector;
use augurs::{Fit, Predict};
use serde::Serialize;

use crate::model::selector::Selector;
use crate::store::messages::ReadStore;

/// Fewest grid points a model is fitted on.
pub const MIN_POINTS: usize = 30;
/// Points used for the robust trend (Theil–Sen over all pairs of these).
const TREND_POINTS: usize = 64;

/// A fitted model's forecast.
#[derive(Debug, Clone, Serialize)]
pub struct Forecast {
    /// What was fitted, e.g. `AutoETS(A,Ad,N)` or `MSTL(30)+AutoETS(A,N,N)`.
    pub model: String,
    /// Detected season, in grid steps.
    pub period: Option<usize>,
    /// Fit and forecast time, ms.
    pub fit_ms: f64,
    /// Point forecast, one per step ahead.
    pub point: Vec<f64>,
    /// For each interval level (as asked), the lower and upper bounds per step ahead.
    pub intervals: Vec<Interval>,
    /// How the shipped method was chosen, per band of horizons (see the `select` module);
    /// empty for a constant.
    pub backtest: Vec<BacktestBand>,
}

/// Bounds of one prediction-interval level.
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    pub level: f64,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
}

/// A window on an even grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// One value per step, oldest first; the last step ends at the window's end.
    pub values: Vec<f64>,
    /// Steps that held at least one point (the others carry the previous value).
    pub filled: usize,
    /// Empty steps at the end: the series has been silent that long.
    pub trailing_gap: usize,
}

/// How one band of horizons was decided: the backtest's mean absolute error of the shipped
/// method and of the naive forecast, over the band's steps.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct BacktestBand {
    /// Steps ahead the band ends at (it starts after the previous band).
    pub to_step: usize,
    /// The method shipped for these steps.
    pub model: String,
    /// The shipped method's mean absolute error in the backtest.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub mae: f64,
    /// The naive forecast's.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub naive_mae: f64,
}

/// One series' window on the grid, resampled where the window is (see [`SeriesGrid::read`]).
#[derive(Debug, Clone)]
pub struct SeriesGrid {
    pub series: crate::model::series::Series,
    pub grid: Grid,
}

impl SeriesGrid {
    /// [`resample`] of one series' points, as a rate when the series is a counter.
    pub fn resample(
        series: crate::model::series::Series,
        points: &[(i64, f64)],
        end_ms: i64,
        step_ms: i64,
        buckets: usize,
    ) -> Self {
        let counter = crate::model::catalog::is_cumulative(series.name());
        SeriesGrid {
            grid: resample(points, end_ms, step_ms, buckets, counter),
            series,
        }
    }

    /// The predictor's read of the window store: matching series' points in
    /// `[start_ms, end_ms]`, put onto `buckets` steps of `step_ms` ending at `end_ms` where
    /// they are (counters as rates), sorted by series. Copying the windows out instead took
    /// 29 MB a refit (30 minutes of 1 000 series at 1 s), a copy that grew as they filled.
    pub fn read(
        selector: Selector,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        buckets: usize,
    ) -> ReadStore<Vec<SeriesGrid>> {
        ReadStore(Box::new(move |store| {
            let mut grids: Vec<SeriesGrid> = store
                .select_slices(&selector, start_ms, end_ms)
                .into_iter()
                .map(|(series, points)| {
                    SeriesGrid::resample(series.clone(), points, end_ms, step_ms, buckets)
                })
                .collect();
            grids.sort_by(|a, b| a.series.cmp(&b.series));
            grids
        }))
    }
}

/// Puts `points` (time-ordered) onto `buckets` steps of `step_ms` ending at `end_ms`: the
/// mean of each step's points, carried forward over empty steps. For a counter, each step
/// holds the per-second rate over it (a reset counts from zero). Leading empty steps are
/// dropped.
pub fn resample(
    points: &[(i64, f64)],
    end_ms: i64,
    step_ms: i64,
    buckets: usize,
    counter: bool,
) -> Grid {
    let start_ms = end_ms - step_ms * buckets as i64;
    let mut sums = vec![0.0; buckets];
    let mut counts = vec![0u32; buckets];
    let mut last: Option<(i64, f64)> = None;
    for &(t, v) in points {
        if !v.is_finite() || t <= start_ms - step_ms || t > end_ms {
            continue;
        }
        let value = if counter {
            let Some((pt, pv)) = last.replace((t, v)) else {
                continue;
            };
            let delta = if v < pv { v } else { v - pv };
            delta * 1000.0 / (t - pt).max(1) as f64
        } else {
            v
        };
        if t <= start_ms {
            continue;
        }
        let i = (((t - start_ms - 1) / step_ms) as usize).min(buckets - 1);
        sums[i] += value;
        counts[i] += 1;
    }
    let mut values = Vec::with_capacity(buckets);
    let mut carry = None;
    let (mut filled, mut trailing_gap) = (0, 0);
    for (s, c) in sums.iter().zip(&counts) {
        if *c > 0 {
            carry = Some(s / *c as f64);
            filled += 1;
            trailing_gap = 0;
        } else {
            trailing_gap += 1;
        }
        if let Some(v) = carry {
            values.push(v);
        }
    }
    Grid {
        values,
        filled,
        trailing_gap,
    }
}

/// Share of variance a season must explain (after the trend is removed) to be used:
/// Hyndman's seasonal strength, `1 - Var(remainder) / Var(season + remainder)`.
pub const MIN_SEASONAL_STRENGTH: f64 = 0.6;

/// The strongest season in `values`, in steps (the periodogram's peak, refined to the
/// nearby period that explains most): at least two cycles in the window, and explaining at least `MIN_SEASONAL_STRENGTH` of the detrended variance.
pub fn detect_period(values: &[f64]) -> Option<usize> {
    let n = values.len();
    if n < MIN_POINTS {
        return None;
    }
    let trend = robust_trend(values)?;
    let start = trend.level - trend.slope * (n - 1) as f64;
    let detrended: Vec<f64> = values
        .iter()
        .enumerate()
        .map(|(i, v)| v - (start + trend.slope * i as f64))
        .collect();
    let detector = PeriodogramDetector::builder()
        .min_period(4)
        .max_period((n / 2) as u32)
        .build();
    let best = detector
        .periodogram(&detrended)
        .peaks(0.5)
        .filter(|p| p.period >= 4 && 2 * p.period as usize <= n)
        .max_by(|a, b| a.power.total_cmp(&b.power))?;
    // The periodogram's bins are coarse: settle on the nearby period that explains most.
    let around =
        (best.period as usize).saturating_sub(3).max(4)..=(best.period as usize + 3).min(n / 2);
    let (strength, period) = around
        .map(|p| (seasonal_strength(&detrended, p), p))
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    (strength >= MIN_SEASONAL_STRENGTH).then_some(period)
}

/// `1 - Var(remainder) / Var(detrended)`, the season being the mean of each phase.
fn seasonal_strength(detrended: &[f64], period: usize) -> f64 {
    let mut sums = vec![0.0; period];
    let mut counts = vec![0usize; period];
    for (i, v) in detrended.iter().enumerate() {
        sums[i % period] += v;
        counts[i % period] += 1;
    }
    let var = |xs: &mut dyn Iterator<Item = f64>| {
        let v: Vec<f64> = xs.collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64
    };
    let total = var(&mut detrended.iter().copied());
    if total <= 0.0 {
        return 0.0;
    }
    let remainder = var(&mut detrended
        .iter()
        .enumerate()
        .map(|(i, v)| v - sums[i % period] / counts[i % period] as f64));
    (1.0 - remainder / total).max(0.0)
}

/// Fits the model (MSTL + AutoETS with a season of `period` steps, AutoETS without) on
/// `values` and forecasts `horizon` steps with intervals at `levels`.
pub fn fit(
    values: &[f64],
    period: Option<usize>,
    horizon: usize,
    levels: &[f64],
) -> Result<Forecast, String> {
    if values.len() < MIN_POINTS {
        return Err(format!(
            "{} points in the window, {MIN_POINTS} needed",
            values.len()
        ));
    }
    let started = Instant::now();
    let fitted = match period {
        Some(p) => Fitted::Mstl(
            MSTLModel::new(vec![p], AutoETS::non_seasonal().into_trend_model())
                .fit(values)
                .map_err(|e| e.to_string())?,
            p,
        ),
        None => Fitted::Ets(
            AutoETS::non_seasonal()
                .fit(values)
                .map_err(|e| e.to_string())?,
        ),
    };
    let model = fitted.name();
    let predict = |level: f64| fitted.predict(horizon, level);
    let mut point = Vec::new();
    let mut intervals = Vec::new();
    for level in levels {
        let f = predict(*level)?;
        let iv = f
            .intervals
            .ok_or_else(|| format!("{model} gave no {level} interval"))?;
        if iv
            .lower
            .iter()
            .chain(&iv.upper)
            .chain(&f.point)
            .any(|v| !v.is_finite())
        {
            return Err(format!("{model} forecast is not finite"));
        }
        point = f.point;
        intervals.push(Interval {
            level: *level,
            lower: iv.lower,
            upper: iv.upper,
        });
    }
    Ok(Forecast {
        model,
        period,
        fit_ms: started.elapsed().as_secs_f64() * 1e3,
        point,
        intervals,
        backtest: Vec::new(),
    })
}

/// A fitted model of either kind.
enum Fitted {
    Mstl(augurs::mstl::FittedMSTLModel, usize),
    Ets(augurs::ets::FittedAutoETS),
}

impl Fitted {
    fn name(&self) -> String {
        match self {
            Fitted::Mstl(_, p) => format!("MSTL({p})+AutoETS"),
            Fitted::Ets(f) => format!("AutoETS({})", f.model().model_type()),
        }
    }

    fn predict(&self, horizon: usize, level: f64) -> Result<augurs::Forecast, String> {
        match self {
            Fitted::Mstl(f, _) => f.predict(horizon, level).map_err(|e| e.to_string()),
            Fitted::Ets(f) => f.predict(horizon, level).map_err(|e| e.to_string()),
        }
    }
}

/// A robust straight line through a window, taken out before looking for a season: the
/// Theil–Sen slope (the median of pairwise slopes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Trend {
    /// Change per step.
    pub slope: f64,
    /// The line's value at the newest point.
    pub level: f64,
}

/// Fits a [`Trend`] to an even grid (oldest first).
pub fn robust_trend(values: &[f64]) -> Option<Trend> {
    let n = values.len();
    if n < 8 {
        return None;
    }
    let take = n.min(TREND_POINTS);
    let idx: Vec<usize> = (0..take).map(|i| i * (n - 1) / (take - 1)).collect();
    let mut slopes = Vec::with_capacity(take * take / 2);
    for (a, &i) in idx.iter().enumerate() {
        for &j in &idx[a + 1..] {
            slopes.push((values[j] - values[i]) / (j - i) as f64);
        }
    }
    slopes.sort_by(f64::total_cmp);
    let slope = slopes[slopes.len() / 2];
    // The line through the median of (value - slope * x).
    let mut offsets: Vec<f64> = idx.iter().map(|&i| values[i] - slope * i as f64).collect();
    offsets.sort_by(f64::total_cmp);
    let intercept = offsets[offsets.len() / 2];
    Some(Trend {
        slope,
        level: intercept + slope * (n - 1) as f64,
    })
}

/// When a growing series reaches its limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Exhaustion {
    /// Estimated seconds from the newest point.
    pub seconds: f64,
    /// Where the upper and the lower bound of the first interval level reach the limit.
    pub earliest_seconds: f64,
    pub latest_seconds: f64,
    pub limit: f64,
}

/// Share of a forecast's steps, at its end, whose slope carries it on past the horizon.
const END_SLOPE_SHARE: f64 = 1.0 / 3.0;

/// Steps (fractional) from the newest value `now` until `path` reaches `limit`: where it
/// crosses within the horizon, else where the line through its last steps would.
fn steps_to(now: f64, path: &[f64], limit: f64) -> Option<f64> {
    let mut before = now;
    for (k, &v) in path.iter().enumerate() {
        if v >= limit {
            let part = if v > before {
                (limit - before) / (v - before)
            } else {
                1.0
            };
            return Some(k as f64 + part.clamp(0.0, 1.0));
        }
        before = v;
    }
    let n = path.len();
    let m = ((n as f64 * END_SLOPE_SHARE) as usize).max(1);
    let slope = (path.get(n.checked_sub(1)?)? - path.get(n.checked_sub(m + 1)?)?) / m as f64;
    (slope > 0.0 && slope.is_finite()).then(|| n as f64 + (limit - path[n - 1]) / slope)
}

/// When the shipped forecast says a series reaches `limit` (one story: the sentence is read
/// off the line and bands that are plotted). The estimate is where the point forecast
/// reaches it, the range where the first interval level's upper and lower bounds do; past
/// the horizon each goes on along the line of its last third. None when the series is
/// already at the limit, when the forecast does not climb, or when even its lower bound
/// never gets there: a flat or noisy series is not running out.
pub fn exhaustion(forecast: &Forecast, now: f64, limit: f64, step_s: f64) -> Option<Exhaustion> {
    let climbs = forecast.point.last().is_some_and(|&end| end > now);
    // `now` must be below the limit (and not NaN).
    if now.partial_cmp(&limit) != Some(std::cmp::Ordering::Less) || !climbs {
        return None;
    }
    let band = forecast.intervals.first()?;
    let estimate = steps_to(now, &forecast.point, limit)?;
    let latest = steps_to(now, &band.lower, limit)?.max(estimate);
    let earliest = steps_to(now, &band.upper, limit)
        .unwrap_or(estimate)
        .min(estimate);
    Some(Exhaustion {
        seconds: estimate * step_s,
        earliest_seconds: earliest * step_s,
        latest_seconds: latest * step_s,
        limit,
    })
}

/// "in 7–12 minutes", for people.
pub fn describe_span(earliest_s: f64, latest_s: f64) -> String {
    let (unit, div) = if latest_s < 120.0 {
        ("seconds", 1.0)
    } else if latest_s < 7200.0 {
        ("minutes", 60.0)
    } else {
        ("hours", 3600.0)
    };
    let (a, b) = ((earliest_s / div).floor(), (latest_s / div).ceil());
    if a == b {
        format!("in about {a} {unit}")
    } else {
        format!("in {a}–{b} {unit}")
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
