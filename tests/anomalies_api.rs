//! Anomalies through the API: the simulated fleet's load spikes, the real detector actor fed
//! by the window store, the list and its filters, one anomaly by id, bad requests, the score
//! series in `/metrics`, and an alert rule written on the score.

mod common;

use std::num::NonZeroUsize;

use axum::http::StatusCode;
use common::{call, get, poll_until as poll, urlencode};
use pulse::Scenario;

const RULE: &str = r#"
groups:
  - name: anomalies
    interval: 100ms
    rules:
      - alert: GpuAnomalous
        expr: max by (gpu, metric) (max_over_time(pulse_anomaly_score[1m])) >= 0.78
        labels: {severity: warning}
        annotations: {summary: 'GPU {{ $labels.gpu }}: {{ $labels.metric }} is anomalous'}
"#;

fn app(enabled: bool, rules_dir: &std::path::Path) -> axum::Router {
    app_with_window(enabled, rules_dir, 0)
}

fn app_with_window(enabled: bool, rules_dir: &std::path::Path, window_ms: u64) -> axum::Router {
    let (mut service, mut pipeline) = common::fast_simulated();
    service.rules.builtin_pack = false;
    service.rules.paths = vec![rules_dir.to_path_buf()];
    pipeline.sources.gpu.simulated.scenarios = vec![Scenario::LoadSpike];
    pipeline.sources.gpu.simulated.gpus = NonZeroUsize::new(2).unwrap();
    // 20 samples of warm-up at 50 ms: the first spike (step 60) comes after it.
    pipeline.anomaly.enabled = enabled;
    pipeline.anomaly.detector.warmup_samples = 20;
    pipeline.anomaly.detector.rest_samples = 20;
    // Both GPUs burst together, which is a workload change (tests/anomaly_fleet.rs); the
    // anomaly list's test opens every firing at once (a window of 0).
    pipeline.anomaly.workload_window_ms = window_ms;
    common::app(&service, &pipeline)
}

