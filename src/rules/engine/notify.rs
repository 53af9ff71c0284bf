//! Which alerts go to Alertmanager and webhooks after an evaluation, decided as Prometheus'
//! rule manager decides it (`sendAlerts`): firing and recently resolved alerts of the
//! groups this instance owns, each at most once per resend delay, with `endsAt` four
//! periods ahead while firing so that Alertmanager resolves an alert Pulse stopped sending.
//! When a firing alert was sent is written to Redis with it, so the instance that takes its
//! host over (`pulse aggregate`), or this one restarted, sends it when the delay is up, not
//! at once: once per resend delay across rebalances.

use actix::prelude::*;

use super::RuleEngine;
use crate::alertmanager::silences::{SilenceCommand, SilencesSeen};
use crate::alertmanager::{NotifyAlerts, OutgoingAlert};
use crate::rules::alerting::Alert;
use crate::rules::group::GroupState;
use crate::rules::store::{Change, StoredAlert};
use crate::rules::view::Acknowledgement;

/// Where alerts go and how.
pub struct Notify {
    pub destinations: Vec<Recipient<NotifyAlerts>>,
    pub resend_delay_ms: i64,
    /// Pulse's address as users reach it: the base of each alert's `generatorURL`.
    pub external_url: String,
    /// Each Alertmanager's silence keeper.
    pub silences: Vec<Recipient<SilenceCommand>>,
    /// How long a silence made for an acknowledgement lasts at most (it is removed sooner,
    /// when the alert resolves).
    pub silence_max_ms: i64,
}

impl RuleEngine {
    /// Sends what is due from `g`, evaluated at `now`.
    pub(super) fn notify(&mut self, g: &mut GroupState, now: i64, ctx: &mut Context<Self>) {
        let Some(notify) = &self.notify else {
            return;
        };
        let mut sent = Vec::new();
        // Allow for two missed evaluations or sends, as Prometheus does.
        let delta = notify.resend_delay_ms.max(g.group.interval_ms);
        let external = g.template_env.external_labels.clone();
        let mut out = Vec::new();
        for rule in g.alerts.iter_mut().flatten() {
            for a in rule.alerts.values_mut() {
                if !a.needs_sending(now, notify.resend_delay_ms) || !self.owns(a) {
                    continue;
                }
                a.last_sent_ms = Some(now);
                a.valid_until_ms = now + 4 * delta;
                // A resolved alert is gone from the store; only a firing one is written.
                if a.resolved_at_ms.is_none() {
                    sent.push(Change::Active(StoredAlert::new(
                        &g.group.name,
                        &g.group.file,
                        a,
                    )));
                }
                out.push(OutgoingAlert {
                    labels: as_sent(&external, a),
                    annotations: a.annotations.clone(),
                    starts_at_ms: a.fired_at_ms.unwrap_or(a.active_at_ms),
                    ends_at_ms: a.resolved_at_ms.unwrap_or(a.valid_until_ms),
                    generator_url: format!(
                        "{}/api/phase4/alerts/active#alert-{}",
                        notify.external_url.trim_end_matches('/'),
                        a.id
                    ),
                    fingerprint: a.id.clone(),
                });
            }
        }
        if out.is_empty() {
            return;
        }
        for d in &notify.destinations {
            d.do_send(NotifyAlerts {
                alerts: out.clone(),
            });
        }
        self.persist(sent, ctx);
    }

    /// Delivers alerts to these destinations.
    pub fn with_notify(mut self, notify: Notify) -> Self {
        if !notify.destinations.is_empty() {
            self.notify = Some(notify);
        }
        self
    }

    /// An acknowledgement: a silence of exactly this alert in each Alertmanager.
    pub(super) fn silence(&self, a: &Alert, ack: &Acknowledgement, now: i64) {
        let Some(notify) = &self.notify else {
            return;
        };
        for s in &notify.silences {
            s.do_send(SilenceCommand::Silence {
                alert_id: a.id.clone(),
                labels: a.labels.clone(),
                by: ack.by.clone(),
                comment: ack.comment.clone(),
                ends_at_ms: now + notify.silence_max_ms,
            });
        }
    }

    /// The alert resolved: its acknowledgement's silences go.
    pub(super) fn unsilence(&self, alert_id: &str) {
        for s in self.notify.iter().flat_map(|n| &n.silences) {
            s.do_send(SilenceCommand::Unsilence {
                alert_id: alert_id.to_string(),
            });
        }
    }

    /// The active silences matching `a` (its labels with the external labels it lacks, as
    /// Alertmanager holds it).
    pub(super) fn silenced_by(&self, g: &GroupState, a: &Alert) -> Vec<String> {
        if self.silenced.values().all(Vec::is_empty) {
            return Vec::new();
        }
        let labels = as_sent(&g.template_env.external_labels, a);
        self.silenced
            .values()
            .flatten()
            .filter(|s| s.matches(&labels))
            .map(|s| s.id.clone())
            .collect()
    }
}

/// An alert's labels as Alertmanager gets them: with the external labels it lacks.
fn as_sent(
    external: &std::collections::BTreeMap<String, String>,
    a: &Alert,
) -> std::collections::BTreeMap<String, String> {
    let mut labels = a.labels.clone();
    for (k, v) in external {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    labels
}

impl Handler<SilencesSeen> for RuleEngine {
    type Result = ();

    /// A silence made for an acknowledgement was expired in Alertmanager: the
    /// acknowledgement goes too. The active silences are kept for the alerts' views.
    fn handle(&mut self, seen: SilencesSeen, ctx: &mut Self::Context) {
        let mut changes = Vec::new();
        for id in seen.expired_acks {
            if self.acks.remove(&id).is_some() {
                tracing::info!(alert = %id, "acknowledgement cleared: its silence was expired in Alertmanager");
                changes.push(Change::Unacknowledged(id));
            }
        }
        self.silenced.insert(seen.source, seen.active);
        self.persist(changes, ctx);
    }
}
