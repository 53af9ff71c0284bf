//! The stats message every actor answers: status and `/metrics` read the same numbers.

use std::collections::BTreeMap;

use actix::Message;
use serde::Serialize;

/// A component's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    /// Working.
    Operational,
    /// Working in part (a lost GPU, a failing sink, a rule file that did not reload).
    Degraded,
    /// Not answering, or stopped.
    Down,
}

impl ComponentState {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentState::Operational => "operational",
            ComponentState::Degraded => "degraded",
            ComponentState::Down => "down",
        }
    }
}

/// Ask an actor for its [`ComponentStats`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ComponentStats")]
pub struct GetStats;

/// What one component reports about itself.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ComponentStats {
    /// Component name, e.g. `window_store`.
    pub name: String,
    /// `source`, `store`, `processor`, `sink`, `query`, `tracer`.
    #[schema(value_type = String)]
    pub kind: &'static str,
    pub state: ComponentState,
    /// Why the component is not operational, or what it is doing (e.g. "simulated fleet").
    pub reason: Option<String>,
    /// Items (samples or records) received.
    pub received_total: u64,
    /// Items passed downstream or stored.
    pub emitted_total: u64,
    /// Items that could not be processed, counted, never silent.
    pub dropped_total: u64,
    /// Messages sent to this actor and not yet answered.
    pub mailbox_backlog: i64,
    /// Component-specific figures (series held, cache entries...), by name.
    #[schema(value_type = BTreeMap<String, f64>)]
    pub extra: BTreeMap<Figure, f64>,
    /// Component-specific figures with labels of their own (`pulse_<key>{component, ...}`).
    pub labelled: Vec<LabelledFigure>,
}

/// One labelled figure: `pulse_<key>{component="...", <labels>} value`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LabelledFigure {
    /// The figure's name.
    #[serde(rename = "key")]
    #[schema(value_type = String)]
    pub figure: Figure,
    /// Its own labels, `[name, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl ComponentStats {
    pub fn new(name: impl Into<String>, kind: &'static str) -> Self {
        ComponentStats {
            name: name.into(),
            kind,
            state: ComponentState::Operational,
            reason: None,
            received_total: 0,
            emitted_total: 0,
            dropped_total: 0,
            mailbox_backlog: 0,
            extra: BTreeMap::new(),
            labelled: Vec::new(),
        }
    }
}

/// Whether a figure only grows (a counter, `_total`) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FigureKind {
    Counter,
    Gauge,
}

impl FigureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FigureKind::Counter => "counter",
            FigureKind::Gauge => "gauge",
        }
    }
}

/// A component-specific figure: served as `pulse_<key>{component="..."}` in `/metrics`, with
/// its kind and help, and under `extra` in the status. Every one is a constant of
/// [`figure`], so a writer and its readers cannot disagree on a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Figure {
    pub key: &'static str,
    pub kind: FigureKind,
    pub help: &'static str,
}

impl Serialize for Figure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key)
    }
}

impl ComponentStats {
    /// Sets one of the component's figures.
    pub fn set(&mut self, figure: Figure, value: f64) {
        self.extra.insert(figure, value);
    }
}

