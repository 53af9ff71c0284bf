//! Simulated GPUs with seeded, reproducible scenarios. Each call to [`SimFleet::sample`]
//! advances every GPU by one step and returns samples with dcgm-exporter names and labels.
//! Scenarios follow step counts, not wall time, so a seed always gives the same series.

use serde::{Deserialize, Serialize};

use super::rng::SplitMix64;
use crate::model::catalog as m;
use crate::model::series::{Sample, Series, SeriesKey};

/// Total framebuffer of the simulated card (what an H100 80GB HBM3 reports), MiB.
pub const SIM_FB_TOTAL_MIB: f64 = 81_559.0;
/// Memory the CUDA context takes, not attributed to a process, MiB.
const CONTEXT_MIB: f64 = 600.0;
/// Model weights each simulated worker holds, MiB.
const WEIGHTS_MIB: f64 = 30_000.0;
/// Cached (releasable) memory each worker grows back to after a cleanup, MiB.
const CACHE_TARGET_MIB: f64 = 12_000.0;
/// How fast the cache grows back, MiB per step.
const CACHE_REGROW_MIB: f64 = 150.0;
/// Memory leaked per step in the `memory_leak` scenario, MiB.
const LEAK_MIB_PER_STEP: f64 = 35.0;
/// Fraction of total memory at which a leaking worker "crashes" and restarts.
const LEAK_RESTART_FRACTION: f64 = 0.97;
/// NVML throttle reason bits: SW thermal slowdown | HW thermal slowdown.
const THERMAL_THROTTLE_BITS: f64 = (0x20 | 0x40) as f64;
/// Enforced power limit of the simulated card, W.
pub const SIM_POWER_LIMIT_W: f64 = 700.0;
/// A training job's life, in steps: idle, ramp up, train (with checkpoints), stopped.
const JOB_CYCLE_STEPS: u64 = 1800;
const JOB_IDLE_STEPS: u64 = 120;
const JOB_RAMP_STEPS: u64 = 30;
const JOB_STOP_AT_STEP: u64 = 1740;
/// While training, a checkpoint every this many steps, lasting `CHECKPOINT_STEPS`.
const CHECKPOINT_EVERY_STEPS: u64 = 360;
const CHECKPOINT_STEPS: u64 = 10;
/// Training steps (from the end of the ramp) during which a straggler falls behind, and
/// the share of its peers' load it keeps meanwhile.
const STRAGGLE_FROM_STEP: u64 = 400;
const STRAGGLE_TO_STEP: u64 = 580;
const STRAGGLE_SHARE: f64 = 0.7;

/// The simulated card's model name (the label says it is simulated).
pub const SIM_MODEL_NAME: &str = "Simulated NVIDIA H100 80GB HBM3";

/// What a simulated GPU does over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Steady inference load around 70 % utilisation.
    Steady,
    /// A worker leaks memory until it nears the total, then restarts (new pid).
    MemoryLeak,
    /// Cooling fails for 120 of every 300 steps: temperature climbs past 87 °C, clocks drop.
    ThermalThrottle,
    /// Light load with a 30-step burst to 100 % every 180 steps.
    LoadSpike,
    /// Steady load with a burst of XID errors (13, 48, 79) and double-bit ECC errors every 240 steps.
    XidBurst,
    /// The life of a training job, every 1 800 steps: 120 idle, a 30-step ramp to ~97 %,
    /// training with a 10-step checkpoint (load drops, memory stays) every 360 steps, a
    /// stop to idle (memory freed) at step 1 740. Run it on every GPU of a host: they move
    /// together, as the GPUs of one job do.
    TrainingJob,
    /// A [`TrainingJob`](Scenario::TrainingJob) GPU that falls behind its peers: 400 steps
    /// into each job's training it keeps only 70 % of the load, for 180 steps.
    Straggler,
}

