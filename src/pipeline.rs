//! The pipeline, wired in exactly one place from the configuration: everything is
//! validated (sink files opened, rule files loaded, GPU source chosen) before any actor starts, then actors
//! start downstream first — sinks, processors (anomaly detector), window store, rule engine,
//! predictor, samplers, query — each handed its downstream mailbox.

use crate::actions::actor::ActionRunner;
use crate::actions::messages::UsePredictor;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::broadcast;

use crate::config::pipeline::{GpuMode, PipelineConfig, SinkConfig};
use crate::config::service::ServiceConfig;
use crate::messages::commands::Command;
use crate::messages::samples::SampleBatch;
use crate::processors::anomaly::actor::{AnomalyDetector, AnomalyList};
use crate::processors::predict::actor::Predictor;
use crate::query::actor::{QueryActor, QuerySettings, QueryUpstream, Views};
use crate::query::cache::{SecondTier, ViewCache};
use crate::query::views::GpuSourceInfo;
use crate::redis::lazy_connection;
use crate::rules::engine::{RuleEngine, RuleSources};
use crate::rules::store::AlertStore;
use crate::runtime::clock::Clock;
use crate::runtime::host::{default_external_url, hostname};
use crate::runtime::mailbox::{Mailbox, MailboxGauge};
use crate::runtime::stats::GetStats;
use crate::sinks::jsonl::JsonlSink;
use crate::sinks::kafka::{KafkaSink, KafkaSinkSettings};
use crate::sinks::redis::{RedisSink, RedisSinkSettings};
use crate::sources::gpu_nvml::actor::NvmlGpuSampler;
use crate::sources::gpu_simulated::actor::SimulatedGpuSampler;
use crate::sources::gpu_simulated::fleet::SimFleet;
use crate::sources::kafka::{KafkaSource, KafkaSourceLinks, KafkaSourceSettings};
use crate::sources::requests::actor::RequestSampler;
use crate::sources::requests::aggregate::{
    AggregatorLimits, RequestAggregator, SelfMetricsBuffer, TracedRequests,
};
use crate::store::actor::{NotifyStored, WindowStoreActor};
use crate::telemetry::Telemetry;

pub use crate::config::plan::Role;
use crate::config::plan::{Note, Plan};

/// Commands kept for slow subscribers before they miss some (and are told so).
pub const COMMAND_BUFFER: usize = 64;
/// Own handler records buffered between request-sampler ticks.
pub const SELF_METRICS_BUFFER: usize = 100_000;

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("sink jsonl {path}: {source}")]
    Sink {
        path: String,
        source: std::io::Error,
    },
    #[error("GPU source `nvml` was asked for, but {0}")]
    Nvml(String),
    #[error("tracing: {0}")]
    Tracing(#[from] crate::telemetry::TelemetryError),
    #[error("redis.url: {0}")]
    Redis(String),
    #[error("kafka.brokers: {0}")]
    Kafka(String),
    #[error("{0}")]
    Alerting(String),
    #[error("configuration: {0}")]
    Config(String),
}

/// A running component, for status and `/metrics`.
#[derive(Clone)]
pub struct Component {
    pub name: String,
    pub kind: &'static str,
    /// Whether status is `down` (HTTP 503) when this component is down.
    pub required: bool,
    pub stats: Recipient<GetStats>,
}

