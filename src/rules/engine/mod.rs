//! Rule engine actor: evaluates the rule groups on their intervals, and (when evaluation on
//! ingest is on) as soon as samples a group reads are stored, at most once per minimum gap
//! (each evaluation runs on the window store's thread, see `schedule.rs`). Keeps the alerts'
//! states, their acknowledgements and a bounded history of resolved alerts, and reloads the rule files on
//! request (SIGHUP, `POST /api/v1/rules/reload`): a bad file keeps the old rules running.
//! Each state change goes to its downstream as an [`AlertEvent`].
//!
//! The engine's parts, one concern per file: `schedule` (which groups are due, sending
//! them to the window store), `book` (alert transitions, acknowledgements, history, the
//! API's reads), `persistence` (alert state in Redis), `handover` (hosts adopted and
//! released in `pulse aggregate`), `reload` (rule files and their health), `stats`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;

use crate::rules::alerting::AlertEvent;
use crate::rules::group::GroupState;
use crate::rules::store::{AlertStore, StoredAlert};
use crate::rules::view::{Acknowledgement, AlertView};
use crate::rules::{Reads, RuleGroup};
use crate::runtime::clock::Clock;
use crate::store::actor::WindowStoreActor;

mod act;
mod book;
mod handover;
mod messages;
mod notify;
mod persistence;
mod reload;
mod schedule;
mod stats;

pub use messages::*;
use reload::load_status;
use schedule::slot;

/// How often the engine checks which groups are due.
pub const TICK: Duration = Duration::from_millis(250);
/// After restoring alerts, rules are first evaluated this much later: a restarted Pulse
/// starts with empty windows, and a restored alert must not resolve for want of samples.
pub const RESTORE_GRACE_MS: i64 = 5_000;

pub use notify::Notify;

/// Where rules come from.
#[derive(Debug, Clone)]
pub struct RuleSources {
    pub builtin_pack: bool,
    pub paths: Vec<PathBuf>,
    /// External labels and URL the alert templates see (`rules.external_labels`,
    /// `rules.external_url`).
    pub template_env: crate::rules::alerting::TemplateEnv,
    /// What the `ALERTS` / `ALERTS_FOR_STATE` series are called (`rules.alerts_series`,
    /// `rules.alerts_for_state_series`).
    pub alert_series_names: crate::rules::group::AlertSeriesNames,
    /// The samples one rule's evaluation may read (`rules.max_samples`; 0: no limit).
    pub max_samples: u64,
}

impl RuleSources {
    /// A loaded group, ready to run with these sources' template settings.
    pub fn state_of(&self, group: RuleGroup) -> GroupState {
        let mut state = GroupState::new(group);
        state.template_env = self.template_env.clone();
        state.alert_series_names = self.alert_series_names.clone();
        state.max_samples = self.max_samples;
        state
    }
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
    /// Alertmanagers and webhooks, when configured.
    notify: Option<notify::Notify>,
    /// Where firing alerts of rules with an action go.
    actions: Option<Recipient<crate::actions::messages::ActOn>>,
    /// Active silences by Alertmanager (base URL), as last read.
    silenced: HashMap<String, Vec<crate::alertmanager::silences::ActiveSilence>>,
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
    /// The state was read back from the store at start (a snapshot may replace what it
    /// holds only then).
    restored: bool,
    /// The store did not answer the last check ([`persistence::STORE_CHECK`]): why.
    unreachable: Option<String>,
    /// A check is in flight.
    checking: bool,
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
                .map(|g| slot(sources.state_of(g), now))
                .collect(),
            store,
            sources,
            clock,
            downstream,
            notify: None,
            actions: None,
            silenced: HashMap::new(),
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
            restored: false,
            unreachable: None,
            checking: false,
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
    /// told to send `Stored` here), at most once per `min_gap_ms`; the interval still runs
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

    /// Traces each evaluation through `telemetry` (off by default).
    pub fn with_telemetry(mut self, telemetry: crate::telemetry::Telemetry) -> Self {
        self.telemetry = telemetry;
        self
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
        if self.alert_store.is_some() {
            ctx.run_interval(persistence::STORE_CHECK, |act, ctx| act.check_store(ctx));
        }
        ctx.notify(Tick);
    }
}

#[cfg(test)]
mod notify_tests;
#[cfg(test)]
mod on_ingest_tests;
#[cfg(test)]
mod tests;
