//! A job's rhythm: a GPU's utilisation or power dropping below half its level for a while,
//! again and again at a steady interval, is the job checkpointing or evaluating, not a
//! fault. The detector learns such repeats and stops firing on them after the first few,
//! so the rhythm is read from the values themselves and reported once per host as a
//! workload event ("drops below half its level every ~6 min").
//!
//! Per series, a [`DipTracker`] follows the level (a slow average of the values that are
//! not in a dip) and notes when each dip starts. A dip that ends (back above half the
//! level) within [`MAX_DIP_MS`] counts; a longer one (a job stopping) breaks the rhythm,
//! and one shorter than [`MIN_DIP_MS`] is ignored.
//! When the last [`DIPS`] dips came at intervals within [`TOLERANCE`] of their median, and
//! that median is at least [`MIN_PERIOD_MS`], the series has a rhythm of that period.
//! Per host and metric, [`Rhythms`] reports it when at least half of the host's GPUs (and
//! two, where it has more than one) share it, and again only after it was lost (no dip for
//! two periods) or its period changed.

use std::collections::{HashMap, VecDeque};

use super::workload::{most_of_host, WorkloadCause, WorkloadEvent};

/// A value below this share of its level is in a dip.
pub const DIP_SHARE: f64 = 0.5;
/// A dip longer than this is not part of a rhythm (a job stopping or pausing).
pub const MAX_DIP_MS: i64 = 3 * 60 * 1000;
/// A dip shorter than this is ignored: a sample or two low at a fine sampling interval
/// (steady training dips for a second or two) is no checkpoint.
pub const MIN_DIP_MS: i64 = 3 * 1000;
/// The shortest period taken for a rhythm.
pub const MIN_PERIOD_MS: i64 = 60 * 1000;
/// Dips whose starts make a rhythm.
pub const DIPS: usize = 4;
/// How far an interval between dips (or another GPU's period) may be from the median.
pub const TOLERANCE: f64 = 0.25;
/// Weight of a new value in the level (a slow average).
const LEVEL_WEIGHT: f64 = 0.02;
/// A host and metric with no rhythm confirmed for this long is forgotten (hosts come and
/// go; a checkpoint every hour is still remembered between two).
pub const FORGET_MS: i64 = 6 * 60 * 60 * 1000;

/// A rhythm found on a series: its period and when its first counted dip started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rhythm {
    pub period_ms: i64,
    pub since_ms: i64,
}

/// One series' dips.
#[derive(Debug, Clone, Default)]
pub struct DipTracker {
    level: Option<f64>,
    /// When the dip under way started.
    dip_from: Option<i64>,
    /// Starts of the latest dips that ended in time, oldest first.
    starts: VecDeque<i64>,
}

impl DipTracker {
    /// One value of the series; the rhythm when a dip just ended and completes one.
    pub fn observe(&mut self, t_ms: i64, value: f64) -> Option<Rhythm> {
        if !value.is_finite() {
            return None;
        }
        let Some(level) = self.level else {
            self.level = Some(value);
            return None;
        };
        let low = value < DIP_SHARE * level;
        match self.dip_from {
            Some(from) if !low => {
                self.dip_from = None;
                if t_ms - from < MIN_DIP_MS {
                    return None;
                }
                if t_ms - from > MAX_DIP_MS {
                    self.starts.clear();
                    return None;
                }
                self.starts.push_back(from);
                if self.starts.len() > DIPS {
                    self.starts.pop_front();
                }
                self.rhythm()
            }
            Some(from) => {
                if t_ms - from > MAX_DIP_MS {
                    // A new level (a job stopped, or a lighter one started): follow it.
                    self.level = Some(value);
                    self.dip_from = None;
                    self.starts.clear();
                }
                None
            }
            None if low && level > 0.0 => {
                self.dip_from = Some(t_ms);
                None
            }
            None => {
                self.level = Some(level + LEVEL_WEIGHT * (value - level));
                None
            }
        }
    }

    fn rhythm(&self) -> Option<Rhythm> {
        if self.starts.len() < DIPS {
            return None;
        }
        let mut gaps: Vec<i64> = self
            .starts
            .iter()
            .zip(self.starts.iter().skip(1))
            .map(|(a, b)| b - a)
            .collect();
        gaps.sort_unstable();
        let median = gaps[gaps.len() / 2];
        let steady = gaps
            .iter()
            .all(|g| ((g - median).abs() as f64) <= TOLERANCE * median as f64);
        (steady && median >= MIN_PERIOD_MS).then(|| Rhythm {
            period_ms: median,
            since_ms: self.starts[0],
        })
    }
}