#[actix::test]
async fn anomalies_are_listed_filtered_fetched_and_alerted_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("anomalies.yml"), RULE).unwrap();
    let app = app(true, dir.path());

    let util = r#"{__name__="DCGM_FI_DEV_GPU_UTIL"}"#;
    let list = poll(
        &app,
        &format!("/api/phase4/anomalies?match={}", urlencode(util)),
        |v| {
            v["anomalies"]
                .as_array()
                .is_some_and(|l| l.iter().any(|a| a["reason"] == "new_high"))
        },
    )
    .await;
    assert_eq!(list["enabled"], true);
    common::schema::assert_conforms(&list, "AnomalyPage");
    // The spike to 100 % is above everything the light load showed before.
    let spikes: Vec<_> = list["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["reason"] == "new_high")
        .collect();
    let a = spikes[0];
    assert_eq!(a["series"]["metric"], "DCGM_FI_DEV_GPU_UTIL");
    let value = a["value"].as_f64().unwrap();
    assert!(value >= 95.0, "the spike is near 100 %: {a}");
    assert!(a["expected_high"].as_f64().unwrap() < value, "{a}");
    assert!(a["score"].as_f64().unwrap() >= 0.78);
    assert!(a["detail"].as_str().unwrap().contains("above"));
    assert_eq!(a["is_rate"], false);

    // Filters: by label, by score, by time, and the page size.
    let gpu1 = call(
        &app,
        get(&format!(
            "/api/phase4/anomalies?match={}",
            urlencode(r#"{gpu="1"}"#)
        )),
    )
    .await
    .1;
    assert!(gpu1["count"].as_u64().unwrap() >= 1);
    assert!(gpu1["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["series"]["labels"]["gpu"] == "1"));
    let one = call(&app, get("/api/phase4/anomalies?limit=1&min_score=0.9"))
        .await
        .1;
    assert_eq!(one["count"], 1);
    // Paged as every list is: the second of all, and the total before paging.
    let all = call(&app, get("/api/phase4/anomalies")).await.1;
    let second = call(&app, get("/api/phase4/anomalies?limit=1&offset=1"))
        .await
        .1;
    assert_eq!(second["total"], all["total"], "{second}");
    assert_eq!(second["total"], all["count"], "{all}");
    assert!(all["count"].as_u64() >= Some(2), "{all}");
    assert_eq!(second["anomalies"][0]["id"], all["anomalies"][1]["id"]);
    assert_eq!(
        (second["offset"].as_u64(), second["limit"].as_u64()),
        (Some(1), Some(1))
    );
    let later = call(&app, get("/api/phase4/anomalies?since_ms=99999999999999"))
        .await
        .1;
    assert_eq!(later["count"], 0);

    // One by id, and the errors.
    let id = a["id"].as_u64().unwrap();
    let (status, same) = call(&app, get(&format!("/api/phase4/anomalies/{id}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same["id"], id);
    common::schema::assert_conforms(&same, "Anomaly");
    let (status, body) = call(&app, get("/api/phase4/anomalies/999999")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["detail"].as_str().unwrap().contains("999999"));
    common::expect_bad_requests(
        &app,
        &[
            ("/api/phase4/anomalies/abc", "id"),
            ("/api/phase4/anomalies?min_score=2", "min_score"),
            ("/api/phase4/anomalies?limit=0", "limit"),
            ("/api/phase4/anomalies?match=%7Bgpu%3D", "match"),
            ("/api/phase4/anomalies?colour=red", "colour"),
        ],
    )
    .await;

    // The score series are on /metrics, with the detector's own figures.
    let (_, metrics) = call(&app, get("/metrics")).await;
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains("# TYPE pulse_anomaly_score gauge"));
    assert!(metrics.contains("pulse_anomaly_score{"));
    assert!(metrics.contains("metric=\"DCGM_FI_DEV_GPU_UTIL\""));
    assert!(metrics.contains("pulse_anomaly_series_watched{component=\"anomaly_detector\"}"));

    // And a rule on the score fires.
    let alerts = poll(&app, "/api/phase4/alerts/active?name=GpuAnomalous", |v| {
        v["count"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let alert = &alerts["alerts"][0];
    assert!(alert["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("is anomalous"));
}

#[actix::test]
async fn a_disabled_detector_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(false, dir.path());
    poll(&app, "/api/phase4/dashboard/summary", |v| {
        v["gpus"]["count"] == 2
    })
    .await;
    let (status, body) = call(&app, get("/api/phase4/anomalies")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["enabled"], false);
    assert_eq!(body["count"], 0);
    common::schema::assert_conforms(&body, "AnomalyPage");
    let (status, body) = call(&app, get("/api/v1/workload-events")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["enabled"], false);
    common::schema::assert_conforms(&body, "WorkloadEventPage");
    let (_, metrics) = call(&app, get("/metrics")).await;
    assert!(!metrics.as_str().unwrap().contains("pulse_anomaly_score{"));
}

#[actix::test]
async fn workload_changes_are_listed_apart_from_anomalies() {
    let dir = tempfile::tempdir().unwrap();
    // Samples come every 50 ms here: a 500 ms wait is ten of them.
    let app = app_with_window(true, dir.path(), 500);
    let uri = "/api/v1/workload-events?metric=DCGM_FI_DEV_GPU_UTIL";
    let list = poll(&app, uri, |v| v["count"].as_u64().is_some_and(|n| n >= 1)).await;
    assert_eq!(list["enabled"], true);
    common::schema::assert_conforms(&list, "WorkloadEventPage");
    let e = &list["events"][0];
    assert_eq!(e["metric"], "DCGM_FI_DEV_GPU_UTIL");
    assert_eq!(e["gpus"], serde_json::json!(["0", "1"]), "{e}");
    assert_eq!(e["host_gpus"], 2);
    assert!(e["firings"].as_u64().unwrap() >= 2, "{e}");
    let host = e["host"].as_str().unwrap().to_string();

    // The burst that made it is not an anomaly of either GPU.
    let (_, anomalies) = call(
        &app,
        get(&format!(
            "/api/phase4/anomalies?match={}",
            urlencode(r#"{__name__="DCGM_FI_DEV_GPU_UTIL"}"#)
        )),
    )
    .await;
    let first_ms = e["first_at_ms"].as_i64().unwrap();
    assert!(
        anomalies["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["first_at_ms"].as_i64() != Some(first_ms)),
        "{anomalies}"
    );

    // Filters.
    let (status, mine) = call(&app, get(&format!("/api/v1/workload-events?host={host}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(mine["count"].as_u64().unwrap() >= 1);
    let (_, other) = call(&app, get("/api/v1/workload-events?host=elsewhere")).await;
    assert_eq!(other["count"], 0);
    let (_, later) = call(&app, get("/api/v1/workload-events?since_ms=9999999999999")).await;
    assert_eq!(later["count"], 0);
    common::expect_bad_requests(
        &app,
        &[
            ("/api/v1/workload-events?limit=0", "limit"),
            ("/api/v1/workload-events?hots=a", "hots"),
        ],
    )
    .await;
}
