//! Host hand-over in `pulse aggregate`: the alerts of hosts this instance adopts are read
//! back from Redis into their rules; those of hosts it gives away are forgotten.

use std::collections::HashSet;

use actix::prelude::*;

use super::{AdoptAlerts, ReleaseAlerts, RuleEngine};
use crate::rules::alerting::Alert;
use crate::rules::group::GroupState;
use crate::rules::store::{Change, StoredAlert};

impl RuleEngine {
    /// Keeps only the alerts of hosts handed over with [`AdoptAlerts`] (`pulse aggregate`).
    pub fn scoped_to_adopted_hosts(mut self) -> Self {
        self.ownership = Some(HashSet::new());
        self
    }

    pub(super) fn owns(&self, a: &Alert) -> bool {
        match (
            &self.ownership,
            a.labels.get(crate::model::catalog::HOSTNAME),
        ) {
            (Some(hosts), Some(h)) => hosts.contains(h),
            _ => true,
        }
    }

    /// Puts parked alerts into their rules: same group and alert name, in the same file if
    /// that group is loaded from it (another aggregate instance may keep its rule files
    /// elsewhere). Answers how many were placed, and the ids of those whose rule is no
    /// longer loaded (known only once every group is back from evaluation; until then they
    /// stay parked).
    pub(super) fn place_parked(&mut self) -> (usize, Vec<String>) {
        let all_present = self.slots.iter().all(|s| s.state.is_some());
        let (mut placed, mut orphans, mut waiting) = (0, Vec::new(), Vec::new());
        for stored in std::mem::take(&mut self.parked) {
            let name = stored
                .alert
                .labels
                .get("alertname")
                .cloned()
                .unwrap_or_default();
            let same_file = self.slots.iter().any(|s| {
                s.state
                    .as_ref()
                    .is_some_and(|g| g.group.name == stored.group && g.group.file == stored.file)
            });
            let rule = self
                .slots
                .iter_mut()
                .filter_map(|s| s.state.as_mut())
                .filter(|g| {
                    g.group.name == stored.group && (!same_file || g.group.file == stored.file)
                })
                .flat_map(|g| g.alerts.iter_mut().flatten())
                .find(|rule| rule.spec.name == name);
            match rule {
                Some(rule) => {
                    rule.alerts
                        .insert(stored.alert.id.clone(), stored.into_alert());
                    placed += 1;
                }
                None if all_present => orphans.push(stored.alert.id),
                None => waiting.push(stored),
            }
        }
        self.parked = waiting;
        (placed, orphans)
    }

    /// Drops the alerts (and their acknowledgements) of hosts this engine does not own.
    pub(super) fn drop_unowned(&mut self, g: &mut GroupState) -> usize {
        let mut gone = Vec::new();
        for rule in g.alerts.iter_mut().flatten() {
            rule.alerts.retain(|id, a| {
                let keep = self.owns(a);
                if !keep {
                    gone.push(id.clone());
                }
                keep
            });
        }
        for id in &gone {
            self.acks.remove(id);
        }
        gone.len()
    }
}

impl Handler<AdoptAlerts> for RuleEngine {
    type Result = ResponseActFuture<Self, Result<usize, String>>;

    /// No evaluation runs from the moment the hosts are handed over until their alerts are
    /// in place: an evaluation of the rebuilt windows in between would start those alerts
    /// anew. Evaluations already out drop what they found for these hosts (not yet owned).
    fn handle(&mut self, AdoptAlerts(hosts): AdoptAlerts, _: &mut Self::Context) -> Self::Result {
        self.adopting += 1;
        let store = self.alert_store.clone();
        let load = self.groups_back().then(move |(), act, _| {
            async move {
                match store {
                    Some(store) => store.load().await.map(Some),
                    None => Ok(None),
                }
            }
            .into_actor(act)
        });
        Box::pin(load.map(move |loaded, act, ctx| {
            act.adopting -= 1;
            if let Some(owned) = &mut act.ownership {
                owned.extend(hosts.iter().cloned());
            }
            let Some(r) = loaded? else {
                return Ok(0);
            };
            let of_hosts = |a: &Alert| {
                a.labels
                    .get(crate::model::catalog::HOSTNAME)
                    .is_some_and(|h| hosts.contains(h))
            };
            let adopted: Vec<StoredAlert> = r
                .active
                .into_iter()
                .filter(|s| of_hosts(&s.alert))
                .collect();
            for s in &adopted {
                if let Some(ack) = r.acks.get(&s.alert.id) {
                    act.acks.insert(s.alert.id.clone(), ack.clone());
                }
            }
            act.parked.extend(adopted);
            let (placed, orphans) = act.place_parked();
            act.persist(orphans.into_iter().map(Change::Gone).collect(), ctx);
            Ok(placed)
        }))
    }
}

impl Handler<ReleaseAlerts> for RuleEngine {
    type Result = usize;

    fn handle(&mut self, ReleaseAlerts(hosts): ReleaseAlerts, _: &mut Self::Context) -> usize {
        let Some(owned) = &mut self.ownership else {
            return 0;
        };
        owned.retain(|h| !hosts.contains(h));
        self.parked.retain(|s| {
            s.alert
                .labels
                .get(crate::model::catalog::HOSTNAME)
                .is_none_or(|h| !hosts.contains(h))
        });
        // Groups out for evaluation drop theirs when they return.
        let mut slots = std::mem::take(&mut self.slots);
        let dropped = slots
            .iter_mut()
            .filter_map(|s| s.state.as_mut())
            .map(|g| self.drop_unowned(g))
            .sum();
        self.slots = slots;
        dropped
    }
}
