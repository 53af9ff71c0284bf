//! The anomaly detector on the simulated fleet: how quiet it is when the fleet is steady,
//! how soon a fault on one GPU of a host is flagged after it starts, that a change on every
//! GPU of a host at once is one workload change, not an anomaly per GPU (a training job's
//! start, checkpoints and stop), and that a GPU falling behind its peers is flagged. The figures
//! printed here are the ones in docs/anomaly-detection.md.

use pulse::config::pipeline::AnomalyConfig;
use pulse::processors::anomaly::workload::WorkloadCause;
use pulse::processors::anomaly::{Anomaly, AnomalyEngine, AnomalyFilter};
use pulse::{Scenario, SimFleet};

/// Steady steps before a scenario's fault starts: well past the detector's warm-up.
const ONSET: i64 = 600;

fn engine() -> AnomalyEngine {
    AnomalyEngine::new(AnomalyConfig::default().settings())
}

/// Runs 4 GPUs (the scenarios in turn) for `steps` one-second steps; returns the anomalies,
/// oldest first, and the number of samples scored.
fn run(scenarios: &[Scenario], seed: u64, steps: i64, onset: i64) -> (Vec<Anomaly>, u64) {
    run_engine(scenarios, seed, steps, onset).0
}

fn run_engine(
    scenarios: &[Scenario],
    seed: u64,
    steps: i64,
    onset: i64,
) -> ((Vec<Anomaly>, u64), AnomalyEngine) {
    let mut fleet = SimFleet::new(4, "sim", scenarios, seed).with_fault_onset(onset as u64);
    let mut e = engine();
    for step in 0..steps {
        e.process(&fleet.sample(step * 1000));
    }
    let mut all = e.list(&AnomalyFilter {
        limit: usize::MAX,
        ..Default::default()
    });
    all.reverse();
    let scored = e.counts().scored;
    ((all, scored), e)
}

#[test]
fn steady_fleet_is_quiet() {
    let mut events = 0;
    let mut samples = 0;
    for seed in 1..=3 {
        let (anomalies, scored) = run(&[Scenario::Steady], seed, 3600, 0);
        show(&format!("seed {seed}"), &anomalies);
        events += anomalies.len();
        samples += scored;
    }
    let per_100k = events as f64 * 100_000.0 / samples as f64;
    println!("steady: {events} anomalies in {samples} samples = {per_100k:.1} per 100k samples");
    // The target is 1 per 100k (docs/anomaly-detection.md): the steady fleet's noise is
    // uniform and independent, and its rare extreme-to-extreme steps read as never-seen
    // transitions. Measured: 0.3 (1.3 before blips, back by the time they were decided,
    // were dropped; 5.6 before noise firings on most GPUs of a host at once were folded
    // into workload changes, 2.0 before new extremes reached by ordinary steps were taken
    // for drift).
    assert!(per_100k <= 1.0, "{per_100k:.1} anomalies per 100k samples");
}

#[test]
fn a_fault_on_one_gpu_is_flagged_soon_after_it_starts() {
    // The faulty GPU's firing waits for the workload window (its peers do not follow).
    let window_s = AnomalyConfig::default().workload_window_ms as i64 / 1000;
    // (scenario, steps from the onset to the fault, the longest delay accepted in seconds,
    // from the fault to the anomaly being opened)
    let cases = [
        // Utilisation jumps to 100 % 60 steps in (after dropping to light load at the onset).
        (Scenario::LoadSpike, 60, 10),
        // XID errors 200 steps in: a fault counter, opened at once.
        (Scenario::XidBurst, 200, 5),
        // Cooling fails 100 steps in; the temperature climbs with a lag.
        (Scenario::ThermalThrottle, 100, 60),
        // The leak grows from the onset, 35 MiB a step.
        (Scenario::MemoryLeak, 0, 120),
    ];
    for (scenario, fault_at, max_delay_s) in cases {
        let start_ms = (ONSET + fault_at) * 1000;
        for seed in 1..=3 {
            // GPU 0 has the fault; its three peers stay steady.
            let steady = Scenario::Steady;
            let (anomalies, _) = run(
                &[scenario, steady, steady, steady],
                seed,
                ONSET + 600,
                ONSET,
            );
            let Some(first) = anomalies
                .iter()
                .find(|a| a.first_ms >= start_ms && a.series.label("gpu") == Some("0"))
            else {
                panic!("{scenario:?} seed {seed}: no anomaly after the fault");
            };
            let held = if first.is_rate { 0 } else { window_s };
            let delay = (first.first_ms - start_ms) / 1000 + held;
            println!(
                "{scenario:?} seed {seed}: flagged {delay}s after the fault on {} ({:?}, value {})",
                first.series.name(),
                first.reason,
                first.value
            );
            assert!(delay <= max_delay_s, "{scenario:?}: {delay}s");
        }
    }
}

