//! The deployment files.
//!
//! - The systemd unit passes `systemd-analyze verify` (with the built binary in place of
//!   /usr/local/bin/pulse) with no warning, and runs `pulse serve` (whose built-in settings
//!   `tests/config_files.rs` checks with `check-config`).
//! - The Kubernetes manifests pass `kubernetes-validate --strict` against a pinned Kubernetes
//!   version (the ServiceMonitor, a Prometheus Operator resource, has no schema there), fit
//!   together (selectors, port names, probes, the rules volume), and the DaemonSet's container
//!   settings with the rules ConfigMap, laid out as the kubelet mounts it, pass
//!   `pulse check-config`.
//!
//! The external checks skip, saying so, where their tool is not installed (`.ci/run` installs
//! both).

use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const UNIT: &str = "deploy/systemd/pulse.service";
const KUBERNETES: &str = "deploy/kubernetes";
/// The oldest Kubernetes release still supported upstream when the manifests were written.
const KUBERNETES_VERSION: &str = "1.32.0";

#[test]
fn the_systemd_unit_verifies_cleanly() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze not found");
        return;
    }
    let unit = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(UNIT))
        .unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/pulse serve\n"),
        "{unit}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pulse.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/pulse", env!("CARGO_BIN_EXE_pulse")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "systemd-analyze warned: {stderr}");
}

fn manifest_paths() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(KUBERNETES);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    paths
}

/// The manifest of `kind`: each file holds one.
fn manifest(kind: &str) -> Value {
    manifest_paths()
        .iter()
        .map(|p| serde_yaml::from_str::<Value>(&std::fs::read_to_string(p).unwrap()).unwrap())
        .find(|m| m["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {KUBERNETES}"))
}

#[test]
fn the_kubernetes_manifests_validate_strictly() {
    let tool = std::env::var("KUBERNETES_VALIDATE").unwrap_or("kubernetes-validate".to_string());
    if Command::new(&tool).arg("--version").output().is_err() {
        eprintln!("skipped: {tool} not found (pip install kubernetes-validate)");
        return;
    }
    let out = Command::new(&tool)
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .args(manifest_paths())
        .output()
        .unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    let lines: Vec<&str> = report.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), manifest_paths().len(), "{report}");
    for line in lines {
        let schema_less = line.contains("servicemonitor.yaml")
            && line.contains("Couldn't find schema for kind ServiceMonitor");
        assert!(
            line.starts_with("INFO") && line.contains(" passed ") || schema_less,
            "{line}"
        );
    }
}

#[test]
fn the_kubernetes_manifests_fit_together() {
    let daemonset = manifest("DaemonSet");
    let service = manifest("Service");
    let monitor = manifest("ServiceMonitor");
    let rules = manifest("ConfigMap");
    let pod = &daemonset["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let is_subset = |part: &Value, of: &Value| {
        let (part, of) = (part.as_mapping().unwrap(), of.as_mapping().unwrap());
        !part.is_empty() && part.iter().all(|(k, v)| of.get(k) == Some(v))
    };
    assert!(is_subset(
        &daemonset["spec"]["selector"]["matchLabels"],
        &pod["metadata"]["labels"]
    ));
    assert!(is_subset(
        &service["spec"]["selector"],
        &pod["metadata"]["labels"]
    ));
    assert!(is_subset(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    let port = &container["ports"][0];
    assert_eq!(service["spec"]["ports"][0]["targetPort"], port["name"]);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path);
        assert_eq!(container[probe]["httpGet"]["port"], port["name"]);
    }
    let env: Vec<(String, String)> = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            let value = e["value"].as_str().unwrap_or("node-1");
            (e["name"].as_str().unwrap().to_string(), value.to_string())
        })
        .collect();
    let listen = &env.iter().find(|(k, _)| k == "PULSE_LISTEN").unwrap().1;
    assert!(listen.ends_with(&format!(":{}", port["containerPort"].as_u64().unwrap())));
    let hostname = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "PULSE_HOSTNAME");
    assert_eq!(
        hostname.unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    assert_eq!(
        pod["spec"]["volumes"][0]["configMap"]["name"],
        rules["metadata"]["name"]
    );
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args, ["serve", "--rules", mount]);

    // The ConfigMap as the kubelet mounts it: the files live in a hidden folder, with one
    // link per key beside it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("..data")).unwrap();
    let files = rules["data"].as_mapping().unwrap();
    for (name, text) in files {
        let name = name.as_str().unwrap();
        std::fs::write(dir.path().join("..data").join(name), text.as_str().unwrap()).unwrap();
        std::os::unix::fs::symlink(Path::new("..data").join(name), dir.path().join(name)).unwrap();
    }
    let check = |rules: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pulse"));
        cmd.arg("check-config").env_remove("PULSE_RULE_PATHS");
        if let Some(rules) = rules {
            cmd.arg("--rules")
                .arg(rules)
                .envs(env.iter().map(|(k, v)| (k, v)));
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        text
    };
    let rule_count = |text: &str| -> usize {
        let before = text.split(" rule(s)").next().unwrap();
        before.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let builtin = check(None);
    let deployed = check(Some(dir.path()));
    assert!(
        deployed.contains(&format!("listen {listen},")),
        "{deployed}"
    );
    let site_rules: usize = files
        .values()
        .map(|text| {
            text.as_str().unwrap().matches("- alert:").count()
                + text.as_str().unwrap().matches("- record:").count()
        })
        .sum();
    assert!(site_rules > 0);
    assert_eq!(
        rule_count(&deployed),
        rule_count(&builtin) + site_rules,
        "{deployed}"
    );
}
