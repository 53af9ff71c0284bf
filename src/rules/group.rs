//! Evaluating a rule group at one time over a window store: rules run in order, recorded
//! series are stored at once (later rules of the group see them), series a recording rule
//! stops producing get a staleness marker, and `ALERTS` / `ALERTS_FOR_STATE` are written
//! for pending and firing alerts, as Prometheus does.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::alerting::{AlertRuleState, AlertState, TemplateEnv, Transition};
use super::{RuleGroup, RuleKind};
use crate::model::series::{Sample, Series, SeriesKey};
use crate::promql::{
    stale_nan, Evaluator, Labels, SampleBudget, TickCache, Value, VecSample, NAME,
};
use crate::store::window::WindowStore;

/// A group with its alerts' state.
#[derive(Debug, Clone)]
pub struct GroupState {
    pub group: RuleGroup,
    /// Per rule: the alert state of alerting rules (None for recording rules).
    pub alerts: Vec<Option<AlertRuleState>>,
    /// Per rule: series written at the previous evaluation (for staleness markers).
    previous: Vec<HashSet<Series>>,
    /// Per rule: the `ALERTS` and `ALERTS_FOR_STATE` series of each active alert, built once
    /// per state instead of at every evaluation.
    alert_series: Vec<HashMap<String, (AlertState, Series, Series)>>,
    /// Share selector and range-function results between the rules of one tick (on by
    /// default; the rules bench turns it off to show the cost without it).
    pub share_subexpressions: bool,
    /// When the group last ran, and its last error per rule.
    pub last_eval_ms: Option<i64>,
    pub last_errors: BTreeMap<String, String>,
    /// External labels and URL the alert templates see.
    pub template_env: TemplateEnv,
    /// What the `ALERTS` and `ALERTS_FOR_STATE` series are called.
    pub alert_series_names: AlertSeriesNames,
    /// The samples one rule's evaluation may read (`rules.max_samples`; 0: no limit):
    /// past it, the rule fails this evaluation with an error naming the budget.
    pub max_samples: u64,
}

/// What one evaluation did.
#[derive(Debug, Default)]
pub struct GroupOutcome {
    pub transitions: Vec<Transition>,
    /// Samples written (recording rules, ALERTS, staleness markers), for downstream (the
    /// window store takes them out before the outcome goes back to the rule engine).
    pub written: Vec<Sample>,
    /// (rule, error) for rules whose evaluation failed.
    pub errors: Vec<(String, String)>,
    /// (rule, error) for alerting rules whose labels or annotations failed to expand
    /// (the alert still fires, with the error text in place, as in Prometheus).
    pub template_errors: Vec<(String, String)>,
    /// Written samples the window store refused (series limit, out of order): counted.
    pub refused: u64,
}

fn key_of<K: AsRef<str>, V: AsRef<str>>(
    name: &str,
    labels: impl IntoIterator<Item = (K, V)>,
) -> Series {
    let pairs: Vec<(K, V)> = labels.into_iter().collect();
    // The last of a name wins; an empty value removes the label (Prometheus' builder).
    let mut map: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in &pairs {
        if k.as_ref() != NAME {
            map.insert(k.as_ref(), v.as_ref());
        }
    }
    map.retain(|_, v| !v.is_empty());
    SeriesKey::shared(name, map)
}

/// The names of the series alerts are written as.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSeriesNames {
    /// Prometheus' `ALERTS` (with `alertstate`).
    pub alerts: String,
    /// Prometheus' `ALERTS_FOR_STATE`.
    pub for_state: String,
}

impl Default for AlertSeriesNames {
    fn default() -> Self {
        AlertSeriesNames {
            alerts: "ALERTS".to_string(),
            for_state: "ALERTS_FOR_STATE".to_string(),
        }
    }
}

/// The `ALERTS` (with `alertstate`) and `ALERTS_FOR_STATE` series of an alert.
fn alert_series(
    a: &super::alerting::Alert,
    names: &AlertSeriesNames,
) -> (AlertState, Series, Series) {
    let mut l = a.labels.clone();
    l.insert("alertstate".to_string(), a.state.as_str().to_string());
    (
        a.state,
        key_of(&names.alerts, l.iter()),
        key_of(&names.for_state, a.labels.iter()),
    )
}

