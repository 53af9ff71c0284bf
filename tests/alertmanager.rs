//! Alerts reach people: Pulse sends firing and resolved alerts to a real Alertmanager
//! (Debian's `prometheus-alertmanager`, started here on a free loopback port, routing to a
//! webhook receiver this test serves) and straight to a webhook, and keeps alerts queued
//! (bounded, every drop counted) through a 30 s Alertmanager outage. `.ci/run` installs the package; without it the tests say so
//! and fail.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::alertmanager::{
    am_component, from_alertmanager, now_s, receiver, rules, Alertmanager, Inbox,
};
use common::process::Pulse;
use serde_json::Value;

#[test]
fn firing_and_resolved_alerts_reach_alertmanager_and_a_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver_port, mut inbox) = receiver();
    let am = Alertmanager::start(dir.path(), common::free_port(), receiver_port);
    let am_url = format!("http://127.0.0.1:{}", am.port);
    let webhook = format!("http://127.0.0.1:{receiver_port}/direct");
    let rule_file = rules(dir.path(), now_s() + 8);
    let pulse = Pulse::start(&[
        ("PULSE_RULES_BUILTIN_PACK", "false"),
        ("PULSE_RULE_PATHS", rule_file.as_str()),
        ("PULSE_ALERTMANAGER_URLS", am_url.as_str()),
        ("PULSE_ALERTING_WEBHOOK_URLS", webhook.as_str()),
    ]);

    // Alertmanager's notification, with the rule's labels and templated annotation.
    let (at, firing) = inbox.wait_for(Duration::from_secs(20), |v| from_alertmanager(v, "firing"));
    let alert = &firing["alerts"][0];
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["team"], "gpu");
    assert_eq!(alert["labels"]["gpu"], "3");
    assert_eq!(alert["annotations"]["summary"], "Delivery test for GPU 3");
    // Without rules.external_url, templates and links name the address Pulse bound.
    assert_eq!(alert["annotations"]["link"], pulse.base.as_str(), "{alert}");
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/api/phase4/alerts/active#alert-", pulse.base)),
        "{alert}"
    );
    let starts = alert["startsAt"].as_str().unwrap().to_string();
    eprintln!("firing notification at {at:?}, alert startsAt {starts}");

    // Pulse's status lists the Alertmanager, healthy.
    let (_, status) = pulse.get("/api/phase4/status");
    let am_component = status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("alertmanager "))
        .unwrap_or_else(|| panic!("no alertmanager in status: {status}"));
    assert_eq!(am_component["state"], "operational", "{am_component}");

    // The webhook got Alertmanager's payload, version 4, from Pulse itself.
    let (_, direct) = inbox.wait_for(Duration::from_secs(5), |v| {
        v["receiver"] == "pulse" && v["status"] == "firing"
    });
    assert_eq!(direct["version"], "4");
    assert_eq!(direct["groupLabels"]["alertname"], "PulseDeliveryTest");
    assert_eq!(direct["commonLabels"]["team"], "gpu");

    // It resolves: Alertmanager says so too.
    let (_, resolved) = inbox.wait_for(Duration::from_secs(25), |v| {
        from_alertmanager(v, "resolved")
    });
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["startsAt"].as_str().unwrap(), starts);
    assert!(am.silences().as_array().unwrap().is_empty());

    let metrics = pulse.get_text("/metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "pulse_component_emitted_total{component=\"alertmanager http://127.0.0.1:"
        ) && !l.ends_with(" 0")),
        "no delivered alerts counted in /metrics"
    );
}

