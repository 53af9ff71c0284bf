//! Predictions through the API: the simulated fleet's memory leak, the real predictor actor
//! reading windows from the window store and fitting with augurs, the list and its filters,
//! the forecast and exhaustion series in `/metrics`, the nearest exhaustion in the dashboard
//! summary, and an alert rule on the forecast.

mod common;

use std::num::{NonZeroU64, NonZeroUsize};

use axum::http::StatusCode;
use common::{call, get, poll_until as poll};
use pulse::config::pipeline::WatchSelector;
use pulse::Scenario;

const RULE: &str = r#"
groups:
  - name: forecasts
    interval: 100ms
    rules:
      - alert: MemoryForecastHigh
        expr: pulse_forecast{metric="DCGM_FI_DEV_FB_USED", horizon="2s", bound="upper_80"} / on(gpu, Hostname) DCGM_FI_DEV_FB_TOTAL > 0.1
        labels: {severity: warning}
"#;

fn app(enabled: bool, rules_dir: &std::path::Path) -> axum::Router {
    let (mut service, mut pipeline) = common::fast_simulated();
    service.rules.builtin_pack = false;
    service.rules.paths = vec![rules_dir.to_path_buf()];
    pipeline.sources.gpu.simulated.scenarios = vec![Scenario::MemoryLeak];
    pipeline.sources.gpu.simulated.gpus = NonZeroUsize::new(2).unwrap();
    let p = &mut pipeline.predictor;
    p.enabled = enabled;
    p.watch = vec![WatchSelector::try_from(
        r#"{__name__=~"DCGM_FI_DEV_(FB_USED|GPU_UTIL)"}"#.to_string(),
    )
    .unwrap()];
    // 4 s windows on a 100 ms grid (40 points), refitted every 500 ms, 1 and 2 s ahead.
    p.window_s = NonZeroU64::new(4).unwrap();
    p.step_ms = NonZeroU64::new(100).unwrap();
    p.refit_interval_ms = NonZeroU64::new(500).unwrap();
    p.horizons_s = vec![1, 2];
    common::app(&service, &pipeline)
}

