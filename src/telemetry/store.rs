//! The in-process trace store behind `/api/phase4/traces`: a span processor that keeps
//! the spans of the last traces, bounded by trace count, estimated bytes and spans per
//! trace. The oldest trace falls out first; everything dropped is counted.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use serde::Serialize;
use serde_json::{Map, Value as Json};

/// Bounds of the store.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    pub max_traces: usize,
    pub max_bytes: usize,
    pub max_spans_per_trace: usize,
}

/// The store; shared between the tracer provider (as a span processor) and the API.
#[derive(Debug)]
pub struct TraceStore {
    limits: StoreLimits,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    traces: HashMap<TraceId, StoredTrace>,
    /// Trace ids, oldest first.
    order: VecDeque<TraceId>,
    bytes: usize,
    spans: usize,
    counters: StoreCounters,
}

#[derive(Debug, Default)]
struct StoredTrace {
    spans: Vec<SpanData>,
    bytes: usize,
}

/// Counters since start.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct StoreCounters {
    pub spans_stored_total: u64,
    /// Whole traces that fell out to make room.
    pub traces_evicted_total: u64,
    /// Spans refused because their trace already had `max_spans_per_trace`.
    pub spans_dropped_total: u64,
}

/// Size and counters, for status and `/metrics`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StoreStats {
    pub traces: usize,
    pub spans: usize,
    pub bytes: usize,
    #[serde(flatten)]
    pub counters: StoreCounters,
}

/// Which traces a listing returns.
#[derive(Debug, Clone, Default)]
pub struct TraceFilter {
    /// Part of the root span's name.
    pub name: Option<String>,
    pub min_duration_ms: Option<f64>,
    pub status: Option<TraceStatus>,
    /// Traces that started at or after this Unix time.
    pub since_ms: Option<i64>,
    pub offset: usize,
    pub limit: usize,
}

/// A trace's status: `error` when any of its spans ended with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TraceStatus {
    /// No span ended with an error.
    Ok,
    /// A span ended with an error.
    Error,
}

/// One line of the listing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TraceSummary {
    /// 32 hex digits.
    pub trace_id: String,
    /// Name of the root span: the one without a parent in this trace.
    pub root_name: String,
    /// Whether the root continues a trace from another service (`traceparent`).
    pub remote_parent: bool,
    /// When its first span started, Unix ms.
    #[serde(rename = "started_at_ms")]
    pub start_ms: i64,
    /// From the first span's start to the last one's end.
    pub duration_ms: f64,
    /// Spans kept.
    pub span_count: usize,
    pub status: TraceStatus,
    /// The exact start, for ordering traces that began in the same millisecond.
    #[serde(skip)]
    pub start: SystemTime,
}

/// A whole trace, spans in tree order (each parent before its children, siblings by start).
#[derive(Debug, Clone, Serialize)]
pub struct TraceDetail {
    #[serde(flatten)]
    pub summary: TraceSummary,
    pub spans: Vec<SpanView>,
}

/// One span as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SpanView {
    /// 16 hex digits.
    pub span_id: String,
    /// `null` for a root span of this process.
    pub parent_span_id: Option<String>,
    /// Whether the parent is in another service (`traceparent`).
    pub parent_is_remote: bool,
    /// 0 for roots.
    pub depth: usize,
    /// What it timed, e.g. `pipeline.batch`.
    pub name: String,
    /// OpenTelemetry's span kind: `internal`, `server`, `client`, `producer`, `consumer`.
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// When it started, Unix ms.
    #[serde(rename = "started_at_ms")]
    pub start_ms: i64,
    /// Start, milliseconds after the trace's first span started.
    pub offset_ms: f64,
    /// How long it took.
    pub duration_ms: f64,
    /// `ok`, `error` or `unset`.
    #[schema(value_type = String)]
    pub status: &'static str,
    /// The error's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub status_message: Option<String>,
    /// Its attributes (docs/tracing.md).
    #[schema(value_type = Object)]
    pub attributes: Map<String, Json>,
    /// Its events, in order.
    pub events: Vec<EventView>,
}

