//! The detector on the Numenta Anomaly Benchmark's development subset, scored by the
//! benchmark's rules (`../shared/tools/nab-score`). Runs where the data and the scorer are
//! present (they are never copied into this repository) and says so when they are not.

use std::path::Path;
use std::process::Command;

use pulse::processors::anomaly::detector::DetectorConfig;
use pulse::processors::anomaly::nab;

const DATA: &str = "../shared/data/nab/data";
const WINDOWS: &str = "../shared/data/nab/windows_dev.json";
const SCORER: &str = "../shared/tools/nab-score";

#[test]
fn nab_dev_subset_scores_at_least_75_standard_and_67_low_fp() {
    if !(Path::new(DATA).is_dir() && Path::new(WINDOWS).is_file() && Path::new(SCORER).is_file()) {
        eprintln!("NAB data or scorer not found next to the repository: test not run");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let windows = nab::read_windows(Path::new(WINDOWS)).unwrap();
    let results = nab::replay_all(
        Path::new(DATA),
        Some(&windows),
        &DetectorConfig::default(),
        out.path(),
        None,
    )
    .unwrap();
    assert_eq!(results.len(), 19);

    let scored = Command::new("python3")
        .arg(SCORER)
        .args(["--data", DATA, "--windows", WINDOWS, "--json", "--results"])
        .arg(out.path())
        .output()
        .expect("python3 runs the scorer");
    assert!(
        scored.status.success(),
        "nab-score failed: {}",
        String::from_utf8_lossy(&scored.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&scored.stdout).unwrap();
    let score = |profile: &str| report["profiles"][profile]["normalized"].as_f64().unwrap();
    let (standard, low_fp, low_fn) = (
        score("standard"),
        score("reward_low_FP_rate"),
        score("reward_low_FN_rate"),
    );
    println!("NAB dev subset: standard {standard:.2}, reward_low_FP {low_fp:.2}, reward_low_FN {low_fn:.2}");
    assert!(standard >= 75.0, "standard {standard:.2}");
    assert!(low_fp >= 67.0, "reward_low_FP_rate {low_fp:.2}");
}
