//! Replays the Numenta Anomaly Benchmark through Pulse's anomaly detector (the same code the
//! actor runs), one value at a time, and writes NAB result files.
//!
//! ```text
//! cargo run --release --example nab -- [--data DIR] [--windows FILE] [--out DIR] [--set KEY=VALUE]... [--drift FRACTION]
//! ../shared/tools/nab-score --data ../shared/data/nab/data \
//!     --windows ../shared/data/nab/windows_dev.json --results target/nab
//! ```
//!
//! Defaults: `--data ../shared/data/nab/data`, `--windows` the `windows_dev.json` next to
//! the data folder when present, `--out target/nab`. `--set` overrides one key of the
//! detector's settings (`[anomaly.detector]` in the pipeline file), e.g. `--set bins=16`;
//! `scripts/nab-cv` uses it for cross-validation. `--drift 0.5` adds a linear drift of half
//! each series' range over its length (upwards and downwards in turn; the labels stay): a
//! check that a detector does not read a growing or sinking series as anomalies. Prints one line per file and the
//! detector's throughput in points per second.

use std::path::PathBuf;

use anyhow::{bail, Context};
use pulse::processors::anomaly::detector::DetectorConfig;
use pulse::processors::anomaly::nab;

fn main() -> anyhow::Result<()> {
    let mut data = PathBuf::from("../shared/data/nab/data");
    let mut windows: Option<PathBuf> = None;
    let mut out = PathBuf::from("target/nab");
    let mut overrides = String::new();
    let mut drift = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--data" => data = PathBuf::from(value()?),
            "--windows" => windows = Some(PathBuf::from(value()?)),
            "--out" => out = PathBuf::from(value()?),
            "--drift" => {
                let v = value()?;
                let fraction: f64 = v.parse().with_context(|| format!("--drift {v:?}"))?;
                if !(fraction.is_finite() && fraction >= 0.0) {
                    bail!("--drift {v}: expected a fraction of the series' range, >= 0");
                }
                drift = Some(fraction);
            }
            "--set" => {
                let kv = value()?;
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
                overrides.push_str(&format!("{} = {}\n", k.trim(), v.trim()));
            }
            "-h" | "--help" => {
                println!(
                    "usage: nab [--data DIR] [--windows FILE] [--out DIR] [--set KEY=VALUE]... [--drift FRACTION]"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let windows = windows.or_else(|| {
        let guess = data.parent()?.join("windows_dev.json");
        guess.exists().then_some(guess)
    });
    let windows = windows.map(|w| nab::read_windows(&w)).transpose()?;
    let cfg: DetectorConfig =
        toml::from_str(&overrides).with_context(|| format!("--set: {}", overrides.trim()))?;
    if let Err((field, problem)) = cfg.validate() {
        bail!("--set {field}: {problem}");
    }
    let results = nab::replay_all(&data, windows.as_ref(), &cfg, &out, drift)?;
    let mut points = 0;
    let mut seconds = 0.0;
    for r in &results {
        println!(
            "{:<60} {:>6} rows {:>4} detections",
            r.name, r.rows, r.detections
        );
        points += r.rows;
        seconds += r.detector_time.as_secs_f64();
    }
    println!(
        "{} files, {points} points, detector alone: {:.2} M points/s; results in {}",
        results.len(),
        points as f64 / seconds / 1e6,
        out.display()
    );
    Ok(())
}
