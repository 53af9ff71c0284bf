//! Every file in `config/` and `pipelines/` parses and validates, and the CLI reports a
//! bad one with file, line and key, exiting 2.

use std::path::Path;
use std::process::Command;

use pulse::config::pipeline::PipelineConfig;
use pulse::config::service::ServiceConfig;

fn toml_files(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no TOML in {}", dir.display());
    files
}

#[test]
fn every_service_config_parses() {
    for f in toml_files("config") {
        let text = std::fs::read_to_string(&f).unwrap();
        ServiceConfig::load(&f.display().to_string(), &text, |_| None)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn every_pipeline_parses() {
    for f in toml_files("pipelines") {
        let text = std::fs::read_to_string(&f).unwrap();
        PipelineConfig::parse(&f.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn pulse() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pulse"));
    c.env_remove("PULSE_CONFIG").env_remove("PULSE_PIPELINE");
    c
}

#[test]
fn check_config_accepts_the_shipped_files() {
    for p in toml_files("pipelines") {
        let out = pulse()
            .args([
                "check-config",
                "--config",
                "config/pulse.toml",
                "--pipeline",
            ])
            .arg(&p)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_bad_file_is_reported_with_file_line_and_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[window]\nmax_points = 10\nmax_age = 5\n").unwrap();
    let out = pulse()
        .arg("check-config")
        .arg("--pipeline")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:3:1: `window.max_age`", bad.display())),
        "{err}"
    );

    std::fs::write(&bad, "[server]\nlisten = \"not an address\"\n").unwrap();
    let out = pulse()
        .arg("serve")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2:10: `server.listen`"), "{err}");

    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("bad.yml"),
        "groups:\n  - name: gpu\n    rules:\n      - alert: Hot\n        expr: temp >\n",
    )
    .unwrap();
    let out = pulse()
        .arg("check-config")
        .env(
            "PULSE_RULE_PATHS",
            format!("[{:?}]", rules.display().to_string()),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yml: group \"gpu\", alert \"Hot\" (line 4): expr"),
        "{err}"
    );

    let out = pulse()
        .arg("check-config")
        .env("PULSE_MAX_BODY_BYTES", "-1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PULSE_MAX_BODY_BYTES"));
}

#[test]
fn version_and_help() {
    let out = pulse().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("pulse {}", env!("CARGO_PKG_VERSION"))
    );
    let out = pulse().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "agent", "aggregate", "check-config", "probe"] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[test]
fn agent_and_aggregate_without_brokers_are_a_configuration_error() {
    for role in ["agent", "aggregate"] {
        let out = pulse()
            .arg(role)
            .env_remove("PULSE_KAFKA_BROKERS")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{role}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "`pulse {role}` needs kafka.brokers (or PULSE_KAFKA_BROKERS)"
            )),
            "{err}"
        );
    }
}

#[test]
fn check_config_says_what_runs_and_names_a_bad_anomaly_threshold() {
    let out = pulse()
        .arg("check-config")
        .env("ANOMALY_THRESHOLD", "0.9")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("anomaly detector on (2 selector(s), threshold 0.9)")
            && stdout.contains("predictor on"),
        "{stdout}"
    );
    let out = pulse()
        .arg("check-config")
        .env("ANOMALY_THRESHOLD", "high")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("environment variable ANOMALY_THRESHOLD: anomaly.threshold"),
        "{stderr}"
    );
}

#[test]
fn listen_and_rules_come_from_the_command_line_and_serve_flags_work_without_serve() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("one.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n",
    )
    .unwrap();
    let out = pulse()
        .args(["check-config", "--listen", "0.0.0.0:7777", "--rules"])
        .arg(dir.path())
        .env("PULSE_RULES_BUILTIN_PACK", "false")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("listen 0.0.0.0:7777"), "{stdout}");
    assert!(stdout.contains(", 1 rule(s),"), "{stdout}");

    // `pulse --config FILE` (no command) serves with that file: a missing one is named.
    let out = pulse().args(["--config", "no-such.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such.toml"), "{stderr}");

    let out = pulse()
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
}

#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::{BufRead, BufReader};
    let mut child = pulse()
        .args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut listening = None;
    for line in BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .take(50)
    {
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON object: {line:?}: {e}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{v}");
        let message = v["fields"]["message"].as_str().unwrap_or_default();
        if message.contains("listening on http://127.0.0.1:") {
            listening = Some(message.to_string());
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(listening.is_some(), "no listening line in the JSON log");
}
