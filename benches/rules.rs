//! Rule evaluation cost: 100 alerting rules over 10 000 series, one evaluation tick, against
//! a raw scan in the same run (reading the newest point of each series of the rule's metric
//! and comparing it with a threshold, once per rule: the least work any evaluator must do).
//!
//! `cargo bench --bench rules` prints a markdown table; under `cargo test` it runs a tiny
//! size once. `BENCH_ONLY=k` makes every rule use condition k only (for profiling one kind).

use std::time::{Duration, Instant};

use pulse::model::selector::Selector;
use pulse::rules::group::GroupState;
use pulse::rules::parse_file;
use pulse::{Retention, WindowStore};
use pulse::{Scenario, SimFleet};

/// The pack's GPU conditions; each becomes several rules with different thresholds.
const CONDITIONS: &[(&str, f64)] = &[
    ("DCGM_FI_DEV_FB_USED / DCGM_FI_DEV_FB_TOTAL > {}", 0.9),
    ("DCGM_FI_DEV_GPU_TEMP > {}", 85.0),
    ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS % 128 >= {}", 32.0),
    ("DCGM_FI_DEV_XID_ERRORS > {}", 0.0),
    ("increase(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL[5m]) > {}", 0.0),
    (
        "DCGM_FI_DEV_POWER_USAGE / DCGM_FI_DEV_ENFORCED_POWER_LIMIT > {}",
        0.85,
    ),
    ("avg by (Hostname) (DCGM_FI_DEV_GPU_UTIL) > {}", 95.0),
    ("max_over_time(DCGM_FI_DEV_GPU_TEMP[1m]) > {}", 90.0),
];

fn rule_file(rules: usize) -> String {
    let mut s = String::from("groups:\n  - name: bench\n    rules:\n");
    let only: Option<usize> = std::env::var("BENCH_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    for i in 0..rules {
        let (expr, base) = CONDITIONS[only.unwrap_or(i % CONDITIONS.len())];
        let expr = expr.replace(
            "{}",
            &(base + (i / CONDITIONS.len()) as f64 * 0.001).to_string(),
        );
        s.push_str(&format!(
            "      - alert: Bench{i}\n        expr: {expr}\n        for: 1m\n"
        ));
    }
    s
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (gpus, rules, points, repeats): (usize, usize, usize, usize) = if bench {
        (588, 100, 300, 10)
    } else {
        (20, 10, 30, 1)
    };
    let mut store = WindowStore::new(Retention {
        max_points: points,
        max_age_ms: i64::MAX / 4,
        max_series: 1_000_000,
    });
    let scenarios = Scenario::ALL;
    // Hosts of 8 GPUs.
    let mut fleets: Vec<SimFleet> = (0..gpus.div_ceil(8))
        .map(|h| {
            SimFleet::new(
                8.min(gpus - h * 8),
                &format!("host-{h}"),
                &scenarios,
                h as u64,
            )
        })
        .collect();
    let t0 = 1_800_000_000_000i64;
    for step in 0..points as i64 {
        for f in &mut fleets {
            store.ingest(&f.sample(t0 + step * 1000));
        }
    }
    let now = t0 + (points as i64 - 1) * 1000;
    let series = store.series_count();
    let mut group = GroupState::new(
        parse_file("bench.yml", &rule_file(rules))
            .unwrap()
            .remove(0),
    );

    let mut unshared = group.clone();
    unshared.share_subexpressions = false;
    let mut eval_times = Vec::new();
    let mut unshared_times = Vec::new();
    let mut scan_times = Vec::new();
    for r in 0..repeats {
        let t = now + r as i64; // a new timestamp each tick, as the engine would use
        let start = Instant::now();
        let outcome = group.eval(&mut store, t);
        eval_times.push(start.elapsed());
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);

        let start = Instant::now();
        let mut hits = 0usize;
        for i in 0..rules {
            let (expr, threshold) = CONDITIONS[i % CONDITIONS.len()];
            let metric = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .find(|w| w.starts_with("DCGM_"))
                .unwrap();
            for (_, _, v) in store.select_last(&Selector::metric(metric), t - 300_000, t) {
                hits += usize::from(v > threshold);
            }
        }
        std::hint::black_box(hits);
        scan_times.push(start.elapsed());
    }
    // The same rules again, later, each computing its own subexpressions.
    for r in 0..repeats {
        let t = now + (repeats + r) as i64;
        let start = Instant::now();
        unshared.eval(&mut store, t);
        unshared_times.push(start.elapsed());
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (eval, unshared, scan) = (
        median(eval_times),
        median(unshared_times),
        median(scan_times),
    );
    println!("\nRule evaluation, {rules} alerting rules over {series} series ({points} points each), median of {repeats} ticks\n");
    println!("| what | one tick | ratio to raw scan |");
    println!("|---|---:|---:|");
    println!("| raw scan: newest point of the rule's series vs a threshold, per rule (baseline) | {:.2} ms | 1.00 |", scan.as_secs_f64() * 1e3);
    println!(
        "| rule engine: PromQL evaluation, alert states, ALERTS series | {:.2} ms | {:.2} |",
        eval.as_secs_f64() * 1e3,
        eval.as_secs_f64() / scan.as_secs_f64()
    );
    println!(
        "| rule engine, each rule computing its own subexpressions (no tick cache) | {:.2} ms | {:.2} |",
        unshared.as_secs_f64() * 1e3,
        unshared.as_secs_f64() / scan.as_secs_f64()
    );
}
