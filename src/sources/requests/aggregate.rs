//! Request metrics: the records inference services post, validated, and the aggregator
//! that turns them into Prometheus-style counters and histograms (by service, route and
//! status) plus rate, latency percentiles and error rate over a trailing window.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::messages::page::Page;
use crate::model::catalog as m;
use crate::model::series::{Sample, Series, SeriesKey};

/// Histogram bucket bounds, seconds (Prometheus client defaults).
pub const BUCKETS_S: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// `service` label given to records that name none.
pub const DEFAULT_SERVICE: &str = "unknown";
/// `service` label of Pulse's own HTTP handlers; left out of the fleet summary.
pub const PULSE_SERVICE: &str = "pulse";
/// Service and route label for (service, route, status) combinations past the cardinality limit.
pub const OTHER_ROUTE: &str = "__other__";
/// Longest route label accepted.
pub const MAX_ROUTE_LEN: usize = 256;
/// A record's timestamp may be this far ahead of Pulse's clock (clock skew), no more.
pub const MAX_FUTURE_MS: i64 = 5 * 60_000;
/// A record's timestamp may be this old, no more (a replay of a day's buffer is fine).
pub const MAX_AGE_MS: i64 = 24 * 3_600_000;

/// One request, as an inference service reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!(
    {"route": "/v1/generate", "status": 200, "latency_ms": 182.5, "gpu": "0", "service": "llm"}))]
pub struct RequestRecord {
    /// When the request finished, Unix ms (within a day before and 5 minutes after
    /// Pulse's clock); arrival time when absent.
    #[serde(default)]
    pub timestamp: Option<i64>,
    /// Route or endpoint, e.g. `/v1/generate` (1 to 256 bytes, no control characters).
    #[schema(min_length = 1, max_length = 256)]
    pub route: String,
    /// HTTP status code.
    #[schema(minimum = 100, maximum = 599)]
    pub status: u16,
    /// Latency in milliseconds (at most a day).
    #[schema(minimum = 0, maximum = 86400000)]
    pub latency_ms: f64,
    /// GPU that served it (string or number), when known.
    #[serde(default, deserialize_with = "crate::model::gpu_id::optional")]
    #[schema(value_type = Option<crate::model::gpu_id::GpuId>)]
    pub gpu: Option<String>,
    /// W3C trace id (32 hex digits, not all zero), when traced.
    #[serde(default)]
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub trace_id: Option<String>,
    /// Service name (1 to 256 bytes); `unknown` when absent.
    #[serde(default)]
    pub service: Option<String>,
}

/// The longest latency a request record may carry: a day. Larger values are a client's
/// mistake, and one `1e308` made the latency histogram's sum a 307-digit number.
pub const MAX_LATENCY_MS: f64 = 86_400_000.0;

impl RequestRecord {
    /// Checks what serde cannot; the error names the field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.route.is_empty() || self.route.len() > MAX_ROUTE_LEN {
            return Err(("route", format!("must be 1 to {MAX_ROUTE_LEN} bytes long")));
        }
        // Label values end up in /metrics: no control characters (NUL, escape...).
        for (field, value) in [
            ("route", Some(&self.route)),
            ("service", self.service.as_ref()),
            ("gpu", self.gpu.as_ref()),
        ] {
            if value.is_some_and(|v| v.chars().any(char::is_control)) {
                return Err((field, "must not hold control characters".to_string()));
            }
        }
        if !(100..=599).contains(&self.status) {
            return Err((
                "status",
                format!("{} is not an HTTP status (100-599)", self.status),
            ));
        }
        if !self.latency_ms.is_finite() || !(0.0..=MAX_LATENCY_MS).contains(&self.latency_ms) {
            return Err((
                "latency_ms",
                format!(
                    "{} is not a latency from 0 to {MAX_LATENCY_MS} ms (a day)",
                    self.latency_ms
                ),
            ));
        }
        if let Some(ts) = self.timestamp {
            if ts <= 0 {
                return Err((
                    "timestamp",
                    format!("{ts} is not a Unix time in milliseconds"),
                ));
            }
        }
        if let Some(t) = &self.trace_id {
            if crate::telemetry::parse_trace_id(t).is_err() {
                return Err((
                    "trace_id",
                    "must be 32 hex digits, not all zero (W3C trace id)".to_string(),
                ));
            }
        }
        if let Some(s) = &self.service {
            if s.is_empty() || s.len() > MAX_ROUTE_LEN {
                return Err((
                    "service",
                    format!("must be 1 to {MAX_ROUTE_LEN} bytes long"),
                ));
            }
        }
        Ok(())
    }

    /// [`RequestRecord::validate`], and a timestamp within [`MAX_AGE_MS`] before and
    /// [`MAX_FUTURE_MS`] after `now_ms`.
    pub fn validate_at(&self, now_ms: i64) -> Result<(), (&'static str, String)> {
        self.validate()?;
        match self.timestamp {
            Some(ts) if ts > now_ms + MAX_FUTURE_MS => Err((
                "timestamp",
                format!(
                    "{ts} is {} s ahead of Pulse's clock (at most {} s)",
                    (ts - now_ms) / 1000,
                    MAX_FUTURE_MS / 1000
                ),
            )),
            Some(ts) if ts < now_ms - MAX_AGE_MS => Err((
                "timestamp",
                format!(
                    "{ts} is {} h old (at most {} h)",
                    (now_ms - ts) / 3_600_000,
                    MAX_AGE_MS / 3_600_000
                ),
            )),
            _ => Ok(()),
        }
    }

    fn is_error(&self) -> bool {
        self.status >= 500
    }
}

