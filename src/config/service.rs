//! Service settings: `config/pulse.toml`, then `PULSE_*` environment overrides.

use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tracing_subscriber::filter::{LevelFilter, Targets};

use super::{parse_toml, ConfigError};
// The `[tracing]` section is defined with the tracing it configures.
pub use crate::telemetry::config::{OtlpEndpoint, SamplingRatio, TracingConfig, OTEL_ENDPOINT_ENV};

/// The built-in `config/pulse.toml`.
pub const EMBEDDED: &str = include_str!("../../config/pulse.toml");
/// Name used in errors for the built-in file.
pub const EMBEDDED_NAME: &str = "<built-in config/pulse.toml>";

/// Environment variables that override a setting: (variable, section, key).
/// `DASHBOARD_HISTORY_SIZE` is the original system's name, honoured as is.
pub const ENV_OVERRIDES: &[(&str, &str, &str)] = &[
    ("PULSE_LISTEN", "server", "listen"),
    ("PULSE_AUTH_TOKEN", "auth", "token"),
    ("PULSE_AUTH_PROTECT_READS", "auth", "protect_reads"),
    ("PULSE_MAX_BODY_BYTES", "server", "max_body_bytes"),
    ("PULSE_SHUTDOWN_GRACE_MS", "server", "shutdown_grace_ms"),
    ("PULSE_MAX_CONNECTIONS", "server", "max_connections"),
    (
        "PULSE_HEADER_READ_TIMEOUT_MS",
        "server",
        "header_read_timeout_ms",
    ),
    ("PULSE_DASHBOARD_REFRESH_MS", "dashboard", "refresh_ms"),
    (
        "PULSE_DASHBOARD_STALE_AFTER_MS",
        "dashboard",
        "stale_after_ms",
    ),
    ("PULSE_DASHBOARD_HISTORY_SIZE", "dashboard", "history_size"),
    ("DASHBOARD_HISTORY_SIZE", "dashboard", "history_size"),
    ("PULSE_CACHE_MAX_ENTRIES", "cache", "max_entries"),
    ("PULSE_CACHE_TTL_MS", "cache", "ttl_ms"),
    ("PULSE_CLEANUP_SETTLE_MS", "cleanup", "settle_ms"),
    ("PULSE_LOG", "log", "level"),
    ("PULSE_RULES_BUILTIN_PACK", "rules", "builtin_pack"),
    ("PULSE_RULE_PATHS", "rules", "paths"),
    (
        "PULSE_RULES_EVALUATE_ON_INGEST",
        "rules",
        "evaluate_on_ingest",
    ),
    ("PULSE_TRACING_ENABLED", "tracing", "enabled"),
    ("PULSE_TRACING_SAMPLING_RATIO", "tracing", "sampling_ratio"),
    (
        "PULSE_TRACING_MAX_TRACES_PER_SECOND",
        "tracing",
        "max_traces_per_second",
    ),
    ("PULSE_OTLP_ENDPOINT", "tracing", "otlp_endpoint"),
    ("PULSE_REDIS_URL", "redis", "url"),
    ("PULSE_KAFKA_BROKERS", "kafka", "brokers"),
    ("PULSE_ALERTMANAGER_URLS", "alerting", "alertmanager_urls"),
    ("PULSE_ALERTING_WEBHOOK_URLS", "alerting", "webhooks"),
    ("PULSE_ALERTING_CA_FILE", "alerting", "ca_file"),
    ("PULSE_ALERTING_CERT_FILE", "alerting", "cert_file"),
    ("PULSE_ALERTING_KEY_FILE", "alerting", "key_file"),
    ("PULSE_ACTIONS_DRY_RUN", "actions", "dry_run"),
    (
        "PULSE_ALERTING_SILENCE_ON_ACK",
        "alerting",
        "silence_on_ack",
    ),
    (
        "PULSE_ALERTING_SILENCE_SYNC_MS",
        "alerting",
        "silence_sync_ms",
    ),
    (
        "PULSE_ALERTING_RESEND_DELAY_MS",
        "alerting",
        "resend_delay_ms",
    ),
    ("PULSE_KAFKA_GROUP", "kafka", "group_id"),
    ("PULSE_KAFKA_CREATE_TOPICS", "kafka", "create_topics"),
    (
        "PULSE_KAFKA_SESSION_TIMEOUT_MS",
        "kafka",
        "session_timeout_ms",
    ),
];

