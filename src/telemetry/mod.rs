//! OpenTelemetry tracing of Pulse's own work: one tracer provider per running Pulse, whose
//! spans go to the in-process [`TraceStore`] (for `/api/phase4/traces`) and, when an
//! endpoint is configured, to an OTLP/HTTP collector.
//!
//! Spans are made through [`Telemetry::root`] and [`SpanCx::child`]. The sampler decides
//! at the root; an unsampled root gives `None`, and nothing below it is created. A
//! [`SpanCx`] ends its span when its last clone is dropped, or earlier with
//! [`SpanCx::end`]; that is how a batch's root span lasts until the last actor holding the
//! batch is done with it.

pub mod actor;
pub mod config;
pub mod sampler;
pub mod store;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
};
use opentelemetry_sdk::Resource;

use crate::runtime::stats::{figure, ComponentState, ComponentStats};
pub use config::TracingConfig;
pub use sampler::PulseSampler;
pub use store::{StoreLimits, TraceStore};

/// Spans waiting for the OTLP exporter; past this they are dropped (and counted as sent
/// but never exported).
pub const EXPORT_QUEUE: usize = 8192;
/// How long one OTLP export may take.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Tracing, on or off; clones share everything.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    active: Option<Arc<Active>>,
}

#[derive(Debug)]
struct Active {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    store: Arc<TraceStore>,
    sampler: PulseSampler,
    export: Option<Arc<ExportStats>>,
}

/// What the OTLP exporter did, since start.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub endpoint: String,
    /// Spans handed to the export queue.
    pub queued: AtomicU64,
    pub exported: AtomicU64,
    pub failed: AtomicU64,
    /// The last export's error; cleared by the next success.
    pub last_error: Mutex<Option<String>>,
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error("tracing.otlp_endpoint {endpoint:?}: {message}")]
pub struct TelemetryError {
    endpoint: String,
    message: String,
}

impl Telemetry {
    /// Tracing switched off: every `root` is `None`.
    pub fn off() -> Self {
        Telemetry::default()
    }

