//! Rule engine actor: evaluates the rule groups on their intervals, and (when evaluation on
//! ingest is on) as soon as samples a group reads are stored, at most once per minimum gap
//! (each evaluation runs on the window store's thread, see `EvalGroups`). Keeps the alerts'
//! states, their acknowledgements and a bounded history of resolved alerts, and reloads the rule files on
//! request (SIGHUP, `POST /api/v1/rules/reload`): a bad file keeps the old rules running.
//! Each state change goes to its downstream as an [`AlertEvent`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use actix::dev::SendError;
use actix::prelude::*;
use opentelemetry::trace::SpanKind;
use serde::Serialize;

use crate::actors::window_store::WindowStoreActor;
use crate::clock::Clock;
use crate::messages::alerts::{AlertEvent, AlertEventKind, EvalGroups, Stored};
use crate::messages::stats::{ComponentState, ComponentStats, GetStats};
use crate::model::selector::Selector;
use crate::rules::alerting::{Alert, AlertState, Transition};
use crate::rules::group::GroupState;
use crate::rules::store::{AlertStore, Change, Restored, StoredAlert};
use crate::rules::{load_sources, Reads, RuleGroup};

/// How often the engine checks which groups are due.
pub const TICK: Duration = Duration::from_millis(250);
/// After restoring alerts, rules are first evaluated this much later: a restarted Pulse
/// starts with empty windows, and a restored alert must not resolve for want of samples.
pub const RESTORE_GRACE_MS: i64 = 5_000;

/// Where rules come from.
#[derive(Debug, Clone)]
pub struct RuleSources {
    pub builtin_pack: bool,
    pub paths: Vec<PathBuf>,
}

/// An acknowledgement: someone has seen the alert. Not a silence: the alert keeps firing.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Acknowledgement {
    pub by: String,
    pub comment: String,
    pub at_ms: i64,
}

/// An alert as the API shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AlertView {
    #[serde(flatten)]
    pub alert: Alert,
    pub name: String,
    pub group: String,
    pub file: String,
    pub acknowledgement: Option<Acknowledgement>,
}

/// Result of loading the rule files.
#[derive(Debug, Clone, Serialize)]
pub struct LoadStatus {
    pub loaded_at_ms: i64,
    pub groups: usize,
    pub rules: usize,
    /// The last reload's error; the rules loaded before it keep running.
    pub last_error: Option<String>,
}

