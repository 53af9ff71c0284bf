//! Unit tests of evaluation; agreement with Prometheus itself is checked by the promtool
//! test files in `tests/promtool/`.

use super::*;
use crate::model::series::{Sample, SeriesKey};
use crate::store::window::{Retention, WindowStore};

/// (metric name, labels, points) of one test series.
type TestSeries<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn store(series: &[TestSeries<'_>]) -> WindowStore {
    let mut w = WindowStore::new(Retention {
        max_points: 10_000,
        max_age_ms: i64::MAX / 4,
        max_series: 10_000,
    });
    for (name, labels, points) in series {
        let key = SeriesKey::shared(*name, labels.iter().copied());
        let samples: Vec<Sample> = points
            .iter()
            .map(|(t, v)| Sample::new(key.clone(), *t, *v))
            .collect();
        w.ingest(&samples);
    }
    w
}

fn eval(w: &WindowStore, q: &str, t_ms: i64) -> Value {
    let query = parse(q).unwrap();
    Evaluator::new(w, t_ms).eval(&query.expr).unwrap()
}

fn vector(v: Value) -> Vec<(Labels, f64)> {
    match v {
        Value::Vector(mut v) => {
            v.sort_by(|a, b| a.labels.cmp(&b.labels));
            v.into_iter().map(|s| (s.labels, s.value)).collect()
        }
        other => panic!("not a vector: {other:?}"),
    }
}

#[test]
fn unsupported_parts_are_refused_by_name() {
    // Native histograms (Pulse stores floats) and Prometheus 3's additions.
    assert!(parse("histogram_count(up)")
        .unwrap_err()
        .contains("`histogram_count` is not supported"));
    assert!(parse("sort_by_label(up, \"job\")")
        .unwrap_err()
        .contains("sort_by_label"));
    for ok in [
        "count_values(\"x\", up)",
        "label_replace(up, \"a\", \"b\", \"c\", \"d\")",
        "rate(up[5m:1m])",
        "up @ 100",
        "holt_winters(up[5m], 0.5, 0.5)",
    ] {
        assert!(parse(ok).is_ok(), "{ok}");
    }
    assert!(parse("sum(rate(http_requests_total[5m])) by (route) > 3").is_ok());
}

#[test]
fn selectors_look_back_five_minutes_and_respect_staleness() {
    let w = store(&[
        ("up", &[("job", "a")], &[(0, 1.0), (60_000, 2.0)]),
        ("up", &[("job", "b")], &[(0, 1.0), (60_000, stale_nan())]),
    ]);
    let v = vector(eval(&w, "up", 120_000));
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].1, 2.0);
    // The lookback is inclusive at both ends (Prometheus 2.x).
    assert_eq!(vector(eval(&w, "up", 60_000 + LOOKBACK_MS)).len(), 1);
    assert!(vector(eval(&w, "up", 60_001 + LOOKBACK_MS)).is_empty());
    assert_eq!(vector(eval(&w, "up offset 1m", 60_000))[0].1, 1.0);
    assert_eq!(vector(eval(&w, r#"up{job=~"a|b"}"#, 120_000)).len(), 1);
}

#[test]
fn rate_extrapolates_like_prometheus() {
    // A counter growing 10 per minute, sampled every minute.
    let pts: Vec<(i64, f64)> = (0..=10).map(|i| (i * 60_000, i as f64 * 10.0)).collect();
    let w = store(&[("c", &[], &pts)]);
    let r = vector(eval(&w, "rate(c[5m])", 600_000));
    assert!((r[0].1 - 10.0 / 60.0).abs() < 1e-12, "{r:?}");
    let inc = vector(eval(&w, "increase(c[5m])", 600_000));
    assert!((inc[0].1 - 50.0).abs() < 1e-9, "{inc:?}");
    assert!(!inc[0].0.contains_key(NAME));
}

#[test]
fn aggregation_and_vector_matching() {
    let w = store(&[
        ("m", &[("gpu", "0"), ("host", "a")], &[(0, 1.0)]),
        ("m", &[("gpu", "1"), ("host", "a")], &[(0, 3.0)]),
        ("m", &[("gpu", "0"), ("host", "b")], &[(0, 5.0)]),
        ("total", &[("host", "a")], &[(0, 10.0)]),
        ("total", &[("host", "b")], &[(0, 20.0)]),
    ]);
    let v = vector(eval(&w, "sum by (host) (m)", 0));
    assert_eq!(v.iter().map(|s| s.1).collect::<Vec<_>>(), vec![4.0, 5.0]);
    let v = vector(eval(&w, "m / on(host) group_left total", 0));
    assert_eq!(v.len(), 3);
    assert!(v.iter().any(|(l, x)| &*l["gpu"] == "1" && *x == 0.3));
    let v = vector(eval(&w, "topk(1, m)", 0));
    assert_eq!(&*v[0].0[NAME], "m");
    assert_eq!(v[0].1, 5.0);
    let v = vector(eval(&w, "m > bool 2", 0));
    assert_eq!(v.iter().map(|s| s.1).sum::<f64>(), 2.0);
    assert!(Evaluator::new(&w, 0)
        .eval(&parse("m / total").unwrap().expr)
        .is_ok());
    let err = Evaluator::new(&w, 0).eval(&parse("m + on(host) total").unwrap().expr);
    assert!(err.unwrap_err().0.contains("many-to-one"));
}

#[test]
fn histogram_quantile_interpolates_within_the_bucket() {
    let le = |le: &'static str, v: f64| ("h_bucket", vec![("le", le)], v);
    let series = [
        le("0.1", 10.0),
        le("0.5", 60.0),
        le("1", 90.0),
        le("+Inf", 100.0),
    ];
    let mut w = WindowStore::new(Retention {
        max_points: 10,
        max_age_ms: i64::MAX / 4,
        max_series: 10,
    });
    for (name, labels, v) in series {
        w.ingest(&[Sample::new(SeriesKey::shared(name, labels), 0, v)]);
    }
    let v = vector(eval(&w, "histogram_quantile(0.5, h_bucket)", 0));
    assert!((v[0].1 - 0.42).abs() < 1e-12, "{v:?}");
    let v = vector(eval(&w, "histogram_quantile(0.99, h_bucket)", 0));
    assert_eq!(v[0].1, 1.0);
}

#[test]
fn numbers_a_duration_cannot_hold_are_refused_instead_of_panicking() {
    // promql-parser panics on these (Duration::from_secs_f64); the first is what the
    // fuzzer found.
    for q in [
        "sum_over_time(m[33333333333333333333333333333333333333333333333333333333316])",
        "m[1e300]",
        "rate(m[5m])[1e300:1]",
        "rate(m[5m])[5:1e300]",
        "m offset inf",
        "m offset -1e300",
        "m offset + nan",
    ] {
        let err = parse(q).err().unwrap_or_else(|| panic!("{q} parsed"));
        assert!(err.contains("is not a duration"), "{q}: {err}");
    }
    // Numbers as durations that fit, and infinities where they are values, still parse.
    for q in [
        "m[5]",
        "m[0x10]",
        "m offset 5",
        "m offset -5",
        "m > inf",
        "m + -inf",
        "m[5m] offset 1.5",
    ] {
        assert!(parse(q).is_ok(), "{q}: {:?}", parse(q).err());
    }
}

#[test]
fn regex_matchers_are_anchored_and_read_go_braces_as_prometheus_does() {
    let w = store(&[
        ("up", &[("job", "a{b}")], &[(0, 1.0)]),
        ("up", &[("job", "xa{b}")], &[(0, 2.0)]),
        ("up", &[("job", "aa")], &[(0, 3.0)]),
    ]);
    // `{b}` is not a repetition in Go's syntax: a literal, as in Prometheus.
    let v = vector(eval(&w, r#"up{job=~"a{b}"}"#, 1_000));
    assert_eq!(v.iter().map(|s| s.1).collect::<Vec<_>>(), [1.0]);
    let v = vector(eval(&w, r#"up{job=~"a{2}"}"#, 1_000));
    assert_eq!(v.iter().map(|s| s.1).collect::<Vec<_>>(), [3.0]);
    let v = vector(eval(&w, r#"up{job!~"a.*"}"#, 1_000));
    assert_eq!(v.iter().map(|s| s.1).collect::<Vec<_>>(), [2.0]);
    // A regex no syntax reads is the parser's error, with the regex named.
    assert!(parse(r#"up{job=~"a("}"#).unwrap_err().contains("a("));
}

#[test]
fn a_regex_too_large_to_compile_is_refused_with_its_limit_and_a_list_of_names_is_not() {
    for text in [
        r#"up{job=~"(a{1000}){1000}"}"#,
        r#"up{job!~"x{0,1000000}"}"#,
        r#"rate(up{job=~"[a-z]{1000000}"}[5m])"#,
    ] {
        let err = parse(text).unwrap_err();
        assert!(
            err.contains("too large") && err.contains("4096 KiB"),
            "{text}: {err}"
        );
    }
    // A thousand pod names, as a user might list them (about 2 MiB compiled): accepted, and
    // it matches.
    let pods: Vec<String> = (0..1000)
        .map(|i| format!("inference-server-{i:04}-7f9c"))
        .collect();
    let w = store(&[("up", &[("pod", "inference-server-0999-7f9c")], &[(0, 1.0)])]);
    let v = vector(eval(
        &w,
        &format!(r#"up{{pod=~"{}"}}"#, pods.join("|")),
        1_000,
    ));
    assert_eq!(v.len(), 1);
}

#[test]
fn the_regexes_the_size_check_skips_compile_well_under_the_limit() {
    // Near the skip threshold, with the bodies that compile to the most states per
    // unit of the bound: wide Unicode ranges, case folding, nested repetitions.
    for pattern in [
        r"[\x{80}-\x{10FFFF}]{390}",
        r"[^a]{190}",
        r"(?i)[a-z]{100}",
        r"((.{4}){5}){5}",
        r"(\d|\s){4}",
        r"(abc|def|[0-9]+){160}",
    ] {
        let hir = regex_syntax::Parser::new()
            .parse(&format!("^(?:{pattern})$"))
            .unwrap();
        let bound = super::nfa_states_bound(&hir);
        assert!(bound <= super::SMALL_REGEX_STATES, "{pattern}: {bound}");
        let compiled = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(super::MAX_REGEX_BYTES / 4)
            .build();
        assert!(compiled.is_ok(), "{pattern} (bound {bound}): {compiled:?}");
    }
}

#[test]
fn an_evaluation_past_its_sample_budget_fails_naming_it() {
    // Two series of 10 points each, one second apart.
    let points: Vec<(i64, f64)> = (0..10).map(|i| (i * 1000, i as f64)).collect();
    let w = store(&[
        ("m", &[("gpu", "0")], &points),
        ("m", &[("gpu", "1")], &points),
    ]);
    let run = |q: &str, max: u64| {
        let budget = SampleBudget::limit(max);
        Evaluator::new(&w, 9_000)
            .with_budget(budget.as_ref())
            .eval(&parse(q).unwrap().expr)
    };
    // A range selector reads 20 points, an instant one 2 samples.
    assert!(run("sum(rate(m[1m]))", 20).is_ok());
    let e = run("sum(rate(m[1m]))", 19).unwrap_err();
    assert!(
        e.0.contains("too many samples") && e.0.contains("19"),
        "{e:?}"
    );
    assert!(run("m + m", 4).is_ok());
    assert!(run("m + m", 3).is_err());
    // A subquery's steps share one budget: 10 steps of 2 samples.
    assert!(run("max_over_time(m[9s:1s])", 20).is_ok());
    assert!(run("max_over_time(m[9s:1s])", 19).is_err());
}
