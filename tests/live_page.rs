//! The live page at `/`, in headless Chromium (Debian `chromium`) driven over the DevTools
//! protocol: it loads from Pulse alone, draws its charts with data (utilisation and memory
//! per GPU, latency percentiles, the memory forecast with its bands), lists the active
//! alerts, and a mouse click on "Acknowledge" acknowledges the alert in the API. The
//! screenshot is kept as `live-page.png` in Cargo's test tmp dir (the path is printed).

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::process::Pulse;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const PIPELINE: &str = r#"
[sources.gpu]
mode = "simulated"
interval_ms = 200
[sources.gpu.simulated]
gpus = 4
scenarios = ["steady", "memory_leak", "thermal_throttle", "load_spike"]
[sources.requests]
interval_ms = 200
[predictor]
window_s = 10
step_ms = 200
refit_interval_ms = 500
horizons_s = [2, 4]
"#;

const RULES: &str = r#"
groups:
  - name: live-page-test
    interval: 1s
    rules:
      - alert: LivePageTestBusy
        expr: max by (Hostname) (DCGM_FI_DEV_GPU_UTIL) >= 0
        labels: {severity: info}
        annotations: {summary: fires so that the page has an alert to acknowledge, pulse_action: "command:drain"}
"#;

struct Chromium {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts headless Chromium; returns it and the DevTools WebSocket of its page.
fn chromium() -> (Chromium, WebSocket<MaybeTlsStream<TcpStream>>) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=1400,1300",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium (Debian package `chromium`) must be installed");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.split("DevTools listening on ").nth(1) {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let browser = Chromium {
        child,
        _profile: profile,
    };
    let ws_browser = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("chromium did not print its DevTools address");
    let http = ws_browser
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let list: Value = ureq::get(&format!("http://{http}/json/list"))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        if let Some(p) = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
        {
            break p["webSocketDebuggerUrl"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no page target: {list}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (ws, _) = tungstenite::connect(page).unwrap();
    (browser, ws)
}

/// One DevTools call; events that arrive meanwhile are skipped.
fn cdp(
    ws: &mut WebSocket<MaybeTlsStream<TcpStream>>,
    id: &mut u64,
    method: &str,
    params: Value,
) -> Value {
    *id += 1;
    ws.send(Message::text(
        json!({"id": *id, "method": method, "params": params}).to_string(),
    ))
    .unwrap();
    loop {
        let msg = ws.read().unwrap();
        let Message::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(text.as_str()).unwrap();
        if v["id"] == json!(*id) {
            assert!(v.get("error").is_none(), "{method}: {v}");
            return v["result"].clone();
        }
    }
}

fn eval(ws: &mut WebSocket<MaybeTlsStream<TcpStream>>, id: &mut u64, js: &str) -> Value {
    let r = cdp(
        ws,
        id,
        "Runtime.evaluate",
        json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
    );
    assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
    r["result"]["value"].clone()
}

const PAGE_STATE: &str = r##"(() => {
  if (!document.body || !document.getElementById("refresh")) return {loading: true};
  const d = (id, k) => Number((document.getElementById(id) || {dataset: {}}).dataset[k] || 0);
  return {
    refreshes: Number(document.body.dataset.refreshes || 0),
    util_lines: d("util", "lines"), util_points: d("util", "points"),
    memory_lines: d("memory", "lines"),
    latency_lines: d("latency", "lines"), latency_points: d("latency", "points"),
    forecast_lines: d("forecast", "lines"), forecast_bands: d("forecast", "bands"),
    polylines: document.querySelectorAll("svg polyline").length,
    ack_buttons: document.querySelectorAll("#alerts button.ack").length,
    action_rows: document.querySelectorAll("#actions tr[data-id]").length,
    actions_mode: document.getElementById("actions-mode").textContent,
    gpus_stat: document.querySelector("#stats .stat b") ? document.querySelector("#stats .stat b").textContent : "",
    status: document.getElementById("refresh").textContent,
  };
})()"##;

