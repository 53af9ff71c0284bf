//! Workload changes told apart from anomalies: when most GPUs of a host move together on
//! the same metric (a job starting, a checkpoint, a job stopping), that is the workload
//! changing, not N anomalies. A GPU's firing is held for `window_ms` of sample time; by
//! then, a GPU of the host counts as moving with it if it fired too, or if its value moved
//! the same way by at least half as much since just before the first firing (detectors do
//! not all fire on the same step). If at least half of the host's GPUs of that metric (and
//! at least two) moved together, the firings become one [`WorkloadEvent`]; otherwise each
//! is opened as an anomaly, so a GPU that moves alone (a straggler, a throttled or faulty
//! card) is still reported, at most `window_ms` late. Firings within the episode of a
//! workload event (within `episode_ms` of its last firing) join it.
//!
//! A GPU's own job starting or stopping is a workload change too, even alone (a host with
//! one GPU, or GPUs that run separate jobs): firings of any of its metrics from `window_ms`
//! before to `episode_ms` after its framebuffer use (`OwnSignals::job`) went from idle to in use,
//! or back (see [`super::jobs`]), are that change and its settling (utilisation flickering
//! while the job loads, the temperature following with a lag); so are its firings within
//! `episode_ms` of the change's last firing. A GPU with no peers on its host whose
//! utilisation and power moved the same way, each by at least [`PHASE_SHARE`] of its
//! value, over a firing's window is its job changing phase (a checkpoint, an evaluation,
//! more or less work): with no peer to compare with, nothing tells that from a fault, and
//! a fault that does not move both (throttling: power and clocks fall while utilisation
//! holds; a leak; a fault counter) is still an anomaly.
//!
//! Only gauges of series with a `Hostname` and a `gpu` label are held; counters (XID and
//! ECC errors among them) and every other series open at once. A host-wide change that is
//! a real problem (the whole host overheating) is the alert rules' to catch, by threshold.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use super::jobs::JobChange;
use super::record::Anomaly;
use crate::model::catalog::HOSTNAME;
use crate::model::series::Series;

/// The label naming a GPU on its host.
pub const GPU_LABEL: &str = "gpu";

/// How far (a share of the larger value) a peerless GPU's utilisation and power must both
/// move, the same way, for a firing to be a phase of its job.
pub const PHASE_SHARE: f64 = 0.25;

/// How long a host's firings wait for its other GPUs when the first dropped its GPU to near
/// idle: a job winding down stops its GPUs one after another, over tens of seconds, while
/// a card that fails alone stays alone. Other firings wait `window_ms`.
pub const STAGGER_MS: i64 = 30_000;
/// A drop to below this share of the top of the range the series was expected in is a GPU
/// going idle (a straggler loses 20–40 %, and is the peer comparison's to report anyway).
const IDLE_SHARE: f64 = 0.25;

/// The metrics of a GPU that tell its own workload changing, without peers.
#[derive(Debug, Clone)]
pub struct OwnSignals {
    /// Framebuffer use: its jobs starting and stopping ([`super::jobs`]).
    pub job: String,
    /// Utilisation and power: its job changing phase.
    pub activity: Vec<String>,
}

/// What made firings a workload change.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadCause {
    /// Most GPUs of the host moved together.
    Host,
    /// The GPU's job started (its framebuffer went from idle to in use).
    JobStarted,
    /// The GPU's job stopped (its framebuffer went back to idle).
    JobStopped,
    /// A GPU with no peers: its utilisation and power moved together.
    Phase,
    /// The GPUs' values drop at a steady interval (checkpoints, evaluation; read from
    /// the values, no firing: see `rhythm.rs`).
    Rhythm,
}

/// A host's GPUs (or one GPU's own job) changing workload on one metric.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct WorkloadEvent {
    /// The host (its `Hostname` label).
    pub host: String,
    /// The metric that moved, e.g. `DCGM_FI_DEV_GPU_UTIL`.
    pub metric: String,
    /// The GPUs that fired, sorted.
    pub gpus: Vec<String>,
    /// GPUs of this metric known on the host when it was decided.
    pub host_gpus: usize,
    /// First firing, Unix ms.
    #[serde(rename = "first_at_ms")]
    pub first_ms: i64,
    /// Last firing folded in, Unix ms.
    #[serde(rename = "last_at_ms")]
    pub last_ms: i64,
    /// Firings folded into it.
    pub firings: u32,
    /// What the first firing was (new high, new low, unusual move), for people.
    pub detail: String,
    pub cause: WorkloadCause,
}

