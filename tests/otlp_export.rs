//! OTLP export from the real binary: a small OTLP/HTTP receiver started here (protobuf
//! over HTTP/1.1, what an OpenTelemetry collector listens for on :4318) gets the spans that
//! `/api/phase4/traces` shows, with Pulse's `service.name`. An unreachable collector turns
//! the tracing component degraded, with the reason, and Pulse keeps serving.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::process::{response, Pulse};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;

const TRACE: &str = "7bf92f3577b34da6a3ce929d0e0e4736";

/// An OTLP/HTTP receiver on a free port: each POST's path and body go to the channel.
fn receiver() -> (String, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                // HTTP/1.1 with keep-alive: one request after another on the connection.
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut length = 0;
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        if h == "\r\n" || h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let _ = tx.send((path, body));
                    out.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
                    )
                    .unwrap();
                }
            });
        }
    });
    (base, rx)
}

/// Every span received until `done` says so (or 15 s): (trace id hex, name, service.name).
fn collect(
    rx: &mpsc::Receiver<(String, Vec<u8>)>,
    done: impl Fn(&[(String, String, String)]) -> bool,
) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut spans = Vec::new();
    while !done(&spans) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((path, body)) = rx.recv_timeout(left) else {
            panic!("the collector did not get what was expected; got {spans:?}");
        };
        assert_eq!(path, "/v1/traces");
        let req = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let id: String = s.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                    spans.push((id, s.name, service.clone()));
                }
            }
        }
    }
    spans
}

fn tracing_component(pulse: &Pulse) -> serde_json::Value {
    let (_, status) = pulse.get("/api/phase4/status");
    status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tracing")
        .cloned()
        .unwrap()
}

#[test]
fn spans_reach_an_otlp_collector_and_an_unreachable_one_degrades_tracing() {
    let (endpoint, rx) = receiver();
    let pulse = Pulse::start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let (status, _) = response(
        ureq::get(&format!("{}/api/phase4/status", pulse.base))
            .set("traceparent", &format!("00-{TRACE}-00f067aa0ba902b7-01"))
            .call(),
    );
    assert_eq!(status, 200);
    let spans = collect(&rx, |spans| {
        spans.iter().any(|s| s.0 == TRACE) && spans.iter().any(|s| s.1 == "window_store.ingest")
    });
    let rest = spans.iter().find(|s| s.0 == TRACE).unwrap();
    assert_eq!(rest.1, "GET /api/phase4/status");
    assert!(spans.iter().all(|s| s.2 == "pulse"), "{spans:?}");
    // The same trace is in Pulse's own store.
    let (status, trace) = pulse.get(&format!("/api/phase4/traces/{TRACE}"));
    assert_eq!(
        (status, &trace["root_name"]),
        (200, &serde_json::json!("GET /api/phase4/status"))
    );
    let c = tracing_component(&pulse);
    assert_eq!(c["state"], "operational", "{c}");
    assert!(c["reason"].as_str().unwrap().contains(&endpoint));
    drop(pulse);

    // Nothing listens on this port: exports fail, tracing says so, the API keeps serving.
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let pulse = Pulse::start(&[("PULSE_OTLP_ENDPOINT", &dead)]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let c = tracing_component(&pulse);
        if c["state"] == "degraded" {
            let reason = c["reason"].as_str().unwrap();
            assert!(
                reason.contains("OTLP export to") && reason.contains(&dead),
                "{reason}"
            );
            assert!(
                c["extra"]["otlp_spans_failed_total"].as_f64() > Some(0.0),
                "{c}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "tracing never degraded: {c}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = pulse.get("/api/phase4/dashboard/summary");
    assert_eq!(status, 200);
}
