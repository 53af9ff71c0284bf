//! The query-result cache (moka) in front of computed views, keyed by view and refresh
//! epoch (`now / refresh_ms`): every client polling within one refresh period shares one
//! computation. Hits, misses and evictions are counted here.
//!
//! With Redis configured, a second tier: each computed view is also written to
//! `<p>cache:<view>:<epoch>` (expiring with the cache TTL), and a first-tier miss reads it
//! before computing. A restarted Pulse, or another `pulse serve` process reading the same
//! Redis, serves a view of the current period without computing it again.

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

impl ViewKey {
    /// The second tier's key: `<prefix>cache:summary:<epoch>`,
    /// `<prefix>cache:profile:<window_s>:<epoch>`.
    pub fn redis_key(&self, prefix: &str) -> String {
        match &self.view {
            View::Summary => format!("{prefix}cache:summary:{}", self.epoch),
            View::Profile { window_s } => {
                format!("{prefix}cache:profile:{window_s}:{}", self.epoch)
            }
        }
    }
}

/// The second tier's figures.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SecondTierStats {
    /// Where (`redis://...`).
    pub redis: String,
    pub hits: u64,
    pub misses: u64,
    /// Reads and writes that failed (Redis unreachable): the view is computed instead.
    pub errors: u64,
    pub last_error: Option<String>,
}

/// How long a view request waits for the Redis tier before computing the view itself: a
/// hung Redis (stopped, not refusing) made every miss wait the 5 s round-trip timeout. A
/// healthy Redis answers a GET within a millisecond on the host and a few across a data
/// centre, and the summary is computed in a few milliseconds: a cache read slower than
/// that is worth less than the view itself. 25 ms keeps the worst request with a hung Redis
/// within the 50 ms (100 ms gave 107 ms).
pub const SECOND_TIER_READ_BUDGET: Duration = Duration::from_millis(25);
/// After a failed or late round trip the Redis tier is skipped this long.
pub const SECOND_TIER_BACKOFF: Duration = Duration::from_secs(5);

/// The second tier, in Redis.
#[derive(Clone)]
pub struct SecondTier {
    conn: redis::aio::ConnectionManager,
    url: String,
    prefix: String,
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
    /// Skipped until then, after a failure.
    skip_until: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl SecondTier {
    pub fn new(url: &str, prefix: &str) -> redis::RedisResult<Self> {
        Ok(SecondTier {
            conn: crate::redis::lazy_connection(url)?,
            url: url.to_string(),
            prefix: prefix.to_string(),
            hits: Arc::default(),
            misses: Arc::default(),
            errors: Arc::default(),
            last_error: Arc::default(),
            skip_until: Arc::default(),
        })
    }

    fn failed(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        *self.skip_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::time::Instant::now() + SECOND_TIER_BACKOFF);
    }

