//! What the rule engine reports to status and `/metrics`.

use actix::prelude::*;

use super::RuleEngine;
use crate::runtime::stats::{figure, ComponentState, ComponentStats, GetStats};

impl Handler<GetStats> for RuleEngine {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let mut st = ComponentStats::new("rule_engine", "processor");
        st.dropped_total = self.events_dropped;
        st.set(figure::RULE_GROUPS, self.load.groups as f64);
        st.set(figure::RULES, self.load.rules as f64);
        st.set(figure::RULE_EVALUATIONS_TOTAL, self.evaluations as f64);
        st.set(
            figure::RULE_EVALUATION_ERRORS_TOTAL,
            self.eval_errors as f64,
        );
        st.set(
            figure::RULE_EVALUATION_LAST_SECONDS,
            self.last_eval_ms / 1000.0,
        );
        st.set(
            figure::RULE_EVALUATIONS_ON_INGEST_TOTAL,
            self.ingest_evaluations as f64,
        );
        st.set(figure::ALERT_HISTORY_ENTRIES, self.history.len() as f64);
        let counts = self.counts();
        st.set(figure::ALERTS_FIRING, counts.firing as f64);
        st.set(figure::ALERTS_PENDING, counts.pending as f64);
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
            st.set(
                figure::ALERT_STATE_WRITE_FAILURES_TOTAL,
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
