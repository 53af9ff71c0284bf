//! Pulse: a streaming metrics pipeline for GPU inference fleets.
//!
//! # Layout
//!
//! By component: each folder holds its actor (`actor.rs`, or one actor per file where a
//! folder holds several) beside the logic it runs and that logic's tests. Imports point
//! downward: components import the shared layers below them, never each other's actors,
//! except where one component's actor is another's downstream (see ARCHITECTURE.md).
//! Modules nothing outside the crate uses (`actions`, `alertmanager`, `query`, `redis`) are
//! private, and so
//! are `api`, `pipeline`, `server`, `telemetry`, `messages`, `runtime`, `sinks`, `sources`
//! and `store`, whose few items the binary, tests, benches and examples use are re-exported
//! at the end of this file. Public are the configuration ([`config`]), the sample model
//! ([`model`]), the PromQL evaluator ([`promql`], which keeps its own parts private), and
//! [`processors`] and [`rules`], whose engines the tests and examples drive piece by piece.
//!
//! - `main.rs` — the CLI (`pulse serve`, `pulse agent`, `pulse aggregate`,
//!   `pulse check-config`, `pulse test rules`, `pulse probe gpu`).
//! - [`config`] — service settings (`config/pulse.toml`) and the pipeline file
//!   (`pipelines/default.toml`), both built in; errors name file, line and key.
//! - `pipeline` — wires the actors from the configuration, in one place; `server` runs
//!   the actix system and the HTTP server together.
//! - `sources` — GPUs through NVML, the simulated fleet, request metrics, the Kafka source.
//! - `store` — the window store: per-series rings, the actor that owns them, and what it receives.
//! - [`processors`] — the anomaly detector and the predictor.
//! - [`rules`] — Prometheus rule files, their groups, templates, `pulse test rules`, and the
//!   rule [`rules::engine`]; [`promql`] — the PromQL evaluator the rules and the API use.
//! - `sinks` — JSON lines, Kafka, Redis.
//! - `alertmanager` — the notifier that sends alerts to Alertmanager and webhooks, its
//!   destinations' settings (and the TLS client the action runner shares), and the silence
//!   sync.
//! - `actions` — what alerting rules do when they fire (`pulse_action`), with guardrails.
//! - `query` — the query actor, its views, cache and cleanup reports.
//! - `api` — the axum router and handlers, the `/metrics` exposition, and the OpenAPI
//!   document (generated from the handlers and their types).
//! - `telemetry` — OpenTelemetry tracing of Pulse's own work.
//! - `messages` — data several components share: samples, commands, pages of lists.
//! - [`model`] — the sample model (series = name + sorted labels), selectors, the catalog
//!   of metric names (dcgm-exporter's for GPUs).
//! - `redis` — the one Redis connection policy (lazy connection, round-trip deadline).
//! - `runtime` — clock, mailboxes, allocator, shutdown, each actor's stats (`GetStats`).
//! - `fuzzing` — entry points of the fuzz targets under `fuzz/` (feature `fuzzing`, on for
//!   the tests and `fuzz/`, off in the binary); likewise `processors::anomaly::nab`, the NAB
//!   replay (feature `nab`, on for the tests and examples).

mod actions;
mod alertmanager;
mod api;
pub mod config;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod messages;
pub mod model;
mod pipeline;
pub mod processors;
pub mod promql;
mod query;
mod redis;
pub mod rules;
mod runtime;
mod server;
mod sinks;
mod sources;
mod store;
mod telemetry;

// What the binary, tests and benches use of the private modules.
pub use api::openapi::document as openapi_document;
pub use api::{router, ApiLimits, AppState};
pub use pipeline::{start as start_pipeline, Handles, StartError};
pub use server::{run, run_plan};
pub use telemetry::Telemetry;
// Of the components below the pipeline, what tests, benches and examples drive directly.
pub use alertmanager::config::TlsClient;
pub use messages::samples::SampleBatch;
pub use runtime::clock::Clock;
pub use runtime::mailbox::{Mailbox, MailboxGauge};
pub use runtime::stats::{figure, ComponentStats, GetStats};
pub use sinks::kafka::{KafkaSink, KafkaSinkSettings};
pub use sinks::redis::{Drain, RedisSink, RedisSinkSettings};
pub use sources::gpu_nvml::device::probe as probe_gpus;
pub use sources::gpu_simulated::fleet::{Scenario, SimFleet};
pub use store::actor::{ProcessingDone, WindowStoreActor};
pub use store::window::{Retention, WindowStore, SERIES_BYTES};
