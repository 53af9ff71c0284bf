//! Reloading the rule files (a bad file keeps the old rules running), and the loaded rules
//! with their health for `GET /api/v1/rules`.

use std::collections::{BTreeMap, HashMap};

use actix::prelude::*;

use super::schedule::slot;
use super::{GetRules, GroupInfo, LoadStatus, ReloadRules, RuleEngine, RuleInfo};
use crate::rules::group::GroupState;
use crate::rules::{load_sources, RuleGroup};

impl Handler<ReloadRules> for RuleEngine {
    type Result = ResponseActFuture<Self, Result<LoadStatus, String>>;

    fn handle(&mut self, _: ReloadRules, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.groups_back().map(|(), act, _| act.reload()))
    }
}

impl RuleEngine {
    pub(super) fn reload(&mut self) -> Result<LoadStatus, String> {
        let now = self.clock.now_ms();
        let groups = match load_sources(self.sources.builtin_pack, &self.sources.paths) {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("rule reload failed, the previous rules keep running: {e}");
                self.load.last_error = Some(e.to_string());
                return Err(e.to_string());
            }
        };
        // Keep the alerts of rules that did not change (same file, group, position, kind, expr).
        let mut old: HashMap<(String, String), GroupState> = self
            .slots
            .drain(..)
            .filter_map(|s| s.state)
            .map(|g| ((g.group.file.clone(), g.group.name.clone()), g))
            .collect();
        self.slots = groups
            .into_iter()
            .map(|g| {
                let mut state = self.sources.state_of(g);
                if let Some(prev) =
                    old.remove(&(state.group.file.clone(), state.group.name.clone()))
                {
                    state.adopt_alerts(prev);
                }
                slot(state, now)
            })
            .collect();
        self.load = load_status(
            &self
                .slots
                .iter()
                .filter_map(|s| s.state.as_ref().map(|g| g.group.clone()))
                .collect::<Vec<_>>(),
            now,
            None,
        );
        tracing::info!(
            groups = self.load.groups,
            rules = self.load.rules,
            "rules reloaded"
        );
        Ok(self.load.clone())
    }
}

pub(super) fn load_status(
    groups: &[RuleGroup],
    now: i64,
    last_error: Option<String>,
) -> LoadStatus {
    LoadStatus {
        loaded_at_ms: now,
        groups: groups.len(),
        rules: groups.iter().map(|g| g.rules.len()).sum(),
        last_error,
    }
}

impl Handler<GetRules> for RuleEngine {
    type Result = ResponseActFuture<Self, Vec<GroupInfo>>;

    fn handle(&mut self, _: GetRules, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.groups_back().map(|(), act, _| act.rules_info()))
    }
}

impl RuleEngine {
    pub(super) fn rules_info(&self) -> Vec<GroupInfo> {
        self.slots
            .iter()
            .filter_map(|s| s.state.as_ref())
            .map(|g| GroupInfo {
                file: g.group.file.clone(),
                name: g.group.name.clone(),
                interval_ms: g.group.interval_ms,
                last_eval_ms: g.last_eval_ms,
                rules: g
                    .group
                    .rules
                    .iter()
                    .zip(&g.alerts)
                    .map(|(r, state)| {
                        let written = |pairs: &[(String, crate::rules::template::Template)]| {
                            pairs
                                .iter()
                                .map(|(k, t)| (k.clone(), t.source().to_string()))
                                .collect()
                        };
                        let alerts: Vec<_> = state
                            .as_ref()
                            .map(|s| s.active().cloned().collect())
                            .unwrap_or_default();
                        let info = RuleInfo {
                            kind: "record",
                            name: String::new(),
                            expr: r.query.text.clone(),
                            last_error: g.last_errors.get(&r.describe()).cloned(),
                            active_alerts: alerts.len(),
                            for_ms: 0,
                            keep_firing_for_ms: 0,
                            labels: BTreeMap::new(),
                            annotations: BTreeMap::new(),
                            alerts,
                        };
                        match &r.kind {
                            crate::rules::RuleKind::Alert(a) => RuleInfo {
                                kind: "alert",
                                name: a.name.clone(),
                                for_ms: a.for_ms,
                                keep_firing_for_ms: a.keep_firing_for_ms,
                                labels: written(&a.labels),
                                annotations: written(&a.annotations),
                                ..info
                            },
                            crate::rules::RuleKind::Record { name, labels } => RuleInfo {
                                name: name.clone(),
                                labels: labels.clone(),
                                ..info
                            },
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}
