//! The window store's memory estimate (`WindowStore::bytes`, which its memory budget
//! `window.max_bytes` is checked against) against what it really allocates, counted by a
//! global allocator in this test binary (one test, so nothing else allocates meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use pulse::model::series::{Sample, SeriesKey};
use pulse::{Retention, WindowStore};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A dcgm-exporter GPU series: the labels Pulse's GPU samplers write.
fn gpu_series(metric: &str, host: usize, gpu: usize) -> pulse::model::series::Series {
    let (host, gpu) = (format!("node-{host:04}"), gpu.to_string());
    let uuid = format!("GPU-2feb6e95-f103-9f52-{host}-{gpu:0>12}");
    let device = format!("nvidia{gpu}");
    SeriesKey::shared(
        metric,
        [
            ("Hostname", host.as_str()),
            ("UUID", uuid.as_str()),
            ("device", device.as_str()),
            ("gpu", gpu.as_str()),
            ("modelName", "NVIDIA H100 80GB HBM3"),
        ],
    )
}

#[test]
fn the_window_store_s_memory_estimate_is_within_a_fifth_of_what_it_allocates() {
    let metrics = [
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_FB_USED",
    ];
    // One point, a young ring, and one past its settling (its final buffer, at 129 points).
    for points in [1_i64, 60, 130] {
        let before = LIVE.load(Ordering::Relaxed);
        let mut store = WindowStore::new(Retention {
            max_points: 1800,
            max_age_ms: 1_800_000,
            max_series: 100_000,
        });
        // 1 000 hosts of 8 GPUs, three metrics: 24 000 series, one sample a second each.
        let series: Vec<_> = (0..1000)
            .flat_map(|h| (0..8).flat_map(move |g| metrics.map(|m| gpu_series(m, h, g))))
            .collect();
        for t in 0..points {
            let batch: Vec<Sample> = series
                .iter()
                .map(|s| Sample::new(s.clone(), t * 1000, 1.0))
                .collect();
            store.ingest(&batch);
        }
        drop(series);
        let allocated = (LIVE.load(Ordering::Relaxed) - before) as f64;
        let estimated = store.bytes() as f64;
        println!(
            "{points} points per series: allocated {:.1} MiB, estimated {:.1} MiB ({:.0} bytes a series besides its points)",
            allocated / 1048576.0,
            estimated / 1048576.0,
            (allocated - (estimated - 24_000.0 * pulse::SERIES_BYTES as f64)) / 24_000.0
        );
        let ratio = estimated / allocated;
        assert!(
            (0.8..=1.2).contains(&ratio),
            "estimated / allocated = {ratio:.2}"
        );
        drop(store);
    }
}
