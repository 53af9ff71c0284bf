//! A client that puts ids in its routes (10 000 distinct routes, 20 000 records) against the
//! default config: its routes beyond its share fold into `__other__` (nothing lost: every
//! record is counted), the status names it, a WARN names it, and Pulse stays responsive.
//! The same run without the limit took the status to 503 for minutes.

mod common;

use std::time::Duration;

use common::process::Pulse;

#[test]
fn a_service_exploding_its_routes_is_folded_named_and_counted() {
    let pulse = Pulse::start(&[]);
    for batch in 0..40 {
        let records: Vec<String> = (0..250)
            .map(|i| {
                format!(
                    r#"{{"route":"/item/{}","status":200,"latency_ms":5,"service":"shop"}}"#,
                    batch * 250 + i
                )
            })
            .collect();
        let body = format!("[{}]", records.join(","));
        for _ in 0..2 {
            let (code, v) = pulse.post("/api/v1/requests", "application/json", &body);
            assert_eq!(code, 202, "{v}");
        }
    }
    let status = pulse.poll("/api/phase4/status", Duration::from_secs(10), |s| {
        s["components"].as_array().unwrap().iter().any(|c| {
            c["name"] == "request_sampler" && c["extra"]["folded_total"].as_f64() >= Some(19_000.0)
        })
    });
    let sampler = status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "request_sampler")
        .unwrap();
    assert_eq!(sampler["state"], "degraded", "{sampler}");
    assert!(
        sampler["reason"].as_str().unwrap().contains("\"shop\""),
        "{sampler}"
    );
    assert!(
        sampler["extra"]["routes"].as_f64() <= Some(201.0),
        "{sampler}"
    );
    assert_eq!(sampler["received_total"], 20_000, "{sampler}");
    // Every record is in the counters, the folded ones under __other__.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = pulse.get_text("/metrics");
        let total: f64 = text
            .lines()
            .filter(|l| l.starts_with("http_requests_total{") && l.contains("service=\"shop\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if total == 20_000.0 {
            assert!(text.contains("route=\"__other__\""));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counted {total} of 20000"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, _) = pulse.get("/api/phase4/dashboard/summary");
    assert_eq!(code, 200);
    let log = pulse.stop();
    assert!(
        log.iter().any(|l| l.contains("WARN")
            && l.contains("too many distinct routes")
            && l.contains("shop")),
        "{log:?}"
    );
}