/// Something a span noted while it ran.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// What happened, e.g. `anomaly opened`.
    pub name: String,
    /// When, milliseconds after the trace's first span started.
    pub offset_ms: f64,
    /// Its attributes.
    #[schema(value_type = Object)]
    pub attributes: Map<String, Json>,
}

impl TraceStore {
    pub fn new(limits: StoreLimits) -> Self {
        TraceStore {
            limits,
            inner: Mutex::default(),
        }
    }

    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (no partial updates span
        // an unwind point), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Files one ended span.
    pub fn insert(&self, span: SpanData) {
        let size = estimate_bytes(&span);
        let id = span.span_context.trace_id();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let trace = match inner.traces.get_mut(&id) {
            Some(t) => t,
            None => {
                inner.order.push_back(id);
                inner.traces.entry(id).or_default()
            }
        };
        if trace.spans.len() >= self.limits.max_spans_per_trace {
            inner.counters.spans_dropped_total += 1;
            return;
        }
        trace.spans.push(span);
        trace.bytes += size;
        inner.bytes += size;
        inner.spans += 1;
        inner.counters.spans_stored_total += 1;
        while inner.traces.len() > self.limits.max_traces || inner.bytes > self.limits.max_bytes {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(t) = inner.traces.remove(&oldest) {
                inner.bytes -= t.bytes;
                inner.spans -= t.spans.len();
                inner.counters.traces_evicted_total += 1;
            }
        }
    }

    pub fn stats(&self) -> StoreStats {
        let inner = self.lock();
        StoreStats {
            traces: inner.traces.len(),
            spans: inner.spans,
            bytes: inner.bytes,
            counters: inner.counters,
        }
    }

    /// Matching traces, newest first, at most `filter.limit`; and how many matched.
    pub fn list(&self, filter: &TraceFilter) -> (Vec<TraceSummary>, usize) {
        let inner = self.lock();
        let mut matched: Vec<TraceSummary> = inner
            .traces
            .iter()
            .map(|(id, t)| summarise(*id, &t.spans))
            .filter(|s| {
                filter
                    .name
                    .as_deref()
                    .is_none_or(|n| s.root_name.contains(n))
                    && filter.min_duration_ms.is_none_or(|d| s.duration_ms >= d)
                    && filter.status.is_none_or(|st| s.status == st)
                    && filter.since_ms.is_none_or(|t| s.start_ms >= t)
            })
            .collect();
        drop(inner);
        let total = matched.len();
        matched.sort_by_key(|s| std::cmp::Reverse(s.start));
        matched.drain(..filter.offset.min(total));
        matched.truncate(filter.limit);
        (matched, total)
    }

    /// One trace, if it is still held.
    pub fn get(&self, id: TraceId) -> Option<TraceDetail> {
        let spans = self.lock().traces.get(&id)?.spans.clone();
        let summary = summarise(id, &spans);
        let t0 = spans
            .iter()
            .map(|s| s.start_time)
            .min()
            .unwrap_or(UNIX_EPOCH);
        let ids: HashMap<SpanId, usize> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_context.span_id(), i))
            .collect();
        let mut children: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
        for (i, s) in spans.iter().enumerate() {
            children
                .entry(ids.get(&s.parent_span_id).copied())
                .or_default()
                .push(i);
        }
        for list in children.values_mut() {
            list.sort_by_key(|i| spans[*i].start_time);
        }
        let mut out = Vec::with_capacity(spans.len());
        let mut stack: Vec<(usize, usize)> = children
            .get(&None)
            .map(|roots| roots.iter().rev().map(|i| (*i, 0)).collect())
            .unwrap_or_default();
        while let Some((i, depth)) = stack.pop() {
            out.push(span_view(&spans[i], depth, t0));
            if let Some(kids) = children.get(&Some(i)) {
                stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
            }
        }
        Some(TraceDetail {
            summary,
            spans: out,
        })
    }
}

