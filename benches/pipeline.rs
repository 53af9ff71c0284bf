//! Pipeline throughput: samples/s into the window store, against a raw tokio channel
//! pass-through of the same batches in the same run.
//!
//! `cargo bench --bench pipeline` prints a markdown table. Under `cargo test` (no
//! `--bench` argument) it runs a tiny size once, to check that it still works.
//!
//! Rows:
//! - raw channel: bounded tokio mpsc, the consumer reads every sample (sums the values).
//! - window store: the window store actor on its own arbiter, as `pulse serve` runs it,
//!   fed with awaited sends through its mailbox (backpressure), storing every sample.
//! - sampler → window store: the simulated fleet generates the samples (17 per GPU per
//!   step) and sends them to the window store actor: the whole sampler path.
//!
//! Then the cost of tracing: the window store path and the sampler → store + detector path,
//! each with tracing off, at the default sampling (every batch a trace candidate, at most
//! 100 new traces a second) and with every batch traced, interleaved in the same run.

use std::time::{Duration, Instant};

use actix::prelude::*;
use pulse::config::service::TracingConfig;
use pulse::model::series::{Sample, Series, SeriesKey};
use pulse::processors::anomaly::actor::AnomalyDetector;
use pulse::Clock;
use pulse::Retention;
use pulse::SampleBatch;
use pulse::Telemetry;
use pulse::{figure, GetStats};
use pulse::{Mailbox, MailboxGauge};
use pulse::{ProcessingDone, WindowStoreActor};
use pulse::{Scenario, SimFleet};

/// Samples per batch on the stream (a sampler's tick on a big host).
const BATCH: usize = 1000;

struct Size {
    series: usize,
    rounds: usize,
    repeats: usize,
}

fn series(n: usize) -> Vec<Series> {
    (0..n)
        .map(|i| {
            SeriesKey::shared(
                "DCGM_FI_DEV_GPU_UTIL",
                [
                    ("gpu".to_string(), (i % 8).to_string()),
                    ("UUID".to_string(), format!("GPU-{i:08x}")),
                    ("Hostname".to_string(), format!("host-{}", i / 8)),
                    ("modelName".to_string(), "NVIDIA H100 80GB HBM3".to_string()),
                ],
            )
        })
        .collect()
}

/// `rounds` rounds of every series (timestamps rising per round), cut into batches.
fn batches(series: &[Series], rounds: usize) -> Vec<SampleBatch> {
    let mut out = Vec::new();
    for r in 0..rounds {
        for chunk in series.chunks(BATCH) {
            let samples = chunk
                .iter()
                .map(|s| Sample::new(s.clone(), 1_000_000 + r as i64 * 1000, r as f64))
                .collect();
            out.push(SampleBatch::new(samples));
        }
    }
    out
}

fn retention(rounds: usize) -> Retention {
    Retention {
        max_points: rounds + 1,
        max_age_ms: i64::MAX / 4,
        max_series: 1_000_000,
    }
}

async fn raw_channel(batches: &[SampleBatch]) -> Duration {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<SampleBatch>(256);
    let consumer = tokio::spawn(async move {
        let mut sum = 0.0;
        let mut n = 0usize;
        while let Some(b) = rx.recv().await {
            for s in b.samples.iter() {
                sum += s.value;
                n += 1;
            }
        }
        std::hint::black_box((sum, n))
    });
    let start = Instant::now();
    for b in batches {
        tx.send(b.clone()).await.unwrap();
    }
    drop(tx);
    consumer.await.unwrap();
    start.elapsed()
}

/// A store on its own arbiter. Stop the arbiter after the run: a store left running keeps
/// its series and sweeps them every second, which took CPU from the rows after it.
fn start_store(rounds: usize) -> (Addr<WindowStoreActor>, Mailbox<SampleBatch>, Arbiter) {
    start_store_with(rounds, false)
}

