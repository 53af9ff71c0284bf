//! The action runner: decides with the [`Guard`], acts (a command on the command stream,
//! or a webhook POST), measures a cleanup's effect, takes workers' acknowledgements, and
//! keeps the records the API lists; each record, made or changed, goes to the Kafka sink
//! (`<p>actions`) and to Redis ([`ActionStore`]), which gives them back after a restart.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::broadcast;

use super::config::ActionsConfig;
use super::guard::{Firing, Guard, Refusal, Verdict};
use super::messages::ActionTaken;
use super::messages::{
    AckEntry, AckOutcome, ActOn, ActionList, ActionRecord, CommandAck, Effect, ForecastAfter,
    GetAction, ListActions, SetPaused, UsePredictor, WebhookOutcome,
};
use super::store::ActionStore;
use super::Action;
use crate::alertmanager::config::{http_agent, TlsClient};
use crate::messages::commands::Command;
use crate::messages::page::Page;
use crate::model::catalog::{FB_USED, HOSTNAME};
use crate::model::selector::{MatchOp, Matcher, Selector};
use crate::processors::predict::engine::PredictionFilter;
use crate::processors::predict::messages::ListPredictions;
use crate::runtime::clock::Clock;
use crate::runtime::stats::{figure, ComponentState, ComponentStats, GetStats, LabelledFigure};
use crate::store::actor::WindowStoreActor;
use crate::store::messages::SelectLatest;

/// Acts on firing alerts whose rules name an action.
pub struct ActionRunner {
    guard: Guard,
    commands: broadcast::Sender<Command>,
    window: Addr<WindowStoreActor>,
    clock: Clock,
    agent: ureq::Agent,
    /// Newest at the back.
    records: VecDeque<ActionRecord>,
    next_id: u64,
    /// Varies the ids of records made in the same millisecond (and between instances).
    id_salt: u64,
    /// Commands sent, awaiting a worker's acknowledgement (record ids).
    awaiting_ack: HashSet<u64>,
    /// Decisions recorded, by (action, outcome).
    outcomes: BTreeMap<(&'static str, String), u64>,
    /// Where records go: the Kafka sink, and Redis.
    events: Vec<Recipient<ActionTaken>>,
    /// Where a cleanup's new forecast is read.
    predictor: Option<Recipient<ListPredictions>>,
    store: Option<ActionStore>,
    /// What the restore from Redis did, the last failed write (cleared by a good one), and
    /// the failed writes.
    restore_note: Option<String>,
    persist_error: Option<String>,
    persist_failures: u64,
}

impl ActionRunner {
    pub fn new(
        cfg: ActionsConfig,
        commands: broadcast::Sender<Command>,
        window: Addr<WindowStoreActor>,
    ) -> Self {
        let agent = http_agent(cfg.webhook_timeout_ms.get(), None);
        ActionRunner {
            guard: Guard::new(cfg),
            commands,
            window,
            clock: Clock::system(),
            agent,
            records: VecDeque::new(),
            next_id: 0,
            id_salt: u64::from(std::process::id()),
            awaiting_ack: HashSet::new(),
            outcomes: BTreeMap::new(),
            events: Vec::new(),
            predictor: None,
            store: None,
            restore_note: None,
            persist_error: None,
            persist_failures: 0,
        }
    }

    /// https webhooks trust `tls`'s roots and present its client certificate when asked
    /// (`None`: the public roots).
    pub fn with_tls(mut self, tls: Option<&TlsClient>) -> Self {
        self.agent = http_agent(self.guard.config().webhook_timeout_ms.get(), tls);
        self
    }

    /// As `pipeline` starts it: its clock, the Kafka sink for its records, and Redis (URL,
    /// key prefix) to keep them.
    pub fn wired(
        mut self,
        clock: Clock,
        kafka: Option<Recipient<ActionTaken>>,
        redis: Option<(&str, &str)>,
    ) -> redis::RedisResult<Self> {
        self.clock = clock;
        self.events.extend(kafka);
        if let Some((url, prefix)) = redis {
            let max = self.cfg().max_records.get();
            self.store = Some(ActionStore::new(url, prefix, max)?);
        }
        Ok(self)
    }

    /// Record `id` was made or changed: to Kafka and Redis.
    fn changed(&mut self, id: u64, ctx: &mut Context<Self>) {
        let Some(rec) = self.get(id).cloned() else {
            return;
        };
        for e in &self.events {
            // A full sink counts its own drops; the record stays here either way.
            let _ = e.try_send(ActionTaken(rec.clone()));
        }
        let Some(store) = self.store.clone() else {
            return;
        };
        let write = async move { store.write(&rec).await };
        ctx.spawn(write.into_actor(self).map(|res, act, _| match res {
            Ok(()) => act.persist_error = None,
            Err(e) => {
                act.persist_failures += 1;
                act.persist_error = Some(e);
            }
        }));
    }

