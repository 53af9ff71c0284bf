//! Rolling-origin evaluation of the predictor's forecasts (the same `predict::model` code the
//! actor runs) on recorded series: the NAB development series in `../shared/data/nab` and
//! the simulated fleet's scenarios.
//!
//! ```text
//! cargo run --release --example forecast_accuracy -- [--data DIR] [--half first|second]
//! ```
//!
//! For each series, from every origin (every `STRIDE` points once a window is full) the
//! model is fitted on the `WINDOW` points before it and forecasts `HORIZONS` steps ahead.
//! Reported per horizon: the relative MAE against a seasonal-naive forecast from the same
//! origin (the last value one season back, or the last value when no season is detected;
//! < 1 means better than it), on how many series it is below 1, and how often the actual
//! fell inside the 80 % and 95 % intervals (after the online calibration the predictor
//! applies; `NO_CALIBRATION=1` shows the model's own intervals). Also the fit time per
//! series. The summary gives the median and the geometric mean of the series' relative MAE
//! (the median counts on which side of 1 a series falls, the geometric mean how far).
//!
//! `--half first` scores only the origins in the first half of each series, `--half second`
//! only those in the second: a change to the method that helps on one half and not on the
//! other was fitted to the data, not to the kind of series.

use std::path::{Path, PathBuf};

use pulse::model::series::Sample;
use pulse::processors::anomaly::nab;
use pulse::processors::predict::calibration::Calibration;
use pulse::processors::predict::model::{detect_period, resample};
use pulse::processors::predict::select::forecast;
use pulse::{Scenario, SimFleet};

/// Points a model is fitted on (the predictor's default: 30 minutes at 10-second steps).
const WINDOW: usize = 180;
/// Points between origins.
const STRIDE: usize = 40;
/// Steps ahead that are scored (1, 5 and 10 minutes at 10-second steps).
const HORIZONS: [usize; 3] = [6, 30, 60];
const LEVELS: [f64; 2] = [0.8, 0.95];

#[derive(Default, Clone)]
struct Tally {
    abs_err: f64,
    abs_err_naive: f64,
    n: usize,
    in80: usize,
    in95: usize,
}

struct SeriesResult {
    name: String,
    tallies: Vec<Tally>,
    fits: usize,
    failures: usize,
    fit_ms: f64,
}

/// Which origins of a series are scored (`--half`).
#[derive(Clone, Copy, PartialEq)]
enum Half {
    Both,
    First,
    Second,
}

fn evaluate(name: &str, values: &[f64], half: Half) -> SeriesResult {
    let h_max = *HORIZONS.iter().max().unwrap();
    let mut tallies = vec![Tally::default(); HORIZONS.len()];
    let (mut fits, mut failures, mut fit_ms) = (0, 0, 0.0);
    let mut origin = WINDOW;
    let mut calibration = Calibration::new(&LEVELS, h_max);
    let calibrate = std::env::var("NO_CALIBRATION").is_err();
    while origin + h_max <= values.len() {
        let window = &values[origin - WINDOW..origin];
        let in_first = origin * 2 < values.len();
        if (half == Half::First && !in_first) || (half == Half::Second && in_first) {
            origin += STRIDE;
            continue;
        }
        match forecast(window, h_max, &LEVELS) {
            Ok(mut f) => {
                if calibrate {
                    // As the predictor does: earlier forecasts are scored on the steps that
                    // have come true by now (the window's last value), then this one is
                    // calibrated and remembered.
                    let now = origin as i64 - 1;
                    calibration.observe(now, |t| values.get(usize::try_from(t).ok()?).copied());
                    calibration.apply(&mut f, now);
                }
                fits += 1;
                fit_ms += f.fit_ms;
                let season = detect_period(window).unwrap_or(1);
                for (k, &h) in HORIZONS.iter().enumerate() {
                    let actual = values[origin + h - 1];
                    // Seasonal naive: the value one (or more) seasons before the target.
                    let back = h.div_ceil(season) * season;
                    let naive = values[origin + h - 1 - back];
                    let t = &mut tallies[k];
                    t.abs_err += (f.point[h - 1] - actual).abs();
                    t.abs_err_naive += (naive - actual).abs();
                    t.n += 1;
                    let inside = |i: usize| {
                        f.intervals[i].lower[h - 1] <= actual
                            && actual <= f.intervals[i].upper[h - 1]
                    };
                    t.in80 += inside(0) as usize;
                    t.in95 += inside(1) as usize;
                }
            }
            Err(_) => failures += 1,
        }
        origin += STRIDE;
    }
    SeriesResult {
        name: name.to_string(),
        tallies,
        fits,
        failures,
        fit_ms,
    }
}

fn sim_series() -> Vec<(String, Vec<f64>)> {
    let metrics = [
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_POWER_USAGE",
    ];
    let scenarios = Scenario::ALL;
    let steps: i64 = 4 * 3600; // four hours at 1 s
    let mut fleet = SimFleet::new(scenarios.len(), "sim", &scenarios, 7);
    let samples: Vec<Sample> = (0..steps).flat_map(|i| fleet.sample(i * 1000)).collect();
    let mut out = Vec::new();
    for (g, scenario) in scenarios.iter().enumerate() {
        for metric in metrics {
            let points: Vec<(i64, f64)> = samples
                .iter()
                .filter(|s| {
                    s.series.name() == metric && s.series.label("gpu") == Some(&g.to_string())
                })
                .map(|s| (s.timestamp_ms, s.value))
                .collect();
            let values =
                resample(&points, steps * 1000, 10_000, (steps / 10) as usize, false).values;
            out.push((format!("sim/{scenario:?}/{metric}"), values));
        }
    }
    out
}

