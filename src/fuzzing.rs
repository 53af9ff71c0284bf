//! Entry points of the fuzz targets under `fuzz/` (cargo fuzz, libFuzzer). Each takes
//! arbitrary bytes the way Pulse takes them from a user (a request body, a rule file, a
//! PromQL expression, a config file, a promtool test file) and must never panic, hang or
//! exhaust memory: bad input is an error value, and that is all. `tests/fuzz_seeds.rs`
//! runs every committed seed through them on stable Rust, so the suite checks them too.

use crate::config::pipeline::PipelineConfig;
use crate::config::service::ServiceConfig;
use crate::model::series::{Sample, SeriesKey};
use crate::promql::Evaluator;
use crate::rules::group::GroupState;
use crate::sources::requests::aggregate::{AggregatorLimits, RequestAggregator, RequestRecord};
use crate::store::window::{Retention, WindowStore};

/// `POST /api/v1/requests`: parse, validate, then count what would be accepted.
pub fn request_batch(data: &[u8]) {
    let Ok(records) = serde_json::from_slice::<Vec<RequestRecord>>(data) else {
        return;
    };
    if records.iter().any(|r| r.validate().is_err()) {
        return;
    }
    let limits = AggregatorLimits {
        window_ms: 60_000,
        max_recent: 1_000,
        max_series: 1_000,
        max_routes_per_service: 1_000,
    };
    let mut agg = RequestAggregator::new(limits, 0);
    agg.record(1_000, &records);
    let _ = agg.samples(2_000);
    let _ = agg.summary(2_000);
}

/// A small store for expressions and rules to read: two GPUs' utilisation and memory over
/// five minutes, one point every 15 s, with a staleness marker.
fn store() -> WindowStore {
    let mut store = WindowStore::new(Retention {
        max_points: 1_000,
        max_age_ms: 3_600_000,
        max_series: 1_000,
    });
    let mut samples = Vec::new();
    for gpu in ["0", "1"] {
        for (name, base) in [("DCGM_FI_DEV_GPU_UTIL", 50.0), ("DCGM_FI_DEV_FB_USED", 1e4)] {
            let s = SeriesKey::shared(name, [("gpu", gpu), ("Hostname", "fuzz")]);
            for i in 0..=20 {
                let v = if i == 20 && gpu == "1" {
                    crate::promql::stale_nan()
                } else {
                    base + i as f64
                };
                samples.push(Sample::new(s.clone(), i * 15_000, v));
            }
        }
    }
    store.ingest(&samples);
    store
}

/// A PromQL expression: parse, check, evaluate over [`store`].
pub fn promql(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(q) = crate::promql::parse(text) else {
        return;
    };
    let store = store();
    let ev = Evaluator::new(&store, 300_000);
    let _ = ev.eval(&q.expr);
}

/// A rule file: load it, then evaluate every group it holds twice over [`store`].
pub fn rule_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(groups) = crate::rules::parse_file("fuzz.yml", text) else {
        return;
    };
    let mut store = store();
    for g in groups {
        let mut state = GroupState::new(g);
        let _ = state.eval(&mut store, 300_000);
        let _ = state.eval(&mut store, 315_000);
    }
}

/// `config/pulse.toml` and a pipeline file, from the same text (no environment).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ServiceConfig::load("fuzz.toml", text, |_| None);
    let _ = PipelineConfig::parse("fuzz.toml", text);
}

/// Rules the promtool target's tests run against (`fuzz/rules.yml`).
const PROMTOOL_RULES: &str = include_str!("../fuzz/rules.yml");

/// A promtool test file, run against [`PROMTOOL_RULES`] (loaded once: the rules are not
/// what this target varies, and loading them took most of each execution's time).
pub fn promtool_file(data: &[u8]) {
    static GROUPS: std::sync::OnceLock<Vec<crate::rules::RuleGroup>> = std::sync::OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let groups = GROUPS
        .get_or_init(|| crate::rules::parse_file("fuzz-rules.yml", PROMTOOL_RULES).expect("valid"));
    let _ = crate::rules::promtool::run_text(text, groups);
}
