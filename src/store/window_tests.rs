//! Tests of `window.rs`.

use super::*;
use crate::model::series::SeriesKey;

fn store(max_points: usize, max_age_ms: i64, max_series: usize) -> WindowStore {
    WindowStore::new(Retention {
        max_points,
        max_age_ms,
        max_series,
    })
}

fn s(name: &str, gpu: &str) -> Series {
    SeriesKey::shared(name, [("gpu", gpu)])
}

#[test]
fn keeps_at_most_max_points_newest_first_out_last() {
    let mut w = store(3, 1_000_000, 10);
    let a = s("m", "0");
    let batch: Vec<Sample> = (0..5)
        .map(|i| Sample::new(a.clone(), i * 10, i as f64))
        .collect();
    assert_eq!(w.ingest(&batch).stored, 5);
    let got = w.select(&Selector::all(), 0, 100);
    assert_eq!(got[0].points, vec![(20, 2.0), (30, 3.0), (40, 4.0)]);
    assert_eq!(
        w.select_last(&Selector::metric("m"), 0, 35),
        vec![(a.clone(), 30, 3.0)]
    );
    assert!(w.select_last(&Selector::metric("m"), 41, 100).is_empty());
    assert_eq!(w.point_count(), 3);
}

#[test]
fn ingest_names_each_metric_it_stored_once_and_reuses_ids_of_names_gone() {
    let mut w = store(100, 1_000, 10);
    let names = |w: &WindowStore| {
        let mut v: Vec<String> = w.stored_names().map(str::to_string).collect();
        v.sort();
        v
    };
    let (a0, a1, b0) = (s("a", "0"), s("a", "1"), s("b", "0"));
    w.ingest(&[
        Sample::new(a0.clone(), 10, 1.0),
        Sample::new(b0.clone(), 10, 1.0),
        Sample::new(a1.clone(), 10, 1.0),
    ]);
    assert_eq!(names(&w), ["a", "b"]);
    w.ingest(&[Sample::new(b0.clone(), 20, 1.0)]);
    assert_eq!(names(&w), ["b"]);
    // `a` goes away with its series; `c` takes its id and is named as `c`.
    w.remove_where(|k| k.name() == "a");
    w.ingest(&[Sample::new(s("c", "0"), 30, 1.0)]);
    assert_eq!(names(&w), ["c"]);
    assert_eq!(w.names.len(), 2, "the id of `a` was reused");
    w.ingest(&[Sample::new(a0, 40, 1.0), Sample::new(b0, 40, 1.0)]);
    assert_eq!(names(&w), ["a", "b"]);
    assert_eq!(w.select(&Selector::metric("a"), 0, 100).len(), 1);
}

#[test]
fn a_long_run_keeps_the_newest_points_contiguous_and_bounded() {
    let mut w = store(100, 1_000_000_000, 10);
    let a = s("m", "0");
    for i in 0..10_000 {
        w.ingest(&[Sample::new(a.clone(), i, i as f64)]);
    }
    let slices = w.select_slices(&Selector::all(), 0, i64::MAX);
    let points = slices[0].1;
    assert_eq!(points.len(), 100);
    assert_eq!((points[0].0, points[99].0), (9_900, 9_999));
    assert_eq!(w.point_count(), 100);
    let ring = w.series.values().next().unwrap();
    // The dead prefix is cut off at a quarter of max_points, and the buffer never grows
    // past max_points + max_points / 4 + 1 (doubling would have given it 256).
    assert!(
        ring.points.capacity() <= 126,
        "capacity {}",
        ring.points.capacity()
    );
    assert_eq!(
        w.select_slices(&Selector::all(), 9_950, 9_960)[0].1.len(),
        11
    );
}

#[test]
fn a_ring_takes_its_final_size_in_one_step_once_a_doubling_would_reach_an_eighth() {
    let mut w = store(1_800, 1_000_000_000, 10);
    let a = s("m", "0");
    let mut capacities = vec![];
    for i in 0..5_000 {
        w.ingest(&[Sample::new(a.clone(), i, i as f64)]);
        let cap = w.series.values().next().unwrap().points.capacity();
        if capacities.last() != Some(&cap) {
            capacities.push(cap);
        }
    }
    // 4, 8, ... 64, 128, then 2 251 (not 256, 512, 1 024, 2 048 and later 2 251).
    assert_eq!(capacities, [4, 8, 16, 32, 64, 128, 1_800 + 450 + 1]);
}

#[test]
fn a_sparse_series_held_by_age_keeps_a_buffer_the_size_of_its_window() {
    // A forecast series: one point a minute, 30 minutes kept, in a store sized for 1 s
    // sampling (1 800 points). It holds about 30 live points; its dead prefix must not
    // pile up toward a quarter of max_points (450), which took its ring to 129 points
    // after 2 h 9 min and then to the 2 251-point buffer of a dense series.
    let minute = 60_000;
    let mut w = store(1_800, 30 * minute, 10);
    let a = s("pulse_forecast", "0");
    let mut capacities = vec![];
    for i in 0..600 {
        let now = i * minute;
        w.ingest(&[Sample::new(a.clone(), now, i as f64)]);
        w.evict(now);
        let ring = w.series.values().next().unwrap();
        assert!(ring.len() <= 31, "live points {}", ring.len());
        if capacities.last() != Some(&ring.points.capacity()) {
            capacities.push(ring.points.capacity());
        }
    }
    // Settled at its 17th point, 17 minutes in (30 points a window and a quarter, 38,
    // twice, and one), not doubled to 32 then and to 64 at 33 minutes.
    assert_eq!(capacities, [4, 8, 16, 38 + 38 + 1]);
    assert_eq!(w.point_count(), 31);
}