/// The active alert `id`, if it has been acknowledged.
fn acknowledged(pulse: &Pulse, id: &str) -> Option<Value> {
    let (_, active) = pulse.get("/api/phase4/alerts/active");
    active["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .filter(|a| !a["acknowledgement"].is_null())
        .cloned()
}

#[test]
fn the_live_page_draws_live_data_and_acknowledges_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start_with_files(dir.path(), PIPELINE, RULES, &[]);
    let batch: Vec<Value> = (0..50)
        .map(|i| json!({"route": "/v1/generate", "status": 200, "latency_ms": 10.0 + i as f64, "gpu": "0"}))
        .collect();
    let (status, _) = pulse.post(
        "/api/v1/requests",
        "application/json",
        &Value::Array(batch).to_string(),
    );
    assert_eq!(status, 202);

    let (_browser, mut ws) = chromium();
    let mut id = 0;
    cdp(&mut ws, &mut id, "Page.enable", json!({}));
    cdp(
        &mut ws,
        &mut id,
        "Page.navigate",
        json!({"url": format!("{}/", pulse.base)}),
    );

    // Within 60 s: every chart drawn with data, the alert listed with its button.
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = loop {
        let s = eval(&mut ws, &mut id, PAGE_STATE);
        if s["util_lines"] == 4
            && s["memory_lines"] == 4
            && s["latency_points"].as_u64() >= Some(3)
            && s["forecast_lines"] == 2
            && s["forecast_bands"] == 2
            && s["ack_buttons"].as_u64() >= Some(1)
            && s["action_rows"].as_u64() >= Some(1)
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed everything: {s}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(state["gpus_stat"], "4", "{state}");
    // The rule's action, in the default dry run.
    assert_eq!(
        state["actions_mode"], "dry run: recorded, not done",
        "{state}"
    );
    assert!(
        state["status"].as_str().unwrap().starts_with("updated"),
        "{state}"
    );
    // It keeps refreshing, once a second.
    let before = state["refreshes"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let after = eval(&mut ws, &mut id, PAGE_STATE)["refreshes"]
        .as_u64()
        .unwrap();
    assert!(
        after >= before + 2,
        "{before} -> {after} refreshes in 2.5 s"
    );

    let shot = cdp(
        &mut ws,
        &mut id,
        "Page.captureScreenshot",
        json!({"format": "png"}),
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-page.png");
    std::fs::write(&path, &png).unwrap();
    println!("screenshot: {}", path.display());
    assert!(png.len() > 10_000);

    // A real mouse click on the test alert's "Acknowledge" button (the built-in rule pack
    // may list others). The table is redrawn every second, and new alerts come first: a
    // click that lands between two drawings is tried again.
    let mut acked = None;
    for _ in 0..5 {
        let target = eval(
            &mut ws,
            &mut id,
            r##"(() => { const row = [...document.querySelectorAll("#alerts tr[data-id]")]
                   .find((r) => r.firstElementChild.textContent === "LivePageTestBusy");
                 const b = row && row.querySelector("button.ack");
                 if (!b) return {id: row ? row.dataset.id : null, x: null, y: null};
                 b.scrollIntoView({block: "center"});
                 const r = b.getBoundingClientRect();
                 return {id: row.dataset.id, x: r.x + r.width / 2, y: r.y + r.height / 2}; })()"##,
        );
        let alert_id = target["id"]
            .as_str()
            .expect("the test alert is listed")
            .to_string();
        if target["x"].is_null() {
            // Already acknowledged by the previous click: the check below finds it.
            acked = acknowledged(&pulse, &alert_id);
            break;
        }
        for kind in ["mousePressed", "mouseReleased"] {
            cdp(
                &mut ws,
                &mut id,
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": target["x"], "y": target["y"], "button": "left", "clickCount": 1}),
            );
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && acked.is_none() {
            acked = acknowledged(&pulse, &alert_id);
            std::thread::sleep(Duration::from_millis(100));
        }
        if acked.is_some() {
            break;
        }
    }
    let alert = acked.expect("clicking Acknowledge never acknowledged the alert");
    assert_eq!(alert["acknowledgement"]["by"], "live page");
    assert_eq!(
        alert["acknowledgement"]["comment"],
        "acknowledged from the live page"
    );
    // The page shows it too.
    let alert_id = alert["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let cell = eval(
            &mut ws,
            &mut id,
            &format!(
                r##"(() => {{ const r = document.querySelector('#alerts tr[data-id="{alert_id}"]');
                     return r ? r.lastElementChild.textContent : ""; }})()"##
            ),
        );
        if cell == "acknowledged by live page" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page does not show the acknowledgement: {cell}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
