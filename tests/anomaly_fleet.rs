//! The anomaly detector on the simulated fleet: how quiet it is when the fleet is steady,
//! and how soon each fault scenario is flagged after it starts. The figures printed here
//! are the ones in the README ("Anomaly detection").

use pulse::config::pipeline::AnomalyConfig;
use pulse::processors::anomaly::{Anomaly, AnomalyEngine, AnomalyFilter};
use pulse::sources::gpu_simulated::fleet::{Scenario, SimFleet};

/// Steady steps before a scenario's fault starts: well past the detector's warm-up.
const ONSET: i64 = 600;

fn engine() -> AnomalyEngine {
    AnomalyEngine::new(AnomalyConfig::default().settings())
}

/// Runs 4 GPUs of `scenario` for `steps` one-second steps; returns the anomalies, oldest
/// first, and the number of samples scored.
fn run(scenario: Scenario, seed: u64, steps: i64, onset: i64) -> (Vec<Anomaly>, u64) {
    let mut fleet = SimFleet::new(4, "sim", &[scenario], seed).with_fault_onset(onset as u64);
    let mut e = engine();
    for step in 0..steps {
        e.process(&fleet.sample(step * 1000));
    }
    let mut all = e.list(&AnomalyFilter {
        limit: usize::MAX,
        ..Default::default()
    });
    all.reverse();
    (all, e.counts().scored)
}

#[test]
fn steady_fleet_is_quiet() {
    let mut events = 0;
    let mut samples = 0;
    for seed in 1..=3 {
        let (anomalies, scored) = run(Scenario::Steady, seed, 3600, 0);
        for a in &anomalies {
            println!(
                "seed {seed}: t={}s {} gpu {} value {} expected {:.1}..{:.1} ({:?})",
                a.first_ms / 1000,
                a.series.name(),
                a.series.label("gpu").unwrap_or("-"),
                a.value,
                a.expected_low,
                a.expected_high,
                a.reason
            );
        }
        events += anomalies.len();
        samples += scored;
    }
    let per_100k = events as f64 * 100_000.0 / samples as f64;
    println!("steady: {events} anomalies in {samples} samples = {per_100k:.1} per 100k samples");
    // The target is 1 per 100k and is missed (README, "Anomaly detection"): the steady
    // fleet's noise is uniform and independent, and its rare extreme-to-extreme steps read
    // as never-seen transitions. This guards against getting worse than measured (5.6).
    assert!(per_100k <= 7.0, "{per_100k:.1} anomalies per 100k samples");
}

#[test]
fn each_fault_is_flagged_soon_after_it_starts() {
    // (scenario, steps from the onset to the fault, the longest delay accepted in seconds)
    let cases = [
        // Utilisation jumps to 100 % 60 steps in (after dropping to light load at the onset).
        (Scenario::LoadSpike, 60, 5),
        // XID errors 200 steps in.
        (Scenario::XidBurst, 200, 5),
        // Cooling fails 100 steps in; the temperature climbs with a lag.
        (Scenario::ThermalThrottle, 100, 60),
        // The leak grows from the onset, 20 MiB a step.
        (Scenario::MemoryLeak, 0, 120),
    ];
    for (scenario, fault_at, max_delay_s) in cases {
        let start_ms = (ONSET + fault_at) * 1000;
        for seed in 1..=3 {
            let (anomalies, _) = run(scenario, seed, ONSET + 600, ONSET);
            for gpu in ["0", "1", "2", "3"] {
                let Some(first) = anomalies
                    .iter()
                    .find(|a| a.first_ms >= start_ms && a.series.label("gpu") == Some(gpu))
                else {
                    panic!("{scenario:?} seed {seed} gpu {gpu}: no anomaly after the fault");
                };
                let delay = (first.first_ms - start_ms) / 1000;
                println!(
                    "{scenario:?} seed {seed} gpu {gpu}: flagged {delay}s after the fault on {} ({:?}, value {})",
                    first.series.name(), first.reason, first.value
                );
                assert!(delay <= max_delay_s, "{scenario:?} gpu {gpu}: {delay}s");
            }
        }
    }
}
