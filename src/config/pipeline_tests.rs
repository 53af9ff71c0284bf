//! Tests of `pipeline.rs`.

use super::*;

#[test]
fn the_built_in_pipeline_is_the_default() {
    assert_eq!(
        PipelineConfig::parse(EMBEDDED_NAME, EMBEDDED).unwrap(),
        PipelineConfig::default()
    );
}

#[test]
fn errors_name_line_and_key() {
    let err = PipelineConfig::parse("p.toml", "[sources.gpu]\nmode = \"cuda\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("p.toml:2:8: `sources.gpu.mode`: unknown variant `cuda`"),
        "{err}"
    );
    let err = PipelineConfig::parse(
        "p.toml",
        "[sources.gpu.simulated]\nscenarios = [\"steady\", \"meltdown\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("p.toml:2:") && err.contains("sources.gpu.simulated.scenarios"),
        "{err}"
    );
    let err = PipelineConfig::parse(
        "p.toml",
        "[[sinks]]\ntype = \"jsonl\"\npath = \"x\"\nflush = 1\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unknown field `flush`") && err.starts_with("p.toml:"),
        "{err}"
    );
}

#[test]
fn anomaly_settings_are_checked_where_they_are_written() {
    let err = PipelineConfig::parse("p.toml", "[anomaly]\nwatch = ['{gpu=\"0\"', 'x']\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("p.toml:2:") && err.contains("anomaly.watch"),
        "{err}"
    );
    let err = PipelineConfig::parse("p.toml", "[anomaly]\nenabled = true\nthreshold = 1.5\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("p.toml:3:") && err.contains("`anomaly.threshold`"),
        "{err}"
    );
    let err = PipelineConfig::parse("p.toml", "[anomaly.detector]\nbins = 1\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("p.toml:2:") && err.contains("anomaly.detector.bins"),
        "{err}"
    );
    let ok = PipelineConfig::parse("p.toml", "[anomaly]\nwatch = ['{gpu=\"0\"}']\n").unwrap();
    assert_eq!(ok.anomaly.watch.len(), 1);
}

#[test]
fn anomaly_threshold_comes_from_the_environment() {
    let env = |v: &str| (v == "ANOMALY_THRESHOLD").then(|| "0.9".to_string());
    let p = PipelineConfig::default().with_env(env).unwrap();
    assert_eq!(p.anomaly.threshold, 0.9);
    let bad = |v: &str| (v == "PULSE_ANOMALY_THRESHOLD").then(|| "high".to_string());
    let err = PipelineConfig::default()
        .with_env(bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("PULSE_ANOMALY_THRESHOLD") && err.contains("anomaly.threshold"),
        "{err}"
    );
}

#[test]
fn predictor_settings_are_checked_where_they_are_written() {
    let err = PipelineConfig::parse("p.toml", "[predictor]\nwindow_s = 600\nhorizons_s = [15]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("p.toml:3:") && err.contains("`predictor.horizons_s`"),
        "{err}"
    );
    let err = PipelineConfig::parse("p.toml", "[predictor]\nwindow_s = 100\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("predictor.window_s") && err.contains("10 points"),
        "{err}"
    );
    let err = PipelineConfig::parse("p.toml", "[window]\nmax_age_s = 600\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("predictor.window_s") && err.contains("max_age_s = 600"),
        "{err}"
    );
    let err = PipelineConfig::parse("p.toml", "[predictor]\nlevels = [0.8, 1.2]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("p.toml:2:") && err.contains("predictor.levels"),
        "{err}"
    );
}

#[test]
fn sinks_parse() {
    let p = PipelineConfig::parse(
        "p.toml",
        "[[sinks]]\ntype = \"jsonl\"\npath = \"/tmp/x.jsonl\"\n",
    )
    .unwrap();
    assert!(
        matches!(&p.sinks[0], SinkConfig::Jsonl { flush_interval_ms, .. } if flush_interval_ms.get() == 1000)
    );
}