/// Fleet request figures over the trailing window.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RequestSummary {
    /// The trailing window (`sources.requests.window_s`).
    pub window_s: u64,
    /// Requests in the window.
    pub count: u64,
    /// Requests per second over the window.
    #[serde(serialize_with = "crate::messages::figures::six")]
    pub rate_per_s: f64,
    /// Share of 5xx responses, 0..1; null when there were no requests.
    #[serde(serialize_with = "crate::messages::figures::six_opt")]
    pub error_rate: Option<f64>,
    /// Latency percentiles, ms.
    pub latency_ms: Percentiles,
}

/// Latency percentiles, null when there were no requests.
#[derive(Debug, Clone, Serialize, PartialEq, Default, utoipa::ToSchema)]
pub struct Percentiles {
    /// The median.
    #[serde(serialize_with = "crate::messages::figures::six_opt")]
    pub p50: Option<f64>,
    /// The 95th percentile.
    #[serde(serialize_with = "crate::messages::figures::six_opt")]
    pub p95: Option<f64>,
    /// The 99th percentile.
    #[serde(serialize_with = "crate::messages::figures::six_opt")]
    pub p99: Option<f64>,
}

/// Counters of one (service, route, status).
#[derive(Debug)]
struct RouteStats {
    count: u64,
    sum_s: f64,
    /// Per-bucket (not cumulative) counts; the last is +Inf.
    buckets: [u64; BUCKETS_S.len() + 1],
    series_total: Series,
    series_count: Series,
    series_sum: Series,
    series_buckets: Vec<Series>,
}

impl RouteStats {
    fn new(service: &str, route: &str, status: u16) -> Self {
        let status = status.to_string();
        let labels = [
            ("service", service),
            ("route", route),
            ("status", status.as_str()),
        ];
        let hist = m::REQUEST_DURATION;
        let series_buckets = BUCKETS_S
            .iter()
            .map(|b| b.to_string())
            .chain(std::iter::once("+Inf".to_string()))
            .map(|le| {
                let mut l: Vec<(&str, &str)> = labels.to_vec();
                l.push(("le", &le));
                SeriesKey::shared(format!("{hist}_bucket"), l)
            })
            .collect();
        RouteStats {
            count: 0,
            sum_s: 0.0,
            buckets: [0; BUCKETS_S.len() + 1],
            series_total: SeriesKey::shared(m::REQUESTS_TOTAL, labels),
            series_count: SeriesKey::shared(format!("{hist}_count"), labels),
            series_sum: SeriesKey::shared(format!("{hist}_sum"), labels),
            series_buckets,
        }
    }

    fn observe(&mut self, latency_s: f64) {
        self.count += 1;
        self.sum_s += latency_s;
        let i = BUCKETS_S.partition_point(|b| *b < latency_s);
        self.buckets[i] += 1;
    }
}

/// A record kept for percentiles.
#[derive(Debug, Clone, Copy)]
struct Recent {
    arrived_ms: i64,
    latency_ms: f64,
    error: bool,
}

/// Limits of the aggregator.
#[derive(Debug, Clone, Copy)]
pub struct AggregatorLimits {
    pub window_ms: i64,
    pub max_recent: usize,
    pub max_series: usize,
    /// Distinct routes one service may have; its further routes fold into `__other__`
    /// (one service putting ids in its routes cannot take every series).
    pub max_routes_per_service: usize,
}

