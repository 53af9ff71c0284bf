//! Peer divergence: the GPU that is unlike its peers. A straggler, a throttled or degraded
//! card falls away from the other GPUs of its job while each of its own series may look
//! ordinary; comparing it with its peers is how it shows.
//!
//! The GPUs of a host that report the same metric form a group (a job label is not used
//! yet: two jobs sharing a host are one group). Each GPU's values are smoothed (an exponential
//! average over `SMOOTHING_MS`). Once a second of sample time per group, not per sample, the
//! group is checked:
//!
//! - at least `MIN_PEERS` other GPUs must be fresh, and the group's level must have held
//!   steady for `STEADY_MS` (within the tolerance), at `BUSY_SHARE` of its peak or more:
//!   while the whole group moves (a job starting, a checkpoint) or idles, nobody is judged;
//! - each GPU has a usual place among its peers (rank 0 holding more memory, a card in a
//!   warmer slot): its ratio to the group's level (the mean of its middle half), and how
//!   much that ratio usually wobbles (its mean absolute deviation), over its first
//!   `LEARN_CHECKS` steady checks, then followed slowly while it is in line;
//! - a GPU diverges when its value leaves the value its place predicts by more than
//!   `tolerance` (a fraction) *and* by more than `WOBBLE_MULT` times its usual wobble, *and*
//!   lies beyond every one of its peers (below the lowest, above the highest), on every
//!   check for `hold_ms`.
//!
//! A GPU that stopped (below `STOPPED_SHARE` of what its place predicts) waits
//! `STAGGER_MS` instead: it may be the first of its host to stop.
//!
//! A divergence opens one anomaly (reason [`Reason::PeerDivergence`]), with the peers'
//! median and range; it stays one anomaly until the GPU has been back in line for
//! `RECOVERY_MS`. Time comes in with the samples.

use std::collections::HashMap;

use super::detector::Reason;
use super::record::{Anomaly, PeerContext};
use super::workload::STAGGER_MS;
use crate::model::series::Series;

/// Time constant of each GPU's smoothed value.
const SMOOTHING_MS: f64 = 3_000.0;
/// How often a group is checked, in sample time.
const CHECK_EVERY_MS: i64 = 1_000;
/// A GPU whose newest sample is older than this is not compared (nor compared with).
const FRESH_MS: i64 = 15_000;
/// Other fresh GPUs a GPU needs to be judged against.
pub const MIN_PEERS: usize = 2;
/// How long the group's level must have held within the tolerance.
const STEADY_MS: i64 = 10_000;
/// A divergence must exceed this many times the GPU's usual wobble around its place.
const WOBBLE_MULT: f64 = 5.0;
/// Steady checks a GPU's usual place is first learned from (it cannot diverge meanwhile).
const LEARN_CHECKS: u32 = 60;
/// After this many checks, the usual place moves with a weight of 1 / this.
const PLACE_MEMORY_CHECKS: f64 = 300.0;
/// A group is busy while its level is at least this share of its peak level; only a busy
/// group is judged (a GPU still working while its idle peers wait, rank 0 saving a
/// checkpoint, is ordinary).
const BUSY_SHARE: f64 = 0.6;
/// The peak level fades by this factor per check (halving in about 11 minutes), so a host
/// that moves to lighter work is judged again.
const PEAK_FADE: f64 = 0.999;
/// Below this share of what its place predicts, a GPU has stopped rather than slowed: a
/// straggler or a throttled card loses 20–40 %, a GPU whose job ended falls to its idle
/// draw (an H100's idle power is a fifth to a third of its working power).
const STOPPED_SHARE: f64 = 0.5;
/// A divergence ends after the GPU has been in line this long.
const RECOVERY_MS: i64 = 60_000;

/// Settings (from `[anomaly]`).
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// GPU series compared with their peers (activity: a straggler falls away in them).
    pub watch: Vec<crate::model::selector::Selector>,
    /// How far (a fraction of the value its place predicts) a GPU must stray; 0: off.
    pub tolerance: f64,
    /// How long it must stay out before it is reported, ms.
    pub hold_ms: i64,
}

/// Where a member sits in the peer monitor (kept by the engine with the watched series).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberRef {
    group: usize,
    member: usize,
}

struct Member {
    gpu: String,
    series: Series,
    smoothed: f64,
    last_ms: Option<i64>,
    /// Usual ratio to the group's level, its usual relative wobble around that, and the
    /// in-line checks they are made of.
    place: f64,
    wobble: f64,
    learned: u32,
    /// Out of line since (sample time), and the open divergence: (since, last out of line).
    out_since: Option<i64>,
    open: Option<(i64, i64)>,
}

