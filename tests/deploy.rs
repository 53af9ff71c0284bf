//! The deployment files: the systemd unit passes `systemd-analyze verify` (with the built
//! binary in place of /usr/local/bin/pulse) with no warning, and runs `pulse serve` (whose
//! built-in settings `tests/config_files.rs` checks with `check-config`). Skipped, saying so,
//! where systemd-analyze is not installed (`.ci/run` installs it).

use std::process::Command;

const UNIT: &str = "deploy/systemd/pulse.service";

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
