use std::num::NonZeroUsize;

use super::config::{SamplingRatio, TracingConfig};
use super::store::{TraceFilter, TraceStatus};
use super::*;

fn config(max_traces: usize, max_bytes: usize, max_spans: usize) -> TracingConfig {
    TracingConfig {
        max_traces_per_second: 0,
        store_max_traces: NonZeroUsize::new(max_traces).unwrap(),
        store_max_bytes: NonZeroUsize::new(max_bytes).unwrap(),
        max_spans_per_trace: NonZeroUsize::new(max_spans).unwrap(),
        ..TracingConfig::default()
    }
}

fn all_traces() -> TraceFilter {
    TraceFilter {
        offset: 0,
        limit: usize::MAX,
        ..TraceFilter::default()
    }
}

#[test]
fn a_root_and_its_children_come_back_as_a_tree_in_order() {
    let t = Telemetry::start(&config(10, 1 << 20, 100), None).unwrap();
    let root = t.root("pipeline.batch", SpanKind::Internal, None).unwrap();
    root.set("pulse.samples", 3i64);
    let store = root.child("window_store.ingest", SpanKind::Internal);
    let proc_ = store.child("processor.anomaly_detector", SpanKind::Internal);
    proc_.event("anomaly opened", vec![KeyValue::new("series", "x")]);
    proc_.end();
    let sink = store.child("sink.jsonl", SpanKind::Internal);
    sink.error("disk full");
    drop((sink, proc_, store));
    let id = root.trace_id();
    // The root is still open: only the children are stored.
    assert_eq!(t.store().unwrap().get(id).unwrap().spans.len(), 3);
    drop(root);

    let d = t.store().unwrap().get(id).unwrap();
    let shape: Vec<(usize, &str)> = d.spans.iter().map(|s| (s.depth, s.name.as_str())).collect();
    assert_eq!(
        shape,
        [
            (0, "pipeline.batch"),
            (1, "window_store.ingest"),
            (2, "processor.anomaly_detector"),
            (2, "sink.jsonl"),
        ]
    );
    assert_eq!(d.summary.root_name, "pipeline.batch");
    assert_eq!(d.summary.span_count, 4);
    assert_eq!(d.summary.status, TraceStatus::Error);
    assert!(d.spans[0].parent_span_id.is_none());
    assert_eq!(
        d.spans[1].parent_span_id.as_ref(),
        Some(&d.spans[0].span_id)
    );
    assert_eq!(d.spans[0].attributes["pulse.samples"], 3);
    assert_eq!(d.spans[2].events[0].name, "anomaly opened");
    assert_eq!(d.spans[3].status, "error");
    assert_eq!(d.spans[3].status_message.as_deref(), Some("disk full"));
}

#[test]
fn the_store_keeps_the_newest_traces_within_its_count_and_byte_bounds() {
    let t = Telemetry::start(&config(3, 1 << 20, 100), None).unwrap();
    let ids: Vec<TraceId> = (0..5)
        .map(|_| {
            let r = t.root("r", SpanKind::Internal, None).unwrap();
            r.trace_id()
        })
        .collect();
    let store = t.store().unwrap();
    assert!(store.get(ids[0]).is_none() && store.get(ids[1]).is_none());
    assert!(ids[2..].iter().all(|id| store.get(*id).is_some()));
    let s = store.stats();
    assert_eq!(
        (s.traces, s.spans, s.counters.traces_evicted_total),
        (3, 3, 2)
    );

    // Bytes: spans with a large attribute push the oldest out before the count does.
    let t = Telemetry::start(&config(1000, 4096, 100), None).unwrap();
    for _ in 0..10 {
        let r = t.root("big", SpanKind::Internal, None).unwrap();
        r.set("payload", "x".repeat(1000));
    }
    let s = t.store().unwrap().stats();
    assert!(s.bytes <= 4096, "{s:?}");
    assert!(s.traces >= 2 && s.traces < 4, "{s:?}");
    assert_eq!(s.counters.traces_evicted_total as usize + s.traces, 10);
}

