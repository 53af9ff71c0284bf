//! Tests of delivery decisions: a firing alert put back from Redis (a restart, or a host
//! taken over in `pulse aggregate`) is sent when its resend delay is up, not at once.

use std::sync::{Arc, Mutex};

use super::notify::Notify;
use super::on_ingest_tests::{hot, restored_engine, store};
use super::*;
use crate::alertmanager::NotifyAlerts;
use crate::model::labels::fingerprint;
use crate::rules::alerting::Alert;
use crate::rules::store::Restored;

const RESEND_MS: i64 = 60_000;

/// When each `NotifyAlerts` arrived, on the engine's clock.
struct Sent(Clock, Arc<Mutex<Vec<i64>>>);

impl Actor for Sent {
    type Context = Context<Self>;
}

impl Handler<NotifyAlerts> for Sent {
    type Result = ();

    fn handle(&mut self, _: NotifyAlerts, _: &mut Self::Context) {
        self.1.lock().unwrap().push(self.0.now_ms());
    }
}

/// GPU 0's `Hot` alert, firing for two minutes, stored as last sent at `last_sent_ms`;
/// restored into an engine fed hot samples every second for 90 s. When was it sent, in ms
/// from the restore?
async fn sends_after_restore(last_sent_ms: Option<i64>) -> Vec<i64> {
    tokio::time::pause();
    let clock = Clock::tokio_anchored(2_000_000);
    let t0 = clock.now_ms();
    let store = store(&clock);
    let labels = [("alertname", "Hot"), ("gpu", "0")];
    let alert: Alert = serde_json::from_value(serde_json::json!({
        "id": fingerprint(labels), "labels": {"alertname": "Hot", "gpu": "0"},
        "annotations": {}, "state": "firing", "value": 90.0, "active_at_ms": t0 - 120_000,
        "fired_at_ms": t0 - 120_000, "resolved_at_ms": null
    }))
    .unwrap();
    let mut stored = StoredAlert::new("temps", "r.yml", &alert);
    stored.last_sent_ms = last_sent_ms;
    let restored = Restored {
        active: vec![stored],
        ..Restored::default()
    };
    let sent = Arc::new(Mutex::new(Vec::new()));
    let inbox = Sent(clock.clone(), sent.clone()).start();
    let _engine = restored_engine(&store, &clock, restored, move |e| {
        e.with_notify(Notify {
            destinations: vec![inbox.recipient()],
            resend_delay_ms: RESEND_MS,
            external_url: "http://pulse".into(),
            silences: vec![],
            silence_max_ms: 0,
        })
    })
    .await;
    for _ in 0..90 {
        store.send(hot(&clock, "0")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let times = sent.lock().unwrap().iter().map(|t| t - t0).collect();
    times
}

#[actix::test]
async fn a_restored_alert_sent_20_s_ago_is_sent_again_when_its_resend_delay_is_up() {
    // Sent 20 s before the restore: next due 40 s after it (plus an evaluation's wait).
    let sent = sends_after_restore(Some(2_000_000 - 20_000)).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!((40_000..=42_000).contains(&sent[0]), "{sent:?}");
}

#[actix::test]
async fn a_restored_alert_never_sent_is_sent_at_the_first_evaluation() {
    let sent = sends_after_restore(None).await;
    assert!(!sent.is_empty(), "{sent:?}");
    assert!(
        sent[0] <= RESTORE_GRACE_MS + 2_000,
        "sent at {} ms: {sent:?}",
        sent[0]
    );
    // Then once a resend delay later.
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[1] - sent[0] >= RESEND_MS, "{sent:?}");
}
