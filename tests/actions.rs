//! Alerting rules that act (`pulse_action`), on the real binary: the remediation example
//! prevents the simulated GPU's out-of-memory where its dry run does not; guardrails refuse
//! and record; workers acknowledge commands; the kill switch; clear errors.

mod common;

use std::time::{Duration, Instant};

use common::process::Pulse;
use serde_json::Value;

const EXAMPLE: &str = "config/examples/remediation";

fn query(p: &Pulse, q: &str) -> f64 {
    let (status, v) = p.get(&format!("/api/v1/query?query={}", common::urlencode(q)));
    assert_eq!(status, 200, "{q}: {v}");
    let text = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or_else(|| panic!("{q}: {v}"));
    text.parse().unwrap()
}

fn actions(p: &Pulse, filter: &str) -> Vec<Value> {
    let (status, v) = p.get(&format!("/api/phase4/actions{filter}"));
    assert_eq!(status, 200, "{v}");
    v["actions"].as_array().unwrap().clone()
}

/// GPU 0's highest memory use over the run, as a share of its memory, and how many worker
/// processes it had (the simulated worker dies at 97 % and restarts with a new pid).
fn peak_and_workers(p: &Pulse) -> (f64, f64) {
    (
        query(
            p,
            r#"max_over_time(DCGM_FI_DEV_FB_USED{gpu="0"}[10m]) / on(gpu) DCGM_FI_DEV_FB_TOTAL"#,
        ),
        query(
            p,
            r#"count(count_over_time(pulse_gpu_process_fb_used_mib{gpu="0"}[10m]))"#,
        ),
    )
}

#[test]
fn the_remediation_example_cleans_up_before_the_gpu_runs_out_of_memory() {
    let config = format!("{EXAMPLE}/pulse.toml");
    let pipeline = format!("{EXAMPLE}/pipeline.toml");
    let env = [
        ("PULSE_CONFIG", config.as_str()),
        ("PULSE_PIPELINE", pipeline.as_str()),
    ];
    let acting = Pulse::start(&env);
    // The same, in a dry run: it records what it would do and does nothing.
    let mut dry_env = env.to_vec();
    dry_env.push(("PULSE_ACTIONS_DRY_RUN", "true"));
    let dry = Pulse::start(&dry_env);

    // The leak reaches 97 % (the worker's end) about 105 s after start without a cleanup.
    let started = Instant::now();
    let executed = acting.poll(
        "/api/phase4/actions?outcome=executed",
        Duration::from_secs(100),
        |v| v["actions"][0]["effect"]["after_mib"].is_number(),
    );
    println!("acted after {:?}: {executed}", started.elapsed());
    let first = &executed["actions"][0];
    assert_eq!(first["rule"], "GpuMemoryForecastFull");
    assert_eq!(first["action"]["type"], "cleanup");
    assert_eq!(first["command"]["gpus"], serde_json::json!(["0"]));
    assert_eq!(first["command"]["host"], "remediation-host");
    assert_eq!(first["delivered_to"], 1, "the simulator took the command");
    assert_eq!(first["ack"], "done", "and acknowledged it: {first}");
    let released = first["effect"]["released_mib"].as_f64().unwrap();
    assert!(released > 10_000.0, "released {released} MiB");

    while started.elapsed() < Duration::from_secs(130) {
        std::thread::sleep(Duration::from_secs(1));
    }
    let (peak, workers) = peak_and_workers(&acting);
    let (dry_peak, dry_workers) = peak_and_workers(&dry);
    println!(
        "with the action: peak {peak:.3}, {workers} worker(s); dry run: peak {dry_peak:.3}, {dry_workers} worker(s)"
    );
    assert!(peak < 0.9, "with the action the GPU peaked at {peak:.3}");
    assert_eq!(workers, 1.0, "with the action the worker never ran out");
    assert!(
        dry_peak > 0.95 && dry_workers >= 2.0,
        "without it, the worker runs out of memory: {dry_peak:.3}, {dry_workers} workers"
    );
    // The predictor's first forecast after the cleanup is recorded with it.
    let (_, again) = acting.get(&format!("/api/phase4/actions/{}", first["id"]));
    common::schema::assert_conforms(&again, "ActionRecord");
    let after = &again["effect"]["forecast_after"];
    println!("forecast after the cleanup: {after}");
    assert!(
        after["fitted_at_ms"].as_i64() > first["at_ms"].as_i64(),
        "{again}"
    );
    let dry_runs = actions(&dry, "?outcome=dry_run");
    assert!(!dry_runs.is_empty(), "the dry run records what it would do");
    assert!(
        dry_runs[0]["command"]["command"] == "cleanup" && dry_runs[0]["delivered_to"].is_null()
    );
    assert!(actions(&dry, "?outcome=executed").is_empty());
    let metrics = acting.get_text("/metrics");
    assert!(
        metrics.contains(
            r#"pulse_actions_total{component="actions",action="cleanup",outcome="executed"}"#
        ),
        "{metrics}"
    );
    acting.stop();
    dry.stop();
}

