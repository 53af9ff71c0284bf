//! Prometheus rule files: groups of alerting and recording rules, loaded as they are.
//! A bad file is an error naming the file, group, rule and the problem.

pub mod alerting;
pub mod engine;
mod glob;
pub mod group;
pub mod promtool;
pub mod store;
pub mod template;
pub mod view;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::promql::{self, Query};
use template::Template;

/// Evaluation interval of a group that sets none (Pulse samples every second).
pub const DEFAULT_INTERVAL_MS: i64 = 1000;

/// A rule-file error, naming where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}{}{}: {message}", group.as_ref().map(|g| format!(": group {g:?}")).unwrap_or_default(), rule.as_ref().map(|r| format!(", {r}")).unwrap_or_default())]
pub struct RuleError {
    pub file: String,
    pub group: Option<String>,
    /// `alert "Name"`, `record "name"` or `rule 3`.
    pub rule: Option<String>,
    pub message: String,
}

/// A loaded group.
#[derive(Debug, Clone)]
pub struct RuleGroup {
    pub file: String,
    pub name: String,
    pub interval_ms: i64,
    /// Most series a recording rule, or alerts an alerting rule, may produce (0: no
    /// limit); more makes the evaluation fail, as in Prometheus.
    pub limit: usize,
    /// The group's queries read this far in the past (Prometheus 2.53's `query_offset`, for
    /// data that arrives late); what it writes carries that time too, while alerts' times
    /// stay the evaluation's.
    pub query_offset_ms: i64,
    pub rules: Vec<Rule>,
}

/// A loaded rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub query: Query,
    pub kind: RuleKind,
}

/// What a rule does with its result.
#[derive(Debug, Clone)]
pub enum RuleKind {
    Alert(AlertSpec),
    Record {
        name: String,
        labels: BTreeMap<String, String>,
    },
}

/// An alerting rule's settings.
#[derive(Debug, Clone)]
pub struct AlertSpec {
    pub name: String,
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    pub labels: Vec<(String, Template)>,
    pub annotations: Vec<(String, Template)>,
    /// What it does when it fires (its `pulse_action` annotation), see `crate::actions`.
    pub action: Option<crate::actions::Action>,
}

/// The metric names a group's rules read: the rule engine evaluates a group when samples
/// of one of them are stored (besides its interval).
#[derive(Debug, Clone)]
pub enum Reads {
    /// A selector pins no metric name: samples of any metric may change the result.
    Any,
    /// Per selector, its `__name__` matchers: a name read is one passing all of them.
    Names(Vec<Vec<crate::model::selector::Matcher>>),
}

impl Reads {
    pub fn of(group: &RuleGroup) -> Reads {
        let mut names = Vec::new();
        for rule in &group.rules {
            for s in rule.query.selectors() {
                let on_name: Vec<_> = s
                    .matchers
                    .into_iter()
                    .filter(|m| m.label == promql::NAME)
                    .collect();
                if on_name.is_empty() {
                    return Reads::Any;
                }
                names.push(on_name);
            }
        }
        Reads::Names(names)
    }

    /// Whether the group reads any of `names`.
    pub fn any_of<'a>(&self, mut names: impl Iterator<Item = &'a str>) -> bool {
        match self {
            Reads::Any => true,
            Reads::Names(selectors) => names.any(|n| {
                selectors
                    .iter()
                    .any(|ms| ms.iter().all(|m| m.matches_value(n)))
            }),
        }
    }
}

impl Rule {
    /// `alert "X"` or `record "x"`, for messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            RuleKind::Alert(a) => format!("alert {:?}", a.name),
            RuleKind::Record { name, .. } => format!("record {name:?}"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    groups: Vec<GroupDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDoc {
    name: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default, deserialize_with = "yaml::opt_text")]
    query_offset: Option<String>,
    /// Labels of every rule in the group (Prometheus 3); a rule's own win.
    #[serde(default, deserialize_with = "yaml::text_map")]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<RuleDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    #[serde(default, deserialize_with = "yaml::opt_text")]
    alert: Option<String>,
    #[serde(default, deserialize_with = "yaml::opt_text")]
    record: Option<String>,
    /// Prometheus reads `expr: 1` as the string "1".
    #[serde(default, deserialize_with = "yaml::text")]
    expr: String,
    #[serde(default, rename = "for", deserialize_with = "yaml::opt_text")]
    for_: Option<String>,
    #[serde(default, deserialize_with = "yaml::opt_text")]
    keep_firing_for: Option<String>,
    /// A `null` value reads as "" (Go's YAML decoder gives a string's zero value).
    #[serde(default, deserialize_with = "yaml::text_map")]
    labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "yaml::text_map")]
    annotations: BTreeMap<String, String>,
}

