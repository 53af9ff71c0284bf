//! `pulse test rules`: runs promtool unit-test files (`rule_files`, `evaluation_interval`,
//! `input_series` in the expanding notation, `alert_rule_test`, `promql_expr_test`) through
//! Pulse's own rule evaluation, and reports like `promtool test rules`.

use std::collections::BTreeMap;
use std::path::Path;

use promql_parser::parser::Expr;
use serde::Deserialize;

use super::group::GroupState;
use super::parse_duration_ms;
use crate::model::series::{Sample, SeriesKey};
use crate::promql::{self, stale_nan, Evaluator, Labels, Value, NAME};
use crate::store::window::{Retention, WindowStore};

/// Default `evaluation_interval`.
const DEFAULT_INTERVAL_MS: i64 = 60_000;

/// Where a test group's input samples go when it sets no `interval`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MissingInterval {
    /// All at time 0, the first value of each series kept: what `promtool test rules`
    /// of Prometheus 2.42 does (it loads the series with `load 0s`).
    #[default]
    Zero,
    /// Spaced by the file's `evaluation_interval`, as newer promtool releases do.
    EvaluationInterval,
}

/// How `pulse test rules` runs a file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub missing_interval: MissingInterval,
}

use super::yaml::{opt_text, text, text_map};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default, deserialize_with = "opt_text")]
    evaluation_interval: Option<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default, deserialize_with = "opt_text")]
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
    #[serde(default, deserialize_with = "text_map")]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    /// No values (or `null`): an empty series, as promtool loads it.
    #[serde(default, deserialize_with = "text")]
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    /// promtool's default is 0.
    #[serde(default = "zero", deserialize_with = "text")]
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default, deserialize_with = "text_map")]
    exp_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "text_map")]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    #[serde(deserialize_with = "text")]
    expr: String,
    #[serde(default = "zero", deserialize_with = "text")]
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default, deserialize_with = "text")]
    labels: String,
    #[serde(deserialize_with = "text")]
    value: String,
}

fn zero() -> String {
    "0".to_string()
}

/// The result of one test file.
#[derive(Debug)]
pub struct FileReport {
    pub file: String,
    /// Failed expectations, as promtool words them.
    pub failures: Vec<String>,
    /// The file could not be run at all.
    pub error: Option<String>,
}

impl FileReport {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.failures.is_empty()
    }

    /// promtool's report text.
    pub fn render(&self) -> String {
        let mut s = format!("Unit Testing:  {}\n", self.file);
        if let Some(e) = &self.error {
            s.push_str(&format!("  FAILED:\n    {e}\n"));
        } else if self.failures.is_empty() {
            s.push_str("  SUCCESS\n");
        } else {
            s.push_str("  FAILED:\n");
            for f in &self.failures {
                s.push_str(f);
                s.push('\n');
            }
        }
        s
    }
}

fn duration_ms(s: &str) -> Result<i64, String> {
    parse_duration_ms(s.trim())
}