    /// Puts records read back from Redis in place; actions and dry runs among them count
    /// for the cooldowns and the hourly rate again.
    fn restore(&mut self, records: Vec<ActionRecord>, unreadable: usize) {
        for r in records.iter().filter(|r| r.acted()) {
            self.guard.restore(&r.target, r.at_ms);
        }
        self.next_id = records.iter().map(|r| r.id + 1).max().unwrap_or(0);
        let n = records.len();
        self.records = records.into();
        let unreadable = match unreadable {
            0 => String::new(),
            u => format!(", {u} unreadable"),
        };
        self.restore_note = Some(format!(
            "{n} action records read back from Redis{unreadable}"
        ));
    }

    fn cfg(&self) -> &ActionsConfig {
        self.guard.config()
    }

    /// A new record for `f` at `now`; kept by [`Self::keep`].
    fn record(&mut self, f: &Firing, now: i64, outcome: &str) -> ActionRecord {
        // Unique across the instances that share Redis (`pulse aggregate`): the time, and
        // one of 1 024 numbers per millisecond; increasing within an instance.
        let id = (now.max(0) as u64 * ID_PER_MS + self.id_salt % ID_PER_MS).max(self.next_id);
        self.next_id = id + 1;
        self.id_salt = self.id_salt.wrapping_add(1);
        ActionRecord {
            id,
            at_ms: now,
            rule: f.rule.clone(),
            alert_id: f.alert_id.clone(),
            labels: f.labels.clone(),
            value: f.value,
            action: f.action.clone(),
            target: f.target(),
            dry_run: self.cfg().dry_run,
            outcome: outcome.to_string(),
            refusal: None,
            command: None,
            delivered_to: None,
            ack: None,
            acks: Vec::new(),
            effect: None,
            webhook: None,
        }
    }

    /// Keeps `rec` (the oldest fall out past `max_records`), counts its outcome, sends it on.
    fn keep(&mut self, rec: ActionRecord, ctx: &mut Context<Self>) {
        if rec.outcome == "dry_run" {
            tracing::info!(rule = %rec.rule, target = %rec.target, action = ?rec.action, "dry run: would act");
        } else {
            tracing::info!(rule = %rec.rule, target = %rec.target, action = ?rec.action, outcome = %rec.outcome, "action");
        }
        self.count(rec.action.kind(), &rec.outcome);
        let id = rec.id;
        self.records.push_back(rec);
        while self.records.len() > self.cfg().max_records.get() {
            self.records.pop_front();
        }
        self.changed(id, ctx);
    }

    fn count(&mut self, action: &'static str, outcome: &str) {
        *self
            .outcomes
            .entry((action, outcome.to_string()))
            .or_default() += 1;
    }

    fn refused(&mut self, f: &Firing, now: i64, refusal: Refusal, ctx: &mut Context<Self>) {
        let mut rec = self.record(f, now, refusal.name());
        rec.refusal = Some(refusal);
        self.keep(rec, ctx);
    }

    fn get(&self, id: u64) -> Option<&ActionRecord> {
        self.records.iter().rev().find(|r| r.id == id)
    }

    fn find(&mut self, id: u64) -> Option<&mut ActionRecord> {
        self.records.iter_mut().rev().find(|r| r.id == id)
    }

    /// Reads the target's newest samples, then decides and acts.
    fn read_then_act(&mut self, f: Firing, ctx: &mut Context<Self>) {
        let selector = target_selector(&f.labels, None);
        let window = self.window.clone();
        let (store, target) = (self.store.clone(), f.target());
        let read = async move {
            let latest = match selector {
                Some(selector) => Some(
                    window
                        .send(SelectLatest {
                            selector,
                            since_ms: i64::MIN,
                        })
                        .await
                        .unwrap_or_default(),
                ),
                None => None,
            };
            // Another instance (the host's previous owner) may have acted on it.
            let last = match store {
                Some(s) => s.last_acted(&target).await,
                None => Ok(None),
            };
            (latest, last)
        };
        ctx.spawn(read.into_actor(self).map(move |(latest, last), act, ctx| {
            let now = act.clock.now_ms();
            match last {
                Ok(Some(at)) => act.guard.restore(&f.target(), at),
                Ok(None) => {}
                Err(e) => act.persist_error = Some(e),
            }
            // An alert about no GPU or host has no target data to be stale: the rule's
            // evaluation just read what it fired on. Pulse's own series of the target
            // (scores, forecasts) say nothing of whether its samples still come.
            let newest = match &latest {
                Some(rows) => rows
                    .iter()
                    .filter(|(s, _, _)| !s.name().starts_with("pulse_"))
                    .map(|(_, t, _)| *t)
                    .max(),
                None => Some(now),
            };
            let before_mib = latest
                .iter()
                .flatten()
                .find(|(s, _, _)| s.name() == FB_USED)
                .map(|(_, _, v)| *v);
            match act.guard.admit(&f, now, newest) {
                Verdict::Act => act.execute(&f, now, before_mib, ctx),
                Verdict::Refuse { refusal, record } => {
                    if record {
                        act.refused(&f, now, refusal, ctx);
                    }
                }
                Verdict::Wait => {}
            }
        }));
    }