#[test]
fn a_burst_on_every_gpu_of_a_host_is_one_workload_change_per_metric() {
    // Every GPU bursts to 100 % at the same steps: the workload changed, nothing is wrong.
    let ((anomalies, _), engine) = run_engine(&[Scenario::LoadSpike], 1, ONSET + 600, ONSET);
    let util = "DCGM_FI_DEV_GPU_UTIL";
    // Bursts run 30 steps from 60 steps after the onset, every 180; none of their firings,
    // up or back down, is an anomaly. (A rare noise firing between bursts may be: the
    // steady fleet's rate, see `steady_fleet_is_quiet`.)
    let in_burst: Vec<_> = anomalies
        .iter()
        .filter(|a| a.series.name() == util && a.first_ms >= ONSET * 1000)
        .filter(|a| (a.first_ms / 1000 - ONSET - 60).rem_euclid(180) <= 35)
        .collect();
    assert!(in_burst.is_empty(), "{in_burst:#?}");
    let events: Vec<_> = engine
        .workload_events()
        .filter(|e| e.metric == util)
        .collect();
    assert!(!events.is_empty(), "no workload change recorded");
    for e in &events {
        assert_eq!(e.host, "sim");
        assert!(
            e.gpus.len() >= 2 && 2 * e.gpus.len() >= e.host_gpus,
            "{e:?}"
        );
    }
    // Three bursts in 600 steps (one every 180): at most one event per burst.
    assert!(events.len() <= 4, "{events:#?}");
}

/// Prints the anomalies of a run, one per line.
fn show(label: &str, anomalies: &[Anomaly]) {
    for a in anomalies {
        println!(
            "{label}: t={}s..{}s {} gpu {} value {:.1} expected {:.1}..{:.1} ({:?}) {}",
            a.first_ms / 1000,
            a.last_ms / 1000,
            a.series.name(),
            a.series.label("gpu").unwrap_or("-"),
            a.value,
            a.expected_low,
            a.expected_high,
            a.reason,
            a.detail
        );
    }
}

#[test]
fn the_life_of_a_training_job_is_not_an_anomaly() {
    // Two jobs an hour on every GPU of the host: idle, ramp, checkpoints, stop, a new job.
    let (mut total, mut samples) = (0, 0);
    for seed in 1..=3 {
        let ((anomalies, scored), engine) = run_engine(&[Scenario::TrainingJob], seed, 3600, 0);
        samples += scored;
        show(&format!("seed {seed}"), &anomalies);
        let changes = engine.counts().workload_changes;
        println!(
            "seed {seed}: {} anomalies in {scored} samples, {changes} workload changes",
            anomalies.len()
        );
        assert!(
            changes > 0,
            "the jobs' starts, checkpoints and stops are workload changes"
        );
        // Each job checkpoints every 6 minutes (four times): its rhythm is reported once
        // per job and metric, for the whole host, when the fourth checkpoint ends.
        let rhythms: Vec<_> = engine
            .workload_events()
            .filter(|w| w.cause == WorkloadCause::Rhythm)
            .collect();
        for r in &rhythms {
            println!(
                "seed {seed}: {} {} {:?}: {}",
                r.last_ms, r.metric, r.gpus, r.detail
            );
        }
        for metric in ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE"] {
            let at: Vec<i64> = rhythms
                .iter()
                .filter(|r| r.metric == metric)
                .map(|r| r.last_ms / 1000)
                .collect();
            assert_eq!(at.len(), 2, "{metric}: one per job: {rhythms:#?}");
            assert!(
                at.iter().all(|t| t % 1800 >= 1590 && t % 1800 < 1600),
                "{at:?}"
            );
        }
        assert!(rhythms.iter().all(|r| r.gpus.len() == 4
            && r.detail
                .starts_with("drops below half its level every ~6 min")));
        total += anomalies.len();
    }
    // The target is none. Measured: none in three hours (one, a temperature 2 °C above
    // every value seen as it settles during training, before slight departures were
    // dropped); this guards the steady-training target of 1 per 100 k
    // (docs/anomaly-detection.md).
    let per_100k = total as f64 * 1e5 / samples as f64;
    println!("{total} anomalies in {samples} samples: {per_100k:.2} per 100 k");
    assert!(per_100k <= 1.0, "{per_100k:.2} anomalies per 100 k samples");
}

