//! Replays real GPU telemetry (NAB-style `gpu<N>_<metric>.csv` files, one folder per host, as
//! in `../shared/data/gpu/`) through Pulse's anomaly engine with the built-in settings, all
//! GPUs of a host together in timestamp order, and reports per metric the anomalies opened
//! per 100 k samples (those that are peer divergences apart), and the workload changes (most
//! GPUs of a host firing together).
//!
//! Alibaba PAI's per-worker mini-batch times (`job<J>_worker<W>_batch_time_norm.csv`) are
//! replayed too, each job as one host and each worker as one GPU, under the metric
//! `BATCH_TIME_METRIC` (watched for this replay): a slow worker is a peer divergence.
//!
//! ```text
//! cargo run --release --example gpu_replay -- [--window-ms MS] DIR...
//! cargo run --release --example gpu_replay -- ../shared/data/gpu/nanogpt_pr643_8gpu \
//!     ../shared/data/gpu/plato_fork_1gpu
//! ```
//!
//! `--mean-ms MS` replays each series' means over MS-long buckets instead of its raw
//! samples (1000: the 1 s means a scrape of a 100 ms sampler's averages would give).
//!
//! `--window-ms` sets `anomaly.workload_window_ms` (0: every firing is an anomaly, as before
//! workload changes were told apart). Anomalies inside a series' first `warmup_samples` are
//! impossible (the detector is learning), so every sample counts in the rate.
//!
//! With `GPU_REPLAY_LIST=1` in the environment, every workload change and every anomaly
//! is listed too (time, GPUs, cause or reason, detail).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use pulse::config::pipeline::{AnomalyConfig, WatchSelector};
use pulse::model::catalog;
use pulse::model::series::{Sample, SeriesKey};
use pulse::processors::anomaly::nab::{self, read_series};
use pulse::processors::anomaly::{AnomalyEngine, AnomalyFilter, Reason};

/// The metric Alibaba PAI's mini-batch times are replayed under.
const BATCH_TIME_METRIC: &str = "training_batch_time_norm";

/// File metric suffix → the dcgm-exporter name Pulse watches it under.
const METRICS: &[(&str, &str)] = &[
    ("power_w", catalog::POWER_USAGE),
    ("util_pct", catalog::GPU_UTIL),
    ("util_gpu_pct", catalog::GPU_UTIL),
    ("temp_c", catalog::GPU_TEMP),
    ("mem_used_mib", catalog::FB_USED),
];

fn main() -> anyhow::Result<()> {
    let mut dirs = Vec::new();
    let mut window_ms: Option<u64> = None;
    let mut mean_ms: Option<i64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--window-ms" => {
                let v = args.next().context("--window-ms needs a value")?;
                window_ms = Some(v.parse().with_context(|| format!("--window-ms {v:?}"))?);
            }
            "--mean-ms" => {
                let v = args.next().context("--mean-ms needs a value")?;
                let ms: i64 = v.parse().with_context(|| format!("--mean-ms {v:?}"))?;
                if ms <= 0 {
                    bail!("--mean-ms {ms}: must be positive");
                }
                mean_ms = Some(ms);
            }
            "-h" | "--help" => {
                println!("usage: gpu_replay [--window-ms MS] [--mean-ms MS] DIR...");
                return Ok(());
            }
            _ => dirs.push(PathBuf::from(arg)),
        }
    }
    if dirs.is_empty() {
        bail!("no folder given (try --help)");
    }
    let mut cfg = AnomalyConfig::default();
    if let Some(w) = window_ms {
        cfg.workload_window_ms = w;
    }
    let batch_time: WatchSelector = format!("{{__name__=\"{BATCH_TIME_METRIC}\"}}")
        .try_into()
        .map_err(anyhow::Error::msg)?;
    cfg.watch.push(batch_time.clone());
    cfg.peer_watch.push(batch_time);
    println!("workload_window_ms = {}", cfg.workload_window_ms);
    if let Some(ms) = mean_ms {
        println!("means over {ms} ms");
    }
    for dir in dirs {
        replay_host(&dir, &cfg, mean_ms)?;
    }
    Ok(())
}

