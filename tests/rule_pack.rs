//! The default rule pack on the simulated fleet, one hour of simulated time at the pack's
//! 1 s interval, through the same group evaluation the rule engine runs: the steady
//! scenario fires no alert, and each fault scenario fires the alerts made for it (and no
//! others).

use std::collections::BTreeSet;

use pulse::config::pipeline::WindowConfig;
use pulse::rules::alerting::Transition;
use pulse::rules::group::GroupState;
use pulse::rules::{parse_file, BUILTIN_PACK, BUILTIN_PACK_NAME};
use pulse::WindowStore;
use pulse::{Scenario, SimFleet};

const HOUR_S: i64 = 3600;
const START_MS: i64 = 1_800_000_000_000;

/// Names of the alerts that fired, and how many times alerts went firing.
fn run(scenario: Scenario) -> (BTreeSet<String>, usize) {
    let mut store = WindowStore::new(WindowConfig::default().retention());
    let mut groups: Vec<GroupState> = parse_file(BUILTIN_PACK_NAME, BUILTIN_PACK)
        .unwrap()
        .into_iter()
        .map(GroupState::new)
        .collect();
    let mut fleet = SimFleet::new(1, "sim-host", &[scenario], 42);
    let mut fired = BTreeSet::new();
    let mut firings = 0;
    for step in 0..HOUR_S {
        let t = START_MS + step * 1000;
        store.ingest(&fleet.sample(t));
        if step % 60 == 0 {
            store.evict(t);
        }
        for g in &mut groups {
            let outcome = g.eval(&mut store, t);
            assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
            for tr in outcome.transitions {
                if let Transition::Firing(a) = tr {
                    fired.insert(a.labels["alertname"].clone());
                    firings += 1;
                }
            }
        }
    }
    (fired, firings)
}

fn names(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn steady_load_fires_no_alert_in_an_hour() {
    let (fired, firings) = run(Scenario::Steady);
    assert_eq!(firings, 0, "{fired:?}");
}

#[test]
fn a_memory_leak_fires_gpu_memory_high() {
    assert_eq!(run(Scenario::MemoryLeak).0, names(&["GpuMemoryHigh"]));
}

#[test]
fn thermal_throttling_fires_temperature_and_throttling_alerts() {
    assert_eq!(
        run(Scenario::ThermalThrottle).0,
        names(&["GpuTemperatureHigh", "GpuThermalThrottling"])
    );
}

#[test]
fn load_spikes_fire_power_near_limit() {
    assert_eq!(run(Scenario::LoadSpike).0, names(&["GpuPowerNearLimit"]));
}

#[test]
fn xid_bursts_fire_xid_and_ecc_alerts() {
    assert_eq!(
        run(Scenario::XidBurst).0,
        names(&["GpuEccDoubleBitErrors", "GpuXidError"])
    );
}