/// Firings of one host and metric waiting for the decision.
struct Group {
    first_ms: i64,
    /// One per series; a series firing again while held is merged into its entry.
    held: Vec<Anomaly>,
    /// How far the first firing moved from the value before it.
    moved: f64,
    /// The first firing dropped its GPU to near idle: the group may wait `STAGGER_MS`.
    went_idle: bool,
    /// Every GPU's value just before the first firing.
    before: Vec<(String, Series, f64)>,
    /// A GPU without peers: its activity metrics' values just before the first firing.
    activity_before: Vec<(Series, f64)>,
}

/// Holds GPU firings, decides, and keeps the workload events.
pub struct WorkloadCoalescer {
    window_ms: i64,
    episode_ms: i64,
    /// The metrics of a GPU's own workload (`None`: only peers tell).
    own: Option<OwnSignals>,
    /// GPUs seen per (host, metric), with their series: what "most of a host" is.
    gpus: HashMap<(String, String), Vec<(String, Series)>>,
    groups: HashMap<(String, String), Group>,
    /// Recent events, oldest first, at most `max_events`.
    events: VecDeque<WorkloadEvent>,
    max_events: usize,
    /// Events decided, and firings folded into them (for stats).
    pub decided: u64,
    pub folded: u64,
}

fn gpu_label(anomaly: &Anomaly) -> Option<&str> {
    anomaly.series.label(GPU_LABEL)
}

/// Whether `gpus` GPUs of a host with `host_gpus` are most of it: at least half, and two.
pub fn most_of_host(gpus: usize, host_gpus: usize) -> bool {
    gpus >= 2 && 2 * gpus >= host_gpus
}

/// Host and metric of a series the coalescer may hold, and its GPU.
pub fn gpu_of(series: &crate::model::series::SeriesKey) -> Option<(String, String, String)> {
    let host = series.label(HOSTNAME)?;
    let gpu = series.label(GPU_LABEL)?;
    Some((host.to_string(), series.name().to_string(), gpu.to_string()))
}