impl Scenario {
    /// Every scenario, in the order they are documented.
    pub const ALL: [Scenario; 7] = [
        Scenario::Steady,
        Scenario::MemoryLeak,
        Scenario::ThermalThrottle,
        Scenario::LoadSpike,
        Scenario::XidBurst,
        Scenario::TrainingJob,
        Scenario::Straggler,
    ];
}

/// One simulated GPU.
#[derive(Debug)]
struct SimGpu {
    scenario: Scenario,
    rng: SplitMix64,
    /// Steps taken.
    step: u64,
    /// The scenario's fault starts after this many steps; before, the GPU is steady.
    onset: u64,
    /// Releasable cached memory, MiB.
    cache_mib: f64,
    /// Leaked memory, MiB.
    leak_mib: f64,
    temp_c: f64,
    sbe_total: f64,
    dbe_total: f64,
    pid: u32,
    /// Series keys for the device metrics, in `DEVICE_METRICS` order.
    device_series: Vec<Series>,
    /// Series key of the worker's process memory (changes with the pid).
    process_series: Series,
    labels: Vec<(String, String)>,
}

/// Device metrics every step emits, in order.
const DEVICE_METRICS: [&str; 16] = [
    m::GPU_UTIL,
    m::MEM_COPY_UTIL,
    m::FB_USED,
    m::FB_FREE,
    m::FB_TOTAL,
    m::GPU_TEMP,
    m::POWER_USAGE,
    m::POWER_LIMIT,
    m::SM_CLOCK,
    m::MEM_CLOCK,
    m::PCIE_TX,
    m::PCIE_RX,
    m::XID_ERRORS,
    m::THROTTLE_REASONS,
    m::ECC_SBE_VOL,
    m::ECC_DBE_VOL,
];

