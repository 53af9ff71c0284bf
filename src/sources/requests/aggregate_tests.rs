//! Tests of the request aggregator (sibling of aggregate.rs).

use super::*;

#[test]
fn absurd_latencies_and_control_characters_are_refused_by_field() {
    let ok = RequestRecord {
        timestamp: None,
        route: "/v1/generate".into(),
        status: 200,
        latency_ms: 20.0,
        gpu: None,
        trace_id: None,
        service: None,
    };
    assert!(ok.validate().is_ok());
    let huge = RequestRecord {
        latency_ms: 1e308,
        ..ok.clone()
    };
    assert_eq!(huge.validate().unwrap_err().0, "latency_ms");
    let nul = RequestRecord {
        route: "/v1/gen\0erate".into(),
        ..ok.clone()
    };
    assert_eq!(nul.validate().unwrap_err().0, "route");
    let service = RequestRecord {
        service: Some("a\u{1b}[31m".into()),
        ..ok
    };
    assert_eq!(service.validate().unwrap_err().0, "service");
}

#[test]
fn traced_requests_keep_the_newest_records_with_trace_ids() {
    let ring = TracedRequests::new(2);
    let rec = |n: i64, trace: Option<&str>| RequestRecord {
        timestamp: Some(n),
        route: "/v1/generate".into(),
        status: 200,
        latency_ms: n as f64,
        gpu: None,
        trace_id: trace.map(str::to_string),
        service: None,
    };
    let a = "4bf92f3577b34da6a3ce929d0e0e4736";
    let b = "4bf92f3577b34da6a3ce929d0e0e4737";
    ring.extend([
        rec(1, Some(a)),
        rec(2, None),
        rec(3, Some(b)),
        rec(4, Some(a)),
    ]);
    assert_eq!(ring.stats(), (2, 1));
    let all = TracedFilter {
        offset: 0,
        limit: 10,
        ..TracedFilter::default()
    };
    let (found, total) = ring.find(&all);
    assert_eq!(total, 2);
    assert_eq!(
        found.iter().map(|r| r.latency_ms).collect::<Vec<_>>(),
        [4.0, 3.0]
    );
    let (by_id, _) = ring.find(&TracedFilter {
        trace_id: Some(a.to_uppercase()),
        ..all.clone()
    });
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].timestamp, Some(4));
    let (slow, _) = ring.find(&TracedFilter {
        min_latency_ms: Some(3.5),
        ..all
    });
    assert_eq!(slow.len(), 1);
}

fn rec(route: &str, status: u16, latency_ms: f64) -> RequestRecord {
    RequestRecord {
        timestamp: None,
        route: route.into(),
        status,
        latency_ms,
        gpu: None,
        trace_id: None,
        service: Some("llm".into()),
    }
}

fn agg() -> RequestAggregator {
    RequestAggregator::new(
        AggregatorLimits {
            window_ms: 60_000,
            max_recent: 1000,
            max_series: 3,
            max_routes_per_service: 100,
        },
        0,
    )
}

#[test]
fn a_service_exploding_its_routes_takes_only_its_share() {
    let mut a = RequestAggregator::new(
        AggregatorLimits {
            window_ms: 60_000,
            max_recent: 1000,
            max_series: 100,
            max_routes_per_service: 3,
        },
        0,
    );
    let ids: Vec<RequestRecord> = (0..50)
        .map(|i| rec(&format!("/item/{i}"), 200, 1.0))
        .collect();
    a.record(7, &ids);
    // Three routes of its own, the rest under __other__: four series, nothing lost.
    assert_eq!(a.route_count(), 4);
    assert_eq!(a.folded_total, 47);
    assert_eq!(a.last_folded, Some(("llm".to_string(), 7)));
    let counted: f64 = a
        .samples(8)
        .iter()
        .filter(|s| s.series.name() == "http_requests_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(counted, 50.0);
    // Another service still gets its own routes.
    let mut other = rec("/health", 200, 1.0);
    other.service = Some("gateway".into());
    a.record(9, &[other]);
    assert_eq!(a.route_count(), 5);
    assert_eq!(a.folded_total, 47);
}

#[test]
fn validation_names_the_field() {
    assert_eq!(rec("/a", 700, 1.0).validate().unwrap_err().0, "status");
    assert_eq!(rec("", 200, 1.0).validate().unwrap_err().0, "route");
    assert_eq!(rec("/a", 200, -1.0).validate().unwrap_err().0, "latency_ms");
    let mut r = rec("/a", 200, 1.0);
    r.trace_id = Some("xyz".into());
    assert_eq!(r.validate().unwrap_err().0, "trace_id");
    r.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    assert!(r.validate().is_ok());
}

#[test]
fn gpu_may_be_a_string_or_a_number() {
    let r: RequestRecord =
        serde_json::from_str(r#"{"route":"/a","status":200,"latency_ms":3,"gpu":2}"#).unwrap();
    assert_eq!(r.gpu.as_deref(), Some("2"));
}

#[test]
fn percentiles_rate_and_error_rate_over_the_window() {
    let mut a = agg();
    let batch: Vec<RequestRecord> = (1..=100)
        .map(|i| rec("/gen", if i % 10 == 0 { 503 } else { 200 }, i as f64))
        .collect();
    a.record(10_000, &batch);
    let s = a.summary(10_000);
    assert_eq!(s.count, 100);
    assert_eq!(s.latency_ms.p50, Some(50.0));
    assert_eq!(s.latency_ms.p95, Some(95.0));
    assert_eq!(s.latency_ms.p99, Some(99.0));
    assert_eq!(s.error_rate, Some(0.1));
    assert_eq!(s.rate_per_s, 10.0); // 100 records in the 10 s Pulse has been up
                                    // A window later they are gone.
    let s = a.summary(70_001);
    assert_eq!((s.count, s.error_rate, s.latency_ms.p50), (0, None, None));
}

#[test]
fn histogram_is_cumulative_and_cardinality_is_bounded() {
    let mut a = agg();
    a.record(
        0,
        &[
            rec("/a", 200, 3.0),
            rec("/a", 200, 70.0),
            rec("/a", 200, 20_000.0),
        ],
    );
    let samples = a.samples(1);
    let bucket = |le: &str| {
        samples
            .iter()
            .find(|s| s.series.name().ends_with("_bucket") && s.series.label("le") == Some(le))
            .unwrap()
            .value
    };
    assert_eq!(
        (bucket("0.005"), bucket("0.1"), bucket("10"), bucket("+Inf")),
        (1.0, 2.0, 2.0, 3.0)
    );
    a.record(
        0,
        &[
            rec("/b", 200, 1.0),
            rec("/c", 200, 1.0),
            rec("/d", 200, 1.0),
            rec("/e", 404, 1.0),
        ],
    );
    // three real, then one per status for the rest
    assert_eq!(a.route_count(), 5);
    assert_eq!(a.folded_total, 2);
}

#[test]
fn pulse_own_requests_count_but_stay_out_of_the_summary() {
    let mut a = agg();
    let mut r = rec("/api/phase4/status", 200, 1.0);
    r.service = Some(PULSE_SERVICE.into());
    a.record(0, &[r]);
    assert_eq!(a.summary(0).count, 0);
    assert_eq!(a.recorded_total, 1);
}

#[test]
fn self_buffer_counts_what_it_cannot_hold() {
    let b = SelfMetricsBuffer::new(1);
    b.push(rec("/a", 200, 1.0));
    b.push(rec("/a", 200, 1.0));
    let (records, dropped) = b.drain();
    assert_eq!((records.len(), dropped), (1, 1));
}
