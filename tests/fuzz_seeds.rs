//! Every committed fuzz seed (`fuzz/seeds/<target>/`) through its target's entry point
//! (`pulse::fuzzing`), on stable Rust: what the fuzzers start from never crashes, and the
//! promtool seed written for the target's rules passes. The fuzzers themselves run with
//! `scripts/fuzz` (nightly, cargo fuzz); see docs/bad-input-and-fuzzing.md.

use std::path::Path;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// A fuzz target: its name and its entry point.
type Target = (&'static str, fn(&[u8]));

#[test]
fn every_seed_runs_through_its_target() {
    let targets: [Target; 5] = [
        ("request_batch", pulse::fuzzing::request_batch),
        ("promql", pulse::fuzzing::promql),
        ("rule_file", pulse::fuzzing::rule_file),
        ("config", pulse::fuzzing::config),
        ("promtool_file", pulse::fuzzing::promtool_file),
    ];
    for (target, run) in targets {
        for (name, data) in seeds(target) {
            let result = std::panic::catch_unwind(|| run(&data));
            assert!(result.is_ok(), "{target}: {name} panicked");
        }
    }
}

#[test]
fn the_promtool_seed_passes_against_the_targets_rules() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/promtool_file/down.yml"),
    )
    .unwrap();
    let groups = pulse::rules::parse_file(
        "fuzz-rules.yml",
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/rules.yml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(pulse::rules::promtool::run_text(&text, &groups), Ok(vec![]));
}

#[test]
fn promtool_limits_refuse_runaway_files() {
    let groups = pulse::rules::parse_file("r.yml", "groups: []").unwrap();
    // A long series is fine when the test reads little of it (promtool loads it all)...
    let huge = "tests:\n  - input_series:\n      - series: up\n        values: '1x100000000'\n";
    assert_eq!(pulse::rules::promtool::run_text(huge, &groups), Ok(vec![]));
    // ... but not when the evaluations would read more than the limit.
    let read = "tests:\n  - interval: 1s\n    input_series:\n      - series: up\n        values: '1x100000000'\n    promql_expr_test:\n      - expr: up\n        eval_time: 200d\n        exp_samples: []\n";
    let err = pulse::rules::promtool::run_text(read, &groups).unwrap_err();
    assert!(err.contains("more than 10000000 points"), "{err}");
    let long = "evaluation_interval: 1ms\ntests:\n  - interval: 1ms\n    promql_expr_test:\n      - expr: up\n        eval_time: 1000d\n        exp_samples: []\n";
    let err = pulse::rules::promtool::run_text(long, &groups).unwrap_err();
    assert!(err.contains("evaluations"), "{err}");
    // Found by the fuzzer: ten years at a minute took 21 s with the target's two rules.
    let years = "tests:\n  - interval: 1m\n    promql_expr_test:\n      - expr: up\n        eval_time: 10y\n        exp_samples: []\n";
    let err = pulse::rules::promtool::run_text(years, &groups).unwrap_err();
    assert!(err.contains("more than 1000000 evaluations"), "{err}");
    // Fewer steps, but too many of them for the number of rules.
    let three = pulse::rules::parse_file(
        "r.yml",
        "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: up\n      - record: b\n        expr: up\n      - record: c\n        expr: up\n",
    )
    .unwrap();
    let days = "tests:\n  - interval: 1m\n    promql_expr_test:\n      - expr: up\n        eval_time: 625d\n        exp_samples: []\n";
    let err = pulse::rules::promtool::run_text(days, &three).unwrap_err();
    assert!(
        err.contains("evaluates the 3 rules 900001 times: more than 2000000 rule evaluations"),
        "{err}"
    );
}
