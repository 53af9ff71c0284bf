//! Tests of `select.rs`.

use super::*;

#[test]
fn the_normal_quantile_is_right() {
    assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
    assert!((normal_quantile(0.9) - 1.281_552).abs() < 1e-5);
    assert!((normal_quantile(0.5)).abs() < 1e-9);
    assert!((normal_quantile(0.001) + 3.090_232).abs() < 1e-5);
}

#[test]
fn a_random_walk_gets_naive_and_noise_around_a_level_gets_the_mean() {
    // A random walk (deterministic steps of +-1): nothing beats the last value.
    let mut x = 0.0;
    let walk: Vec<f64> = (0..180)
        .map(|i| {
            x += if (i * 7919) % 13 < 6 { 1.0 } else { -1.0 };
            x
        })
        .collect();
    let f = best(&walk, None, 60, &[0.8]).unwrap();
    assert!(
        f.backtest.iter().all(|b| b.mae <= b.naive_mae),
        "{:?}",
        f.backtest
    );
    // White noise around 50: the mean is far better than the last value.
    let noise: Vec<f64> = (0..180)
        .map(|i| 50.0 + (((i * 7919) % 101) as f64 - 50.0) / 10.0)
        .collect();
    // A short window: only the latest origin, and only the simple methods backtested.
    let short = best(&noise[..36], None, 10, &[0.8]).unwrap();
    assert_eq!(short.point.len(), 10);
    assert!(short.backtest.iter().all(|b| b.naive_mae > 0.0));
    let f = best(&noise, None, 60, &[0.8, 0.95]).unwrap();
    let last = f.backtest.last().unwrap();
    assert!(last.mae < 0.9 * last.naive_mae, "{:?}", f.backtest);
    assert_eq!(f.point.len(), 60);
    assert!((f.point[59] - 50.0).abs() < 1.5, "{}", f.point[59]);
    let iv = &f.intervals[1];
    assert!(iv.lower[59] < 45.0 && iv.upper[59] > 55.0, "{iv:?}");
}

/// Noise in [-1, 1], uncorrelated from step to step (splitmix64 of the step).
fn jitter(i: usize) -> f64 {
    let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

#[test]
fn a_climb_is_extrapolated_past_the_shortest_horizons_only() {
    // A steady climb: the first band (6 steps) follows the latest values, the later
    // ones carry the climb on, by one method (never averaged with another: half of a
    // leak's trend would put its exhaustion twice as far off).
    let values: Vec<f64> = (0..180)
        .map(|i| 100.0 + 2.0 * i as f64 + jitter(i))
        .collect();
    let f = best(&values, None, 60, &[0.8]).unwrap();
    let first = &f.backtest[0];
    assert_eq!(first.to_step, 6);
    assert!(
        first.model == "naive" || first.model.starts_with("level("),
        "{:?}",
        f.backtest
    );
    assert!(
        f.point[59] > values[179] + 100.0,
        "{} {:?}",
        f.point[59],
        f.backtest
    );
    assert!(
        f.backtest[1..]
            .iter()
            .all(|b| !b.model.starts_with("combined(")),
        "{:?}",
        f.backtest
    );
}

/// Noise (±1) around 1000, then a climb of 0.5 a step over the last `climbing` steps.
fn late_climb(climbing: usize) -> Vec<f64> {
    (0..180)
        .map(|i| 1000.0 + jitter(i) + 0.5 * (i + climbing).saturating_sub(180) as f64)
        .collect()
}

#[test]
fn a_climb_is_carried_on_once_every_backtest_origin_saw_it() {
    // A climb younger than the backtest: from the latest origin the trend won, from the
    // one before it the series was still flat. A trend one origin bore out and the other
    // did not is more often a level that moved than a trend that lasts: the forecast
    // stays at the latest level.
    let f = best(&late_climb(90), None, 60, &[0.8]).unwrap();
    assert!(
        f.point[59] < f.point[0] + 5.0,
        "{} {} {:?}",
        f.point[0],
        f.point[59],
        f.backtest
    );
    // Once the climb is older than both origins' held-out steps, it is carried on.
    let values = late_climb(150);
    let f = best(&values, None, 60, &[0.8]).unwrap();
    assert!(
        f.point[59] > values[179] + 15.0,
        "{} {:?}",
        f.point[59],
        f.backtest
    );
}

/// Noise (±5) around a level that steps from 20 to 60 at step 100 of 180.
fn stepped_level() -> Vec<f64> {
    (0..180)
        .map(|i| if i < 100 { 20.0 } else { 60.0 } + 5.0 * jitter(i))
        .collect()
}

#[test]
fn noise_around_a_moving_level_gets_a_local_level() {
    // Noise around a level that stepped up 80 points ago: the window's mean is far off,
    // the last value carries the noise, the mean of the last 16 does neither. (60 steps
    // ahead, the predictor's default: the first band reaches 6 steps, far enough for a
    // local level of 4 to compete there.)
    let values = stepped_level();
    let f = best(&values, None, 60, &[0.8]).unwrap();
    // A local level, alone or averaged with smoothing (another level method).
    assert!(
        f.model.starts_with("level(") || f.model.starts_with("combined(level("),
        "{}",
        f.model
    );
    let first = &f.backtest[0];
    assert!(first.mae < first.naive_mae, "{:?}", f.backtest);
    // Within the noise's spread (±5 uniform: 2.9) of the level; the last value is 55.3
    // and the window's mean 38.
    assert!(
        (f.point[29] - 60.0).abs() < 2.9,
        "{} {:?}",
        f.point[29],
        f.backtest
    );
    // Its intervals come from its own errors: they hold the noise (±5) and no more.
    let iv = &f.intervals[0];
    assert!(iv.upper[0] - iv.lower[0] < 20.0, "{iv:?}");
    assert!(iv.lower[29] < 57.0 && iv.upper[29] > 63.0, "{iv:?}");
}

#[test]
fn a_noisy_season_gets_the_seasonal_mean() {
    // A 12-step square wave with noise: one season back carries that season's noise,
    // the mean of four seasons back a quarter of it.
    let values: Vec<f64> = (0..180)
        .map(|i| if i % 12 < 6 { 100.0 } else { 0.0 } + 10.0 * jitter(i))
        .collect();
    let f = best(&values, Some(12), 24, &[0.8]).unwrap();
    // A short backtest is a noisy judge: seasonal naive may keep a band.
    assert!(f.model.contains("seasonal_mean(12x4)"), "{:?}", f.backtest);
    assert_eq!(f.period, Some(12));
    assert!(f.backtest.iter().all(|b| b.mae < b.naive_mae));
    for (h, p) in f.point.iter().enumerate() {
        let truth = if (180 + h) % 12 < 6 { 100.0 } else { 0.0 };
        assert!((p - truth).abs() < 10.0, "step {h}: {p}");
    }
}

/// Uniform noise in [-6, 6] (a fixed xorshift sequence).
fn noise(n: usize) -> Vec<f64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1201) as f64 / 100.0 - 6.0
        })
        .collect()
}