/// A rule that always fires on GPU 0, with `action` as its `pulse_action`.
fn rules(action: &str) -> String {
    format!(
        r#"groups:
  - name: act
    interval: 1s
    rules:
      - alert: Drain
        expr: DCGM_FI_DEV_GPU_UTIL{{gpu="0"}} >= 0
        annotations:
          pulse_action: "{action}"
"#
    )
}

const PIPELINE: &str = r#"
[sources.gpu]
mode = "simulated"
interval_ms = 200
[sources.gpu.simulated]
gpus = 2
scenarios = ["steady"]
"#;

#[test]
fn commands_are_acknowledged_and_the_kill_switch_refuses_every_action() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pulse::start_with_files(
        dir.path(),
        PIPELINE,
        &rules("command:drain"),
        &[
            ("PULSE_ACTIONS_DRY_RUN", "false"),
            ("PULSE_RULES_BUILTIN_PACK", "false"),
        ],
    );
    // The simulated fleet answers as a worker that does not know the command does.
    let v = p.poll("/api/phase4/actions", Duration::from_secs(20), |v| {
        v["actions"][0]["ack"] == "failed"
    });
    let a = &v["actions"][0];
    assert_eq!(a["outcome"], "executed", "{v}");
    assert_eq!(a["command"]["command"], "action");
    assert_eq!(a["command"]["name"], "drain");
    assert_eq!(a["command"]["labels"]["gpu"], "0");
    assert_eq!(
        a["acks"][0]["detail"], "the simulated fleet does not implement \"drain\"",
        "{v}"
    );
    let id = a["command"]["id"].as_str().unwrap().to_string();

    // A worker that did it acknowledges it: the command is done.
    let (status, body) = p.post(
        &format!("/api/v1/commands/{id}/ack"),
        "application/json",
        r#"{"outcome": "done", "detail": "drained in 2 s"}"#,
    );
    assert_eq!(status, 200, "{body}");
    common::schema::assert_conforms(&body, "CommandAcknowledged");
    let (_, one) = p.get(&format!("/api/phase4/actions/{}", a["id"]));
    common::schema::assert_conforms(&one, "ActionRecord");
    assert_eq!(one["ack"], "done", "{one}");
    assert_eq!(one["acks"][1]["detail"], "drained in 2 s", "{one}");
    // Unknown commands and bad bodies are clear errors.
    let (status, body) = p.post(
        "/api/v1/commands/action-999/ack",
        "application/json",
        r#"{"outcome":"done"}"#,
    );
    assert_eq!(status, 404, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("action-999"),
        "{body}"
    );
    let (status, body) = p.post(
        &format!("/api/v1/commands/{id}/ack"),
        "application/json",
        r#"{"outcome":"maybe"}"#,
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = p.get("/api/phase4/actions/x");
    assert_eq!(status, 400, "{body}");

    // The same target again within its cooldown (10 min by default): refused, recorded once.
    let v = p.poll(
        "/api/phase4/actions?outcome=cooldown",
        Duration::from_secs(10),
        |v| v["count"].as_u64() > Some(0),
    );
    assert_eq!(v["actions"][0]["refusal"]["reason"], "cooldown");
    common::schema::assert_conforms(&v, "ActionList");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        actions(&p, "?outcome=cooldown").len(),
        1,
        "one record per episode"
    );

    // The kill switch: refused as paused, before anything else.
    let (status, body) = p.post("/api/phase4/actions/pause", "application/json", "");
    assert_eq!(
        (status, &body["paused"]),
        (200, &Value::Bool(true)),
        "{body}"
    );
    let v = p.poll(
        "/api/phase4/actions?outcome=paused",
        Duration::from_secs(10),
        |v| v["count"].as_u64() > Some(0),
    );
    assert_eq!(v["paused"], true);
    let (status, body) = p.post("/api/phase4/actions/resume", "application/json", "");
    assert_eq!(
        (status, &body["was_paused"]),
        (200, &Value::Bool(true)),
        "{body}"
    );
    p.stop();
}

#[test]
fn a_rule_with_an_unknown_action_is_refused_naming_file_rule_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yml");
    std::fs::write(&file, rules("reboot")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(["check-config", "--rules"])
        .arg(&file)
        .env("PULSE_RULES_BUILTIN_PACK", "false")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("bad.yml")
            && text.contains("alert \"Drain\" (line 5)")
            && text.contains("annotations.pulse_action: unknown action \"reboot\""),
        "{text}"
    );
}

/// Answers every HTTP request on a free port with `status`, and sends each request's body
/// on the channel.
fn http_receiver(status: u16) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            // Headers, then as much body as Content-Length says.
            loop {
                let n = s.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        let _ = tx.send(body.to_string());
                        break;
                    }
                }
            }
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, rx)
}

