//! The real `pulse` binary as a child process on a free loopback port, and a blocking
//! HTTP client for it (ureq).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Pulse {
    child: Child,
    pub base: String,
    /// What Pulse logged up to its listening line (included).
    pub startup_log: Vec<String>,
    log: mpsc::Receiver<String>,
}

impl Pulse {
    /// Starts pulse with these extra environment variables; waits for its listening line.
    pub fn start(env: &[(&str, &str)]) -> Pulse {
        Pulse::start_as("serve", env)
    }

    /// Starts `pulse <command>` (`serve`, `agent`, `aggregate`) with these extra environment
    /// variables; waits for its listening line.
    pub fn start_as(command: &str, env: &[(&str, &str)]) -> Pulse {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pulse"));
        cmd.arg(command)
            .env("PULSE_LISTEN", "127.0.0.1:0")
            .env_remove("PULSE_CONFIG")
            .env_remove("PULSE_PIPELINE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut startup_log = Vec::new();
        let base = loop {
            let Ok(line) = log.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("pulse did not print its listening line");
            };
            startup_log.push(line.clone());
            if let Some(addr) = line.split("listening on ").nth(1) {
                break addr.trim().to_string();
            }
        };
        Pulse {
            child,
            base,
            startup_log,
            log,
        }
    }

    /// Starts pulse with this pipeline file and one rule file (written to `dir`), plus
    /// `env`.
    pub fn start_with_files(
        dir: &std::path::Path,
        pipeline: &str,
        rules: &str,
        env: &[(&str, &str)],
    ) -> Pulse {
        Pulse::start_with_files_as("serve", dir, pipeline, rules, env)
    }

    /// [`Pulse::start_with_files`] for `pulse <command>`.
    pub fn start_with_files_as(
        command: &str,
        dir: &std::path::Path,
        pipeline: &str,
        rules: &str,
        env: &[(&str, &str)],
    ) -> Pulse {
        let pipeline_path = dir.join("pipeline.toml");
        std::fs::write(&pipeline_path, pipeline).unwrap();
        let rules_dir = dir.join("rules");
        std::fs::create_dir_all(&rules_dir).unwrap();
        std::fs::write(rules_dir.join("test.yml"), rules).unwrap();
        let rule_paths = format!("[{:?}]", rules_dir.to_str().unwrap());
        let mut all = vec![
            ("PULSE_PIPELINE", pipeline_path.to_str().unwrap()),
            ("PULSE_RULE_PATHS", rule_paths.as_str()),
        ];
        all.extend_from_slice(env);
        Pulse::start_as(command, &all)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        response(ureq::get(&format!("{}{path}", self.base)).call())
    }

    pub fn get_text(&self, path: &str) -> String {
        ureq::get(&format!("{}{path}", self.base))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    }

    pub fn post(&self, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        response(
            ureq::post(&format!("{}{path}", self.base))
                .set("Content-Type", content_type)
                .send_string(body),
        )
    }

    /// Polls until `ready` accepts the body, for at most `within`.
    pub fn poll(&self, path: &str, within: Duration, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (status, v) = self.get(path);
            if status == 200 && ready(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{path} not ready within {within:?}: {v}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the log lines printed until exit.
    pub fn stop(mut self) -> Vec<String> {
        Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "pulse exited with {status}");
        // The reader thread may still be passing on the last lines: read until it reaches
        // the end of stderr (the channel closes), for at most 5 s.
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(line) = self
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            lines.push(line);
        }
        lines
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub fn response(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let resp = match r {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("{e}"),
    };
    let status = resp.status();
    let mut body = String::new();
    resp.into_reader().read_to_string(&mut body).unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}