impl WorkloadCoalescer {
    /// `window_ms` 0 holds nothing (every firing opens at once). `own.job`: the metric whose
    /// series' job changes [`Self::decide`] is given.
    pub fn new(
        window_ms: i64,
        episode_ms: i64,
        max_events: usize,
        own: Option<OwnSignals>,
    ) -> Self {
        WorkloadCoalescer {
            window_ms,
            episode_ms,
            own,
            gpus: HashMap::new(),
            groups: HashMap::new(),
            events: VecDeque::new(),
            max_events,
            decided: 0,
            folded: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.window_ms > 0
    }

    /// A watched GPU series exists: it counts among its host's GPUs.
    pub fn saw(&mut self, host: &str, metric: &str, gpu: &str, series: &Series) {
        let known = self
            .gpus
            .entry((host.to_string(), metric.to_string()))
            .or_default();
        if !known.iter().any(|(g, _)| g == gpu) {
            known.push((gpu.to_string(), series.clone()));
        }
    }

    /// A GPU series fired, `moved` away from its value before: joins a workload event still
    /// in its episode (answers `true`, the firing is folded), or is held for the decision
    /// (`false`). `before` gives each GPU's value just before this firing.
    pub fn hold(
        &mut self,
        host: String,
        metric: String,
        anomaly: Anomaly,
        moved: f64,
        before: impl Fn(&Series) -> Option<f64>,
    ) -> bool {
        let key = (host, metric);
        let t = anomaly.first_ms;
        if let Some(event) = self
            .events
            .iter_mut()
            .rev()
            .find(|e| e.cause == WorkloadCause::Host && (&e.host, &e.metric) == (&key.0, &key.1))
            .filter(|e| t - e.last_ms <= self.episode_ms)
        {
            event.last_ms = event.last_ms.max(t);
            event.firings += 1;
            if let Some(gpu) = anomaly.series.label(GPU_LABEL) {
                if !event.gpus.iter().any(|g| g == gpu) {
                    event.gpus.push(gpu.to_string());
                    event.gpus.sort();
                }
            }
            self.folded += 1;
            return true;
        }
        if !self.groups.contains_key(&key) {
            // The values before the first firing: its peers', and a peerless GPU's activity.
            let peers = self.gpus.get(&key);
            let activity_before = match (peers.map_or(0, Vec::len), &self.own, gpu_label(&anomaly))
            {
                (0..=1, Some(own), Some(gpu)) => own
                    .activity
                    .iter()
                    .filter_map(|m| self.series_of(&key.0, m, gpu))
                    .filter_map(|s| before(s).map(|v| (s.clone(), v)))
                    .collect(),
                _ => Vec::new(),
            };
            let group = Group {
                first_ms: t,
                held: Vec::new(),
                moved,
                went_idle: moved < 0.0 && anomaly.value < IDLE_SHARE * anomaly.expected_high,
                before: peers
                    .into_iter()
                    .flatten()
                    .filter_map(|(g, s)| before(s).map(|v| (g.clone(), s.clone(), v)))
                    .collect(),
                activity_before,
            };
            self.groups.insert(key.clone(), group);
        }
        let group = self.groups.get_mut(&key).expect("inserted above");
        match group.held.iter_mut().find(|a| a.series == anomaly.series) {
            Some(a) => {
                a.last_ms = t;
                a.count += 1;
                a.peak_score = a.peak_score.max(anomaly.peak_score);
                // A climb that keeps firing is judged by how far it got from the range
                // first expected of it (see slight.rs).
                if a.outside(anomaly.value) > a.outside(a.value) {
                    a.value = anomaly.value;
                }
            }
            None => group.held.push(anomaly),
        }
        false
    }

    /// Decides the groups held for `window_ms` by `now_ms`: answers the firings to open as
    /// anomalies (those of hosts where too few GPUs moved together, on GPUs whose job did
    /// not just start or stop), oldest first. `now` gives each GPU's latest value, `job` the
    /// latest job change of an `OwnSignals::job` series.
    pub fn decide(
        &mut self,
        now_ms: i64,
        now: impl Fn(&Series) -> Option<f64>,
        job: impl Fn(&Series) -> Option<(i64, JobChange)>,
    ) -> Vec<Anomaly> {
        let due: Vec<(String, String)> = self
            .groups
            .iter()
            .filter(|(_, g)| now_ms - g.first_ms >= self.window_ms)
            .map(|(k, _)| k.clone())
            .collect();
        let mut open = Vec::new();
        for key in due {
            let group = self.groups.remove(&key).expect("listed");
            let mut gpus: Vec<String> = group
                .held
                .iter()
                .filter_map(|a| a.series.label(GPU_LABEL).map(str::to_string))
                .collect();
            // GPUs that did not fire but moved the same way, by at least half as much.
            for (gpu, series, before) in &group.before {
                let alike = now(series).is_some_and(|v| {
                    let m = v - before;
                    m * group.moved > 0.0 && m.abs() >= 0.5 * group.moved.abs()
                });
                if alike {
                    gpus.push(gpu.clone());
                }
            }
            gpus.sort();
            gpus.dedup();
            let known = self.gpus.get(&key).map_or(0, Vec::len);
            let host_gpus = known.max(gpus.len());
            let together = most_of_host(gpus.len(), host_gpus);
            if !together && known >= 2 && group.went_idle && now_ms - group.first_ms < STAGGER_MS {
                // Not yet: the rest of the host may be winding down a step behind.
                self.groups.insert(key, group);
                continue;
            }
            if together {
                let firings = group.held.iter().map(|a| a.count).sum();
                let last_ms = group.held.iter().map(|a| a.last_ms).max().unwrap_or(0);
                let detail = group.held[0].detail.clone();
                self.record(WorkloadEvent {
                    host: key.0,
                    metric: key.1,
                    gpus,
                    host_gpus,
                    first_ms: group.first_ms,
                    last_ms,
                    firings,
                    detail,
                    cause: WorkloadCause::Host,
                });
                continue;
            }
            let phase = self.phase_changed(&group, &now);
            for anomaly in group.held {
                if !self.fold_into_job(&key.0, &anomaly, &job, phase) {
                    open.push(anomaly);
                }
            }
        }
        open.sort_by_key(|a| a.first_ms);
        open
    }

    /// GPUs of `metric` known on `host`.
    pub fn host_gpus(&self, host: &str, metric: &str) -> usize {
        self.gpus
            .get(&(host.to_string(), metric.to_string()))
            .map_or(0, Vec::len)
    }

    /// A new workload event: counted, with its firings, and kept (the oldest fall out).
    fn record(&mut self, event: WorkloadEvent) {
        self.decided += 1;
        self.folded += u64::from(event.firings);
        self.keep(event);
    }

    /// A host's rhythm (`rhythm.rs`): kept with the events, not counted as a change.
    pub fn keep(&mut self, event: WorkloadEvent) {
        self.events.push_back(event);
        while self.events.len() > self.max_events {
            self.events.pop_front();
        }
    }

    /// The series of `gpu`'s `metric` on `host`, when known.
    fn series_of(&self, host: &str, metric: &str, gpu: &str) -> Option<&Series> {
        let known = self.gpus.get(&(host.to_string(), metric.to_string()))?;
        known.iter().find(|(g, _)| g == gpu).map(|(_, s)| s)
    }

    /// Whether a peerless GPU's activity metrics all moved the same way, each by at least
    /// [`PHASE_SHARE`] of the larger of its values, since just before `group` first fired.
    fn phase_changed(&self, group: &Group, now: impl Fn(&Series) -> Option<f64>) -> bool {
        let wanted = self.own.as_ref().map_or(0, |o| o.activity.len());
        if wanted == 0 || group.activity_before.len() < wanted {
            return false;
        }
        let moves: Option<Vec<f64>> = group
            .activity_before
            .iter()
            .map(|(s, was)| {
                let is = now(s)?;
                let far = (is - was).abs() >= PHASE_SHARE * is.abs().max(was.abs());
                (far && is != *was).then_some(is - was)
            })
            .collect();
        moves.is_some_and(|m| m.iter().all(|d| d.signum() == m[0].signum()))
    }

    /// Whether the job of `anomaly`'s GPU started or stopped from `window_ms` after it fired
    /// to `episode_ms` before.
    fn job_change_near(
        &self,
        host: &str,
        anomaly: &Anomaly,
        job: impl Fn(&Series) -> Option<(i64, JobChange)>,
    ) -> Option<WorkloadCause> {
        let metric = &self.own.as_ref()?.job;
        let gpu = gpu_label(anomaly)?;
        let (at, change) = job(self.series_of(host, metric, gpu)?)?;
        let t = anomaly.first_ms;
        if !(at - self.window_ms..=at + self.episode_ms).contains(&t) {
            return None;
        }
        Some(match change {
            JobChange::Started => WorkloadCause::JobStarted,
            JobChange::Stopped => WorkloadCause::JobStopped,
        })
    }

    /// Counts `anomaly` as part of its GPU's own workload change when it is: joins the GPU's
    /// event still in its episode, or records one for a job change near it or a `phase`.
    fn fold_into_job(
        &mut self,
        host: &str,
        anomaly: &Anomaly,
        job: impl Fn(&Series) -> Option<(i64, JobChange)>,
        phase: bool,
    ) -> bool {
        let Some(gpu) = gpu_label(anomaly) else {
            return false;
        };
        let episode_ms = self.episode_ms;
        if let Some(event) = self.events.iter_mut().rev().find(|e| {
            e.cause != WorkloadCause::Host
                && e.host == host
                && e.gpus.iter().any(|g| g == gpu)
                && anomaly.first_ms - e.last_ms <= episode_ms
        }) {
            event.last_ms = event.last_ms.max(anomaly.last_ms);
            event.firings += anomaly.count;
            self.folded += u64::from(anomaly.count);
            return true;
        }
        let Some(cause) = self
            .job_change_near(host, anomaly, job)
            .or(phase.then_some(WorkloadCause::Phase))
        else {
            return false;
        };
        let what = match cause {
            WorkloadCause::JobStopped => "the GPU's job stopped",
            WorkloadCause::Phase => "the GPU's utilisation and power moved together",
            _ => "a job started on the GPU",
        };
        self.record(WorkloadEvent {
            host: host.to_string(),
            metric: anomaly.series.name().to_string(),
            gpus: vec![gpu.to_string()],
            host_gpus: 1,
            first_ms: anomaly.first_ms,
            last_ms: anomaly.last_ms,
            firings: anomaly.count,
            detail: format!(
                "{what}; first firing: {} {}",
                anomaly.series.name(),
                anomaly.detail
            ),
            cause,
        });
        true
    }

    /// Recent workload events, newest first.
    pub fn events(&self) -> impl Iterator<Item = &WorkloadEvent> {
        self.events.iter().rev()
    }
}

#[cfg(test)]
#[path = "workload_tests.rs"]
mod tests;