/// Parses a Prometheus duration (`30s`, `1m`, `1h30m`, `500ms`) into milliseconds.
///
/// A plain number is refused, as Prometheus refuses it in rule and test files.
/// promql-parser 0.11 reads one as seconds and panics on `-1`, `NaN` or `1e300`
/// (the `promtool_file` fuzzer found `evaluation_interval: -0001`).
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    // `0s`, `0m`: zero, as Prometheus reads it (promql-parser refuses a zero duration).
    if let Some(unit) = s.strip_prefix('0').map(|u| u.trim_start_matches('0')) {
        if ["", "ms", "s", "m", "h", "d", "w", "y"].contains(&unit) {
            return Ok(0);
        }
    }
    if s != "0" && s.trim().parse::<f64>().is_ok() {
        return Err(format!(
            "invalid duration {s:?}: a number needs a unit (ms, s, m, h, d, w, y)"
        ));
    }
    promql_parser::util::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Whether `s` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The line (1-based) of the first `key: name` in `text`, the name bare or quoted.
fn line_of(text: &str, key: &str, name: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches("- ").trim_start();
            l.strip_prefix(key)
                .and_then(|rest| rest.trim_start().strip_prefix(':'))
                .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\''))
                == Some(name)
        })
        .map(|i| i + 1)
}

