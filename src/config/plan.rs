//! The plan: every decision that depends on the role (`serve`, `agent`, `aggregate`) and on
//! the two config files, made once, before anything starts. `pipeline::start_plan` only
//! spawns what the plan says; `pulse check-config` prints its summary.

use crate::config::pipeline::PipelineConfig;
use crate::config::service::ServiceConfig;
use crate::config::ConfigError;
use crate::rules::RuleGroup;
use crate::store::window::Retention;

/// What this process is in a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// One Pulse: samplers, processors, sinks, API (`pulse serve`, the default).
    Standalone,
    /// `pulse agent`: this host's samplers → `<p>samples`; no rules, detector or predictor.
    Agent,
    /// `pulse aggregate`: `<p>samples` in a consumer group → window store → rules,
    /// detector, predictor → Redis and Kafka; no GPU sampler.
    Aggregate,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Standalone => "serve",
            Role::Agent => "agent",
            Role::Aggregate => "aggregate",
        }
    }
}

/// Something the plan wants said once logging is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Info(String),
    Warn(String),
}

/// What to start, decided from the role and the configuration.
#[derive(Debug, Clone)]
pub struct Plan {
    pub role: Role,
    pub service: ServiceConfig,
    pub pipeline: PipelineConfig,
    /// The rule groups to run, loaded once. An agent's rule files are still loaded (a bad
    /// one stops it, as it would stop `serve`), but it runs none.
    pub rule_groups: Vec<RuleGroup>,
    /// Rules counted in the files, for the summary (an agent's included).
    pub rules_loaded: usize,
    /// Redis, unless this is an agent (the aggregators write to Redis).
    pub redis_url: Option<String>,
    /// Rules, alert delivery, actions: everything but sampling and producing (not in an agent).
    pub evaluates: bool,
    pub anomalies: bool,
    pub predictor: bool,
    /// Samples come from `<p>samples` (aggregate), not from a GPU source.
    pub samples_from_kafka: bool,
    /// The query cache keeps a second tier in Redis (only a standalone Pulse: aggregate
    /// instances each see their own share of the hosts, so their views differ).
    pub shared_view_cache: bool,
    pub retention: Retention,
    pub notes: Vec<Note>,
}

impl Plan {
    /// Decides what `role` starts with these configs; loads and checks the rule files.
    pub fn from(
        role: Role,
        service: ServiceConfig,
        pipeline: PipelineConfig,
    ) -> Result<Plan, ConfigError> {
        if role != Role::Standalone && service.kafka.brokers.is_none() {
            return Err(ConfigError::Role(format!(
                "`pulse {}` needs kafka.brokers (or PULSE_KAFKA_BROKERS)",
                role.name()
            )));
        }
        // Rule files are configuration too: a bad one stops the start, naming file, group, rule.
        let groups = crate::rules::load_sources(service.rules.builtin_pack, &service.rules.paths)?;
        let rules_loaded = groups.iter().map(|g| g.rules.len()).sum();
        let agent = role == Role::Agent;
        let mut notes = Vec::new();
        if agent && service.redis.url.is_some() {
            notes.push(Note::Info(
                "pulse agent: redis.url is ignored (the aggregators write to Redis)".into(),
            ));
        }
        let redis_url = service
            .redis
            .url
            .as_ref()
            .filter(|_| !agent)
            .map(|u| u.0.clone());
        if role == Role::Aggregate && redis_url.is_none() {
            notes.push(Note::Warn(
                "pulse aggregate without Redis: windows and alerts of hosts taken over from \
                 another instance start empty"
                    .into(),
            ));
        }
        let mut retention = pipeline.window.retention();
        if let Some(n) = service.dashboard.history_size {
            retention.max_points = n.get();
        }
        Ok(Plan {
            role,
            rule_groups: if agent { Vec::new() } else { groups },
            rules_loaded,
            evaluates: !agent,
            anomalies: pipeline.anomaly.enabled && !agent,
            predictor: pipeline.predictor.enabled && !agent,
            samples_from_kafka: role == Role::Aggregate,
            shared_view_cache: redis_url.is_some() && role == Role::Standalone,
            redis_url,
            retention,
            notes,
            service,
            pipeline,
        })
    }