/// The store, with the anomaly detector as its processor (default watch list) when asked.
fn start_store_with(
    rounds: usize,
    detector: bool,
) -> (Addr<WindowStoreActor>, Mailbox<SampleBatch>, Arbiter) {
    let gauge = MailboxGauge::default();
    let mut store =
        WindowStoreActor::new(retention(rounds), vec![], Clock::system(), gauge.clone());
    if detector {
        let dgauge = MailboxGauge::default();
        let settings = pulse::config::pipeline::AnomalyConfig::default().settings();
        let addr = AnomalyDetector::new(settings, dgauge.clone()).start();
        store = store.with_processors(vec![Mailbox::new(addr.recipient(), dgauge)]);
    }
    let arbiter = Arbiter::new();
    let addr = WindowStoreActor::start_in_arbiter(&arbiter.handle(), move |_| store);
    let mailbox = Mailbox::new(addr.clone().recipient(), gauge);
    (addr, mailbox, arbiter)
}

/// Tracing as `pulse serve` starts it: `every` traces every batch, otherwise the default
/// sampling (at most 100 new traces a second).
fn telemetry(every: bool) -> Telemetry {
    let mut cfg = TracingConfig::default();
    if every {
        cfg.max_traces_per_second = 0;
    }
    Telemetry::start(&cfg, None).unwrap()
}

async fn window_store(
    batches: &[SampleBatch],
    rounds: usize,
    trace: &Telemetry,
) -> (Duration, u64) {
    let (addr, mailbox, arbiter) = start_store(rounds);
    let start = Instant::now();
    // Keep several sends in flight, as several samplers would.
    let mut pending = futures_util::stream::FuturesOrdered::new();
    for b in batches {
        pending.push_back(mailbox.send(b.clone().traced(trace, "bench")));
        if pending.len() >= 64 {
            futures_util::StreamExt::next(&mut pending)
                .await
                .unwrap()
                .unwrap();
        }
    }
    while let Some(r) = futures_util::StreamExt::next(&mut pending).await {
        r.unwrap();
    }
    let elapsed = start.elapsed();
    let stored = addr.send(GetStats).await.unwrap().emitted_total;
    arbiter.stop();
    (elapsed, stored)
}

/// The simulated fleet the sampler rows run: four scenarios, seed 1.
fn bench_fleet(gpus: usize) -> SimFleet {
    let scenarios = [
        Scenario::Steady,
        Scenario::MemoryLeak,
        Scenario::ThermalThrottle,
        Scenario::LoadSpike,
    ];
    SimFleet::new(gpus, "bench-host", &scenarios, 1)
}

async fn sampler_to_store(
    gpus: usize,
    rounds: usize,
    detector: bool,
    trace: &Telemetry,
) -> (Duration, u64) {
    let (addr, mailbox, arbiter) = start_store_with(rounds, detector);
    let mut fleet = bench_fleet(gpus);
    let start = Instant::now();
    for r in 0..rounds {
        let samples = fleet.sample(1_000_000 + r as i64 * 1000);
        mailbox
            .send(SampleBatch::new(samples).traced(trace, "gpu_simulated"))
            .await
            .unwrap();
    }
    // Until the detector's scores for the last batches are stored too.
    addr.send(ProcessingDone).await.unwrap();
    let elapsed = start.elapsed();
    let stored = addr.send(GetStats).await.unwrap().emitted_total;
    arbiter.stop();
    (elapsed, stored)
}

