//! Runs Pulse: an actix system on a multi-thread tokio runtime (actors on the system
//! thread and the window store's arbiter, axum on the pool), until Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::api::{self, ApiLimits, AppState};
use crate::config::pipeline::PipelineConfig;
use crate::config::plan::{Plan, Role};
use crate::config::service::ServiceConfig;
use crate::pipeline;
use crate::runtime::clock::Clock;

/// Starts a standalone pipeline and serves the API until a shutdown signal.
pub fn run(service: ServiceConfig, pipeline: PipelineConfig) -> anyhow::Result<()> {
    run_plan(Plan::from(Role::Standalone, service, pipeline)?)
}

/// Starts what the plan says and serves the API until a shutdown signal.
pub fn run_plan(plan: Plan) -> anyhow::Result<()> {
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    });
    system.block_on(serve(plan))
}

async fn serve(mut plan: Plan) -> anyhow::Result<()> {
    let addr = plan.service.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local: SocketAddr = listener.local_addr()?;
    // The port bound where the configuration said 0 (any): alerts link to it.
    plan.service.server.listen = local;
    let (role, service, pipeline_cfg) = (plan.role, &plan.service, &plan.pipeline);
    let handles = pipeline::start_plan(&plan, Clock::system())?;
    let limits = ApiLimits {
        max_body_bytes: service.server.max_body_bytes.get(),
        max_settle_ms: service.cleanup.max_settle_ms,
        max_profile_window_s: pipeline_cfg.window.max_age_s.get(),
        max_query_samples: service.rules.max_samples,
    };
    spawn_reload_on_sighup(handles.rules.clone());
    let telemetry = handles.telemetry.clone();
    let redis_sink = handles.redis_sink.clone();
    let auth = api::Auth {
        token: service.auth.token.as_ref().map(|t| t.0.clone()),
        protect_reads: service.auth.protect_reads,
    };
    let authenticated = auth.token.is_some();
    if auth.protect_reads && !authenticated {
        tracing::warn!("auth.protect_reads has no effect without auth.token (PULSE_AUTH_TOKEN)");
    }
    let reads_open = !auth.protect_reads;
    let state = AppState::with_auth(handles, limits, auth);
    let stopping = state.shutdown.clone();
    let connections = state.connections.clone();
    let app = api::router(state);
    if !local.ip().is_loopback() {
        match (authenticated, reads_open) {
            (false, _) => tracing::warn!(
                "bound to {local}, which is reachable from other hosts, without \
                 authentication: set auth.token (PULSE_AUTH_TOKEN)"
            ),
            (true, true) => tracing::warn!(
                "bound to {local}, which is reachable from other hosts; mutating \
                 endpoints need the bearer token, read endpoints are open \
                 (auth.protect_reads = false)"
            ),
            (true, false) => tracing::info!(
                "bound to {local}, reachable from other hosts; every endpoint needs \
                 the bearer token"
            ),
        }
    }
    // Signals are taken from here on: a SIGTERM right after the line below is a clean stop.
    let shutdown = shutdown_signal();
    tracing::info!(
        "Pulse {} ({}) listening on http://{local}",
        env!("CARGO_PKG_VERSION"),
        role.name()
    );
    tokio::spawn({
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, open streams end");
            stopping.begin();
        }
    });
    let limits = api::listener::ListenerLimits {
        max_connections: service.server.max_connections.get(),
        header_read_timeout: std::time::Duration::from_millis(
            service.server.header_read_timeout_ms.get(),
        ),
        grace: std::time::Duration::from_millis(service.server.shutdown_grace_ms.get()),
    };
    api::listener::serve(listener, app, limits, connections, stopping).await;
    // Write what the Redis sink still holds (up to 5 s); say what could not be.
    if let Some(sink) = redis_sink {
        let within = std::time::Duration::from_secs(5);
        match sink.send(crate::sinks::redis::Drain(within)).await {
            Ok(0) => tracing::info!("redis sink drained: every buffered sample written"),
            Ok(left) => {
                tracing::warn!("{left} samples buffered for Redis were not written before shutdown")
            }
            Err(e) => tracing::warn!("redis sink: {e}"),
        }
    }
    // Flush spans still queued for the OTLP collector (waits up to the export timeout).
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    tracing::info!("shut down");
    actix::System::current().stop();
    Ok(())
}

/// SIGHUP reloads the rule files (a bad file keeps the old rules, and the log says why).
fn spawn_reload_on_sighup(rules: actix::Addr<crate::rules::engine::RuleEngine>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading rules");
            let _ = rules.send(crate::rules::engine::ReloadRules).await;
        }
    });
}

/// Resolves at Ctrl-C or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let int = async {
                match int.as_mut() {
                    Some(s) => drop(s.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            let term = async {
                match term.as_mut() {
                    Some(s) => drop(s.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = int => {},
                _ = term => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