#[test]
fn smoothing_weighs_the_newest_value_as_the_series_asks() {
    // A random walk: the last value is the best level (weight near 1).
    let walk: Vec<f64> = noise(180)
        .iter()
        .scan(0.0, |v, d| {
            *v += d;
            Some(*v)
        })
        .collect();
    let f = simple(Candidate::Smoothed, &walk, 5, &[0.8]);
    assert!(
        (f.point[0] - walk[179]).abs() < 1.0,
        "{} vs {}",
        f.point[0],
        walk[179]
    );
    // Noise around a constant: the level is near the mean, far less noisy than the last value.
    let flat: Vec<f64> = noise(180).iter().map(|e| 100.0 + e).collect();
    let f = simple(Candidate::Smoothed, &flat, 5, &[0.8]);
    assert!((f.point[0] - 100.0).abs() < 1.5, "{}", f.point[0]);
    // A flat forecast whose interval widens with the steps ahead.
    assert!(f.point.iter().all(|p| *p == f.point[0]));
    let width = |h: usize| f.intervals[0].upper[h] - f.intervals[0].lower[h];
    assert!(width(4) >= width(0));
}

#[test]
fn two_level_methods_that_beat_the_baseline_are_shipped_as_their_mean() {
    // The stepped noisy level: at 30 steps both the 4-value level and smoothing beat
    // naive, and their mean is shipped.
    let values = stepped_level();
    let f = best(&values, None, 60, &[0.8]).unwrap();
    let band = &f.backtest[1];
    assert_eq!(
        band.model, "combined(level(4), smoothed)",
        "{:?}",
        f.backtest
    );
    // The pair's own backtest error, from the origins both were judged from, beats naive's.
    assert!(band.mae < band.naive_mae, "{band:?}");
    // Each step of the band is the mean of the two methods' forecasts, bounds included.
    let (a, b) = (
        simple(Candidate::Level(4), &values, 60, &[0.8]),
        simple(Candidate::Smoothed, &values, 60, &[0.8]),
    );
    for k in 6..30 {
        assert!((f.point[k] - (a.point[k] + b.point[k]) / 2.0).abs() < 1e-9);
        let lower = (a.intervals[0].lower[k] + b.intervals[0].lower[k]) / 2.0;
        assert!((f.intervals[0].lower[k] - lower).abs() < 1e-9);
    }
}