/// Handles to the running pipeline.
#[derive(Clone)]
pub struct Handles {
    pub window: Addr<WindowStoreActor>,
    pub requests: Addr<RequestSampler>,
    pub query: Addr<QueryActor>,
    pub rules: Addr<RuleEngine>,
    /// The anomaly detector, unless the pipeline switches it off.
    pub anomalies: Option<Addr<AnomalyDetector>>,
    /// The predictor, unless the pipeline switches it off.
    pub predictor: Option<Addr<Predictor>>,
    /// The runner of the rules' actions (not in `pulse agent`).
    pub actions: Option<Addr<ActionRunner>>,
    /// Cached views, read by handlers without an actor round trip.
    pub views: Views,
    pub commands: broadcast::Sender<Command>,
    pub components: Vec<Component>,
    pub gpu_source: GpuSourceInfo,
    pub self_metrics: SelfMetricsBuffer,
    pub clock: Clock,
    pub stale_after_ms: i64,
    /// How long a forecast or exhaustion point stays in `/metrics`: until the next refit is
    /// due, plus `stale_after_ms` of grace (they are written once per refit).
    pub forecast_stale_after_ms: i64,
    /// Tracing (spans, trace store, OTLP export); off when the config says so.
    pub telemetry: Telemetry,
    /// The Redis sink, drained at shutdown.
    pub redis_sink: Option<Addr<RedisSink>>,
    /// Request records that carry a trace id, for trace lookups.
    pub traced_requests: TracedRequests,
}

/// The GPU source, decided before anything starts.
enum GpuChoice {
    Nvml(&'static nvml_wrapper::Nvml),
    Simulated,
}

fn choose_gpu_source(pipeline: &PipelineConfig) -> Result<(GpuChoice, GpuSourceInfo), StartError> {
    let sim = &pipeline.sources.gpu.simulated;
    let simulated = |why: String| {
        (
            GpuChoice::Simulated,
            GpuSourceInfo {
                kind: "simulated",
                detail: format!(
                    "simulated fleet of {} GPUs on host {:?} (seed {}): {why}",
                    sim.gpus, sim.hostname, sim.seed
                ),
            },
        )
    };
    let nvml_with_gpus = || -> Result<&'static nvml_wrapper::Nvml, String> {
        let nvml = crate::sources::gpu_nvml::device::nvml()?;
        match nvml.device_count() {
            Ok(0) => Err("NVML loaded but sees no GPU".to_string()),
            Ok(_) => Ok(nvml),
            Err(e) => Err(crate::sources::gpu_nvml::device::describe(&e)),
        }
    };
    Ok(match pipeline.sources.gpu.mode {
        GpuMode::Simulated => simulated("the pipeline asks for the simulated fleet".to_string()),
        GpuMode::Nvml => {
            let nvml = nvml_with_gpus().map_err(StartError::Nvml)?;
            (GpuChoice::Nvml(nvml), nvml_info(nvml))
        }
        GpuMode::Auto => match nvml_with_gpus() {
            Ok(nvml) => (GpuChoice::Nvml(nvml), nvml_info(nvml)),
            Err(why) => simulated(format!("NVML unavailable: {why}")),
        },
    })
}

fn nvml_info(nvml: &nvml_wrapper::Nvml) -> GpuSourceInfo {
    GpuSourceInfo {
        kind: "nvml",
        detail: format!(
            "NVML, {} GPUs, driver {}",
            nvml.device_count().unwrap_or(0),
            nvml.sys_driver_version()
                .unwrap_or_else(|_| "unknown".to_string())
        ),
    }
}

/// Starts a standalone pipeline inside the current actix system.
pub fn start(
    service: &ServiceConfig,
    pipeline: &PipelineConfig,
    clock: Clock,
) -> Result<Handles, StartError> {
    let plan = Plan::from(Role::Standalone, service.clone(), pipeline.clone())
        .map_err(|e| StartError::Config(e.to_string()))?;
    start_plan(&plan, clock)
}