/// Keys whose environment value may be a plain comma-separated list (`PULSE_RULE_PATHS=a.yml,rules/`).
const LIST_KEYS: [&str; 3] = ["paths", "alertmanager_urls", "webhooks"];

/// Everything in `config/pulse.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub dashboard: DashboardConfig,
    pub cache: CacheConfig,
    pub cleanup: CleanupConfig,
    pub rules: RulesConfig,
    pub log: LogConfig,
    pub tracing: TracingConfig,
    pub redis: RedisConfig,
    pub kafka: KafkaConfig,
    /// Where firing and resolved alerts are sent (Alertmanager, webhooks).
    pub alerting: crate::alertmanager::config::AlertingConfig,
    /// The guardrails of the actions alerting rules take (`pulse_action`).
    pub actions: crate::actions::config::ActionsConfig,
}

/// The Kafka sink: samples, alert events, anomalies and predictions as JSON records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`; unset: no Kafka sink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// Topics are `<prefix>samples`, `<prefix>alerts`, `<prefix>anomalies`,
    /// `<prefix>predictions`.
    pub topic_prefix: String,
    /// Create the topics at start when they are missing.
    pub create_topics: bool,
    pub partitions: NonZeroU64,
    pub replication_factor: NonZeroU64,
    /// Records held while the brokers are unreachable; past this new records are dropped
    /// (counted).
    pub buffer_max_records: NonZeroUsize,
    /// The consumer group `pulse aggregate` instances share.
    pub group_id: String,
    /// Records `pulse aggregate` takes from `<prefix>samples` per batch: the unit it
    /// stores, writes and then commits.
    pub consume_batch_records: NonZeroUsize,
    /// An aggregate instance silent this long leaves the group, and its partitions move.
    pub session_timeout_ms: NonZeroU64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: None,
            topic_prefix: "pulse.".to_string(),
            create_topics: true,
            partitions: NonZeroU64::new(6).unwrap(),
            replication_factor: NonZeroU64::new(1).unwrap(),
            buffer_max_records: NonZeroUsize::new(1_000_000).unwrap(),
            group_id: "pulse-aggregate".to_string(),
            consume_batch_records: NonZeroUsize::new(5_000).unwrap(),
            session_timeout_ms: NonZeroU64::new(10_000).unwrap(),
        }
    }
}

/// The Redis sink: the latest value and recent history of every series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`; unset: no Redis sink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<RedisUrl>,
    /// Prefix of every key Pulse writes.
    pub key_prefix: String,
    /// Points kept per series in `<prefix>history:<series>`.
    pub history_max_points: NonZeroUsize,
    /// A series' history expires this long after its last write.
    pub history_ttl_s: NonZeroU64,
    /// Samples held while Redis is unreachable; past this the oldest are dropped (counted).
    pub buffer_max_samples: NonZeroUsize,
    /// Samples written per pipelined round trip at most.
    pub write_batch_samples: NonZeroUsize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            key_prefix: "pulse:".to_string(),
            history_max_points: NonZeroUsize::new(1000).unwrap(),
            history_ttl_s: NonZeroU64::new(3600).unwrap(),
            buffer_max_samples: NonZeroUsize::new(1_000_000).unwrap(),
            write_batch_samples: NonZeroUsize::new(5000).unwrap(),
        }
    }
}

/// Who may call the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// With a token, every mutating endpoint (every POST: ingest, cleanup, cache clear,
    /// acknowledge, rule reload) needs `Authorization: Bearer <token>` and answers 401
    /// without it. Unset: no authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<AuthToken>,
    /// With a token, read endpoints (every GET, `/metrics` and the live page included) need
    /// it too.
    pub protect_reads: bool,
}

/// A bearer token: at least 16 characters, no whitespace; never printed.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AuthToken(pub String);

/// Shortest token accepted.
pub const MIN_TOKEN_CHARS: usize = 16;

impl TryFrom<String> for AuthToken {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.chars().count() < MIN_TOKEN_CHARS {
            return Err(format!(
                "a token must be at least {MIN_TOKEN_CHARS} characters (this one has {})",
                s.chars().count()
            ));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("a token must not contain whitespace or control characters".to_string());
        }
        Ok(AuthToken(s))
    }
}