/// The `n` labels of the `OutageTest` alerts in firing notifications so far.
fn outage_alerts(inbox: &Inbox) -> std::collections::BTreeSet<String> {
    inbox
        .seen
        .iter()
        .filter(|(_, v)| v["status"] == "firing")
        .flat_map(|(_, v)| v["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == "OutageTest")
        .map(|a| a["labels"]["n"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_30_s_outage_loses_nothing_within_the_queue_bound_and_counts_every_drop() {
    const QUEUE: usize = 5;
    const FIRED: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let (receiver_port, mut inbox) = receiver();
    let port = common::free_port();
    let am = Alertmanager::start(dir.path(), port, receiver_port);
    // One alert fires at once; eight more fire together once Alertmanager is down.
    let outage_from = now_s() + 12;
    let eight: Vec<String> = (1..=FIRED)
        .map(|n| format!("label_replace(vector(time()), \"n\", \"{n}\", \"\", \"\")"))
        .collect();
    let rules_path = dir.path().join("outage.yml");
    std::fs::write(
        &rules_path,
        format!(
            "groups:\n  - name: outage\n    interval: 1s\n    rules:\n      - alert: PulseDeliveryTest\n        expr: vector(1)\n      - alert: OutageTest\n        expr: '({}) > {outage_from}'\n",
            eight.join(" or ")
        ),
    )
    .unwrap();
    let config = dir.path().join("pulse.toml");
    std::fs::write(
        &config,
        format!(
            "[alerting]\nalertmanager_urls = [\"http://127.0.0.1:{port}\"]\nqueue_capacity = {QUEUE}\nresend_delay_ms = 600000\n"
        ),
    )
    .unwrap();
    let pulse = Pulse::start(&[
        ("PULSE_CONFIG", config.to_str().unwrap()),
        ("PULSE_RULES_BUILTIN_PACK", "false"),
        ("PULSE_RULE_PATHS", rules_path.to_str().unwrap()),
    ]);
    inbox.wait_for(Duration::from_secs(20), |v| from_alertmanager(v, "firing"));

    // Alertmanager goes away for 30 s; meanwhile eight alerts fire into a queue of five.
    drop(am);
    let down_at = Instant::now();
    assert!(
        now_s() < outage_from,
        "Alertmanager went down after the alerts fired"
    );
    let degraded = pulse.poll("/api/phase4/status", Duration::from_secs(25), |s| {
        let c = am_component(s);
        c["state"] == "degraded" && c["dropped_total"] == (FIRED - QUEUE) as u64
    });
    let component = am_component(&degraded);
    assert!(
        component["reason"]
            .as_str()
            .unwrap()
            .contains("alerts queued"),
        "{component}"
    );
    assert_eq!(
        component["extra"]["alerts_queued"], QUEUE as f64,
        "{component}"
    );
    assert_eq!(degraded["status"], "degraded");
    let name = component["name"].as_str().unwrap();
    let metrics = pulse.get_text("/metrics");
    let dropped = format!(
        "pulse_component_dropped_total{{component=\"{name}\"}} {}",
        FIRED - QUEUE
    );
    assert!(
        metrics.lines().any(|l| l == dropped),
        "no `{dropped}` in /metrics"
    );
    std::thread::sleep(Duration::from_secs(30).saturating_sub(down_at.elapsed()));
    assert!(outage_alerts(&inbox).is_empty());

    // It returns: the queue is delivered without waiting for a resend, five alerts (the
    // three oldest were dropped, counted), and status is healthy again.
    let _am = Alertmanager::start(dir.path(), port, receiver_port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while outage_alerts(&inbox).len() < QUEUE {
        assert!(Instant::now() < deadline, "got {:?}", outage_alerts(&inbox));
        let _ = inbox
            .rx
            .recv_timeout(Duration::from_millis(200))
            .map(|m| inbox.seen.push(m));
    }
    std::thread::sleep(Duration::from_secs(3));
    while let Ok(m) = inbox.rx.try_recv() {
        inbox.seen.push(m);
    }
    assert_eq!(
        outage_alerts(&inbox).len(),
        QUEUE,
        "{:?}",
        outage_alerts(&inbox)
    );
    let recovered = pulse.poll("/api/phase4/status", Duration::from_secs(10), |s| {
        am_component(s)["state"] == "operational"
    });
    let component = am_component(&recovered);
    assert_eq!(component["dropped_total"], (FIRED - QUEUE) as u64);
    assert_eq!(component["extra"]["alerts_queued"], 0.0, "{component}");
}

#[test]
fn a_bad_alerting_setting_stops_pulse_with_the_field_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(["serve"])
        .env("PULSE_LISTEN", "127.0.0.1:0")
        .env("PULSE_ALERTMANAGER_URLS", "https://am.example:9093")
        .env("PULSE_ALERTING_CA_FILE", "/nonexistent/am-ca.pem")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("alerting.ca_file") && err.contains("/nonexistent/am-ca.pem"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(["serve"])
        .env("PULSE_LISTEN", "127.0.0.1:0")
        .env("PULSE_ALERTMANAGER_URLS", "am.example:9093")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("alerting.alertmanager_urls")
            && err.contains("not an http:// or https:// URL"),
        "{err}"
    );
}

/// The first Alertmanager silence `want` accepts, within 15 s.
fn wait_silence(am: &Alertmanager, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(s) = am.silences().as_array().unwrap().iter().find(|s| want(s)) {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no such silence: {}",
            am.silences()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_silence_made_before_a_restart_still_goes_when_its_alert_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver_port, _inbox) = receiver();
    let am = Alertmanager::start(dir.path(), common::free_port(), receiver_port);
    let am_url = format!("http://127.0.0.1:{}", am.port);
    let resolves_at = now_s() + 25;
    let rule_file = rules(dir.path(), resolves_at);
    let env = [
        ("PULSE_RULES_BUILTIN_PACK", "false"),
        ("PULSE_RULE_PATHS", rule_file.as_str()),
        ("PULSE_ALERTMANAGER_URLS", am_url.as_str()),
        ("PULSE_ALERTING_SILENCE_ON_ACK", "true"),
        ("PULSE_ALERTING_SILENCE_SYNC_MS", "300"),
    ];
    let firing = |pulse: &Pulse| {
        let active = pulse.poll(
            "/api/phase4/alerts/active?state=firing",
            Duration::from_secs(20),
            |v| v["alerts"].as_array().is_some_and(|a| !a.is_empty()),
        );
        active["alerts"][0]["id"].as_str().unwrap().to_string()
    };
    let first = Pulse::start(&env);
    let id = firing(&first);
    let (code, _) = first.post(
        &format!("/api/phase4/alerts/{id}/acknowledge"),
        "application/json",
        r#"{"by": "alice"}"#,
    );
    assert_eq!(code, 200);
    let silence = wait_silence(&am, |s| s["status"]["state"] == "active");
    let silence_id = silence["id"].as_str().unwrap().to_string();
    first.stop();

    // A new process (no Redis: the acknowledgement itself is gone) sees the same alert
    // fire, takes the silence back as its own, and removes it when the alert resolves.
    let second = Pulse::start(&env);
    assert_eq!(firing(&second), id);
    assert!(
        now_s() < resolves_at,
        "the alert resolved before the restart was done"
    );
    // Still there shortly before then.
    std::thread::sleep(Duration::from_secs(resolves_at.saturating_sub(now_s() + 2)));
    let ours = |s: &Value| s["id"] == silence_id.as_str();
    let silences = am.silences();
    let before = silences
        .as_array()
        .unwrap()
        .iter()
        .find(|s| ours(s))
        .unwrap();
    assert_eq!(before["status"]["state"], "active", "{before}");
    wait_silence(&am, |s| ours(s) && s["status"]["state"] == "expired");
    assert!(
        now_s() >= resolves_at,
        "the silence went before its alert resolved"
    );
    assert_eq!(
        am.silences().as_array().unwrap().len(),
        1,
        "a second silence was made"
    );
}

#[test]
fn an_acknowledgement_is_a_silence_and_alertmanager_silences_show_in_pulse() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver_port, _inbox) = receiver();
    let am = Alertmanager::start(dir.path(), common::free_port(), receiver_port);
    let am_url = format!("http://127.0.0.1:{}", am.port);
    let rule_file = rules(dir.path(), now_s() + 3600);
    let pulse = Pulse::start(&[
        ("PULSE_RULES_BUILTIN_PACK", "false"),
        ("PULSE_RULE_PATHS", rule_file.as_str()),
        ("PULSE_ALERTMANAGER_URLS", am_url.as_str()),
        ("PULSE_ALERTING_SILENCE_ON_ACK", "true"),
        ("PULSE_ALERTING_SILENCE_SYNC_MS", "300"),
    ]);
    let active = pulse.poll(
        "/api/phase4/alerts/active?state=firing",
        Duration::from_secs(20),
        |v| v["alerts"].as_array().is_some_and(|a| !a.is_empty()),
    );
    let id = active["alerts"][0]["id"].as_str().unwrap().to_string();

    // Acknowledge: one silence of exactly this alert, by pulse:<who>, with the comment.
    let (code, _) = pulse.post(
        &format!("/api/phase4/alerts/{id}/acknowledge"),
        "application/json",
        r#"{"by": "alice", "comment": "draining the node"}"#,
    );
    assert_eq!(code, 200);
    let silence = wait_silence(&am, |s| s["status"]["state"] == "active");
    assert_eq!(silence["createdBy"], "pulse:alice");
    assert_eq!(silence["comment"], "draining the node");
    let matchers = silence["matchers"].as_array().unwrap();
    for (name, value) in [
        ("alertname", "PulseDeliveryTest"),
        ("gpu", "3"),
        ("team", "gpu"),
    ] {
        assert!(
            matchers
                .iter()
                .any(|m| m["name"] == name && m["value"] == value && m["isRegex"] == false),
            "{silence}"
        );
    }
    let silence_id = silence["id"].as_str().unwrap().to_string();
    // Acknowledging again makes no second silence.
    pulse.post(
        &format!("/api/phase4/alerts/{id}/acknowledge"),
        "application/json",
        r#"{"by": "bob"}"#,
    );
    let silenced = pulse.poll("/api/phase4/alerts/active", Duration::from_secs(10), |v| {
        v["alerts"][0]["silenced_by"][0] == silence_id.as_str()
    });
    assert_eq!(silenced["alerts"][0]["acknowledgement"]["by"], "alice");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(am.silences().as_array().unwrap().len(), 1);

    // Expired in Alertmanager: the acknowledgement is cleared in Pulse.
    ureq::delete(&format!("{am_url}/api/v2/silence/{silence_id}"))
        .call()
        .unwrap();
    pulse.poll("/api/phase4/alerts/active", Duration::from_secs(10), |v| {
        v["alerts"][0]["acknowledgement"].is_null() && v["alerts"][0].get("silenced_by").is_none()
    });

    // A silence made in Alertmanager shows the alert as silenced in Pulse.
    let body = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "PulseDelivery.*", "isRegex": true, "isEqual": true}],
        "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "oncall",
        "comment": "maintenance",
    });
    let made: Value = ureq::post(&format!("{am_url}/api/v2/silences"))
        .send_json(body)
        .unwrap()
        .into_json()
        .unwrap();
    let theirs = made["silenceID"].as_str().unwrap();
    pulse.poll("/api/phase4/alerts/active", Duration::from_secs(10), |v| {
        v["alerts"][0]["silenced_by"][0] == theirs
    });
}