/// Counters, histograms and the trailing window.
#[derive(Debug)]
pub struct RequestAggregator {
    limits: AggregatorLimits,
    started_ms: i64,
    /// service → route → status → counters; nested so lookups borrow and never allocate.
    routes: HashMap<String, HashMap<String, HashMap<u16, RouteStats>>>,
    /// Number of (service, route, status) tracked.
    route_count: usize,
    recent: VecDeque<Recent>,
    /// Records counted.
    pub recorded_total: u64,
    /// Records whose service and route were folded into `__other__` (cardinality limit).
    pub folded_total: u64,
    /// The last service whose routes were folded, and when (for the warning and status).
    pub last_folded: Option<(String, i64)>,
    /// Records that left the percentile window early because `max_recent` was reached.
    pub evicted_early_total: u64,
}

impl RequestAggregator {
    pub fn new(limits: AggregatorLimits, now_ms: i64) -> Self {
        RequestAggregator {
            limits,
            started_ms: now_ms,
            routes: HashMap::new(),
            route_count: 0,
            recent: VecDeque::new(),
            recorded_total: 0,
            folded_total: 0,
            last_folded: None,
            evicted_early_total: 0,
        }
    }

    /// Counts validated records that arrived at `now_ms`.
    pub fn record(&mut self, now_ms: i64, records: &[RequestRecord]) {
        for r in records {
            let service = r.service.as_deref().unwrap_or(DEFAULT_SERVICE);
            if self.observe(service, &r.route, r.status, r.latency_ms / 1000.0) {
                match &mut self.last_folded {
                    Some((s, at)) if s == service => *at = now_ms,
                    _ => self.last_folded = Some((service.to_string(), now_ms)),
                }
            }
            self.recorded_total += 1;
            if service != PULSE_SERVICE {
                if self.recent.len() >= self.limits.max_recent {
                    self.recent.pop_front();
                    self.evicted_early_total += 1;
                }
                self.recent.push_back(Recent {
                    arrived_ms: now_ms,
                    latency_ms: r.latency_ms,
                    error: r.is_error(),
                });
            }
        }
    }

    fn stats_mut(&mut self, service: &str, route: &str, status: u16) -> Option<&mut RouteStats> {
        self.routes
            .get_mut(service)?
            .get_mut(route)?
            .get_mut(&status)
    }

    /// Counts one request; answers whether its route was folded into `__other__`.
    fn observe(&mut self, service: &str, route: &str, status: u16, latency_s: f64) -> bool {
        if let Some(stats) = self.stats_mut(service, route, status) {
            stats.observe(latency_s);
            return false;
        }
        let service_routes = self.routes.get(service).map_or(0, HashMap::len);
        let new_route = !self
            .routes
            .get(service)
            .is_some_and(|routes| routes.contains_key(route));
        let (service, route, folded) = if self.route_count >= self.limits.max_series {
            // Past the limit only the status keeps its value: at most 500 more series.
            (OTHER_ROUTE, OTHER_ROUTE, true)
        } else if new_route && service_routes >= self.limits.max_routes_per_service {
            // This service has its share of routes: the rest count under `__other__`.
            (service, OTHER_ROUTE, true)
        } else {
            (service, route, false)
        };
        if folded {
            self.folded_total += 1;
            if let Some(stats) = self.stats_mut(service, route, status) {
                stats.observe(latency_s);
                return true;
            }
        }
        let statuses = self
            .routes
            .entry(service.to_string())
            .or_default()
            .entry(route.to_string())
            .or_default();
        let stats = statuses.entry(status).or_insert_with(|| {
            self.route_count += 1;
            RouteStats::new(service, route, status)
        });
        stats.observe(latency_s);
        folded
    }