    fn execute(&mut self, f: &Firing, now: i64, before_mib: Option<f64>, ctx: &mut Context<Self>) {
        let dry_run = self.cfg().dry_run;
        let mut rec = self.record(f, now, if dry_run { "dry_run" } else { "executed" });
        let command_id = format!("action-{}", rec.id);
        rec.command = match &f.action {
            Action::Cleanup => Some(Command::Cleanup {
                id: command_id,
                gpus: f.labels.get("gpu").map(|g| vec![g.clone()]),
                host: f.labels.get(HOSTNAME).cloned(),
                issued_at_ms: now,
            }),
            Action::Command { name } => Some(Command::Action {
                id: command_id,
                name: name.clone(),
                labels: f.labels.clone(),
                issued_at_ms: now,
            }),
            Action::Webhook { .. } => None,
        };
        if matches!(f.action, Action::Cleanup) {
            rec.effect = Some(Effect {
                before_mib,
                after_mib: None,
                released_mib: None,
                measured_at_ms: None,
                forecast_after: None,
            });
        }
        let id = rec.id;
        if dry_run {
            self.guard.settled();
            self.keep(rec, ctx);
            return;
        }
        if let Some(cmd) = rec.command.clone() {
            // No subscriber is not an error: the record shows it was delivered to none.
            rec.delivered_to = Some(self.commands.send(cmd).unwrap_or(0));
        }
        match &f.action {
            Action::Cleanup => {
                let settle = Duration::from_millis(self.cfg().settle_ms.get());
                let selector = target_selector(&f.labels, Some(FB_USED));
                ctx.run_later(settle, move |act, ctx| act.measure(id, now, selector, ctx));
            }
            Action::Command { .. } => {
                rec.ack = Some("awaiting".to_string());
                self.awaiting_ack.insert(id);
                let timeout = Duration::from_millis(self.cfg().ack_timeout_ms.get());
                ctx.run_later(timeout, move |act, ctx| {
                    if act.awaiting_ack.remove(&id) {
                        act.guard.settled();
                        if let Some(r) = act.find(id) {
                            r.ack = Some("unacknowledged".to_string());
                        }
                        act.changed(id, ctx);
                    }
                });
            }
            Action::Webhook { url } => {
                rec.outcome = "sending".to_string();
                self.post(
                    id,
                    url.clone(),
                    serde_json::to_string(&rec).unwrap_or_default(),
                    ctx,
                );
                // Counted when the POST is done.
                self.records.push_back(rec);
                self.changed(id, ctx);
                return;
            }
        }
        self.keep(rec, ctx);
    }

    /// Reads the GPU's memory used again, after the settle time.
    fn measure(
        &mut self,
        id: u64,
        issued_ms: i64,
        selector: Option<Selector>,
        ctx: &mut Context<Self>,
    ) {
        let window = self.window.clone();
        let read = async move {
            let selector = selector?;
            let rows = window
                .send(SelectLatest {
                    selector,
                    since_ms: issued_ms + 1,
                })
                .await
                .ok()?;
            rows.first().map(|(_, t, v)| (*t, *v))
        };
        ctx.spawn(read.into_actor(self).map(move |after, act, ctx| {
            act.guard.settled();
            let Some(effect) = act.find(id).and_then(|r| r.effect.as_mut()) else {
                return;
            };
            if let Some((t, v)) = after {
                effect.after_mib = Some(v);
                effect.measured_at_ms = Some(t);
                effect.released_mib = effect.before_mib.map(|b| b - v);
            }
            act.changed(id, ctx);
            act.read_forecast(id, issued_ms, FORECAST_TRIES, ctx);
        }));
    }

