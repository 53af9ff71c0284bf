//! One alerting rule's alerts and their states: inactive → pending → firing → resolved,
//! with `for` and `keep_firing_for`, exactly as Prometheus 2.42 evaluates them.

use std::collections::BTreeMap;

use actix::Message;
use serde::{Deserialize, Serialize};

use super::template::{Data, QueryFn};
use super::AlertSpec;
use crate::model::labels::fingerprint;
use crate::promql::{VecSample, NAME};

/// What every template of a rule group sees besides the alert: Prometheus'
/// `global.external_labels` and `--web.external-url`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateEnv {
    pub external_labels: std::sync::Arc<BTreeMap<String, String>>,
    pub external_url: String,
}

/// How long a resolved alert stays listed (Prometheus' resolved retention).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// An alert's state.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    Hash,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Its expression holds, for less than the rule's `for` so far.
    Pending,
    /// Its expression has held for the rule's `for`.
    Firing,
    /// Resolved (kept for `RESOLVED_RETENTION_MS`).
    Inactive,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Inactive => "inactive",
        }
    }
}

/// One alert: a rule's result series with the rule's labels.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Alert {
    /// Stable id: a hash of the labels (the same alert gets the same id after a restart).
    pub id: String,
    /// Labels, `alertname` included.
    pub labels: BTreeMap<String, String>,
    /// The rule's annotations, templates expanded.
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    /// The expression's value when last evaluated (null when it was not a number).
    #[schema(value_type = Option<f64>)]
    pub value: f64,
    /// When its expression started to hold, Unix ms.
    pub active_at_ms: i64,
    /// When it started firing, Unix ms.
    pub fired_at_ms: Option<i64>,
    /// When it resolved, Unix ms.
    pub resolved_at_ms: Option<i64>,
    #[serde(skip)]
    keep_firing_since_ms: Option<i64>,
    /// When it was last sent to Alertmanager / webhooks (kept in Redis beside the alert, not
    /// in its API view: `StoredAlert`).
    #[serde(skip)]
    pub last_sent_ms: Option<i64>,
    /// While firing, the `endsAt` last sent: Alertmanager resolves it then if no update comes.
    #[serde(skip)]
    pub valid_until_ms: i64,
}

impl Alert {
    /// Prometheus' `needsSending`: not while pending; a resolution not yet sent; else once
    /// per resend delay.
    pub fn needs_sending(&self, now_ms: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        match self.last_sent_ms {
            None => true,
            Some(last) => {
                self.resolved_at_ms.is_some_and(|r| r > last) || last + resend_delay_ms < now_ms
            }
        }
    }
}

/// A state change, for events and history.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// A new alert is pending.
    Pending(Alert),
    /// An alert started firing.
    Firing(Alert),
    /// A firing alert resolved.
    Resolved(Alert),
    /// A pending alert went away before firing.
    Cancelled(Alert),
}

/// The alerts of one rule.
#[derive(Debug, Clone)]
pub struct AlertRuleState {
    pub spec: AlertSpec,
    /// By id.
    pub alerts: BTreeMap<String, Alert>,
    /// The last template expansion error of the latest evaluation (the label or annotation
    /// holds `<error expanding template: ...>`, as in Prometheus).
    pub template_error: Option<String>,
}

impl AlertRuleState {
    pub fn new(spec: AlertSpec) -> Self {
        AlertRuleState {
            spec,
            alerts: BTreeMap::new(),
            template_error: None,
        }
    }

    /// Applies one evaluation's result at `ts`; returns the state changes. Templates see
    /// `env` and run `query` (when given) for their `query` function.
    pub fn eval(
        &mut self,
        ts: i64,
        result: &[VecSample],
        env: &TemplateEnv,
        query: Option<&QueryFn>,
    ) -> Result<Vec<Transition>, String> {
        let mut transitions = Vec::new();
        let mut seen = std::collections::HashSet::new();
        self.template_error = None;
        let plain = self
            .spec
            .labels
            .iter()
            .chain(&self.spec.annotations)
            .all(|(_, t)| t.is_plain());
        for s in result {
            // Built only when a template has an action: most rules' are plain text.
            let data = Data::new(
                std::sync::Arc::new(if plain {
                    BTreeMap::new()
                } else {
                    s.labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                }),
                s.value,
                env.external_labels.clone(),
                &env.external_url,
                query,
            );
            let mut template_error = None;
            let mut expand = |t: &super::template::Template| {
                t.try_expand(&data).unwrap_or_else(|e| {
                    let text = super::template::error_text(&e);
                    template_error = Some(e);
                    text
                })
            };
            // The alert's labels, borrowed where they come from the sample: no copy unless
            // the alert is new.
            let mut labels: BTreeMap<&str, std::borrow::Cow<'_, str>> = s
                .labels
                .iter()
                .filter(|(k, _)| &***k != NAME)
                .map(|(k, v)| (&**k, std::borrow::Cow::Borrowed(&**v)))
                .collect();
            for (k, t) in &self.spec.labels {
                // An empty value removes the label, as Prometheus' label builder does.
                match expand(t) {
                    v if v.is_empty() => labels.remove(k.as_str()),
                    v => labels.insert(k, v.into()),
                };
            }
            labels.insert("alertname", self.spec.name.as_str().into());
            let id = fingerprint(labels.iter());
            let annotations: BTreeMap<String, String> = self
                .spec
                .annotations
                .iter()
                .map(|(k, t)| (k.clone(), expand(t)))
                .collect();
            if let Some(e) = template_error {
                self.template_error = Some(e);
            }
            if !seen.insert(id.clone()) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .to_string(),
                );
            }
            match self.alerts.get_mut(&id) {
                Some(a) if a.state != AlertState::Inactive => {
                    a.value = s.value;
                    a.annotations = annotations;
                }
                _ => {
                    self.alerts.insert(
                        id.clone(),
                        Alert {
                            id: id.clone(),
                            labels: labels
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), v.into_owned()))
                                .collect(),
                            annotations,
                            state: AlertState::Pending,
                            value: s.value,
                            active_at_ms: ts,
                            fired_at_ms: None,
                            resolved_at_ms: None,
                            keep_firing_since_ms: None,
                            last_sent_ms: None,
                            valid_until_ms: 0,
                        },
                    );
                    transitions.push(Transition::Pending(self.alerts[&id].clone()));
                }
            }
        }
        let keep_for = self.spec.keep_firing_for_ms;
        let hold = self.spec.for_ms;
        let mut remove = Vec::new();
        for (id, a) in self.alerts.iter_mut() {
            if !seen.contains(id) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && keep_for > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(ts);
                    keep_firing = ts - since < keep_for;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at_ms
                        .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
                {
                    remove.push(id.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    let was = a.state;
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(ts);
                    transitions.push(if was == AlertState::Firing {
                        Transition::Resolved(a.clone())
                    } else {
                        Transition::Cancelled(a.clone())
                    });
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since_ms = None;
            }
            if a.state == AlertState::Pending && ts - a.active_at_ms >= hold {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(ts);
                transitions.push(Transition::Firing(a.clone()));
            }
        }
        for id in remove {
            self.alerts.remove(&id);
        }
        Ok(transitions)
    }

    /// Pending and firing alerts.
    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.alerts
            .values()
            .filter(|a| a.state != AlertState::Inactive)
    }
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AlertEventKind {
    Pending,
    Firing,
    Resolved,
    Cancelled,
    Acknowledged,
}

