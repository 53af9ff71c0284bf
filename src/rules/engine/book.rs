//! The alert book: transitions applied and sent downstream, acknowledgements, the history of
//! resolved alerts, and the reads the API makes of them.

use actix::dev::SendError;
use actix::prelude::*;

use super::{AckError, Acknowledge, GetActiveAlerts, GetAlertCounts, GetAlertHistory, RuleEngine};
use crate::rules::alerting::{Alert, AlertState, Transition};
use crate::rules::alerting::{AlertEvent, AlertEventKind};
use crate::rules::group::GroupState;
use crate::rules::store::{Change, StoredAlert};
use crate::rules::view::{Acknowledgement, AlertCounts, AlertView};

impl RuleEngine {
    pub(super) fn view(&self, g: &GroupState, a: &Alert) -> AlertView {
        AlertView {
            name: a.labels.get("alertname").cloned().unwrap_or_default(),
            group: g.group.name.clone(),
            file: g.group.file.clone(),
            acknowledgement: self.acks.get(&a.id).cloned(),
            silenced_by: self.silenced_by(g, a),
            alert: a.clone(),
        }
    }

    pub(super) fn active_views(&self) -> Vec<AlertView> {
        let mut out = Vec::new();
        for g in self.slots.iter().filter_map(|s| s.state.as_ref()) {
            for rule in g.alerts.iter().flatten() {
                out.extend(rule.active().map(|a| self.view(g, a)));
            }
        }
        out.sort_by(|a, b| {
            b.alert
                .active_at_ms
                .cmp(&a.alert.active_at_ms)
                .then(a.alert.id.cmp(&b.alert.id))
        });
        out
    }

    pub(super) fn emit(&mut self, kind: AlertEventKind, at_ms: i64, alert: &Alert) {
        for d in &self.downstream {
            let event = AlertEvent {
                kind,
                at_ms,
                alert: alert.clone(),
            };
            // A burst of transitions (a whole pack firing at once) may outrun the sink's
            // mailbox: queue it past the bound rather than lose it; only a stopped
            // recipient drops (counted).
            match d.try_send(event) {
                Ok(()) => {}
                Err(SendError::Full(event)) => d.do_send(event),
                Err(SendError::Closed(_)) => self.events_dropped += 1,
            }
        }
    }

    pub(super) fn apply(
        &mut self,
        g: &GroupState,
        transitions: Vec<Transition>,
        at_ms: i64,
        ctx: &mut Context<Self>,
    ) {
        let mut changes = Vec::new();
        let stored = |a: &Alert| Change::Active(StoredAlert::new(&g.group.name, &g.group.file, a));
        for t in transitions {
            let alert = match &t {
                Transition::Pending(a)
                | Transition::Firing(a)
                | Transition::Cancelled(a)
                | Transition::Resolved(a) => a,
            };
            // Evaluated just before its host was given away: the new owner has it now.
            if !self.owns(alert) {
                continue;
            }
            match t {
                Transition::Pending(a) => {
                    tracing::debug!(alert = %a.labels["alertname"], id = %a.id, "pending");
                    self.emit(AlertEventKind::Pending, at_ms, &a);
                    changes.push(stored(&a));
                }
                Transition::Firing(a) => {
                    tracing::info!(alert = %a.labels["alertname"], id = %a.id, value = a.value, "firing");
                    self.emit(AlertEventKind::Firing, at_ms, &a);
                    changes.push(stored(&a));
                }
                Transition::Cancelled(a) => {
                    self.acks.remove(&a.id);
                    self.unsilence(&a.id);
                    self.emit(AlertEventKind::Cancelled, at_ms, &a);
                    changes.push(Change::Gone(a.id.clone()));
                }
                Transition::Resolved(a) => {
                    tracing::info!(alert = %a.labels["alertname"], id = %a.id, "resolved");
                    self.emit(AlertEventKind::Resolved, at_ms, &a);
                    let view = self.view(g, &a);
                    changes.push(Change::Gone(a.id.clone()));
                    changes.push(Change::History(Box::new(view.clone())));
                    self.acks.remove(&a.id);
                    self.unsilence(&a.id);
                    self.history.push_back(view);
                    while self.history.len() > self.history_max {
                        self.history.pop_front();
                    }
                }
            }
        }
        self.persist(changes, ctx);
    }
}