/// Filters of the active-alerts list.
#[derive(Debug, Default, Clone)]
pub struct AlertFilter {
    pub state: Option<AlertState>,
    pub severity: Option<String>,
    pub name: Option<String>,
    pub matchers: Selector,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

impl AlertFilter {
    fn accepts(&self, a: &AlertView, at_ms: i64) -> bool {
        let series = crate::model::series::SeriesKey::new(a.name.clone(), a.alert.labels.clone());
        self.state.is_none_or(|s| a.alert.state == s)
            && self
                .severity
                .as_ref()
                .is_none_or(|s| a.alert.labels.get("severity") == Some(s))
            && self.name.as_ref().is_none_or(|n| &a.name == n)
            && self.matchers.matches(&series)
            && self.since_ms.is_none_or(|t| at_ms >= t)
            && self.until_ms.is_none_or(|t| at_ms <= t)
    }
}

/// Active (pending and firing) alerts.
#[derive(Debug, Message)]
#[rtype(result = "Vec<AlertView>")]
pub struct GetActiveAlerts(pub AlertFilter);

/// Resolved alerts, newest first: (total matching, page).
#[derive(Debug, Message)]
#[rtype(result = "(usize, Vec<AlertView>)")]
pub struct GetAlertHistory {
    pub filter: AlertFilter,
    pub offset: usize,
    pub limit: usize,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AckError {
    #[error("no alert with id {0}")]
    NotFound(String),
    #[error("alert {0} is resolved; only active alerts can be acknowledged")]
    Resolved(String),
    /// The acknowledgement could not be stored in Redis; it was not taken.
    #[error("the acknowledgement could not be stored in Redis, so it was not taken: {0}")]
    NotStored(String),
}

/// Acknowledge an active alert.
#[derive(Debug, Message)]
#[rtype(result = "Result<AlertView, AckError>")]
pub struct Acknowledge {
    pub id: String,
    pub by: String,
    pub comment: String,
}

/// Reload the rule files.
#[derive(Debug, Message)]
#[rtype(result = "Result<LoadStatus, String>")]
pub struct ReloadRules;

/// Counts for the dashboard summary.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AlertCounts {
    pub firing: usize,
    pub pending: usize,
    pub acknowledged: usize,
}

#[derive(Debug, Message)]
#[rtype(result = "AlertCounts")]
pub struct GetAlertCounts;

/// The loaded groups and rules, with their health.
#[derive(Debug, Message)]
#[rtype(result = "Vec<GroupInfo>")]
pub struct GetRules;

/// One group in `GET /api/v1/rules`.
#[derive(Debug, Clone, Serialize)]
pub struct GroupInfo {
    pub file: String,
    pub name: String,
    pub interval_ms: i64,
    /// When the group last ran (null before its first evaluation, or while it runs).
    pub last_eval_ms: Option<i64>,
    pub rules: Vec<RuleInfo>,
}

/// One rule in `GET /api/v1/rules`.
#[derive(Debug, Clone, Serialize)]
pub struct RuleInfo {
    /// `alert` or `record`.
    pub kind: &'static str,
    pub name: String,
    pub expr: String,
    /// The last evaluation's error, if it failed.
    pub last_error: Option<String>,
    /// Pending and firing alerts of an alerting rule.
    pub active_alerts: usize,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Tick;

/// One group and when it is next due.
struct Slot {
    /// `None` while the group is out being evaluated.
    state: Option<GroupState>,
    next_due_ms: i64,
    /// The metric names the group reads.
    reads: Reads,
    /// Samples it reads were stored since its last evaluation started.
    dirty: bool,
    /// When the last evaluation that stored samples started began (the gap counts from it:
    /// an interval run just before does not hold the next samples back).
    ingest_started_ms: i64,
}

/// The rule engine.
pub struct RuleEngine {
    slots: Vec<Slot>,
    store: Addr<WindowStoreActor>,
    sources: RuleSources,
    clock: Clock,
    /// Where alert events go (sinks, later issues).
    downstream: Vec<Recipient<AlertEvent>>,
    /// By alert id.
    acks: HashMap<String, Acknowledgement>,
    /// Resolved alerts, newest at the back.
    history: VecDeque<AlertView>,
    history_max: usize,
    load: LoadStatus,
    evaluations: u64,
    eval_errors: u64,
    /// The window store stopped answering: the groups sent to it are lost.
    store_error: Option<String>,
    last_eval_ms: f64,
    events_dropped: u64,
    telemetry: crate::telemetry::Telemetry,
    /// Where alert state is kept across restarts (Redis), when configured.
    alert_store: Option<AlertStore>,
    /// Restoring from the store: no evaluation until it is done.
    restoring: bool,
    /// What the restore did, or why it failed.
    restore_note: Option<String>,
    /// The last failed write to the store (cleared by a successful one), and the count.
    persist_error: Option<String>,
    persist_failures: u64,
    /// A write failed: Redis may be behind. The next evaluation writes the whole active
    /// state again, and the history entries that did not get there.
    resync: bool,
    unsent_history: Vec<AlertView>,
    /// Removals (resolved, cancelled) whose write failed: sent again with the next resync.
    unsent_gone: Vec<String>,
    /// Whose alerts this engine keeps: every host's (`None`, one Pulse), or in
    /// `pulse aggregate` the hosts whose partitions this instance owns. Alerts without a
    /// `Hostname` label belong to every instance.
    ownership: Option<HashSet<String>>,
    /// Alerts read back for adopted hosts, waiting for their group to return from an
    /// evaluation.
    parked: Vec<StoredAlert>,
    /// Adoptions in progress: no evaluation starts until their alerts are placed.
    adopting: usize,
    /// Evaluation on ingest: the least time between two evaluations of a group it starts
    /// (`None`: off, groups run on their intervals only).
    ingest_gap_ms: Option<i64>,
    /// When a wake-up for a group waiting out that gap is set.
    wake_at: Option<i64>,
    /// No evaluation on ingest before this (the grace after restoring alerts, which the
    /// first samples of a restarted Pulse must not cut short).
    ingest_not_before_ms: i64,
    /// Evaluations started by stored samples rather than the interval.
    ingest_evaluations: u64,
    /// Signalled when an evaluation's groups are back in their slots.
    back: std::sync::Arc<tokio::sync::Notify>,
}

/// `pulse aggregate` took over these hosts: read their active alerts and acknowledgements
/// back from Redis into the rules. Answers how many alerts were placed.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, String>")]
pub struct AdoptAlerts(pub HashSet<String>);

/// `pulse aggregate` gave these hosts away: forget their alerts without writing anything
/// (their new owner keeps them). Answers how many were dropped.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct ReleaseAlerts(pub HashSet<String>);

impl RuleEngine {
    /// Starts from `groups` (loaded from `sources`, which reloads read again).
    pub fn new(
        groups: Vec<RuleGroup>,
        sources: RuleSources,
        store: Addr<WindowStoreActor>,
        clock: Clock,
        history_max: usize,
        downstream: Vec<Recipient<AlertEvent>>,
    ) -> Self {
        let now = clock.now_ms();
        let load = load_status(&groups, now, None);
        RuleEngine {
            slots: groups
                .into_iter()
                .map(|g| slot(GroupState::new(g), now))
                .collect(),
            store,
            sources,
            clock,
            downstream,
            acks: HashMap::new(),
            history: VecDeque::new(),
            history_max,
            load,
            evaluations: 0,
            eval_errors: 0,
            store_error: None,
            last_eval_ms: 0.0,
            events_dropped: 0,
            telemetry: Default::default(),
            alert_store: None,
            restoring: false,
            restore_note: None,
            persist_error: None,
            persist_failures: 0,
            resync: false,
            unsent_history: Vec::new(),
            unsent_gone: Vec::new(),
            ownership: None,
            parked: Vec::new(),
            adopting: 0,
            ingest_gap_ms: None,
            wake_at: None,
            ingest_not_before_ms: i64::MIN,
            ingest_evaluations: 0,
            back: Default::default(),
        }
    }

