//! `GET /api/phase4/status`: every running component with its state and reason; 503 when
//! a required component is down (it did not answer within `STATS_TIMEOUT`). And the probes
//! for Kubernetes and compose: `GET /healthz` (the process answers) and `GET /readyz` (the
//! pipeline runs and no required component is down).

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::pipeline::Component;
use crate::query::views::GpuSourceInfo;
use crate::runtime::stats::{ComponentState, ComponentStats, GetStats};

/// How long a component has to answer before it counts as down.
pub const STATS_TIMEOUT: Duration = Duration::from_secs(1);
/// A gathered report is reused for this long: under load, status and `/metrics` ask the
/// actors at most ten times a second, and concurrent callers share one gathering.
pub const STATUS_MAX_AGE: Duration = Duration::from_millis(100);

/// One component in the status report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComponentReport {
    /// Whether Pulse is down while it is.
    pub required: bool,
    #[serde(flatten)]
    pub stats: ComponentStats,
}

/// The status report.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusReport {
    /// The worst state among required components (a degraded optional one degrades).
    pub status: ComponentState,
    /// Pulse's version.
    #[schema(value_type = String)]
    pub version: &'static str,
    /// Seconds since the start.
    pub uptime_s: u64,
    /// When the components were asked (reports are reused for up to 100 ms).
    pub generated_at_ms: i64,
    pub gpu_source: GpuSourceInfo,
    pub components: Vec<ComponentReport>,
}

/// The status in the shape of the system Pulse replaces (`?format=phase4`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Phase4Status {
    /// `success`, or `error` (with 503) when a required component is down.
    #[schema(value_type = String)]
    pub status: &'static str,
    /// Always true.
    pub phase4_enabled: bool,
    /// Per tier (`tier1` to `tier3`), each part's state: the worst state of the Pulse
    /// components behind it (`operational`, `degraded`, `down`), or `disabled` when none runs.
    pub components: BTreeMap<String, BTreeMap<String, String>>,
}

/// What `GET /api/phase4/status` answers: Pulse's report, or the replaced system's shape.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum StatusAnswer {
    Pulse(StatusReport),
    Phase4(Phase4Status),
}

/// Readiness.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"ready": true, "status": "operational", "down": []}))]
pub struct Readiness {
    /// No required component is down.
    pub ready: bool,
    /// The overall state.
    pub status: ComponentState,
    /// The required components that are down.
    pub down: Vec<String>,
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Alive {
    /// Always `alive`.
    #[schema(value_type = String, pattern = "^alive$")]
    pub status: &'static str,
}

/// Asks one component for its stats; no answer in time means down.
pub async fn component_stats(c: &Component) -> ComponentStats {
    match tokio::time::timeout(STATS_TIMEOUT, c.stats.send(GetStats)).await {
        Ok(Ok(stats)) => stats,
        Ok(Err(e)) => down(c, format!("actor stopped: {e}")),
        Err(_) => down(
            c,
            format!("no answer within {} ms", STATS_TIMEOUT.as_millis()),
        ),
    }
}

fn down(c: &Component, reason: String) -> ComponentStats {
    let mut st = ComponentStats::new(c.name.clone(), c.kind);
    st.state = ComponentState::Down;
    st.reason = Some(reason);
    st
}

/// Reports gathered at one moment: (monotonic time, Unix ms, reports).
type Gathered = (std::time::Instant, i64, Arc<Vec<ComponentReport>>);

/// The last gathered reports, shared by concurrent callers.
#[derive(Default)]
pub struct StatusCache {
    last: tokio::sync::Mutex<Option<Gathered>>,
}

/// Every component's stats, gathered at most `STATUS_MAX_AGE` ago; returns them and when
/// they were gathered (Unix ms).
pub async fn gather(state: &AppState) -> (i64, Arc<Vec<ComponentReport>>) {
    let mut last = state.status_cache.last.lock().await;
    if let Some((at, at_ms, reports)) = last.as_ref() {
        if at.elapsed() < STATUS_MAX_AGE {
            return (*at_ms, reports.clone());
        }
    }
    let at_ms = state.handles.clock.now_ms();
    let reports = Arc::new(gather_now(state).await);
    *last = Some((std::time::Instant::now(), at_ms, reports.clone()));
    (at_ms, reports)
}

/// Asks every component for its stats, in parallel.
async fn gather_now(state: &AppState) -> Vec<ComponentReport> {
    let components = &state.handles.components;
    let stats = futures_util::future::join_all(components.iter().map(component_stats)).await;
    components
        .iter()
        .zip(stats)
        .map(|(c, stats)| ComponentReport {
            required: c.required,
            stats,
        })
        .collect()
}

/// Overall state: down if a required component is down, degraded if anything is not
/// operational, operational otherwise.
pub fn overall(components: &[ComponentReport]) -> ComponentState {
    let required_down = components
        .iter()
        .any(|c| c.required && c.stats.state == ComponentState::Down);
    if required_down {
        ComponentState::Down
    } else if components
        .iter()
        .any(|c| c.stats.state != ComponentState::Operational)
    {
        ComponentState::Degraded
    } else {
        ComponentState::Operational
    }
}

/// `?format=phase4`: the status shape of the system Pulse replaces.
#[derive(Debug, Default, serde::Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// `phase4`: the replaced system's shape (tiers); `pulse` (the default): Pulse's report.
    #[param(pattern = "^(pulse|phase4)$")]
    format: Option<String>,
}

