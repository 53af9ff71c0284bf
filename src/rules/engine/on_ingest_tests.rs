//! Tests of evaluation on ingest.

use super::*;
use crate::messages::samples::SampleBatch;
use crate::model::series::{Sample, SeriesKey};
use crate::rules::alerting::Alert;
use crate::rules::parse_file;
use crate::rules::store::Restored;
use crate::rules::view::AlertFilter;
use crate::runtime::mailbox::MailboxGauge;
use crate::runtime::stats::{figure, GetStats};
use crate::store::actor::NotifyStored;
use crate::store::window::Retention;

pub(super) const RULES: &str = "groups:
  - name: temps
    interval: 60s
    rules:
      - alert: Hot
        expr: temp > 80
  - name: others
    interval: 60s
    rules:
      - alert: Other
        expr: other > 1
";

pub(super) fn store(clock: &Clock) -> Addr<WindowStoreActor> {
    let retention = Retention {
        max_points: 100,
        max_age_ms: 600_000,
        max_series: 100,
    };
    WindowStoreActor::new(retention, vec![], clock.clone(), MailboxGauge::default()).start()
}

pub(super) fn no_sources() -> RuleSources {
    RuleSources {
        builtin_pack: false,
        paths: vec![],
        template_env: Default::default(),
        alert_series_names: Default::default(),
        max_samples: 0,
    }
}

/// `temp{gpu}` at 90, now.
pub(super) fn hot(clock: &Clock, gpu: &str) -> SampleBatch {
    SampleBatch::new(vec![Sample::new(
        SeriesKey::shared("temp", [("gpu", gpu)]),
        clock.now_ms(),
        90.0,
    )])
}

/// An engine of [`RULES`] evaluating on ingest from `store`, set up by `setup`, with
/// `restored` put back as after a restart.
pub(super) async fn restored_engine(
    store: &Addr<WindowStoreActor>,
    clock: &Clock,
    restored: Restored,
    setup: impl FnOnce(RuleEngine) -> RuleEngine + 'static,
) -> Addr<RuleEngine> {
    let groups = parse_file("r.yml", RULES).unwrap();
    let (s, c) = (store.clone(), clock.clone());
    let engine = RuleEngine::create(move |ctx| {
        let mut engine = setup(
            RuleEngine::new(groups, no_sources(), s, c, 10, vec![]).evaluating_on_ingest(100),
        );
        engine.restore(restored, ctx);
        engine
    });
    store
        .send(NotifyStored(engine.clone().recipient()))
        .await
        .unwrap();
    engine
}

async fn active(engine: &Addr<RuleEngine>) -> Vec<String> {
    let mut gpus: Vec<String> = engine
        .send(GetActiveAlerts(AlertFilter::default()))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.alert.labels["gpu"].clone())
        .collect();
    gpus.sort();
    gpus
}

#[actix::test]
async fn stored_samples_run_the_groups_reading_them_at_once_and_at_most_once_per_gap() {
    tokio::time::pause();
    let clock = Clock::tokio_anchored(1_000_000);
    let store = store(&clock);
    let groups = parse_file("r.yml", RULES).unwrap();
    let engine = RuleEngine::new(
        groups,
        no_sources(),
        store.clone(),
        clock.clone(),
        10,
        vec![],
    )
    .evaluating_on_ingest(100)
    .start();
    store
        .send(NotifyStored(engine.clone().recipient()))
        .await
        .unwrap();
    // The first evaluation (at start) is done; the interval is a minute away.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let evaluations = || async {
        engine.send(GetStats).await.unwrap().extra[&figure::RULE_EVALUATIONS_ON_INGEST_TOTAL]
    };
    assert_eq!(evaluations().await, 0.0);

    let hot = |gpu: &str| hot(&clock, gpu);
    store.send(hot("0")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(active(&engine).await, ["0"], "evaluated on ingest");
    assert_eq!(evaluations().await, 1.0, "only the group reading `temp`");

    // Within the gap: held back until it has passed, then run once.
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.send(hot("1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(active(&engine).await, ["0"]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(active(&engine).await, ["0", "1"]);
    assert_eq!(evaluations().await, 2.0);

    // Samples no group reads start nothing.
    store
        .send(SampleBatch::new(vec![Sample::new(
            SeriesKey::shared("unread", [("gpu", "0")]),
            clock.now_ms(),
            1.0,
        )]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(evaluations().await, 2.0);
}

/// A restarted Pulse's first samples must not resolve restored alerts before the grace
/// is over (its windows are nearly empty): evaluation on ingest waits for it too.
#[actix::test]
async fn restored_alerts_outlive_the_first_samples_until_the_grace_is_over() {
    tokio::time::pause();
    let clock = Clock::tokio_anchored(2_000_000);
    let store = store(&clock);
    let alert: Alert = serde_json::from_value(serde_json::json!({
        "id": "restored", "labels": {"alertname": "Hot", "gpu": "0"}, "annotations": {},
        "state": "firing", "value": 90.0, "active_at_ms": 1_000_000,
        "fired_at_ms": 1_000_000, "resolved_at_ms": null
    }))
    .unwrap();
    let restored = Restored {
        active: vec![StoredAlert::new("temps", "r.yml", &alert)],
        ..Restored::default()
    };
    let engine = restored_engine(&store, &clock, restored, |e| e).await;

    // Samples of another GPU: an evaluation now would resolve GPU 0's alert.
    let hot = |gpu: &str| hot(&clock, gpu);
    store.send(hot("1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(active(&engine).await, ["0"]);
    tokio::time::sleep(Duration::from_millis(RESTORE_GRACE_MS as u64)).await;
    store.send(hot("1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(active(&engine).await, ["1"]);
}