impl From<AuthToken> for String {
    fn from(t: AuthToken) -> String {
        t.0
    }
}

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}

/// A Redis URL, checked when the file is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RedisUrl(pub String);

impl TryFrom<String> for RedisUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if !(s.starts_with("redis://") || s.starts_with("unix://")) {
            return Err(format!(
                "{s:?} is not a Redis URL (redis://host:port[/db] or unix:///path)"
            ));
        }
        redis::Client::open(s.as_str()).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(RedisUrl(s))
    }
}

impl From<RedisUrl> for String {
    fn from(u: RedisUrl) -> String {
        u.0
    }
}

/// Alert and recording rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Load the built-in rule pack (`config/rules/gpu.yml`, built into the binary).
    pub builtin_pack: bool,
    /// More Prometheus rule files: files, or directories whose `*.yml` / `*.yaml` are read.
    pub paths: Vec<std::path::PathBuf>,
    /// Resolved alerts kept in the history; the oldest fall out first.
    pub history_max: NonZeroUsize,
    /// Evaluate a group as soon as samples it reads are stored, not only on its interval.
    pub evaluate_on_ingest: bool,
    /// Least time between two evaluations of a group started by stored samples (the
    /// interval's evaluations neither wait for it nor count in it).
    pub min_eval_gap_ms: u64,
    /// Labels alert templates read as `$externalLabels` (Prometheus'
    /// `global.external_labels`; they are not added to the alerts' own labels).
    pub external_labels: std::collections::BTreeMap<String, String>,
    /// The URL templates read as `$externalURL` (Prometheus' `--web.external-url`).
    pub external_url: String,
    /// The series active alerts are written as (Prometheus' `ALERTS`, which Grafana's alert
    /// panels read). Rename when a Prometheus also loads the same rule files and scrapes
    /// Pulse, so that the two do not write one series; rules reading `ALERTS` then read the
    /// new name.
    pub alerts_series: String,
    /// The series of when each alert became active (Prometheus' `ALERTS_FOR_STATE`).
    pub alerts_for_state_series: String,
    /// The samples one rule's evaluation may read from the window (every sample an instant
    /// selector takes, every point a range selector reads; Prometheus' `--query.max-samples`
    /// per rule). Past it the rule fails that evaluation, with its error in the rules API
    /// and the log, and the other rules run on. The query API's evaluations (an instant
    /// query, each step of a range query) have the same budget. 0: no limit.
    pub max_samples: u64,
}

/// `rules.max_samples`' default: a tenth of Prometheus' `--query.max-samples` (50 M), as
/// Pulse may evaluate a group every 100 ms on ingest.
pub const DEFAULT_RULE_MAX_SAMPLES: u64 = 5_000_000;

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            builtin_pack: true,
            paths: Vec::new(),
            history_max: NonZeroUsize::new(10_000).unwrap(),
            evaluate_on_ingest: true,
            min_eval_gap_ms: 100,
            external_labels: Default::default(),
            external_url: String::new(),
            alerts_series: "ALERTS".to_string(),
            alerts_for_state_series: "ALERTS_FOR_STATE".to_string(),
            max_samples: DEFAULT_RULE_MAX_SAMPLES,
        }
    }
}

/// The HTTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind. Loopback by default; Pulse warns when it binds elsewhere.
    pub listen: SocketAddr,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: NonZeroUsize,
    /// After SIGTERM, how long requests under way may take before their connections are
    /// closed (event streams end at once); then sinks drain and traces flush.
    pub shutdown_grace_ms: NonZeroU64,
    /// Connections open at once; more are closed at once (counted in `/metrics`).
    pub max_connections: NonZeroUsize,
    /// A request header (the first, or the next on a kept-alive connection) must arrive
    /// within this; else the connection is closed (idle and slow clients).
    pub header_read_timeout_ms: NonZeroU64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            max_body_bytes: NonZeroUsize::new(1024 * 1024).unwrap(),
            shutdown_grace_ms: NonZeroU64::new(10_000).unwrap(),
            max_connections: NonZeroUsize::new(512).unwrap(),
            header_read_timeout_ms: NonZeroU64::new(10_000).unwrap(),
        }
    }
}