    /// Reads the predictor's forecast of the cleaned GPU's memory until one fitted after
    /// the cleanup (`issued_ms`) comes, every `settle_ms`, at most `tries` times.
    fn read_forecast(&mut self, id: u64, issued_ms: i64, tries: u32, ctx: &mut Context<Self>) {
        let (Some(predictor), Some(labels)) = (
            self.predictor.clone(),
            self.get(id).map(|r| r.labels.clone()),
        ) else {
            return;
        };
        let Some(matchers) = target_selector(&labels, Some(FB_USED)) else {
            return;
        };
        let ask = ListPredictions(PredictionFilter {
            matchers,
            horizon_s: Some(0),
        });
        let read = async move { predictor.send(ask).await.ok() };
        ctx.spawn(read.into_actor(self).map(move |answer, act, ctx| {
            let fresh = answer
                .into_iter()
                .flat_map(|(p, _)| p)
                .find(|p| p.fitted_at_ms > issued_ms);
            match fresh {
                Some(p) => {
                    if let Some(effect) = act.find(id).and_then(|r| r.effect.as_mut()) {
                        effect.forecast_after = Some(ForecastAfter {
                            fitted_at_ms: p.fitted_at_ms,
                            model: p.model,
                            exhaustion_seconds: p.exhaustion.as_ref().map(|e| e.seconds),
                            exhaustion: p.exhaustion.map(|e| e.text),
                        });
                        act.changed(id, ctx);
                    }
                }
                None if tries > 1 => {
                    let wait = Duration::from_millis(act.cfg().settle_ms.get());
                    ctx.run_later(wait, move |act, ctx| {
                        act.read_forecast(id, issued_ms, tries - 1, ctx)
                    });
                }
                None => {}
            }
        }));
    }

    /// POSTs the record as JSON, trying `webhook_retries` more times on failure.
    fn post(&mut self, id: u64, url: String, body: String, ctx: &mut Context<Self>) {
        let agent = self.agent.clone();
        let tries = self.cfg().webhook_retries + 1;
        let send = tokio::task::spawn_blocking(move || {
            let mut last = WebhookOutcome {
                status: None,
                tries: 0,
                error: None,
            };
            for _ in 0..tries {
                last.tries += 1;
                let sent = agent
                    .post(&url)
                    .set("Content-Type", "application/json")
                    .set("User-Agent", concat!("pulse/", env!("CARGO_PKG_VERSION")))
                    .send_string(&body);
                match sent {
                    Ok(r) => {
                        last.status = Some(r.status());
                        last.error = None;
                        break;
                    }
                    Err(ureq::Error::Status(code, _)) => {
                        last.status = Some(code);
                        last.error = Some(format!("HTTP {code}"));
                    }
                    Err(e) => last.error = Some(e.to_string()),
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            last
        });
        ctx.spawn(
            async move { send.await.ok() }
                .into_actor(self)
                .map(move |outcome, act, ctx| {
                    act.guard.settled();
                    let outcome = outcome.unwrap_or(WebhookOutcome {
                        status: None,
                        tries: 0,
                        error: Some("the POST's task failed".to_string()),
                    });
                    let done = if outcome.error.is_none() {
                        "executed"
                    } else {
                        "failed"
                    };
                    if let Some(r) = act.find(id) {
                        r.outcome = done.to_string();
                        r.webhook = Some(outcome);
                    }
                    act.count("webhook", done);
                    act.changed(id, ctx);
                }),
        );
    }
}

/// Record ids are the time in ms times this, plus a number below it.
const ID_PER_MS: u64 = 1024;

/// How many times a cleanup's new forecast is looked for, `settle_ms` apart.
const FORECAST_TRIES: u32 = 12;

/// The selector of a target's series (its `Hostname` and `gpu` labels), of `metric` only
/// when given; `None` for an alert about no host.
fn target_selector(labels: &BTreeMap<String, String>, metric: Option<&str>) -> Option<Selector> {
    let host = labels.get(HOSTNAME)?;
    let eq = |k: &str, v: &str| Matcher::new(k, MatchOp::Eq, v).expect("an equality matcher");
    let mut selector = Selector::default().with(eq(HOSTNAME, host));
    if let Some(gpu) = labels.get("gpu") {
        selector = selector.with(eq("gpu", gpu));
    }
    if let Some(m) = metric {
        selector = selector.with(eq("__name__", m));
    }
    Some(selector)
}

impl Actor for ActionRunner {
    type Context = Context<Self>;

    /// With Redis, the records come back before any alert is decided on.
    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let load = async move { store.load().await };
        ctx.wait(load.into_actor(self).map(|res, act, _| match res {
            Ok((records, unreadable)) => act.restore(records, unreadable),
            Err(e) => {
                act.restore_note = Some(format!("action records not read back from Redis: {e}"));
                act.persist_error = Some(e);
            }
        }));
    }
}

impl Handler<ActOn> for ActionRunner {
    type Result = ();

