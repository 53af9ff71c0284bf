//! Prometheus' own PromQL engine tests (`promql/testdata/*.test` of v2.42.0, in
//! `../shared/data/promql-testdata/`) run through Pulse's evaluator. The script language
//! (`load`, `clear`, `eval instant at`, `eval_ordered`, `eval_fail`) is read here as
//! Prometheus' `promql/test.go` reads it. Every `eval` must pass except those listed in
//! `docs/promql-conformance.md` with a reason; a listed one that passes fails the test
//! too, so the list stays true. Without the shared data the test says so and passes.

use std::path::{Path, PathBuf};

use pulse::model::series::Sample;
use pulse::promql::{self, Evaluator, Labels, Value};
use pulse::rules::parse_duration_ms;
use pulse::rules::promtool::{expand_values, parse_series_labels, series_key};
use pulse::{Retention, WindowStore};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/promql-testdata")
}

/// `file:line` of each eval allowed to fail, from the docs page's skip list.
fn skip_list() -> Vec<String> {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/promql-conformance.md"),
    )
    .expect("docs/promql-conformance.md");
    doc.lines()
        .filter_map(|l| l.strip_prefix("- `"))
        .filter_map(|l| l.split('`').next())
        .filter(|k| k.contains(".test:"))
        .map(str::to_string)
        .collect()
}

fn new_store() -> WindowStore {
    WindowStore::new(Retention {
        max_points: usize::MAX / 2,
        max_age_ms: i64::MAX / 4,
        max_series: usize::MAX / 2,
    })
}

/// One `eval` and what came of it.
struct Outcome {
    at: String,
    error: Option<String>,
}

/// `load <interval>` and its series lines.
fn load(store: &mut WindowStore, interval: &str, lines: &[&str]) -> Result<(), String> {
    let gap = parse_duration_ms(interval)?;
    for line in lines {
        let (series, values) = split_series(line)?;
        let key = series_key(&parse_series_labels(series)?);
        let samples: Vec<Sample> = expand_values(values)?
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| Sample::new(key.clone(), i as i64 * gap, v)))
            .collect();
        store.ingest(&samples);
    }
    Ok(())
}

/// A line `metric{a="b"} values`: the series and the rest (the braces may hold spaces).
fn split_series(line: &str) -> Result<(&str, &str), String> {
    let line = line.trim();
    let end = match line.find('{') {
        Some(open) if line[..open].chars().all(|c| !c.is_whitespace()) => {
            let mut in_string = false;
            let mut prev = ' ';
            let mut close = None;
            for (i, c) in line.char_indices().skip(open) {
                match c {
                    '"' if prev != '\\' => in_string = !in_string,
                    '}' if !in_string => {
                        close = Some(i + 1);
                        break;
                    }
                    _ => {}
                }
                prev = c;
            }
            close.ok_or_else(|| format!("unclosed braces in {line:?}"))?
        }
        _ => line.find(char::is_whitespace).unwrap_or(line.len()),
    };
    Ok((&line[..end], line[end..].trim()))
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "Inf" | "+Inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        "NaN" | "nan" => Ok(f64::NAN),
        _ => expand_values(s)?
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| format!("bad value {s:?}")),
    }
}

/// Prometheus' test `almostEqual`: both NaN, or within 1e-6 relative.
fn almost_equal(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || diff < f64::MIN_POSITIVE {
        return diff < 1e-6 * f64::MIN_POSITIVE;
    }
    diff / (a.abs() + b.abs()) < 1e-6
}

fn show(labels: &Labels) -> String {
    let items: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", items.join(", "))
}