#[test]
fn webhook_actions_post_the_record_and_failures_are_recorded() {
    let (url, bodies) = http_receiver(200);
    let (bad_url, _) = http_receiver(500);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = format!("{PIPELINE}\n[anomaly]\nenabled = false\n");
    let two = format!(
        "{}      - alert: Hook500\n        expr: DCGM_FI_DEV_GPU_UTIL{{gpu=\"1\"}} >= 0\n        annotations:\n          pulse_action: \"webhook:{bad_url}\"\n",
        rules(&format!("webhook:{url}"))
    );
    let p = Pulse::start_with_files(
        dir.path(),
        &pipeline,
        &two,
        &[
            ("PULSE_ACTIONS_DRY_RUN", "false"),
            ("PULSE_RULES_BUILTIN_PACK", "false"),
        ],
    );
    let body = bodies
        .recv_timeout(Duration::from_secs(20))
        .expect("a POST");
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sent["rule"], "Drain");
    assert_eq!(sent["labels"]["gpu"], "0");
    let v = p.poll(
        "/api/phase4/actions?rule=Drain&outcome=executed",
        Duration::from_secs(10),
        |v| v["count"].as_u64() > Some(0),
    );
    assert_eq!(v["actions"][0]["webhook"]["status"], 200, "{v}");
    // HTTP 500 three times (the first try and webhook_retries = 2): failed, recorded.
    let v = p.poll(
        "/api/phase4/actions?rule=Hook500&outcome=failed",
        Duration::from_secs(20),
        |v| v["count"].as_u64() > Some(0),
    );
    common::schema::assert_conforms(&v, "ActionList");
    let w = &v["actions"][0]["webhook"];
    assert_eq!(
        (w["status"].as_u64(), w["tries"].as_u64()),
        (Some(500), Some(3)),
        "{v}"
    );
    p.stop();
}

#[test]
fn records_and_cooldowns_survive_a_restart_with_redis() {
    let port = common::free_port();
    let _redis = common::redis::RedisServer::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        Pulse::start_with_files(
            dir.path(),
            PIPELINE,
            &rules("command:drain"),
            &[
                ("PULSE_ACTIONS_DRY_RUN", "false"),
                ("PULSE_RULES_BUILTIN_PACK", "false"),
                ("PULSE_REDIS_URL", url.as_str()),
            ],
        )
    };
    let p = start();
    let v = p.poll(
        "/api/phase4/actions?outcome=executed",
        Duration::from_secs(20),
        |v| v["count"].as_u64() > Some(0),
    );
    let first = v["actions"][0].clone();
    // Kept in Redis as the API shows it.
    let mut conn = common::redis::connection(port).unwrap();
    let kept: String = redis::cmd("HGET")
        .arg("pulse:actions:records")
        .arg(first["id"].as_u64().unwrap())
        .query(&mut conn)
        .unwrap();
    let kept: Value = serde_json::from_str(&kept).unwrap();
    assert_eq!(kept["command"], first["command"]);
    p.kill9();

    // After `kill -9`: the record is back, and the GPU is still in its cooldown (no second
    // drain of a GPU drained seconds ago).
    let p = start();
    let v = p.poll(
        "/api/phase4/actions?outcome=cooldown",
        Duration::from_secs(20),
        |v| v["count"].as_u64() > Some(0),
    );
    assert_eq!(
        v["actions"][0]["refusal"]["last_at_ms"], first["at_ms"],
        "{v}"
    );
    let executed = actions(&p, "?outcome=executed");
    assert_eq!(executed.len(), 1, "{executed:?}");
    assert_eq!(executed[0]["id"], first["id"]);
    assert!(
        v["actions"][0]["id"].as_u64() > first["id"].as_u64(),
        "ids go on"
    );
    p.stop();
}

#[test]
fn the_python_worker_of_the_docs_acknowledges_a_command() {
    // The block from docs/actions.md, as written there.
    let doc = std::fs::read_to_string("docs/actions.md").unwrap();
    let code = doc
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a python block in docs/actions.md");
    let dir = tempfile::tempdir().unwrap();
    let worker = dir.path().join("worker.py");
    std::fs::write(&worker, code).unwrap();
    // The alert fires 3 s after start: the worker is listening by then.
    let rules = rules("command:drain").replace(
        "        annotations:",
        "        for: 3s\n        annotations:",
    );
    let p = Pulse::start_with_files(
        dir.path(),
        PIPELINE,
        &rules,
        &[
            ("PULSE_ACTIONS_DRY_RUN", "false"),
            ("PULSE_RULES_BUILTIN_PACK", "false"),
        ],
    );
    let mut child = std::process::Command::new("python3")
        .arg(&worker)
        .env("PULSE_URL", &p.base)
        .env("WORKER_HOST", "sim-host")
        .env("WORKER_GPU", "0")
        .env("WORKER_ONCE", "1")
        .spawn()
        .expect("python3");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the worker did not acknowledge within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the worker failed: {status}");
    let done = actions(&p, "?outcome=executed");
    assert_eq!(done[0]["ack"], "done", "{done:?}");
    let acks = done[0]["acks"].as_array().unwrap();
    assert!(
        acks.iter()
            .any(|a| a["detail"] == "drain on GPU 0 of sim-host"),
        "{acks:?}"
    );
    p.stop();
}
