//! The predictor's logic, without the actor: which series are forecast, the fit jobs built
//! from a window of points, the fits themselves (run off the actor's thread), the
//! predictions kept for the API, failure back-off, and the forecast series put on the
//! stream. Time comes in as arguments.

use serde::Serialize;
use std::collections::HashMap;

use super::calibration::Calibration;
use super::model::{self, describe_span, exhaustion, SeriesGrid};
use crate::model::catalog;
use crate::model::selector::Selector;
use crate::model::series::{derived_series, BuildPrehashed, Sample, Series, SeriesKey};

/// Forecast series: the watched series' labels plus `metric`, `horizon` and `bound`.
pub const FORECAST_METRIC: &str = catalog::FORECAST;
/// Seconds until a bounded resource runs out: labels plus `metric`, `resource`, `bound`.
pub const EXHAUSTION_METRIC: &str = catalog::EXHAUSTION_SECONDS;

/// Empty steps at the end of a window after which a series counts as silent.
const STALE_STEPS: usize = 3;

/// A bounded resource: `metric` runs out when it reaches `limit_metric` (the series with
/// the same labels).
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub metric: String,
    pub limit_metric: String,
    pub resource: String,
}

/// What the engine needs from the configuration.
#[derive(Debug, Clone)]
pub struct PredictorSettings {
    pub watch: Vec<Selector>,
    /// Points fitted: the window's length and grid step.
    pub window_ms: i64,
    pub step_ms: i64,
    /// Horizons put on the stream (multiples of the step); the API shows every step up to
    /// the longest.
    pub horizons_s: Vec<u64>,
    /// Interval levels, e.g. 0.8 and 0.95.
    pub levels: Vec<f64>,
    pub limits: Vec<Limit>,
    /// Series forecast at most; further series are counted.
    pub max_series: usize,
    /// A fit slower than this is discarded and reported.
    pub fit_timeout_ms: f64,
    /// Refits a failed series waits before it is tried again.
    pub failure_backoff_cycles: u32,
}

impl PredictorSettings {
    fn horizon_steps(&self) -> usize {
        let longest = self.horizons_s.iter().copied().max().unwrap_or(0) as i64 * 1000;
        (longest / self.step_ms).max(1) as usize
    }
}

/// One series to fit, with everything the fit needs (sent to a blocking thread).
#[derive(Debug, Clone)]
pub struct FitJob {
    pub series: Series,
    /// The grid, oldest first; its last step ends at `end_ms`.
    pub values: Vec<f64>,
    pub end_ms: i64,
    pub is_rate: bool,
    /// The limit and the resource's name, for bounded resources.
    pub limit: Option<(f64, String)>,
}

/// A fit's outcome.
#[derive(Debug, Clone)]
pub struct FitOutcome {
    pub job: FitJob,
    pub result: Result<model::Forecast, String>,
}

/// One step of a forecast.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ForecastPoint {
    /// The step's time, Unix ms.
    #[serde(rename = "at_ms")]
    pub t_ms: i64,
    /// The forecast value.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub value: f64,
    /// `[lower, upper]` per level, in the order of `levels`.
    #[serde(serialize_with = "crate::messages::figures::six_pairs")]
    #[schema(value_type = Vec<Vec<f64>>)]
    pub intervals: Vec<[f64; 2]>,
}

/// When a resource runs out, as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ExhaustionView {
    /// The resource's name (`[[predictor.limits]]`), e.g. `memory`.
    pub resource: String,
    /// The value at which it runs out.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub limit: f64,
    /// Seconds until the forecast reaches the limit.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub seconds: f64,
    /// Seconds until the first level's upper bound reaches it.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub earliest_seconds: f64,
    /// Seconds until the first level's lower bound reaches it.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub latest_seconds: f64,
    /// e.g. "GPU 3 runs out of memory in 7–12 minutes".
    pub text: String,
}

/// The newest forecast of one series.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Prediction {
    /// The forecast series.
    #[schema(value_type = crate::model::series::SeriesShape)]
    pub series: Series,
    /// What was fitted, e.g. `AutoETS(A,Ad,N)` or `MSTL(30)+AutoETS(A,N,N)` (`backtest` says
    /// which method each band of horizons ships).
    pub model: String,
    /// The season found, seconds (null: none).
    pub period_s: Option<f64>,
    /// How long the fit took.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub fit_ms: f64,
    /// When it was fitted, Unix ms.
    pub fitted_at_ms: i64,
    /// Seconds between forecast steps.
    pub step_s: f64,
    /// Whether the values are a counter's per-second rate.
    pub is_rate: bool,
    /// The intervals' levels, e.g. `[0.8, 0.95]`.
    pub levels: Vec<f64>,
    /// How much the model's intervals were widened (> 1) or narrowed (< 1) at the last
    /// step, per level, by this series' calibration (each step has its own factor).
    #[serde(serialize_with = "crate::messages::figures::six_vec")]
    pub interval_scale: Vec<f64>,
    /// The forecast, one point per step.
    pub forecast: Vec<ForecastPoint>,
    /// When the resource runs out, for a bounded resource heading to its limit.
    pub exhaustion: Option<ExhaustionView>,
    /// Why this method: per band of horizons (in steps), its backtest error on the series'
    /// own window beside the naive forecast's (see `predict::select`).
    pub backtest: Vec<super::model::BacktestBand>,
}

