//! Authentication, with the real binary: with `auth.token` set, every mutating endpoint
//! answers 401 (JSON body, `WWW-Authenticate`) without the bearer token or with a wrong
//! one, and does nothing; with it, it works. Reads are open unless `auth.protect_reads`.
//! Pulse says in its log when it listens beyond loopback, and whether that is protected.

mod common;

use common::process::{response, Pulse};
use serde_json::Value;

const TOKEN: &str = "s3cret-token-for-tests-0123";

/// The five mutating endpoints, with a body each would accept.
const MUTATING: [(&str, &str); 5] = [
    (
        "/api/v1/requests",
        r#"[{"route":"/auth-test","status":200,"latency_ms":5}]"#,
    ),
    ("/api/phase4/gpu/cleanup", r#"{"settle_ms":0}"#),
    ("/api/phase4/cache/clear", ""),
    (
        "/api/phase4/alerts/0000000000000000/acknowledge",
        r#"{"by":"ana"}"#,
    ),
    ("/api/v1/rules/reload", ""),
];

fn call(
    p: &Pulse,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, Value, Option<String>) {
    let mut req =
        ureq::request(method, &format!("{}{path}", p.base)).set("Content-Type", "application/json");
    if let Some(a) = auth {
        req = req.set("Authorization", a);
    }
    let r = if method == "GET" {
        req.call()
    } else {
        req.send_string(body)
    };
    let challenge = match &r {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => {
            resp.header("WWW-Authenticate").map(str::to_string)
        }
        Err(_) => None,
    };
    let (status, v) = response(r);
    (status, v, challenge)
}

/// `http_requests_total` of route `/auth-test`, summed, from `/metrics` (read with the token).
fn auth_test_requests(p: &Pulse) -> f64 {
    let (_, text, _) = call(p, "GET", "/metrics", Some(&format!("Bearer {TOKEN}")), "");
    let text = text.as_str().unwrap().to_string();
    text.lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains("route=\"/auth-test\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn mutating_endpoints_need_the_token_and_reads_stay_open() {
    let p = Pulse::start(&[("PULSE_AUTH_TOKEN", TOKEN), ("PULSE_LISTEN", "0.0.0.0:0")]);
    let log = p.startup_log.join("\n");
    assert!(
        log.contains("mutating endpoints need the bearer token, read endpoints are open"),
        "{log}"
    );

    for (path, body) in MUTATING {
        for auth in [
            None,
            Some("Bearer wrong-token-wrong-token"),
            Some(&*format!("Basic {TOKEN}")),
        ] {
            let (status, v, challenge) = call(&p, "POST", path, auth, body);
            assert_eq!(status, 401, "{path} {auth:?}: {v}");
            assert_eq!(v["error"], "unauthorized", "{v}");
            assert!(
                v["detail"].as_str().unwrap().contains("token")
                    || v["detail"].as_str().unwrap().contains("Bearer"),
                "{v}"
            );
            assert_eq!(challenge.as_deref(), Some("Bearer realm=\"pulse\""));
        }
    }
    // Nothing refused was taken: no request record of the refused ingests.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(auth_test_requests(&p), 0.0);

    // With the token: each does its work (the unknown alert id gets its own 404).
    let bearer = format!("Bearer {TOKEN}");
    let expected = [202, 200, 200, 404, 200];
    for ((path, body), want) in MUTATING.iter().zip(expected) {
        let (status, v, _) = call(&p, "POST", path, Some(&bearer), body);
        assert_eq!(status, want, "{path}: {v}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while auth_test_requests(&p) != 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the accepted record never counted"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The scheme is case-insensitive (RFC 7235).
    let lower = format!("bearer {TOKEN}");
    let (status, v, _) = call(&p, "POST", "/api/phase4/cache/clear", Some(&lower), "");
    assert_eq!(status, 200, "{v}");

    // Reads are open.
    for path in [
        "/api/phase4/status",
        "/api/phase4/dashboard/summary",
        "/metrics",
        "/",
    ] {
        let (status, v, _) = call(&p, "GET", path, None, "");
        assert_eq!(status, 200, "{path}: {v}");
    }
    p.stop();
}

#[test]
fn protect_reads_closes_reads_but_not_the_page() {
    let p = Pulse::start(&[
        ("PULSE_AUTH_TOKEN", TOKEN),
        ("PULSE_AUTH_PROTECT_READS", "true"),
    ]);
    let bearer = format!("Bearer {TOKEN}");
    for path in [
        "/api/phase4/status",
        "/api/phase4/dashboard/summary",
        "/metrics",
        "/api/phase4/alerts/active",
    ] {
        let (status, v, _) = call(&p, "GET", path, None, "");
        assert_eq!(status, 401, "{path}: {v}");
        let (status, v, _) = call(&p, "GET", path, Some(&bearer), "");
        assert_eq!(status, 200, "{path}: {v}");
    }
    // The live page's files hold no data; the page asks for the token for its calls. The
    // probes say only whether Pulse is up.
    for path in ["/", "/assets/pulse.js", "/healthz", "/readyz"] {
        let (status, _, _) = call(&p, "GET", path, None, "");
        assert_eq!(status, 200, "{path}");
    }
    p.stop();
}

#[test]
fn listening_beyond_loopback_without_a_token_is_said_and_a_short_token_is_refused() {
    let p = Pulse::start(&[("PULSE_LISTEN", "0.0.0.0:0")]);
    let log = p.startup_log.join("\n");
    assert!(
        log.contains("without authentication: set auth.token (PULSE_AUTH_TOKEN)"),
        "{log}"
    );
    p.stop();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pulse"))
        .arg("check-config")
        .env("PULSE_AUTH_TOKEN", "short")
        .env_remove("PULSE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PULSE_AUTH_TOKEN") && err.contains("at least 16 characters"),
        "{err}"
    );
}