/// Labels of a series written as `name{a="b"}` or `{a="b"}`.
pub fn parse_series_labels(s: &str) -> Result<Labels, String> {
    if s.trim() == "{}" {
        return Ok(Labels::new());
    }
    let expr = crate::promql::parse_expr(s).map_err(|e| format!("series {s:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!("series {s:?}: not a series"));
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(n) = vs.name {
        pairs.push((NAME.to_string(), n));
    }
    for m in vs.matchers.matchers {
        if !matches!(m.op, promql_parser::label::MatchOp::Equal) {
            return Err(format!("series {s:?}: only `=` matchers describe a series"));
        }
        pairs.push((m.name, m.value));
    }
    let labels = Labels::from_pairs(pairs);
    Ok(labels)
}

/// The store's key of a series written as labels (`__name__` included).
pub fn series_key(labels: &Labels) -> crate::model::series::Series {
    let name = labels.get(NAME).cloned().unwrap_or_default();
    SeriesKey::shared(
        name,
        labels
            .iter()
            .filter(|(k, _)| &***k != NAME)
            .map(|(k, v)| (k.clone(), v.clone())),
    )
}

fn parse_number(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .map_err(|_| format!("{s:?} is not a number"))
}

/// Points one test group may load, all series together: a test file is not a load test,
/// and a typo (`1x1000000000`) must be an error, not the machine's memory.
pub const MAX_POINTS: usize = 10_000_000;
/// Evaluation steps one test group may take (`eval_time / interval`): a year at a minute.
/// Every step evaluates every rule; 5 M steps of a few rules took 21 s (found by the
/// `promtool_file` fuzzer: `eval_time: 10y`).
pub const MAX_STEPS: i64 = 1_000_000;
/// Rule evaluations one test group may take (steps × rules): about 4 s of work here.
pub const MAX_RULE_EVALUATIONS: i64 = 2_000_000;

/// Expands promtool's series notation: `1 2 _ stale 0+10x5 3-1x2 7x3 _x2`; more than
/// [`MAX_POINTS`] points is an error.
pub fn expand_values(values: &str) -> Result<Vec<Option<f64>>, String> {
    let out = expand_values_upto(values, MAX_POINTS + 1)?;
    if out.len() > MAX_POINTS {
        return Err(format!("more than {MAX_POINTS} points"));
    }
    Ok(out)
}

/// The first `limit` points of a series in promtool's notation (the whole text is checked):
/// a test reads nothing after its last evaluation, however long the series written.
pub fn expand_values_upto(values: &str, limit: usize) -> Result<Vec<Option<f64>>, String> {
    let mut out: Vec<Option<f64>> = Vec::new();
    for token in values.split_whitespace() {
        let room = limit.saturating_sub(out.len());
        match token {
            "_" => out.extend(std::iter::repeat_n(None, room.min(1))),
            "stale" => out.extend(std::iter::repeat_n(Some(stale_nan()), room.min(1))),
            _ => {
                let Some((head, times)) = token
                    .rsplit_once('x')
                    .filter(|(_, n)| n.parse::<usize>().is_ok())
                else {
                    let v = parse_number(token)?;
                    out.extend(std::iter::repeat_n(Some(v), room.min(1)));
                    continue;
                };
                let n: usize = times.parse().expect("checked");
                if head == "_" {
                    out.extend(std::iter::repeat_n(None, n.min(room)));
                    continue;
                }
                // Split `a+b` / `a-b` at the operator that is not a sign or an exponent's.
                let bytes = head.as_bytes();
                let op_at = (1..bytes.len()).rev().find(|&i| {
                    (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E')
                });
                let (start, step) = match op_at {
                    Some(i) => {
                        let step = parse_number(&head[i + 1..])?;
                        (
                            parse_number(&head[..i])?,
                            if bytes[i] == b'-' { -step } else { step },
                        )
                    }
                    None => (parse_number(head)?, 0.0),
                };
                let count = n.saturating_add(1).min(room);
                out.extend((0..count).map(|k| Some(start + step * k as f64)));
            }
        }
    }
    Ok(out)
}

fn format_labels<K: std::fmt::Display, V: std::fmt::Debug>(
    l: impl IntoIterator<Item = (K, V)>,
) -> String {
    let inner: Vec<String> = l.into_iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Equal within rounding (Go's and Rust's float arithmetic may differ in the last bits);
/// NaN equals nothing, as in promtool's `reflect.DeepEqual`.
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Go's `time.Duration` text of milliseconds (`1m30s`, `0s`), as promtool prints times.
fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    let (h, m, s, rest) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let secs = if rest == 0 {
        format!("{s}s")
    } else {
        format!("{}s", format!("{s}.{rest:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// Runs one promtool test file.
pub fn run_file(path: &Path, options: Options) -> FileReport {
    let file = path.display().to_string();
    let mut report = FileReport {
        file: file.clone(),
        failures: Vec::new(),
        error: None,
    };
    let result = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| super::yaml::from_str::<TestFile>(&text).map_err(|e| e.to_string()))
        .and_then(|doc| run_doc(path, doc, options, &mut report.failures));
    if let Err(e) = result {
        report.error = Some(e);
    }
    report
}

/// Runs the tests of a test file's text against `groups` (its `rule_files` are not read):
/// the failures, or why the file cannot run. The fuzz target's entry.
pub fn run_text(text: &str, groups: &[super::RuleGroup]) -> Result<Vec<String>, String> {
    let doc: TestFile = super::yaml::from_str(text).map_err(|e| e.to_string())?;
    let mut failures = Vec::new();
    run_tests(doc, groups, Options::default(), &mut failures)?;
    Ok(failures)
}

fn run_doc(
    path: &Path,
    doc: TestFile,
    options: Options,
    failures: &mut Vec<String>,
) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut groups = Vec::new();
    for pattern in &doc.rule_files {
        // Globs, as promtool reads them; a pattern matching nothing is a warning there.
        let files = super::glob::glob(&dir.join(pattern));
        if files.is_empty() {
            eprintln!(
                "  WARNING: no file match pattern {}",
                dir.join(pattern).display()
            );
        }
        for p in files {
            groups.extend(super::load_file(&p).map_err(|e| e.to_string())?);
        }
    }
    if !doc.group_eval_order.is_empty() {
        let order = |name: &str| {
            doc.group_eval_order
                .iter()
                .position(|g| g == name)
                .unwrap_or(usize::MAX)
        };
        groups.sort_by_key(|g| order(&g.name));
    }
    run_tests(doc, &groups, options, failures)
}

/// Runs every test group of `doc` against `groups`, at the file's evaluation interval.
fn run_tests(
    doc: TestFile,
    groups: &[super::RuleGroup],
    options: Options,
    failures: &mut Vec<String>,
) -> Result<(), String> {
    let eval_interval = doc
        .evaluation_interval
        .as_deref()
        .map(duration_ms)
        .transpose()?
        .unwrap_or(DEFAULT_INTERVAL_MS);
    if eval_interval <= 0 {
        return Err("evaluation_interval must be positive".to_string());
    }
    for tg in doc.tests {
        run_group(&tg, groups, eval_interval, options, failures)?;
    }
    Ok(())
}

fn run_group(
    tg: &TestGroup,
    groups: &[super::RuleGroup],
    eval_interval: i64,
    options: Options,
    failures: &mut Vec<String>,
) -> Result<(), String> {
    let _ = &tg.name;
    let interval = match (tg.interval.as_deref(), options.missing_interval) {
        (Some(i), _) => duration_ms(i)?,
        (None, MissingInterval::Zero) => 0,
        (None, MissingInterval::EvaluationInterval) => eval_interval,
    };
    if interval < 0 {
        return Err("interval must not be negative".to_string());
    }
    let mut store = WindowStore::new(Retention {
        max_points: usize::MAX / 2,
        max_age_ms: i64::MAX / 4,
        max_series: usize::MAX / 2,
    });
    let mut alert_tests: Vec<(i64, &AlertTest)> = tg
        .alert_rule_test
        .iter()
        .map(|t| duration_ms(&t.eval_time).map(|ms| (ms, t)))
        .collect::<Result<_, _>>()?;
    alert_tests.sort_by_key(|(t, _)| *t);
    let expr_times: Vec<i64> = tg
        .promql_expr_test
        .iter()
        .map(|t| duration_ms(&t.eval_time))
        .collect::<Result<_, _>>()?;
    let maxt = alert_tests
        .iter()
        .map(|(t, _)| *t)
        .chain(expr_times.iter().copied())
        .max()
        .unwrap_or(0);

    // Points after the last evaluation are never read: they are not loaded.
    let needed = if interval == 0 {
        1
    } else {
        usize::try_from(maxt / interval + 1).unwrap_or(usize::MAX)
    };
    let mut points = 0usize;
    for s in &tg.input_series {
        let key = series_key(&parse_series_labels(&s.series)?);
        let mut samples: Vec<Sample> = expand_values_upto(&s.values, needed.min(MAX_POINTS + 1))
            .map_err(|e| format!("series {:?}: {e}", s.series))?
            .into_iter()
            .inspect(|_| points += 1)
            .enumerate()
            .filter_map(|(i, v)| {
                v.map(|v| Sample::new(key.clone(), (i as i64).saturating_mul(interval), v))
            })
            .collect();
        // Samples at one time: Prometheus' storage keeps the first.
        samples.dedup_by_key(|s| s.timestamp_ms);
        if points > MAX_POINTS {
            return Err(format!("input_series: more than {MAX_POINTS} points"));
        }
        store.ingest(&samples);
    }
    let env = super::alerting::TemplateEnv {
        external_labels: std::sync::Arc::new(tg.external_labels.clone()),
        external_url: tg.external_url.clone().unwrap_or_default(),
    };
    let mut states: Vec<GroupState> = groups
        .iter()
        .cloned()
        .map(|g| {
            let mut state = GroupState::new(g);
            state.template_env = env.clone();
            state
        })
        .collect();

    let steps = maxt / eval_interval + 1;
    if steps > MAX_STEPS {
        return Err(format!(
            "eval_time {maxt} ms at evaluation_interval {eval_interval} ms is more than \
             {MAX_STEPS} evaluations"
        ));
    }
    let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
    if steps.saturating_mul(rules as i64) > MAX_RULE_EVALUATIONS {
        return Err(format!(
            "eval_time {maxt} ms at evaluation_interval {eval_interval} ms evaluates the \
             {rules} rules {steps} times: more than {MAX_RULE_EVALUATIONS} rule evaluations"
        ));
    }
    let mut next_alert_test = 0;
    let mut ts = 0;
    while ts <= maxt {
        let mut eval_errors = Vec::new();
        for g in &mut states {
            let out = g.eval(&mut store, ts);
            for (rule, e) in out.errors {
                eval_errors.push(format!(
                    "    rule: {rule}, time: {}, err: {e}",
                    go_duration(ts)
                ));
            }
        }
        // promtool ends the test group at the first step whose rules failed to evaluate.
        if !eval_errors.is_empty() {
            failures.extend(eval_errors);
            return Ok(());
        }
        while next_alert_test < alert_tests.len()
            && alert_tests[next_alert_test].0 < ts.saturating_add(eval_interval)
        {
            let (t, test) = alert_tests[next_alert_test];
            next_alert_test += 1;
            if t < ts {
                continue;
            }
            check_alerts(test, &states, failures);
        }
        let Some(next) = ts.checked_add(eval_interval) else {
            break;
        };
        ts = next;
    }

    for (test, t) in tg.promql_expr_test.iter().zip(expr_times) {
        check_expr(test, t, &store, failures)?;
    }
    Ok(())
}

type LabelsAndAnnotations = (BTreeMap<String, String>, BTreeMap<String, String>);

fn check_alerts(test: &AlertTest, states: &[GroupState], failures: &mut Vec<String>) {
    let mut got: Vec<LabelsAndAnnotations> = Vec::new();
    for g in states {
        for rule_state in g.alerts.iter().flatten() {
            if rule_state.spec.name != test.alertname {
                continue;
            }
            for a in rule_state
                .alerts
                .values()
                .filter(|a| a.state == super::alerting::AlertState::Firing)
            {
                got.push((a.labels.clone(), a.annotations.clone()));
            }
        }
    }
    let mut exp: Vec<LabelsAndAnnotations> = test
        .exp_alerts
        .iter()
        .map(|e| {
            // promtool writes the test's alertname over any given in `exp_labels`.
            let mut labels = e.exp_labels.clone();
            labels.insert("alertname".to_string(), test.alertname.clone());
            (labels, e.exp_annotations.clone())
        })
        .collect();
    got.sort();
    exp.sort();
    if got != exp {
        let show = |v: &[LabelsAndAnnotations]| {
            let items: Vec<String> = v
                .iter()
                .map(|(l, a)| {
                    format!(
                        "\n        0:\n          Labels:{}\n          Annotations:{}",
                        format_labels(l.iter()),
                        format_labels(a.iter())
                    )
                })
                .collect();
            if items.is_empty() {
                "[]".to_string()
            } else {
                items.concat()
            }
        };
        failures.push(format!(
            "    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
            test.alertname,
            test.eval_time,
            show(&exp),
            show(&got)
        ));
    }
}

fn check_expr(
    test: &ExprTest,
    t: i64,
    store: &WindowStore,
    failures: &mut Vec<String>,
) -> Result<(), String> {
    let query = promql::parse(&test.expr).map_err(|e| format!("expr {:?}: {e}", test.expr))?;
    let got: Vec<(Labels, f64)> = match (Evaluator::new(store, t)).eval(&query.expr) {
        Ok(Value::Vector(v)) => v.into_iter().map(|s| (s.labels, s.value)).collect(),
        Ok(Value::Scalar(v)) => vec![(Labels::new(), v)],
        Ok(other) => {
            failures.push(format!(
                "    expr: {:?}, time: {}, err: unsupported result {other:?}",
                test.expr, test.eval_time
            ));
            return Ok(());
        }
        Err(e) => {
            failures.push(format!(
                "    expr: {:?}, time: {}, err: {}",
                test.expr, test.eval_time, e.0
            ));
            return Ok(());
        }
    };
    let mut exp: Vec<(Labels, f64)> = Vec::new();
    for s in &test.exp_samples {
        let labels = if s.labels.trim().is_empty() {
            Labels::new()
        } else {
            parse_series_labels(&s.labels)?
        };
        exp.push((labels, parse_number(s.value.trim())?));
    }
    let mut got = got;
    got.sort_by(|a, b| a.0.cmp(&b.0));
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    let same = got.len() == exp.len()
        && got
            .iter()
            .zip(&exp)
            .all(|(g, e)| g.0 == e.0 && close(g.1, e.1));
    if !same {
        let show = |v: &[(Labels, f64)]| -> String {
            let items: Vec<String> = v
                .iter()
                .map(|(l, x)| format!("{} {}", format_labels(l.iter()), x))
                .collect();
            format!("[{}]", items.join(", "))
        };
        failures.push(format!(
            "    expr: {:?}, time: {},\n        exp: {}\n        got: {}",
            test.expr,
            test.eval_time,
            show(&exp),
            show(&got)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_the_series_notation() {
        let v = expand_values("1 _ stale 0+10x2 5-1x2 7x1 _x2 -2 1e3").unwrap();
        let shown: Vec<String> = v
            .iter()
            .map(|x| match x {
                None => "_".to_string(),
                Some(f) if crate::promql::is_stale(*f) => "stale".to_string(),
                Some(f) => f.to_string(),
            })
            .collect();
        assert_eq!(shown.join(" "), "1 _ stale 0 10 20 5 4 3 7 7 _ _ -2 1000");
        assert!(expand_values("1 x").is_err());
    }

    #[test]
    fn parses_series_labels() {
        let l = parse_series_labels(r#"up{job="a", instance="x"}"#).unwrap();
        assert_eq!(&*l["__name__"], "up");
        assert_eq!(&*l["job"], "a");
        assert_eq!(parse_series_labels(r#"{job="a"}"#).unwrap().len(), 1);
    }
}
