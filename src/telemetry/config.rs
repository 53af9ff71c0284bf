//! The `[tracing]` section of `config/pulse.toml` (read with the rest of the service
//! settings): defined here, beside the tracing it configures, so
//! that telemetry needs nothing from the configuration.

use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

/// The standard OpenTelemetry variable, used when `tracing.otlp_endpoint` is not set.
pub const OTEL_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// OpenTelemetry tracing of Pulse's own work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Off: no spans at all, the traces endpoints answer that tracing is off.
    pub enabled: bool,
    /// Fraction of new traces kept (0 to 1). Parent-based: a request whose `traceparent`
    /// is sampled is always traced, one whose `traceparent` is not sampled never is.
    pub sampling_ratio: SamplingRatio,
    /// At most this many new traces start each second (0: no limit), so that tracing
    /// costs the same at 10 and at 100 000 requests a second.
    pub max_traces_per_second: u32,
    /// Traces kept in memory for `/api/phase4/traces`; the oldest fall out first.
    pub store_max_traces: NonZeroUsize,
    /// Bytes (estimated) the kept traces may take; the oldest fall out first.
    pub store_max_bytes: NonZeroUsize,
    /// Spans kept per trace; later spans of a larger trace are counted and dropped.
    pub max_spans_per_trace: NonZeroUsize,
    /// OTLP/HTTP (protobuf) collector, e.g. `http://127.0.0.1:4318` (`/v1/traces` is
    /// appended). Unset: `OTEL_EXPORTER_OTLP_ENDPOINT` when set, else no export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<OtlpEndpoint>,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            enabled: true,
            sampling_ratio: SamplingRatio(1.0),
            max_traces_per_second: 100,
            store_max_traces: NonZeroUsize::new(1000).unwrap(),
            store_max_bytes: NonZeroUsize::new(16 * 1024 * 1024).unwrap(),
            max_spans_per_trace: NonZeroUsize::new(256).unwrap(),
            otlp_endpoint: None,
            service_name: "pulse".to_string(),
        }
    }
}

impl TracingConfig {
    /// Where spans are exported: the configured endpoint, else `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// read through `env`; an empty value means none.
    pub fn export_endpoint(&self, env: impl Fn(&str) -> Option<String>) -> Option<String> {
        self.otlp_endpoint
            .clone()
            .map(|e| e.0)
            .or_else(|| env(OTEL_ENDPOINT_ENV))
            .filter(|s| !s.trim().is_empty())
    }
}

/// An OTLP/HTTP base URL, checked when the file is read. Empty means none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OtlpEndpoint(pub String);

impl TryFrom<String> for OtlpEndpoint {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() {
            return Ok(OtlpEndpoint(s));
        }
        if s.starts_with("https://") {
            return Err(format!(
                "{s:?}: this build exports over plain http only; point it at a collector on http://"
            ));
        }
        let uri: axum::http::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!(
                "{s:?} is not an http:// URL with a host (e.g. \"http://127.0.0.1:4318\")"
            ));
        }
        Ok(OtlpEndpoint(s))
    }
}

impl From<OtlpEndpoint> for String {
    fn from(e: OtlpEndpoint) -> String {
        e.0
    }
}

/// A probability, 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct SamplingRatio(pub f64);

impl TryFrom<f64> for SamplingRatio {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if (0.0..=1.0).contains(&v) {
            Ok(SamplingRatio(v))
        } else {
            Err(format!("{v} is not a ratio between 0 and 1"))
        }
    }
}

impl From<SamplingRatio> for f64 {
    fn from(r: SamplingRatio) -> f64 {
        r.0
    }
}