impl GroupState {
    pub fn new(group: RuleGroup) -> Self {
        let alerts = group
            .rules
            .iter()
            .map(|r| match &r.kind {
                RuleKind::Alert(spec) => Some(AlertRuleState::new(spec.clone())),
                RuleKind::Record { .. } => None,
            })
            .collect();
        let previous = vec![HashSet::new(); group.rules.len()];
        let alert_series = vec![HashMap::new(); group.rules.len()];
        GroupState {
            group,
            alerts,
            previous,
            alert_series,
            share_subexpressions: true,
            last_eval_ms: None,
            last_errors: BTreeMap::new(),
            template_env: TemplateEnv::default(),
            alert_series_names: AlertSeriesNames::default(),
            max_samples: 0,
        }
    }

    /// Takes over the state of `prev`'s rules with the same kind, name and labels (as
    /// Prometheus does on reload), so a reload neither resets pending timers nor drops firing
    /// alerts; a changed expression then resolves them normally at the next evaluation.
    pub fn adopt_alerts(&mut self, prev: GroupState) {
        let labels_of = |r: &super::Rule| match &r.kind {
            RuleKind::Alert(a) => format!("{:?}", a.labels),
            RuleKind::Record { labels, .. } => format!("{labels:?}"),
        };
        for (i, rule) in self.group.rules.iter().enumerate() {
            let same = |old: &super::Rule| {
                old.describe() == rule.describe() && labels_of(old) == labels_of(rule)
            };
            let Some(j) = prev.group.rules.iter().position(same) else {
                continue;
            };
            if let (Some(new), Some(old)) = (self.alerts[i].as_mut(), prev.alerts[j].as_ref()) {
                new.alerts = old.alerts.clone();
            }
            self.previous[i] = prev.previous[j].clone();
        }
    }

