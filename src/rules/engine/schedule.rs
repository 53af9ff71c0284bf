//! Which groups are due (their interval, or samples they read were stored), and sending them
//! to the window store for evaluation.

use std::time::Duration;

use actix::prelude::*;
use opentelemetry::trace::SpanKind;

use super::{RuleEngine, Slot, Tick};
use crate::rules::group::{GroupOutcome, GroupState};
use crate::rules::store::Change;
use crate::rules::Reads;
use crate::store::messages::{Stored, WriteStore, Written};

impl RuleEngine {
    /// Sends the due groups to the window store for evaluation: those whose interval has
    /// come, and those that read samples stored since their last evaluation (once the
    /// minimum gap has passed; a wake-up is set for those still inside it).
    pub(super) fn eval_due(&mut self, ctx: &mut Context<Self>) {
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
        // On the store's thread: recording rules write into it, and later rules of a group
        // read what earlier ones wrote. The groups travel with their state and come back.
        let eval = WriteStore(Box::new(move |store| {
            let (mut samples, mut refused) = (Vec::new(), 0);
            let value: Vec<(GroupState, GroupOutcome)> = groups
                .into_iter()
                .map(|mut g| {
                    let mut outcome = g.eval(store, now);
                    refused += outcome.refused;
                    // The samples go downstream from the store; the engine needs the rest.
                    samples.append(&mut outcome.written);
                    (g, outcome)
                })
                .collect();
            Written {
                value,
                samples,
                refused,
            }
        }));
        let fut = async move { store.send(eval).await };
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
                        act.notify(&mut g, now, ctx);
                        act.act(&g, now);
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

pub(super) fn slot(state: GroupState, now: i64) -> Slot {
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