/// Every processor on, wired by `pipeline::start` exactly as `pulse serve` wires them: the
/// anomaly detector on every batch, the default rule pack evaluated on its intervals over
/// the windows, the predictor refitting; no sinks. The simulated fleet's samples go
/// straight to the window store, stamped up to now so that the rules and the predictor
/// see them. Answers the time, the samples stored and the rule evaluations made meanwhile.
async fn everything_on(gpus: usize, rounds: usize, on_ingest: bool) -> (Duration, u64, f64) {
    use pulse::config::pipeline::{GpuMode, PipelineConfig};
    use pulse::config::service::ServiceConfig;
    use std::num::{NonZeroU64, NonZeroUsize};
    let mut service = ServiceConfig::default();
    service.tracing.enabled = false;
    service.rules.evaluate_on_ingest = on_ingest;
    let mut pipeline = PipelineConfig::default();
    pipeline.sources.gpu.mode = GpuMode::Simulated;
    // The pipeline's own sampler stays quiet: the bench feeds the store.
    pipeline.sources.gpu.interval_ms = NonZeroU64::new(3_600_000).unwrap();
    pipeline.sources.gpu.simulated.gpus = NonZeroUsize::new(1).unwrap();
    let handles = pulse::start_pipeline(&service, &pipeline, Clock::system()).unwrap();
    let mut fleet = bench_fleet(gpus);
    let t0 = Clock::system().now_ms() - rounds as i64 * 1000;
    let evaluations = |s: pulse::ComponentStats| {
        s.extra
            .get(&figure::RULE_EVALUATIONS_TOTAL)
            .copied()
            .unwrap_or(0.0)
    };
    let before = evaluations(handles.rules.send(GetStats).await.unwrap());
    let start = Instant::now();
    for r in 0..rounds {
        let samples = fleet.sample(t0 + r as i64 * 1000);
        handles
            .window
            .send(SampleBatch::new(samples))
            .await
            .unwrap();
    }
    handles.window.send(ProcessingDone).await.unwrap();
    let elapsed = start.elapsed();
    let stored = handles.window.send(GetStats).await.unwrap().emitted_total;
    let evaluated = evaluations(handles.rules.send(GetStats).await.unwrap()) - before;
    (elapsed, stored, evaluated)
}

