//! Tests of the rule engine actor.

use super::*;
use crate::messages::samples::SampleBatch;
use crate::model::series::{Sample, SeriesKey};
use crate::rules::alerting::AlertEventKind;
use crate::rules::parse_file;
use crate::rules::view::AlertFilter;
use crate::runtime::mailbox::MailboxGauge;
use crate::store::window::Retention;

/// Records alert events.
#[derive(Default)]
struct Events(Vec<AlertEvent>);
impl Actor for Events {
    type Context = Context<Self>;
}
impl Handler<AlertEvent> for Events {
    type Result = ();
    fn handle(&mut self, e: AlertEvent, _: &mut Self::Context) {
        self.0.push(e);
    }
}
#[derive(Message)]
#[rtype(result = "Vec<AlertEventKind>")]
struct Kinds;
impl Handler<Kinds> for Events {
    type Result = MessageResult<Kinds>;
    fn handle(&mut self, _: Kinds, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.0.iter().map(|e| e.kind).collect())
    }
}

#[actix::test]
async fn evaluates_on_the_group_interval_and_emits_each_state_change() {
    tokio::time::pause();
    let clock = Clock::tokio_anchored(1_000_000);
    let store = WindowStoreActor::new(
        Retention {
            max_points: 100,
            max_age_ms: 600_000,
            max_series: 100,
        },
        vec![],
        clock.clone(),
        MailboxGauge::default(),
    )
    .start();
    let groups = parse_file(
            "r.yml",
            "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: Hot\n        expr: temp > 80\n        for: 2s\n",
        )
        .unwrap();
    let events = Events::default().start();
    let sources = RuleSources {
        builtin_pack: false,
        paths: vec![],
        template_env: Default::default(),
        alert_series_names: Default::default(),
        max_samples: 0,
    };
    let engine = RuleEngine::new(
        groups,
        sources,
        store.clone(),
        clock.clone(),
        10,
        vec![events.clone().recipient()],
    )
    .start();
    let temp = SeriesKey::shared("temp", [("gpu", "0")]);
    let send = |v: f64| {
        store.send(SampleBatch::new(vec![Sample::new(
            temp.clone(),
            clock.now_ms(),
            v,
        )]))
    };
    send(90.0).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        send(90.0).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        events.send(Kinds).await.unwrap(),
        [AlertEventKind::Pending, AlertEventKind::Firing]
    );
    let active = engine
        .send(GetActiveAlerts(AlertFilter::default()))
        .await
        .unwrap();
    assert_eq!(active.len(), 1);
    let id = active[0].alert.id.clone();
    let ack = Acknowledge {
        id: id.clone(),
        by: "ana".into(),
        comment: String::new(),
    };
    engine.send(ack).await.unwrap().unwrap();

    // Cooling down: the alert resolves, with its acknowledgement in the history.
    send(20.0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let kinds = events.send(Kinds).await.unwrap();
    assert_eq!(
        kinds[2..],
        [AlertEventKind::Acknowledged, AlertEventKind::Resolved]
    );
    let (total, history) = engine
        .send(GetAlertHistory {
            filter: AlertFilter::default(),
            offset: 0,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(total, 1);
    assert_eq!(history[0].acknowledgement.as_ref().unwrap().by, "ana");
    let again = Acknowledge {
        id,
        by: "ana".into(),
        comment: String::new(),
    };
    assert!(matches!(
        engine.send(again).await.unwrap(),
        Err(AckError::Resolved(_))
    ));
}
