//! Tests of `engine.rs`.

use super::*;
use crate::store::window::SeriesPoints;

fn settings() -> PredictorSettings {
    PredictorSettings {
        watch: vec![Selector::metric("DCGM_FI_DEV_FB_USED")],
        window_ms: 1_800_000,
        step_ms: 10_000,
        horizons_s: vec![60, 600],
        levels: vec![0.8, 0.95],
        limits: vec![Limit {
            metric: "DCGM_FI_DEV_FB_USED".into(),
            limit_metric: "DCGM_FI_DEV_FB_TOTAL".into(),
            resource: "memory".into(),
        }],
        max_series: 10,
        fit_timeout_ms: 5000.0,
        failure_backoff_cycles: 2,
    }
}

fn gpu(name: &str) -> Series {
    SeriesKey::shared(name, [("gpu", "3"), ("Hostname", "node-1")])
}

/// A leak: +3.5 MiB/s from 40 000 MiB, sampled every second for 30 minutes.
fn leak(now_ms: i64) -> SeriesPoints {
    SeriesPoints {
        series: gpu("DCGM_FI_DEV_FB_USED"),
        points: (0..1800)
            .map(|i| {
                let t = now_ms - 1_800_000 + (i + 1) * 1000;
                (t, 40_000.0 + 3.5 * i as f64 + ((i * 7) % 5) as f64 * 10.0)
            })
            .collect(),
    }
}

#[test]
fn a_climb_that_then_holds_gets_no_exhaustion_beside_its_flat_forecast() {
    let mut e = PredictorEngine::new(settings());
    let now = 10_000_000;
    // Memory climbed for the first three quarters of the window, then held for the
    // last 7.5 minutes: a straight line through the window still climbs (and alone
    // would say when memory runs out), the forecast does not.
    let level = |i: i64| 40_000.0 + 20.0 * i.min(1350) as f64;
    let stepped = SeriesPoints {
        series: gpu("DCGM_FI_DEV_FB_USED"),
        points: (0..1800)
            .map(|i| {
                let t = now - 1_800_000 + (i + 1) * 1000;
                (t, level(i) + ((i * 7) % 5) as f64)
            })
            .collect(),
    };
    let jobs = e.jobs(
        vec![stepped],
        &[(gpu("DCGM_FI_DEV_FB_TOTAL"), 81_559.0)],
        now,
    );
    let outcomes = PredictorEngine::fit_all(jobs, e.horizon_steps(), &[0.8, 0.95]);
    e.absorb(outcomes, now);
    let p = &e.list(&PredictionFilter::default())[0];
    assert!(
        p.forecast[59].value <= 67_010.0,
        "{}: {:?}",
        p.model,
        p.forecast[59]
    );
    assert!(p.exhaustion.is_none(), "{:?}", p.exhaustion);
}

#[test]
fn a_leak_gets_a_forecast_an_exhaustion_and_series_on_the_stream() {
    let mut e = PredictorEngine::new(settings());
    let now = 10_000_000;
    let jobs = e.jobs(
        vec![leak(now)],
        &[(gpu("DCGM_FI_DEV_FB_TOTAL"), 81_559.0)],
        now,
    );
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].values.len(), 180);
    assert_eq!(jobs[0].limit, Some((81_559.0, "memory".to_string())));
    let outcomes = PredictorEngine::fit_all(jobs, e.horizon_steps(), &[0.8, 0.95]);
    let samples = e.absorb(outcomes, now);

    let p = &e.list(&PredictionFilter::default())[0];
    assert_eq!(p.forecast.len(), 60);
    assert!(
        p.forecast[59].value > p.forecast[0].value,
        "the leak keeps growing"
    );
    let x = p.exhaustion.as_ref().unwrap();
    // Now at ~46 300 MiB, growing 3.5 MiB/s: (81 559 - 46 300) / 3.5 ≈ 10 070 s.
    assert!((x.seconds - 10_070.0).abs() < 300.0, "{x:?}");
    assert!(x.earliest_seconds <= x.seconds && x.seconds <= x.latest_seconds);
    assert!(
        x.text.starts_with("GPU 3 on node-1 runs out of memory in "),
        "{}",
        x.text
    );

    let names: Vec<String> = samples.iter().map(|s| s.series.to_string()).collect();
    let upper = names
        .iter()
        .find(|n| n.contains("horizon=\"600s\"") && n.contains("bound=\"upper_80\""))
        .expect("upper 80 % bound at 10 minutes");
    assert!(upper.starts_with("pulse_forecast{"));
    assert!(upper.contains("metric=\"DCGM_FI_DEV_FB_USED\""));
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("pulse_forecast{"))
            .count(),
        2 * 5
    );
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("pulse_exhaustion_seconds{"))
            .count(),
        3
    );

    let short = e.list(&PredictionFilter {
        horizon_s: Some(60),
        ..Default::default()
    });
    assert_eq!(short[0].forecast.len(), 6);
}

#[test]
fn failures_back_off_and_stop_the_exhaustion_series() {
    let mut e = PredictorEngine::new(settings());
    let now = 10_000_000;
    let jobs = e.jobs(
        vec![leak(now)],
        &[(gpu("DCGM_FI_DEV_FB_TOTAL"), 200_000.0)],
        now,
    );
    let first = e.absorb(PredictorEngine::fit_all(jobs, 60, &[0.8, 0.95]), now);
    assert!(first.iter().any(|s| s.series.name() == EXHAUSTION_METRIC));
    // Next cycle the window is nearly empty: the fit fails.
    let thin = SeriesPoints {
        series: gpu("DCGM_FI_DEV_FB_USED"),
        points: vec![(now + 59_000, 1.0)],
    };
    let jobs = e.jobs(vec![thin.clone()], &[], now + 60_000);
    let second = e.absorb(
        PredictorEngine::fit_all(jobs, 60, &[0.8, 0.95]),
        now + 60_000,
    );
    let stale: Vec<_> = second
        .iter()
        .filter(|s| crate::promql::is_stale(s.value))
        .collect();
    assert_eq!(stale.len(), 3, "the exhaustion series are marked stale");
    assert!(e.list(&PredictionFilter::default()).is_empty());
    let f = &e.failures()[0];
    assert!(f.error.contains("needed"), "{}", f.error);
    // Two cycles of back-off, then it is tried again.
    assert!(e.jobs(vec![thin.clone()], &[], now + 120_000).is_empty());
    assert!(e.jobs(vec![thin.clone()], &[], now + 180_000).is_empty());
    assert_eq!(
        e.jobs(vec![leak(now + 240_000)], &[], now + 240_000).len(),
        1
    );
    assert_eq!(e.counts().fit_failures, 1);
    // A series with nothing left in its window is forgotten, failure included.
    assert_eq!(e.failures().len(), 1);
    assert!(e.jobs(vec![], &[], now + 270_000).is_empty());
    assert!(e.failures().is_empty());
    // A new series with a thin window waits; it is not a failure.
    let new = SeriesPoints {
        series: gpu("DCGM_FI_DEV_GPU_UTIL"),
        points: vec![(now + 299_000, 1.0)],
    };
    assert!(e.jobs(vec![new], &[], now + 300_000).is_empty());
    assert_eq!(e.counts().series_waiting, 1);
}