/// The store as a span processor of the tracer provider.
#[derive(Debug)]
pub struct StoreProcessor(pub std::sync::Arc<TraceStore>);

impl SpanProcessor for StoreProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.0.insert(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

fn summarise(id: TraceId, spans: &[SpanData]) -> TraceSummary {
    let local: std::collections::HashSet<SpanId> =
        spans.iter().map(|s| s.span_context.span_id()).collect();
    let root = spans
        .iter()
        .filter(|s| !local.contains(&s.parent_span_id))
        .min_by_key(|s| s.start_time);
    let start = spans
        .iter()
        .map(|s| s.start_time)
        .min()
        .unwrap_or(UNIX_EPOCH);
    let end = spans.iter().map(|s| s.end_time).max().unwrap_or(start);
    let error = spans
        .iter()
        .any(|s| matches!(s.status, Status::Error { .. }));
    TraceSummary {
        trace_id: id.to_string(),
        root_name: root.map(|r| r.name.to_string()).unwrap_or_default(),
        remote_parent: root.is_some_and(|r| r.parent_span_is_remote),
        start_ms: unix_ms(start),
        start,
        duration_ms: millis(end.duration_since(start).unwrap_or_default()),
        span_count: spans.len(),
        status: if error {
            TraceStatus::Error
        } else {
            TraceStatus::Ok
        },
    }
}

fn span_view(s: &SpanData, depth: usize, t0: SystemTime) -> SpanView {
    let offset = |t: SystemTime| millis(t.duration_since(t0).unwrap_or_default());
    let (status, status_message) = match &s.status {
        Status::Unset => ("unset", None),
        Status::Ok => ("ok", None),
        Status::Error { description } => ("error", Some(description.to_string())),
    };
    SpanView {
        span_id: s.span_context.span_id().to_string(),
        parent_span_id: (s.parent_span_id != SpanId::INVALID).then(|| s.parent_span_id.to_string()),
        parent_is_remote: s.parent_span_is_remote,
        depth,
        name: s.name.to_string(),
        kind: match s.span_kind {
            SpanKind::Client => "client",
            SpanKind::Server => "server",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
            SpanKind::Internal => "internal",
        },
        start_ms: unix_ms(s.start_time),
        offset_ms: offset(s.start_time),
        duration_ms: millis(s.end_time.duration_since(s.start_time).unwrap_or_default()),
        status,
        status_message,
        attributes: attributes_json(&s.attributes),
        events: s
            .events
            .iter()
            .map(|e| EventView {
                name: e.name.to_string(),
                offset_ms: offset(e.timestamp),
                attributes: attributes_json(&e.attributes),
            })
            .collect(),
    }
}

fn attributes_json(attrs: &[KeyValue]) -> Map<String, Json> {
    attrs
        .iter()
        .map(|kv| (kv.key.to_string(), value_json(&kv.value)))
        .collect()
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Bool(b) => Json::from(*b),
        Value::I64(i) => Json::from(*i),
        Value::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::from(s.as_str()),
        other => Json::from(other.to_string()),
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Bytes a span takes in the store, roughly: the struct plus what its strings hold.
fn estimate_bytes(s: &SpanData) -> usize {
    let kv = |kv: &KeyValue| {
        std::mem::size_of::<KeyValue>()
            + kv.key.as_str().len()
            + match &kv.value {
                Value::String(s) => s.as_str().len(),
                Value::Array(_) => 64,
                _ => 0,
            }
    };
    std::mem::size_of::<SpanData>()
        + s.name.len()
        + s.attributes.iter().map(kv).sum::<usize>()
        + s.events
            .iter()
            .map(|e| 64 + e.name.len() + e.attributes.iter().map(kv).sum::<usize>())
            .sum::<usize>()
}