/// Starts what the plan says inside the current actix system.
pub fn start_plan(plan: &Plan, clock: Clock) -> Result<Handles, StartError> {
    let (service, pipeline) = (&plan.service, &plan.pipeline);
    for note in &plan.notes {
        match note {
            Note::Info(m) => tracing::info!("{m}"),
            Note::Warn(m) => tracing::warn!("{m}"),
        }
    }
    let agent = !plan.evaluates;
    let redis_url = plan.redis_url.as_ref();
    // 1. Validate and open everything first.
    let mut sinks = Vec::new();
    for sink in &pipeline.sinks {
        match sink {
            SinkConfig::Jsonl {
                path,
                flush_interval_ms,
            } => {
                let gauge = MailboxGauge::default();
                let actor = JsonlSink::open(
                    path.clone(),
                    Duration::from_millis(flush_interval_ms.get()),
                    gauge.clone(),
                )
                .map_err(|source| StartError::Sink {
                    path: path.display().to_string(),
                    source,
                })?;
                sinks.push((actor, gauge));
            }
        }
    }
    for (key, name) in [
        ("rules.alerts_series", &service.rules.alerts_series),
        (
            "rules.alerts_for_state_series",
            &service.rules.alerts_for_state_series,
        ),
    ] {
        if !crate::rules::valid_metric_name(name) {
            return Err(StartError::Alerting(format!(
                "{key}: {name:?} is not a metric name"
            )));
        }
    }
    // Templates' `$externalURL`, and where alerts' `generatorURL` starts.
    let external_url = match service.rules.external_url.as_str() {
        "" => default_external_url(service.server.listen),
        set => set.to_string(),
    };
    let rule_sources = RuleSources {
        builtin_pack: service.rules.builtin_pack,
        paths: service.rules.paths.clone(),
        template_env: crate::rules::alerting::TemplateEnv {
            external_labels: std::sync::Arc::new(service.rules.external_labels.clone()),
            external_url: external_url.clone(),
        },
        alert_series_names: crate::rules::group::AlertSeriesNames {
            alerts: service.rules.alerts_series.clone(),
            for_state: service.rules.alerts_for_state_series.clone(),
        },
        max_samples: service.rules.max_samples,
    };
    let rule_groups = plan.rule_groups.clone();
    let samples_topic = format!("{}samples", service.kafka.topic_prefix);
    let (gpu_choice, gpu_source) = if plan.samples_from_kafka {
        (
            None,
            GpuSourceInfo {
                kind: "kafka",
                detail: format!(
                    "pulse aggregate: samples from {samples_topic} (consumer group {})",
                    service.kafka.group_id
                ),
            },
        )
    } else {
        let (choice, info) = choose_gpu_source(pipeline)?;
        (Some(choice), info)
    };
    let endpoint = service
        .tracing
        .export_endpoint(|var| std::env::var(var).ok());
    let telemetry = Telemetry::start(&service.tracing, endpoint)?;
    tracing::info!(
        source = gpu_source.kind,
        "GPU source: {}",
        gpu_source.detail
    );

    let mut components = Vec::new();
    let mut component =
        |name: &str, kind: &'static str, required: bool, stats: Recipient<GetStats>| {
            components.push(Component {
                name: name.to_string(),
                kind,
                required,
                stats,
            })
        };

    // 2. Sinks.
    let mut downstream = Vec::new();
    let mut kafka = None;
    let mut redis_sink = None;
    if let Some(brokers) = &service.kafka.brokers {
        let k = &service.kafka;
        let gauge = MailboxGauge::default();
        let settings = KafkaSinkSettings {
            brokers: brokers.clone(),
            topic_prefix: k.topic_prefix.clone(),
            create_topics: k.create_topics,
            partitions: k.partitions.get().min(i32::MAX as u64) as i32,
            replication_factor: k.replication_factor.get().min(i32::MAX as u64) as i32,
            buffer_max_records: k.buffer_max_records.get(),
            samples_topic: !plan.samples_from_kafka,
            fallback_key: hostname(),
        };
        let addr = KafkaSink::new(settings, gauge.clone())
            .map_err(StartError::Kafka)?
            .start();
        component("kafka_sink", "sink", false, addr.clone().recipient());
        downstream.push(Mailbox::new(addr.clone().recipient(), gauge));
        kafka = Some(addr);
    }
    if let Some(url) = redis_url {
        let r = &service.redis;
        let gauge = MailboxGauge::default();
        let settings = RedisSinkSettings {
            url: url.clone(),
            key_prefix: r.key_prefix.clone(),
            history_max_points: r.history_max_points.get(),
            history_ttl_s: r.history_ttl_s.get(),
            buffer_max_samples: r.buffer_max_samples.get(),
            write_batch_samples: r.write_batch_samples.get(),
        };
        let addr = RedisSink::new(settings, gauge.clone())
            .map_err(|e| StartError::Redis(e.to_string()))?
            .start();
        component("redis_sink", "sink", false, addr.clone().recipient());
        downstream.push(Mailbox::new(addr.clone().recipient(), gauge));
        redis_sink = Some(addr);
    }
    for (actor, gauge) in sinks {
        let name = format!("jsonl_sink:{}", actor.path().display());
        let addr = actor.start();
        component(&name, "sink", false, addr.clone().recipient());
        downstream.push(Mailbox::new(addr.recipient(), gauge));
    }

    // 3. Processors: the anomaly detector.
    let mut processors = Vec::new();
    let anomalies = if plan.anomalies {
        let gauge = MailboxGauge::default();
        let mut detector = AnomalyDetector::new(pipeline.anomaly.settings(), gauge.clone());
        if let Some(url) = redis_url {
            detector = detector.with_redis(AnomalyList {
                conn: lazy_connection(url).map_err(|e| StartError::Redis(e.to_string()))?,
                key: format!("{}anomalies", service.redis.key_prefix),
                max: pipeline.anomaly.max_anomalies.get(),
            });
        }
        if let Some(k) = &kafka {
            detector = detector.with_events(k.clone().recipient());
        }
        let addr = detector.start();
        component(
            "anomaly_detector",
            "processor",
            false,
            addr.clone().recipient(),
        );
        processors.push(Mailbox::new(addr.clone().recipient(), gauge));
        Some(addr)
    } else {
        None
    };

    // 4. Window store, on its own thread.
    let retention = plan.retention;
    let window_gauge = MailboxGauge::default();
    let store = WindowStoreActor::new(retention, downstream, clock.clone(), window_gauge.clone())
        .with_max_bytes(pipeline.window.max_mib as usize * 1024 * 1024)
        .with_processors(processors);
    let window = WindowStoreActor::start_in_arbiter(&Arbiter::new().handle(), move |_| store);
    component("window_store", "store", true, window.clone().recipient());
    let to_window = Mailbox::new(window.clone().recipient::<SampleBatch>(), window_gauge);

    // 5. Alert delivery (none for an agent: it runs no rules), then the rule engine (its
    //    groups run on the window store's thread).
    let destinations = if agent {
        Vec::new()
    } else {
        service
            .alerting
            .destinations()
            .map_err(StartError::Alerting)?
    };
    let mut notifiers = Vec::new();
    let mut silences = Vec::new();
    for d in destinations {
        if d.protocol == crate::alertmanager::config::Protocol::AlertmanagerV2 {
            let sync = crate::alertmanager::silences::SilenceSync::new(
                &d,
                std::time::Duration::from_millis(service.alerting.silence_sync_ms.get()),
                service.alerting.silence_on_ack,
                clock.clone(),
            )
            .start();
            component(
                &format!("silences {}", d.base()),
                "sink",
                false,
                sync.clone().recipient(),
            );
            silences.push(sync);
        }
        let name = d.name();
        let notifier = crate::alertmanager::AlertNotifier::new(
            d,
            external_url.clone(),
            service.alerting.queue_capacity.get(),
            service.alerting.max_batch.get(),
            clock.clone(),
        )
        .start();
        component(&name, "sink", false, notifier.clone().recipient());
        notifiers.push(notifier.recipient());
    }
    let notify = crate::rules::engine::Notify {
        destinations: notifiers,
        resend_delay_ms: service.alerting.resend_delay_ms.get() as i64,
        external_url,
        silences: silences.iter().map(|s| s.clone().recipient()).collect(),
        silence_max_ms: service.alerting.silence_max_ms.get() as i64,
    };
    // The command stream (cleanup and named commands), and the runner of the rules' actions.
    let (commands, _) = broadcast::channel(COMMAND_BUFFER);
    let actions = if agent {
        None
    } else {
        let redis = redis_url.map(|u| (u.as_str(), service.redis.key_prefix.as_str()));
        let tls = service
            .alerting
            .tls_client()
            .map_err(StartError::Alerting)?;
        let runner = ActionRunner::new(service.actions.clone(), commands.clone(), window.clone())
            .with_tls(tls.as_ref())
            .wired(
                clock.clone(),
                kafka.as_ref().map(|k| k.clone().recipient()),
                redis,
            )
            .map_err(|e| StartError::Redis(e.to_string()))?
            .start();
        component("actions", "processor", false, runner.clone().recipient());
        Some(runner)
    };
    let rules = RuleEngine::new(
        rule_groups,
        rule_sources,
        window.clone(),
        clock.clone(),
        service.rules.history_max.get(),
        kafka
            .iter()
            .map(|k| k.clone().recipient::<crate::rules::alerting::AlertEvent>())
            .collect(),
    )
    .with_telemetry(telemetry.clone())
    .with_notify(notify);
    let rules = match &actions {
        Some(runner) => rules.with_actions(runner.clone().recipient()),
        None => rules,
    };
    let rules = if plan.samples_from_kafka {
        rules.scoped_to_adopted_hosts()
    } else {
        rules
    };
    let rules = if service.rules.evaluate_on_ingest {
        rules.evaluating_on_ingest(service.rules.min_eval_gap_ms)
    } else {
        rules
    };
    let rules = match redis_url {
        Some(url) => rules.with_alert_store(
            AlertStore::new(
                url,
                &service.redis.key_prefix,
                service.rules.history_max.get(),
            )
            .map_err(|e| StartError::Redis(e.to_string()))?,
        ),
        None => rules,
    }
    .start();
    component("rule_engine", "processor", false, rules.clone().recipient());
    for s in &silences {
        s.do_send(crate::alertmanager::silences::SilenceCommand::Subscribe(
            rules.clone().recipient(),
        ));
    }
    // An agent has no rules to run.
    if service.rules.evaluate_on_ingest && !agent {
        window.do_send(NotifyStored(rules.clone().recipient()));
    }

    // 6. Predictor (reads windows from the store, writes forecasts back).
    let predictor = plan.predictor.then(|| {
        let p = &pipeline.predictor;
        let addr = Predictor::new(
            p.settings(),
            Duration::from_millis(p.refit_interval_ms.get()),
            window.clone(),
            to_window.clone(),
            clock.clone(),
        )
        .with_telemetry(telemetry.clone())
        .start();
        component("predictor", "processor", false, addr.clone().recipient());
        if let Some(runner) = &actions {
            runner.do_send(UsePredictor(addr.clone().recipient()));
        }
        addr
    });

    // 7. Samplers.
    let gpu_cfg = &pipeline.sources.gpu;
    let interval = Duration::from_millis(gpu_cfg.interval_ms.get());
    let gpu_stats: Recipient<GetStats> = match gpu_choice {
        None => {
            let k = &service.kafka;
            let settings = KafkaSourceSettings {
                brokers: k.brokers.clone().expect("checked above"),
                topic: samples_topic,
                group_id: k.group_id.clone(),
                batch_records: k.consume_batch_records.get(),
                session_timeout_ms: k.session_timeout_ms.get(),
                redis: match redis_url {
                    Some(url) => Some((
                        lazy_connection(url).map_err(|e| StartError::Redis(e.to_string()))?,
                        service.redis.key_prefix.clone(),
                    )),
                    None => None,
                },
            };
            let links = KafkaSourceLinks {
                window: window.clone(),
                to_window: to_window.clone(),
                rules: rules.clone(),
                redis_sink: redis_sink.clone(),
                kafka_sink: kafka.clone(),
            };
            KafkaSource::new(settings, links).start().recipient()
        }
        Some(GpuChoice::Nvml(nvml)) => {
            match NvmlGpuSampler::new(nvml, hostname(), interval, to_window.clone(), clock.clone())
            {
                Ok(sampler) => sampler
                    .with_telemetry(telemetry.clone())
                    .start()
                    .recipient(),
                Err(e) => return Err(StartError::Nvml(e)),
            }
        }
        Some(GpuChoice::Simulated) => {
            let sim = &gpu_cfg.simulated;
            let fleet = SimFleet::new(sim.gpus.get(), &sim.hostname, &sim.scenarios, sim.seed);
            let sim = SimulatedGpuSampler::new(
                fleet,
                interval,
                to_window.clone(),
                commands.subscribe(),
                clock.clone(),
                gpu_source.detail.clone(),
            )
            .with_telemetry(telemetry.clone());
            match &actions {
                Some(a) => sim.acknowledging_to(a.clone().recipient()),
                None => sim,
            }
            .start()
            .recipient()
        }
    };
    let source_name = if plan.samples_from_kafka {
        "kafka_source"
    } else {
        "gpu_sampler"
    };
    component(source_name, "source", true, gpu_stats);

    let req_cfg = &pipeline.sources.requests;
    let self_metrics = SelfMetricsBuffer::new(SELF_METRICS_BUFFER);
    let limits = AggregatorLimits {
        window_ms: req_cfg.window_s.get() as i64 * 1000,
        max_recent: req_cfg.max_recent.get(),
        max_series: req_cfg.max_series.get(),
        max_routes_per_service: req_cfg.max_routes_per_service.get(),
    };
    let requests = RequestSampler::new(
        RequestAggregator::new(limits, clock.now_ms()),
        self_metrics.clone(),
        Duration::from_millis(req_cfg.interval_ms.get()),
        to_window,
        clock.clone(),
        MailboxGauge::default(),
    )
    .with_telemetry(telemetry.clone())
    .start();
    component(
        "request_sampler",
        "source",
        true,
        requests.clone().recipient(),
    );

    // 8. Query.
    let dash = &service.dashboard;
    let cache = ViewCache::new(
        service.cache.max_entries.get(),
        Duration::from_millis(service.cache.ttl_ms.get()),
    );
    // Aggregate instances each see their own share of the hosts: their views are not
    // interchangeable, so they keep no shared tier.
    let cache = match redis_url.filter(|_| plan.shared_view_cache) {
        Some(url) => cache.with_second_tier(
            SecondTier::new(url, &service.redis.key_prefix)
                .map_err(|e| StartError::Redis(e.to_string()))?,
        ),
        None => cache,
    };
    let settings = QuerySettings {
        refresh_ms: dash.refresh_ms.get() as i64,
        stale_after_ms: dash.stale_after_ms.get() as i64,
        cleanup_settle_ms: service.cleanup.settle_ms,
    };
    let upstream = QueryUpstream {
        window: window.clone(),
        requests: requests.clone(),
        rules: rules.clone(),
        commands: commands.clone(),
    };
    let (query, views) =
        QueryActor::new(upstream, cache, clock.clone(), settings, gpu_source.clone())
            .start_with_views();
    component("query", "query", true, query.clone().recipient());
    let tracer = crate::telemetry::actor::TracerStats(telemetry.clone()).start();
    component("tracing", "tracer", false, tracer.recipient());

    Ok(Handles {
        window,
        requests,
        query,
        rules,
        anomalies,
        predictor,
        actions,
        views,
        commands,
        components,
        gpu_source,
        self_metrics,
        clock,
        stale_after_ms: settings.stale_after_ms,
        forecast_stale_after_ms: settings.stale_after_ms
            + pipeline.predictor.refit_interval_ms.get() as i64,
        telemetry,
        redis_sink,
        traced_requests: TracedRequests::new(req_cfg.max_traced.get()),
    })
}
