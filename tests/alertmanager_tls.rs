//! Alerts reach an Alertmanager that serves `https`, as Prometheus' `tls_config` would
//! reach it: a CA to trust (`alerting.ca_file`) and a client certificate for one that
//! asks (`alerting.cert_file`, `key_file`). The certificates are made by `openssl` for
//! each test; `.ci/run` installs it with Alertmanager.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::alertmanager::{am_component, from_alertmanager, now_s, receiver, rules, Alertmanager};
use common::process::Pulse;
use pulse::sinks::alertmanager::config::TlsClient;

/// A CA, a server certificate for 127.0.0.1 and a client certificate signed by it, made
/// with `openssl` in `dir`: the path of the CA's certificate, and Alertmanager's
/// `tls_server_config` serving the server certificate (`server.pem`, `server.key`; the
/// client's are `client.pem`, `client.key`).
fn certificates(dir: &Path) -> (PathBuf, String) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is not installed: apt-get install openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=pulse test CA",
            ],
        ]
        .concat(),
    );
    // A key and a certificate `name`.pem for `subject`, signed by the CA with the
    // extensions `ext`.
    let signed = |name: &str, subject: &str, ext: &str| {
        let (key, csr, pem, ext_file) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &["-keyout", &key, "-out", &csr, "-subj", subject],
            ]
            .concat(),
        );
        std::fs::write(dir.join(&ext_file), format!("{ext}\n")).unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext_file,
        ]);
    };
    signed("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1");
    signed("client", "/CN=pulse", "extendedKeyUsage=clientAuth");
    let server = format!(
        "  cert_file: {}\n  key_file: {}\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    );
    (dir.join("ca.pem"), server)
}

#[test]
fn alerts_reach_an_alertmanager_over_https_that_trusts_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, server) = certificates(dir.path());
    let ca = ca.to_str().unwrap();
    let tls = TlsClient::new(Some(ca), None).unwrap();
    let agent = ureq::AgentBuilder::new().tls_config(tls.0).build();
    let (receiver_port, mut inbox) = receiver();
    let port = common::free_port();
    let _am = Alertmanager::start_with(dir.path(), port, receiver_port, Some((server, agent)));
    let am_url = format!("https://127.0.0.1:{port}");
    let rule_file = rules(dir.path(), now_s() + 600);

    // Without the CA, the certificate is refused, and status says why.
    let untrusting = Pulse::start(&[
        ("PULSE_RULES_BUILTIN_PACK", "false"),
        ("PULSE_RULE_PATHS", rule_file.as_str()),
        ("PULSE_ALERTMANAGER_URLS", am_url.as_str()),
    ]);
    let status = untrusting.poll("/api/phase4/status", Duration::from_secs(20), |s| {
        am_component(s)["state"] == "degraded"
    });
    let reason = am_component(&status)["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("UnknownIssuer"), "{reason}");
    drop(untrusting);
    assert!(
        inbox.rx.try_recv().is_err(),
        "nothing got through untrusted"
    );

    // With `alerting.ca_file` the alert is delivered.
    let pulse = Pulse::start(&[
        ("PULSE_RULES_BUILTIN_PACK", "false"),
        ("PULSE_RULE_PATHS", rule_file.as_str()),
        ("PULSE_ALERTMANAGER_URLS", am_url.as_str()),
        ("PULSE_ALERTING_CA_FILE", ca),
    ]);
    let (_, firing) = inbox.wait_for(Duration::from_secs(20), |v| from_alertmanager(v, "firing"));
    assert_eq!(firing["alerts"][0]["labels"]["gpu"], "3");
    let (_, status) = pulse.get("/api/phase4/status");
    assert_eq!(am_component(&status)["state"], "operational", "{status}");
}

#[test]
fn an_alertmanager_that_asks_for_a_client_certificate_gets_pulses() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, server) = certificates(dir.path());
    let ca = ca.to_str().unwrap();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (cert, key) = (file("client.pem"), file("client.key"));
    let server =
        format!("{server}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {ca}\n");
    let tls = TlsClient::new(Some(ca), Some((cert.as_str(), key.as_str()))).unwrap();
    let agent = ureq::AgentBuilder::new().tls_config(tls.0).build();
    let (receiver_port, mut inbox) = receiver();
    let port = common::free_port();
    let _am = Alertmanager::start_with(dir.path(), port, receiver_port, Some((server, agent)));
    let am_url = format!("https://127.0.0.1:{port}");
    let rule_file = rules(dir.path(), now_s() + 600);
    let env = [
        ("PULSE_RULES_BUILTIN_PACK", "false"),
        ("PULSE_RULE_PATHS", rule_file.as_str()),
        ("PULSE_ALERTMANAGER_URLS", am_url.as_str()),
        ("PULSE_ALERTING_CA_FILE", ca),
    ];

    // Trusting the server is not enough: without a client certificate nothing gets in.
    let anonymous = Pulse::start(&env);
    anonymous.poll("/api/phase4/status", Duration::from_secs(20), |s| {
        am_component(s)["state"] == "degraded"
    });
    drop(anonymous);
    assert!(
        inbox.rx.try_recv().is_err(),
        "delivered without a client certificate"
    );

    // With `alerting.cert_file` and `key_file` the alert is delivered.
    let with_cert = [
        ("PULSE_ALERTING_CERT_FILE", cert.as_str()),
        ("PULSE_ALERTING_KEY_FILE", key.as_str()),
    ];
    let pulse = Pulse::start(&[&env[..], &with_cert].concat());
    let (_, firing) = inbox.wait_for(Duration::from_secs(20), |v| from_alertmanager(v, "firing"));
    assert_eq!(firing["alerts"][0]["labels"]["gpu"], "3");
    let (_, status) = pulse.get("/api/phase4/status");
    assert_eq!(am_component(&status)["state"], "operational", "{status}");
}
