//! What the rule engine reports to status and `/metrics`.

use actix::prelude::*;

use super::RuleEngine;
use crate::messages::stats::{ComponentState, ComponentStats, GetStats};

impl Handler<GetStats> for RuleEngine {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let mut st = ComponentStats::new("rule_engine", "processor");
        st.dropped_total = self.events_dropped;
        st.extra.insert("rule_groups", self.load.groups as f64);
        st.extra.insert("rules", self.load.rules as f64);
        st.extra
            .insert("rule_evaluations_total", self.evaluations as f64);
        st.extra
            .insert("rule_evaluation_errors_total", self.eval_errors as f64);
        st.extra
            .insert("rule_evaluation_last_seconds", self.last_eval_ms / 1000.0);
        st.extra.insert(
            "rule_evaluations_on_ingest_total",
            self.ingest_evaluations as f64,
        );
        st.extra
            .insert("alert_history_entries", self.history.len() as f64);
        let counts = self.counts();
        st.extra.insert("alerts_firing", counts.firing as f64);
        st.extra.insert("alerts_pending", counts.pending as f64);
        st.reason = Some(format!(
            "{} groups, {} rules{}",
            self.load.groups,
            self.load.rules,
            self.restore_note
                .as_ref()
                .map(|n| format!("; {n}"))
                .unwrap_or_default()
        ));
        if self.alert_store.is_some() {
            st.extra.insert(
                "alert_state_write_failures_total",
                self.persist_failures as f64,
            );
        }
        if let Some(e) = &self.persist_error {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!(
                "alert state cannot be written to Redis (alerts keep being evaluated; \
                 acknowledgements are refused until it can): {e}"
            ));
        } else if let Some(e) = &self.unreachable {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!(
                "Redis does not answer (alerts keep being evaluated; their state is written \
                 again when it does): {e}"
            ));
        } else if let Some(e) = &self.load.last_error {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!(
                "last rule reload failed, previous rules still running: {e}"
            ));
        } else if let Some(e) = &self.store_error {
            st.state = ComponentState::Degraded;
            st.reason = Some(e.clone());
        } else if let Some((group, rule, e)) = self
            .slots
            .iter()
            .filter_map(|s| s.state.as_ref())
            .find_map(|g| {
                g.last_errors
                    .iter()
                    .next()
                    .map(|(r, e)| (&g.group.name, r, e))
            })
        {
            // Degraded while a rule's latest evaluation fails; operational again once it passes.
            st.state = ComponentState::Degraded;
            st.reason = Some(format!(
                "rule evaluation error: group {group:?}, {rule}: {e}"
            ));
        }
        MessageResult(st)
    }
}
