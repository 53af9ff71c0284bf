//! Pulse: a streaming metrics pipeline for GPU inference fleets.
//!
//! # Layout
//!
//! - `main.rs` — the CLI (`pulse serve`, `pulse check-config`, `pulse probe gpu`).
//! - [`config`] — service settings (`config/pulse.toml`) and the pipeline file
//!   (`pipelines/default.toml`), both built in; errors name file, line and key.
//! - [`pipeline`] — wires the actors from the configuration, in one place.
//! - [`actors`] — one actor per file: GPU samplers (NVML, simulated), request sampler,
//!   window store, JSON-lines sink, query actor.
//! - [`messages`] — messages that cross actors: samples, commands, queries, stats.
//! - [`model`] — the sample model (series = name + sorted labels), selectors, the catalog
//!   of metric names (dcgm-exporter's for GPUs).
//! - [`window`], [`requests`], [`views`], [`cleanup`], [`cache`], [`exposition`] — the
//!   logic the actors run, as plain functions and structs with time passed in.
//! - [`anomaly`] — the streaming anomaly detector and the engine its actor runs.
//! - [`sim`] — the simulated fleet; [`nvml`] — reading real GPUs.
//! - [`api`] — the axum router and handlers.
//! - [`server`] — runs the actix system and the HTTP server together.
//! - [`fuzzing`] — entry points of the fuzz targets under `fuzz/`.
//! - [`allocator`] — handing freed memory back to the kernel (glibc's `malloc_trim`).

pub mod actors;
pub mod allocator;
pub mod anomaly;
pub mod api;
pub mod cache;
pub mod cleanup;
pub mod clock;
pub mod config;
pub mod exposition;
pub mod fuzzing;
pub mod mailbox;
pub mod messages;
pub mod model;
pub mod nvml;
pub mod pipeline;
pub mod predict;
pub mod promql;
pub mod requests;
pub mod rules;
pub mod sampling;
pub mod server;
pub mod sim;
pub mod telemetry;
pub mod views;
pub mod window;
