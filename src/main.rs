//! The `pulse` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pulse::config::pipeline::{self, PipelineConfig};
use pulse::config::plan::{Plan, Role};
use pulse::config::service::{self, ServiceConfig};
use pulse::config::{read_text, ConfigError};

/// Exit status for a configuration error.
const EXIT_CONFIG: u8 = 2;

/// Pulse: a streaming metrics pipeline for GPU inference fleets.
#[derive(Parser)]
#[command(name = "pulse", version, about)]
struct Cli {
    /// Without a command: `serve`, with these settings (`pulse --config FILE` works).
    #[command(flatten)]
    serve: ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline and the HTTP API (the default).
    Serve(ConfigArgs),
    /// Sample this host and produce to Kafka (needs kafka.brokers).
    ///
    /// Runs the samplers (and takes request records) and produces every sample to
    /// `<prefix>samples`, keyed by host; the aggregators do the rest.
    Agent(ConfigArgs),
    /// Consume the agents' samples in a consumer group (needs kafka.brokers).
    ///
    /// Runs rules, anomaly detector and predictor on this instance's share of the hosts,
    /// into Redis and Kafka. With `redis.url`, hosts taken over from another instance keep
    /// their windows and alerts.
    Aggregate(ConfigArgs),
    /// Parse and validate the configuration and the pipeline, then exit.
    CheckConfig(ConfigArgs),
    /// Read hardware once and print what was read, as JSON.
    Probe {
        #[command(subcommand)]
        what: ProbeWhat,
    },
    /// Run tests.
    Test {
        #[command(subcommand)]
        what: TestWhat,
    },
}

#[derive(Subcommand)]
enum TestWhat {
    /// Run promtool unit-test files against Pulse's rule evaluation (like `promtool test rules`).
    Rules {
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where the input samples of a test group without `interval` go: `zero` (all at
        /// time 0, as promtool 2.42 loads them) or `evaluation-interval` (newer promtool).
        #[arg(long, value_enum, default_value = "zero")]
        missing_interval: pulse::rules::promtool::MissingInterval,
    },
}

#[derive(Subcommand)]
enum ProbeWhat {
    /// Every GPU through NVML.
    Gpu,
}

#[derive(Args, Default)]
struct ConfigArgs {
    /// Service settings (TOML); the built-in config/pulse.toml when absent.
    #[arg(long, env = "PULSE_CONFIG")]
    config: Option<PathBuf>,
    /// Pipeline (TOML); the built-in pipelines/default.toml when absent.
    #[arg(long, env = "PULSE_PIPELINE")]
    pipeline: Option<PathBuf>,
    /// Address to listen on (server.listen; PULSE_LISTEN in the environment), e.g. 0.0.0.0:5000.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// A rule file or folder (rules.paths; repeat for several): replaces the configured ones.
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// Log lines as text for people, or one JSON object per line for log collectors.
    #[arg(long, value_enum, env = "PULSE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Default, clap::ValueEnum)]
enum LogFormat {
    #[default]
    Text,
    Json,
}

fn load(args: &ConfigArgs) -> Result<(ServiceConfig, PipelineConfig), ConfigError> {
    let env = |var: &str| std::env::var(var).ok();
    let service = match &args.config {
        Some(path) => {
            let (file, text) = read_text(path)?;
            ServiceConfig::load(&file, &text, env)?
        }
        None => ServiceConfig::load(service::EMBEDDED_NAME, service::EMBEDDED, env)?,
    };
    let pipeline = match &args.pipeline {
        Some(path) => {
            let (file, text) = read_text(path)?;
            PipelineConfig::parse(&file, &text)?
        }
        None => PipelineConfig::parse(pipeline::EMBEDDED_NAME, pipeline::EMBEDDED)?,
    }
    .with_env(env)?;
    let mut service = service;
    if let Some(listen) = args.listen {
        service.server.listen = listen;
    }
    if !args.rules.is_empty() {
        service.rules.paths = args.rules.clone();
    }
    Ok((service, pipeline))
}

/// Loads both files and decides what `role` starts (rule files are loaded here, once).
fn plan(role: Role, args: &ConfigArgs) -> Result<Plan, ConfigError> {
    let (service, pipeline) = load(args)?;
    Plan::from(role, service, pipeline)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve(cli.serve));
    let (role, command) = match command {
        Command::Serve(args) => (Role::Standalone, Command::Serve(args)),
        Command::Agent(args) => (Role::Agent, Command::Serve(args)),
        Command::Aggregate(args) => (Role::Aggregate, Command::Serve(args)),
        other => (Role::Standalone, other),
    };
    match command {
        Command::Agent(_) | Command::Aggregate(_) => unreachable!("mapped to Serve above"),
        Command::Serve(args) => {
            let plan = match plan(role, &args) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("pulse: configuration error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let fmt = tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_target(false);
            match args.log_format {
                LogFormat::Text => fmt
                    .with_ansi(std::io::stderr().is_terminal())
                    .finish()
                    .with(plan.service.log.level.targets())
                    .init(),
                LogFormat::Json => fmt
                    .json()
                    .finish()
                    .with(plan.service.log.level.targets())
                    .init(),
            }
            match pulse::run_plan(plan) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pulse: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig(args) => match plan(Role::Standalone, &args) {
            Ok(plan) => {
                println!("{}", plan.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pulse: configuration error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Test {
            what:
                TestWhat::Rules {
                    files,
                    missing_interval,
                },
        } => {
            let mut failed = false;
            let options = pulse::rules::promtool::Options { missing_interval };
            for f in &files {
                let report = pulse::rules::promtool::run_file(f, options);
                println!("{}", report.render());
                failed |= !report.passed();
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Probe {
            what: ProbeWhat::Gpu,
        } => {
            let probe = pulse::probe_gpus();
            println!(
                "{}",
                serde_json::to_string_pretty(&probe).expect("probe serialises")
            );
            if probe.nvml.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
