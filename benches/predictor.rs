//! Forecasting cost: one refit cycle of the predictor's default shape (1 000 series, 180
//! points each: 30 minutes on a 10-second grid, forecast 60 steps at 80 % and 95 %),
//! against a naive forecaster in the same run (repeat the last value, intervals from the
//! spread of one-step changes).
//!
//! `cargo bench --bench predictor` prints a markdown table; under `cargo test` it runs a
//! tiny size once.

use std::hint::black_box;
use std::time::Instant;

use pulse::model::series::SeriesKey;
use pulse::processors::predict::engine::{FitJob, PredictorEngine};

/// Three kinds of series, as a fleet has them: seasonal, growing, noisy level.
fn series(i: usize, n: usize) -> Vec<f64> {
    (0..n)
        .map(|t| {
            let noise = (((t * 7919 + i * 104_729) % 1000) as f64 / 1000.0 - 0.5) * 4.0;
            match i % 3 {
                0 => 60.0 + 20.0 * (t as f64 * std::f64::consts::TAU / 30.0).sin() + noise,
                1 => 40_000.0 + 35.0 * t as f64 + noise * 50.0,
                _ => 70.0 + noise,
            }
        })
        .collect()
}

fn naive(values: &[f64], horizon: usize) -> (Vec<f64>, Vec<[f64; 2]>) {
    let last = *values.last().unwrap();
    let diffs: Vec<f64> = values.windows(2).map(|w| w[1] - w[0]).collect();
    let sd = (diffs.iter().map(|d| d * d).sum::<f64>() / diffs.len() as f64).sqrt();
    let point = vec![last; horizon];
    let bounds = (1..=horizon)
        .map(|h| {
            let w = 1.2816 * sd * (h as f64).sqrt();
            [last - w, last + w]
        })
        .collect();
    (point, bounds)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (count, points, horizon) = if bench { (1000, 180, 60) } else { (6, 60, 10) };
    let jobs: Vec<FitJob> = (0..count)
        .map(|i| FitJob {
            series: SeriesKey::shared("bench", [("i", i.to_string())]),
            values: series(i, points),
            end_ms: 0,
            is_rate: false,
            limit: None,
        })
        .collect();

    let t = Instant::now();
    for j in &jobs {
        black_box(naive(&j.values, horizon));
    }
    let naive_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let outcomes = PredictorEngine::fit_all(jobs, horizon, &[0.8, 0.95]);
    let fit_s = t.elapsed().as_secs_f64();
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    let mut by_model = std::collections::BTreeMap::<String, (usize, f64)>::new();
    for o in &outcomes {
        if let Ok(f) = &o.result {
            let kind = f.model.split('(').next().unwrap_or("").to_string();
            let e = by_model.entry(kind).or_default();
            e.0 += 1;
            e.1 += f.fit_ms;
        }
    }

    println!(
        "| what | one cycle, {count} series | per series | one core's share at a 60 s refit |"
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| naive forecaster (baseline) | {:.1} ms | {:.3} ms | {:.4} % |",
        naive_s * 1e3,
        naive_s * 1e3 / count as f64,
        naive_s / 60.0 * 100.0
    );
    println!(
        "| predictor fits (season check, backtest of up to 8 methods: level ones from 6 origins, the others from 2, the chosen fitted, 2 levels) | {:.2} s | {:.2} ms | {:.1} % |",
        fit_s,
        fit_s * 1e3 / count as f64,
        fit_s / 60.0 * 100.0
    );
    for (model, (n, ms)) in by_model {
        println!("  {model}: {n} series, {:.2} ms each", ms / n as f64);
    }
    println!(
        "failed fits: {failed}; ratio predictor/naive: {:.0}x",
        fit_s / naive_s
    );
}