/// Runs one `eval` command: the error, if it did not give what the script expects.
fn eval(store: &WindowStore, header: &str, expected: &[&str]) -> Result<(), String> {
    let rest = header.split_once(" at ").ok_or("no `at`")?.1;
    let (at, expr) = rest
        .split_once(char::is_whitespace)
        .ok_or("no expression")?;
    let t_ms = parse_duration_ms(at)?;
    let should_fail = header.starts_with("eval_fail");
    let ordered = header.starts_with("eval_ordered");
    let result = promql::parse(expr)
        .and_then(|q| Evaluator::new(store, t_ms).eval(&q.expr).map_err(|e| e.0));
    let got = match (result, should_fail) {
        (Err(_), true) => return Ok(()),
        (Ok(v), true) => return Err(format!("expected an error, got {v:?}")),
        (Err(e), false) => return Err(format!("error: {e}")),
        (Ok(v), false) => v,
    };
    match got {
        Value::Scalar(v) => {
            let [line] = expected else {
                return Err(format!("got scalar {v}, expected {expected:?}"));
            };
            let want = parse_value(line.trim())?;
            if !almost_equal(v, want) {
                return Err(format!("got scalar {v}, expected {want}"));
            }
            Ok(())
        }
        Value::String(s) => {
            let want = expected.first().map(|l| l.trim().trim_matches('"'));
            if want != Some(s.as_str()) {
                return Err(format!("got string {s:?}, expected {want:?}"));
            }
            Ok(())
        }
        Value::Vector(samples) => {
            let mut want: Vec<(Labels, f64)> = Vec::new();
            for line in expected {
                let (series, value) = split_series(line)?;
                want.push((parse_series_labels(series)?, parse_value(value)?));
            }
            if samples.len() != want.len() {
                let got: Vec<String> = samples
                    .iter()
                    .map(|s| format!("{} {}", show(&s.labels), s.value))
                    .collect();
                return Err(format!(
                    "got {} samples, expected {}: {got:?}",
                    samples.len(),
                    want.len()
                ));
            }
            for (i, (labels, value)) in want.iter().enumerate() {
                let found = samples.iter().position(|s| &s.labels == labels);
                let Some(at) = found else {
                    return Err(format!("expected {} not in the result", show(labels)));
                };
                if ordered && at != i {
                    return Err(format!("{} at position {at}, expected {i}", show(labels)));
                }
                if !almost_equal(samples[at].value, *value) {
                    return Err(format!(
                        "{}: got {}, expected {value}",
                        show(labels),
                        samples[at].value
                    ));
                }
            }
            Ok(())
        }
        Value::Matrix(_) => Err("got a range vector from an instant query".to_string()),
    }
}

/// Runs a script: one outcome per `eval`.
fn run_script(path: &Path) -> Vec<Outcome> {
    let text = std::fs::read_to_string(path).expect("read script");
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let lines: Vec<&str> = text.lines().collect();
    let mut store = new_store();
    let mut outcomes = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        let start = i;
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The block: following indented (or non-command) lines up to a blank line.
        let mut block = Vec::new();
        while i < lines.len()
            && !lines[i].trim().is_empty()
            && !lines[i].starts_with(|c: char| c.is_ascii_alphabetic())
        {
            if !lines[i].trim().starts_with('#') {
                block.push(lines[i]);
            }
            i += 1;
        }
        if line == "clear" {
            store = new_store();
        } else if let Some(interval) = line.strip_prefix("load ") {
            if let Err(e) = load(&mut store, interval.trim(), &block) {
                panic!("{name}:{}: cannot load: {e}", start + 1);
            }
        } else if line.starts_with("eval") {
            outcomes.push(Outcome {
                at: format!("{name}:{}", start + 1),
                error: eval(&store, line, &block).err(),
            });
        } else {
            panic!("{name}:{}: unknown command {line:?}", start + 1);
        }
    }
    outcomes
}

#[test]
fn prometheus_engine_tests_pass_except_the_documented_skips() {
    let dir = data_dir();
    if !dir.is_dir() {
        eprintln!(
            "no {} here: Prometheus' engine tests not run",
            dir.display()
        );
        return;
    }
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    scripts.sort();
    let skips = skip_list();
    let (mut total, mut passed) = (0, 0);
    let mut unexpected = Vec::new();
    let mut skipped_but_passing = Vec::new();
    for script in &scripts {
        let outcomes = run_script(script);
        let ok = outcomes.iter().filter(|o| o.error.is_none()).count();
        eprintln!(
            "{}: {ok}/{} evals pass",
            script.file_name().unwrap().to_string_lossy(),
            outcomes.len()
        );
        total += outcomes.len();
        passed += ok;
        for o in outcomes {
            match (&o.error, skips.contains(&o.at)) {
                (Some(e), false) => unexpected.push(format!("{}: {e}", o.at)),
                (None, true) => skipped_but_passing.push(o.at),
                _ => {}
            }
        }
    }
    eprintln!(
        "all: {passed}/{total} evals pass ({:.1} %), {} on the skip list",
        100.0 * passed as f64 / total as f64,
        skips.len()
    );
    assert!(total >= 560, "only {total} evals found");
    assert!(
        unexpected.is_empty(),
        "{} evals fail that docs/promql-conformance.md does not list:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        skipped_but_passing.is_empty(),
        "listed in docs/promql-conformance.md but passing (take them off the list): {skipped_but_passing:?}"
    );
}
