//! Tests of `workload.rs`.

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
    let mut c = WorkloadCoalescer::new(5_000, 60_000, 10, None);
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

fn no_jobs(_: &Series) -> Option<(i64, JobChange)> {
    None
}

#[test]
fn a_gpu_alone_whose_job_started_or_stopped_is_a_workload_change() {
    let own = OwnSignals {
        job: "fb".into(),
        activity: vec![],
    };
    let mut c = WorkloadCoalescer::new(5_000, 60_000, 10, Some(own));
    let fb = SeriesKey::shared("fb", [("Hostname", "h1"), ("gpu", "0")]);
    c.saw("h1", "power", "0", &series("0"));
    c.saw("h1", "fb", "0", &fb);
    // The job started at 3 s: a firing 2 s before it, one 50 s after it (settling).
    let started = |s: &Series| (s == &fb).then_some((3_000, JobChange::Started));
    hold(&mut c, "0", 1_000);
    assert!(c.decide(6_000, now(&["0"]), started).is_empty());
    hold(&mut c, "0", 53_000);
    assert!(c.decide(58_000, now(&["0"]), started).is_empty());
    let events: Vec<_> = c.events().collect();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].cause, WorkloadCause::JobStarted);
    assert_eq!((events[0].first_ms, events[0].last_ms), (1_000, 53_000));
    assert_eq!(events[0].firings, 2);
    // Past the episode (of the change and of the event's last firing), the same GPU's
    // firing is an anomaly again.
    hold(&mut c, "0", 114_000);
    assert_eq!(c.decide(119_000, now(&["0"]), started).len(), 1);
    // A firing more than the window before the job stopped is an anomaly too.
    hold(&mut c, "0", 200_000);
    let later = |s: &Series| (s == &fb).then_some((206_000, JobChange::Stopped));
    assert_eq!(c.decide(206_000, now(&["0"]), later).len(), 1);
    // One within the window before it is the job stopping.
    hold(&mut c, "0", 300_000);
    let stopped = |s: &Series| (s == &fb).then_some((304_000, JobChange::Stopped));
    assert!(c.decide(305_000, now(&["0"]), stopped).is_empty());
    assert_eq!(c.events().next().unwrap().cause, WorkloadCause::JobStopped);
}

#[test]
fn a_peerless_gpu_whose_utilisation_and_power_move_together_changes_phase() {
    let own = OwnSignals {
        job: "fb".into(),
        activity: vec!["util".into(), "power".into()],
    };
    let util = SeriesKey::shared("util", [("Hostname", "h1"), ("gpu", "0")]);
    let run = |util_now: f64, power_now: f64| {
        let mut c = WorkloadCoalescer::new(5_000, 60_000, 10, Some(own.clone()));
        c.saw("h1", "power", "0", &series("0"));
        c.saw("h1", "util", "0", &util);
        // Before: 97 % and 560 W.
        let before = |s: &Series| Some(if s == &util { 97.0 } else { 560.0 });
        c.hold(
            "h1".into(),
            "power".into(),
            firing("0", 1_000),
            -400.0,
            before,
        );
        let now = |s: &Series| Some(if s == &util { util_now } else { power_now });
        let open = c.decide(6_000, now, no_jobs);
        (open.len(), c.events().map(|e| e.cause).collect::<Vec<_>>())
    };
    // A checkpoint: both drop.
    assert_eq!(run(15.0, 160.0), (0, vec![WorkloadCause::Phase]));
    // Throttling: power falls, utilisation holds: an anomaly.
    assert_eq!(run(97.0, 160.0), (1, vec![]));
    // Moving apart is no phase either.
    assert_eq!(run(100.0, 160.0), (1, vec![]));
}

#[test]
fn most_gpus_of_a_host_firing_together_are_one_workload_event() {
    let mut c = coalescer(8);
    for g in 0..8 {
        assert!(!hold(&mut c, &g.to_string(), 1_000 + g as i64 * 300));
    }
    let all = ["0", "1", "2", "3", "4", "5", "6", "7"];
    let early = c.decide(5_999, now(&all), no_jobs);
    assert!(early.is_empty(), "decided before the window passed");
    assert!(
        c.decide(6_000, now(&all), no_jobs).is_empty(),
        "no GPU opened"
    );
    let events: Vec<_> = c.events().collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].gpus.len(), 8);
    assert_eq!((events[0].first_ms, events[0].last_ms), (1_000, 3_100));
    // The same episode: a late GPU and a second step of the ramp join the event.
    assert!(hold(&mut c, "3", 20_000));
    assert!(c.decide(30_000, now(&all), no_jobs).is_empty());
    assert_eq!(c.events().count(), 1);
    assert_eq!(c.events().next().unwrap().firings, 9);
}

#[test]
fn a_gpu_that_fires_alone_is_opened_as_an_anomaly_after_the_window() {
    let mut c = coalescer(8);
    assert!(!hold(&mut c, "5", 1_000));
    assert!(!hold(&mut c, "5", 2_000));
    assert!(c.decide(5_000, now(&["5"]), no_jobs).is_empty());
    let open = c.decide(6_000, now(&["5"]), no_jobs);
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
    assert!(c
        .decide(6_000, now(&["0", "1", "2", "3", "4"]), no_jobs)
        .is_empty());
    assert_eq!(c.events().next().unwrap().gpus, ["0", "1", "2", "3", "4"]);
    // Three of eight moved: each firing is an anomaly; the ones that only moved are not.
    let mut c = coalescer(8);
    for g in ["1", "2"] {
        hold(&mut c, g, 1_000);
    }
    assert_eq!(c.decide(6_000, now(&["1", "2", "3"]), no_jobs).len(), 2);
    // Two of two: a workload change.
    let mut c = coalescer(2);
    hold(&mut c, "0", 1_000);
    assert!(c.decide(6_000, now(&["0", "1"]), no_jobs).is_empty());
    assert_eq!(c.events().count(), 1);
}

#[test]
fn gpus_going_idle_one_after_another_are_one_workload_event() {
    // A job winding down: GPU 0 drops to near idle (20 W of a 560 W top) first, its
    // peers follow one every few seconds, beyond the 5 s window.
    let idle = |gpu: &str, t: i64| Anomaly {
        value: 20.0,
        ..firing(gpu, t)
    };
    let mut c = coalescer(8);
    c.hold(
        "h1".into(),
        "power".into(),
        idle("0", 1_000),
        -540.0,
        |_| Some(560.0),
    );
    assert!(c.decide(6_000, now(&["0"]), no_jobs).is_empty(), "it waits");
    assert!(c.decide(17_000, now(&["0", "1", "2"]), no_jobs).is_empty());
    assert_eq!(c.events().count(), 0);
    assert!(c
        .decide(21_000, now(&["0", "1", "2", "3"]), no_jobs)
        .is_empty());
    let events: Vec<_> = c.events().collect();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].gpus, ["0", "1", "2", "3"]);
    // A GPU that goes idle alone is an anomaly, STAGGER_MS after it fired.
    let mut c = coalescer(8);
    c.hold(
        "h1".into(),
        "power".into(),
        idle("5", 1_000),
        -540.0,
        |_| Some(560.0),
    );
    assert!(c.decide(30_999, now(&["5"]), no_jobs).is_empty());
    assert_eq!(c.decide(1_000 + STAGGER_MS, now(&["5"]), no_jobs).len(), 1);
    // A drop that leaves the GPU working (160 W) waits only the window.
    let mut c = coalescer(8);
    hold(&mut c, "5", 1_000);
    assert_eq!(c.decide(6_000, now(&["5"]), no_jobs).len(), 1);
}
