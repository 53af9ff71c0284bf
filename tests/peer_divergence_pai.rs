//! Peer divergence on real stragglers: Alibaba PAI's per-worker mini-batch times
//! (`../shared/data/gpu/alibaba_pai_minibatch_stragglers`, CC BY 4.0), each job replayed as
//! one host and each worker as one GPU. The source documents a straggler, worker 6 of job 1,
//! "emerging in the middle of the training" (its labels put it at 00:30:11–00:31:31 of the
//! synthetic timeline); job 2 has "stable variation" and none. Skipped (with a message)
//! where the shared data is absent.

use std::path::Path;

use pulse::config::pipeline::{AnomalyConfig, WatchSelector};
use pulse::model::series::{Sample, SeriesKey};
use pulse::processors::anomaly::nab::{read_series, timestamp_ms};
use pulse::processors::anomaly::{Anomaly, AnomalyEngine, AnomalyFilter, Reason};

const DATA: &str = "../shared/data/gpu/alibaba_pai_minibatch_stragglers";
const METRIC: &str = "training_batch_time_norm";

/// Replays one job; returns its peer divergences.
fn replay(job: u32) -> Vec<Anomaly> {
    let mut cfg = AnomalyConfig::default();
    let selector: WatchSelector = format!("{{__name__=\"{METRIC}\"}}").try_into().unwrap();
    cfg.watch = vec![selector.clone()];
    cfg.peer_watch = vec![selector];
    let mut samples = Vec::new();
    for worker in 0..10 {
        let path = Path::new(DATA).join(format!("job{job}_worker{worker}_batch_time_norm.csv"));
        let gpu = worker.to_string();
        let series = SeriesKey::shared(METRIC, [("Hostname", format!("job{job}")), ("gpu", gpu)]);
        for (t, v) in read_series(&path).unwrap() {
            samples.push(Sample::new(series.clone(), timestamp_ms(&t).unwrap(), v));
        }
    }
    samples.sort_by_key(|s| s.timestamp_ms);
    let mut engine = AnomalyEngine::new(cfg.settings());
    for batch in samples.chunk_by(|a, b| a.timestamp_ms == b.timestamp_ms) {
        engine.process(batch);
    }
    let divergences: Vec<Anomaly> = engine
        .list(&AnomalyFilter {
            limit: usize::MAX,
            ..Default::default()
        })
        .into_iter()
        .filter(|a| a.reason == Reason::PeerDivergence)
        .collect();
    for a in &divergences {
        println!("job {job}: at {} s: {}", a.last_ms / 1000, a.detail);
    }
    divergences
}

#[test]
fn the_documented_straggler_is_flagged_and_a_stable_job_is_quiet() {
    if !Path::new(DATA).exists() {
        eprintln!("skipped: {DATA} not found");
        return;
    }
    let job1 = replay(1);
    let ms = |t: &str| timestamp_ms(t).unwrap();
    let (from, to) = (ms("2020-01-01 00:30:11"), ms("2020-01-01 00:31:31"));
    assert!(
        job1.iter()
            .any(|a| a.series.label("gpu") == Some("6") && (from..=to).contains(&a.last_ms)),
        "worker 6 of job 1 was not flagged during its straggle"
    );
    let job2 = replay(2);
    assert!(job2.is_empty(), "job 2 has no straggler: {job2:#?}");
}
