//! The guardrails, as a pure struct: given a firing alert and the time, whether to act
//! now, wait, or refuse (and why). The runner asks twice: [`Guard::check`] before it reads
//! the target's newest sample, [`Guard::admit`] with it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::config::ActionsConfig;
use super::Action;
use crate::model::catalog::HOSTNAME;

const HOUR_MS: i64 = 3600 * 1000;

/// A firing alert whose rule has an action.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub alert_id: String,
    pub rule: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub fired_at_ms: i64,
    pub action: Action,
    pub acknowledged: bool,
    pub silenced: bool,
}

impl Firing {
    /// What the action is about: a GPU (`Hostname/gpu`), a host, or else the alert.
    pub fn target(&self) -> String {
        match (self.labels.get(HOSTNAME), self.labels.get("gpu")) {
            (Some(h), Some(g)) => format!("{h}/{g}"),
            (Some(h), None) => h.clone(),
            _ => format!("alert {}", self.alert_id),
        }
    }
}

/// Why an action was not taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// The kill switch is on (`POST /api/phase4/actions/pause`).
    Paused,
    /// Someone acknowledged the alert.
    Acknowledged,
    /// An Alertmanager silence matches the alert.
    Silenced,
    /// The target was acted on at `last_ms`; no action before `until_ms`.
    Cooldown {
        #[serde(rename = "last_at_ms", alias = "last_ms")]
        last_ms: i64,
        #[serde(rename = "until_at_ms", alias = "until_ms")]
        until_ms: i64,
    },
    /// `max_per_hour` actions in the last hour.
    RateLimited { in_last_hour: usize },
    /// `max_concurrent` actions await their outcome.
    MaxConcurrent { awaiting: usize },
    /// The target's newest sample is older than `max_data_age_ms` (or there is none).
    StaleData {
        #[serde(rename = "newest_at_ms", alias = "newest_ms")]
        newest_ms: Option<i64>,
    },
}

impl Refusal {
    /// The `outcome` label in `/metrics` and the records.
    pub fn name(&self) -> &'static str {
        match self {
            Refusal::Paused => "paused",
            Refusal::Acknowledged => "acknowledged",
            Refusal::Silenced => "silenced",
            Refusal::Cooldown { .. } => "cooldown",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::MaxConcurrent { .. } => "max_concurrent",
            Refusal::StaleData { .. } => "stale_data",
        }
    }
}

/// What to do with a firing alert now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not yet (firing too briefly, or its target's decision is under way): nothing to record.
    Wait,
    /// Refused, and recorded (once per alert episode and reason); `record` is false for a
    /// refusal already recorded in this episode.
    Refuse {
        refusal: Refusal,
        record: bool,
    },
    Act,
}

/// The guardrails' state.
pub struct Guard {
    cfg: ActionsConfig,
    paused: bool,
    /// Last action (or dry run) per target.
    last_on_target: HashMap<String, i64>,
    /// When actions were taken in the last hour, oldest first.
    recent: VecDeque<i64>,
    /// Actions awaiting their outcome.
    awaiting: usize,
    /// Targets whose decision is under way (between `check` and `admit`).
    deciding: HashSet<String>,
    /// (alert id, firing since, reason) already recorded, and when: a refusal that lasts
    /// is recorded again after an hour.
    recorded: HashMap<(String, i64, &'static str), i64>,
}

impl Guard {
    pub fn new(cfg: ActionsConfig) -> Self {
        Guard {
            cfg,
            paused: false,
            last_on_target: HashMap::new(),
            recent: VecDeque::new(),
            awaiting: 0,
            deciding: HashSet::new(),
            recorded: HashMap::new(),
        }
    }

    pub fn config(&self) -> &ActionsConfig {
        &self.cfg
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    /// The kill switch.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    pub fn awaiting(&self) -> usize {
        self.awaiting
    }