    /// The one line `pulse check-config` prints.
    pub fn summary(&self) -> String {
        let (service, pipeline) = (&self.service, &self.pipeline);
        let on_off = |on: bool, what: String| if on { what } else { "off".to_string() };
        format!(
            "configuration OK: listen {}, GPU source {:?}, {} sink(s), {} rule(s), \
             anomaly detector {}, predictor {}, tracing {}",
            service.server.listen,
            pipeline.sources.gpu.mode,
            pipeline.sinks.len(),
            self.rules_loaded,
            on_off(
                pipeline.anomaly.enabled,
                format!(
                    "on ({} selector(s), threshold {})",
                    pipeline.anomaly.watch.len(),
                    pipeline.anomaly.threshold
                )
            ),
            on_off(
                pipeline.predictor.enabled,
                format!(
                    "on ({} selector(s), refit every {} ms)",
                    pipeline.predictor.watch.len(),
                    pipeline.predictor.refit_interval_ms
                )
            ),
            on_off(
                service.tracing.enabled,
                format!(
                    "on (ratio {}, at most {} new traces/s, export to {})",
                    service.tracing.sampling_ratio.0,
                    service.tracing.max_traces_per_second,
                    service
                        .tracing
                        .export_endpoint(|v| std::env::var(v).ok())
                        .unwrap_or_else(|| "none".to_string())
                )
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{pipeline, service};

    fn configs() -> (ServiceConfig, PipelineConfig) {
        (
            ServiceConfig::load(service::EMBEDDED_NAME, service::EMBEDDED, |_| None).unwrap(),
            PipelineConfig::parse(pipeline::EMBEDDED_NAME, pipeline::EMBEDDED).unwrap(),
        )
    }

    #[test]
    fn every_role_but_serve_needs_kafka() {
        for role in [Role::Agent, Role::Aggregate] {
            let (s, p) = configs();
            let err = Plan::from(role, s, p).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "`pulse {}` needs kafka.brokers (or PULSE_KAFKA_BROKERS)",
                    role.name()
                )
            );
        }
        let (s, p) = configs();
        let plan = Plan::from(Role::Standalone, s, p).unwrap();
        assert!(plan.evaluates && plan.anomalies && plan.predictor);
        assert!(!plan.samples_from_kafka && plan.redis_url.is_none());
        assert!(plan.rules_loaded > 0 && !plan.rule_groups.is_empty());
    }

    #[test]
    fn an_agent_samples_only_and_ignores_redis() {
        let (mut s, p) = configs();
        s.kafka.brokers = Some("localhost:9092".into());
        s.redis.url = Some(service::RedisUrl("redis://127.0.0.1:1".into()));
        let plan = Plan::from(Role::Agent, s, p).unwrap();
        assert!(!plan.evaluates && !plan.anomalies && !plan.predictor);
        assert!(plan.rule_groups.is_empty() && plan.rules_loaded > 0);
        assert_eq!(plan.redis_url, None);
        assert!(matches!(&plan.notes[..], [Note::Info(m)] if m.contains("redis.url is ignored")));
    }

    #[test]
    fn an_aggregator_reads_kafka_and_keeps_no_shared_view_cache() {
        let (mut s, p) = configs();
        s.kafka.brokers = Some("localhost:9092".into());
        let plan = Plan::from(Role::Aggregate, s.clone(), p.clone()).unwrap();
        assert!(plan.samples_from_kafka && plan.evaluates);
        assert!(matches!(&plan.notes[..], [Note::Warn(m)] if m.contains("without Redis")));
        s.redis.url = Some(service::RedisUrl("redis://127.0.0.1:1".into()));
        let aggregate = Plan::from(Role::Aggregate, s.clone(), p.clone()).unwrap();
        assert!(aggregate.notes.is_empty() && !aggregate.shared_view_cache);
        assert!(
            Plan::from(Role::Standalone, s, p)
                .unwrap()
                .shared_view_cache
        );
    }
}