#[actix::test]
async fn a_leak_is_forecast_and_its_exhaustion_shown_listed_and_alerted_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("forecasts.yml"), RULE).unwrap();
    let app = app(true, dir.path());

    let body = poll(&app, "/api/phase4/predictions", |v| {
        v["predictions"].as_array().is_some_and(|p| {
            p.iter().filter(|p| !p["exhaustion"].is_null()).count() == 2
                && p.iter()
                    .any(|p| p["series"]["metric"] == "DCGM_FI_DEV_GPU_UTIL")
        })
    })
    .await;
    assert_eq!(body["enabled"], true);
    common::schema::assert_conforms(&body, "PredictionPage");
    let memory = body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["series"]["metric"] == "DCGM_FI_DEV_FB_USED")
        .unwrap();
    assert!(!memory["model"].as_str().unwrap().is_empty());
    assert!(memory["fit_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(memory["step_s"], 0.1);
    assert_eq!(memory["levels"], serde_json::json!([0.8, 0.95]));
    let forecast = memory["forecast"].as_array().unwrap();
    assert_eq!(forecast.len(), 20, "2 s ahead at 100 ms");
    for point in forecast {
        let v = point["value"].as_f64().unwrap();
        let i80 = &point["intervals"][0];
        let i95 = &point["intervals"][1];
        let (l80, u80) = (i80[0].as_f64().unwrap(), i80[1].as_f64().unwrap());
        let (l95, u95) = (i95[0].as_f64().unwrap(), i95[1].as_f64().unwrap());
        assert!(l95 <= l80 && l80 <= v && v <= u80 && u80 <= u95, "{point}");
    }
    let x = &memory["exhaustion"];
    assert_eq!(x["resource"], "memory");
    assert_eq!(x["limit"], 81559.0);
    assert!(x["seconds"].as_f64().unwrap() > 0.0);
    assert!(x["earliest_seconds"].as_f64().unwrap() <= x["seconds"].as_f64().unwrap());
    assert!(
        x["text"]
            .as_str()
            .unwrap()
            .contains("runs out of memory in"),
        "{x}"
    );

    // Filters.
    let short = call(&app, get("/api/phase4/predictions?horizon_s=1"))
        .await
        .1;
    assert!(short["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["forecast"].as_array().unwrap().len() == 10));
    let gpu1 = call(
        &app,
        get("/api/phase4/predictions?match=%7Bgpu%3D%221%22%7D"),
    )
    .await
    .1;
    assert_eq!(gpu1["count"], 2, "memory and utilisation of GPU 1");
    let second = call(
        &app,
        get("/api/phase4/predictions?match=%7Bgpu%3D%221%22%7D&limit=1&offset=1"),
    )
    .await
    .1;
    assert_eq!(
        (second["total"].as_u64(), second["count"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        second["predictions"][0]["series"],
        gpu1["predictions"][1]["series"]
    );
    common::expect_bad_requests(
        &app,
        &[
            ("/api/phase4/predictions?horizon_s=0", "horizon_s"),
            ("/api/phase4/predictions?match=%7Bgpu", "match"),
            ("/api/phase4/predictions?colour=red", "colour"),
            ("/api/phase4/predictions?limit=0", "limit"),
        ],
    )
    .await;

    // On the stream: /metrics, the dashboard summary, and a rule.
    let (_, metrics) = call(&app, get("/metrics")).await;
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains("# TYPE pulse_forecast gauge"));
    assert!(metrics.contains("bound=\"upper_80\""));
    assert!(metrics.contains("horizon=\"2s\""));
    assert!(metrics.contains("pulse_exhaustion_seconds{"));
    let summary = poll(&app, "/api/phase4/dashboard/summary", |v| {
        !v["nearest_exhaustion"].is_null()
    })
    .await;
    assert_eq!(summary["nearest_exhaustion"]["resource"], "memory");
    assert!(summary["nearest_exhaustion"]["seconds"].as_f64().unwrap() > 0.0);
    poll(
        &app,
        "/api/phase4/alerts/active?name=MemoryForecastHigh",
        |v| v["count"].as_u64().unwrap_or(0) == 2,
    )
    .await;
}

#[actix::test]
async fn a_disabled_predictor_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(false, dir.path());
    let (status, body) = call(&app, get("/api/phase4/predictions")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["enabled"], false);
    assert_eq!(body["count"], 0);
    common::schema::assert_conforms(&body, "PredictionPage");
}

#[actix::test]
async fn forecasts_stay_in_metrics_between_refits() {
    // Refits every 2 s, while other series count as stale after 300 ms: a forecast is
    // written once per refit and must be in every scrape until the next one.
    let dir = tempfile::tempdir().unwrap();
    let (mut service, mut pipeline) = common::fast_simulated();
    service.rules.builtin_pack = false;
    service.rules.paths = vec![dir.path().to_path_buf()];
    service.dashboard.stale_after_ms = NonZeroU64::new(300).unwrap();
    pipeline.sources.gpu.simulated.scenarios = vec![Scenario::MemoryLeak];
    pipeline.sources.gpu.simulated.gpus = NonZeroUsize::new(1).unwrap();
    let p = &mut pipeline.predictor;
    p.watch =
        vec![WatchSelector::try_from(r#"{__name__="DCGM_FI_DEV_FB_USED"}"#.to_string()).unwrap()];
    p.window_s = NonZeroU64::new(4).unwrap();
    p.step_ms = NonZeroU64::new(100).unwrap();
    p.refit_interval_ms = NonZeroU64::new(2000).unwrap();
    p.horizons_s = vec![1];
    let app = common::app(&service, &pipeline);

    let scrape = || async {
        let (status, body) = call(&app, get("/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        let text = body.as_str().unwrap().to_string();
        (
            text.contains("pulse_forecast{"),
            text.contains("pulse_exhaustion_seconds{"),
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !scrape().await.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no forecast in /metrics"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Three seconds of scrapes, every 100 ms: across a whole refit interval and more.
    for _ in 0..30 {
        let (forecast, exhaustion) = scrape().await;
        assert!(forecast, "pulse_forecast left /metrics between refits");
        assert!(
            exhaustion,
            "pulse_exhaustion_seconds left /metrics between refits"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The real binary, its predictor refitting every 20 s (as at the default cadence, points
/// are written once per refit), scraped every second by a real Prometheus whose rule needs
/// the exhaustion time for 2 minutes without a break: it fires only if the forecast and
/// exhaustion series are in every scrape between refits.
#[test]
fn a_prometheus_rule_with_for_2m_fires_on_the_exhaustion_time() {
    use common::process::Pulse;
    use common::prometheus::Prometheus;
    use std::time::{Duration, Instant};

    const PIPELINE: &str = r#"
[sources.gpu]
mode = "simulated"
interval_ms = 1000
[sources.gpu.simulated]
gpus = 1
scenarios = ["memory_leak"]
[predictor]
window_s = 60
step_ms = 1000
refit_interval_ms = 20000
horizons_s = [30, 60]
"#;
    const PROMETHEUS_RULES: &str = r#"
groups:
  - name: exhaustion
    rules:
      - alert: GpuMemoryRunsOutWithinAnHour
        expr: pulse_exhaustion_seconds{resource="memory", bound="estimate"} < 3600
        for: 2m
"#;
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start_with_files(dir.path(), PIPELINE, "groups: []\n", &[]);
    let target = pulse.base.trim_start_matches("http://").to_string();
    let prom = Prometheus::start_with_rules(&target, Some(PROMETHEUS_RULES));
    let started = Instant::now();
    let firing = r#"ALERTS{alertname="GpuMemoryRunsOutWithinAnHour", alertstate="firing"}"#;
    while prom.query(firing).map_or(true, |r| r.is_empty()) {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the for: 2m rule never fired; pending: {:?}; exhaustion scraped: {:?}",
            prom.query("ALERTS"),
            prom.query("count_over_time(pulse_exhaustion_seconds[5m])"),
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // Two minutes of scrapes at 1 s: the forecast series was in (nearly) every one of them.
    let scraped = prom
        .query(r#"count_over_time(pulse_forecast{metric="DCGM_FI_DEV_FB_USED", horizon="60s", bound="point"}[2m])"#)
        .unwrap();
    let n = scraped[0]["value"][1]
        .as_str()
        .unwrap()
        .parse::<f64>()
        .unwrap();
    assert!(n >= 115.0, "the forecast was in {n} of ~120 scrapes");
}