/// A series whose last fit failed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FitFailure {
    /// The series.
    #[schema(value_type = crate::model::series::SeriesShape)]
    pub series: Series,
    /// When the fit failed, Unix ms.
    pub at_ms: i64,
    /// Why.
    pub error: String,
    /// Refit cycles skipped before the next try.
    pub retry_in_cycles: u32,
}

/// Filters of the prediction list.
#[derive(Debug, Clone, Default)]
pub struct PredictionFilter {
    pub matchers: Selector,
    /// Keep the forecast up to this many seconds ahead.
    pub horizon_s: Option<u64>,
}

/// Counts for stats and `/metrics`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PredictorCounts {
    pub cycles: u64,
    /// Cycles not started because the previous one was still running.
    pub cycles_skipped: u64,
    pub fits: u64,
    pub fit_failures: u64,
    pub fit_timeouts: u64,
    /// Series not forecast because `max_series` was reached.
    pub series_refused: u64,
    /// Times a new series was passed over because its window held too few points yet.
    pub series_waiting: u64,
    /// Time spent fitting in the last cycle, ms.
    pub last_cycle_fit_ms: f64,
}

/// The engine.
pub struct PredictorEngine {
    settings: PredictorSettings,
    predictions: HashMap<Series, Prediction, BuildPrehashed>,
    failures: HashMap<Series, FitFailure, BuildPrehashed>,
    /// Exhaustion series written last cycle, to mark stale when they stop.
    exhausting: HashMap<Series, Vec<Series>, BuildPrehashed>,
    calibration: HashMap<Series, Calibration, BuildPrehashed>,
    counts: PredictorCounts,
}

impl PredictorEngine {
    pub fn new(settings: PredictorSettings) -> Self {
        PredictorEngine {
            settings,
            predictions: HashMap::default(),
            failures: HashMap::default(),
            exhausting: HashMap::default(),
            calibration: HashMap::default(),
            counts: PredictorCounts::default(),
        }
    }

    pub fn settings(&self) -> &PredictorSettings {
        &self.settings
    }

    pub fn counts(&self) -> PredictorCounts {
        self.counts
    }

    pub fn failures(&self) -> Vec<FitFailure> {
        self.failures.values().cloned().collect()
    }

    pub fn series_forecast(&self) -> usize {
        self.predictions.len()
    }

    pub fn cycle_skipped(&mut self) {
        self.counts.cycles_skipped += 1;
    }

    /// Buckets of the grid a window is resampled onto.
    pub fn buckets(&self) -> usize {
        (self.settings.window_ms / self.settings.step_ms) as usize
    }

    /// [`PredictorEngine::jobs_from_grids`] from the windows' raw points (what the unit
    /// tests give it; the actor reads grids).
    #[cfg(test)]
    pub fn jobs(
        &mut self,
        windows: Vec<crate::store::window::SeriesPoints>,
        limits: &[(Series, f64)],
        now_ms: i64,
    ) -> Vec<FitJob> {
        let (step_ms, buckets) = (self.settings.step_ms, self.buckets());
        let grids = windows
            .into_iter()
            .map(|w| SeriesGrid::resample(w.series, &w.points, now_ms, step_ms, buckets))
            .collect();
        self.jobs_from_grids(grids, limits, now_ms)
    }

