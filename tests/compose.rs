//! docker-compose.yml, checked where there is no Docker engine: every service, port,
//! volume and mounted file it names exists and agrees with Pulse's configuration, the
//! Prometheus it starts scrapes Pulse where Pulse listens (and `promtool` accepts its
//! config), and Grafana's provisioning points at that Prometheus and at the dashboards.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_yaml::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn strs(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// `(host source, container target)` of a service's volume entries.
fn mounts(service: &Value) -> Vec<(String, String)> {
    strs(&service["volumes"])
        .into_iter()
        .map(|m| {
            let mut parts = m.split(':');
            (
                parts.next().unwrap().to_string(),
                parts.next().unwrap().to_string(),
            )
        })
        .collect()
}

/// The container port of the `"host:container"` mapping that publishes `port`.
fn published(service: &Value, port: u16) -> bool {
    strs(&service["ports"])
        .iter()
        .any(|p| p.rsplit(':').next() == Some(&port.to_string()))
}

#[test]
fn compose_services_files_ports_and_volumes_agree() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "agent",
            "aggregate",
            "grafana",
            "kafka",
            "prometheus",
            "pulse",
            "redis"
        ])
    );
    let declared: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();

    // Pulse's health check is its readiness probe, which needs no token.
    let pulse_check = format!("{:?}", services["pulse"]["healthcheck"]["test"]);
    assert!(pulse_check.contains("GET /readyz "), "{pulse_check}");
    for (name, s) in services {
        let name = name.as_str().unwrap();
        assert!(
            s["healthcheck"]["test"]
                .as_sequence()
                .is_some_and(|t| !t.is_empty()),
            "{name}: no health check"
        );
        for (source, target) in mounts(s) {
            assert!(target.starts_with('/'), "{name}: {target}");
            if source.starts_with("./") {
                assert!(
                    root().join(&source).exists(),
                    "{name}: {source} does not exist"
                );
            } else {
                assert!(
                    declared.contains(&source),
                    "{name}: volume {source} is not declared"
                );
            }
        }
        for dep in s["depends_on"]
            .as_mapping()
            .into_iter()
            .flat_map(|m| m.keys())
        {
            let dep = dep.as_str().unwrap();
            assert!(names.contains(dep), "{name} depends on unknown {dep}");
            assert!(
                services[dep]["healthcheck"].is_mapping(),
                "{name} waits for {dep} to be healthy; it needs a health check"
            );
        }
    }
    // `docker compose up` starts Pulse, Prometheus and Grafana; Redis and Kafka come with
    // the `sinks` profile, and with agent and aggregators in the `scale-out` profile.
    for always in ["pulse", "prometheus", "grafana"] {
        assert!(services[always]["profiles"].is_null(), "{always}");
    }
    for optional in ["redis", "kafka"] {
        assert_eq!(
            strs(&services[optional]["profiles"]),
            ["sinks", "scale-out"],
            "{optional}"
        );
    }
    // Agent and aggregators: Pulse's image, its subcommands, the services' names for the
    // brokers and Redis.
    for (role, needs_redis) in [("agent", false), ("aggregate", true)] {
        let s = &services[role];
        assert_eq!(strs(&s["profiles"]), ["scale-out"], "{role}");
        assert_eq!(s["image"], services["pulse"]["image"], "{role}");
        assert_eq!(strs(&s["command"]), [role]);
        assert_eq!(
            s["environment"]["PULSE_KAFKA_BROKERS"].as_str(),
            Some("kafka:9092")
        );
        let redis = s["environment"]["PULSE_REDIS_URL"].as_str();
        assert_eq!(redis.is_some(), needs_redis, "{role}");
        if let Some(url) = redis {
            assert_eq!(url, "redis://redis:6379");
        }
    }

    // Pulse: built from this repository, listening where it is published.
    let pulse = &services["pulse"];
    assert_eq!(pulse["build"].as_str(), Some("."));
    assert!(root().join("Dockerfile").exists());
    let listen = pulse["environment"]["PULSE_LISTEN"].as_str().unwrap();
    let port: u16 = listen.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        published(pulse, port),
        "Pulse listens on {port}, which is not published"
    );
    // The config files it is pointed at are the mounted ones, and they load.
    for (var, file) in [
        ("PULSE_CONFIG", "config/pulse.toml"),
        ("PULSE_PIPELINE", "pipelines/default.toml"),
    ] {
        let in_container = pulse["environment"][var].as_str().unwrap();
        let (source, target) = mounts(pulse)
            .into_iter()
            .find(|(_, t)| in_container.starts_with(t.as_str()))
            .unwrap_or_else(|| panic!("{var}={in_container} is not under a mounted folder"));
        let on_host = root()
            .join(source.trim_start_matches("./"))
            .join(in_container[target.len()..].trim_start_matches('/'));
        assert_eq!(on_host, root().join(file), "{var}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(["check-config", "--config", "config/pulse.toml"])
        .args(["--pipeline", "pipelines/default.toml"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Prometheus scrapes Pulse by service name on the port Pulse listens on.
    let prom = &services["prometheus"];
    let (source, target) = mounts(prom)
        .into_iter()
        .find(|(_, t)| t == "/etc/prometheus/prometheus.yml")
        .expect("prometheus.yml is mounted");
    assert!(strs(&prom["command"]).contains(&format!("--config.file={target}")));
    let config = yaml(source.trim_start_matches("./"));
    let targets = strs(&config["scrape_configs"][0]["static_configs"][0]["targets"]);
    assert_eq!(targets, [format!("pulse:{port}")]);
    // Every role the stack starts (every service of Pulse's image) is scraped: by name, on
    // the port it listens on, at /metrics.
    let jobs = config["scrape_configs"].as_sequence().unwrap();
    for (name, service) in services {
        if service["image"] != pulse["image"] {
            continue;
        }
        let name = name.as_str().unwrap();
        let listen = service["environment"]["PULSE_LISTEN"].as_str().unwrap();
        let port: u16 = listen.rsplit(':').next().unwrap().parse().unwrap();
        let scraped = jobs.iter().any(|job| {
            let by_static =
                strs(&job["static_configs"][0]["targets"]).contains(&format!("{name}:{port}"));
            let sd = &job["dns_sd_configs"][0];
            let by_dns = strs(&sd["names"]).contains(&name.to_string())
                && sd["port"].as_u64() == Some(port.into());
            (by_static || by_dns) && job["metrics_path"].as_str() == Some("/metrics")
        });
        assert!(
            scraped,
            "the compose Prometheus does not scrape {name}:{port}"
        );
    }
    let check = Command::new("promtool")
        .args(["check", "config", &source])
        .current_dir(root())
        .output()
        .expect("promtool (Debian package prometheus) must be installed");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(published(prom, 9090));

    // Grafana: its datasource is that Prometheus, its dashboards are ours.
    let grafana = &services["grafana"];
    let g_mounts = mounts(grafana);
    let provisioning = g_mounts
        .iter()
        .find(|(_, t)| t == "/etc/grafana/provisioning")
        .expect("provisioning is mounted");
    let ds = yaml(&format!(
        "{}/datasources/prometheus.yml",
        provisioning.0.trim_start_matches("./")
    ));
    assert_eq!(
        ds["datasources"][0]["url"].as_str(),
        Some("http://prometheus:9090")
    );
    assert_eq!(ds["datasources"][0]["uid"].as_str(), Some("prometheus"));
    let dashboards = yaml(&format!(
        "{}/dashboards/pulse.yml",
        provisioning.0.trim_start_matches("./")
    ));
    let path = dashboards["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let mounted = g_mounts
        .iter()
        .find(|(_, t)| t == path)
        .expect("dashboard folder mounted");
    assert_eq!(mounted.0, "./grafana/dashboards");
    let home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        .as_str()
        .unwrap();
    let home_file = home.strip_prefix(&format!("{path}/")).unwrap();
    assert!(
        root().join("grafana/dashboards").join(home_file).exists(),
        "{home}"
    );
    assert!(published(grafana, 3000));
}
