use super::*;
use crate::model::series::SeriesKey;

fn settings() -> PeerSettings {
    PeerSettings {
        watch: vec![],
        tolerance: 0.15,
        hold_ms: 5_000,
    }
}

/// Eight GPUs of one host at 0.5 s; `value(gpu, t_ms)` gives each one's reading. Returns
/// the divergences opened, with the time they were reported.
fn run(gpus: usize, seconds: i64, value: impl Fn(usize, i64) -> f64) -> Vec<(i64, Anomaly)> {
    let mut monitor = PeerMonitor::new(settings());
    let members: Vec<MemberRef> = (0..gpus)
        .map(|g| {
            let gpu = g.to_string();
            let series = SeriesKey::shared(
                "DCGM_FI_DEV_GPU_UTIL",
                [("Hostname", "host-a"), ("gpu", gpu.as_str())],
            );
            monitor.join("host-a", "DCGM_FI_DEV_GPU_UTIL", &gpu, &series)
        })
        .collect();
    let mut opened = Vec::new();
    for step in 0..seconds * 2 {
        let t = step * 500;
        for (g, m) in members.iter().enumerate() {
            monitor.observe(*m, t, value(g, t));
        }
        opened.extend(monitor.check(t).into_iter().map(|a| (t, a)));
    }
    opened
}

/// A busy GPU's utilisation: 90-98 %, a little different on every GPU and every sample.
fn busy(g: usize, t: i64) -> f64 {
    93.0 + ((g as i64 * 7 + t / 500 * 13) % 11) as f64 * 0.5
}

#[test]
fn a_straggler_is_reported_once_with_its_peers() {
    // GPU 3 drops 30 % at 10 min and stays there.
    let onset = 600_000;
    let opened = run(8, 1200, |g, t| {
        if g == 3 && t >= onset {
            busy(g, t) * 0.7
        } else {
            busy(g, t)
        }
    });
    assert_eq!(opened.len(), 1, "{opened:?}");
    let (at, a) = &opened[0];
    assert!(
        *at - onset <= 10_000,
        "reported {} ms after the onset",
        at - onset
    );
    assert_eq!(a.reason, Reason::PeerDivergence);
    assert_eq!(a.series.label("gpu"), Some("3"));
    let peers = a.peers.expect("the peers are named");
    assert_eq!(peers.count, 7);
    assert!(peers.low > 90.0 && peers.high < 100.0, "{peers:?}");
    assert!(a.value < a.expected_low, "{a:?}");
    assert!(a.detail.contains("GPU 3"), "{}", a.detail);
}

#[test]
fn the_whole_host_moving_together_is_not_a_divergence() {
    // Every GPU: busy, a 20 s checkpoint dip every 6 minutes (each GPU a second apart),
    // a stop to idle and a new job.
    let opened = run(8, 3600, |g, t| {
        let t_gpu = t - g as i64 * 1000;
        let in_job = (t_gpu / 1000) % 1800 < 1700;
        let checkpoint = (t_gpu / 1000) % 360 < 20;
        if !in_job {
            0.0
        } else if checkpoint {
            busy(g, t) * 0.3
        } else {
            busy(g, t)
        }
    });
    assert!(opened.is_empty(), "{opened:?}");
}

#[test]
fn a_gpu_that_always_differs_has_its_usual_place() {
    // GPU 0 (rank 0) always holds 30 % more memory than the others: that is its place.
    let opened = run(
        4,
        1200,
        |g, t| if g == 0 { busy(g, t) * 1.3 } else { busy(g, t) },
    );
    assert!(opened.is_empty(), "{opened:?}");
}

#[test]
fn two_gpus_have_no_peers_to_be_judged_by() {
    let opened = run(2, 1200, |g, t| {
        if g == 1 && t > 600_000 {
            10.0
        } else {
            busy(g, t)
        }
    });
    assert!(opened.is_empty());
}

#[test]
fn a_gpu_stopping_first_waits_for_its_host_to_follow() {
    // GPUs stop one after another from 10 min, 4 s apart (28 s for all eight): no
    // divergence, though GPU 0 sat at idle beside seven busy peers for longer than the hold.
    let onset = 600_000;
    let staggered = run(8, 900, |g, t| {
        if t >= onset + g as i64 * 4_000 {
            1.0
        } else {
            busy(g, t)
        }
    });
    assert!(staggered.is_empty(), "{staggered:?}");
    // GPU 0 stops alone: reported, once the 30 s wait for the others is over.
    let alone = run(8, 900, |g, t| {
        if g == 0 && t >= onset {
            1.0
        } else {
            busy(g, t)
        }
    });
    assert_eq!(alone.len(), 1, "{alone:?}");
    let waited = alone[0].0 - onset;
    assert!(
        (30_000..=40_000).contains(&waited),
        "reported {waited} ms after"
    );
}
