//! Predictor actor: every `refit_interval` it reads the watched series' windows from the
//! window store, fits them on a blocking thread (see `engine.rs` and `model.rs`), keeps the newest
//! predictions for `GET /api/phase4/predictions`, and sends the forecast and
//! time-to-exhaustion series to the window store, where rules and `/metrics` see them. A
//! cycle still running when the next is due makes that one skip (counted); failed fits back
//! off for a few cycles and show in status.

use std::time::Duration;

use actix::prelude::*;
use opentelemetry::trace::SpanKind;

use crate::messages::samples::SampleBatch;
use crate::model::selector::{MatchOp, Matcher, Selector};
use crate::processors::predict::engine::{PredictorEngine, PredictorSettings};
use crate::processors::predict::messages::ListPredictions;
use crate::processors::predict::model::SeriesGrid;
use crate::runtime::clock::Clock;
use crate::runtime::mailbox::Mailbox;
use crate::runtime::stats::{figure, ComponentState, ComponentStats, GetStats};
use crate::store::actor::WindowStoreActor;
use crate::store::messages::SelectLatest;

/// Owns the predictor engine.
pub struct Predictor {
    engine: PredictorEngine,
    /// Where the windows are read.
    window: Addr<WindowStoreActor>,
    /// Where the forecast series go.
    to_window: Mailbox<SampleBatch>,
    clock: Clock,
    refit_interval: Duration,
    /// A cycle is in flight.
    running: bool,
    /// Why the last cycle could not read its windows, if it could not.
    read_error: Option<String>,
    /// How long the last cycle's allocator trim took, and how many trims released memory.
    last_trim_ms: f64,
    trims_released: u64,
    telemetry: crate::telemetry::Telemetry,
}

impl Predictor {
    pub fn new(
        settings: PredictorSettings,
        refit_interval: Duration,
        window: Addr<WindowStoreActor>,
        to_window: Mailbox<SampleBatch>,
        clock: Clock,
    ) -> Self {
        Predictor {
            engine: PredictorEngine::new(settings),
            window,
            to_window,
            clock,
            refit_interval,
            running: false,
            read_error: None,
            last_trim_ms: 0.0,
            trims_released: 0,
            telemetry: Default::default(),
        }
    }

    /// Traces each refit cycle through `telemetry` (off by default).
    pub fn with_telemetry(mut self, telemetry: crate::telemetry::Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    fn cycle(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            self.engine.cycle_skipped();
            return;
        }
        self.running = true;
        let now = self.clock.now_ms();
        let settings = self.engine.settings().clone();
        let buckets = self.engine.buckets();
        let window = self.window.clone();
        let limit_names: Vec<String> = settings
            .limits
            .iter()
            .map(|l| regex::escape(&l.limit_metric))
            .collect();
        // One trace per cycle: reading the windows, fitting, writing the forecasts back
        // (the window store's span hangs from it).
        let span = self
            .telemetry
            .root("predictor.refit", SpanKind::Internal, None);
        let read_span = span
            .as_ref()
            .map(|s| s.child("predictor.read_windows", SpanKind::Client));
        let read = async move {
            let _read_span = read_span;
            let mut windows = Vec::new();
            for selector in &settings.watch {
                let grids = window
                    .send(SeriesGrid::read(
                        selector.clone(),
                        now - settings.window_ms,
                        now,
                        settings.step_ms,
                        buckets,
                    ))
                    .await?;
                windows.extend(grids);
            }
            // A series matched by two selectors is fitted once.
            windows.sort_by(|a, b| a.series.cmp(&b.series));
            windows.dedup_by(|a, b| a.series == b.series);
            let limits = if limit_names.is_empty() {
                Vec::new()
            } else {
                let selector = Selector::default().with(
                    Matcher::new("__name__", MatchOp::Re, &limit_names.join("|"))
                        .expect("escaped names"),
                );
                window
                    .send(SelectLatest {
                        selector,
                        since_ms: now - settings.window_ms,
                    })
                    .await?
                    .into_iter()
                    .map(|(s, _, v)| (s, v))
                    .collect()
            };
            Ok::<_, MailboxError>((windows, limits))
        };
        let fut = read
            .into_actor(self)
            .then(move |read, act, _| {
                let jobs = match read {
                    Ok((windows, limits)) => {
                        act.read_error = None;
                        act.engine.jobs_from_grids(windows, &limits, now)
                    }
                    Err(e) => {
                        act.read_error = Some(format!("window store: {e}"));
                        Vec::new()
                    }
                };
                let horizon = act.engine.horizon_steps();
                let levels = act.engine.settings().levels.clone();
                let fit_span = span.as_ref().map(|s| {
                    let f = s.child("predictor.fit", SpanKind::Internal);
                    f.set("pulse.series", jobs.len() as i64);
                    f
                });
                async move {
                    let outcomes = tokio::task::spawn_blocking(move || {
                        PredictorEngine::fit_all(jobs, horizon, &levels)
                    })
                    .await
                    .unwrap_or_default();
                    if let Some(f) = fit_span {
                        let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
                        f.set("pulse.failed", failed as i64);
                    }
                    (outcomes, span)
                }
                .into_actor(act)
            })
            .then(move |(outcomes, span), act, _| {
                let samples = act.engine.absorb(outcomes, now);
                let to_window = act.to_window.clone();
                async move {
                    if !samples.is_empty() {
                        // Awaited: a busy store slows the predictor, nothing is dropped.
                        let batch = SampleBatch::new(samples).with_trace(span);
                        let _ = to_window.send(batch).await;
                    }
                    // The cycle's grids and fits are freed now: hand that memory back
                    // (src/allocator.rs), off the actor's thread.
                    tokio::task::spawn_blocking(|| {
                        let started = std::time::Instant::now();
                        let released = crate::runtime::allocator::trim();
                        (started.elapsed().as_secs_f64() * 1000.0, released)
                    })
                    .await
                    .unwrap_or((0.0, false))
                }
                .into_actor(act)
            })
            .map(|(trim_ms, released), act, _| {
                act.running = false;
                act.last_trim_ms = trim_ms;
                act.trims_released += u64::from(released);
            });
        ctx.spawn(fut);
    }
}

