//! Alerts reach an Alertmanager that serves `https`, as Prometheus' `tls_config` would
//! reach it: a CA to trust (`alerting.ca_file`) and a client certificate for one that
//! asks (`alerting.cert_file`, `key_file`); the rules' action webhooks reach an `https`
//! URL trusting the same CA. The certificates are made by `openssl` for each test;
//! `.ci/run` installs it with Alertmanager.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::alertmanager::{
    am_component, from_alertmanager, now_s, receiver, rules, Alertmanager, Inbox,
};
use common::process::Pulse;
use pulse::TlsClient;

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

/// Alertmanager serving `https` with `server` (its `tls_server_config`), routing to a
/// receiver, reached by the test through `tls`; its URL and a rule file firing at once.
fn https_alertmanager(
    dir: &Path,
    server: String,
    tls: TlsClient,
) -> (Alertmanager, Inbox, String, String) {
    let agent = ureq::AgentBuilder::new().tls_config(tls.0).build();
    let (receiver_port, inbox) = receiver();
    let port = common::free_port();
    let am = Alertmanager::start_with(dir, port, receiver_port, Some((server, agent)));
    let rule_file = rules(dir, now_s() + 600);
    (am, inbox, format!("https://127.0.0.1:{port}"), rule_file)
}

#[test]
fn alerts_reach_an_alertmanager_over_https_that_trusts_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, server) = certificates(dir.path());
    let ca = ca.to_str().unwrap();
    let tls = TlsClient::new(Some(ca), None).unwrap();
    let (_am, mut inbox, am_url, rule_file) = https_alertmanager(dir.path(), server, tls);

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
    let (_am, mut inbox, am_url, rule_file) = https_alertmanager(dir.path(), server, tls);
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

/// An `https` server (Python's standard library, on a free loopback port, serving
/// `server.pem` from `dir`) that answers every POST 200 and passes its body on.
fn https_receiver(dir: &Path) -> (Server, u16, mpsc::Receiver<String>) {
    const SERVER: &str = r#"
import http.server, ssl, sys
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        print(body.decode(), flush=True)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain("server.pem", "server.key")
server.socket = tls.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
    let mut child = Command::new("python3")
        .args(["-c", SERVER])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = lines.next().unwrap().unwrap().trim().parse().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (Server(child), port, rx)
}

/// The receiver's process, stopped when the test ends, failed or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn action_webhooks_reach_https_urls_trusting_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = certificates(dir.path());
    let ca = ca.to_str().unwrap();
    let (_server, port, bodies) = https_receiver(dir.path());
    let rules = format!(
        "groups:\n  - name: act\n    interval: 1s\n    rules:\n      - alert: Drain\n        expr: DCGM_FI_DEV_GPU_UTIL{{gpu=\"0\"}} >= 0\n        annotations:\n          pulse_action: \"webhook:https://127.0.0.1:{port}/hook\"\n"
    );
    let pipeline = "[anomaly]\nenabled = false\n";
    let env = [
        ("PULSE_ACTIONS_DRY_RUN", "false"),
        ("PULSE_RULES_BUILTIN_PACK", "false"),
    ];
    let actions = |outcome: &str| format!("/api/phase4/actions?rule=Drain&outcome={outcome}");
    let done = |v: &serde_json::Value| v["count"].as_u64() > Some(0);

    // Without the CA the server's certificate is refused: failed, and the record says why.
    let untrusting = Pulse::start_with_files(dir.path(), pipeline, &rules, &env);
    let v = untrusting.poll(&actions("failed"), Duration::from_secs(30), done);
    let webhook = &v["actions"][0]["webhook"];
    assert!(
        webhook["error"]
            .as_str()
            .unwrap_or_default()
            .contains("UnknownIssuer"),
        "{v}"
    );
    drop(untrusting);
    assert!(bodies.try_recv().is_err(), "nothing got through untrusted");

    // Trusting `alerting.ca_file`, the record is posted.
    let with_ca = [&env[..], &[("PULSE_ALERTING_CA_FILE", ca)]].concat();
    let pulse = Pulse::start_with_files(dir.path(), pipeline, &rules, &with_ca);
    let body = bodies
        .recv_timeout(Duration::from_secs(30))
        .expect("a POST");
    let sent: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sent["rule"], "Drain", "{sent}");
    let v = pulse.poll(&actions("executed"), Duration::from_secs(10), done);
    assert_eq!(v["actions"][0]["webhook"]["status"], 200, "{v}");
}
