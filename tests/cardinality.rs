//! A client that puts ids in its routes (10 000 distinct routes, 20 000 records) against the
//! default config: its routes beyond its share fold into `__other__` (nothing lost: every
//! record is counted), the status names it, a WARN names it, and Pulse stays responsive.
//! The same run without the limit took the status to 503 for minutes.

mod common;

use std::time::Duration;

use common::process::Pulse;

#[test]
fn a_service_exploding_its_routes_is_folded_named_and_counted() {
    let pulse = Pulse::start(&[]);
    for batch in 0..40 {
        let records: Vec<String> = (0..250)
            .map(|i| {
                format!(
                    r#"{{"route":"/item/{}","status":200,"latency_ms":5,"service":"shop"}}"#,
                    batch * 250 + i
                )
            })
            .collect();
        let body = format!("[{}]", records.join(","));
        for _ in 0..2 {
            let (code, v) = pulse.post("/api/v1/requests", "application/json", &body);
            assert_eq!(code, 202, "{v}");
        }
    }
    let status = pulse.poll("/api/phase4/status", Duration::from_secs(10), |s| {
        s["components"].as_array().unwrap().iter().any(|c| {
            c["name"] == "request_sampler" && c["extra"]["folded_total"].as_f64() >= Some(19_000.0)
        })
    });
    let sampler = status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "request_sampler")
        .unwrap();
    assert_eq!(sampler["state"], "degraded", "{sampler}");
    assert!(
        sampler["reason"].as_str().unwrap().contains("\"shop\""),
        "{sampler}"
    );
    assert!(
        sampler["extra"]["routes"].as_f64() <= Some(201.0),
        "{sampler}"
    );
    assert_eq!(sampler["received_total"], 20_000, "{sampler}");
    // Every record is in the counters, the folded ones under __other__.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = pulse.get_text("/metrics");
        let total: f64 = text
            .lines()
            .filter(|l| l.starts_with("http_requests_total{") && l.contains("service=\"shop\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if total == 20_000.0 {
            assert!(text.contains("route=\"__other__\""));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counted {total} of 20000"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, _) = pulse.get("/api/phase4/dashboard/summary");
    assert_eq!(code, 200);
    let log = pulse.stop();
    assert!(
        log.iter().any(|l| l.contains("WARN")
            && l.contains("too many distinct routes")
            && l.contains("shop")),
        "{log:?}"
    );
}

/// `rules.max_samples`: a rule that reads more than the budget fails that evaluation with
/// an error naming it (rules API, /metrics), and the other rules of its group run on.
#[test]
fn a_rule_reading_past_its_sample_budget_fails_alone_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pulse.toml");
    std::fs::write(&config, "[rules]\nbuiltin_pack = false\nmax_samples = 50\n").unwrap();
    // Two GPUs sampled every 100 ms: the heavy rule reads 2 × 10 points a second.
    let pipeline = "[sources.gpu]\nmode = \"simulated\"\ninterval_ms = 100\n\
                    [sources.gpu.simulated]\ngpus = 2\nscenarios = [\"steady\"]\n";
    let rules = r#"
groups:
  - name: budget
    interval: 500ms
    rules:
      - record: heavy
        expr: count_over_time(DCGM_FI_DEV_GPU_UTIL[1m])
      - record: light
        expr: DCGM_FI_DEV_GPU_UTIL * 1
"#;
    let pulse = Pulse::start_with_files(
        dir.path(),
        pipeline,
        rules,
        &[("PULSE_CONFIG", config.to_str().unwrap())],
    );
    let rule = |v: &serde_json::Value, name: &str| {
        v["data"]["groups"][0]["rules"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == name).cloned())
            .unwrap_or_default()
    };
    let rules = pulse.poll("/api/v1/rules", Duration::from_secs(20), |v| {
        rule(v, "heavy")["health"] == "err" && rule(v, "light")["health"] == "ok"
    });
    let error = rule(&rules, "heavy")["lastError"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("too many samples") && error.contains("rules.max_samples"),
        "{error}"
    );
    // The light rule's series is written; the heavy one's only while it read at most 50
    // points (25 per GPU), before the window grew past the budget.
    let (_, light) = pulse.get("/api/v1/query?query=light");
    assert_eq!(
        light["data"]["result"].as_array().map(Vec::len),
        Some(2),
        "{light}"
    );
    let (_, heavy) = pulse.get("/api/v1/query?query=heavy");
    for s in heavy["data"]["result"].as_array().unwrap() {
        let v: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
        assert!(v <= 25.0, "{heavy}");
    }
    let metrics = pulse.get_text("/metrics");
    let errors: f64 = metrics
        .lines()
        .find(|l| l.starts_with("pulse_rule_evaluation_errors_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(errors >= 1.0, "{metrics}");
    // The query API has the same budget: the heavy expression is refused as Prometheus
    // refuses it (422, execution), the light one answered.
    let (code, v) = pulse.get("/api/v1/query?query=count_over_time(DCGM_FI_DEV_GPU_UTIL%5B1m%5D)");
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["errorType"], "execution", "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("too many samples"),
        "{v}"
    );
    let (code, v) = pulse.get("/api/v1/query?query=DCGM_FI_DEV_GPU_UTIL");
    assert_eq!(code, 200, "{v}");
    // Logged once, when the rule started failing, though it fails every evaluation.
    let log = pulse.stop();
    let warned: Vec<_> = log
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("too many samples"))
        .collect();
    assert_eq!(warned.len(), 1, "{log:#?}");
    assert!(warned[0].contains("heavy"), "{warned:?}");
}