    /// Everything that can be decided without the target's newest sample. `Act` marks the
    /// target as deciding until [`Self::admit`] answers for it.
    pub fn check(&mut self, f: &Firing, now_ms: i64) -> Verdict {
        let target = f.target();
        if self.deciding.contains(&target) || now_ms - f.fired_at_ms < self.cfg.min_firing_ms as i64
        {
            return Verdict::Wait;
        }
        let refusal = if self.paused {
            Some(Refusal::Paused)
        } else if f.acknowledged {
            Some(Refusal::Acknowledged)
        } else if f.silenced {
            Some(Refusal::Silenced)
        } else {
            self.cooldown(&target, now_ms)
        };
        match refusal {
            Some(r) => self.refuse(f, r, now_ms),
            None => {
                self.deciding.insert(target);
                Verdict::Act
            }
        }
    }

    /// The rest, with the target's newest sample time: `Act` counts the action (cooldown,
    /// rate, awaiting) at once; call [`Self::settled`] when its outcome is known.
    pub fn admit(&mut self, f: &Firing, now_ms: i64, newest_ms: Option<i64>) -> Verdict {
        let target = f.target();
        self.deciding.remove(&target);
        while self.recent.front().is_some_and(|t| now_ms - t >= HOUR_MS) {
            self.recent.pop_front();
        }
        let fresh = newest_ms.is_some_and(|t| now_ms - t <= self.cfg.max_data_age_ms.get() as i64);
        // Again: the target's last action may have been learnt since `check` (from Redis).
        let refusal = if let Some(r) = self.cooldown(&target, now_ms) {
            Some(r)
        } else if !fresh {
            Some(Refusal::StaleData { newest_ms })
        } else if self.recent.len() >= self.cfg.max_per_hour.get() as usize {
            Some(Refusal::RateLimited {
                in_last_hour: self.recent.len(),
            })
        } else if self.awaiting >= self.cfg.max_concurrent.get() {
            Some(Refusal::MaxConcurrent {
                awaiting: self.awaiting,
            })
        } else {
            None
        };
        if let Some(r) = refusal {
            return self.refuse(f, r, now_ms);
        }
        self.last_on_target.insert(target, now_ms);
        self.recent.push_back(now_ms);
        self.awaiting += 1;
        Verdict::Act
    }

    /// An action (or dry run) on `target` at `at_ms` learnt from elsewhere (records read
    /// back after a restart, another instance's last action): it counts for the cooldown
    /// and, once, for the hourly rate.
    pub fn restore(&mut self, target: &str, at_ms: i64) {
        let last = self
            .last_on_target
            .entry(target.to_string())
            .or_insert(i64::MIN);
        if *last >= at_ms {
            return;
        }
        *last = at_ms;
        self.recent.push_back(at_ms);
        self.recent.make_contiguous().sort_unstable();
    }

    /// An action's outcome is known: it no longer counts against `max_concurrent`.
    pub fn settled(&mut self) {
        self.awaiting = self.awaiting.saturating_sub(1);
    }

    fn cooldown(&self, target: &str, now_ms: i64) -> Option<Refusal> {
        let last_ms = *self.last_on_target.get(target)?;
        let until_ms = last_ms + self.cfg.cooldown_ms.get() as i64;
        (now_ms < until_ms).then_some(Refusal::Cooldown { last_ms, until_ms })
    }

    fn refuse(&mut self, f: &Firing, refusal: Refusal, now_ms: i64) -> Verdict {
        self.recorded.retain(|_, at| now_ms - *at < HOUR_MS);
        let key = (f.alert_id.clone(), f.fired_at_ms, refusal.name());
        let record = !self.recorded.contains_key(&key);
        if record {
            self.recorded.insert(key, now_ms);
        }
        Verdict::Refuse { refusal, record }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};