    /// Starts tracing as configured; `endpoint` is where spans are exported (see
    /// [`TracingConfig::export_endpoint`]).
    pub fn start(cfg: &TracingConfig, endpoint: Option<String>) -> Result<Self, TelemetryError> {
        if !cfg.enabled {
            return Ok(Telemetry::off());
        }
        let store = Arc::new(TraceStore::new(StoreLimits {
            max_traces: cfg.store_max_traces.get(),
            max_bytes: cfg.store_max_bytes.get(),
            max_spans_per_trace: cfg.max_spans_per_trace.get(),
        }));
        let sampler = PulseSampler::new(cfg.sampling_ratio.0, cfg.max_traces_per_second);
        let mut builder = SdkTracerProvider::builder()
            .with_sampler(sampler.clone())
            .with_resource(
                Resource::builder()
                    .with_service_name(cfg.service_name.clone())
                    .build(),
            )
            .with_span_processor(store::StoreProcessor(store.clone()));
        let mut export = None;
        if let Some(endpoint) = endpoint {
            let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(url)
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| TelemetryError {
                    endpoint: endpoint.clone(),
                    message: e.to_string(),
                })?;
            let stats = Arc::new(ExportStats {
                endpoint,
                ..ExportStats::default()
            });
            let processor = BatchSpanProcessor::builder(CountingExporter {
                inner: exporter,
                stats: stats.clone(),
            })
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(EXPORT_QUEUE)
                    .with_scheduled_delay(Duration::from_millis(500))
                    .build(),
            )
            .build();
            builder = builder.with_span_processor(QueueCounter {
                inner: processor,
                stats: stats.clone(),
            });
            export = Some(stats);
        }
        let provider = builder.build();
        let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "pulse");
        Ok(Telemetry {
            active: Some(Arc::new(Active {
                provider,
                tracer,
                store,
                sampler,
                export,
            })),
        })
    }

    pub fn is_on(&self) -> bool {
        self.active.is_some()
    }

    /// The trace store, when tracing is on.
    pub fn store(&self) -> Option<&Arc<TraceStore>> {
        self.active.as_ref().map(|a| &a.store)
    }

    /// Starts a trace, or continues one from another service when `remote` is given
    /// (parsed from `traceparent`). `None` when tracing is off or the sampler says no.
    pub fn root(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        remote: Option<&SpanContext>,
    ) -> Option<SpanCx> {
        let a = self.active.as_ref()?;
        if remote.is_none() && a.sampler.saturated() {
            return None;
        }
        let parent = match remote {
            Some(sc) => Context::new().with_remote_span_context(sc.clone()),
            None => Context::new(),
        };
        let span = a
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .start_with_context(&a.tracer, &parent);
        if !opentelemetry::trace::Span::is_recording(&span) {
            return None;
        }
        Some(SpanCx {
            cx: parent.with_span(span),
            tracer: a.tracer.clone(),
        })
    }

    /// Flushes and stops the exporter (waits up to the export timeout).
    pub fn shutdown(&self) {
        if let Some(a) = &self.active {
            if let Err(e) = a.provider.shutdown() {
                tracing::warn!("tracing shutdown: {e}");
            }
        }
    }

    /// The tracer's figures, as a status component.
    pub fn stats(&self) -> ComponentStats {
        let mut st = ComponentStats::new("tracing", "tracer");
        let Some(a) = &self.active else {
            st.reason = Some("tracing is switched off (tracing.enabled = false)".to_string());
            return st;
        };
        let s = a.store.stats();
        let c = a.sampler.counters();
        st.received_total = s.counters.spans_stored_total + s.counters.spans_dropped_total;
        st.emitted_total = s.counters.spans_stored_total;
        st.dropped_total = s.counters.spans_dropped_total;
        st.set(figure::TRACE_STORE_TRACES, s.traces as f64);
        st.set(figure::TRACE_STORE_SPANS, s.spans as f64);
        st.set(figure::TRACE_STORE_BYTES, s.bytes as f64);
        st.set(
            figure::TRACE_STORE_EVICTED_TRACES_TOTAL,
            s.counters.traces_evicted_total as f64,
        );
        st.set(
            figure::TRACES_SAMPLED_TOTAL,
            c.sampled.load(Ordering::Relaxed) as f64,
        );
        st.set(
            figure::TRACES_UNSAMPLED_RATIO_TOTAL,
            c.ratio_dropped.load(Ordering::Relaxed) as f64,
        );
        st.set(
            figure::TRACES_UNSAMPLED_RATE_LIMIT_TOTAL,
            c.rate_limited.load(Ordering::Relaxed) as f64,
        );
        if let Some(e) = &a.export {
            let queued = e.queued.load(Ordering::Relaxed);
            let exported = e.exported.load(Ordering::Relaxed);
            let failed = e.failed.load(Ordering::Relaxed);
            st.set(figure::OTLP_SPANS_QUEUED_TOTAL, queued as f64);
            st.set(figure::OTLP_SPANS_EXPORTED_TOTAL, exported as f64);
            st.set(figure::OTLP_SPANS_FAILED_TOTAL, failed as f64);
            let last_error = e.last_error.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(why) = last_error.as_ref() {
                st.state = ComponentState::Degraded;
                st.reason = Some(format!("OTLP export to {} failing: {why}", e.endpoint));
            } else {
                st.reason = Some(format!("exporting to {}", e.endpoint));
            }
        }
        st
    }
}

/// A recording span and the context that makes it the parent of [`SpanCx::child`] spans.
#[derive(Debug, Clone)]
pub struct SpanCx {
    cx: Context,
    tracer: SdkTracer,
}

impl SpanCx {
    /// A child span (recording, since the parent is).
    pub fn child(&self, name: impl Into<Cow<'static, str>>, kind: SpanKind) -> SpanCx {
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .start_with_context(&self.tracer, &self.cx);
        SpanCx {
            cx: self.cx.with_span(span),
            tracer: self.tracer.clone(),
        }
    }