/// `window.max_mib`: once the windows reach it, samples of new series are refused and
/// counted, the status names the budget, and the series already held keep storing.
#[test]
fn past_the_window_memory_budget_new_series_are_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    // Four GPUs every 100 ms: their rings settle 13 s in (36 KB each), past 1 MiB.
    let pipeline = "[sources.gpu]\nmode = \"simulated\"\ninterval_ms = 100\n\
                    [sources.gpu.simulated]\ngpus = 4\nscenarios = [\"steady\"]\n\
                    [window]\nmax_mib = 1\n";
    let rules = "groups: []\n";
    let pulse = Pulse::start_with_files(
        dir.path(),
        pipeline,
        rules,
        &[("PULSE_RULES_BUILTIN_PACK", "false")],
    );
    let store = |s: &serde_json::Value| {
        s["components"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "window_store").cloned())
            .unwrap_or_default()
    };
    let bytes_past =
        |s: &serde_json::Value| store(s)["extra"]["window_bytes"].as_f64() >= Some(1024.0 * 1024.0);
    pulse.poll("/api/phase4/status", Duration::from_secs(60), bytes_past);
    // A new service's series now find no room.
    let body = r#"[{"route":"/new","status":200,"latency_ms":5,"service":"late"}]"#;
    let (code, v) = pulse.post("/api/v1/requests", "application/json", body);
    assert_eq!(code, 202, "{v}");
    let status = pulse.poll("/api/phase4/status", Duration::from_secs(10), |s| {
        store(s)["state"] == "degraded"
    });
    let window = store(&status);
    assert!(
        window["reason"]
            .as_str()
            .unwrap()
            .contains("window.max_mib"),
        "{window}"
    );
    assert!(window["extra"]["window_refused_for_memory_total"].as_f64() > Some(0.0));
    let metrics = pulse.get_text("/metrics");
    assert!(
        metrics.contains("pulse_window_refused_for_memory_total"),
        "{metrics}"
    );
    let (_, late) = pulse.get("/api/v1/query?query=http_requests_total%7Bservice%3D%22late%22%7D");
    assert_eq!(
        late["data"]["result"].as_array().map(Vec::len),
        Some(0),
        "{late}"
    );
    // The GPUs' series keep storing.
    let newest = |pulse: &Pulse| {
        let (_, v) =
            pulse.get("/api/v1/query?query=timestamp(DCGM_FI_DEV_GPU_UTIL%7Bgpu%3D%220%22%7D)");
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = newest(&pulse);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(newest(&pulse) > before, "GPU 0's series stopped storing");
}
