//! Tests of `rhythm.rs`.

use super::*;

const MIN: i64 = 60 * 1000;

/// A training GPU's power at 1 s: 550 W (±10) with a 20 s drop to 160 W every `every_ms`,
/// from `from_ms` for `for_ms`.
fn checkpoints(from_ms: i64, for_ms: i64, every_ms: i64) -> impl Iterator<Item = (i64, f64)> {
    (0..for_ms / 1000).map(move |s| {
        let t = from_ms + s * 1000;
        let noise = ((s * 7919) % 21 - 10) as f64;
        let v = if (t - from_ms) % every_ms >= every_ms - 20_000 {
            160.0
        } else {
            550.0
        };
        (t, v + noise)
    })
}

#[test]
fn checkpoints_at_a_steady_interval_are_a_rhythm() {
    let mut d = DipTracker::default();
    let found: Vec<(i64, Rhythm)> = checkpoints(0, 40 * MIN, 6 * MIN)
        .filter_map(|(t, v)| d.observe(t, v).map(|r| (t, r)))
        .collect();
    // Dips start at 5:40, 11:40, 17:40, ...; the fourth ends at 24:00.
    let (t, first) = found[0];
    assert_eq!(t, 24 * MIN, "{found:?}");
    assert_eq!(first.period_ms, 6 * MIN);
    assert_eq!(first.since_ms, 5 * MIN + 40_000);
    // Every later checkpoint confirms it.
    assert_eq!(found.len(), 3, "{found:?}");
}

#[test]
fn irregular_dips_a_stop_and_short_rhythms_are_not() {
    // Dips at irregular intervals (2, 7, 3 min apart).
    let mut d = DipTracker::default();
    let mut t = 0;
    let mut found = Vec::new();
    for gap in [5, 2, 7, 3, 6] {
        for s in 0..gap * 60 {
            let v = if s >= gap * 60 - 15 { 100.0 } else { 550.0 };
            found.extend(d.observe(t, v));
            t += 1000;
        }
    }
    assert!(found.is_empty(), "{found:?}");

    // A job stopping (power idle for 10 min) between checkpoints breaks the count.
    let mut d = DipTracker::default();
    let stop = (0..600).map(|s| (21 * MIN + s * 1000, 90.0));
    let found: Vec<Rhythm> = checkpoints(0, 21 * MIN, 6 * MIN)
        .chain(stop)
        .chain(checkpoints(31 * MIN, 13 * MIN, 6 * MIN))
        .filter_map(|(t, v)| d.observe(t, v))
        .collect();
    assert!(found.is_empty(), "{found:?}");

    // Checkpoints with a 1 s drop between them (sampled finely) are still a rhythm.
    let mut d = DipTracker::default();
    let found = checkpoints(0, 25 * MIN, 6 * MIN)
        .map(|(t, v)| (t, if t % (2 * MIN) == 30_000 { 10.0 } else { v }))
        .filter_map(|(t, v)| d.observe(t, v))
        .count();
    assert_eq!(found, 1);

    // A 20 s dip every 40 s (a bursty load) is faster than any checkpointing.
    let mut d = DipTracker::default();
    let found: Vec<Rhythm> = checkpoints(0, 10 * MIN, 40_000)
        .filter_map(|(t, v)| d.observe(t, v))
        .collect();
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn a_host_reports_its_rhythm_once_when_most_of_its_gpus_share_it() {
    let mut book = Rhythms::default();
    let r = Rhythm {
        period_ms: 6 * MIN,
        since_ms: 5 * MIN,
    };
    // Four GPUs: one is not most of them, two are half.
    book.found("h", "power", "0", r, 24 * MIN);
    assert!(book.report("h", "power", 24 * MIN, 4).is_none());
    book.found("h", "power", "1", r, 24 * MIN + 1000);
    // A GPU with another period does not count.
    let other = Rhythm {
        period_ms: 10 * MIN,
        ..r
    };
    book.found("h", "power", "2", other, 24 * MIN + 1000);
    let event = book
        .report("h", "power", 24 * MIN + 1000, 4)
        .expect("two of four GPUs");
    assert_eq!(event.gpus, ["0", "1"]);
    assert_eq!(event.cause, WorkloadCause::Rhythm);
    assert_eq!(event.first_ms, 5 * MIN);
    assert_eq!(
        event.detail,
        "drops below half its level every ~6 min (checkpoints or evaluation)"
    );
    // The others joining, and later checkpoints, are the same rhythm.
    for (gpu, t) in [("2", 25), ("3", 25), ("0", 30), ("1", 30)] {
        book.found("h", "power", gpu, r, t * MIN);
        assert!(book.report("h", "power", t * MIN, 4).is_none());
    }
    // Lost for longer than two periods (the job stopped), then back: a new report.
    book.found("h", "power", "0", r, 50 * MIN);
    assert!(book.report("h", "power", 50 * MIN, 4).is_none());
    book.found("h", "power", "1", r, 50 * MIN);
    assert!(book.report("h", "power", 50 * MIN, 4).is_some());
    // One GPU alone on its host reports its own; a host with none has nothing.
    book.found("solo", "power", "0", r, MIN);
    assert!(book.report("solo", "power", MIN, 1).is_some());
    assert!(book.report("other", "power", MIN, 1).is_none());
    // Hosts gone for longer than `FORGET_MS` are forgotten.
    assert_eq!(book.hosts.len(), 2);
    book.forget_old(50 * MIN + FORGET_MS);
    assert_eq!(book.hosts.len(), 1, "h confirmed at 50 min stays");
    book.forget_old(50 * MIN + FORGET_MS + 1);
    assert_eq!(book.hosts.len(), 0);
}