    fn handle(&mut self, msg: ActOn, ctx: &mut Self::Context) {
        for f in msg.firing {
            match self.guard.check(&f, msg.now_ms) {
                Verdict::Wait => {}
                Verdict::Refuse { refusal, record } => {
                    if record {
                        self.refused(&f, msg.now_ms, refusal, ctx);
                    }
                }
                Verdict::Act => self.read_then_act(f, ctx),
            }
        }
    }
}

impl Handler<UsePredictor> for ActionRunner {
    type Result = ();

    fn handle(&mut self, UsePredictor(p): UsePredictor, _: &mut Self::Context) {
        self.predictor = Some(p);
    }
}

impl Handler<ListActions> for ActionRunner {
    type Result = MessageResult<ListActions>;

    fn handle(&mut self, q: ListActions, _: &mut Self::Context) -> Self::Result {
        let kept = self
            .records
            .iter()
            .rev()
            .filter(|r| q.rule.as_ref().is_none_or(|x| &r.rule == x))
            .filter(|r| q.outcome.as_ref().is_none_or(|x| &r.outcome == x))
            .filter(|r| q.since_ms.is_none_or(|s| r.at_ms >= s));
        let page = Page::of(kept, q.offset, q.limit).map(ActionRecord::clone);
        MessageResult(ActionList {
            paused: self.guard.paused(),
            dry_run: self.cfg().dry_run,
            awaiting: self.guard.awaiting(),
            total: page.total,
            offset: q.offset,
            limit: q.limit,
            count: page.items.len(),
            actions: page.items,
        })
    }
}

impl Handler<GetAction> for ActionRunner {
    type Result = Option<ActionRecord>;

    fn handle(&mut self, GetAction(id): GetAction, _: &mut Self::Context) -> Self::Result {
        self.get(id).cloned()
    }
}

impl Handler<SetPaused> for ActionRunner {
    type Result = bool;

    fn handle(&mut self, SetPaused(paused): SetPaused, _: &mut Self::Context) -> bool {
        let was = self.guard.paused();
        self.guard.set_paused(paused);
        if was != paused {
            tracing::warn!(paused, "actions kill switch");
        }
        was
    }
}

impl Handler<CommandAck> for ActionRunner {
    type Result = bool;

    fn handle(&mut self, ack: CommandAck, ctx: &mut Self::Context) -> bool {
        let Some(id) = ack
            .command_id
            .strip_prefix("action-")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return false;
        };
        let at_ms = self.clock.now_ms();
        let Some(rec) = self.find(id) else {
            return false;
        };
        rec.acks.push(AckEntry {
            outcome: ack.outcome,
            detail: ack.detail,
            at_ms,
        });
        let done = rec.acks.iter().any(|a| a.outcome == AckOutcome::Done);
        rec.ack = Some(if done { "done" } else { "failed" }.to_string());
        if self.awaiting_ack.remove(&id) {
            self.guard.settled();
        }
        self.changed(id, ctx);
        true
    }
}

impl Handler<GetStats> for ActionRunner {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let mut st = ComponentStats::new("actions", "processor");
        st.emitted_total = self.records.len() as u64;
        st.reason = Some(match (self.guard.paused(), self.cfg().dry_run) {
            (true, _) => "paused (kill switch)".to_string(),
            (false, true) => "dry run: recording what would be done".to_string(),
            (false, false) => "acting".to_string(),
        });
        if let Some(e) = &self.persist_error {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!("action records not kept in Redis: {e}"));
        } else if let Some(note) = &self.restore_note {
            st.reason = Some(format!("{}; {note}", st.reason.unwrap_or_default()));
        }
        st.set(
            figure::ACTIONS_REDIS_WRITE_FAILURES_TOTAL,
            self.persist_failures as f64,
        );
        st.set(figure::ACTIONS_AWAITING, self.guard.awaiting() as f64);
        st.set(
            figure::ACTIONS_PAUSED,
            f64::from(u8::from(self.guard.paused())),
        );
        for ((action, outcome), n) in &self.outcomes {
            st.labelled.push(LabelledFigure {
                figure: figure::ACTIONS_TOTAL,
                labels: vec![("action", action.to_string()), ("outcome", outcome.clone())],
                value: *n as f64,
            });
        }
        MessageResult(st)
    }
}