    /// Builds this cycle's jobs from the windows on the grid (`SeriesGrid::read`) and the
    /// limits' newest values. Series in back-off are skipped (and their back-off counted
    /// down).
    pub fn jobs_from_grids(
        &mut self,
        windows: Vec<SeriesGrid>,
        limits: &[(Series, f64)],
        now_ms: i64,
    ) -> Vec<FitJob> {
        self.counts.cycles += 1;
        // A series with no point left in its window is gone: so are its forecast, its
        // calibration and its failure.
        let present: std::collections::HashSet<&Series> =
            windows.iter().map(|w| &w.series).collect();
        self.predictions.retain(|s, _| present.contains(s));
        self.calibration.retain(|s, _| present.contains(s));
        self.failures.retain(|s, _| present.contains(s));
        let limit_of: HashMap<LimitKey, f64> =
            limits.iter().map(|(s, v)| (limit_key(s), *v)).collect();
        let mut jobs = Vec::new();
        for w in windows {
            let name = w.series.name();
            if name == FORECAST_METRIC || name == EXHAUSTION_METRIC {
                continue;
            }
            if let Some(f) = self.failures.get_mut(&w.series) {
                if f.retry_in_cycles > 0 {
                    f.retry_in_cycles -= 1;
                    continue;
                }
            }
            if !self.predictions.contains_key(&w.series)
                && jobs.len() + self.predictions.len() >= self.settings.max_series
            {
                self.counts.series_refused += 1;
                continue;
            }
            let is_rate = catalog::is_cumulative(name);
            let grid = w.grid;
            if grid.trailing_gap > STALE_STEPS {
                // Silent for a while: its forecast and calibration go; it is not a failure.
                self.predictions.remove(&w.series);
                self.calibration.remove(&w.series);
                continue;
            }
            if grid.filled < model::MIN_POINTS && !self.predictions.contains_key(&w.series) {
                // A new series: not a failure, it waits for its window to fill.
                self.counts.series_waiting += 1;
                continue;
            }
            let values = grid.values;
            let limit = self
                .settings
                .limits
                .iter()
                .find(|l| l.metric == name)
                .and_then(|l| {
                    let key = (l.limit_metric.as_str(), limit_key(&w.series).1);
                    limit_of.get(&key).map(|v| (*v, l.resource.clone()))
                });
            jobs.push(FitJob {
                series: w.series,
                values,
                end_ms: now_ms,
                is_rate,
                limit,
            });
        }
        jobs
    }

    /// Runs the fits (call off the actor's thread).
    pub fn fit_all(jobs: Vec<FitJob>, horizon_steps: usize, levels: &[f64]) -> Vec<FitOutcome> {
        jobs.into_iter()
            .map(|job| {
                let result = super::select::forecast(&job.values, horizon_steps, levels);
                FitOutcome { job, result }
            })
            .collect()
    }

    pub fn horizon_steps(&self) -> usize {
        self.settings.horizon_steps()
    }

    /// Takes a cycle's outcomes; returns the samples to put on the stream.
    pub fn absorb(&mut self, outcomes: Vec<FitOutcome>, now_ms: i64) -> Vec<Sample> {
        let mut out = Vec::new();
        let step_s = self.settings.step_ms as f64 / 1000.0;
        let mut cycle_ms = 0.0;
        for FitOutcome { job, result } in outcomes {
            let result = result.and_then(|f| {
                if f.fit_ms > self.settings.fit_timeout_ms {
                    self.counts.fit_timeouts += 1;
                    Err(format!(
                        "fit took {:.0} ms, over fit_timeout_ms {:.0}",
                        f.fit_ms, self.settings.fit_timeout_ms
                    ))
                } else {
                    Ok(f)
                }
            });
            match result {
                Ok(mut f) => {
                    self.counts.fits += 1;
                    cycle_ms += f.fit_ms;
                    self.failures.remove(&job.series);
                    let interval_scale = self.calibrate(&job, &mut f);
                    // One story: the time to exhaustion is read off the shipped forecast
                    // and its (calibrated) bands, as plotted.
                    let exhaustion = job.limit.as_ref().and_then(|(limit, resource)| {
                        let e = exhaustion(&f, *job.values.last()?, *limit, step_s)?;
                        Some(ExhaustionView {
                            resource: resource.clone(),
                            limit: *limit,
                            seconds: e.seconds,
                            earliest_seconds: e.earliest_seconds,
                            latest_seconds: e.latest_seconds,
                            text: format!(
                                "{} runs out of {resource} {}",
                                who(&job.series),
                                describe_span(e.earliest_seconds, e.latest_seconds)
                            ),
                        })
                    });
                    let prediction = Prediction {
                        model: f.model.clone(),
                        period_s: f.period.map(|p| p as f64 * step_s),
                        fit_ms: f.fit_ms,
                        fitted_at_ms: now_ms,
                        step_s,
                        is_rate: job.is_rate,
                        levels: f.intervals.iter().map(|i| i.level).collect(),
                        interval_scale,
                        forecast: (0..f.point.len())
                            .map(|h| ForecastPoint {
                                t_ms: job.end_ms + (h as i64 + 1) * self.settings.step_ms,
                                value: f.point[h],
                                intervals: f
                                    .intervals
                                    .iter()
                                    .map(|i| [i.lower[h], i.upper[h]])
                                    .collect(),
                            })
                            .collect(),
                        exhaustion,
                        backtest: f.backtest.clone(),
                        series: job.series.clone(),
                    };
                    self.samples_for(&prediction, now_ms, &mut out);
                    self.predictions.insert(job.series, prediction);
                }
                Err(error) => {
                    self.counts.fit_failures += 1;
                    let backoff = self.settings.failure_backoff_cycles;
                    self.failures.insert(
                        job.series.clone(),
                        FitFailure {
                            series: job.series.clone(),
                            at_ms: now_ms,
                            error,
                            retry_in_cycles: backoff,
                        },
                    );
                    // An old forecast is not kept as if it were current.
                    self.predictions.remove(&job.series);
                    self.stale_exhaustion(&job.series, now_ms, &mut out);
                }
            }
        }
        self.counts.last_cycle_fit_ms = cycle_ms;
        out
    }

