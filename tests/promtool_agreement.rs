//! Agreement with Prometheus itself: every promtool test file in `tests/promtool/` runs
//! through both `promtool test rules` (Debian's prometheus package; `.ci/run` installs it)
//! and `pulse test rules`. Both must pass each file, except the `fail_*` files, which both
//! must fail.

use std::path::PathBuf;
use std::process::Command;

fn test_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/promtool");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    files
}

fn passes(program: &str, args: &[&str], file: &PathBuf) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); install it: apt-get install prometheus")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn pulse_and_promtool_agree_on_every_test_file() {
    let files = test_files();
    assert!(
        files.len() >= 30,
        "only {} promtool test files",
        files.len()
    );
    let mut disagreements = Vec::new();
    for f in &files {
        let expect_pass = !f
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("fail_");
        let (promtool_ok, promtool_out) = passes("promtool", &["test", "rules"], f);
        let (pulse_ok, pulse_out) = passes(env!("CARGO_BIN_EXE_pulse"), &["test", "rules"], f);
        if promtool_ok != expect_pass || pulse_ok != expect_pass {
            disagreements.push(format!(
                "{}: expected {}, promtool {}, pulse {}\n--- promtool:\n{promtool_out}\n--- pulse:\n{pulse_out}",
                f.display(),
                if expect_pass { "pass" } else { "fail" },
                if promtool_ok { "passed" } else { "failed" },
                if pulse_ok { "passed" } else { "failed" },
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n\n"));
}