/// Parses the text of a rule file.
pub fn parse_file(file: &str, text: &str) -> Result<Vec<RuleGroup>, RuleError> {
    let file_err = |message: String| RuleError {
        file: file.to_string(),
        group: None,
        rule: None,
        message,
    };
    let doc: FileDoc = yaml::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("line {}, column {}: ", l.line(), l.column()))
            .unwrap_or_default();
        file_err(format!("{at}{e}"))
    })?;
    let mut groups = Vec::new();
    let mut names = std::collections::HashSet::new();
    for g in doc.groups {
        let group_err = |rule: Option<String>, message: String| RuleError {
            file: file.to_string(),
            group: Some(g.name.clone()),
            rule,
            message,
        };
        if g.name.is_empty() {
            return Err(file_err("a group has an empty name".to_string()));
        }
        if !names.insert(g.name.clone()) {
            return Err(group_err(
                None,
                "group name repeated in this file".to_string(),
            ));
        }
        let interval_ms = match &g.interval {
            Some(s) => {
                parse_duration_ms(s).map_err(|e| group_err(None, format!("interval: {e}")))?
            }
            None => DEFAULT_INTERVAL_MS,
        };
        if interval_ms <= 0 {
            return Err(group_err(None, "interval must be positive".to_string()));
        }
        let query_offset_ms = match &g.query_offset {
            Some(s) => {
                parse_duration_ms(s).map_err(|e| group_err(None, format!("query_offset: {e}")))?
            }
            None => 0,
        };
        if query_offset_ms < 0 {
            return Err(group_err(
                None,
                "query_offset must not be negative".to_string(),
            ));
        }
        let mut rules = Vec::new();
        for (i, r) in g.rules.iter().enumerate() {
            let label = match (&r.alert, &r.record) {
                (Some(a), None) => format!("alert {a:?}"),
                (None, Some(n)) => format!("record {n:?}"),
                _ => format!("rule {}", i + 1),
            };
            // Where the rule is written, to find it in a long file.
            let label = match (&r.alert, &r.record) {
                (Some(name), None) => line_of(text, "alert", name),
                (None, Some(name)) => line_of(text, "record", name),
                _ => None,
            }
            .map_or(label.clone(), |line| format!("{label} (line {line})"));
            let rule_err = |message: String| group_err(Some(label.clone()), message);
            let expr = &r.expr;
            if expr.trim().is_empty() {
                return Err(rule_err("field `expr` must be set in rule".to_string()));
            }
            let query = promql::parse(expr).map_err(|e| rule_err(format!("expr {expr:?}: {e}")))?;
            let text_map = |m: &BTreeMap<String, String>,
                            what: &str|
             -> Result<BTreeMap<String, String>, RuleError> {
                if let Some(k) = m
                    .keys()
                    .find(|k| !crate::model::labels::valid_label_name(k))
                {
                    return Err(rule_err(format!("{what}: invalid label name {k:?}")));
                }
                Ok(m.clone())
            };
            let mut labels = text_map(&g.labels, "group labels")?;
            labels.extend(text_map(&r.labels, "labels")?);
            let kind = match (&r.alert, &r.record) {
                (Some(name), None) => {
                    // Prometheus 2.42 takes any alert name but an empty one.
                    if name.is_empty() {
                        return Err(rule_err("an alert needs a name".to_string()));
                    }
                    let annotations = text_map(&r.annotations, "annotations")?;
                    let action = annotations
                        .get(crate::actions::ACTION_ANNOTATION)
                        .map(|a| crate::actions::Action::parse(a))
                        .transpose()
                        .map_err(|e| {
                            let key = crate::actions::ACTION_ANNOTATION;
                            rule_err(format!("annotations.{key}: {e}"))
                        })?;
                    let dur = |v: &Option<String>, what: &str| -> Result<i64, RuleError> {
                        v.as_deref()
                            .map(parse_duration_ms)
                            .transpose()
                            .map(|d| d.unwrap_or(0))
                            .map_err(|e| rule_err(format!("{what}: {e}")))
                    };
                    let templates =
                        |m: BTreeMap<String, String>,
                         what: &str|
                         -> Result<Vec<(String, Template)>, RuleError> {
                            m.into_iter()
                                .map(|(k, v)| {
                                    Template::parse(&v)
                                        .map(|t| (k.clone(), t))
                                        .map_err(|e| rule_err(format!("{what}.{k}: {e}")))
                                })
                                .collect()
                        };
                    RuleKind::Alert(AlertSpec {
                        name: name.clone(),
                        for_ms: dur(&r.for_, "for")?,
                        keep_firing_for_ms: dur(&r.keep_firing_for, "keep_firing_for")?,
                        labels: templates(labels, "labels")?,
                        annotations: templates(annotations, "annotations")?,
                        action,
                    })
                }
                (None, Some(name)) => {
                    if !valid_metric_name(name) {
                        return Err(rule_err(format!("invalid recording rule name {name:?}")));
                    }
                    if r.for_.is_some() || r.keep_firing_for.is_some() || !r.annotations.is_empty()
                    {
                        return Err(rule_err(
                            "a recording rule takes no `for`, `keep_firing_for` or `annotations`"
                                .to_string(),
                        ));
                    }
                    RuleKind::Record {
                        name: name.clone(),
                        labels,
                    }
                }
                _ => {
                    return Err(rule_err(
                        "a rule needs exactly one of `alert` and `record`".to_string(),
                    ))
                }
            };
            rules.push(Rule { query, kind });
        }
        groups.push(RuleGroup {
            file: file.to_string(),
            name: g.name,
            limit: g.limit.unwrap_or(0) as usize,
            interval_ms,
            query_offset_ms,
            rules,
        });
    }
    Ok(groups)
}

/// The built-in rule pack (`config/rules/gpu.yml`).
pub const BUILTIN_PACK: &str = include_str!("../../config/rules/gpu.yml");
/// Name of the built-in pack in errors and listings.
pub const BUILTIN_PACK_NAME: &str = "<built-in config/rules/gpu.yml>";

/// Loads the built-in pack (when asked) and every rule file under `paths` (files, or
/// directories whose `*.yml` / `*.yaml` files are read in name order). All or nothing:
/// the first error is returned.
pub fn load_sources(
    builtin_pack: bool,
    paths: &[std::path::PathBuf],
) -> Result<Vec<RuleGroup>, RuleError> {
    let mut groups = Vec::new();
    if builtin_pack {
        groups.extend(parse_file(BUILTIN_PACK_NAME, BUILTIN_PACK)?);
    }
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(p)
                .map_err(|e| RuleError {
                    file: p.display().to_string(),
                    group: None,
                    rule: None,
                    message: e.to_string(),
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "yml" || x == "yaml"))
                .collect();
            files.sort();
            for f in files {
                groups.extend(load_file(&f)?);
            }
        } else {
            groups.extend(load_file(p)?);
        }
    }
    Ok(groups)
}

