//! Tests of `actor.rs`.

use super::*;
use crate::messages::testing::Recorder;
use crate::model::selector::Selector;
use crate::model::series::{Sample, SeriesKey};

fn retention() -> Retention {
    Retention {
        max_points: 10,
        max_age_ms: 5_000,
        max_series: 100,
    }
}

#[actix::test]
async fn stores_forwards_in_order_and_evicts_with_time() {
    tokio::time::pause();
    let clock = Clock::tokio_anchored(1_000_000);
    let rec = Recorder::start();
    let store = WindowStoreActor::new(
        retention(),
        vec![rec.mailbox()],
        clock.clone(),
        MailboxGauge::default(),
    )
    .start();
    let series = SeriesKey::shared("m", [("gpu", "0")]);
    for i in 0..3 {
        let batch = SampleBatch::new(vec![Sample::new(series.clone(), 1_000_000 + i, i as f64)]);
        store.send(batch).await.unwrap();
    }
    let seen = rec.values().await;
    assert_eq!(seen, vec![0.0, 1.0, 2.0]);
    let latest = store
        .send(SelectLatest {
            selector: Selector::metric("m"),
            since_ms: 0,
        })
        .await
        .unwrap();
    assert_eq!(latest[0].2, 2.0);

    // Past max_age the eviction tick forgets the series.
    tokio::time::advance(Duration::from_secs(7)).await;
    tokio::task::yield_now().await;
    let stats = store.send(GetStats).await.unwrap();
    assert_eq!(stats.extra[&figure::SERIES], 0.0);
    assert_eq!(stats.received_total, 3);
    assert_eq!(stats.emitted_total, 3);
}

#[actix::test]
async fn grids_are_the_windows_resampled_where_they_are() {
    use crate::processors::predict::model::{resample, SeriesGrid};
    let clock = Clock::tokio_anchored(1_000_000);
    let retention = Retention {
        max_points: 1_000,
        max_age_ms: 10_000_000,
        max_series: 100,
    };
    let store = WindowStoreActor::new(retention, vec![], clock, MailboxGauge::default()).start();
    // A gauge, and a counter with a reset: the grid holds the counter's rate.
    let gauge = SeriesKey::shared("DCGM_FI_DEV_GPU_UTIL", [("gpu", "0")]);
    let counter = SeriesKey::shared("http_requests_total", [("route", "/a")]);
    let mut samples = Vec::new();
    for i in 0..120i64 {
        let t = 1_000_000 + i * 1_000;
        samples.push(Sample::new(gauge.clone(), t, (i % 7) as f64));
        let total = if i < 60 { i * 3 } else { (i - 60) * 2 };
        samples.push(Sample::new(counter.clone(), t, total as f64));
    }
    store.send(SampleBatch::new(samples)).await.unwrap();
    let (start_ms, end_ms, step_ms, buckets) = (1_030_000, 1_119_000, 10_000, 9);
    let grids = store
        .send(SeriesGrid::read(
            Selector::all(),
            start_ms,
            end_ms,
            step_ms,
            buckets,
        ))
        .await
        .unwrap();
    let windows = store
        .send(SelectPoints {
            selector: Selector::all(),
            start_ms,
            end_ms,
        })
        .await
        .unwrap();
    assert_eq!(grids.len(), 2);
    for (g, w) in grids.iter().zip(&windows) {
        assert_eq!(g.series, w.series);
        let counter = g.series.name() == "http_requests_total";
        let expected = resample(&w.points, end_ms, step_ms, buckets, counter);
        assert_eq!(g.grid, expected, "{}", g.series);
    }
    let rate = &grids
        .iter()
        .find(|g| g.series.name() == "http_requests_total")
        .unwrap()
        .grid;
    assert_eq!(rate.values.len(), 9);
    assert_eq!(rate.values[0], 3.0, "3 requests a second before the reset");
    assert_eq!(rate.values[8], 2.0, "2 a second after it");
}

