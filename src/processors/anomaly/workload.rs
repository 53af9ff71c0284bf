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
//! Only gauges of series with a `Hostname` and a `gpu` label are held; counters (XID and
//! ECC errors among them) and every other series open at once. A host-wide change that is
//! a real problem (the whole host overheating) is the alert rules' to catch, by threshold.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use super::engine::Anomaly;
use crate::model::catalog::HOSTNAME;
use crate::model::series::Series;

/// The label naming a GPU on its host.
pub const GPU_LABEL: &str = "gpu";

/// Several GPUs of one host changing together on one metric.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkloadEvent {
    pub host: String,
    pub metric: String,
    /// The GPUs that fired, sorted.
    pub gpus: Vec<String>,
    /// GPUs of this metric known on the host when it was decided.
    pub host_gpus: usize,
    /// First and last firing, Unix ms.
    pub first_ms: i64,
    pub last_ms: i64,
    /// Firings folded into it.
    pub firings: u32,
    /// What the first firing was (new high, new low, unusual move), for people.
    pub detail: String,
}

/// Firings of one host and metric waiting for the decision.
struct Group {
    first_ms: i64,
    /// One per series; a series firing again while held is merged into its entry.
    held: Vec<Anomaly>,
    /// How far the first firing moved from the value before it.
    moved: f64,
    /// Every GPU's value just before the first firing.
    before: Vec<(String, Series, f64)>,
}

/// Holds GPU firings, decides, and keeps the workload events.
pub struct WorkloadCoalescer {
    window_ms: i64,
    episode_ms: i64,
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

/// Host and metric of a series the coalescer may hold, and its GPU.
pub fn gpu_of(series: &Series) -> Option<(String, String, String)> {
    let host = series.label(HOSTNAME)?;
    let gpu = series.label(GPU_LABEL)?;
    Some((host.to_string(), series.name().to_string(), gpu.to_string()))
}

impl WorkloadCoalescer {
    /// `window_ms` 0 holds nothing (every firing opens at once).
    pub fn new(window_ms: i64, episode_ms: i64, max_events: usize) -> Self {
        WorkloadCoalescer {
            window_ms,
            episode_ms,
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
            .find(|e| (&e.host, &e.metric) == (&key.0, &key.1))
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
        let peers = self.gpus.get(&key);
        let group = self.groups.entry(key).or_insert_with(|| Group {
            first_ms: t,
            held: Vec::new(),
            moved,
            before: peers
                .into_iter()
                .flatten()
                .filter_map(|(g, s)| before(s).map(|v| (g.clone(), s.clone(), v)))
                .collect(),
        });
        match group.held.iter_mut().find(|a| a.series == anomaly.series) {
            Some(a) => {
                a.last_ms = t;
                a.count += 1;
                a.peak_score = a.peak_score.max(anomaly.peak_score);
            }
            None => group.held.push(anomaly),
        }
        false
    }

    /// Decides the groups held for `window_ms` by `now_ms`: answers the firings to open as
    /// anomalies (those of hosts where too few GPUs moved together), oldest first. `now`
    /// gives each GPU's latest value.
    pub fn decide(&mut self, now_ms: i64, now: impl Fn(&Series) -> Option<f64>) -> Vec<Anomaly> {
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
            let host_gpus = self.gpus.get(&key).map_or(0, Vec::len).max(gpus.len());
            if gpus.len() >= 2 && 2 * gpus.len() >= host_gpus {
                let firings = group.held.iter().map(|a| a.count).sum();
                let last_ms = group.held.iter().map(|a| a.last_ms).max().unwrap_or(0);
                let detail = group.held[0].detail.clone();
                self.decided += 1;
                self.folded += u64::from(firings);
                self.events.push_back(WorkloadEvent {
                    host: key.0,
                    metric: key.1,
                    gpus,
                    host_gpus,
                    first_ms: group.first_ms,
                    last_ms,
                    firings,
                    detail,
                });
                while self.events.len() > self.max_events {
                    self.events.pop_front();
                }
            } else {
                open.extend(group.held);
            }
        }
        open.sort_by_key(|a| a.first_ms);
        open
    }