#[test]
fn a_series_sampled_every_10_s_takes_a_final_buffer_for_its_cadence_not_for_1_s() {
    // 30 minutes kept at 10 s: 180 live points, in a store sized for 1 s (1 800).
    let mut w = store(1_800, 1_800_000, 10);
    let a = s("m", "0");
    let mut capacities = vec![];
    for i in 0..3_600 {
        let now = i * 10_000;
        w.ingest(&[Sample::new(a.clone(), now, i as f64)]);
        w.evict(now);
        let cap = w.series.values().next().unwrap().points.capacity();
        if capacities.last() != Some(&cap) {
            capacities.push(cap);
        }
    }
    // 180 live points and a quarter more for a cadence that wavers (225), and as many
    // again for the dead prefix `compact` allows: 451, taken once (within two
    // doublings of 64), never 2 251.
    assert_eq!(capacities, [4, 8, 16, 32, 64, 225 + 225 + 1]);
    assert_eq!(w.point_count(), 181);
}

#[test]
fn a_series_that_turns_denser_grows_to_the_dense_buffer() {
    let mut w = store(1_800, 1_800_000, 10);
    let a = s("m", "0");
    // Ten minutes at 10 s, then 1 s.
    let times = (0..60)
        .map(|i| i * 10_000)
        .chain((0..3_000).map(|i| 600_000 + i * 1_000));
    for now in times {
        w.ingest(&[Sample::new(a.clone(), now, 1.0)]);
        w.evict(now);
    }
    let ring = w.series.values().next().unwrap();
    assert_eq!(ring.len(), 1_800);
    assert!(ring.points.capacity() <= 1_800 + 450 + 1);
}

#[test]
fn staleness_markers_are_counted_until_they_fall_out() {
    let mut w = store(2, 1_000_000, 10);
    let a = s("m", "0");
    let marked = |w: &WindowStore| w.select_marked(&Selector::all(), 0, i64::MAX)[0].2;
    w.ingest(&[
        Sample::new(a.clone(), 1, 1.0),
        Sample::new(a.clone(), 2, crate::promql::stale_nan()),
    ]);
    assert!(marked(&w));
    w.ingest(&[Sample::new(a.clone(), 3, 3.0)]);
    assert!(marked(&w), "still in the window");
    w.ingest(&[Sample::new(a.clone(), 4, 4.0)]);
    assert!(!marked(&w), "fell out");
}

#[test]
fn evicts_by_age_and_forgets_empty_series() {
    let mut w = store(100, 50, 10);
    w.ingest(&[
        Sample::new(s("m", "0"), 0, 1.0),
        Sample::new(s("m", "1"), 40, 2.0),
        Sample::new(s("m", "1"), 90, 3.0),
    ]);
    assert_eq!(w.evict(100), 1);
    assert_eq!(w.series_count(), 1);
    assert_eq!(w.point_count(), 1);
    assert_eq!(w.latest(&Selector::all(), 0)[0].2, 3.0);
}

#[test]
fn refuses_new_series_past_the_limit_and_out_of_order_points_and_counts_them() {
    let mut w = store(100, 1000, 1);
    let out = w.ingest(&[
        Sample::new(s("m", "0"), 10, 1.0),
        Sample::new(s("m", "1"), 10, 1.0),
        Sample::new(s("m", "0"), 5, 9.0),
        Sample::new(s("m", "0"), 10, 2.0),
    ]);
    assert_eq!(
        out,
        IngestOutcome {
            stored: 1,
            refused_series_limit: 1,
            refused_out_of_order: 1,
            replaced: 1
        }
    );
    assert_eq!(w.latest(&Selector::all(), 0)[0].2, 2.0);
}

#[test]
fn stats_cover_the_range_and_skip_nan() {
    let mut w = store(100, 1000, 10);
    let a = s("m", "0");
    w.ingest(&[
        Sample::new(a.clone(), 1, 4.0),
        Sample::new(a.clone(), 2, f64::NAN),
        Sample::new(a.clone(), 3, 2.0),
        Sample::new(a.clone(), 4, 9.0),
    ]);
    let st = &w.stats(&Selector::metric("m"), 1, 3)[0];
    assert_eq!((st.min, st.max, st.avg, st.count), (2.0, 4.0, 3.0, 2));
    assert_eq!(st.latest, (3, 2.0));
    assert!(w.stats(&Selector::metric("other"), 0, 10).is_empty());
    assert!(w.latest(&Selector::all(), 5).is_empty());
}

#[test]
fn past_its_memory_budget_new_series_are_refused_and_held_ones_keep_storing() {
    let mut w = store(100, 1_000, 100);
    let one = |s: &Series, t: i64| [Sample::new(s.clone(), t, 1.0)];
    w.ingest(&one(&s("m", "0"), 0));
    // Room for the one series held, not for another.
    w.set_max_bytes(w.bytes());
    let out = w.ingest(&one(&s("m", "1"), 0));
    assert_eq!((out.stored, out.refused_series_limit), (0, 1));
    assert_eq!(w.refused_for_memory(), 1);
    // The series held grows past the budget: it keeps storing.
    for t in 1..50 {
        assert_eq!(w.ingest(&one(&s("m", "0"), t)).stored, 1);
    }
    assert!(w.bytes() > w.max_bytes());
    // Its points age out and it goes: the memory is free for a new series.
    assert_eq!(w.evict(10_000), 1);
    assert_eq!(w.bytes(), 0);
    assert_eq!(w.ingest(&one(&s("m", "1"), 10_000)).stored, 1);
    // No budget: no refusal.
    w.set_max_bytes(0);
    assert_eq!(w.ingest(&one(&s("m", "2"), 10_000)).stored, 1);
}
