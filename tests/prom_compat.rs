//! Prometheus' API where Pulse answers in its shapes, against a real Prometheus 2.42
//! (Debian's) scraping Pulse:
//!
//! - `GET /api/v1/rules` and `GET /api/v1/alerts`: Prometheus evaluates the same rule file;
//!   the answers have the same fields, the same rules and the same alerts;
//! - `GET /api/v1/labels`, `GET /api/v1/label/{name}/values` and `GET /api/v1/series` with
//!   `match[]`: the same names, values and label sets.
//!
//! Prometheus' answers carry the `instance` and `job` labels its scrape adds; they are left
//! out of the comparison.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::process::Pulse;
use common::prometheus::Prometheus;
use serde_json::Value;

const RULES: &str = r#"groups:
  - name: compare
    interval: 1s
    rules:
      - record: fleet:util:sum
        expr: sum(DCGM_FI_DEV_GPU_UTIL)
        labels:
          source: test
      - alert: GpuSeen
        expr: DCGM_FI_DEV_GPU_UTIL >= 0
        labels:
          severity: info
        annotations:
          summary: "GPU {{ $labels.gpu }} is {{ $value }}% busy"
      - alert: NeverFires
        expr: DCGM_FI_DEV_GPU_UTIL < -1
        for: 5m
"#;

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// An alert's labels without what Prometheus' scrape adds.
fn own_labels(alert: &Value) -> Value {
    let mut labels = alert["labels"].clone();
    let map = labels.as_object_mut().unwrap();
    map.remove("instance");
    map.remove("job");
    labels
}

fn firing(rules: &Value) -> usize {
    rules["data"]["groups"][0]["rules"][1]["alerts"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|a| a["state"] == "firing").count())
}

