//! After an evaluation: the firing alerts of rules with an action (`pulse_action`) go to
//! the action runner, which decides with its guardrails (see [`crate::actions`]). Only the
//! alerts this instance owns: in `pulse aggregate`, the owner of the host decides.

use actix::prelude::*;

use super::RuleEngine;
use crate::actions::guard::Firing;
use crate::actions::messages::ActOn;
use crate::rules::alerting::AlertState;
use crate::rules::group::GroupState;

impl RuleEngine {
    /// Sends `g`'s firing alerts with an action, evaluated at `now`, to the runner.
    pub(super) fn act(&self, g: &GroupState, now: i64) {
        let Some(runner) = &self.actions else {
            return;
        };
        let mut firing = Vec::new();
        for rule in g.alerts.iter().flatten() {
            let Some(action) = &rule.spec.action else {
                continue;
            };
            for a in rule.alerts.values() {
                if a.state != AlertState::Firing || !self.owns(a) {
                    continue;
                }
                firing.push(Firing {
                    alert_id: a.id.clone(),
                    rule: rule.spec.name.clone(),
                    labels: a.labels.clone(),
                    value: a.value,
                    fired_at_ms: a.fired_at_ms.unwrap_or(a.active_at_ms),
                    action: action.clone(),
                    acknowledged: self.acks.contains_key(&a.id),
                    silenced: !self.silenced_by(g, a).is_empty(),
                });
            }
        }
        if !firing.is_empty() {
            runner.do_send(ActOn {
                now_ms: now,
                firing,
            });
        }
    }

    /// Firing alerts of rules with an action go to this runner.
    pub fn with_actions(mut self, runner: Recipient<ActOn>) -> Self {
        self.actions = Some(runner);
        self
    }
}