/// Dashboard views.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Views are recomputed at most this often; in between they come from the cache.
    pub refresh_ms: NonZeroU64,
    /// A GPU or process whose newest sample is older than this is left out of views.
    pub stale_after_ms: NonZeroU64,
    /// Points kept per series (overrides the pipeline's `window.max_points` when set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_size: Option<NonZeroUsize>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            refresh_ms: NonZeroU64::new(1000).unwrap(),
            stale_after_ms: NonZeroU64::new(10_000).unwrap(),
            history_size: None,
        }
    }
}

/// The query-result cache in front of computed views.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Entries held at most; past this the least useful are evicted.
    pub max_entries: NonZeroU64,
    /// An entry is dropped this long after it was written.
    pub ttl_ms: NonZeroU64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: NonZeroU64::new(1024).unwrap(),
            ttl_ms: NonZeroU64::new(10_000).unwrap(),
        }
    }
}

/// `POST /api/phase4/gpu/cleanup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CleanupConfig {
    /// How long to wait after publishing the command before measuring memory again.
    /// Longer than one GPU sampling interval, or nothing new can be seen.
    pub settle_ms: u64,
    /// Upper bound for a `settle_ms` given in a request body.
    pub max_settle_ms: u64,
}

impl Default for CleanupConfig {
    fn default() -> Self {
        CleanupConfig {
            settle_ms: 2500,
            max_settle_ms: 60_000,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A filter such as `info` or `warn,pulse=debug`.
    pub level: LogLevel,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel("info".to_string()),
        }
    }
}

/// A validated log filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LogLevel(String);

impl LogLevel {
    pub fn targets(&self) -> Targets {
        Targets::from_str(&self.0).expect("validated when parsed")
    }
}

impl TryFrom<String> for LogLevel {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        // `Targets` would take a bare word as a target name; insist on levels.
        for directive in s.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let level = directive
                .rsplit_once('=')
                .map_or(directive, |(_, level)| level);
            LevelFilter::from_str(level).map_err(|_| {
                format!("invalid log filter {s:?}: {level:?} is not a level (trace, debug, info, warn, error, off)")
            })?;
        }
        Targets::from_str(&s).map_err(|e| format!("invalid log filter {s:?}: {e}"))?;
        Ok(LogLevel(s))
    }
}

impl From<LogLevel> for String {
    fn from(l: LogLevel) -> String {
        l.0
    }
}

impl ServiceConfig {
    /// Parses a file's text, then applies environment overrides read through `env`.
    pub fn load(
        file: &str,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let config: ServiceConfig = parse_toml(file, text)?;
        config.with_env(env)
    }

    /// Applies `ENV_OVERRIDES` found through `env`. A list key (`LIST_KEYS`) also takes a
    /// plain value or a comma-separated list instead of a TOML list. A value is read as TOML (numbers,
    /// booleans) and otherwise as a string.
    pub fn with_env(self, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set: Vec<(&str, &str, &str, String)> = ENV_OVERRIDES
            .iter()
            .filter_map(|(var, section, key)| env(var).map(|v| (*var, *section, *key, v)))
            .collect();
        if set.is_empty() {
            return Ok(self);
        }
        let mut table = toml::Table::try_from(&self).expect("config serialises to TOML");
        for (var, section, key, raw) in &set {
            let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.clone()));
            // A list may also be written plainly: `a.yml` or `a.yml,rules/` for PATHS.
            let value = match value {
                toml::Value::String(s) if LIST_KEYS.contains(key) => toml::Value::Array(
                    s.split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(|p| toml::Value::String(p.to_string()))
                        .collect(),
                ),
                other => other,
            };
            let section_table = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = section_table {
                t.insert(key.to_string(), value);
            }
            // Check each variable alone so the error names the right one.
            let one: Result<ServiceConfig, _> = serde_path_to_error::deserialize(table.clone());
            if let Err(e) = one {
                return Err(ConfigError::Env {
                    var: var.to_string(),
                    message: format!("{}.{}: {}", section, key, e.into_inner().message()),
                });
            }
        }
        Ok(serde_path_to_error::deserialize(table).expect("checked above"))
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