impl RuleEngine {
    pub(super) fn acknowledge_and_store(
        &mut self,
        msg: Acknowledge,
    ) -> ResponseActFuture<Self, Result<AlertView, AckError>> {
        let id = msg.id.clone();
        let known = self.acks.contains_key(&id);
        let result = self.acknowledge(msg);
        let store = match (&result, &self.alert_store, known) {
            (Ok(view), Some(store), false) => Some((store.clone(), view.clone())),
            _ => None,
        };
        let Some((store, view)) = store else {
            return Box::pin(fut::ready(result));
        };
        let ack = view.acknowledgement.clone().expect("just acknowledged");
        let write = async move { store.acknowledge(&id, &ack).await.map(|()| id) };
        Box::pin(
            write
                .into_actor(self)
                .map(move |written, act, _| match written {
                    Ok(_) => {
                        act.persist_error = None;
                        Ok(view)
                    }
                    Err(e) => {
                        act.acks.remove(&view.alert.id);
                        act.persist_failures += 1;
                        act.persist_error = Some(e.clone());
                        // Redis may have lost what it held (restarted without persistence).
                        act.resync = true;
                        Err(AckError::NotStored(e))
                    }
                }),
        )
    }
}

impl RuleEngine {
    pub(super) fn acknowledge(&mut self, msg: Acknowledge) -> Result<AlertView, AckError> {
        let mut found: Option<(AlertState, AlertView)> = None;
        for g in self.slots.iter().filter_map(|s| s.state.as_ref()) {
            for rule in g.alerts.iter().flatten() {
                if let Some(a) = rule.alerts.get(&msg.id) {
                    found = Some((a.state, self.view(g, a)));
                }
            }
        }
        match found {
            Some((AlertState::Inactive, _)) => Err(AckError::Resolved(msg.id)),
            Some((_, mut view)) => {
                let now = self.clock.now_ms();
                let ack = self
                    .acks
                    .entry(msg.id.clone())
                    .or_insert_with(|| Acknowledgement {
                        by: msg.by,
                        comment: msg.comment,
                        at_ms: now,
                    })
                    .clone();
                if view.acknowledgement.is_none() {
                    self.emit(AlertEventKind::Acknowledged, now, &view.alert.clone());
                    self.silence(&view.alert, &ack, now);
                }
                view.acknowledgement = Some(ack);
                Ok(view)
            }
            None if self.history.iter().any(|h| h.alert.id == msg.id) => {
                Err(AckError::Resolved(msg.id))
            }
            None => Err(AckError::NotFound(msg.id)),
        }
    }
}

impl RuleEngine {
    pub(super) fn counts(&self) -> AlertCounts {
        let mut c = AlertCounts::default();
        for a in self.active_views() {
            match a.alert.state {
                AlertState::Firing => c.firing += 1,
                AlertState::Pending => c.pending += 1,
                AlertState::Inactive => {}
            }
            if a.acknowledgement.is_some() {
                c.acknowledged += 1;
            }
        }
        c
    }
}

// Handlers that read or change the groups wait until none is out being evaluated: a group
// in flight is not in its slot, and its alerts would be missing from the answer (or, on a
// reload, lost).

impl Handler<GetActiveAlerts> for RuleEngine {
    type Result = ResponseActFuture<Self, Vec<AlertView>>;

    fn handle(
        &mut self,
        GetActiveAlerts(filter): GetActiveAlerts,
        _: &mut Self::Context,
    ) -> Self::Result {
        Box::pin(self.groups_back().map(move |(), act, _| {
            act.active_views()
                .into_iter()
                .filter(|a| filter.accepts(a, a.alert.active_at_ms))
                .collect()
        }))
    }
}

impl Handler<GetAlertHistory> for RuleEngine {
    type Result = MessageResult<GetAlertHistory>;

    fn handle(&mut self, q: GetAlertHistory, _: &mut Self::Context) -> Self::Result {
        let matching: Vec<&AlertView> = self
            .history
            .iter()
            .rev()
            .filter(|h| q.filter.accepts(h, h.alert.resolved_at_ms.unwrap_or(0)))
            .collect();
        let total = matching.len();
        let page = matching
            .into_iter()
            .skip(q.offset)
            .take(q.limit)
            .cloned()
            .collect();
        MessageResult((total, page))
    }
}

impl Handler<Acknowledge> for RuleEngine {
    type Result = ResponseActFuture<Self, Result<AlertView, AckError>>;

    /// With a store, a new acknowledgement is written there before the answer; if that
    /// fails it is taken back and the caller hears why.
    fn handle(&mut self, msg: Acknowledge, _: &mut Self::Context) -> Self::Result {
        Box::pin(
            self.groups_back()
                .then(move |(), act, _| act.acknowledge_and_store(msg)),
        )
    }
}

impl Handler<GetAlertCounts> for RuleEngine {
    type Result = ResponseActFuture<Self, AlertCounts>;

    fn handle(&mut self, _: GetAlertCounts, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.groups_back().map(|(), act, _| act.counts()))
    }
}