macro_rules! figures {
    ($($(#[$doc:meta])* $name:ident: $kind:ident $key:literal $help:literal;)*) => {
        $($(#[$doc])* pub const $name: Figure = Figure { key: $key, kind: FigureKind::$kind, help: $help };)*
        /// Every figure, for the checks on their names.
        pub const ALL: &[Figure] = &[$($name),*];
    };
}

/// Every component figure, by component (docs/metrics.md lists them for users).
pub mod figure {
    use super::{Figure, FigureKind};

    figures! {
        // GPU samplers (NVML, simulated) and the request sampler
        GPUS: Gauge "gpus" "GPUs sampled.";
        GPUS_LOST: Gauge "gpus_lost" "GPUs NVML reports lost.";
        READ_ERRORS_TOTAL: Counter "read_errors_total" "NVML reads that failed.";
        CLEANUPS_TOTAL: Counter "cleanups_total" "Cleanup commands carried out (sampler) or cleanup requests, refused ones included (query).";
        COMMANDS_MISSED_TOTAL: Counter "commands_missed_total" "Commands the simulated fleet could not take.";
        TICKS_TOTAL: Counter "ticks_total" "Sampling ticks.";
        TICKS_LATE_TOTAL: Counter "ticks_late_total" "Sampling ticks that started late, waiting for room downstream.";
        BATCHES_TOTAL: Counter "batches_total" "Request batches aggregated.";
        ROUTES: Gauge "routes" "Routes tracked.";
        FOLDED_TOTAL: Counter "folded_total" "Request records folded into __other__.";
        EVICTED_EARLY_TOTAL: Counter "evicted_early_total" "Request records that left the percentile window early.";
        // Kafka source (pulse aggregate)
        KAFKA_COMMITTED_BATCHES_TOTAL: Counter "kafka_committed_batches_total" "Batches stored and committed.";
        KAFKA_UNCOMMITTED_BATCHES_TOTAL: Counter "kafka_uncommitted_batches_total" "Batches whose offsets were not committed (a sink did not confirm them, or the commit failed).";
        KAFKA_REBALANCES_TOTAL: Counter "kafka_rebalances_total" "Consumer group rebalances.";
        KAFKA_REBUILT_POINTS_TOTAL: Counter "kafka_rebuilt_points_total" "Points a take-over restored from Redis.";
        KAFKA_ADOPTED_ALERTS_TOTAL: Counter "kafka_adopted_alerts_total" "Alerts a take-over adopted from Redis.";
        KAFKA_ASSIGNED_PARTITIONS: Gauge "kafka_assigned_partitions" "Partitions this instance owns.";
        KAFKA_HOSTS: Gauge "kafka_hosts" "Hosts this instance owns.";
        // Window store
        SERIES: Gauge "series" "Series the window store holds.";
        POINTS: Gauge "points" "Points the window store holds.";
        FORWARD_FAILURES_TOTAL: Counter "forward_failures_total" "Batches the store could not hand to a consumer.";
        WINDOW_BYTES: Gauge "window_bytes" "The windows' memory, estimated.";
        WINDOW_REFUSED_FOR_MEMORY_TOTAL: Counter "window_refused_for_memory_total" "Samples of new series refused because the windows reached window.max_mib.";
        // Query
        CACHE_ENTRIES: Gauge "cache_entries" "Query cache entries.";
        CACHE_HITS_TOTAL: Counter "cache_hits_total" "Query cache hits.";
        CACHE_STALE_HITS_TOTAL: Counter "cache_stale_hits_total" "Query cache hits on a stale entry.";
        CACHE_MISSES_TOTAL: Counter "cache_misses_total" "Query cache misses.";
        CACHE_EVICTIONS_TOTAL: Counter "cache_evictions_total" "Query cache entries evicted.";
        VIEWS_COMPUTED_TOTAL: Counter "views_computed_total" "Dashboard views computed.";
        // Rule engine
        RULES: Gauge "rules" "Rules loaded.";
        RULE_GROUPS: Gauge "rule_groups" "Rule groups loaded.";
        RULE_EVALUATIONS_TOTAL: Counter "rule_evaluations_total" "Group evaluations.";
        RULE_EVALUATIONS_ON_INGEST_TOTAL: Counter "rule_evaluations_on_ingest_total" "Group evaluations run on ingest.";
        RULE_EVALUATION_ERRORS_TOTAL: Counter "rule_evaluation_errors_total" "Group evaluations that failed.";
        RULE_EVALUATION_LAST_SECONDS: Gauge "rule_evaluation_last_seconds" "How long the last evaluation took, in seconds.";
        ALERTS_FIRING: Gauge "alerts_firing" "Alerts firing.";
        ALERTS_PENDING: Gauge "alerts_pending" "Alerts pending.";
        ALERT_HISTORY_ENTRIES: Gauge "alert_history_entries" "Resolved alerts in the history.";
        ALERT_STATE_WRITE_FAILURES_TOTAL: Counter "alert_state_write_failures_total" "Alert state writes to Redis that failed.";
        // Anomaly detector
        ANOMALY_SERIES_WATCHED: Gauge "anomaly_series_watched" "Series the detector watches.";
        ANOMALY_DETECTOR_BYTES: Gauge "anomaly_detector_bytes" "The detector's state, estimated.";
        ANOMALIES_OPENED_TOTAL: Counter "anomalies_opened_total" "Anomalies opened.";
        ANOMALY_FIRINGS_MERGED_TOTAL: Counter "anomaly_firings_merged_total" "Firings merged into an open anomaly.";
        ANOMALY_SAMPLES_SKIPPED_TOTAL: Counter "anomaly_samples_skipped_total" "Samples that could not be scored (NaN, out of order, a counter's first sample or reset).";
        ANOMALY_GAPS_TOTAL: Counter "anomaly_gaps_total" "Context breaks after gaps.";
        ANOMALY_SERIES_RESETS_TOTAL: Counter "anomaly_series_resets_total" "Counter resets.";
        ANOMALY_SERIES_EVICTED_TOTAL: Counter "anomaly_series_evicted_total" "Watched series forgotten after a long silence.";
        ANOMALY_WORKLOAD_CHANGES_TOTAL: Counter "anomaly_workload_changes_total" "Workload changes (most GPUs of a host moving together).";
        ANOMALY_WORKLOAD_FIRINGS_TOTAL: Counter "anomaly_workload_firings_total" "Firings folded into workload changes.";
        ANOMALY_PEER_DIVERGENCES_TOTAL: Counter "anomaly_peer_divergences_total" "GPUs reported as unlike their peers.";
        ANOMALY_SLIGHT_FIRINGS_TOTAL: Counter "anomaly_slight_firings_total" "GPU firings dropped alone: too slight, or blips.";
        ANOMALY_REDIS_WRITE_FAILURES_TOTAL: Counter "anomaly_redis_write_failures_total" "Anomaly writes to Redis that failed.";
        // Predictor
        PREDICTOR_SERIES_FORECAST: Gauge "predictor_series_forecast" "Series with a current forecast.";
        PREDICTOR_CYCLES_TOTAL: Counter "predictor_cycles_total" "Refit cycles.";
        PREDICTOR_CYCLES_SKIPPED_TOTAL: Counter "predictor_cycles_skipped_total" "Refit cycles skipped because the last was still running.";
        PREDICTOR_FITS_TOTAL: Counter "predictor_fits_total" "Model fits.";
        PREDICTOR_FIT_FAILURES_TOTAL: Counter "predictor_fit_failures_total" "Model fits that failed.";
        PREDICTOR_FIT_TIMEOUTS_TOTAL: Counter "predictor_fit_timeouts_total" "Model fits that timed out.";
        PREDICTOR_LAST_CYCLE_FIT_SECONDS: Gauge "predictor_last_cycle_fit_seconds" "Fitting time of the last cycle, in seconds.";
        PREDICTOR_LAST_ALLOCATOR_TRIM_SECONDS: Gauge "predictor_last_allocator_trim_seconds" "The allocator trim after the last cycle, in seconds.";
        PREDICTOR_ALLOCATOR_TRIMS_RELEASED_TOTAL: Counter "predictor_allocator_trims_released_total" "Allocator trims that released memory.";
        // Actions
        ACTIONS_TOTAL: Counter "actions_total" "Actions decided, by action and outcome.";
        ACTIONS_AWAITING: Gauge "actions_awaiting" "Actions waiting for a worker's acknowledgement.";
        ACTIONS_PAUSED: Gauge "actions_paused" "1 while the kill switch is on.";
        ACTIONS_REDIS_WRITE_FAILURES_TOTAL: Counter "actions_redis_write_failures_total" "Action records Redis did not take.";
        // Tracing
        TRACE_STORE_TRACES: Gauge "trace_store_traces" "Traces in the in-process trace store.";
        TRACE_STORE_SPANS: Gauge "trace_store_spans" "Spans in the in-process trace store.";
        TRACE_STORE_BYTES: Gauge "trace_store_bytes" "The trace store's memory, estimated.";
        TRACE_STORE_EVICTED_TRACES_TOTAL: Counter "trace_store_evicted_traces_total" "Traces that fell out of the store to make room.";
        TRACES_SAMPLED_TOTAL: Counter "traces_sampled_total" "New traces sampled.";
        TRACES_UNSAMPLED_RATIO_TOTAL: Counter "traces_unsampled_ratio_total" "New traces left out by the sampling ratio.";
        TRACES_UNSAMPLED_RATE_LIMIT_TOTAL: Counter "traces_unsampled_rate_limit_total" "New traces left out by the rate limit.";
        OTLP_SPANS_QUEUED_TOTAL: Counter "otlp_spans_queued_total" "Spans handed to the OTLP exporter.";
        OTLP_SPANS_EXPORTED_TOTAL: Counter "otlp_spans_exported_total" "Spans the OTLP exporter delivered.";
        OTLP_SPANS_FAILED_TOTAL: Counter "otlp_spans_failed_total" "Spans the OTLP exporter failed to deliver.";
        // Sinks
        REDIS_BUFFERED_SAMPLES: Gauge "redis_buffered_samples" "Samples waiting for Redis.";
        REDIS_ROUND_TRIPS_TOTAL: Counter "redis_round_trips_total" "Pipelined writes to Redis.";
        KAFKA_IN_FLIGHT_RECORDS: Gauge "kafka_in_flight_records" "Records produced, not yet acknowledged.";
        KAFKA_DELIVERY_FAILURES_TOTAL: Counter "kafka_delivery_failures_total" "Records the brokers failed.";
        KAFKA_QUEUE_FULL_DROPS_TOTAL: Counter "kafka_queue_full_drops_total" "Records dropped with the producer's buffer full.";
        KAFKA_REFUSED_RECORDS_TOTAL: Counter "kafka_refused_records_total" "Records the brokers refused.";
        ALERTS_QUEUED: Gauge "alerts_queued" "Alerts waiting to be sent.";
        ALERT_POSTS_FAILED_TOTAL: Counter "alert_posts_failed_total" "Posts to Alertmanager or a webhook that failed.";
        SILENCES_HELD: Gauge "silences_held" "Silences Pulse made for acknowledgements, held now.";
        SILENCES_REMOVED_TOTAL: Counter "silences_removed_total" "Silences Pulse removed.";
        SILENCE_CALLS_FAILED_TOTAL: Counter "silence_calls_failed_total" "Calls to Alertmanager's silences API that failed.";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_names_are_unique_and_counters_end_in_total() {
        let mut keys: Vec<&str> = figure::ALL.iter().map(|f| f.key).collect();
        keys.sort();
        let before = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), before, "a figure name is used twice");
        for f in figure::ALL {
            assert_eq!(
                f.kind == FigureKind::Counter,
                f.key.ends_with("_total"),
                "{}: a counter's name ends in _total, a gauge's does not",
                f.key
            );
            assert!(f.help.ends_with('.'), "{}: help is a sentence", f.key);
        }
    }

    #[test]
    fn figures_serialise_as_their_names() {
        let mut st = ComponentStats::new("window_store", "store");
        st.set(figure::SERIES, 3.0);
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["extra"]["series"], 3.0);
    }
}