    /// Recent workload events, newest first.
    pub fn events(&self) -> impl Iterator<Item = &WorkloadEvent> {
        self.events.iter().rev()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::series::SeriesKey;
    use crate::processors::anomaly::Reason;

    fn firing(gpu: &str, t: i64) -> Anomaly {
        Anomaly {
            id: 0,
            series: series(gpu),
            first_ms: t,
            last_ms: t,
            value: 160.0,
            expected_low: 500.0,
            expected_high: 560.0,
            score: 1.0,
            peak_score: 1.0,
            count: 1,
            reason: Reason::NewLow,
            detail: Reason::NewLow.describe().to_string(),
            peers: None,
            is_rate: false,
        }
    }

    fn series(gpu: &str) -> Series {
        SeriesKey::shared("power", [("Hostname", "h1"), ("gpu", gpu)])
    }

    fn coalescer(gpus: usize) -> WorkloadCoalescer {
        let mut c = WorkloadCoalescer::new(5_000, 60_000, 10);
        for g in 0..gpus {
            c.saw("h1", "power", &g.to_string(), &series(&g.to_string()));
        }
        c
    }

    /// Holds a firing of `gpu` that dropped 400 W, every GPU having been at 560 W before.
    fn hold(c: &mut WorkloadCoalescer, gpu: &str, t: i64) -> bool {
        c.hold("h1".into(), "power".into(), firing(gpu, t), -400.0, |_| {
            Some(560.0)
        })
    }

    /// The GPUs in `dropped` are at 160 W now, the others still at 560 W.
    fn now<'a>(dropped: &'a [&'a str]) -> impl Fn(&Series) -> Option<f64> + 'a {
        move |s| {
            Some(if dropped.contains(&s.label("gpu").unwrap()) {
                160.0
            } else {
                560.0
            })
        }
    }

    #[test]
    fn most_gpus_of_a_host_firing_together_are_one_workload_event() {
        let mut c = coalescer(8);
        for g in 0..8 {
            assert!(!hold(&mut c, &g.to_string(), 1_000 + g as i64 * 300));
        }
        let all = ["0", "1", "2", "3", "4", "5", "6", "7"];
        let early = c.decide(5_999, now(&all));
        assert!(early.is_empty(), "decided before the window passed");
        assert!(c.decide(6_000, now(&all)).is_empty(), "no GPU opened");
        let events: Vec<_> = c.events().collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].gpus.len(), 8);
        assert_eq!((events[0].first_ms, events[0].last_ms), (1_000, 3_100));
        // The same episode: a late GPU and a second step of the ramp join the event.
        assert!(hold(&mut c, "3", 20_000));
        assert!(c.decide(30_000, now(&all)).is_empty());
        assert_eq!(c.events().count(), 1);
        assert_eq!(c.events().next().unwrap().firings, 9);
    }

    #[test]
    fn a_gpu_that_fires_alone_is_opened_as_an_anomaly_after_the_window() {
        let mut c = coalescer(8);
        assert!(!hold(&mut c, "5", 1_000));
        assert!(!hold(&mut c, "5", 2_000));
        assert!(c.decide(5_000, now(&["5"])).is_empty());
        let open = c.decide(6_000, now(&["5"]));
        assert_eq!(open.len(), 1, "one anomaly, its repeat merged");
        assert_eq!(open[0].series.label("gpu"), Some("5"));
        assert_eq!(
            (open[0].first_ms, open[0].last_ms, open[0].count),
            (1_000, 2_000, 2)
        );
        assert_eq!(c.events().count(), 0);
    }

    #[test]
    fn peers_that_moved_alike_without_firing_make_it_a_workload_change() {
        // Only GPU 0's detector fired, but GPUs 1-4 dropped as far: five of eight moved.
        let mut c = coalescer(8);
        hold(&mut c, "0", 1_000);
        assert!(c.decide(6_000, now(&["0", "1", "2", "3", "4"])).is_empty());
        assert_eq!(c.events().next().unwrap().gpus, ["0", "1", "2", "3", "4"]);
        // Three of eight moved: each firing is an anomaly; the ones that only moved are not.
        let mut c = coalescer(8);
        for g in ["1", "2"] {
            hold(&mut c, g, 1_000);
        }
        assert_eq!(c.decide(6_000, now(&["1", "2", "3"])).len(), 2);
        // Two of two: a workload change.
        let mut c = coalescer(2);
        hold(&mut c, "0", 1_000);
        assert!(c.decide(6_000, now(&["0", "1"])).is_empty());
        assert_eq!(c.events().count(), 1);
    }
}