    /// Whether the tier is being skipped after a failure.
    fn skipping(&self) -> bool {
        self.skip_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| std::time::Instant::now() < t)
    }

    /// The view, when another process (or this one before a restart) computed it; `None`
    /// at once while the tier is skipped, and after [`SECOND_TIER_READ_BUDGET`].
    async fn get(&self, key: &ViewKey) -> Option<Bytes> {
        if self.skipping() {
            return None;
        }
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("GET").arg(key.redis_key(&self.prefix)).clone();
        let budgeted = async {
            tokio::time::timeout(
                SECOND_TIER_READ_BUDGET,
                crate::redis::timed(cmd.query_async::<Option<Vec<u8>>>(&mut conn)),
            )
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within the {} ms read budget",
                    SECOND_TIER_READ_BUDGET.as_millis()
                ))
            })
        };
        match budgeted.await {
            Ok(Some(v)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(Bytes::from(v))
            }
            Ok(None) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                self.failed(e);
                None
            }
        }
    }

    async fn put(&self, key: &ViewKey, value: &Bytes, ttl_ms: u64) {
        if self.skipping() {
            return;
        }
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("SET")
            .arg(key.redis_key(&self.prefix))
            .arg(value.as_ref())
            .arg("PX")
            .arg(ttl_ms)
            .clone();
        if let Err(e) = crate::redis::timed(cmd.query_async::<()>(&mut conn)).await {
            self.failed(e);
        }
    }

    /// Deletes every second-tier entry; answers how many.
    async fn clear(&self) -> Result<u64, String> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}cache:*", self.prefix);
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .clone();
            let (next, keys): (u64, Vec<String>) =
                crate::redis::timed(scan.query_async(&mut conn)).await?;
            if !keys.is_empty() {
                let del = redis::cmd("UNLINK").arg(&keys).clone();
                deleted += crate::redis::timed(del.query_async::<u64>(&mut conn)).await?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    fn stats(&self) -> SecondTierStats {
        SecondTierStats {
            redis: self.url.clone(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// `GET /api/phase4/cache/stats`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct CacheStats {
    /// Lookups answered from the cache, `stale_hits` included.
    pub hits: u64,
    /// Of the hits, those answered with the previous period's view while this period's
    /// was being computed.
    pub stale_hits: u64,
    /// Lookups that waited for a computation.
    pub misses: u64,
    /// hits / (hits + misses); null before the first lookup.
    pub hit_rate: Option<f64>,
    pub entries: u64,
    /// Entries removed because of size or age (not by clear).
    pub evictions: u64,
    pub max_entries: u64,
    pub ttl_ms: u64,
    /// The Redis tier; null without Redis.
    pub redis_tier: Option<SecondTierStats>,
}

/// What `POST /api/phase4/cache/clear` removed.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Cleared {
    /// Entries of this process's cache.
    pub cleared: u64,
    /// Entries of the Redis tier (null without Redis).
    pub cleared_redis: Option<u64>,
}

/// Serialised views, ready to send.
#[derive(Clone)]
pub struct ViewCache {
    cache: Cache<ViewKey, Bytes>,
    hits: Arc<AtomicU64>,
    stale_hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
    evictions: Arc<AtomicU64>,
    max_entries: u64,
    ttl_ms: u64,
    second: Option<SecondTier>,
    /// Bumped by every clear: a view whose computation began before a clear is answered
    /// to those waiting for it, but not kept.
    generation: Arc<AtomicU64>,
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
            stale_hits: Arc::default(),
            misses: Arc::default(),
            evictions,
            max_entries,
            ttl_ms: ttl.as_millis() as u64,
            second: None,
            generation: Arc::default(),
        }
    }

    /// Adds the Redis tier.
    pub fn with_second_tier(mut self, second: SecondTier) -> Self {
        self.second = Some(second);
        self
    }

    /// Which clear the cache is at; a computation notes it when it begins.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// A first-tier miss: the Redis tier's entry (then also kept in the first, unless the
    /// cache was cleared since `generation`), if any.
    pub async fn get_second(&self, key: &ViewKey, generation: u64) -> Option<Bytes> {
        let bytes = self.second.as_ref()?.get(key).await?;
        if self.generation() == generation {
            self.cache.insert(key.clone(), bytes.clone());
        }
        Some(bytes)
    }

    /// Keeps a view computed since `generation` in both tiers, unless the cache was cleared
    /// meanwhile (the Redis write is awaited by the caller's task, after the view is
    /// answered).
    pub fn insert_both(
        &self,
        generation: u64,
        key: ViewKey,
        value: Bytes,
    ) -> impl std::future::Future<Output = ()> {
        let kept = self.generation() == generation;
        if kept {
            self.cache.insert(key.clone(), value.clone());
        }
        let (second, ttl_ms) = (self.second.clone().filter(|_| kept), self.ttl_ms);
        async move {
            if let Some(s) = second {
                s.put(&key, &value, ttl_ms).await;
            }
        }
    }

    /// Empties both tiers.
    pub async fn clear_both(&self) -> Result<Cleared, String> {
        let cleared = self.clear();
        let cleared_redis = match &self.second {
            Some(s) => Some(s.clear().await?),
            None => None,
        };
        Ok(Cleared {
            cleared,
            cleared_redis,
        })
    }

    /// Looks a view up, counting a hit when found. A miss is counted by
    /// [`get_stale`](Self::get_stale), which decides whether the caller waits.
    pub fn get(&self, key: &ViewKey) -> Option<Bytes> {
        let got = self.cache.get(key);
        if got.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        got
    }

    /// After a [`get`](Self::get) miss: the previous period's view, counted as a stale
    /// hit, or a miss when there is none.
    pub fn get_stale(&self, previous: &ViewKey) -> Option<Bytes> {
        let got = self.cache.get(previous);
        if got.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            self.stale_hits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
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
        self.generation.fetch_add(1, Ordering::SeqCst);
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
            stale_hits: self.stale_hits.load(Ordering::Relaxed),
            misses,
            hit_rate: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
            entries: self.cache.entry_count(),
            evictions: self.evictions.load(Ordering::Relaxed),
            max_entries: self.max_entries,
            ttl_ms: self.ttl_ms,
            redis_tier: self.second.as_ref().map(SecondTier::stats),
        }
    }
}
