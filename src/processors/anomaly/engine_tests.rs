//! Tests of `engine.rs`.

use super::*;
use crate::model::selector::Matcher;

fn settings() -> EngineSettings {
    EngineSettings {
        watch: vec![Selector::metric("temp"), Selector::metric("errors_total")],
        threshold: 0.78,
        detector: DetectorConfig {
            warmup_samples: 20,
            rest_samples: 10,
            ..DetectorConfig::default()
        },
        max_series: 2,
        max_anomalies: 3,
        gap_intervals: 5.0,
        workload_window_ms: 5_000,
        peers: PeerSettings {
            watch: vec![Selector::metric("temp")],
            tolerance: 0.15,
            hold_ms: 5_000,
        },
    }
}

fn s(name: &str, gpu: &str) -> Series {
    SeriesKey::shared(name, [("gpu", gpu)])
}

fn steady(i: i64) -> f64 {
    50.0 + (i % 7) as f64
}

#[test]
fn a_gpu_series_counts_no_coarse_scale_in_the_detector_bytes() {
    let mut e = AnomalyEngine::new(settings());
    let gpu = SeriesKey::shared("temp", [("gpu", "0"), ("Hostname", "h")]);
    e.process(&[Sample::new(gpu, 1000, 50.0)]);
    let gpu_bytes = e.detector_bytes();
    // No coarse table (512 counts) and ring (256 values), 3 KiB at least.
    assert!(
        gpu_bytes <= Detector::MEMORY_BYTES - 3 * 1024,
        "{gpu_bytes}"
    );
    e.process(&[Sample::new(s("temp", "1"), 1000, 50.0)]);
    assert_eq!(e.detector_bytes(), gpu_bytes + Detector::MEMORY_BYTES);
}

#[test]
fn scores_watched_series_only_and_labels_the_score_series() {
    let mut e = AnomalyEngine::new(settings());
    let batch = vec![
        Sample::new(s("temp", "0"), 1000, 50.0),
        Sample::new(s("other", "0"), 1000, 1.0),
        Sample::new(s(SCORE_METRIC, "0"), 1000, 1.0),
    ];
    let (scores, _) = e.process(&batch);
    assert_eq!(scores.len(), 1);
    let score = &scores[0].series;
    assert_eq!(score.name(), SCORE_METRIC);
    assert_eq!(score.label("metric"), Some("temp"));
    assert_eq!(score.label("gpu"), Some("0"));
    assert_eq!(e.watched_series(), 1);
}

#[test]
fn a_spike_opens_one_anomaly_and_a_sustained_fault_merges_into_it() {
    let mut e = AnomalyEngine::new(settings());
    let series = s("temp", "0");
    for i in 0..200 {
        e.process(&[Sample::new(series.clone(), i * 1000, steady(i))]);
    }
    assert!(e
        .list(&AnomalyFilter {
            limit: 10,
            ..Default::default()
        })
        .is_empty());
    // A fault that keeps leaping to new highs (each step half again the last value, far
    // beyond the series' usual step): it fires again and again, and is one anomaly.
    let mut opened = Vec::new();
    for i in 200..260 {
        let (_, ids) = e.process(&[Sample::new(
            series.clone(),
            i * 1000,
            100.0 * 1.5f64.powi(i as i32 - 200),
        )]);
        opened.extend(ids);
    }
    assert_eq!(opened.len(), 1);
    let all = e.list(&AnomalyFilter {
        limit: 10,
        ..Default::default()
    });
    assert_eq!(all.len(), 1);
    let a = &all[0];
    assert_eq!(a.first_ms, 200_000);
    assert_eq!(a.reason, Reason::NewHigh);
    assert!(a.count > 1, "{a:?}");
    assert!(a.value > a.expected_high);
    assert!(a.last_ms > a.first_ms);
}

#[test]
fn counters_are_scored_as_rates_and_resets_are_not_anomalies() {
    let mut e = AnomalyEngine::new(settings());
    let series = s("errors_total", "0");
    let mut total = 0.0;
    let mut fired = 0;
    for i in 0..300 {
        total += 5.0 + (i % 3) as f64;
        if i == 150 {
            total = 2.0; // the process restarted
        }
        let (scores, ids) = e.process(&[Sample::new(series.clone(), i * 1000, total)]);
        fired += ids.len();
        if i == 0 {
            assert!(scores.is_empty(), "a counter's first sample has no rate");
        }
    }
    assert_eq!(e.counts().resets, 1);
    assert_eq!(
        fired, 0,
        "a reset must not look like a collapse of the rate"
    );
}

#[test]
fn gaps_break_the_context_instead_of_firing() {
    let mut e = AnomalyEngine::new(settings());
    let series = s("temp", "0");
    for i in 0..200 {
        e.process(&[Sample::new(series.clone(), i * 1000, steady(i))]);
    }
    // Ten minutes of silence, then the usual values.
    let mut fired = 0;
    for i in 800..900 {
        fired += e
            .process(&[Sample::new(series.clone(), i * 1000, steady(i))])
            .1
            .len();
    }
    assert_eq!(e.counts().gaps, 1);
    assert_eq!(fired, 0);
}

#[test]
fn silent_series_are_forgotten_and_free_their_slot() {
    let mut e = AnomalyEngine::new(settings());
    e.process(&[Sample::new(s("temp", "0"), 0, 1.0)]);
    e.process(&[Sample::new(s("temp", "1"), 0, 1.0)]);
    assert_eq!(e.watched_series(), 2);
    // GPU 0 keeps reporting for 11 minutes; GPU 1 went away.
    for i in 1..=66 {
        e.process(&[Sample::new(s("temp", "0"), i * 10_000, 1.0)]);
    }
    assert_eq!(e.watched_series(), 1);
    assert_eq!(e.counts().evicted, 1);
    e.process(&[Sample::new(s("temp", "2"), 670_000, 1.0)]);
    assert_eq!(e.watched_series(), 2, "the freed slot is taken");
    assert_eq!(e.counts().refused, 0);
}

#[test]
fn limits_hold_and_out_of_order_samples_are_skipped() {
    let mut e = AnomalyEngine::new(settings());
    for g in 0..4 {
        e.process(&[Sample::new(s("temp", &g.to_string()), 1000, 1.0)]);
    }
    assert_eq!(e.watched_series(), 2);
    assert_eq!(e.counts().refused, 2);
    e.process(&[Sample::new(s("temp", "0"), 500, 1.0)]);
    assert_eq!(e.counts().skipped, 1);

    // Anomalies beyond max_anomalies push the oldest out.
    let mut e = AnomalyEngine::new(EngineSettings {
        max_series: 10,
        ..settings()
    });
    for g in 0..5 {
        let series = s("temp", &g.to_string());
        for i in 0..100 {
            e.process(&[Sample::new(series.clone(), i * 1000, steady(i))]);
        }
        e.process(&[Sample::new(series.clone(), 100_000, 1e6)]);
    }
    let all = e.list(&AnomalyFilter {
        limit: 10,
        ..Default::default()
    });
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].series.label("gpu"), Some("4"), "newest first");
    let only_gpu_3 = AnomalyFilter {
        limit: 10,
        matchers: Selector::all().with(Matcher::eq("gpu", "3")),
        ..Default::default()
    };
    assert_eq!(e.list(&only_gpu_3).len(), 1);
    let strict = AnomalyFilter {
        limit: 10,
        min_score: Some(1.01),
        ..Default::default()
    };
    assert!(e.list(&strict).is_empty());
}
