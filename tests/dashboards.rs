//! The Grafana dashboards, proven where there is no Grafana: every panel has a datasource,
//! a unit and a query; and every query of every panel, with the dashboard variables filled
//! the way Grafana fills them (`label_values` through Prometheus' API), returns data from a
//! real Prometheus (Debian's `prometheus`) scraping the real `pulse` binary on loopback.
//! Each query of the stream dashboards is also put to Pulse's own `/api/v1/query`, which must
//! answer the same series (Grafana can use Pulse itself as a Prometheus data source), and
//! Grafana-style range queries put to both over the same window agree point by point,
//! within one scrape interval of skew.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::{response, Pulse};
use common::prometheus::Prometheus;
use serde_json::{json, Value};

fn dashboards() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn panels(d: &Value) -> &Vec<Value> {
    d["panels"].as_array().unwrap()
}

#[test]
fn every_panel_has_a_datasource_a_unit_and_a_query() {
    let all = dashboards();
    assert_eq!(
        all.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
        [
            "alerts.json",
            "gpu-fleet.json",
            "health.json",
            "requests.json"
        ]
    );
    let mut uids = std::collections::HashSet::new();
    for (file, d) in &all {
        assert!(
            uids.insert(d["uid"].as_str().unwrap()),
            "{file}: duplicate uid"
        );
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(vars[0], "datasource", "{file}");
        let mut ids = std::collections::HashSet::new();
        for p in panels(d) {
            let title = p["title"].as_str().unwrap();
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{file}: {title}: duplicate id"
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{file}: {title}");
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
            assert!(!unit.is_empty(), "{file}: {title}: no unit");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: {title}: no query");
            for t in targets {
                let expr = t["expr"].as_str().unwrap();
                // Every variable a query uses is defined on the dashboard.
                for var in variables_in(expr) {
                    assert!(
                        var.starts_with("__") || vars.contains(&var.as_str()),
                        "{file}: {title}: ${var} is not a variable of the dashboard"
                    );
                }
            }
        }
    }
    // Host and GPU can be chosen on the per-GPU dashboards.
    for (file, d) in &all {
        if file == "gpu-fleet.json" || file == "alerts.json" {
            let names: Vec<&str> = d["templating"]["list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["name"].as_str().unwrap())
                .collect();
            assert!(names.contains(&"host") && names.contains(&"gpu"), "{file}");
        }
    }
}

/// A result series' labels, but for the `job` and `instance` Prometheus adds when it scrapes.
fn series_labels(r: &Value) -> BTreeMap<String, String> {
    r["metric"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "job" && *k != "instance")
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// Pulse's own `/api/v1/query` gives the series Prometheus gives (its `job` and `instance`
/// scrape labels aside); values differ by the scrape's skew and are not compared.
fn same_series(pulse: &str, expr: &str, prometheus: &[Value]) -> Result<(), String> {
    let (status, v) = response(
        ureq::get(&format!("{pulse}/api/v1/query"))
            .query("query", expr)
            .call(),
    );
    if status != 200 || v["status"] != "success" {
        return Err(format!("HTTP {status}: {v}"));
    }
    let off = common::schema::problems(&v, "PromSuccess_QueryData");
    if !off.is_empty() {
        return Err(format!("off the documented schema: {off:?}"));
    }
    let mut ours: Vec<_> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(series_labels)
        .collect();
    let mut theirs: Vec<_> = prometheus.iter().map(series_labels).collect();
    ours.sort();
    theirs.sort();
    if ours != theirs {
        return Err(format!(
            "series differ: Pulse {ours:?}, Prometheus {theirs:?}"
        ));
    }
    Ok(())
}

/// `$name` and `${name}` in a query.
/// `expr` over the last 10 s from Prometheus (a point per second) and from Pulse (a point
/// per 50 ms, 1.1 s further back): every point of Prometheus, a value Pulse's window held
/// when Prometheus scraped it, must be among Pulse's values (to 1e-9 relative) from one
/// scrape interval (1 s, and the sampling's 0.1 s) before it to just after it. Answers
/// (points compared, points that matched).
fn range_agrees(pulse: &str, prom: &Prometheus, expr: &str) -> Result<(usize, usize), String> {
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .floor()
        - 2.0;
    let start = end - 10.0;
    let range = |from: f64, step: f64| {
        format!(
            "/api/v1/query_range?query={}&start={from}&end={end}&step={step}",
            common::urlencode(expr)
        )
    };
    let theirs = prom.get(&range(start, 1.0));
    let (status, ours) =
        response(ureq::get(&format!("{pulse}{}", range(start - 1.1, 0.05))).call());
    if status != 200 {
        return Err(format!("Pulse: HTTP {status}: {ours}"));
    }
    let off = common::schema::problems(&ours, "PromSuccess_QueryData");
    if !off.is_empty() {
        return Err(format!("Pulse: off the documented schema: {off:?}"));
    }
    let points = |s: &Value| -> Vec<(f64, f64)> {
        s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_f64().unwrap(),
                    p[1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    };
    let ours: BTreeMap<_, _> = ours["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (series_labels(s), points(s)))
        .collect();
    let (mut compared, mut matched) = (0, 0);
    for series in theirs["data"]["result"].as_array().unwrap() {
        let key = series_labels(series);
        let Some(pulse_points) = ours.get(&key) else {
            return Err(format!("Pulse has no series {key:?}"));
        };
        for (t, v) in points(series) {
            compared += 1;
            let near = pulse_points
                .iter()
                .filter(|(tp, _)| *tp >= t - 1.1 && *tp <= t + 0.05);
            // Equal but for the last bits: an average's rounding depends on its algorithm.
            let same = |vp: &f64| (vp - v).abs() <= 1e-9 * v.abs().max(1.0);
            matched += usize::from(near.clone().any(|(_, vp)| same(vp)));
        }
    }
    if compared == 0 {
        return Err("Prometheus answered no point".to_string());
    }
    Ok((compared, matched))
}

fn variables_in(expr: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?").unwrap();
    re.captures_iter(expr).map(|c| c[1].to_string()).collect()
}

/// A fast pipeline: 100 ms sampling, short detector warm-up, forecasts after 3 s of window.
const PIPELINE: &str = r#"
[sources.gpu]
mode = "simulated"
interval_ms = 100
[sources.gpu.simulated]
gpus = 4
scenarios = ["steady", "memory_leak", "thermal_throttle", "load_spike"]
[sources.requests]
interval_ms = 200
[anomaly.detector]
warmup_samples = 20
settle_samples = 10
[predictor]
window_s = 10
step_ms = 100
refit_interval_ms = 500
horizons_s = [1, 5]
"#;

/// A rule that fires at once, so the alert panels have an alert to show.
const RULES: &str = r#"
groups:
  - name: dashboard-test
    interval: 1s
    rules:
      - alert: DashboardTestAlwaysFiring
        expr: max by (Hostname) (DCGM_FI_DEV_GPU_UTIL) >= 0
        labels: {severity: info}
        annotations: {summary: fires so that the alert panels have data}
"#;

/// Fills the dashboard's variables as a user picking the first value of each would.
fn fill_variables(prom: &Prometheus, d: &Value) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for v in d["templating"]["list"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap().to_string();
        if v["type"] != "query" {
            continue;
        }
        let query = substitute(v["query"]["query"].as_str().unwrap(), &vars);
        let values = prom.label_values(&query);
        let first = values
            .first()
            .unwrap_or_else(|| panic!("variable {name}: {query} lists nothing"));
        vars.insert(name, first.clone());
    }
    vars.insert("__rate_interval".into(), "5s".into());
    vars.insert("__interval".into(), "1s".into());
    vars
}

fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = expr.to_string();
    // Longest names first, so `$gpu` does not eat part of a longer name.
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        // As Grafana does for Prometheus: regex-escaped, then escaped again for the
        // PromQL string the regex sits in.
        let value = if name.starts_with("__") {
            vars[name].clone()
        } else {
            regex::escape(&vars[name]).replace('\\', "\\\\")
        };
        out = out.replace(&format!("${{{name}}}"), &value);
        out = out.replace(&format!("${name}"), &value);
    }
    out
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus_scraping_pulse() {
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start_with_files(dir.path(), PIPELINE, RULES, &[]);
    let target = pulse.base.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(&target);

    // Request records keep arriving, as from a live inference service.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (stop, base) = (stop.clone(), pulse.base.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<Value> = (0..20)
                    .map(|k| {
                        i += 1;
                        json!({"route": if k % 2 == 0 { "/v1/generate" } else { "/v1/embed" },
                               "status": if i.is_multiple_of(17) { 503 } else { 200 },
                               "latency_ms": 5.0 + (i % 40) as f64 * 7.5,
                               "gpu": (i % 4).to_string(), "service": "llm"})
                    })
                    .collect();
                let _ = ureq::post(&format!("{base}/api/v1/requests"))
                    .set("Content-Type", "application/json")
                    .send_string(&Value::Array(batch).to_string());
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Wait until what the slowest panels need has been scraped: forecasts, scores, the
    // recorded p95 and the firing test alert.
    let deadline = Instant::now() + Duration::from_secs(90);
    for needed in [
        "pulse_forecast",
        "pulse_exhaustion_seconds",
        "pulse_anomaly_score",
        "service_route:http_request_duration_seconds:p95_5m",
        r#"ALERTS{alertstate="firing"}"#,
        "rate(http_requests_total[5s]) > 0",
        // The range queries below compare the last 12 s.
        "count_over_time(DCGM_FI_DEV_GPU_TEMP[13s]) >= 12",
    ] {
        while prom.query(needed).map_or(true, |r| r.is_empty()) {
            assert!(Instant::now() < deadline, "Prometheus never had {needed}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    let mut failures = Vec::new();
    let mut checked = 0;
    let mut compared = 0;
    for (file, d) in dashboards() {
        let vars = fill_variables(&prom, &d);
        for p in panels(&d) {
            for t in p["targets"].as_array().unwrap() {
                let expr = substitute(t["expr"].as_str().unwrap(), &vars);
                checked += 1;
                match prom.query(&expr) {
                    Err(e) => failures.push(format!("{file}: {}: {expr}: {e}", p["title"])),
                    Ok(r) if r.is_empty() => {
                        failures.push(format!("{file}: {}: {expr}: no data", p["title"]))
                    }
                    // Pulse itself, as a Prometheus data source, answers the same series, but
                    // for the health dashboard: Pulse's own pipeline metrics are made for
                    // /metrics, not kept in its window.
                    Ok(from_prometheus) if file != "health.json" => {
                        if let Err(e) = same_series(&pulse.base, &expr, &from_prometheus) {
                            failures.push(format!("{file}: {}: {expr}: Pulse: {e}", p["title"]))
                        }
                        compared += 1;
                    }
                    Ok(_) => {}
                }
            }
        }
    }
    // Grafana-style range queries, to Pulse and to Prometheus over the same window.
    for expr in [
        "DCGM_FI_DEV_GPU_TEMP",
        "avg by (Hostname) (DCGM_FI_DEV_GPU_UTIL)",
        "DCGM_FI_DEV_FB_USED / DCGM_FI_DEV_FB_TOTAL",
        "max by (gpu) (DCGM_FI_DEV_POWER_USAGE)",
    ] {
        match range_agrees(&pulse.base, &prom, expr) {
            Ok((compared, matched)) => {
                eprintln!(
                    "range {expr}: {matched} of {compared} Prometheus points matched by Pulse"
                );
                if matched < compared {
                    failures.push(format!(
                        "range {expr}: {} of {compared} points unlike Pulse's",
                        compared - matched
                    ));
                }
            }
            Err(e) => failures.push(format!("range {expr}: {e}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    assert!(checked >= 50, "only {checked} queries");
    eprintln!("{compared} of {checked} panel queries answered alike by Pulse and Prometheus");
    assert!(
        compared >= 30,
        "only {compared} queries compared with Pulse"
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