    /// Evaluates every rule at `ts`, writing into `store`.
    pub fn eval(&mut self, store: &mut WindowStore, ts: i64) -> GroupOutcome {
        let mut out = GroupOutcome::default();
        let cache = TickCache::default();
        let failing_before = std::mem::take(&mut self.last_errors);
        // Queries read, and what is written is stamped, `query_offset` in the past; the
        // alerts' own times (active, fired, resolved) stay `ts`, as in Prometheus.
        let query_ts = ts - self.group.query_offset_ms;
        for i in 0..self.group.rules.len() {
            let rule = &self.group.rules[i];
            let budget = SampleBudget::limit(self.max_samples);
            let result = Evaluator::new(&*store, query_ts)
                .with_cache(self.share_subexpressions.then_some(&cache))
                .with_budget(budget.as_ref())
                .with_default_step(self.group.interval_ms)
                .eval(&rule.query.expr);
            let vector = match result {
                Ok(Value::Vector(v)) => v,
                Ok(Value::Scalar(v)) => vec![VecSample {
                    labels: Labels::new(),
                    value: v,
                }],
                Ok(_) => {
                    out.errors.push((
                        rule.describe(),
                        "the expression is not an instant vector or scalar".to_string(),
                    ));
                    continue;
                }
                Err(e) => {
                    out.errors.push((rule.describe(), e.0));
                    continue;
                }
            };
            let limit = self.group.limit;
            if limit > 0 && matches!(rule.kind, RuleKind::Record { .. }) && vector.len() > limit {
                out.errors.push((
                    rule.describe(),
                    format!("exceeded limit of {limit} with {} series", vector.len()),
                ));
                continue;
            }
            let mut written: Vec<Sample> = Vec::new();
            match &rule.kind {
                RuleKind::Record { name, labels } => {
                    for s in vector {
                        // The rule's labels win over the sample's (the last of a name wins).
                        let pairs = s.labels.iter().map(|(k, v)| (&**k, &**v));
                        let pairs =
                            pairs.chain(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                        written.push(Sample::new(key_of(name, pairs), query_ts, s.value));
                    }
                }
                RuleKind::Alert(_) => {
                    let state = self.alerts[i].as_mut().expect("alerting rule has state");
                    let storage: &WindowStore = store;
                    let query = |text: &str| template_query(storage, ts, text);
                    match state.eval(ts, &vector, &self.template_env, Some(&query)) {
                        Ok(t) => out.transitions.extend(t),
                        Err(e) => {
                            out.errors.push((rule.describe(), e));
                            continue;
                        }
                    }
                    if let Some(e) = &state.template_error {
                        out.template_errors.push((rule.describe(), e.clone()));
                    }
                    let active = state.active().count();
                    if limit > 0 && active > limit {
                        // Prometheus forgets the rule's alerts and fails the evaluation.
                        state.alerts.clear();
                        out.errors.push((
                            rule.describe(),
                            format!("exceeded limit of {limit} with {active} alerts"),
                        ));
                        continue;
                    }
                    let cache = &mut self.alert_series[i];
                    let names = &self.alert_series_names;
                    for a in state.active() {
                        let (_, alerts, for_state) = cache
                            .entry(a.id.clone())
                            .and_modify(|c| {
                                if c.0 != a.state {
                                    *c = alert_series(a, names);
                                }
                            })
                            .or_insert_with(|| alert_series(a, names));
                        written.push(Sample::new(alerts.clone(), query_ts, 1.0));
                        written.push(Sample::new(
                            for_state.clone(),
                            query_ts,
                            a.active_at_ms as f64 / 1000.0,
                        ));
                    }
                    cache.retain(|id, _| {
                        state
                            .alerts
                            .get(id)
                            .is_some_and(|a| a.state != AlertState::Inactive)
                    });
                }
            }
            let now: HashSet<Series> = written.iter().map(|s| s.series.clone()).collect();
            if now.len() < written.len() {
                out.errors.push((
                    rule.describe(),
                    "vector contains metrics with the same labelset after applying rule labels"
                        .to_string(),
                ));
                continue;
            }
            for gone in self.previous[i].difference(&now) {
                written.push(Sample::new(gone.clone(), query_ts, stale_nan()));
            }
            self.previous[i] = now;
            if !written.is_empty() {
                // Later rules see what this one wrote: forget results that could include it.
                let names: HashSet<&str> = written.iter().map(|s| s.series.name()).collect();
                cache.invalidate(&names);
            }
            let stored = store.ingest(&written);
            out.refused += stored.refused_series_limit + stored.refused_out_of_order;
            out.written.extend(written);
        }
        for (rule, e) in out.template_errors.iter().chain(&out.errors) {
            // Logged when a rule starts failing, not at every evaluation.
            if !failing_before.contains_key(rule) {
                tracing::warn!(group = %self.group.name, "{rule} failed: {e}");
            }
            self.last_errors.insert(rule.clone(), e.clone());
        }
        self.last_eval_ms = Some(ts);
        out
    }
}

/// A template's `query`: an instant query over the store at the evaluation time.
fn template_query(
    store: &WindowStore,
    ts: i64,
    text: &str,
) -> Result<super::template::QueryRows, String> {
    let query = crate::promql::parse(text)?;
    let result = Evaluator::new(store, ts)
        .eval(&query.expr)
        .map_err(|e| e.0)?;
    let labels = |l: &Labels| -> BTreeMap<String, String> {
        l.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    match result {
        Value::Vector(v) => {
            // In label order, as Prometheus' storage hands series to the engine.
            let mut rows: Vec<_> = v.iter().map(|s| (labels(&s.labels), s.value)).collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(rows)
        }
        Value::Scalar(v) => Ok(vec![(BTreeMap::new(), v)]),
        _ => Err(format!("query {text:?}: not an instant vector or scalar")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::series::SeriesKey;
    use crate::rules::parse_file;
    use crate::store::window::Retention;

    /// The one group of a rule file's text.
    fn group(yaml: &str) -> GroupState {
        let groups = parse_file("r.yml", yaml).unwrap();
        GroupState::new(groups.into_iter().next().unwrap())
    }

    /// A store holding `up{job="a"} 1` at 1 s.
    fn store_with_up() -> WindowStore {
        store_with_up_at(1000)
    }

    /// A store holding `up{job="a"} 1` at `t_ms`.
    fn store_with_up_at(t_ms: i64) -> WindowStore {
        let mut store = WindowStore::new(Retention {
            max_points: 10,
            max_age_ms: 1_000_000,
            max_series: 100,
        });
        store.ingest(&[Sample::new(
            SeriesKey::shared("up", [("job", "a")]),
            t_ms,
            1.0,
        )]);
        store
    }

    /// A repeated expression is computed once per tick, but never served stale: a rule that
    /// runs after a recording rule wrote its metric sees the new series.
    #[test]
    fn a_later_rule_sees_what_an_earlier_rule_wrote_in_the_same_tick() {
        let mut g = group("groups:\n  - name: g\n    rules:\n      - alert: Before\n        expr: r > 0\n      - record: r\n        expr: up * 2\n      - alert: After\n        expr: r > 0\n");
        let out = g.eval(&mut store_with_up(), 1000);
        let fired: Vec<String> = out
            .transitions
            .iter()
            .filter_map(|t| match t {
                Transition::Firing(a) => Some(a.labels["alertname"].clone()),
                _ => None,
            })
            .collect();
        assert_eq!(fired, ["After"]);
    }

    #[test]
    fn the_alerts_series_may_be_renamed() {
        let mut g =
            group("groups:\n  - name: g\n    rules:\n      - alert: Up\n        expr: up > 0\n");
        g.alert_series_names = AlertSeriesNames {
            alerts: "PULSE_ALERTS".into(),
            for_state: "PULSE_ALERTS_FOR_STATE".into(),
        };
        let out = g.eval(&mut store_with_up(), 1000);
        let mut names: Vec<&str> = out.written.iter().map(|s| s.series.name()).collect();
        names.sort();
        assert_eq!(names, ["PULSE_ALERTS", "PULSE_ALERTS_FOR_STATE"]);
    }

    /// Prometheus 3's group `labels` go on every rule (a rule's own win), and 2.53's
    /// `query_offset` makes the queries read that far back and stamps what is written with
    /// that time, while the alert's own times stay the evaluation's.
    #[test]
    fn group_labels_and_query_offset_apply_as_in_prometheus() {
        let mut g = group("groups:\n  - name: g\n    query_offset: 1m\n    labels: {team: gpu, severity: low}\n    rules:\n      - alert: Up\n        expr: up > 0\n        labels: {severity: page}\n      - record: up2\n        expr: up * 2\n");
        // `up` is 1 from 30 s on: read 60 s back, it is not there yet at 61 s, and is at 91 s.
        let mut store = store_with_up_at(30_000);
        let out = g.eval(&mut store, 61_000);
        assert!(
            out.transitions.is_empty() && out.written.is_empty(),
            "{:?}",
            out.written
        );
        let out = g.eval(&mut store, 91_000);
        let fired: Vec<_> = out
            .transitions
            .iter()
            .filter_map(|t| match t {
                Transition::Firing(a) => Some(a),
                _ => None,
            })
            .collect();
        assert_eq!(fired.len(), 1, "{:?}", out.transitions);
        assert_eq!(fired[0].labels["team"], "gpu");
        assert_eq!(fired[0].labels["severity"], "page");
        assert_eq!(fired[0].active_at_ms, 91_000);
        let recorded = out
            .written
            .iter()
            .find(|s| s.series.name() == "up2")
            .unwrap();
        assert_eq!(recorded.series.label("team"), Some("gpu"));
        assert!(out.written.iter().all(|s| s.timestamp_ms == 31_000));
        let bad = parse_file(
            "r.yml",
            "groups:\n  - name: g\n    query_offset: soon\n    rules: []\n",
        );
        assert!(bad.unwrap_err().to_string().contains("query_offset"));
    }

    /// A rule that reads past `rules.max_samples` fails alone, naming the budget; the next
    /// rule of the group still runs and writes.
    #[test]
    fn a_rule_past_its_sample_budget_fails_alone() {
        let mut g = group("groups:\n  - name: g\n    rules:\n      - record: heavy\n        expr: count_over_time(up[5m])\n      - record: light\n        expr: up * 2\n");
        let mut store = store_with_up();
        store.ingest(&[Sample::new(
            SeriesKey::shared("up", [("job", "a")]),
            2000,
            1.0,
        )]);
        g.max_samples = 1;
        let out = g.eval(&mut store, 2000);
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
        assert!(out.errors[0].0.contains("heavy"), "{:?}", out.errors);
        assert!(
            out.errors[0].1.contains("rules.max_samples"),
            "{:?}",
            out.errors
        );
        let names: Vec<&str> = out.written.iter().map(|s| s.series.name()).collect();
        assert_eq!(names, ["light"]);
        g.max_samples = 0;
        assert!(g.eval(&mut store, 3000).errors.is_empty());
    }
}