/// A part of the replaced system and the Pulse components behind it.
type Part = (&'static str, &'static [&'static str]);

/// The tiers of the system Pulse replaces, and the Pulse components behind each entry.
const PHASE4_TIERS: &[(&str, &[Part])] = &[
    (
        "tier1",
        &[
            ("gpu_optimizer", &["gpu_sampler", "window_store"]),
            ("dashboard", &["query"]),
            ("cache_manager", &["query"]),
        ],
    ),
    (
        "tier2",
        &[
            ("predictive_optimizer", &["predictor"]),
            ("alerting_system", &["rule_engine"]),
        ],
    ),
    (
        "tier3",
        &[
            ("anomaly_detector", &["anomaly_detector"]),
            ("tracing_system", &["tracing"]),
        ],
    ),
];

/// The original system's status: `status` (`success`, or `error` with 503 when a required
/// component is down), `phase4_enabled`, and per tier each part's state, the worst of the
/// Pulse components behind it (`disabled` when none runs).
fn phase4_shape(components: &[ComponentReport]) -> Phase4Status {
    let mut tiers = BTreeMap::new();
    for (tier, parts) in PHASE4_TIERS {
        let mut entries = BTreeMap::new();
        for (part, behind) in *parts {
            let state = components
                .iter()
                .filter(|c| behind.contains(&c.stats.name.as_str()))
                .map(|c| c.stats.state)
                .max()
                .map_or("disabled", ComponentState::as_str);
            entries.insert(part.to_string(), state.to_string());
        }
        tiers.insert(tier.to_string(), entries);
    }
    let down = overall(components) == ComponentState::Down;
    Phase4Status {
        status: if down { "error" } else { "success" },
        phase4_enabled: true,
        components: tiers,
    }
}

/// `GET /api/phase4/status[?format=phase4]`
#[utoipa::path(get, path = "/api/phase4/status", operation_id = "get_status", tag = "phase4",
    summary = "every component's state",
    params(StatusQuery),
    responses(
        (status = 200, description = "operational or degraded", body = StatusAnswer),
        (status = 400, description = "an unknown `format`, named", body = ErrorBody),
        (status = 503, description = "a required component is down", body = StatusAnswer),
    ))]
pub async fn status(
    State(state): State<AppState>,
    q: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(StatusCode, Json<StatusAnswer>), ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (generated_at_ms, components) = gather(&state).await;
    let status = overall(&components);
    let code = if status == ComponentState::Down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    match q.format.as_deref() {
        None | Some("pulse") => {}
        Some("phase4") => return Ok((code, Json(StatusAnswer::Phase4(phase4_shape(&components))))),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format: {other:?} is not a status format (pulse, phase4)"
            )))
        }
    }
    let report = StatusReport {
        status,
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: state.started.elapsed().as_secs(),
        generated_at_ms,
        gpu_source: state.handles.gpu_source.clone(),
        components: components.to_vec(),
    };
    Ok((code, Json(StatusAnswer::Pulse(report))))
}