fn replay_host(dir: &PathBuf, cfg: &AnomalyConfig, mean_ms: Option<i64>) -> anyhow::Result<()> {
    let host = dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    // (t_ms, sample) of every file, merged.
    let mut samples: Vec<(i64, Sample)> = Vec::new();
    let mut per_metric: BTreeMap<&str, u64> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let path = entry?.path();
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let Some((host, gpu, metric)) = file_series(&host, &name) else {
            continue;
        };
        let series =
            SeriesKey::shared(metric, [("Hostname", host.as_str()), ("gpu", gpu.as_str())]);
        let mut points = Vec::new();
        for (t, v) in read_series(&path)? {
            let t_ms =
                nab::timestamp_ms(&t).with_context(|| format!("{}: time {t:?}", path.display()))?;
            points.push((t_ms, v));
        }
        if let Some(ms) = mean_ms {
            points = bucket_means(&points, ms);
        }
        for (t_ms, v) in points {
            samples.push((t_ms, Sample::new(series.clone(), t_ms, v)));
            *per_metric.entry(metric).or_default() += 1;
        }
    }
    samples.sort_by_key(|(t, _)| *t);
    let mut engine = AnomalyEngine::new(cfg.settings());
    // One batch per timestamp, as a sampler sends all GPUs of a tick together.
    for batch in samples.chunk_by(|a, b| a.0 == b.0) {
        let batch: Vec<Sample> = batch.iter().map(|(_, s)| s.clone()).collect();
        engine.process(&batch);
    }
    let anomalies = engine.list(&AnomalyFilter {
        limit: usize::MAX,
        ..Default::default()
    });
    let total: u64 = per_metric.values().sum();
    println!(
        "\n{host}: {total} samples, {} anomalies ({:.1} per 100 k), {} workload changes ({} firings folded)",
        anomalies.len(),
        anomalies.len() as f64 * 1e5 / total as f64,
        engine.counts().workload_changes,
        engine.counts().workload_firings
    );
    for (metric, n) in &per_metric {
        let (peer, a): (Vec<_>, Vec<_>) = anomalies
            .iter()
            .filter(|a| a.series.name() == *metric)
            .partition(|a| a.reason == Reason::PeerDivergence);
        let w = engine
            .workload_events()
            .filter(|e| e.metric == *metric)
            .count();
        println!(
            "  {metric:<26} {n:>7} samples {:>4} anomalies {:>7.1} per 100 k  {w:>3} workload changes  {:>3} peer divergences",
            a.len(),
            a.len() as f64 * 1e5 / *n as f64,
            peer.len()
        );
        for d in &peer {
            println!("    {}: {}", d.first_ms, d.detail);
        }
        if std::env::var_os("GPU_REPLAY_LIST").is_some() {
            for e in engine.workload_events().filter(|e| e.metric == *metric) {
                println!(
                    "    workload {} gpus {:?} {:?}: {}",
                    e.first_ms, e.gpus, e.cause, e.detail
                );
            }
            for d in &a {
                println!(
                    "    {} gpu {} {:?} value {:.1} expected {:.1}..{:.1}",
                    d.first_ms,
                    d.series.label("gpu").unwrap_or("-"),
                    d.reason,
                    d.value,
                    d.expected_low,
                    d.expected_high
                );
            }
        }
    }
    Ok(())
}

/// The mean of each `ms`-long bucket of `points` (in time order), stamped at the bucket's end.
fn bucket_means(points: &[(i64, f64)], ms: i64) -> Vec<(i64, f64)> {
    points
        .chunk_by(|a, b| a.0.div_euclid(ms) == b.0.div_euclid(ms))
        .map(|b| {
            let end = (b[0].0.div_euclid(ms) + 1) * ms;
            (end, b.iter().map(|p| p.1).sum::<f64>() / b.len() as f64)
        })
        .collect()
}

/// The host, GPU and metric of a file of `dir` (named `host`): `gpu<N>_<suffix>` or
/// `job<J>_worker<W>_batch_time_norm`.
fn file_series(host: &str, name: &str) -> Option<(String, String, &'static str)> {
    if let Some((gpu, suffix)) = name.strip_prefix("gpu").and_then(|n| n.split_once('_')) {
        let (_, metric) = METRICS.iter().find(|(s, _)| *s == suffix)?;
        return Some((host.to_string(), gpu.to_string(), metric));
    }
    let rest = name.strip_suffix("_batch_time_norm")?;
    let (job, worker) = rest.split_once("_worker")?;
    Some((
        format!("{host}/{job}"),
        worker.to_string(),
        BATCH_TIME_METRIC,
    ))
}