/// A state change of an alert, as it goes on the stream.
#[derive(Debug, Clone, Serialize, Message)]
#[rtype(result = "()")]
pub struct AlertEvent {
    pub kind: AlertEventKind,
    pub at_ms: i64,
    pub alert: Alert,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::template::Template;

    fn rule(for_ms: i64, keep_firing_for_ms: i64) -> AlertRuleState {
        AlertRuleState::new(AlertSpec {
            name: "Hot".into(),
            for_ms,
            keep_firing_for_ms,
            labels: vec![("severity".into(), Template::parse("page").unwrap())],
            annotations: vec![(
                "summary".into(),
                Template::parse("gpu {{ $labels.gpu }} at {{ $value }}").unwrap(),
            )],
            action: None,
        })
    }

    fn hot(v: f64) -> Vec<VecSample> {
        vec![VecSample {
            labels: crate::promql::Labels::from_pairs([("__name__", "t"), ("gpu", "1")]),
            value: v,
        }]
    }

    fn state(r: &AlertRuleState) -> Option<AlertState> {
        r.alerts.values().next().map(|a| a.state)
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let mut r = rule(60_000, 0);
        assert!(matches!(
            r.eval(0, &hot(90.0), &TemplateEnv::default(), None)
                .unwrap()[0],
            Transition::Pending(_)
        ));
        r.eval(30_000, &hot(91.0), &TemplateEnv::default(), None)
            .unwrap();
        assert_eq!(state(&r), Some(AlertState::Pending));
        let t = r
            .eval(60_000, &hot(92.0), &TemplateEnv::default(), None)
            .unwrap();
        assert!(
            matches!(&t[0], Transition::Firing(a) if a.annotations["summary"] == "gpu 1 at 92")
        );
        let a = r.alerts.values().next().unwrap();
        assert_eq!(a.labels["severity"], "page");
        assert!(!a.labels.contains_key("__name__"));
        assert!(matches!(
            r.eval(90_000, &[], &TemplateEnv::default(), None).unwrap()[0],
            Transition::Resolved(_)
        ));
        assert_eq!(state(&r), Some(AlertState::Inactive));
        // Gone after the resolved retention.
        r.eval(
            90_000 + RESOLVED_RETENTION_MS + 1,
            &[],
            &TemplateEnv::default(),
            None,
        )
        .unwrap();
        assert!(r.alerts.is_empty());
    }

    #[test]
    fn a_pending_alert_that_goes_away_is_cancelled_and_restarts_its_clock() {
        let mut r = rule(60_000, 0);
        r.eval(0, &hot(1.0), &TemplateEnv::default(), None).unwrap();
        assert!(matches!(
            r.eval(10_000, &[], &TemplateEnv::default(), None).unwrap()[0],
            Transition::Cancelled(_)
        ));
        assert!(r.alerts.is_empty());
        r.eval(20_000, &hot(1.0), &TemplateEnv::default(), None)
            .unwrap();
        assert_eq!(r.alerts.values().next().unwrap().active_at_ms, 20_000);
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert() {
        let mut r = rule(0, 30_000);
        assert_eq!(
            r.eval(0, &hot(1.0), &TemplateEnv::default(), None)
                .unwrap()
                .len(),
            2,
            "pending and firing at once with for: 0"
        );
        r.eval(10_000, &[], &TemplateEnv::default(), None).unwrap();
        assert_eq!(state(&r), Some(AlertState::Firing));
        r.eval(39_000, &[], &TemplateEnv::default(), None).unwrap();
        assert_eq!(state(&r), Some(AlertState::Firing));
        r.eval(40_000, &[], &TemplateEnv::default(), None).unwrap();
        assert_eq!(state(&r), Some(AlertState::Inactive));
    }
}