/// An actix system on a multi-threaded tokio runtime, as `pulse serve` runs.
fn system() -> actix::SystemRunner {
    System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// [`everything_on`] in a system of its own on its own thread, stopped after the row. Run
/// in the bench's system, its actors (the rules on their intervals over 10 000 series, the
/// predictor refitting) kept running through the rows after it and took their CPU.
fn everything_on_alone(gpus: usize, rounds: usize, on_ingest: bool) -> (Duration, u64, f64) {
    std::thread::spawn(move || {
        let system = system();
        let out = system.block_on(everything_on(gpus, rounds, on_ingest));
        System::current().stop();
        system.run().expect("the row's system stops");
        out
    })
    .join()
    .expect("the row's thread")
}

/// Nanoseconds per call of `f`, best of 5 runs of `n` calls.
fn per_call_ns(n: usize, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// What one traced batch and one untraced candidate cost, measured directly.
fn span_costs(n: usize) -> [(&'static str, f64); 4] {
    use opentelemetry::trace::SpanKind;
    let every = telemetry(true);
    let batch_trace = per_call_ns(n, || {
        let root = every
            .root("pipeline.batch", SpanKind::Internal, None)
            .unwrap();
        root.set("pulse.source", "bench");
        root.set("pulse.samples", 1000i64);
        let store = root.child("window_store.ingest", SpanKind::Internal);
        store.set("pulse.stored", 1000i64);
        let p = store.child("processor.anomaly_detector", SpanKind::Internal);
        p.set("pulse.scores", 400i64);
        p.end();
        let s = store.child("sink.jsonl", SpanKind::Internal);
        s.end();
        store.end();
    });
    let rest = per_call_ns(n, || {
        let root = every.root("HTTP request", SpanKind::Server, None).unwrap();
        root.rename(format!("GET {}", "/api/phase4/dashboard/summary"));
        root.set("http.request.method", "GET".to_string());
        root.set("http.route", "/api/phase4/dashboard/summary".to_string());
        root.set("url.path", "/api/phase4/dashboard/summary".to_string());
        root.set("http.response.status_code", 200i64);
        std::hint::black_box(root.traceparent());
        root.end();
    });
    // Past this second's 100 traces: refused before any span is built.
    let limited = telemetry(false);
    while limited.root("warm", SpanKind::Internal, None).is_some() {}
    let saturated = per_call_ns(n, || {
        std::hint::black_box(limited.root("HTTP request", SpanKind::Server, None));
    });
    let cfg = TracingConfig {
        sampling_ratio: pulse::config::service::SamplingRatio(0.0),
        ..TracingConfig::default()
    };
    let ratio0 = Telemetry::start(&cfg, None).unwrap();
    let by_ratio = per_call_ns(n, || {
        std::hint::black_box(ratio0.root("HTTP request", SpanKind::Server, None));
    });
    [
        (
            "a traced batch: root + store + processor + sink spans, into the trace store",
            batch_trace,
        ),
        (
            "a traced REST request: server span with 4 attributes and traceresponse",
            rest,
        ),
        (
            "an untraced candidate past the 100 traces/s limit",
            saturated,
        ),
        (
            "an untraced candidate refused by the ratio (sampler consulted)",
            by_ratio,
        ),
    ]
}

fn rate(samples: usize, d: Duration) -> f64 {
    samples as f64 / d.as_secs_f64()
}

/// The middle value (the upper middle of an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The rows before the every-processor-on ones: the window store and sampler paths beside
/// the raw channel, then what tracing costs.
async fn other_rows(
    raw: f64,
    (store, sampler, detected): (Vec<f64>, Vec<f64>, Vec<f64>),
    batches: &[SampleBatch],
    size: &Size,
    gpus: usize,
    bench: bool,
) {
    let total = size.series * size.rounds;
    let fleet_total = gpus * 17 * size.rounds;
    let (store, sampler, detected) = (median(store), median(sampler), median(detected));
    println!(
        "\nPipeline throughput, {} series x {} rounds, batches of {BATCH}, median of {} runs\n",
        size.series, size.rounds, size.repeats
    );
    println!("| path | samples/s | ratio to raw channel |");
    println!("|---|---:|---:|");
    println!(
        "| raw tokio channel pass-through (baseline) | {:.2} M | 1.00 |",
        raw / 1e6
    );
    println!(
        "| window store actor (mailbox, awaited sends) | {:.2} M | {:.2} |",
        store / 1e6,
        store / raw
    );
    println!(
        "| simulated sampler -> window store | {:.2} M | {:.2} |",
        sampler / 1e6,
        sampler / raw
    );
    println!(
        "| simulated sampler -> window store + anomaly detector (7 of 17 series watched) | {:.2} M | {:.2} |",
        detected / 1e6,
        detected / raw
    );

    // Tracing: off / default / every batch, interleaved so drift hits all three alike.
    let mut rows: [[Vec<f64>; 3]; 2] = Default::default();
    let mut traced = [0usize; 2];
    for _ in 0..size.repeats * 6 {
        for (i, every) in [None, Some(false), Some(true)].into_iter().enumerate() {
            let t = every.map_or_else(Telemetry::off, telemetry);
            let (d, _) = window_store(batches, size.rounds, &t).await;
            rows[0][i].push(rate(total, d));
            if every == Some(true) {
                traced[0] = t.store().unwrap().stats().counters.spans_stored_total as usize;
            }
            let t = every.map_or_else(Telemetry::off, telemetry);
            let (d, _) = sampler_to_store(gpus, size.rounds, true, &t).await;
            rows[1][i].push(rate(fleet_total, d));
            if every == Some(true) {
                traced[1] = t.store().unwrap().stats().counters.spans_stored_total as usize;
            }
        }
    }
    println!(
        "\nTracing cost, median of {} interleaved runs (spans per run when every batch is traced: {} and {})\n",
        size.repeats * 6,
        traced[0],
        traced[1]
    );
    println!("Ratios are medians of the per-round ratios to the tracing-off run beside them,");
    println!("with their 25th-75th percentile range: the bench's own run-to-run noise.\n");
    println!("| path | tracing off | default sampling | ratio (p25-p75) | every batch traced | ratio (p25-p75) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, r) in [
        ("window store, batches of 1 000", &rows[0]),
        (
            "simulated sampler -> window store + anomaly detector",
            &rows[1],
        ),
    ] {
        let ratios = |k: usize| {
            let mut v: Vec<f64> = r[k].iter().zip(&r[0]).map(|(a, b)| a / b).collect();
            v.sort_by(f64::total_cmp);
            let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
            format!("{:.3} ({:.3}-{:.3})", q(0.5), q(0.25), q(0.75))
        };
        println!(
            "| {name} | {:.2} M | {:.2} M | {} | {:.2} M | {} |",
            median(r[0].clone()) / 1e6,
            median(r[1].clone()) / 1e6,
            ratios(1),
            median(r[2].clone()) / 1e6,
            ratios(2),
        );
    }
    println!("\nWhat tracing costs per unit of work (best of 5 x 20 000 calls)\n");
    println!("| what | cost |");
    println!("|---|---:|");
    for (what, ns) in span_costs(if bench { 20_000 } else { 100 }) {
        println!("| {what} | {:.2} µs |", ns / 1000.0);
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    // `cargo bench --bench pipeline -- everything`: the raw channel, then only the
    // every-processor-on rows (what a profile of the whole pipeline wants).
    let only_everything = std::env::args().any(|a| a == "everything");
    let size = if bench {
        Size {
            series: 10_000,
            rounds: 100,
            repeats: 5,
        }
    } else {
        Size {
            series: 2_000,
            rounds: 3,
            repeats: 1,
        }
    };
    let system = system();
    system.block_on(async move {
        let series = series(size.series);
        let batches = batches(&series, size.rounds);
        let total = size.series * size.rounds;
        let gpus = size.series / 17;
        let fleet_total = gpus * 17 * size.rounds;

        let off = Telemetry::off();
        let (mut raw, mut store, mut sampler, mut detected) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..size.repeats {
            raw.push(rate(total, raw_channel(&batches).await));
            if only_everything {
                continue;
            }
            let (d, stored) = window_store(&batches, size.rounds, &off).await;
            assert_eq!(stored as usize, total, "every sample stored");
            store.push(rate(total, d));
            let (d, stored) = sampler_to_store(gpus, size.rounds, false, &off).await;
            assert_eq!(stored as usize, fleet_total, "every sample stored");
            sampler.push(rate(fleet_total, d));
            let (d, stored) = sampler_to_store(gpus, size.rounds, true, &off).await;
            assert!(stored as usize > fleet_total, "samples and their scores stored");
            detected.push(rate(fleet_total, d));
        }
        let raw = median(raw);
        if !only_everything {
            other_rows(raw, (store, sampler, detected), &batches, &size, gpus, bench).await;
        }

        // Everything on, each row in a system of its own that stops after it; the two rows
        // take turns, three runs each (one when not under `cargo bench`), and the median is
        // shown with the range, since one run moves with the machine. The bench feeds a
        // second of the fleet every few milliseconds, so evaluation on ingest runs every
        // group at its minimum gap (100 ms), far more often per sample than at the real 1 s
        // sampling: the row without it is shown too.
        let runs = if bench { 3 } else { 1 };
        let mut rows: [(Vec<f64>, Vec<f64>); 2] = Default::default();
        for _ in 0..runs {
            for (on_ingest, row) in [false, true].into_iter().zip(rows.iter_mut()) {
                let (d, stored, evaluated) = everything_on_alone(gpus, size.rounds, on_ingest);
                assert!(stored as usize > fleet_total, "samples and their scores stored");
                row.0.push(rate(fleet_total, d));
                row.1.push(evaluated);
            }
        }
        println!("\nEvery processor on, as `pulse serve` wires them ({runs} runs each, taking turns; median and range)\n");
        println!("| path | rule evaluation on ingest | group evaluations meanwhile (median) | samples/s (median) | range | ratio to raw channel |");
        println!("|---|---|---:|---:|---:|---:|");
        for (on_ingest, (rates, evaluations)) in [false, true].into_iter().zip(rows) {
            let (rate, evaluations) = (median(rates.clone()), median(evaluations));
            let (lo, hi) = rates
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
            println!(
                "| simulated sampler -> window store + anomaly detector + default rule pack + predictor | {} | {evaluations:.0} | {:.2} M | {:.2}–{:.2} M | {:.3} |",
                if on_ingest { "on (default)" } else { "off" },
                rate / 1e6,
                lo / 1e6,
                hi / 1e6,
                rate / raw
            );
        }
        System::current().stop();
    });
}