#[test]
fn a_straggler_is_flagged_as_unlike_its_peers() {
    use pulse::processors::anomaly::Reason;
    // GPU 0 falls to 70 % of its peers' load 550 steps into each 1 800-step job.
    let onsets_s = [550, 1800 + 550];
    for seed in 1..=3 {
        let job = Scenario::TrainingJob;
        let ((anomalies, _), engine) =
            run_engine(&[Scenario::Straggler, job, job, job], seed, 3600, 0);
        show(&format!("seed {seed}"), &anomalies);
        for onset in onsets_s {
            let flagged = anomalies
                .iter()
                .find(|a| {
                    a.reason == Reason::PeerDivergence
                        && a.series.label("gpu") == Some("0")
                        && a.last_ms >= onset * 1000
                })
                .unwrap_or_else(|| panic!("seed {seed}: the straggle at {onset}s was not flagged"));
            // A divergence is opened when it is reported: its last_ms is that moment.
            let delay_s = (flagged.last_ms - onset * 1000) as f64 / 1000.0;
            println!(
                "seed {seed}: straggle at {onset}s flagged after {delay_s}s: {}",
                flagged.detail
            );
            assert!(delay_s <= 10.0, "flagged {delay_s}s after the onset");
            let peers = flagged.peers.expect("the peers are named");
            assert_eq!(peers.count, 3);
            assert!(flagged.value < peers.low, "{flagged:?}");
        }
        let others: Vec<_> = anomalies
            .iter()
            .filter(|a| a.series.label("gpu") != Some("0"))
            .collect();
        assert!(others.is_empty(), "the peers are fine: {others:#?}");
        assert_eq!(
            engine.counts().peer_divergences,
            2 * 2,
            "utilisation and power, per straggle"
        );
    }
}

#[test]
fn a_single_gpu_host_s_jobs_starting_and_stopping_are_workload_changes() {
    // One GPU, no peers to compare with: its job's start and stop are told by its
    // framebuffer going from idle to in use and back, its checkpoints by utilisation and
    // power dropping together (two jobs an hour). Measured: none in 75 597 samples; 2
    // (temperatures 2 °C above every value seen, in training) before slight departures
    // were dropped, and seed 1 had 6 before the GPU's own signals were read.
    let (mut total, mut samples) = (0, 0);
    for seed in 1..=3 {
        let mut fleet = SimFleet::new(1, "solo", &[Scenario::TrainingJob], seed);
        let mut e = engine();
        for step in 0..3600 {
            e.process(&fleet.sample(step * 1000));
        }
        let anomalies = e.list(&AnomalyFilter {
            limit: usize::MAX,
            ..Default::default()
        });
        show(&format!("solo seed {seed}"), &anomalies);
        let causes: Vec<WorkloadCause> = e.workload_events().map(|w| w.cause).collect();
        println!(
            "solo seed {seed}: {} anomalies in {} samples, workload changes {causes:?}",
            anomalies.len(),
            e.counts().scored
        );
        assert!(causes.contains(&WorkloadCause::JobStarted), "{causes:?}");
        assert!(causes.contains(&WorkloadCause::JobStopped), "{causes:?}");
        // Checkpoints: utilisation and power drop together, the framebuffer stays.
        assert!(causes.contains(&WorkloadCause::Phase), "{causes:?}");
        total += anomalies.len();
        samples += e.counts().scored;
    }
    let per_100k = total as f64 * 1e5 / samples as f64;
    println!("solo: {total} anomalies in {samples} samples: {per_100k:.2} per 100 k");
    assert!(per_100k <= 1.0, "{per_100k:.2} anomalies per 100 k samples");
}
