//! Anomaly detection cost, against a pass-through in the same run.
//!
//! - Detector alone: one `Detector` per series, 1 000 series of 2 000 points each (a noisy
//!   daily-shaped wave with occasional spikes), one value at a time, against a pass-through
//!   that reads each value and folds it into a checksum.
//! - Engine: the same values as `Sample`s in batches of 1 000 through `AnomalyEngine`
//!   (series lookup, score samples built), against a pass-through that looks each sample's
//!   series up in a hash map.
//!
//! `cargo bench --bench anomaly` prints a markdown table; under `cargo test` it runs a tiny
//! size once.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use pulse::model::selector::Selector;
use pulse::model::series::{BuildPrehashed, Sample, Series, SeriesKey};
use pulse::processors::anomaly::detector::{Detector, DetectorConfig};
use pulse::processors::anomaly::{AnomalyEngine, EngineSettings};

fn value(series: usize, i: usize) -> f64 {
    let x = (i as f64) * std::f64::consts::TAU / 288.0 + series as f64;
    let noise = ((i * 7919 + series * 104_729) % 1000) as f64 / 1000.0;
    let spike = if (i + series * 37).is_multiple_of(997) {
        40.0
    } else {
        0.0
    };
    50.0 + 20.0 * x.sin() + 5.0 * noise + spike
}

fn rate(points: usize, secs: f64) -> f64 {
    points as f64 / secs / 1e6
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (series, steps, repeats) = if bench { (1000, 2000, 5) } else { (10, 200, 1) };
    let points = series * steps;
    let values: Vec<Vec<f64>> = (0..series)
        .map(|s| (0..steps).map(|i| value(s, i)).collect())
        .collect();

    // Detector alone vs a pass-through, best of `repeats`: with the expected range worked
    // out for every sample, and only for scores at the threshold (as the engine runs it).
    let mut detector_s = f64::MAX;
    let mut lazy_s = f64::MAX;
    let mut pass_s = f64::MAX;
    for _ in 0..repeats {
        let t = Instant::now();
        let mut sum = 0.0;
        for v in &values {
            for x in v {
                sum += black_box(*x);
            }
        }
        black_box(sum);
        pass_s = pass_s.min(t.elapsed().as_secs_f64());

        for (expected_from, best) in [(0.0, &mut detector_s), (0.78, &mut lazy_s)] {
            let mut detectors: Vec<Detector> = (0..series)
                .map(|_| Detector::new(DetectorConfig::default()).expecting_from(expected_from))
                .collect();
            let t = Instant::now();
            let mut fired = 0usize;
            for step in 0..steps {
                for (d, v) in detectors.iter_mut().zip(&values) {
                    fired += (d.update(v[step]).score >= 0.78) as usize;
                }
            }
            black_box(fired);
            *best = best.min(t.elapsed().as_secs_f64());
        }
    }

    // Engine vs a hash-map pass-through, batches of 1 000 samples.
    let keys: Vec<Series> = (0..series)
        .map(|s| SeriesKey::shared("bench_metric", [("series", s.to_string())]))
        .collect();
    let batches: Vec<Vec<Sample>> = (0..steps)
        .map(|step| {
            keys.iter()
                .zip(&values)
                .map(|(k, v)| Sample::new(k.clone(), step as i64 * 1000, v[step]))
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .concat()
        .chunks(1000)
        .map(|c| c.to_vec())
        .collect();
    let mut engine_s = f64::MAX;
    let mut lookup_s = f64::MAX;
    for _ in 0..repeats {
        let mut map: HashMap<Series, f64, BuildPrehashed> = HashMap::default();
        let t = Instant::now();
        for b in &batches {
            for s in b {
                *map.entry(s.series.clone()).or_default() += s.value;
            }
        }
        black_box(map.len());
        lookup_s = lookup_s.min(t.elapsed().as_secs_f64());

        let mut engine = AnomalyEngine::new(EngineSettings {
            watch: vec![Selector::metric("bench_metric")],
            threshold: 0.78,
            detector: DetectorConfig::default(),
            max_series: series,
            max_anomalies: 10_000,
            gap_intervals: 5.0,
            workload_window_ms: 5_000,
            peers: pulse::processors::anomaly::peers::PeerSettings {
                watch: vec![Selector::metric("bench_metric")],
                tolerance: 0.15,
                hold_ms: 5_000,
            },
        });
        let t = Instant::now();
        let mut scores = 0;
        for b in &batches {
            scores += engine.process(b).0.len();
        }
        black_box(scores);
        engine_s = engine_s.min(t.elapsed().as_secs_f64());
    }

    println!("| what | M points/s | vs its baseline |");
    println!("|---|---:|---:|");
    println!(
        "| pass-through (read and sum) | {:.1} | |",
        rate(points, pass_s)
    );
    println!(
        "| detector alone, {series} series, expected range for every sample | {:.2} | {:.3} |",
        rate(points, detector_s),
        pass_s / detector_s
    );
    println!(
        "| detector alone, {series} series, expected range only at score >= 0.78 (as the engine runs it) | {:.2} | {:.3} |",
        rate(points, lazy_s),
        pass_s / lazy_s
    );
    println!(
        "| hash-map lookup per sample | {:.1} | |",
        rate(points, lookup_s)
    );
    println!(
        "| engine (lookup, detector, score sample) | {:.2} | {:.3} |",
        rate(points, engine_s),
        lookup_s / engine_s
    );
    println!(
        "memory per series: {} bytes (Detector::MEMORY_BYTES)",
        Detector::MEMORY_BYTES
    );
}