    pub fn rename(&self, name: impl Into<Cow<'static, str>>) {
        self.cx.span().update_name(name);
    }

    pub fn set(&self, key: &'static str, value: impl Into<Value>) {
        self.cx.span().set_attribute(KeyValue::new(key, value));
    }

    pub fn event(&self, name: impl Into<Cow<'static, str>>, attributes: Vec<KeyValue>) {
        self.cx.span().add_event(name, attributes);
    }

    /// Marks the span failed, with why.
    pub fn error(&self, message: impl Into<Cow<'static, str>>) {
        self.cx.span().set_status(Status::error(message));
    }

    /// Ends the span now (later ends are ignored); children may still be made.
    pub fn end(&self) {
        self.cx.span().end();
    }

    pub fn trace_id(&self) -> TraceId {
        self.cx.span().span_context().trace_id()
    }

    /// The W3C `traceparent` naming this span.
    pub fn traceparent(&self) -> String {
        let sc = self.cx.span().span_context().clone();
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    }
}

/// Parses a W3C `traceparent` header (version 00, or a later version read as 00).
pub fn parse_traceparent(header: &str) -> Result<SpanContext, &'static str> {
    let header = header.trim();
    let parts: Vec<&str> = header.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if parts.len() < 4 || !hex(parts[0], 2) {
        return Err("expected version-traceid-parentid-flags, e.g. 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    }
    if parts[0] == "ff" || (parts[0] == "00" && parts.len() != 4) {
        return Err("version 00 has exactly four fields and version ff is invalid");
    }
    if !hex(parts[1], 32) || parts[1].bytes().all(|b| b == b'0') {
        return Err("the trace id must be 32 lowercase hex digits, not all zero");
    }
    if !hex(parts[2], 16) || parts[2].bytes().all(|b| b == b'0') {
        return Err("the parent id must be 16 lowercase hex digits, not all zero");
    }
    if !hex(parts[3], 2) {
        return Err("the flags must be 2 lowercase hex digits");
    }
    let flags = u8::from_str_radix(parts[3], 16).expect("checked hex");
    Ok(SpanContext::new(
        TraceId::from_hex(parts[1]).expect("checked hex"),
        SpanId::from_hex(parts[2]).expect("checked hex"),
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    ))
}

/// Parses a trace id as the API takes it: 32 hex digits, not all zero.
pub fn parse_trace_id(s: &str) -> Result<TraceId, String> {
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) || s.bytes().all(|b| b == b'0') {
        return Err(format!(
            "{s:?} is not a trace id (32 hex digits, not all zero)"
        ));
    }
    TraceId::from_hex(&s.to_ascii_lowercase()).map_err(|e| format!("{s:?}: {e}"))
}

/// Counts the spans given to the batch processor (whose own queue drops are not exposed).
#[derive(Debug)]
struct QueueCounter {
    inner: BatchSpanProcessor,
    stats: Arc<ExportStats>,
}

impl opentelemetry_sdk::trace::SpanProcessor for QueueCounter {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting what it sent and what failed.
#[derive(Debug)]
struct CountingExporter {
    inner: opentelemetry_otlp::SpanExporter,
    stats: Arc<ExportStats>,
}

impl SpanExporter for CountingExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let n = batch.len() as u64;
        let stats = self.stats.clone();
        let export = self.inner.export(batch);
        async move {
            let result = export.await;
            let mut last_error = stats.last_error.lock().unwrap_or_else(|p| p.into_inner());
            match &result {
                Ok(()) => {
                    stats.exported.fetch_add(n, Ordering::Relaxed);
                    *last_error = None;
                }
                Err(e) => {
                    stats.failed.fetch_add(n, Ordering::Relaxed);
                    *last_error = Some(e.to_string());
                }
            }
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests;