    fn firing(gpu: &str) -> Firing {
        Firing {
            alert_id: format!("a{gpu}"),
            rule: "GpuMemoryForecastFull".into(),
            labels: [("Hostname", "h1"), ("gpu", gpu)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value: 0.97,
            fired_at_ms: 0,
            action: Action::Cleanup,
            acknowledged: false,
            silenced: false,
        }
    }

    fn guard() -> Guard {
        Guard::new(ActionsConfig {
            min_firing_ms: 10_000,
            cooldown_ms: NonZeroU64::new(60_000).unwrap(),
            max_per_hour: NonZeroU32::new(3).unwrap(),
            max_concurrent: NonZeroUsize::new(2).unwrap(),
            max_data_age_ms: NonZeroU64::new(5_000).unwrap(),
            ..ActionsConfig::default()
        })
    }

    /// Both steps, the target's newest sample at `now`.
    fn decide(g: &mut Guard, f: &Firing, now: i64) -> Verdict {
        match g.check(f, now) {
            Verdict::Act => g.admit(f, now, Some(now)),
            v => v,
        }
    }

    fn refused(v: Verdict) -> &'static str {
        match v {
            Verdict::Refuse { refusal, .. } => refusal.name(),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn an_alert_acts_after_its_minimum_firing_time_then_its_target_cools_down() {
        let mut g = guard();
        let f = firing("0");
        assert_eq!(decide(&mut g, &f, 9_999), Verdict::Wait);
        assert_eq!(decide(&mut g, &f, 10_000), Verdict::Act);
        let v = decide(&mut g, &f, 20_000);
        assert_eq!(
            v,
            Verdict::Refuse {
                refusal: Refusal::Cooldown {
                    last_ms: 10_000,
                    until_ms: 70_000
                },
                record: true
            }
        );
        // Recorded once per episode: the next evaluation's refusal is not recorded again.
        assert!(matches!(
            decide(&mut g, &f, 21_000),
            Verdict::Refuse { record: false, .. }
        ));
        // Another GPU is another target.
        assert_eq!(decide(&mut g, &firing("1"), 20_000), Verdict::Act);
        g.settled();
        g.settled();
        assert_eq!(decide(&mut g, &f, 70_000), Verdict::Act);
    }

    #[test]
    fn acknowledged_silenced_and_paused_alerts_never_act() {
        let mut g = guard();
        let mut f = firing("0");
        f.acknowledged = true;
        assert_eq!(refused(decide(&mut g, &f, 60_000)), "acknowledged");
        f.acknowledged = false;
        f.silenced = true;
        assert_eq!(refused(decide(&mut g, &f, 60_000)), "silenced");
        f.silenced = false;
        g.set_paused(true);
        assert_eq!(refused(decide(&mut g, &f, 60_000)), "paused");
        g.set_paused(false);
        assert_eq!(decide(&mut g, &f, 60_000), Verdict::Act);
    }

    #[test]
    fn stale_data_the_rate_limit_and_the_concurrency_limit_refuse() {
        let mut g = guard();
        let f = firing("0");
        assert_eq!(g.check(&f, 60_000), Verdict::Act);
        assert_eq!(
            refused(g.admit(&f, 60_000, Some(54_999))),
            "stale_data",
            "6 s old"
        );
        assert_eq!(g.check(&f, 60_000), Verdict::Act);
        assert_eq!(refused(g.admit(&f, 60_000, None)), "stale_data");
        // Two awaiting their outcome: a third waits for one of them.
        assert_eq!(decide(&mut g, &firing("1"), 60_000), Verdict::Act);
        assert_eq!(decide(&mut g, &firing("2"), 60_000), Verdict::Act);
        assert_eq!(
            refused(decide(&mut g, &firing("3"), 60_000)),
            "max_concurrent"
        );
        g.settled();
        assert_eq!(decide(&mut g, &firing("3"), 60_000), Verdict::Act);
        g.settled();
        g.settled();
        // Three in the last hour: the fourth is refused until the first is an hour old.
        assert_eq!(
            refused(decide(&mut g, &firing("4"), 61_000)),
            "rate_limited"
        );
        assert_eq!(decide(&mut g, &firing("4"), 60_000 + HOUR_MS), Verdict::Act);
    }

    #[test]
    fn a_target_being_decided_waits() {
        let mut g = guard();
        let f = firing("0");
        assert_eq!(g.check(&f, 60_000), Verdict::Act);
        assert_eq!(g.check(&f, 61_000), Verdict::Wait, "read under way");
        assert_eq!(g.admit(&f, 61_000, Some(61_000)), Verdict::Act);
    }
}