    /// Evaluates a group as soon as samples it reads are stored (the window store must be
    /// told to send [`Stored`] here), at most once per `min_gap_ms`; the interval still runs
    /// it when no such samples come.
    pub fn evaluating_on_ingest(mut self, min_gap_ms: u64) -> Self {
        self.ingest_gap_ms = Some(min_gap_ms as i64);
        self
    }

    /// Resolves once no group is out being evaluated. The check is made when the future is
    /// polled, in the same poll as whatever is chained after it: an evaluation cannot take
    /// a group out in between.
    fn groups_back(&mut self) -> std::pin::Pin<Box<dyn ActorFuture<Self, Output = ()>>> {
        Box::pin(fut::ready(()).then(|(), act: &mut Self, _| {
            let wait: std::pin::Pin<Box<dyn ActorFuture<Self, Output = ()>>> =
                if act.slots.iter().all(|s| s.state.is_some()) {
                    Box::pin(fut::ready(()))
                } else {
                    // Woken when an evaluation brings its groups back (registered now, so
                    // a return before the first poll is not missed); the timeout is a
                    // safety net.
                    let back = act.back.clone().notified_owned();
                    Box::pin(
                        async move {
                            let _ = tokio::time::timeout(Duration::from_millis(10), back).await;
                        }
                        .into_actor(act)
                        .then(|(), act, _| act.groups_back()),
                    )
                };
            wait
        }))
    }