#[test]
fn rules_and_alerts_answer_as_prometheus_does() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("compare.yml");
    std::fs::write(&rules, RULES).unwrap();
    let pulse = Pulse::start(&[
        ("PULSE_RULES_BUILTIN_PACK", "false"),
        ("PULSE_RULE_PATHS", rules.to_str().unwrap()),
    ]);
    let prometheus =
        Prometheus::start_with_rules(pulse.base.trim_start_matches("http://"), Some(RULES));
    let deadline = Instant::now() + Duration::from_secs(60);
    let (ours, theirs) = loop {
        let (code, ours) = pulse.get("/api/v1/rules");
        assert_eq!(code, 200, "{ours}");
        let theirs = prometheus.get("/api/v1/rules");
        if firing(&ours) == 4 && firing(&theirs) == 4 {
            break (ours, theirs);
        }
        assert!(
            Instant::now() < deadline,
            "not both firing:\n{ours}\n{theirs}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(keys(&ours), keys(&theirs));
    assert_eq!(ours["status"], "success");
    let (our_group, their_group) = (&ours["data"]["groups"][0], &theirs["data"]["groups"][0]);
    assert_eq!(
        keys(our_group),
        keys(their_group),
        "{our_group}\n{their_group}"
    );
    for field in ["name", "interval", "limit"] {
        assert_eq!(our_group[field], their_group[field], "group {field}");
    }
    let (our_rules, their_rules) = (
        our_group["rules"].as_array().unwrap(),
        their_group["rules"].as_array().unwrap(),
    );
    assert_eq!(our_rules.len(), their_rules.len());
    for (o, t) in our_rules.iter().zip(their_rules) {
        assert_eq!(keys(o), keys(t), "{o}\n{t}");
        for field in [
            "name",
            "query",
            "type",
            "health",
            "lastError",
            "labels",
            "annotations",
            "duration",
            "state",
        ] {
            assert_eq!(o[field], t[field], "{field}: {o}\n{t}");
        }
        let (oa, ta) = (o["alerts"].as_array(), t["alerts"].as_array());
        assert_eq!(oa.map(Vec::len), ta.map(Vec::len), "{o}\n{t}");
        for (a, b) in oa.into_iter().flatten().zip(ta.into_iter().flatten()) {
            assert_eq!(keys(a), keys(b), "{a}\n{b}");
            assert_eq!(a["state"], b["state"]);
        }
        // The same alerts, by their labels.
        let labels = |alerts: Option<&Vec<Value>>| -> BTreeSet<String> {
            alerts
                .into_iter()
                .flatten()
                .map(|a| own_labels(a).to_string())
                .collect()
        };
        assert_eq!(labels(oa), labels(ta));
    }
    // Both answers fit the schema Pulse documents.
    common::schema::assert_conforms(&ours, "PromSuccess_RuleDiscovery");
    common::schema::assert_conforms(&theirs, "PromSuccess_RuleDiscovery");
    // A filter by type, as Prometheus takes it.
    let (_, recording) = pulse.get("/api/v1/rules?type=record");
    let only: Vec<&Value> = recording["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["type"], "recording");
    let (code, bad) = pulse.get("/api/v1/rules?type=both");
    assert_eq!(code, 400, "{bad}");
    common::schema::assert_conforms(&bad, "PromErrorBody");
    assert_eq!(bad["errorType"], "bad_data");

    let (_, our_alerts) = pulse.get("/api/v1/alerts");
    let their_alerts = prometheus.get("/api/v1/alerts");
    common::schema::assert_conforms(&our_alerts, "PromSuccess_AlertDiscovery");
    common::schema::assert_conforms(&their_alerts, "PromSuccess_AlertDiscovery");
    assert_eq!(keys(&our_alerts["data"]), keys(&their_alerts["data"]));
    let (oa, ta) = (
        our_alerts["data"]["alerts"].as_array().unwrap(),
        their_alerts["data"]["alerts"].as_array().unwrap(),
    );
    assert_eq!(oa.len(), 4, "{our_alerts}");
    assert_eq!(keys(&oa[0]), keys(&ta[0]), "{}\n{}", oa[0], ta[0]);
}

/// Prometheus' `data` without the labels its scrape adds.
fn without_scrape_labels(data: &Value) -> Value {
    match data {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|v| *v != "instance" && *v != "job")
                .map(without_scrape_labels)
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| *k != "instance" && *k != "job")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[test]
fn labels_values_and_series_answer_as_prometheus_does() {
    let pulse = Pulse::start(&[]);
    let prometheus = Prometheus::start(pulse.base.trim_start_matches("http://"));
    let util = "match%5B%5D=DCGM_FI_DEV_GPU_UTIL";
    let paths = [
        format!("/api/v1/labels?{util}"),
        format!("/api/v1/label/gpu/values?{util}"),
        "/api/v1/label/__name__/values?match%5B%5D=%7B__name__%3D~%22DCGM_FI_DEV_(GPU_UTIL|FB_USED)%22%7D".to_string(),
        format!("/api/v1/series?{util}"),
    ];
    // Prometheus has the series once it has scraped.
    let deadline = Instant::now() + Duration::from_secs(30);
    while prometheus.get(&paths[3])["data"]
        .as_array()
        .is_none_or(|d| d.len() < 4)
    {
        assert!(Instant::now() < deadline, "Prometheus did not scrape Pulse");
        std::thread::sleep(Duration::from_millis(250));
    }
    for path in &paths {
        let (code, ours) = pulse.get(path);
        assert_eq!(code, 200, "{path}: {ours}");
        let theirs = prometheus.get(path);
        assert_eq!(ours["status"], "success", "{path}: {ours}");
        // Both answers fit the schema Pulse documents.
        let schema = if path.contains("series") {
            "SeriesAnswer"
        } else {
            "PromSuccess_Vec_String"
        };
        common::schema::assert_conforms(&ours, schema);
        common::schema::assert_conforms(&theirs, schema);
        let mut ours = ours["data"].clone();
        let mut theirs = without_scrape_labels(&theirs["data"]);
        // Series come in no particular order.
        for data in [&mut ours, &mut theirs] {
            if let Value::Array(items) = data {
                items.sort_by_key(|v| v.to_string());
            }
        }
        assert_eq!(ours, theirs, "{path}");
        assert!(
            ours.as_array().is_some_and(|d| !d.is_empty()),
            "{path}: {ours}"
        );
    }
    // Without `match[]` the same path answers in Pulse's shape, with the points.
    let (_, own) = pulse.get("/api/v1/series?match=DCGM_FI_DEV_GPU_UTIL&window_s=10");
    assert!(own["series"][0]["points"].is_array(), "{own}");
    common::schema::assert_conforms(&own, "SeriesAnswer");
    let (code, bad) = pulse.get("/api/v1/labels?match%5B%5D=%7Bgpu%3D");
    assert_eq!(code, 400, "{bad}");
    assert_eq!(bad["errorType"], "bad_data");
}