fn alike(a: i64, b: i64) -> bool {
    ((a - b).abs() as f64) <= TOLERANCE * a.max(b) as f64
}

/// "6 min", "90 s".
fn spoken(period_ms: i64) -> String {
    let s = (period_ms as f64 / 1000.0).round() as i64;
    if s < 120 {
        format!("{s} s")
    } else {
        format!("{} min", (s as f64 / 60.0).round() as i64)
    }
}

/// One host's rhythms on one metric.
#[derive(Debug, Default)]
struct HostRhythm {
    /// Per GPU: its latest rhythm and when it was last confirmed.
    gpus: HashMap<String, (Rhythm, i64)>,
    /// The rhythm reported, and when a GPU last confirmed it.
    reported: Option<(i64, i64)>,
}

/// Rhythms per host and metric, reported once each.
#[derive(Debug, Default)]
pub struct Rhythms {
    hosts: HashMap<(String, String), HostRhythm>,
}

impl Rhythms {
    /// `gpu` of `host` has `rhythm` on `metric` at `t_ms` (then [`Self::report`], once the
    /// other GPUs of the same sampling round have been told too).
    pub fn found(&mut self, host: &str, metric: &str, gpu: &str, rhythm: Rhythm, t_ms: i64) {
        self.hosts
            .entry((host.to_string(), metric.to_string()))
            .or_default()
            .gpus
            .insert(gpu.to_string(), (rhythm, t_ms));
    }

    /// Forgets the hosts and metrics with nothing confirmed since `FORGET_MS` before `t_ms`.
    pub fn forget_old(&mut self, t_ms: i64) {
        let before = t_ms - FORGET_MS;
        self.hosts.retain(|_, h| {
            h.gpus.values().any(|(_, seen)| *seen >= before)
                || h.reported.is_some_and(|(_, seen)| seen >= before)
        });
    }

    /// The event to report for `host`'s rhythm on `metric` at `t_ms`, if there is a new
    /// one; `host_gpus` GPUs of that metric are known on the host.
    pub fn report(
        &mut self,
        host: &str,
        metric: &str,
        t_ms: i64,
        host_gpus: usize,
    ) -> Option<WorkloadEvent> {
        let h = self
            .hosts
            .get_mut(&(host.to_string(), metric.to_string()))?;
        h.gpus
            .retain(|_, (r, seen)| t_ms - *seen <= 2 * r.period_ms.max(MIN_PERIOD_MS));
        // The period most of the GPUs share, and those that share it.
        let share = |period: i64| -> Vec<(&String, &Rhythm)> {
            h.gpus
                .iter()
                .filter(|(_, (r, _))| alike(r.period_ms, period))
                .map(|(g, (r, _))| (g, r))
                .collect()
        };
        let rhythm = *h
            .gpus
            .values()
            .map(|(r, _)| r)
            .max_by_key(|r| share(r.period_ms).len())?;
        let mut sharing = share(rhythm.period_ms);
        if let Some((period, seen)) = h.reported {
            if alike(period, rhythm.period_ms) && t_ms - seen <= 2 * period {
                // Reported and still under way: confirmed, not reported again.
                h.reported = Some((period, t_ms));
                return None;
            }
        }
        // A GPU alone on its host has its own rhythm; with peers, most of them must share it.
        let enough = if host_gpus <= 1 {
            !sharing.is_empty()
        } else {
            most_of_host(sharing.len(), host_gpus)
        };
        if !enough {
            return None;
        }
        h.reported = Some((rhythm.period_ms, t_ms));
        sharing.sort_by(|a, b| a.0.cmp(b.0));
        Some(WorkloadEvent {
            host: host.to_string(),
            metric: metric.to_string(),
            gpus: sharing.iter().map(|(g, _)| g.to_string()).collect(),
            host_gpus,
            first_ms: sharing
                .iter()
                .map(|(_, r)| r.since_ms)
                .min()
                .unwrap_or(t_ms),
            last_ms: t_ms,
            firings: 0,
            detail: format!(
                "drops below half its level every ~{} (checkpoints or evaluation)",
                spoken(rhythm.period_ms)
            ),
            cause: WorkloadCause::Rhythm,
        })
    }
}

#[cfg(test)]
#[path = "rhythm_tests.rs"]
mod tests;