    /// Scores the series' earlier forecasts against the steps of this window that have come
    /// true, then widens or narrows this forecast's intervals step by step accordingly.
    /// Returns the scale of each level at the last step.
    fn calibrate(&mut self, job: &FitJob, f: &mut model::Forecast) -> Vec<f64> {
        let step = self.settings.step_ms;
        let levels: Vec<f64> = f.intervals.iter().map(|i| i.level).collect();
        let calibration = self
            .calibration
            .entry(job.series.clone())
            .or_insert_with(|| Calibration::new(&levels, f.point.len()));
        // The window's last step, counted in steps (to the nearest: refits are not aligned).
        let end = (job.end_ms + step / 2).div_euclid(step);
        calibration.observe(end, |t| {
            let back = usize::try_from(end - t).ok()?;
            let i = job.values.len().checked_sub(back + 1)?;
            Some(job.values[i])
        });
        calibration.apply(f, end)
    }

    /// Forecast series at each horizon, and the exhaustion series (or their staleness).
    fn samples_for(&mut self, p: &Prediction, now_ms: i64, out: &mut Vec<Sample>) {
        let step_s = p.step_s;
        for h_s in &self.settings.horizons_s {
            let idx = ((*h_s as f64 / step_s).round() as usize).saturating_sub(1);
            let Some(point) = p.forecast.get(idx) else {
                continue;
            };
            let horizon = format!("{h_s}s");
            let mut push = |bound: String, v: f64| {
                out.push(Sample::new(
                    derived_series(
                        &p.series,
                        FORECAST_METRIC,
                        &[("horizon", &horizon), ("bound", &bound)],
                    ),
                    now_ms,
                    v,
                ))
            };
            push("point".into(), point.value);
            for (level, [lo, hi]) in p.levels.iter().zip(&point.intervals) {
                let pct = (level * 100.0).round() as u32;
                push(format!("lower_{pct}"), *lo);
                push(format!("upper_{pct}"), *hi);
            }
        }
        match &p.exhaustion {
            Some(e) => {
                let mut written = Vec::new();
                for (bound, v) in [
                    ("estimate", e.seconds),
                    ("earliest", e.earliest_seconds),
                    ("latest", e.latest_seconds),
                ] {
                    let s = derived_series(
                        &p.series,
                        EXHAUSTION_METRIC,
                        &[("resource", &e.resource), ("bound", bound)],
                    );
                    written.push(s.clone());
                    out.push(Sample::new(s, now_ms, v));
                }
                self.exhausting.insert(p.series.clone(), written);
            }
            None => self.stale_exhaustion(&p.series, now_ms, out),
        }
    }

    fn stale_exhaustion(&mut self, series: &Series, now_ms: i64, out: &mut Vec<Sample>) {
        if let Some(written) = self.exhausting.remove(series) {
            for s in written {
                out.push(Sample::new(s, now_ms, crate::promql::stale_nan()));
            }
        }
    }

    /// Predictions, sorted by series, trimmed to the horizon asked for.
    pub fn list(&self, filter: &PredictionFilter) -> Vec<Prediction> {
        let mut out: Vec<Prediction> = self
            .predictions
            .values()
            .filter(|p| filter.matchers.matches(&p.series))
            .map(|p| {
                let mut p = p.clone();
                if let Some(h) = filter.horizon_s {
                    let keep = ((h as f64 / p.step_s).floor() as usize).max(1);
                    p.forecast.truncate(keep);
                }
                p
            })
            .collect();
        out.sort_by(|a, b| a.series.cmp(&b.series));
        out
    }
}

/// Name and labels, for matching a series with its limit.
type LimitKey<'a> = (&'a str, Vec<(&'a str, &'a str)>);

fn limit_key(s: &SeriesKey) -> LimitKey<'_> {
    (
        s.name(),
        s.labels().iter().map(|(k, v)| (&**k, &**v)).collect(),
    )
}

/// "GPU 3" (on a host) or the series' name, for sentences.
fn who(series: &SeriesKey) -> String {
    match (series.label("gpu"), series.label("Hostname")) {
        (Some(g), Some(h)) => format!("GPU {g} on {h}"),
        (Some(g), None) => format!("GPU {g}"),
        _ => series.to_string(),
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