impl SimGpu {
    fn new(index: usize, hostname: &str, scenario: Scenario, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed ^ (index as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let uuid = format!(
            "GPU-{:08x}-{:04x}-{:04x}-sim0-{:012x}",
            rng.next_u64() as u32,
            rng.next_u64() as u16,
            rng.next_u64() as u16,
            index
        );
        let labels = vec![
            ("gpu".to_string(), index.to_string()),
            ("UUID".to_string(), uuid),
            ("device".to_string(), format!("nvidia{index}")),
            ("modelName".to_string(), SIM_MODEL_NAME.to_string()),
            ("Hostname".to_string(), hostname.to_string()),
        ];
        let device_series = DEVICE_METRICS
            .iter()
            .map(|name| SeriesKey::shared(*name, labels.clone()))
            .collect();
        let pid = 4000 + index as u32 * 100;
        SimGpu {
            scenario,
            rng,
            step: 0,
            onset: 0,
            cache_mib: CACHE_TARGET_MIB,
            leak_mib: 0.0,
            temp_c: 45.0,
            sbe_total: 0.0,
            dbe_total: 0.0,
            pid,
            device_series,
            process_series: process_series(&labels, pid),
            labels,
        }
    }

    /// What `torch.cuda.empty_cache()` gives back: the cache, and what the memory-leak
    /// scenario let the cache creep by (a leak of cached blocks, not of live tensors).
    fn cleanup(&mut self) {
        self.cache_mib = 0.0;
        self.leak_mib = 0.0;
    }

    fn step(&mut self, now_ms: i64, out: &mut Vec<Sample>) {
        let step = self.step;
        self.step += 1;
        let r = &mut self.rng;
        let scenario = if step < self.onset {
            Scenario::Steady
        } else {
            self.scenario
        };
        // Steps into the scenario: its phases start at the onset.
        let k = step - self.onset.min(step);

        let mut util = 70.0 + r.jitter(4.0);
        let mut target_temp = 58.0 + util * 0.12;
        let mut throttle = 0.0;
        let mut sm_clock = 1980.0;
        let mut xid = 0.0;
        let mut extra_cache = 0.0;
        let mut in_job = true;
        match scenario {
            Scenario::Steady => {}
            Scenario::MemoryLeak => {
                self.leak_mib += LEAK_MIB_PER_STEP;
            }
            Scenario::ThermalThrottle => {
                if (100..220).contains(&(k % 300)) {
                    target_temp = 93.0;
                }
            }
            Scenario::LoadSpike => {
                util = 25.0 + r.jitter(3.0);
                if (60..90).contains(&(k % 180)) {
                    util = 100.0 - r.unit() * 1.0;
                    extra_cache = 20_000.0;
                }
                target_temp = 50.0 + util * 0.25;
            }
            Scenario::TrainingJob | Scenario::Straggler => {
                let c = k % JOB_CYCLE_STEPS;
                let train = c.checked_sub(JOB_IDLE_STEPS + JOB_RAMP_STEPS);
                let busy = 97.0 + r.jitter(1.5);
                util = if !(JOB_IDLE_STEPS..JOB_STOP_AT_STEP).contains(&c) {
                    in_job = false;
                    0.0
                } else if let Some(t) = train {
                    if t % CHECKPOINT_EVERY_STEPS >= CHECKPOINT_EVERY_STEPS - CHECKPOINT_STEPS {
                        15.0 + r.jitter(3.0)
                    } else if scenario == Scenario::Straggler
                        && (STRAGGLE_FROM_STEP..STRAGGLE_TO_STEP).contains(&t)
                    {
                        busy * STRAGGLE_SHARE
                    } else {
                        busy
                    }
                } else {
                    busy * (c - JOB_IDLE_STEPS) as f64 / JOB_RAMP_STEPS as f64
                };
                target_temp = 35.0 + util * 0.3;
            }
            Scenario::XidBurst => {
                let phase = k % 240;
                if (200..206).contains(&phase) {
                    xid = [13.0, 48.0, 79.0][(phase % 3) as usize];
                    if xid == 48.0 {
                        self.dbe_total += 1.0;
                    }
                }
            }
        }
        // First-order thermal lag toward the target.
        self.temp_c += (target_temp - self.temp_c) * 0.08 + r.jitter(0.3);
        if self.temp_c >= 87.0 {
            throttle = THERMAL_THROTTLE_BITS;
            sm_clock = 1200.0;
        }
        if r.unit() < 0.002 {
            self.sbe_total += 1.0;
        }
        self.cache_mib = (self.cache_mib + CACHE_REGROW_MIB).min(CACHE_TARGET_MIB);

        if !in_job {
            // No worker: its memory is freed, and it starts afresh with the next job.
            self.cache_mib = 0.0;
        }
        let mut process_mib = if in_job {
            WEIGHTS_MIB + self.cache_mib + extra_cache + self.leak_mib
        } else {
            0.0
        };
        if CONTEXT_MIB + process_mib > SIM_FB_TOTAL_MIB * LEAK_RESTART_FRACTION {
            // The leaking worker dies and is restarted with a new pid.
            self.leak_mib = 0.0;
            self.pid += 1;
            self.process_series = process_series(&self.labels, self.pid);
            process_mib = WEIGHTS_MIB + self.cache_mib + extra_cache;
        }
        let used = (CONTEXT_MIB + process_mib).round();
        let power = 90.0 + util * 5.2 * (sm_clock / 1980.0) + r.jitter(8.0);
        let values = [
            util.round().clamp(0.0, 100.0),
            (util * 0.5 + r.jitter(3.0)).round().clamp(0.0, 100.0),
            used,
            SIM_FB_TOTAL_MIB - used,
            SIM_FB_TOTAL_MIB,
            self.temp_c.round(),
            (power * 1000.0).round() / 1000.0,
            SIM_POWER_LIMIT_W,
            sm_clock,
            2619.0,
            (180_000.0 + util * 2_000.0 + r.jitter(20_000.0)).round(),
            (90_000.0 + util * 1_000.0 + r.jitter(10_000.0)).round(),
            xid,
            throttle,
            self.sbe_total,
            self.dbe_total,
        ];
        for (series, value) in self.device_series.iter().zip(values) {
            out.push(Sample::new(series.clone(), now_ms, value));
        }
        out.push(Sample::new(
            self.process_series.clone(),
            now_ms,
            process_mib.round(),
        ));
    }
}

fn process_series(labels: &[(String, String)], pid: u32) -> Series {
    let mut l = labels.to_vec();
    l.push(("pid".to_string(), pid.to_string()));
    l.push(("process_name".to_string(), "sim-worker".to_string()));
    SeriesKey::shared(m::PROCESS_FB_USED, l)
}

/// A host of simulated GPUs.
#[derive(Debug)]
pub struct SimFleet {
    gpus: Vec<SimGpu>,
}

impl SimFleet {
    /// `gpus` GPUs on `hostname`; GPU i runs `scenarios[i % len]` (steady when empty).
    pub fn new(gpus: usize, hostname: &str, scenarios: &[Scenario], seed: u64) -> Self {
        let gpus = (0..gpus)
            .map(|i| {
                let scenario = if scenarios.is_empty() {
                    Scenario::Steady
                } else {
                    scenarios[i % scenarios.len()]
                };
                SimGpu::new(i, hostname, scenario, seed)
            })
            .collect();
        SimFleet { gpus }
    }

