//! Tests of `model.rs`.

use super::*;
use crate::processors::predict::select::forecast;

#[test]
fn resampling_averages_carries_forward_and_turns_counters_into_rates() {
    let pts: Vec<(i64, f64)> = vec![(1000, 1.0), (1500, 3.0), (4000, 5.0)];
    // Steps (0,1000], (1000,2000], ... ending at 4000: four buckets.
    let g = resample(&pts, 5000, 1000, 5, false);
    assert_eq!(g.values, vec![1.0, 3.0, 3.0, 5.0, 5.0]);
    assert_eq!((g.filled, g.trailing_gap), (3, 1));
    let counter: Vec<(i64, f64)> = (0..=10).map(|i| (i * 1000, i as f64 * 2.0)).collect();
    let rates = resample(&counter, 10_000, 2000, 5, true);
    assert_eq!(rates.values, vec![2.0; 5]);
    // A reset counts from zero, it is not a negative rate.
    let reset = vec![(0, 100.0), (1000, 110.0), (2000, 4.0)];
    assert_eq!(
        resample(&reset, 2000, 1000, 2, true).values,
        vec![10.0, 4.0]
    );
}

#[test]
fn a_season_is_found_and_forecast_with_intervals_that_widen() {
    let values: Vec<f64> = (0..240)
        .map(|i| {
            50.0 + 10.0 * (i as f64 * std::f64::consts::TAU / 30.0).sin() + (i % 7) as f64 * 0.3
        })
        .collect();
    assert_eq!(detect_period(&values), Some(30));
    let f = forecast(&values, 30, &[0.8, 0.95]).unwrap();
    // MSTL or the seasonal mean: either way a 30-step season.
    assert_eq!(f.period, Some(30), "{}", f.model);
    assert_eq!(f.point.len(), 30);
    let (i80, i95) = (&f.intervals[0], &f.intervals[1]);
    for h in 0..30 {
        assert!(i95.lower[h] <= i80.lower[h] && i80.lower[h] <= f.point[h]);
        assert!(f.point[h] <= i80.upper[h] && i80.upper[h] <= i95.upper[h]);
    }
    // The forecast follows the wave: a quarter period ahead of a crest is near the mean.
    let truth = |i: usize| 50.0 + 10.0 * (i as f64 * std::f64::consts::TAU / 30.0).sin();
    let mae: f64 = (0..30)
        .map(|h| (f.point[h] - truth(240 + h)).abs())
        .sum::<f64>()
        / 30.0;
    assert!(mae < 2.0, "mae {mae}");
}

#[test]
fn a_trend_is_forecast_as_one_and_a_constant_is_itself() {
    let values: Vec<f64> = (0..120)
        .map(|i| 10.0 + i as f64 * 0.5 + ((i * 37) % 11) as f64 * 0.1)
        .collect();
    let f = forecast(&values, 10, &[0.8]).unwrap();
    // Ten steps ahead the drift line and AutoETS both follow it, far better than the
    // last value (one step ahead the noise is as large as the rise).
    let last = f.backtest.last().unwrap();
    assert!(
        last.model == "drift" || last.model.starts_with("AutoETS("),
        "{:?}",
        f.backtest
    );
    assert!(last.mae < 0.5 * last.naive_mae, "{:?}", f.backtest);
    assert!(f.backtest.iter().all(|b| b.mae <= b.naive_mae));
    assert!(
        f.point[9] > values[119],
        "a rising series is forecast to rise"
    );
    let c = forecast(&[5.0; 60], 5, &[0.8]).unwrap();
    assert_eq!(c.model, "constant");
    assert_eq!(c.point, vec![5.0; 5]);
    assert!(forecast(&[1.0; 10], 5, &[0.8])
        .unwrap_err()
        .contains("30 needed"));
}

/// A forecast of 60 steps: `point(h)`, with an 80 % band of ±`half(h)`.
fn forecast_of(point: impl Fn(f64) -> f64, half: impl Fn(f64) -> f64) -> Forecast {
    let steps = (1..=60).map(f64::from);
    Forecast {
        model: "test".into(),
        period: None,
        fit_ms: 0.0,
        point: steps.clone().map(&point).collect(),
        intervals: vec![Interval {
            level: 0.8,
            lower: steps.clone().map(|h| point(h) - half(h)).collect(),
            upper: steps.map(|h| point(h) + half(h)).collect(),
        }],
        backtest: Vec::new(),
    }
}

#[test]
fn exhaustion_is_read_off_the_forecast_and_its_band() {
    // 35 a step from 47 000, limit 80 000: (80 000 - 47 000) / 35 ≈ 943 steps, past the
    // 60-step horizon (49 100 at its end), so along the line of the last third; the band
    // widens 2 a step (±220 at the end), so its upper bound climbs 37 a step, its lower 33.
    let leak = forecast_of(|h| 47_000.0 + 35.0 * h, |h| 100.0 + 2.0 * h);
    let e = exhaustion(&leak, 47_000.0, 80_000.0, 10.0).unwrap();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
    assert!(close(e.seconds, 10.0 * (60.0 + 30_900.0 / 35.0)), "{e:?}");
    assert!(
        close(e.earliest_seconds, 10.0 * (60.0 + 30_680.0 / 37.0)),
        "{e:?}"
    );
    assert!(
        close(e.latest_seconds, 10.0 * (60.0 + 31_120.0 / 33.0)),
        "{e:?}"
    );
    // Within the horizon: where the plotted line crosses the limit.
    let e = exhaustion(&leak, 47_000.0, 48_000.0, 10.0).unwrap();
    assert!(close(e.seconds, 10.0 * 1_000.0 / 35.0), "{e:?}");
    assert!(e.earliest_seconds < e.seconds && e.seconds < e.latest_seconds);
    // A flat forecast, a climb lost in its own band, a series past its limit: none.
    let flat = forecast_of(|_| 47_000.0, |_| 100.0);
    assert!(exhaustion(&flat, 47_000.0, 80_000.0, 10.0).is_none());
    let noisy = forecast_of(|h| 47_000.0 + h, |h| 100.0 * h.sqrt());
    assert!(exhaustion(&noisy, 47_000.0, 80_000.0, 10.0).is_none());
    assert!(exhaustion(&leak, 81_000.0, 80_000.0, 10.0).is_none());
    assert_eq!(describe_span(420.0, 720.0), "in 7–12 minutes");
    assert_eq!(describe_span(30.0, 50.0), "in 30–50 seconds");
}