/// A processor that derives `<name>_x10` (value × 10) from every sample, slowly, on
/// its own thread, and counts the batches it has seen.
struct Times10 {
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Actor for Times10 {
    type Context = Context<Self>;
}

impl Handler<ProcessBatch> for Times10 {
    type Result = MessageResult<ProcessBatch>;

    fn handle(&mut self, ProcessBatch(b): ProcessBatch, _: &mut Self::Context) -> Self::Result {
        std::thread::sleep(Duration::from_millis(20));
        self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        MessageResult(
            b.samples
                .iter()
                .map(|s| {
                    let name = format!("{}_x10", s.series.name());
                    let series = SeriesKey::shared(name.as_str(), [("gpu", "0")]);
                    Sample::new(series, s.timestamp_ms, s.value * 10.0)
                })
                .collect(),
        )
    }
}

#[actix::test]
async fn processors_work_behind_the_store_in_order_and_lose_nothing() {
    let rec = Recorder::start();
    let seen = std::sync::Arc::default();
    let processor = {
        let seen = std::sync::Arc::clone(&seen);
        Times10::start_in_arbiter(&Arbiter::new().handle(), move |_| Times10 { seen })
    };
    let store = WindowStoreActor::new(
        Retention {
            max_points: 100,
            ..retention()
        },
        vec![rec.mailbox()],
        Clock::system(),
        MailboxGauge::default(),
    )
    .with_processors(vec![Mailbox::new(
        processor.recipient(),
        MailboxGauge::default(),
    )])
    .start();
    let series = SeriesKey::shared("m", [("gpu", "0")]);
    let n = 10;
    for i in 0..n {
        let batch = SampleBatch::new(vec![Sample::new(series.clone(), 1_000 + i, i as f64)]);
        store.send(batch).await.unwrap();
    }
    // The store took every batch while the processor was still at the first ones.
    let seen_when_taken = seen.load(std::sync::atomic::Ordering::SeqCst);
    assert!(seen_when_taken < n as usize, "{seen_when_taken}");

    store.send(ProcessingDone).await.unwrap();
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), n as usize);
    // Every derived sample stored (none refused as out of order) and forwarded, each
    // series in order.
    let stats = store.send(GetStats).await.unwrap();
    assert_eq!(
        (stats.emitted_total, stats.dropped_total),
        (2 * n as u64, 0)
    );
    let forwarded = rec.samples().await;
    let values = |name: &str| -> Vec<f64> {
        forwarded
            .iter()
            .filter(|s| s.series.name() == name)
            .map(|s| s.value)
            .collect()
    };
    assert_eq!(values("m"), (0..n).map(|i| i as f64).collect::<Vec<_>>());
    assert_eq!(
        values("m_x10"),
        (0..n).map(|i| i as f64 * 10.0).collect::<Vec<_>>()
    );
    let latest = store
        .send(SelectLatest {
            selector: Selector::metric("m_x10"),
            since_ms: 0,
        })
        .await
        .unwrap();
    assert_eq!(latest[0].2, (n - 1) as f64 * 10.0);
}

#[actix::test]
async fn processing_done_answers_at_once_without_processors() {
    let store = WindowStoreActor::new(
        retention(),
        vec![],
        Clock::system(),
        MailboxGauge::default(),
    )
    .start();
    store.send(ProcessingDone).await.unwrap();
}

#[actix::test]
async fn refused_samples_are_counted_as_dropped() {
    let store = WindowStoreActor::new(
        Retention {
            max_series: 1,
            ..retention()
        },
        vec![],
        Clock::system(),
        MailboxGauge::default(),
    )
    .start();
    let batch = SampleBatch::new(vec![
        Sample::new(SeriesKey::shared("a", Vec::<(&str, &str)>::new()), 1, 1.0),
        Sample::new(SeriesKey::shared("b", Vec::<(&str, &str)>::new()), 1, 1.0),
    ]);
    store.send(batch).await.unwrap();
    let stats = store.send(GetStats).await.unwrap();
    assert_eq!(
        (
            stats.received_total,
            stats.emitted_total,
            stats.dropped_total
        ),
        (2, 1, 1)
    );
}