/// `GET /healthz`: the process is alive and its HTTP server answers.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    summary = "the process serves HTTP", security(()),
    responses((status = 200, description = "alive", body = Alive)))]
pub async fn healthz() -> Json<Alive> {
    Json(Alive { status: "alive" })
}

/// `GET /readyz`: 200 when no required component is down, 503 naming those that are.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    summary = "no required component is down", security(()),
    responses(
        (status = 200, description = "ready", body = Readiness),
        (status = 503, description = "a required component is down", body = Readiness),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (_, components) = gather(&state).await;
    let (code, body) = readiness(&components);
    (code, Json(body))
}

fn readiness(components: &[ComponentReport]) -> (StatusCode, Readiness) {
    let down: Vec<String> = components
        .iter()
        .filter(|c| c.required && c.stats.state == ComponentState::Down)
        .map(|c| c.stats.name.clone())
        .collect();
    let code = if down.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status = overall(components);
    (
        code,
        Readiness {
            ready: down.is_empty(),
            status,
            down,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::prelude::*;

    /// Answers stats once, then stops.
    struct Flaky;
    impl Actor for Flaky {
        type Context = Context<Self>;
    }
    impl Handler<GetStats> for Flaky {
        type Result = MessageResult<GetStats>;
        fn handle(&mut self, _: GetStats, ctx: &mut Self::Context) -> Self::Result {
            ctx.stop();
            MessageResult(ComponentStats::new("flaky", "sink"))
        }
    }

    #[test]
    fn ready_unless_a_required_component_is_down() {
        let (code, body) = readiness(&[
            report(true, ComponentState::Operational),
            report(false, ComponentState::Down),
        ]);
        assert_eq!(code, StatusCode::OK);
        assert!(body.ready);
        assert_eq!(body.status, ComponentState::Degraded);
        let (code, body) = readiness(&[
            report(true, ComponentState::Down),
            report(true, ComponentState::Operational),
        ]);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!body.ready);
        assert_eq!(body.down, ["x"]);
    }

    fn report(required: bool, state: ComponentState) -> ComponentReport {
        let mut stats = ComponentStats::new("x", "source");
        stats.state = state;
        ComponentReport { required, stats }
    }

    #[test]
    fn the_phase4_shape_maps_components_to_tiers() {
        let named = |name: &str, required: bool, state: ComponentState| {
            let mut r = report(required, state);
            r.stats.name = name.to_string();
            r
        };
        let v = phase4_shape(&[
            named("gpu_sampler", true, ComponentState::Operational),
            named("window_store", true, ComponentState::Down),
            named("rule_engine", false, ComponentState::Degraded),
        ]);
        assert_eq!(v.status, "error");
        assert_eq!(v.components["tier1"]["gpu_optimizer"], "down");
        assert_eq!(v.components["tier2"]["alerting_system"], "degraded");
        assert_eq!(v.components["tier3"]["tracing_system"], "disabled");
    }

    #[test]
    fn a_required_component_down_makes_the_whole_down() {
        use ComponentState::*;
        assert_eq!(
            overall(&[report(true, Operational), report(false, Down)]),
            Degraded
        );
        assert_eq!(
            overall(&[report(true, Down), report(false, Operational)]),
            Down
        );
        assert_eq!(overall(&[report(true, Operational)]), Operational);
    }

    #[actix::test]
    async fn a_stopped_actor_is_reported_down_with_the_reason() {
        let addr = Flaky.start();
        let c = Component {
            name: "flaky".into(),
            kind: "sink",
            required: true,
            stats: addr.recipient(),
        };
        assert_eq!(component_stats(&c).await.state, ComponentState::Operational);
        let st = component_stats(&c).await;
        assert_eq!(st.state, ComponentState::Down);
        assert!(st.reason.unwrap().contains("actor stopped"));
    }
}
