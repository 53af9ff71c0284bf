//! SIGTERM stops Pulse within its grace even when clients hold connections open: a worker on
//! the command stream gets a final `shutdown` event and its stream ends; a client that never
//! finishes its request header is cut off when the grace runs out. Then the sinks drain.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::process::Pulse;

fn connect(pulse: &Pulse) -> TcpStream {
    let addr = pulse.base.trim_start_matches("http://");
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

#[test]
fn an_open_command_stream_ends_with_a_shutdown_event_and_pulse_exits() {
    let pulse = Pulse::start(&[("PULSE_SHUTDOWN_GRACE_MS", "30000")]);
    let mut stream = connect(&pulse);
    stream
        .write_all(
            b"GET /api/v1/commands HTTP/1.1\r\nHost: pulse\r\nAccept: text/event-stream\r\n\r\n",
        )
        .unwrap();
    let mut head = [0u8; 512];
    let n = stream.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));

    let reader = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stream.read_to_string(&mut rest);
        rest
    });
    let started = Instant::now();
    let log = pulse.stop();
    // Well inside the 30 s grace: the stream did not hold the server.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "exit took {took:?}");
    let rest = reader.join().unwrap();
    assert!(rest.contains("event: shutdown"), "{rest}");
    assert!(log.iter().any(|l| l.contains("shut down")), "{log:?}");
}

#[test]
fn a_client_that_never_finishes_its_header_is_cut_off_after_the_grace() {
    let pulse = Pulse::start(&[("PULSE_SHUTDOWN_GRACE_MS", "1500")]);
    let mut slow = connect(&pulse);
    slow.write_all(b"GET /api/phase4/status HTTP/1.1\r\nHost: pul")
        .unwrap();
    let started = Instant::now();
    let log = pulse.stop();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(log.iter().any(|l| l.contains("shut down")), "{log:?}");
}

#[test]
fn idle_and_slow_clients_are_closed_and_a_declared_huge_body_is_refused_at_once() {
    let pulse = Pulse::start(&[("PULSE_HEADER_READ_TIMEOUT_MS", "500")]);
    // An idle connection and one sending its header byte by byte: both closed by Pulse.
    let mut idle = connect(&pulse);
    let mut slow = connect(&pulse);
    slow.write_all(b"GET /api/phase4/status HTTP/1.1\r\n")
        .unwrap();
    for s in [&mut idle, &mut slow] {
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf[..n]));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // Content-Length far past server.max_body_bytes with a 2-byte body: 413 without waiting.
    let mut big = connect(&pulse);
    big.write_all(b"POST /api/v1/requests HTTP/1.1\r\nHost: pulse\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n[]")
        .unwrap();
    let mut answer = [0u8; 512];
    let n = big.read(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload too large"), "{text}");
    // Counted once the connections' tasks end (just after the sockets close).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = pulse.get_text("/metrics");
        let timeouts: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("pulse_http_header_timeouts_total "))
            .unwrap()
            .parse()
            .unwrap();
        if timeouts >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{timeouts} header timeouts counted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A request head past the router's limits is answered in JSON, naming the limit: a target
/// over 32 KiB (414), over 100 header fields or 64 KiB of them (431). Only past hyper's own
/// limits (a target of 64 KiB, 1 000 fields, its read buffer) does hyper answer, with an
/// empty 414 or 431.
#[test]
fn oversized_request_heads_get_json_errors_naming_the_limit() {
    let pulse = Pulse::start(&[]);
    let send = |head: Vec<u8>| {
        let mut s = connect(&pulse);
        s.write_all(&head).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    };
    let long_target = format!(
        "GET /api/phase4/status?x={} HTTP/1.1\r\nHost: pulse\r\nConnection: close\r\n\r\n",
        "a".repeat(40_000)
    );
    let many_fields: String = (0..150).map(|i| format!("X-Field-{i}: a\r\n")).collect();
    let many = format!(
        "GET /api/phase4/status HTTP/1.1\r\nHost: pulse\r\n{many_fields}Connection: close\r\n\r\n"
    );
    let big = format!(
        "GET /api/phase4/status HTTP/1.1\r\nHost: pulse\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(70_000)
    );
    for (head, status, detail) in [
        (long_target, "414", "bytes (at most 32768)"),
        (many, "431", "152 header fields (at most 100)"),
        (big, "431", "bytes of header fields (at most 65536)"),
    ] {
        let answer = send(head.into_bytes());
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer:.300}"
        );
        assert!(
            answer.contains("content-type: application/json"),
            "{answer:.300}"
        );
        assert!(answer.contains(detail), "{answer:.300}");
    }
    // Within the limits, the same request is served.
    let ok = send(
        b"GET /api/phase4/status HTTP/1.1\r\nHost: pulse\r\nConnection: close\r\n\r\n".to_vec(),
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok:.300}");
}