#[test]
fn spans_past_the_per_trace_limit_are_counted_not_kept() {
    let t = Telemetry::start(&config(10, 1 << 20, 3), None).unwrap();
    let root = t.root("r", SpanKind::Internal, None).unwrap();
    for _ in 0..5 {
        root.child("c", SpanKind::Internal);
    }
    drop(root);
    let s = t.store().unwrap().stats();
    assert_eq!((s.spans, s.counters.spans_dropped_total), (3, 3));
}

#[test]
fn a_sampled_traceparent_is_continued_and_an_unsampled_one_is_not() {
    let t = Telemetry::start(&config(10, 1 << 20, 10), None).unwrap();
    let sampled =
        parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let span = t.root("POST /x", SpanKind::Server, Some(&sampled)).unwrap();
    assert_eq!(span.trace_id(), sampled.trace_id());
    let id = span.trace_id();
    drop(span);
    let d = t.store().unwrap().get(id).unwrap();
    assert!(d.summary.remote_parent);
    assert_eq!(
        d.spans[0].parent_span_id.as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert!(d.spans[0].parent_is_remote);

    let unsampled =
        parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-00").unwrap();
    assert!(t
        .root("POST /x", SpanKind::Server, Some(&unsampled))
        .is_none());
}

#[test]
fn ratio_zero_and_tracing_off_create_nothing() {
    let mut c = config(10, 1 << 20, 10);
    c.sampling_ratio = SamplingRatio(0.0);
    let t = Telemetry::start(&c, None).unwrap();
    assert!(t.root("r", SpanKind::Internal, None).is_none());
    assert_eq!(t.store().unwrap().stats().spans, 0);
    c.enabled = false;
    let off = Telemetry::start(&c, None).unwrap();
    assert!(!off.is_on() && off.root("r", SpanKind::Internal, None).is_none());
}

#[test]
fn listing_filters_by_name_duration_status_and_time() {
    let t = Telemetry::start(&config(10, 1 << 20, 10), None).unwrap();
    let a = t
        .root("GET /api/phase4/status", SpanKind::Server, None)
        .unwrap();
    a.error("boom");
    drop(a);
    let b = t.root("pipeline.batch", SpanKind::Internal, None).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    drop(b);
    let store = t.store().unwrap();
    let names = |f: TraceFilter| -> Vec<String> {
        store.list(&f).0.into_iter().map(|s| s.root_name).collect()
    };
    assert_eq!(names(all_traces()).len(), 2);
    let f = |g: fn(&mut TraceFilter)| {
        let mut f = all_traces();
        g(&mut f);
        f
    };
    assert_eq!(
        names(f(|f| f.name = Some("phase4".into()))),
        ["GET /api/phase4/status"]
    );
    assert_eq!(
        names(f(|f| f.min_duration_ms = Some(15.0))),
        ["pipeline.batch"]
    );
    assert_eq!(
        names(f(|f| f.status = Some(TraceStatus::Error))),
        ["GET /api/phase4/status"]
    );
    assert!(names(f(|f| f.since_ms = Some(i64::MAX))).is_empty());
    let (one, total) = store.list(&TraceFilter {
        offset: 0,
        limit: 1,
        ..TraceFilter::default()
    });
    assert_eq!((one.len(), total), (1, 2));
    assert_eq!(one[0].root_name, "pipeline.batch", "newest first");
}

#[test]
fn traceparent_parsing_follows_w3c() {
    let ok = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    assert!(ok.is_sampled() && ok.is_remote());
    assert_eq!(
        ok.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    // A later version may add fields.
    assert!(
        parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz").is_ok()
    );
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    ] {
        assert!(parse_traceparent(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn trace_ids_are_checked() {
    assert!(parse_trace_id("4bf92f3577b34da6a3ce929d0e0e4736").is_ok());
    assert!(parse_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736").is_ok());
    for bad in [
        "",
        "xyz",
        "00000000000000000000000000000000",
        "4bf92f3577b34da6a3ce929d0e0e47360",
    ] {
        let e = parse_trace_id(bad).unwrap_err();
        assert!(e.contains("not a trace id"), "{e}");
    }
}
