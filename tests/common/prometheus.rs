//! A real Prometheus (Debian's `prometheus`) on a free loopback port, scraping one target.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::free_port;
use super::process::response;

/// A Prometheus server scraping `target` every second, in a temporary directory.
pub struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(target: &str) -> Prometheus {
        Prometheus::start_with_rules(target, None)
    }

    /// [`Prometheus::start`], also evaluating `rules` (a rule file's YAML) every second.
    pub fn start_with_rules(target: &str, rules: Option<&str>) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let mut yml = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: pulse\n    static_configs:\n      - targets: ['{target}']\n"
        );
        if let Some(rules) = rules {
            let path = dir.path().join("rules.yml");
            std::fs::write(&path, rules).unwrap();
            yml.push_str(&format!("rule_files: ['{}']\n", path.display()));
        }
        std::fs::write(&config, yml).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package `prometheus`) must be installed");
        let base = format!("http://127.0.0.1:{port}");
        let p = Prometheus {
            child,
            base,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{}/-/ready", p.base)).call().is_err() {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// An instant query: `Ok(result vector)` or `Err(error)`.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let (status, v) = response(
            ureq::get(&format!("{}/api/v1/query", self.base))
                .query("query", expr)
                .call(),
        );
        if status != 200 || v["status"] != "success" {
            return Err(format!("HTTP {status}: {}", v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// `GET path` of Prometheus' API: the JSON answer.
    pub fn get(&self, path: &str) -> Value {
        let (status, v) = response(ureq::get(&format!("{}{path}", self.base)).call());
        assert_eq!(status, 200, "{path}: {v}");
        v
    }

    /// What Grafana's `label_values(metric, label)` lists.
    pub fn label_values(&self, query: &str) -> Vec<String> {
        let re = regex::Regex::new(r"^label_values\((.*),\s*([A-Za-z_]+)\)$").unwrap();
        let c = re
            .captures(query)
            .unwrap_or_else(|| panic!("unsupported variable query {query}"));
        let (status, v) = response(
            ureq::get(&format!("{}/api/v1/label/{}/values", self.base, &c[2]))
                .query("match[]", &c[1])
                .call(),
        );
        assert_eq!(status, 200, "{v}");
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
