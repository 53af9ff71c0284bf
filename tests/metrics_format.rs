//! `/metrics` passes the exposition format's own checks (`promtool check metrics`) but for
//! what dcgm-exporter compatibility and Prometheus' rule naming keep: dcgm-exporter's label
//! names (`Hostname`, `UUID`, `modelName`), its ECC counters without `_total`, and the `:`
//! of recording rules' names. Histogram buckets come in bound order. Every family served is
//! listed in docs/metrics.md.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::Pulse;

/// What `promtool check metrics` may say about Pulse's `/metrics`.
fn expected(line: &str) -> bool {
    line.contains("label names should be written in 'snake_case' not 'camelCase'")
        || (line.starts_with("DCGM_FI_DEV_ECC_") && line.contains("should have \"_total\" suffix"))
        || (line.contains(':') && line.ends_with("metric names should not contain ':'"))
}

#[test]
fn promtool_finds_nothing_but_the_compatibility_names() {
    let pulse = Pulse::start(&[]);
    let (code, _) = pulse.post(
        "/api/v1/requests",
        "application/json",
        r#"[{"route":"/gen","status":200,"latency_ms":20},{"route":"/gen","status":200,"latency_ms":4000}]"#,
    );
    assert_eq!(code, 202);
    // Wait for the request metrics and the rules' recorded series.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = pulse.get_text("/metrics");
        if text.contains("http_request_duration_seconds_bucket{le=\"0.005\",route=\"/gen\"")
            && text.contains("DCGM_FI_DEV_GPU_TEMP")
        {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "request metrics never came"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let unexpected: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim().is_empty() && !expected(l))
        .collect();
    assert!(
        unexpected.is_empty(),
        "promtool check metrics: {unexpected:#?}"
    );

    // Buckets of one series in bound order, +Inf last, then _sum and _count.
    let gen: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_request_duration_seconds") && l.contains("route=\"/gen\""))
        .collect();
    let bounds: Vec<f64> = gen
        .iter()
        .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
        .map(|b| {
            if b == "+Inf" {
                f64::INFINITY
            } else {
                b.parse().unwrap()
            }
        })
        .collect();
    assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{gen:#?}");
    assert!(
        gen[gen.len() - 2].starts_with("http_request_duration_seconds_sum"),
        "{gen:#?}"
    );
    assert!(
        gen[gen.len() - 1].starts_with("http_request_duration_seconds_count"),
        "{gen:#?}"
    );

    // Every family served is in the metrics reference (recorded series, named by the
    // rules, are one row there).
    let reference = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md"),
    )
    .unwrap();
    let undocumented: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|name| !name.contains(':') && !reference.contains(&format!("`{name}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/metrics.md: {undocumented:?}"
    );
}