impl Actor for Predictor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.refit_interval, |act, ctx| act.cycle(ctx));
    }
}

impl Handler<ListPredictions> for Predictor {
    type Result = MessageResult<ListPredictions>;

    fn handle(
        &mut self,
        ListPredictions(filter): ListPredictions,
        _: &mut Self::Context,
    ) -> Self::Result {
        let mut failures = self.engine.failures();
        failures.retain(|f| filter.matchers.matches(&f.series));
        failures.sort_by(|a, b| a.series.cmp(&b.series));
        MessageResult((self.engine.list(&filter), failures))
    }
}

impl Handler<GetStats> for Predictor {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let c = self.engine.counts();
        let mut st = ComponentStats::new("predictor", "processor");
        st.received_total = c.fits + c.fit_failures;
        st.emitted_total = c.fits;
        st.dropped_total = c.series_refused;
        st.set(
            figure::PREDICTOR_SERIES_FORECAST,
            self.engine.series_forecast() as f64,
        );
        st.set(figure::PREDICTOR_CYCLES_TOTAL, c.cycles as f64);
        st.set(
            figure::PREDICTOR_CYCLES_SKIPPED_TOTAL,
            c.cycles_skipped as f64,
        );
        st.set(figure::PREDICTOR_FITS_TOTAL, c.fits as f64);
        st.set(figure::PREDICTOR_FIT_FAILURES_TOTAL, c.fit_failures as f64);
        st.set(figure::PREDICTOR_FIT_TIMEOUTS_TOTAL, c.fit_timeouts as f64);
        st.set(
            figure::PREDICTOR_LAST_CYCLE_FIT_SECONDS,
            c.last_cycle_fit_ms / 1000.0,
        );
        st.set(
            figure::PREDICTOR_LAST_ALLOCATOR_TRIM_SECONDS,
            self.last_trim_ms / 1000.0,
        );
        st.set(
            figure::PREDICTOR_ALLOCATOR_TRIMS_RELEASED_TOTAL,
            self.trims_released as f64,
        );
        let failures = self.engine.failures();
        st.reason = Some(format!(
            "{} series forecast, refit every {:.1} s",
            self.engine.series_forecast(),
            self.refit_interval.as_secs_f64()
        ));
        if let Some(e) = &self.read_error {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!("could not read the windows: {e}"));
        } else if let Some(f) = failures.first() {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!(
                "{} series failed to fit (retried after {} cycles), e.g. {}: {}",
                failures.len(),
                self.engine.settings().failure_backoff_cycles,
                f.series,
                f.error
            ));
        }
        MessageResult(st)
    }
}