/// Reads and parses a rule file.
pub fn load_file(path: &Path) -> Result<Vec<RuleGroup>, RuleError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| RuleError {
        file: file.clone(),
        group: None,
        rule: None,
        message: e.to_string(),
    })?;
    parse_file(&file, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(expr: &str) -> Reads {
        let file =
            format!("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: '{expr}'\n");
        Reads::of(&parse_file("r.yml", &file).unwrap()[0])
    }

    #[test]
    fn a_duration_needs_a_unit_and_never_panics() {
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        for bad in ["-1", "-0001", "1.5", "30", "NaN", "inf", "1e300", " 7"] {
            let err = parse_duration_ms(bad).unwrap_err();
            assert!(err.contains("needs a unit"), "{bad}: {err}");
        }
        assert_eq!(parse_duration_ms("0"), Ok(0));
        assert_eq!(parse_duration_ms("0m"), Ok(0));
        assert!(parse_duration_ms("5x").is_err());
    }

    #[test]
    fn a_group_reads_the_metric_names_of_its_selectors() {
        let r = reads("sum(rate(a_total[5m])) / on() group_left b > 1");
        assert!(r.any_of(["x", "a_total"].into_iter()));
        assert!(r.any_of(["b"].into_iter()));
        assert!(!r.any_of(["a", "c", "ALERTS"].into_iter()));
        let r = reads(r#"{__name__=~"DCGM_.*", __name__!="DCGM_X"} > 1"#);
        assert!(r.any_of(["DCGM_FI_DEV_GPU_UTIL"].into_iter()));
        assert!(!r.any_of(["DCGM_X", "dcgm"].into_iter()));
        // A selector without a name: anything may change it.
        assert!(reads(r#"{job="x"} > 1"#).any_of(["whatever"].into_iter()));
        assert!(!reads("time() > bool 0").any_of(["whatever"].into_iter()));
    }

    #[test]
    fn loads_both_kinds_of_rules() {
        let groups = parse_file(
            "r.yml",
            r#"
groups:
  - name: gpu
    interval: 5s
    rules:
      - record: gpu:util:avg
        expr: avg by (Hostname) (DCGM_FI_DEV_GPU_UTIL)
      - alert: GpuHot
        expr: DCGM_FI_DEV_GPU_TEMP > 85
        for: 1m
        keep_firing_for: 30s
        labels: {severity: critical}
        annotations: {summary: "GPU {{ $labels.gpu }} at {{ $value }} C"}
"#,
        )
        .unwrap();
        assert_eq!(groups[0].interval_ms, 5000);
        assert_eq!(groups[0].rules.len(), 2);
        let RuleKind::Alert(a) = &groups[0].rules[1].kind else {
            panic!()
        };
        assert_eq!((a.for_ms, a.keep_firing_for_ms), (60_000, 30_000));
    }

    #[test]
    fn errors_name_file_group_rule_and_problem() {
        let bad = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(up[5m]\n";
        let e = parse_file("r.yml", bad).unwrap_err().to_string();
        assert!(
            e.starts_with("r.yml: group \"g\", alert \"A\" (line 4): expr"),
            "{e}"
        );
        let e = parse_file("r.yml", "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: histogram_count(up)\n").unwrap_err().to_string();
        assert!(
            e.contains("histogram_count") && e.contains("not supported"),
            "{e}"
        );
        let e = parse_file("r.yml", "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        for: soon\n").unwrap_err().to_string();
        assert!(
            e.contains("alert \"A\" (line 4): for: invalid duration"),
            "{e}"
        );
        let e = parse_file("r.yml", "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        labels: {a: b}\n        severity: x\n").unwrap_err().to_string();
        assert!(
            e.contains("unknown field `severity`") && e.contains("line"),
            "{e}"
        );
        let e = parse_file("r.yml", "groups:\n  - name: g\n    rules:\n      - record: a\n        alert: b\n        expr: up\n").unwrap_err().to_string();
        assert!(e.contains("rule 1: a rule needs exactly one"), "{e}");
    }
}
