//! A real Alertmanager for the delivery tests (Debian's `prometheus-alertmanager`, on a
//! free loopback port, routing everything to a webhook receiver the test serves), the
//! receiver, and a rule file that fires at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

/// An HTTP server that passes each POSTed JSON body on, with when it arrived.
pub fn receiver() -> (u16, Inbox) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if let Ok(v) = serde_json::from_slice(&body) {
                let _ = tx.send((SystemTime::now(), v));
            }
        }
    });
    (
        port,
        Inbox {
            rx,
            seen: Vec::new(),
        },
    )
}

pub struct Alertmanager {
    child: Child,
    pub port: u16,
}

impl Alertmanager {
    /// Starts Alertmanager on `port`, routing everything to the receiver at once
    /// (`group_wait` 1 s, `group_interval` 1 s).
    pub fn start(dir: &Path, port: u16, receiver_port: u16) -> Alertmanager {
        Self::start_with(dir, port, receiver_port, None)
    }

    /// The same, serving `https` as `tls` says: the `tls_server_config` of Alertmanager's
    /// `--web.config.file`, and the client that can reach it.
    pub fn start_with(
        dir: &Path,
        port: u16,
        receiver_port: u16,
        tls: Option<(String, ureq::Agent)>,
    ) -> Alertmanager {
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: test\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    webhook_configs:\n      - url: http://127.0.0.1:{receiver_port}/\n        send_resolved: true\n"
            ),
        )
        .unwrap();
        let mut command = Command::new("prometheus-alertmanager");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (scheme, agent) = match tls {
            Some((server_config, agent)) => {
                let web = dir.join("web.yml");
                std::fs::write(&web, format!("tls_server_config:\n{server_config}")).unwrap();
                command.arg(format!("--web.config.file={}", web.display()));
                ("https", agent)
            }
            None => ("http", ureq::agent()),
        };
        let child = command.spawn().expect(
            "prometheus-alertmanager is not installed: apt-get install prometheus-alertmanager",
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent
            .get(&format!("{scheme}://127.0.0.1:{port}/-/ready"))
            .call()
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "alertmanager did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Alertmanager { child, port }
    }

    pub fn silences(&self) -> Value {
        let url = format!("http://127.0.0.1:{}/api/v2/silences", self.port);
        ureq::get(&url).call().unwrap().into_json().unwrap()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A rule file whose alert fires at once and resolves at Unix time `end_s`.
pub fn rules(dir: &Path, end_s: u64) -> String {
    let path = dir.join("rules.yml");
    std::fs::write(
        &path,
        format!(
            "groups:\n  - name: delivery\n    interval: 1s\n    rules:\n      - alert: PulseDeliveryTest\n        expr: label_replace(vector(time()), \"gpu\", \"3\", \"\", \"\") < {end_s}\n        labels:\n          severity: page\n          team: gpu\n        annotations:\n          summary: 'Delivery test for GPU {{{{ $labels.gpu }}}}'\n          link: '{{{{ $externalURL }}}}'\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What the receiver got, kept so that waiting for one body does not lose another.
pub struct Inbox {
    pub rx: mpsc::Receiver<(SystemTime, Value)>,
    pub seen: Vec<(SystemTime, Value)>,
}

impl Inbox {
    /// The first body `want` accepts, arrived or arriving within `within`.
    pub fn wait_for(
        &mut self,
        within: Duration,
        want: impl Fn(&Value) -> bool,
    ) -> (SystemTime, Value) {
        if let Some(found) = self.seen.iter().find(|(_, v)| want(v)) {
            return found.clone();
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((at, v)) => {
                    self.seen.push((at, v.clone()));
                    if want(&v) {
                        return (at, v);
                    }
                }
                Err(_) => panic!(
                    "no matching notification within {within:?}: got {:?}",
                    self.seen
                ),
            }
        }
    }
}

pub fn from_alertmanager(v: &Value, status: &str) -> bool {
    v["receiver"] == "test"
        && v["status"] == status
        && v["alerts"][0]["labels"]["alertname"] == "PulseDeliveryTest"
}

/// The component of the Alertmanager in a status answer.
pub fn am_component(status: &Value) -> Value {
    status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("alertmanager "))
        .unwrap_or_else(|| panic!("no alertmanager in status: {status}"))
        .clone()
}