    pub fn gpu_count(&self) -> usize {
        self.gpus.len()
    }

    /// Every GPU runs steady for `steps` steps before its scenario starts.
    pub fn with_fault_onset(mut self, steps: u64) -> Self {
        for gpu in &mut self.gpus {
            gpu.onset = steps;
        }
        self
    }

    /// Advances every GPU one step; samples are stamped `now_ms`.
    pub fn sample(&mut self, now_ms: i64) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.gpus.len() * (DEVICE_METRICS.len() + 1));
        for gpu in &mut self.gpus {
            gpu.step(now_ms, &mut out);
        }
        out
    }

    /// Whether a GPU of the fleet has these `Hostname` and (when given) `gpu` labels.
    pub fn has(&self, host: Option<&str>, gpu: Option<&str>) -> bool {
        let label = |g: &SimGpu, name: &str| {
            let found = g.labels.iter().find(|(k, _)| k == name);
            found.map(|(_, v)| v.clone())
        };
        self.gpus.iter().any(|g| {
            host.is_some_and(|h| label(g, "Hostname").as_deref() == Some(h))
                && gpu.is_none_or(|x| label(g, "gpu").as_deref() == Some(x))
        })
    }

    /// Releases cached memory on the GPUs whose `Hostname` and `gpu` labels `covers`
    /// accepts; the next sample shows it. Returns how many GPUs were cleaned.
    pub fn cleanup(&mut self, covers: impl Fn(&str, &str) -> bool) -> usize {
        let mut n = 0;
        for gpu in &mut self.gpus {
            let label = |name: &str| {
                let found = gpu.labels.iter().find(|(k, _)| k == name);
                found.map_or("", |(_, v)| v.as_str())
            };
            if covers(label("Hostname"), label("gpu")) {
                gpu.cleanup();
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(samples: &[Sample], metric: &str, gpu: &str) -> Vec<f64> {
        samples
            .iter()
            .filter(|s| s.series.name() == metric && s.series.label("gpu") == Some(gpu))
            .map(|s| s.value)
            .collect()
    }

    fn run(fleet: &mut SimFleet, steps: i64) -> Vec<Sample> {
        (0..steps).flat_map(|i| fleet.sample(i * 1000)).collect()
    }

    #[test]
    fn same_seed_gives_the_same_series() {
        let a = run(&mut SimFleet::new(2, "h", &[Scenario::Steady], 1), 50);
        let b = run(&mut SimFleet::new(2, "h", &[Scenario::Steady], 1), 50);
        let c = run(&mut SimFleet::new(2, "h", &[Scenario::Steady], 2), 50);
        let va: Vec<f64> = a.iter().map(|s| s.value).collect();
        assert_eq!(va, b.iter().map(|s| s.value).collect::<Vec<_>>());
        assert_ne!(va, c.iter().map(|s| s.value).collect::<Vec<_>>());
    }

    #[test]
    fn samples_carry_dcgm_names_and_labels() {
        let s = SimFleet::new(1, "host-a", &[], 0).sample(5);
        assert_eq!(s.len(), 17);
        let util = s.iter().find(|x| x.series.name() == m::GPU_UTIL).unwrap();
        for label in ["gpu", "UUID", "device", "modelName", "Hostname"] {
            assert!(util.series.label(label).is_some(), "{label}");
        }
        assert_eq!(util.series.label("Hostname"), Some("host-a"));
        let used = values(&s, m::FB_USED, "0")[0];
        let free = values(&s, m::FB_FREE, "0")[0];
        assert_eq!(used + free, SIM_FB_TOTAL_MIB);
    }

    #[test]
    fn memory_leak_grows_then_restarts_with_a_new_pid() {
        let mut fleet = SimFleet::new(1, "h", &[Scenario::MemoryLeak], 0);
        let samples = run(&mut fleet, 1500);
        let used = values(&samples, m::FB_USED, "0");
        assert!(used[400] > used[100] + 10_000.0);
        let max = used.iter().cloned().fold(0.0, f64::max);
        assert!(max <= SIM_FB_TOTAL_MIB * LEAK_RESTART_FRACTION);
        let pids: std::collections::BTreeSet<&str> = samples
            .iter()
            .filter_map(|s| s.series.label("pid"))
            .collect();
        assert!(pids.len() >= 2, "worker restarted: {pids:?}");
    }

    #[test]
    fn thermal_scenario_throttles_and_drops_clocks() {
        let samples = run(
            &mut SimFleet::new(1, "h", &[Scenario::ThermalThrottle], 0),
            300,
        );
        let temp = values(&samples, m::GPU_TEMP, "0");
        let throttle = values(&samples, m::THROTTLE_REASONS, "0");
        let clocks = values(&samples, m::SM_CLOCK, "0");
        assert!(temp.iter().cloned().fold(0.0, f64::max) >= 87.0);
        assert!(throttle[..100].iter().all(|t| *t == 0.0));
        let i = throttle.iter().position(|t| *t != 0.0).unwrap();
        assert!(clocks[i] < clocks[0]);
    }

    #[test]
    fn spikes_and_xid_bursts_happen_where_the_scenario_says() {
        let samples = run(
            &mut SimFleet::new(2, "h", &[Scenario::LoadSpike, Scenario::XidBurst], 0),
            241,
        );
        let util = values(&samples, m::GPU_UTIL, "0");
        assert!(util[70] >= 99.0 && util[10] < 40.0);
        let xid = values(&samples, m::XID_ERRORS, "1");
        assert!(xid[..200].iter().all(|x| *x == 0.0));
        assert!(xid[200..206].contains(&48.0));
        assert!(values(&samples, m::ECC_DBE_VOL, "1")[240] >= 1.0);
    }

    #[test]
    fn cleanup_releases_cached_memory_on_the_chosen_gpus_only() {
        let mut fleet = SimFleet::new(2, "h", &[Scenario::Steady], 0);
        let before = fleet.sample(0);
        assert_eq!(fleet.cleanup(|_, g| g == "1"), 1);
        let after = fleet.sample(1000);
        let b0 = values(&before, m::FB_USED, "0")[0];
        let b1 = values(&before, m::FB_USED, "1")[0];
        assert_eq!(values(&after, m::FB_USED, "0")[0], b0);
        assert!(values(&after, m::FB_USED, "1")[0] < b1 - 10_000.0);
    }
}