struct Group {
    host: String,
    metric: String,
    members: Vec<Member>,
    checked_ms: i64,
    /// The highest level seen, fading (see `PEAK_FADE`).
    peak: f64,
    /// The group's level at each recent check (time, level), oldest first, `STEADY_MS` long.
    levels: std::collections::VecDeque<(i64, f64)>,
}

/// The peer comparison of every group.
pub struct PeerMonitor {
    settings: PeerSettings,
    groups: Vec<Group>,
    index: HashMap<(String, String), usize>,
    /// Divergences reported (for stats).
    pub reported: u64,
}

impl PeerMonitor {
    pub fn new(settings: PeerSettings) -> Self {
        PeerMonitor {
            settings,
            groups: Vec::new(),
            index: HashMap::new(),
            reported: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.tolerance > 0.0
    }

    /// Whether `series` (a GPU gauge) is compared with its peers.
    pub fn compares(&self, series: &Series) -> bool {
        self.enabled() && self.settings.watch.iter().any(|s| s.matches(series))
    }

    /// Registers a GPU series: `group` is the host (and job), `gpu` its GPU label.
    pub fn join(&mut self, group: &str, metric: &str, gpu: &str, series: &Series) -> MemberRef {
        let key = (group.to_string(), metric.to_string());
        let g = *self.index.entry(key).or_insert_with(|| {
            self.groups.push(Group {
                host: group.to_string(),
                metric: metric.to_string(),
                members: Vec::new(),
                checked_ms: i64::MIN,
                peak: 0.0,
                levels: Default::default(),
            });
            self.groups.len() - 1
        });
        let members = &mut self.groups[g].members;
        let m = match members.iter().position(|m| m.gpu == gpu) {
            Some(m) => m,
            None => {
                members.push(Member {
                    gpu: gpu.to_string(),
                    series: series.clone(),
                    smoothed: f64::NAN,
                    last_ms: None,
                    place: 1.0,
                    wobble: 0.0,
                    learned: 0,
                    out_since: None,
                    open: None,
                });
                members.len() - 1
            }
        };
        MemberRef {
            group: g,
            member: m,
        }
    }

    /// A GPU's new value.
    pub fn observe(&mut self, at: MemberRef, t: i64, value: f64) {
        let m = &mut self.groups[at.group].members[at.member];
        m.smoothed = match m.last_ms {
            Some(last) if m.smoothed.is_finite() => {
                let alpha = 1.0 - (-((t - last).max(0) as f64) / SMOOTHING_MS).exp();
                m.smoothed + alpha * (value - m.smoothed)
            }
            _ => value,
        };
        m.last_ms = Some(t);
    }

    /// Checks every group due at `now`; returns the divergences that open.
    pub fn check(&mut self, now: i64) -> Vec<Anomaly> {
        let mut opened = Vec::new();
        if !self.enabled() {
            return opened;
        }
        for g in &mut self.groups {
            if now.saturating_sub(g.checked_ms) >= CHECK_EVERY_MS {
                g.checked_ms = now;
                g.check(now, &self.settings, &mut opened);
            }
        }
        self.reported += opened.len() as u64;
        opened
    }
}

/// The mean of the middle half of `values` (sorted in place): the group's level, which one
/// GPU away cannot move, and which a group split in two (a job on half the GPUs) moves
/// smoothly rather than by jumps from one half to the other as a median would.
fn middle_mean(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let (from, to) = (n / 4, n - n / 4);
    values[from..to].iter().sum::<f64>() / (to - from) as f64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

impl Group {
    fn check(&mut self, now: i64, settings: &PeerSettings, opened: &mut Vec<Anomaly>) {
        let fresh: Vec<usize> = (0..self.members.len())
            .filter(|&i| {
                let m = &self.members[i];
                m.smoothed.is_finite() && m.last_ms.is_some_and(|t| now - t <= FRESH_MS)
            })
            .collect();
        if fresh.len() < MIN_PEERS + 1 {
            self.levels.clear();
            return;
        }
        let mut all: Vec<f64> = fresh.iter().map(|&i| self.members[i].smoothed).collect();
        let group_level = middle_mean(&mut all);
        self.levels.push_back((now, group_level));
        while self
            .levels
            .front()
            .is_some_and(|(t, _)| now - t > STEADY_MS)
        {
            self.levels.pop_front();
        }
        let level = group_level.abs();
        let (lo, hi) = self
            .levels
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, m)| {
                (lo.min(*m), hi.max(*m))
            });
        let covered = self
            .levels
            .front()
            .is_some_and(|(t, _)| now - t >= STEADY_MS - CHECK_EVERY_MS);
        self.peak = (self.peak * PEAK_FADE).max(level);
        let busy = level >= BUSY_SHARE * self.peak;
        let steady = covered && busy && level > 0.0 && hi - lo <= settings.tolerance * level;
        if !steady {
            // The group is moving (or has just come together): nobody is judged, and a
            // divergence in progress waits.
            for &i in &fresh {
                self.members[i].out_since = None;
            }
            return;
        }

        let mut peers = Vec::with_capacity(fresh.len());
        for &i in &fresh {
            let (peer_lo, peer_hi) = fresh
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| self.members[j].smoothed)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                });
            let m = &mut self.members[i];
            let ratio = m.smoothed / group_level;
            if m.learned < LEARN_CHECKS {
                // Its first steady checks are its usual place, whatever it is.
                m.learned += 1;
                m.place += (ratio - m.place) / m.learned as f64;
                m.wobble += ((ratio / m.place - 1.0).abs() - m.wobble) / m.learned as f64;
                continue;
            }
            let away = ratio / m.place - 1.0;
            let limit = settings.tolerance.max(WOBBLE_MULT * m.wobble);
            // Unlike its peers: beyond every one of them, not just far from its place.
            let beyond = if away < 0.0 {
                m.smoothed < peer_lo
            } else {
                m.smoothed > peer_hi
            };
            let out = away.abs() > limit && beyond;
            let weight = 1.0 / (m.learned as f64).min(PLACE_MEMORY_CHECKS);
            // The wobble follows on every steady check, a move out of line counted only up
            // to the limit: noise that grows raises it, one divergence cannot hide itself.
            m.wobble += weight * (away.abs().min(limit) - m.wobble);
            if !out {
                m.out_since = None;
                m.learned = m.learned.saturating_add(1);
                m.place += weight * (ratio - m.place);
                if m.open.is_some_and(|(_, last)| now - last >= RECOVERY_MS) {
                    m.open = None;
                }
                continue;
            }
            let since = *m.out_since.get_or_insert(now);
            if let Some(open) = &mut m.open {
                open.1 = now;
                continue;
            }
            // A GPU that stopped may be the first of its host to stop (a job winding down
            // stops its GPUs one after another): it waits as the workload rule waits, and
            // the host's level moving as the rest follow ends the wait unreported.
            let stopped = m.smoothed < STOPPED_SHARE * group_level * m.place;
            let hold_ms = if stopped {
                settings.hold_ms.max(STAGGER_MS)
            } else {
                settings.hold_ms
            };
            if now - since < hold_ms {
                continue;
            }
            m.open = Some((since, now));
            peers.clear();
            peers.extend(
                fresh
                    .iter()
                    .filter(|&&j| j != i)
                    .map(|&j| self.members[j].smoothed),
            );
            let peer_median = median(&mut peers);
            let m = &self.members[i];
            let expected = group_level * m.place;
            let band = expected.abs() * settings.tolerance.max(WOBBLE_MULT * m.wobble);
            opened.push(Anomaly {
                id: 0,
                series: m.series.clone(),
                first_ms: since,
                last_ms: now,
                value: m.smoothed,
                expected_low: expected - band,
                expected_high: expected + band,
                score: 1.0,
                peak_score: 1.0,
                count: 1,
                reason: Reason::PeerDivergence,
                detail: format!(
                    "{} of GPU {} on {} is {:.4} while its {} peers' median is {:.4} \
                     (peers {:.4} to {:.4}); its usual place predicts {:.4}, it is {:+.0}% off",
                    self.metric,
                    m.gpu,
                    self.host,
                    m.smoothed,
                    peers.len(),
                    peer_median,
                    peer_lo,
                    peer_hi,
                    expected,
                    (m.smoothed / expected - 1.0) * 100.0,
                ),
                is_rate: false,
                peers: Some(PeerContext {
                    count: peers.len(),
                    median: peer_median,
                    low: peer_lo,
                    high: peer_hi,
                }),
            });
        }
    }
}

#[cfg(test)]
#[path = "peers_tests.rs"]
mod tests;
