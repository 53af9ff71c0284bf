//! The query-result cache (moka) in front of computed views, keyed by view and refresh
//! epoch (`now / refresh_ms`): every client polling within one refresh period shares one
//! computation. Hits, misses and evictions are counted here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use moka::notification::RemovalCause;
use moka::sync::Cache;
use serde::Serialize;

/// Which view, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum View {
    Summary,
    Profile { window_s: u64 },
}

/// A view in one refresh period.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ViewKey {
    pub view: View,
    pub epoch: i64,
}

/// `GET /api/phase4/cache/stats`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// hits / (hits + misses); null before the first lookup.
    pub hit_rate: Option<f64>,
    pub entries: u64,
    /// Entries removed because of size or age (not by clear).
    pub evictions: u64,
    pub max_entries: u64,
    pub ttl_ms: u64,
}

/// Serialised views, ready to send.
#[derive(Clone)]
pub struct ViewCache {
    cache: Cache<ViewKey, Bytes>,
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
    evictions: Arc<AtomicU64>,
    max_entries: u64,
    ttl_ms: u64,
}

impl ViewCache {
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let counter = evictions.clone();
        let cache = Cache::builder()
            .max_capacity(max_entries)
            .time_to_live(ttl)
            .eviction_listener(move |_k, _v, cause| {
                if matches!(cause, RemovalCause::Size | RemovalCause::Expired) {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        ViewCache {
            cache,
            hits: Arc::default(),
            misses: Arc::default(),
            evictions,
            max_entries,
            ttl_ms: ttl.as_millis() as u64,
        }
    }

    /// Looks a view up, counting the hit or miss.
    pub fn get(&self, key: &ViewKey) -> Option<Bytes> {
        let got = self.cache.get(key);
        let counter = if got.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        got
    }

    /// Looks a view up without counting (the query actor's re-check before computing).
    pub fn peek(&self, key: &ViewKey) -> Option<Bytes> {
        self.cache.get(key)
    }

    pub fn insert(&self, key: ViewKey, value: Bytes) {
        self.cache.insert(key, value);
    }

    /// Empties the cache; returns how many entries it held.
    pub fn clear(&self) -> u64 {
        self.cache.run_pending_tasks();
        let n = self.cache.entry_count();
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
        n
    }

    /// Exact figures: runs moka's pending maintenance first.
    pub fn stats(&self) -> CacheStats {
        self.cache.run_pending_tasks();
        self.stats_approximate()
    }

    /// Figures without maintenance: `entries` may lag by a few writes. Cheap enough for
    /// every status and `/metrics` call.
    pub fn stats_approximate(&self) -> CacheStats {
        let hits = self.hits.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        CacheStats {
            hits,
            misses,
            hit_rate: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
            entries: self.cache.entry_count(),
            evictions: self.evictions.load(Ordering::Relaxed),
            max_entries: self.max_entries,
            ttl_ms: self.ttl_ms,
        }
    }
}