fn nab_series(data: &Path) -> anyhow::Result<Vec<(String, Vec<f64>)>> {
    let mut out = Vec::new();
    for name in nab::data_files(data)? {
        let text = std::fs::read_to_string(data.join(&name))?;
        let values: Vec<f64> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(',')?.1.trim().parse().ok())
            .collect();
        out.push((format!("nab/{name}"), values));
    }
    Ok(out)
}

/// The summary row of every series read from `--data`.
const ALL_DATA: &str = "all of --data";

/// The set a series belongs to: `sim`, or the data folder's category (`nab/<category>/...`).
fn set_of(name: &str) -> &str {
    match name.split('/').collect::<Vec<_>>().as_slice() {
        ["nab", category, ..] => category,
        [first, ..] => first,
        [] => name,
    }
}

fn main() -> anyhow::Result<()> {
    let mut data = PathBuf::from("../shared/data/nab/data");
    let mut half = Half::Both;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data" => data = PathBuf::from(args.next().expect("--data DIR")),
            "--half" => {
                half = match args.next().as_deref() {
                    Some("first") => Half::First,
                    Some("second") => Half::Second,
                    other => anyhow::bail!("--half first|second, not {other:?}"),
                }
            }
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    let mut series = sim_series();
    match nab_series(&data) {
        Ok(s) => series.extend(s),
        Err(e) => eprintln!("NAB series skipped: {e}"),
    }
    let results: Vec<SeriesResult> = series.iter().map(|(n, v)| evaluate(n, v, half)).collect();

    println!("| series | fits | failed | fit ms (mean) | MAE / naive MAE h=6 | h=30 | h=60 | cover 80 % (h=30) | 95 % (h=30) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        // The ratio where naive has an error; both errors where it has none (a flat series).
        let rel = |k: usize| {
            let t = &r.tallies[k];
            if t.abs_err_naive > 0.0 {
                format!("{:.2}", t.abs_err / t.abs_err_naive)
            } else {
                format!("{:.3} / 0", t.abs_err / t.n.max(1) as f64)
            }
        };
        let t = &r.tallies[1];
        println!(
            "| {} | {} | {} | {:.1} | {} | {} | {} | {:.0} % | {:.0} % |",
            r.name,
            r.fits,
            r.failures,
            r.fit_ms / r.fits.max(1) as f64,
            rel(0),
            rel(1),
            rel(2),
            100.0 * t.in80 as f64 / t.n.max(1) as f64,
            100.0 * t.in95 as f64 / t.n.max(1) as f64
        );
    }
    println!();
    println!("Series where seasonal naive has no error (flat) are left out of the summary.\n");
    println!("| set | horizon (steps) | series with rel. MAE < 1 | median rel. MAE | geometric mean | pooled 80 % coverage | pooled 95 % coverage |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut sets: Vec<&str> = results.iter().map(|r| set_of(&r.name)).collect();
    sets.dedup();
    sets.push(ALL_DATA);
    for set in sets {
        for (k, h) in HORIZONS.iter().enumerate() {
            let scored: Vec<&SeriesResult> = results
                .iter()
                .filter(|r| {
                    set_of(&r.name) == set || (set == ALL_DATA && r.name.starts_with("nab/"))
                })
                .filter(|r| r.tallies[k].n > 0 && r.tallies[k].abs_err_naive > 0.0)
                .collect();
            let mut ratios: Vec<f64> = scored
                .iter()
                .map(|r| r.tallies[k].abs_err / r.tallies[k].abs_err_naive)
                .collect();
            ratios.sort_by(f64::total_cmp);
            let median = match ratios.len() {
                0 => f64::NAN,
                n if n % 2 == 1 => ratios[n / 2],
                n => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
            };
            // A forecast with no error at all counts as a thousandth of naive's.
            let geometric =
                (ratios.iter().map(|r| r.max(1e-3).ln()).sum::<f64>() / ratios.len() as f64).exp();
            let better = ratios.iter().filter(|r| **r < 1.0).count();
            let n: usize = scored.iter().map(|r| r.tallies[k].n).sum();
            let in80: usize = scored.iter().map(|r| r.tallies[k].in80).sum();
            let in95: usize = scored.iter().map(|r| r.tallies[k].in95).sum();
            println!(
                "| {set} | {h} | {better} of {} | {median:.3} | {geometric:.3} | {:.1} % | {:.1} % |",
                scored.len(),
                100.0 * in80 as f64 / n.max(1) as f64,
                100.0 * in95 as f64 / n.max(1) as f64
            );
        }
    }
    let fits: usize = results.iter().map(|r| r.fits).sum();
    let ms: f64 = results.iter().map(|r| r.fit_ms).sum();
    println!(
        "\n{fits} fits of {WINDOW} points, mean {:.1} ms each (fit + {}-step forecast at 2 levels)",
        ms / fits.max(1) as f64,
        HORIZONS.iter().max().unwrap()
    );
    Ok(())
}
