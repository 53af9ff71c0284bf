//! Replays Numenta Anomaly Benchmark (NAB) series through the [`Detector`], one value at a
//! time, and writes the results in NAB's format, so `nab-score` (or NAB's own scorer) can
//! score them. Used by `examples/nab.rs` and by `tests/nab.rs`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::detector::{Detector, DetectorConfig, Reason};

/// Detector name in the result file names (`<category>/pulse_<file>.csv`).
pub const DETECTOR_NAME: &str = "pulse";

/// One replayed file.
#[derive(Debug, Clone)]
pub struct FileResult {
    /// `<category>/<file>.csv`
    pub name: String,
    pub rows: usize,
    /// Rows scored at or above `FIRE_LEVEL`.
    pub detections: usize,
    /// Time spent in the detector alone.
    pub detector_time: Duration,
}

/// Labelled windows, `{"<category>/<file>.csv": [[start, end], ...]}` (NAB's format).
pub type Windows = HashMap<String, Vec<(String, String)>>;

/// Reads a windows file.
pub fn read_windows(path: &Path) -> anyhow::Result<Windows> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a NAB windows file", path.display()))
}

/// Every `<category>/<file>.csv` under `data`, sorted.
pub fn data_files(data: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for category in std::fs::read_dir(data).with_context(|| data.display().to_string())? {
        let category = category?.path();
        if !category.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&category)? {
            let file = file?.path();
            if file.extension().is_some_and(|e| e == "csv") {
                let c = category.file_name().unwrap().to_string_lossy();
                let f = file.file_name().unwrap().to_string_lossy();
                files.push(format!("{c}/{f}"));
            }
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("{}: no <category>/<file>.csv found", data.display());
    }
    Ok(files)
}

/// Reads a NAB data file: `timestamp,value` rows after a header.
pub fn read_series(path: &Path) -> anyhow::Result<Vec<(String, f64)>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let (t, v) = line
            .split_once(',')
            .with_context(|| format!("{}:{}: expected `timestamp,value`", path.display(), i + 1))?;
        let v: f64 = v.trim().parse().with_context(|| {
            format!("{}:{}: value {v:?} is not a number", path.display(), i + 1)
        })?;
        rows.push((t.trim().to_string(), v));
    }
    Ok(rows)
}

/// A NAB-format timestamp, `YYYY-MM-DD HH:MM:SS[.fff]` (UTC), as Unix ms.
pub fn timestamp_ms(t: &str) -> Option<i64> {
    let (date, time) = t.split_once(' ')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut h = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (h.next()?.ok()?, h.next()?.ok()?, h.next()?.ok()?);
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    let days = crate::promql::days_from_civil(y, m, day);
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms)
}

fn trim_fraction(t: &str) -> &str {
    t.split('.').next().unwrap_or(t)
}

/// Adds a linear drift to `rows`: `fraction` of the series' range over its length, upwards
/// when `up`, downwards otherwise. A robustness check: real series grow and sink, NAB's
/// development subset mostly does not, and a detector should not read drift as anomalies.
pub fn add_drift(rows: &mut [(String, f64)], fraction: f64, up: bool) {
    let (lo, hi) = rows
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let slope = if up { 1.0 } else { -1.0 } * fraction * span / rows.len() as f64;
    for (i, (_, v)) in rows.iter_mut().enumerate() {
        *v += slope * i as f64;
    }
}

/// Replays one file and writes `<out>/<category>/pulse_<file>.csv`; `drift` (see
/// [`add_drift`]: the fraction, and whether upwards) is added to its values first.
pub fn replay_file(
    data: &Path,
    name: &str,
    windows: Option<&Windows>,
    cfg: &DetectorConfig,
    out: &Path,
    drift: Option<(f64, bool)>,
) -> anyhow::Result<FileResult> {
    let mut rows = read_series(&data.join(name))?;
    if let Some((fraction, up)) = drift {
        add_drift(&mut rows, fraction, up);
    }
    let mut detector = Detector::new(cfg.clone());
    let started = Instant::now();
    let verdicts: Vec<(f64, Reason)> = rows
        .iter()
        .map(|(_, v)| {
            let verdict = detector.update(*v);
            (verdict.score, verdict.reason)
        })
        .collect();
    let detector_time = started.elapsed();

    // Ground-truth label per row, as NAB writes it (1 inside a window).
    let spans: Vec<(&str, &str)> = windows
        .and_then(|w| w.get(name))
        .map(|w| {
            w.iter()
                .map(|(a, b)| (trim_fraction(a), trim_fraction(b)))
                .collect()
        })
        .unwrap_or_default();
    let (category, file) = name.split_once('/').context("name is <category>/<file>")?;
    let dir = out.join(category);
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    let path: PathBuf = dir.join(format!("{DETECTOR_NAME}_{file}"));
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&path).with_context(|| path.display().to_string())?,
    );
    writeln!(w, "timestamp,value,anomaly_score,label,reason")?;
    for ((t, v), (s, reason)) in rows.iter().zip(&verdicts) {
        // Timestamps compare as text: NAB's are `YYYY-MM-DD HH:MM:SS`.
        let label = spans
            .iter()
            .any(|(a, b)| *a <= t.as_str() && t.as_str() <= *b) as u8;
        writeln!(w, "{t},{v},{s},{label},{reason:?}")?;
    }
    w.flush()?;
    Ok(FileResult {
        name: name.to_string(),
        rows: rows.len(),
        detections: verdicts
            .iter()
            .filter(|(s, _)| *s >= super::detector::FIRE_LEVEL)
            .count(),
        detector_time,
    })
}

/// Replays every file under `data`. With `drift` (a fraction of each series' range), every
/// series drifts by it over its length, upwards and downwards in turn.
pub fn replay_all(
    data: &Path,
    windows: Option<&Windows>,
    cfg: &DetectorConfig,
    out: &Path,
    drift: Option<f64>,
) -> anyhow::Result<Vec<FileResult>> {
    data_files(data)?
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let drift = drift.map(|fraction| (fraction, i % 2 == 0));
            replay_file(data, name, windows, cfg, out, drift)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_read_as_unix_ms() {
        use super::timestamp_ms;
        assert_eq!(timestamp_ms("1970-01-01 00:00:01.5"), Some(1500));
        assert_eq!(timestamp_ms("2020-01-01 00:00:00"), Some(1_577_836_800_000));
        assert_eq!(
            timestamp_ms("2024-02-29 12:30:45.123"),
            Some(1_709_209_845_123)
        );
        assert_eq!(timestamp_ms("yesterday"), None);
    }
}
