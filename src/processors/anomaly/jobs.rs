//! A GPU's job starting and stopping, read from its framebuffer use: a process holds its
//! weights and caches, a GPU without one holds only the driver's context. The use rising to
//! [`JOB_FACTOR`] times its idle level (at least [`JOB_FACTOR`] units) is a job starting, and
//! so is it rising to [`JOB_FACTOR`] times the job's peak so far (a process that first
//! creates its context, then loads its model); it falling to 1/[`JOB_FACTOR`] of the job's
//! peak is the job stopping. A cache growing or a leak in a running job is neither.
//!
//! The anomaly engine keeps one tracker per framebuffer series; the workload coalescer reads
//! the latest change to tell a job's start or stop (and the minute of settling after it)
//! from an anomaly on a GPU that has no peers to compare with (see the workload module).

/// How far the framebuffer use moves between idle and a job, as a factor.
pub const JOB_FACTOR: f64 = 10.0;

/// A job starting or stopping on one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobChange {
    Started,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Not known yet whether a job runs: the lowest and highest values seen.
    Unknown { low: f64, high: f64 },
    /// No job: the lowest value since it stopped.
    Idle { low: f64 },
    /// A job runs: its highest value.
    Busy { high: f64 },
}

/// One GPU's framebuffer use, read as jobs starting and stopping.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTracker {
    phase: Option<Phase>,
    /// The latest change and when it happened (sample time, ms).
    last: Option<(i64, JobChange)>,
}

impl Default for JobTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl JobTracker {
    pub fn new() -> Self {
        JobTracker {
            phase: None,
            last: None,
        }
    }

    /// One sample of the framebuffer use.
    pub fn observe(&mut self, t_ms: i64, value: f64) {
        if !value.is_finite() {
            return;
        }
        let starts = |low: f64| value >= JOB_FACTOR * low.max(1.0);
        let stops = |high: f64| high >= JOB_FACTOR && value * JOB_FACTOR <= high;
        let (phase, change) =
            match self.phase {
                None => (
                    Phase::Unknown {
                        low: value,
                        high: value,
                    },
                    None,
                ),
                Some(
                    Phase::Unknown { low, .. } | Phase::Idle { low } | Phase::Busy { high: low },
                ) if starts(low) => (Phase::Busy { high: value }, Some(JobChange::Started)),
                Some(Phase::Unknown { high, .. } | Phase::Busy { high }) if stops(high) => {
                    (Phase::Idle { low: value }, Some(JobChange::Stopped))
                }
                Some(Phase::Unknown { low, high }) => (
                    Phase::Unknown {
                        low: low.min(value),
                        high: high.max(value),
                    },
                    None,
                ),
                Some(Phase::Idle { low }) => (
                    Phase::Idle {
                        low: low.min(value),
                    },
                    None,
                ),
                Some(Phase::Busy { high }) => (
                    Phase::Busy {
                        high: high.max(value),
                    },
                    None,
                ),
            };
        self.phase = Some(phase);
        if let Some(change) = change {
            self.last = Some((t_ms, change));
        }
    }

    /// The latest job start or stop, and when it happened.
    pub fn last_change(&self) -> Option<(i64, JobChange)> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(values: &[f64]) -> Vec<(i64, JobChange)> {
        let mut t = JobTracker::new();
        let mut changes = Vec::new();
        for (i, v) in values.iter().enumerate() {
            t.observe(i as i64, *v);
            if let Some(c) = t.last_change().filter(|c| changes.last() != Some(c)) {
                changes.push(c);
            }
        }
        changes
    }

    #[test]
    fn a_job_starts_from_idle_and_stops_back_to_it() {
        // Real single-GPU data (MiB): idle at 199, a job allocating in two steps, stopping
        // to its context, a new job.
        let values = [
            199.0, 199.0, 2491.0, 10245.0, 10265.0, 289.0, 289.0, 10261.0,
        ];
        assert_eq!(
            replay(&values),
            [
                (2, JobChange::Started),
                (5, JobChange::Stopped),
                (7, JobChange::Started)
            ]
        );
        // A process creating its context, then loading its model: the job starts with the load.
        let values = [2.0, 2.0, 199.0, 199.0, 2491.0, 10245.0];
        assert_eq!(replay(&values)[1..], [(4, JobChange::Started)]);
    }

    #[test]
    fn growth_and_dips_inside_a_job_are_not_jobs() {
        // A cache growing by 20 GB, a leak, a dip of 400 MiB: the GPU was never idle.
        let mut values = vec![30_000.0, 30_000.0, 50_000.0, 50_000.0, 30_000.0, 29_600.0];
        values.extend((0..100).map(|i| 30_000.0 + 35.0 * i as f64));
        assert_eq!(replay(&values), []);
        // A GPU watched from the middle of a job: its stop is still seen.
        values.push(0.0);
        assert_eq!(replay(&values), [(106, JobChange::Stopped)]);
    }

    #[test]
    fn an_idle_gpu_at_zero_starts_a_job_on_a_real_allocation_only() {
        assert_eq!(replay(&[0.0, 0.0, 4.0, 0.0, 0.0]), []);
        assert_eq!(replay(&[0.0, 0.0, 265.0]), [(2, JobChange::Started)]);
    }
}