    /// Current counters and histograms as samples stamped `now_ms`.
    pub fn samples(&self, now_ms: i64) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.route_count * (BUCKETS_S.len() + 4));
        let all = self
            .routes
            .values()
            .flat_map(|routes| routes.values().flat_map(|s| s.values()));
        for st in all {
            out.push(Sample::new(
                st.series_total.clone(),
                now_ms,
                st.count as f64,
            ));
            out.push(Sample::new(
                st.series_count.clone(),
                now_ms,
                st.count as f64,
            ));
            out.push(Sample::new(st.series_sum.clone(), now_ms, st.sum_s));
            let mut cumulative = 0;
            for (series, n) in st.series_buckets.iter().zip(st.buckets) {
                cumulative += n;
                out.push(Sample::new(series.clone(), now_ms, cumulative as f64));
            }
        }
        out
    }

    /// Rate, error rate and percentiles over the window ending `now_ms`
    /// (services other than Pulse itself).
    pub fn summary(&mut self, now_ms: i64) -> RequestSummary {
        let cutoff = now_ms - self.limits.window_ms;
        while self.recent.front().is_some_and(|r| r.arrived_ms <= cutoff) {
            self.recent.pop_front();
        }
        let count = self.recent.len() as u64;
        // Before a full window has passed, divide by the time Pulse has been up.
        let span_ms = self
            .limits
            .window_ms
            .min((now_ms - self.started_ms).max(1000));
        let mut latencies: Vec<f64> = self.recent.iter().map(|r| r.latency_ms).collect();
        latencies.sort_by(f64::total_cmp);
        let errors = self.recent.iter().filter(|r| r.error).count() as f64;
        RequestSummary {
            window_s: (self.limits.window_ms / 1000) as u64,
            count,
            rate_per_s: count as f64 * 1000.0 / span_ms as f64,
            error_rate: (count > 0).then(|| errors / count as f64),
            latency_ms: Percentiles {
                p50: percentile(&latencies, 0.50),
                p95: percentile(&latencies, 0.95),
                p99: percentile(&latencies, 0.99),
            },
        }
    }

    /// Distinct (service, route, status) tracked.
    pub fn route_count(&self) -> usize {
        self.route_count
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Records of Pulse's own HTTP handlers, buffered until the request sampler's next tick.
#[derive(Debug, Clone)]
pub struct SelfMetricsBuffer {
    inner: Arc<Mutex<SelfBuffer>>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct SelfBuffer {
    records: Vec<RequestRecord>,
    dropped: u64,
}

impl SelfMetricsBuffer {
    pub fn new(capacity: usize) -> Self {
        SelfMetricsBuffer {
            inner: Arc::default(),
            capacity,
        }
    }

    /// Adds one record; past capacity it is counted as dropped instead.
    pub fn push(&self, record: RequestRecord) {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if b.records.len() < self.capacity {
            b.records.push(record);
        } else {
            b.dropped += 1;
        }
    }

    /// Takes the buffered records; returns them and the total dropped so far.
    pub fn drain(&self) -> (Vec<RequestRecord>, u64) {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut b.records), b.dropped)
    }
}

/// Ingested records that carry a trace id, newest last, for looking a request up by its
/// trace (and a slow one beside the GPU samples of its moment).
#[derive(Debug, Clone)]
pub struct TracedRequests {
    inner: Arc<Mutex<TracedRing>>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct TracedRing {
    records: VecDeque<RequestRecord>,
    evicted: u64,
}

/// Which traced records a listing returns.
#[derive(Debug, Clone, Default)]
pub struct TracedFilter {
    pub trace_id: Option<String>,
    pub min_latency_ms: Option<f64>,
    pub route: Option<String>,
    pub since_ms: Option<i64>,
    pub offset: usize,
    pub limit: usize,
}

impl TracedRequests {
    pub fn new(capacity: usize) -> Self {
        TracedRequests {
            inner: Arc::default(),
            capacity,
        }
    }

    /// Keeps the records that have a trace id (their timestamps already set).
    pub fn extend(&self, records: impl IntoIterator<Item = RequestRecord>) {
        let mut ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for r in records.into_iter().filter(|r| r.trace_id.is_some()) {
            if ring.records.len() >= self.capacity {
                ring.records.pop_front();
                ring.evicted += 1;
            }
            ring.records.push_back(r);
        }
    }

    /// Matching records, newest first, at most `filter.limit`; and how many matched.
    pub fn find(&self, filter: &TracedFilter) -> (Vec<RequestRecord>, usize) {
        let ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let matching = ring.records.iter().rev().filter(|r| {
            filter.trace_id.as_deref().is_none_or(|t| {
                r.trace_id
                    .as_deref()
                    .is_some_and(|id| id.eq_ignore_ascii_case(t))
            }) && filter.min_latency_ms.is_none_or(|l| r.latency_ms >= l)
                && filter.route.as_deref().is_none_or(|route| r.route == route)
                && filter
                    .since_ms
                    .is_none_or(|t| r.timestamp.is_some_and(|ts| ts >= t))
        });
        let page = Page::of(matching, filter.offset, filter.limit).map(RequestRecord::clone);
        (page.items, page.total)
    }

    /// (records held, records evicted so far).
    pub fn stats(&self) -> (usize, u64) {
        let ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (ring.records.len(), ring.evicted)
    }
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