    /// Keeps only the alerts of hosts handed over with [`AdoptAlerts`] (`pulse aggregate`).
    pub fn scoped_to_adopted_hosts(mut self) -> Self {
        self.ownership = Some(HashSet::new());
        self
    }

    fn owns(&self, a: &Alert) -> bool {
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
    fn place_parked(&mut self) -> (usize, Vec<String>) {
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
                    rule.alerts.insert(stored.alert.id.clone(), stored.alert);
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
    fn drop_unowned(&mut self, g: &mut GroupState) -> usize {
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

    /// Keeps alert state in `store` and restores it from there at start.
    pub fn with_alert_store(mut self, store: AlertStore) -> Self {
        self.alert_store = Some(store);
        self
    }

    /// Puts what the store held back: acknowledgements, history, and each active alert
    /// into its rule (same group, file and alert name). Alerts whose rule is gone are
    /// removed from the store.
    fn restore(&mut self, r: Restored, ctx: &mut Context<Self>) {
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

    /// Writes alert-state changes to the store, in order, without waiting.
    fn persist(&mut self, changes: Vec<Change>, ctx: &mut Context<Self>) {
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
            Ok(()) => act.persist_error = None,
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
    fn resync_if_needed(&mut self, ctx: &mut Context<Self>) {
        if !self.resync || self.alert_store.is_none() {
            return;
        }
        self.resync = false;
        let mut active = Vec::new();
        for g in self.slots.iter().filter_map(|s| s.state.as_ref()) {
            for rule in g.alerts.iter().flatten() {
                active.extend(rule.active().map(|a| StoredAlert {
                    group: g.group.name.clone(),
                    file: g.group.file.clone(),
                    alert: a.clone(),
                }));
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

    /// Traces each evaluation through `telemetry` (off by default).
    pub fn with_telemetry(mut self, telemetry: crate::telemetry::Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    fn view(&self, g: &GroupState, a: &Alert) -> AlertView {
        AlertView {
            name: a.labels.get("alertname").cloned().unwrap_or_default(),
            group: g.group.name.clone(),
            file: g.group.file.clone(),
            acknowledgement: self.acks.get(&a.id).cloned(),
            alert: a.clone(),
        }
    }

    fn active_views(&self) -> Vec<AlertView> {
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

    fn emit(&mut self, kind: AlertEventKind, at_ms: i64, alert: &Alert) {
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

    fn apply(
        &mut self,
        g: &GroupState,
        transitions: Vec<Transition>,
        at_ms: i64,
        ctx: &mut Context<Self>,
    ) {
        let mut changes = Vec::new();
        let stored = |a: &Alert| {
            Change::Active(StoredAlert {
                group: g.group.name.clone(),
                file: g.group.file.clone(),
                alert: a.clone(),
            })
        };
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
                    self.history.push_back(view);
                    while self.history.len() > self.history_max {
                        self.history.pop_front();
                    }
                }
            }
        }
        self.persist(changes, ctx);
    }

    /// Sends the due groups to the window store for evaluation: those whose interval has
    /// come, and those that read samples stored since their last evaluation (once the
    /// minimum gap has passed; a wake-up is set for those still inside it).
    fn eval_due(&mut self, ctx: &mut Context<Self>) {
        if self.restoring || self.adopting > 0 {
            return;
        }
        let now = self.clock.now_ms();
        let mut due = Vec::new();
        let mut wake: Option<i64> = None;
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.state.is_none() {
                continue;
            }
            let by_ingest = match self.ingest_gap_ms {
                Some(gap) if s.dirty => {
                    let at = s
                        .ingest_started_ms
                        .saturating_add(gap)
                        .max(self.ingest_not_before_ms);
                    if at > now {
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                    }
                    at <= now
                }
                _ => false,
            };
            if s.next_due_ms <= now || by_ingest {
                if s.next_due_ms > now {
                    self.ingest_evaluations += 1;
                    s.ingest_started_ms = now;
                }
                s.dirty = false;
                due.push((i, s.state.take().expect("checked")));
            }
        }
        if let Some(at) = wake {
            if self.wake_at.is_none_or(|w| w > at) {
                self.wake_at = Some(at);
                ctx.run_later(Duration::from_millis((at - now) as u64), |act, ctx| {
                    act.wake_at = None;
                    act.eval_due(ctx);
                });
            }
        }
        if due.is_empty() {
            return;
        }
        let (indices, groups): (Vec<usize>, Vec<GroupState>) = due.into_iter().unzip();
        let span = self
            .telemetry
            .root("rules.evaluate", SpanKind::Internal, None);
        if let Some(s) = &span {
            s.set("pulse.groups", groups.len() as i64);
            s.set(
                "pulse.rules",
                groups.iter().map(|g| g.group.rules.len()).sum::<usize>() as i64,
            );
        }
        let started = std::time::Instant::now();
        let store = self.store.clone();
        let fut = async move { store.send(EvalGroups { groups, t_ms: now }).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.last_eval_ms = started.elapsed().as_secs_f64() * 1000.0;
            let (mut errors, mut transitions) = (0, 0);
            match res {
                Ok(results) => {
                    for (i, (g, outcome)) in indices.into_iter().zip(results) {
                        act.evaluations += 1;
                        act.eval_errors += outcome.errors.len() as u64;
                        errors += outcome.errors.len();
                        transitions += outcome.transitions.len();
                        act.apply(&g, outcome.transitions, now, ctx);
                        let mut g = g;
                        act.drop_unowned(&mut g);
                        let interval = g.group.interval_ms;
                        let s = &mut act.slots[i];
                        // Run early by stored samples: the interval counts from this run.
                        s.next_due_ms = if now < s.next_due_ms {
                            now + interval
                        } else {
                            next_due(s.next_due_ms, interval, now)
                        };
                        s.state = Some(g);
                    }
                    act.resync_if_needed(ctx);
                    if !act.parked.is_empty() {
                        let (_, orphans) = act.place_parked();
                        act.persist(orphans.into_iter().map(Change::Gone).collect(), ctx);
                    }
                    // Samples stored while these groups were out.
                    if act.slots.iter().any(|s| s.dirty) {
                        act.eval_due(ctx);
                    }
                }
                Err(e) => {
                    // The store is gone; the groups' state is lost with the message.
                    act.store_error = Some(format!("window store did not answer: {e}"));
                    act.eval_errors += 1;
                    errors += 1;
                }
            }
            act.back.notify_waiters();
            if let Some(s) = span {
                s.set("pulse.rule_errors", errors as i64);
                s.set("pulse.alert_transitions", transitions as i64);
                if let Some(e) = &act.store_error {
                    s.error(e.clone());
                }
            }
        }));
    }
}

fn slot(state: GroupState, now: i64) -> Slot {
    Slot {
        reads: Reads::of(&state.group),
        state: Some(state),
        next_due_ms: now,
        dirty: false,
        ingest_started_ms: i64::MIN / 2,
    }
}

/// The next due time on the group's cadence, skipping missed ones.
fn next_due(prev_due: i64, interval: i64, now: i64) -> i64 {
    let mut next = prev_due + interval;
    if next <= now {
        next = now + interval - (now - prev_due) % interval;
    }
    next
}

fn load_status(groups: &[RuleGroup], now: i64, last_error: Option<String>) -> LoadStatus {
    LoadStatus {
        loaded_at_ms: now,
        groups: groups.len(),
        rules: groups.iter().map(|g| g.rules.len()).sum(),
        last_error,
    }
}

impl Actor for RuleEngine {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(store) = self.alert_store.clone() {
            // No evaluation before the state is back, or restored alerts would fire anew.
            self.restoring = true;
            let load = async move { store.load().await };
            ctx.wait(load.into_actor(self).map(|result, act, ctx| {
                act.restoring = false;
                match result {
                    Ok(r) => act.restore(r, ctx),
                    Err(e) => {
                        tracing::warn!("alert state not restored from Redis: {e}");
                        act.restore_note =
                            Some(format!("alert state not restored from Redis: {e}"));
                        act.persist_error = Some(e);
                    }
                }
            }));
        }
        ctx.run_interval(TICK, |act, ctx| act.eval_due(ctx));
        ctx.notify(Tick);
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

impl Handler<Tick> for RuleEngine {
    type Result = ();
    fn handle(&mut self, _: Tick, ctx: &mut Self::Context) {
        self.eval_due(ctx);
    }
}

impl Handler<Stored> for RuleEngine {
    type Result = ();

    /// Marks the groups reading these names and evaluates those free to run. A group out
    /// being evaluated stays marked and runs again when it is back.
    fn handle(&mut self, Stored { names }: Stored, ctx: &mut Self::Context) {
        if self.ingest_gap_ms.is_none() {
            return;
        }
        let mut any = false;
        for s in &mut self.slots {
            if !s.dirty && s.reads.any_of(names.iter().map(String::as_str)) {
                s.dirty = true;
                any = true;
            }
        }
        if any {
            self.eval_due(ctx);
        }
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

impl RuleEngine {
    fn acknowledge_and_store(
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
    fn acknowledge(&mut self, msg: Acknowledge) -> Result<AlertView, AckError> {
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

impl Handler<ReloadRules> for RuleEngine {
    type Result = ResponseActFuture<Self, Result<LoadStatus, String>>;

    fn handle(&mut self, _: ReloadRules, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.groups_back().map(|(), act, _| act.reload()))
    }
}

impl RuleEngine {
    fn reload(&mut self) -> Result<LoadStatus, String> {
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
                let mut state = GroupState::new(g);
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

impl RuleEngine {
    fn counts(&self) -> AlertCounts {
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

impl Handler<GetRules> for RuleEngine {
    type Result = ResponseActFuture<Self, Vec<GroupInfo>>;

    fn handle(&mut self, _: GetRules, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.groups_back().map(|(), act, _| act.rules_info()))
    }
}

impl RuleEngine {
    fn rules_info(&self) -> Vec<GroupInfo> {
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
                        let (kind, name) = match &r.kind {
                            crate::rules::RuleKind::Alert(a) => ("alert", a.name.clone()),
                            crate::rules::RuleKind::Record { name, .. } => ("record", name.clone()),
                        };
                        RuleInfo {
                            kind,
                            name,
                            expr: r.query.text.clone(),
                            last_error: g.last_errors.get(&r.describe()).cloned(),
                            active_alerts: state.as_ref().map_or(0, |s| s.active().count()),
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

impl Handler<GetAlertCounts> for RuleEngine {
    type Result = ResponseActFuture<Self, AlertCounts>;

    fn handle(&mut self, _: GetAlertCounts, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.groups_back().map(|(), act, _| act.counts()))
    }
}

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
            .insert("rule_evaluation_last_ms", self.last_eval_ms);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::MailboxGauge;
    use crate::messages::samples::SampleBatch;
    use crate::model::series::{Sample, SeriesKey};
    use crate::rules::parse_file;
    use crate::window::Retention;

    /// Records alert events.
    #[derive(Default)]
    struct Events(Vec<AlertEvent>);
    impl Actor for Events {
        type Context = Context<Self>;
    }
    impl Handler<AlertEvent> for Events {
        type Result = ();
        fn handle(&mut self, e: AlertEvent, _: &mut Self::Context) {
            self.0.push(e);
        }
    }
    #[derive(Message)]
    #[rtype(result = "Vec<AlertEventKind>")]
    struct Kinds;
    impl Handler<Kinds> for Events {
        type Result = MessageResult<Kinds>;
        fn handle(&mut self, _: Kinds, _: &mut Self::Context) -> Self::Result {
            MessageResult(self.0.iter().map(|e| e.kind).collect())
        }
    }

    #[actix::test]
    async fn evaluates_on_the_group_interval_and_emits_each_state_change() {
        tokio::time::pause();
        let clock = Clock::tokio_anchored(1_000_000);
        let store = WindowStoreActor::new(
            Retention {
                max_points: 100,
                max_age_ms: 600_000,
                max_series: 100,
            },
            vec![],
            clock.clone(),
            MailboxGauge::default(),
        )
        .start();
        let groups = parse_file(
            "r.yml",
            "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: Hot\n        expr: temp > 80\n        for: 2s\n",
        )
        .unwrap();
        let events = Events::default().start();
        let sources = RuleSources {
            builtin_pack: false,
            paths: vec![],
        };
        let engine = RuleEngine::new(
            groups,
            sources,
            store.clone(),
            clock.clone(),
            10,
            vec![events.clone().recipient()],
        )
        .start();
        let temp = SeriesKey::shared("temp", [("gpu", "0")]);
        let send = |v: f64| {
            store.send(SampleBatch::new(vec![Sample::new(
                temp.clone(),
                clock.now_ms(),
                v,
            )]))
        };
        send(90.0).await.unwrap();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            send(90.0).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            events.send(Kinds).await.unwrap(),
            [AlertEventKind::Pending, AlertEventKind::Firing]
        );
        let active = engine
            .send(GetActiveAlerts(AlertFilter::default()))
            .await
            .unwrap();
        assert_eq!(active.len(), 1);
        let id = active[0].alert.id.clone();
        let ack = Acknowledge {
            id: id.clone(),
            by: "ana".into(),
            comment: String::new(),
        };
        engine.send(ack).await.unwrap().unwrap();

        // Cooling down: the alert resolves, with its acknowledgement in the history.
        send(20.0).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let kinds = events.send(Kinds).await.unwrap();
        assert_eq!(
            kinds[2..],
            [AlertEventKind::Acknowledged, AlertEventKind::Resolved]
        );
        let (total, history) = engine
            .send(GetAlertHistory {
                filter: AlertFilter::default(),
                offset: 0,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(total, 1);
        assert_eq!(history[0].acknowledgement.as_ref().unwrap().by, "ana");
        let again = Acknowledge {
            id,
            by: "ana".into(),
            comment: String::new(),
        };
        assert!(matches!(
            engine.send(again).await.unwrap(),
            Err(AckError::Resolved(_))
        ));
    }
}

#[cfg(test)]
mod on_ingest_tests {
    use super::*;
    use crate::actors::window_store::NotifyStored;
    use crate::mailbox::MailboxGauge;
    use crate::messages::samples::SampleBatch;
    use crate::model::series::{Sample, SeriesKey};
    use crate::rules::parse_file;
    use crate::window::Retention;

    const RULES: &str = "groups:
  - name: temps
    interval: 60s
    rules:
      - alert: Hot
        expr: temp > 80
  - name: others
    interval: 60s
    rules:
      - alert: Other
        expr: other > 1
";

    fn store(clock: &Clock) -> Addr<WindowStoreActor> {
        let retention = Retention {
            max_points: 100,
            max_age_ms: 600_000,
            max_series: 100,
        };
        WindowStoreActor::new(retention, vec![], clock.clone(), MailboxGauge::default()).start()
    }

    fn no_sources() -> RuleSources {
        RuleSources {
            builtin_pack: false,
            paths: vec![],
        }
    }

    /// `temp{gpu}` at 90, now.
    fn hot(clock: &Clock, gpu: &str) -> SampleBatch {
        SampleBatch::new(vec![Sample::new(
            SeriesKey::shared("temp", [("gpu", gpu)]),
            clock.now_ms(),
            90.0,
        )])
    }

    async fn active(engine: &Addr<RuleEngine>) -> Vec<String> {
        let mut gpus: Vec<String> = engine
            .send(GetActiveAlerts(AlertFilter::default()))
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.alert.labels["gpu"].clone())
            .collect();
        gpus.sort();
        gpus
    }

    #[actix::test]
    async fn stored_samples_run_the_groups_reading_them_at_once_and_at_most_once_per_gap() {
        tokio::time::pause();
        let clock = Clock::tokio_anchored(1_000_000);
        let store = store(&clock);
        let groups = parse_file("r.yml", RULES).unwrap();
        let engine = RuleEngine::new(
            groups,
            no_sources(),
            store.clone(),
            clock.clone(),
            10,
            vec![],
        )
        .evaluating_on_ingest(100)
        .start();
        store
            .send(NotifyStored(engine.clone().recipient()))
            .await
            .unwrap();
        // The first evaluation (at start) is done; the interval is a minute away.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let evaluations = || async {
            engine.send(GetStats).await.unwrap().extra["rule_evaluations_on_ingest_total"]
        };
        assert_eq!(evaluations().await, 0.0);

        let hot = |gpu: &str| hot(&clock, gpu);
        store.send(hot("0")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(active(&engine).await, ["0"], "evaluated on ingest");
        assert_eq!(evaluations().await, 1.0, "only the group reading `temp`");

        // Within the gap: held back until it has passed, then run once.
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.send(hot("1")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(active(&engine).await, ["0"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(active(&engine).await, ["0", "1"]);
        assert_eq!(evaluations().await, 2.0);

        // Samples no group reads start nothing.
        store
            .send(SampleBatch::new(vec![Sample::new(
                SeriesKey::shared("unread", [("gpu", "0")]),
                clock.now_ms(),
                1.0,
            )]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(evaluations().await, 2.0);
    }

    /// A restarted Pulse's first samples must not resolve restored alerts before the grace
    /// is over (its windows are nearly empty): evaluation on ingest waits for it too.
    #[actix::test]
    async fn restored_alerts_outlive_the_first_samples_until_the_grace_is_over() {
        tokio::time::pause();
        let clock = Clock::tokio_anchored(2_000_000);
        let store = store(&clock);
        let alert: Alert = serde_json::from_value(serde_json::json!({
            "id": "restored", "labels": {"alertname": "Hot", "gpu": "0"}, "annotations": {},
            "state": "firing", "value": 90.0, "active_at_ms": 1_000_000,
            "fired_at_ms": 1_000_000, "resolved_at_ms": null
        }))
        .unwrap();
        let restored = Restored {
            active: vec![StoredAlert {
                group: "temps".into(),
                file: "r.yml".into(),
                alert,
            }],
            ..Restored::default()
        };
        let groups = parse_file("r.yml", RULES).unwrap();
        let (s, c) = (store.clone(), clock.clone());
        let engine = RuleEngine::create(move |ctx| {
            let mut engine =
                RuleEngine::new(groups, no_sources(), s, c, 10, vec![]).evaluating_on_ingest(100);
            engine.restore(restored, ctx);
            engine
        });
        store
            .send(NotifyStored(engine.clone().recipient()))
            .await
            .unwrap();

        // Samples of another GPU: an evaluation now would resolve GPU 0's alert.
        let hot = |gpu: &str| hot(&clock, gpu);
        store.send(hot("1")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(active(&engine).await, ["0"]);
        tokio::time::sleep(Duration::from_millis(RESTORE_GRACE_MS as u64)).await;
        store.send(hot("1")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(active(&engine).await, ["1"]);
    }
}
