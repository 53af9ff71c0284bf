//! End to end: the real `pulse` binary on a free loopback port with the simulated fleet.
//! Posts request batches, subscribes to the command stream, runs a cleanup, and reads
//! summary, profile, metrics and status as a user would, with a real HTTP client.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::process::Pulse;

use serde_json::{json, Value};

#[test]
fn the_default_pipeline_serves_live_figures_within_two_seconds() {
    let pulse = Pulse::start(&[]);
    let summary = pulse.poll(
        "/api/phase4/dashboard/summary",
        Duration::from_secs(2),
        |v| v["gpus"]["count"].as_u64() == Some(4),
    );
    // No NVML on this machine: the simulated fleet stands in and says why.
    assert_eq!(summary["gpu_source"]["kind"], "simulated");
    assert!(summary["gpu_source"]["detail"]
        .as_str()
        .unwrap()
        .contains("NVML unavailable"));
    let lines = pulse.stop();
    assert!(lines.iter().any(|l| l.contains("shut down")), "{lines:?}");
}

#[test]
fn a_user_session_against_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    let samples = dir.path().join("samples.jsonl");
    std::fs::write(
        &pipeline,
        format!(
            "[sources.gpu]\nmode = \"simulated\"\ninterval_ms = 200\n\
             [sources.requests]\ninterval_ms = 200\n\
             [[sinks]]\ntype = \"jsonl\"\npath = {:?}\nflush_interval_ms = 100\n",
            samples.display().to_string()
        ),
    )
    .unwrap();
    let pulse = Pulse::start(&[
        ("PULSE_PIPELINE", pipeline.to_str().unwrap()),
        ("PULSE_DASHBOARD_REFRESH_MS", "200"),
        ("PULSE_CLEANUP_SETTLE_MS", "700"),
        ("PULSE_MAX_BODY_BYTES", "65536"),
    ]);
    pulse.poll(
        "/api/phase4/dashboard/summary",
        Duration::from_secs(5),
        |v| v["gpus"]["count"] == 4,
    );

    // Inference services report requests.
    let batch: Vec<Value> = (0..100)
        .map(|i| json!({"route": "/v1/generate", "status": if i < 5 { 500 } else { 200 }, "latency_ms": i as f64 + 1.0, "service": "llm"}))
        .collect();
    let (status, v) = pulse.post(
        "/api/v1/requests",
        "application/json",
        &Value::Array(batch).to_string(),
    );
    assert_eq!((status, &v["accepted"]), (202, &json!(100)));

    // Bad input is refused with a JSON error and the process keeps serving.
    let (status, v) = pulse.post("/api/v1/requests", "application/json", "{not json");
    assert_eq!(status, 400, "{v}");
    let (status, _) = pulse.post("/api/v1/requests", "text/csv", "a,b");
    assert_eq!(status, 415);
    let huge = format!(
        "[{}]",
        vec![r#"{"route":"/x","status":200,"latency_ms":1}"#; 2000].join(",")
    );
    // The server answers 413 once the limit is passed, without reading the rest; the
    // client may still be writing and see the connection closed under it. That attempt is
    // made again (at most 5 times): only a 413 passes.
    let (status, v) = (0..5)
        .find_map(|_| {
            let r = ureq::post(&format!("{}/api/v1/requests", pulse.base))
                .set("Content-Type", "application/json")
                .send_string(&huge);
            match r {
                Err(ureq::Error::Transport(_)) => None,
                r => Some(common::process::response(r)),
            }
        })
        .expect("the oversized body got an answer");
    assert_eq!(status, 413, "{v}");
    // Every batch through the pipeline is traced (at most 100 new traces a second).
    let traces = pulse.poll(
        "/api/phase4/traces?name=pipeline.batch",
        Duration::from_secs(5),
        |v| v["count"].as_u64() > Some(0),
    );
    let id = traces["traces"][0]["trace_id"].as_str().unwrap();
    let (status, trace) = pulse.get(&format!("/api/phase4/traces/{id}"));
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["spans"][0]["name"], "pipeline.batch");
    let (status, v) = pulse.get("/api/phase4/traces/not-a-trace-id");
    assert_eq!(status, 400, "{v}");
    // The predictor runs from the start; its first forecasts need 5 minutes of window.
    let (status, v) = pulse.get("/api/phase4/predictions");
    assert_eq!((status, &v["enabled"]), (200, &json!(true)));

    // The summary shows exactly the accepted requests.
    let summary = pulse.poll(
        "/api/phase4/dashboard/summary",
        Duration::from_secs(5),
        |v| v["requests"]["count"] == 100,
    );
    assert_eq!(summary["requests"]["error_rate"], 0.05);
    assert_eq!(summary["requests"]["latency_ms"]["p50"], 50.0);
    assert_eq!(summary["requests"]["latency_ms"]["p99"], 99.0);

    let profile = pulse.poll("/api/phase4/gpu/profile", Duration::from_secs(5), |v| {
        v["gpus"].as_array().map_or(0, Vec::len) == 4
    });
    for gpu in profile["gpus"].as_array().unwrap() {
        assert_eq!(gpu["metrics"]["DCGM_FI_DEV_FB_TOTAL"]["latest"], 81559.0);
        assert_eq!(gpu["processes"].as_array().unwrap().len(), 1);
    }

    // A worker subscribes to the command stream, then a cleanup runs.
    let (tx, rx) = mpsc::channel();
    let url = format!("{}/api/v1/commands", pulse.base);
    std::thread::spawn(move || {
        let resp = ureq::get(&url).call().unwrap();
        tx.send("connected".to_string()).unwrap();
        for line in BufReader::new(resp.into_reader())
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("data:") {
                let _ = tx.send(line);
                return;
            }
        }
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        "connected"
    );
    let (status, report) = pulse.post("/api/phase4/gpu/cleanup", "application/json", "");
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["delivered_to"], 2,
        "simulator and the SSE subscriber"
    );
    assert_eq!(report["gpus"].as_array().unwrap().len(), 4);
    assert_eq!(report["not_measured"], 0);
    assert!(
        report["gpus"][0]["released_mib"].as_f64().unwrap() > 5000.0,
        "{report}"
    );
    let event = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let cmd: Value = serde_json::from_str(event.trim_start_matches("data:").trim()).unwrap();
    assert_eq!(cmd["command"], "cleanup");
    assert_eq!(cmd["id"], report["command_id"]);

    // Prometheus exposition: GPU series with dcgm names, request counters, own metrics.
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let text = pulse.get_text("/metrics");
        if text.contains(r#"service="llm",status="500"} 5"#) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        metrics
            .contains(r#"http_requests_total{route="/v1/generate",service="llm",status="500"} 5"#),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE DCGM_FI_DEV_GPU_TEMP gauge"));
    assert!(metrics.contains(r#"http_request_duration_seconds_bucket{le="+Inf",route="/v1/generate",service="llm",status="200"} 95"#));
    assert!(metrics
        .contains(r#"http_requests_total{route="/api/v1/requests",service="pulse",status="413"}"#));
    assert!(metrics.contains("pulse_samples_ingested_total"));

    let (status, st) = pulse.get("/api/phase4/status");
    assert_eq!((status, st["status"].as_str()), (200, Some("operational")));
    let sink = st["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "sink")
        .unwrap();
    assert!(sink["emitted_total"].as_u64().unwrap() > 0);
    pulse.stop();

    // The JSON-lines sink has every sample the window store stored, as JSON.
    let text = std::fs::read_to_string(&samples).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(
        first["metric"].is_string() && first["labels"].is_object() && first["value"].is_number()
    );
}
