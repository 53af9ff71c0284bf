//! Alert state kept in Redis: restored at start, every change written in order, and the
//! whole state written again after a failed write or after Redis stopped answering (it may
//! come back empty). Redis is checked every `STORE_CHECK`, so status shows it gone before
//! an alert changes.

use std::collections::HashSet;
use std::time::Duration;

use actix::prelude::*;

use super::{RuleEngine, RESTORE_GRACE_MS};
use crate::rules::store::{AlertStore, Change, Restored, StoredAlert};
use crate::rules::view::AlertView;

/// How often the engine checks that Redis answers, between writes.
pub(super) const STORE_CHECK: Duration = Duration::from_secs(5);

impl RuleEngine {
    /// Keeps alert state in `store` and restores it from there at start.
    pub fn with_alert_store(mut self, store: AlertStore) -> Self {
        self.alert_store = Some(store);
        self
    }

    /// Puts what the store held back: acknowledgements, history, and each active alert
    /// into its rule (same group, file and alert name). Alerts whose rule is gone are
    /// removed from the store.
    pub(super) fn restore(&mut self, r: Restored, ctx: &mut Context<Self>) {
        // In `pulse aggregate`, other instances' alerts stay theirs.
        let mine: Vec<StoredAlert> = r
            .active
            .into_iter()
            .filter(|s| self.owns(&s.alert))
            .collect();
        let ids: HashSet<&str> = mine.iter().map(|s| s.alert.id.as_str()).collect();
        let acks = r
            .acks
            .into_iter()
            .filter(|(id, _)| ids.contains(id.as_str()))
            .collect();
        self.parked.extend(mine);
        let (placed, orphans) = self.place_parked();
        if placed > 0 {
            let first = self.clock.now_ms() + RESTORE_GRACE_MS;
            for s in &mut self.slots {
                s.next_due_ms = s.next_due_ms.max(first);
            }
            self.ingest_not_before_ms = first;
        }
        self.acks = acks;
        self.restored = true;
        self.history = r.history.into_iter().collect();
        while self.history.len() > self.history_max {
            self.history.pop_front();
        }
        let note = format!(
            "restored {placed} active alerts, {} acknowledgements, {} history entries from Redis{}{}",
            self.acks.len(),
            self.history.len(),
            if orphans.is_empty() {
                String::new()
            } else {
                format!("; {} alerts of rules no longer loaded dropped", orphans.len())
            },
            if r.unreadable > 0 {
                format!("; {} unreadable entries skipped", r.unreadable)
            } else {
                String::new()
            }
        );
        tracing::info!("{note}");
        self.restore_note = Some(note);
        if !orphans.is_empty() {
            self.persist(orphans.into_iter().map(Change::Gone).collect(), ctx);
        }
    }

    /// Checks that the store answers. While it does not, status says so; when it answers
    /// again, the whole state is written again (a Redis restarted without persistence comes
    /// back empty), unless the state was never read back from it at start.
    pub(super) fn check_store(&mut self, ctx: &mut Context<Self>) {
        let Some(store) = self.alert_store.clone() else {
            return;
        };
        if self.checking || self.restoring {
            return;
        }
        self.checking = true;
        let ping = async move { store.ping().await };
        ctx.spawn(ping.into_actor(self).map(|result, act, ctx| {
            act.checking = false;
            match result {
                Err(e) => {
                    if act.unreachable.is_none() {
                        tracing::warn!("Redis does not answer the rule engine: {e}");
                    }
                    act.unreachable = Some(e);
                    act.resync |= act.restored;
                }
                // Back: still degraded until the state is written again.
                Ok(()) if act.unreachable.is_some() && act.resync => act.resync_if_needed(ctx),
                Ok(()) => act.answered(),
            }
        }));
    }

    /// Redis answered: no longer unreachable (said once).
    fn answered(&mut self) {
        if self.unreachable.take().is_some() {
            tracing::info!("Redis answers the rule engine again");
        }
    }

    /// Writes alert-state changes to the store, in order, without waiting.
    pub(super) fn persist(&mut self, changes: Vec<Change>, ctx: &mut Context<Self>) {
        let Some(store) = self.alert_store.clone() else {
            return;
        };
        if changes.is_empty() {
            return;
        }
        let gone: Vec<String> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Gone(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        let histories: Vec<AlertView> = changes
            .iter()
            .filter_map(|c| match c {
                Change::History(v) => Some((**v).clone()),
                _ => None,
            })
            .collect();
        let write = async move { store.write(changes).await };
        ctx.spawn(write.into_actor(self).map(|result, act, _| match result {
            Ok(()) => {
                act.persist_error = None;
                act.answered();
            }
            Err(e) => {
                if act.persist_error.is_none() {
                    tracing::warn!("alert state not written to Redis: {e}");
                }
                act.persist_failures += 1;
                act.persist_error = Some(e);
                act.resync = true;
                act.unsent_history.extend(histories);
                if act.ownership.is_some() {
                    act.unsent_gone.extend(gone);
                }
                let excess = act.unsent_history.len().saturating_sub(act.history_max);
                act.unsent_history.drain(..excess);
            }
        }));
    }

    /// After a failed write: the whole active state (replacing what Redis holds) and the
    /// history entries that did not get there. A failure sets `resync` again.
    pub(super) fn resync_if_needed(&mut self, ctx: &mut Context<Self>) {
        if !self.resync || self.alert_store.is_none() {
            return;
        }
        self.resync = false;
        let mut active = Vec::new();
        for g in self.slots.iter().filter_map(|s| s.state.as_ref()) {
            for rule in g.alerts.iter().flatten() {
                active.extend(
                    rule.active()
                        .map(|a| StoredAlert::new(&g.group.name, &g.group.file, a)),
                );
            }
        }
        let acks = self.acks.clone().into_iter().collect();
        let replace_all = self.ownership.is_none();
        let mut changes = vec![Change::Snapshot {
            active,
            acks,
            replace_all,
        }];
        changes.extend(
            std::mem::take(&mut self.unsent_gone)
                .into_iter()
                .map(Change::Gone),
        );
        changes.extend(
            std::mem::take(&mut self.unsent_history)
                .into_iter()
                .map(|v| Change::History(Box::new(v))),
        );
        self.persist(changes, ctx);
    }
}
