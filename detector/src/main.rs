//! `driftwatch`: the detector service and the operator CLI.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use driftwatch_common::kafka::{
    check_properties, KafkaSecurity, Sasl, SaslMechanism, SecurityProtocol,
};
use driftwatch_common::telemetry;
use driftwatch_detector::driver::file::{self as replay, ReplayError};
use driftwatch_detector::driver::kafka::KafkaOptions;
use driftwatch_detector::input::SourceError;
use driftwatch_detector::plan::Plan;
use driftwatch_detector::service::{self, DetectError, ServiceConfig};

mod cli_incident;

/// driftwatch: post-market monitoring of high-risk AI systems.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Consume events from Kafka and analyse them against monitoring plans.
    Detect(Box<DetectArgs>),
    /// Run a monitoring plan over files, offline; one JSON window report per line.
    Replay {
        /// The monitoring plan (TOML).
        #[arg(long)]
        plan: PathBuf,
        /// Reference file (CSV or NDJSON); overrides the plan's reference.
        #[arg(long)]
        reference: Option<PathBuf>,
        /// Events file (CSV or NDJSON).
        #[arg(long)]
        events: PathBuf,
    },
    /// The incident service (`serve`) and the CLI over its API: corrective action with
    /// an audit trail.
    Incident {
        #[command(subcommand)]
        command: cli_incident::IncidentCommand,
    },
    /// The audit trail: `verify` checks the chain and names the first bad entry.
    Audit {
        #[command(subcommand)]
        command: cli_incident::AuditCommand,
    },
    /// Monitoring plan tools.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// The whole pipeline on an embedded Kafka with a synthetic model that drifts.
    #[cfg(feature = "demo")]
    Demo {
        /// Predictions before the drift.
        #[arg(long, default_value_t = 6000)]
        before: usize,
        /// Predictions after the drift.
        #[arg(long, default_value_t = 6000)]
        after: usize,
    },
}

#[derive(Subcommand, Debug)]
enum PlanCommand {
    /// Validate plan files; report the first error of each with the key at fault, and
    /// warn about gaps a regulator would notice.
    Check {
        /// Plan files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Treat warnings as errors (exit 64).
        #[arg(long)]
        strict: bool,
    },
    /// Render a plan as the "post-market monitoring plan" section of the technical
    /// documentation (Markdown, Annex IV item 9).
    Show {
        /// The plan file.
        file: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct DetectArgs {
    /// Monitoring plan files, one per AI system.
    #[arg(long = "plan", required = true)]
    plans: Vec<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "DRIFTWATCH_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: String,
    /// Consumer group id.
    #[arg(
        long,
        env = "DRIFTWATCH_GROUP_ID",
        default_value = "driftwatch-detector"
    )]
    group: String,
    /// Events topic.
    #[arg(long, env = "DRIFTWATCH_EVENTS_TOPIC", default_value = driftwatch_schema::DEFAULT_EVENTS_TOPIC)]
    events_topic: String,
    /// Alerts topic ("" for none).
    #[arg(long, env = "DRIFTWATCH_ALERTS_TOPIC", default_value = driftwatch_schema::DEFAULT_ALERTS_TOPIC)]
    alerts_topic: String,
    /// Window reports topic, the record of every window ("" for none).
    #[arg(long, env = "DRIFTWATCH_REPORTS_TOPIC", default_value = driftwatch_detector::driver::kafka::DEFAULT_REPORTS_TOPIC)]
    reports_topic: String,
    /// Compacted topic of per-system checkpoints (must exist; see README).
    #[arg(long, env = "DRIFTWATCH_STATE_TOPIC", default_value = driftwatch_detector::driver::kafka::DEFAULT_STATE_TOPIC)]
    state_topic: String,
    /// How often changed systems are checkpointed and offsets move (milliseconds).
    #[arg(
        long,
        env = "DRIFTWATCH_CHECKPOINT_INTERVAL_MS",
        default_value_t = 5000
    )]
    checkpoint_interval_ms: u64,
    /// Address for /metrics, /live, /ready.
    #[arg(
        long,
        env = "DRIFTWATCH_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    metrics_listen: SocketAddr,
    /// Extra librdkafka property KEY=VALUE (repeatable). Secrets are refused here
    /// (flags show in `ps`): give them by file or environment variable.
    #[arg(long = "kafka-property", value_parser = parse_kv)]
    kafka_properties: Vec<(String, String)>,
    #[command(flatten)]
    security: SecurityArgs,
    /// PEM file of extra CA(s) trusted for https webhook and Alertmanager URLs (besides
    /// the system's).
    #[arg(long, env = "DRIFTWATCH_RECEIVER_CA_FILE")]
    receiver_ca_file: Option<PathBuf>,
}

/// Kafka TLS and SASL. The SASL password comes from `--kafka-sasl-password-file` or the
/// `DRIFTWATCH_KAFKA_SASL_PASSWORD` variable, never from a flag's value.
#[derive(clap::Args, Debug)]
struct SecurityArgs {
    /// plaintext, ssl, sasl_plaintext or sasl_ssl.
    #[arg(
        long = "kafka-security-protocol",
        env = "DRIFTWATCH_KAFKA_SECURITY_PROTOCOL",
        default_value = "plaintext"
    )]
    protocol: SecurityProtocol,
    /// PEM file of the CA(s) that signed the brokers' certificates (default: the
    /// system's trust store).
    #[arg(long = "kafka-ca-file", env = "DRIFTWATCH_KAFKA_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// PEM client certificate (TLS client authentication).
    #[arg(long = "kafka-cert-file", env = "DRIFTWATCH_KAFKA_CERT_FILE")]
    cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long = "kafka-key-file", env = "DRIFTWATCH_KAFKA_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// File holding the password of an encrypted client key.
    #[arg(
        long = "kafka-key-password-file",
        env = "DRIFTWATCH_KAFKA_KEY_PASSWORD_FILE"
    )]
    key_password_file: Option<PathBuf>,
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long = "kafka-sasl-mechanism", env = "DRIFTWATCH_KAFKA_SASL_MECHANISM")]
    sasl_mechanism: Option<SaslMechanism>,
    /// SASL username.
    #[arg(long = "kafka-sasl-username", env = "DRIFTWATCH_KAFKA_SASL_USERNAME")]
    sasl_username: Option<String>,
    /// File holding the SASL password (or set DRIFTWATCH_KAFKA_SASL_PASSWORD).
    #[arg(
        long = "kafka-sasl-password-file",
        env = "DRIFTWATCH_KAFKA_SASL_PASSWORD_FILE"
    )]
    sasl_password_file: Option<PathBuf>,
}

/// The environment variable the detector reads a SASL password from.
const SASL_PASSWORD_ENV: &str = "DRIFTWATCH_KAFKA_SASL_PASSWORD";

impl SecurityArgs {
    fn security(&self) -> Result<KafkaSecurity, String> {
        let sasl = match self.sasl_mechanism {
            None => {
                if self.sasl_username.is_some() || self.sasl_password_file.is_some() {
                    return Err("--kafka-sasl-username and --kafka-sasl-password-file need --kafka-sasl-mechanism".into());
                }
                None
            }
            Some(mechanism) => Some(Sasl {
                mechanism,
                username: self.sasl_username.clone(),
                username_file: None,
                password_env: self
                    .sasl_password_file
                    .is_none()
                    .then(|| SASL_PASSWORD_ENV.to_owned()),
                password_file: self.sasl_password_file.clone(),
            }),
        };
        Ok(KafkaSecurity {
            protocol: self.protocol,
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            key_password_file: self.key_password_file.clone(),
            sasl,
        })
    }
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got \"{s}\""))
}

const EXIT_DATA: u8 = 65;
const EXIT_CONFIG: u8 = 64;
const EXIT_UNAVAILABLE: u8 = 69;

fn fail(code: u8, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("driftwatch: {e:#}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own story; logs would drown it (DRIFTWATCH_LOG brings them back).
    match cli.command {
        #[cfg(feature = "demo")]
        Command::Demo { .. } => telemetry::init_tracing_with("error"),
        _ => telemetry::init_tracing(),
    }
    match cli.command {
        Command::Plan {
            command: PlanCommand::Check { files, strict },
        } => plan_check(&files, strict),
        Command::Plan {
            command: PlanCommand::Show { file },
        } => match Plan::from_file(&file) {
            Ok(plan) => {
                print!("{}", plan.to_markdown());
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_CONFIG, e),
        },
        Command::Replay {
            plan,
            reference,
            events,
        } => run_replay(&plan, reference.as_deref(), &events),
        Command::Detect(args) => runtime().block_on(run_detect(*args)),
        Command::Incident { command } => runtime().block_on(cli_incident::incident(command)),
        Command::Audit { command } => runtime().block_on(cli_incident::audit(command)),
        #[cfg(feature = "demo")]
        Command::Demo { before, after } => runtime().block_on(async move {
            use driftwatch_detector::demo;
            let opts = demo::DemoOptions {
                before,
                after,
                ..Default::default()
            };
            match demo::run(opts).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(1, format!("demo failed: {e:#}")),
            }
        }),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("driftwatch: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

fn plan_check(files: &[PathBuf], strict: bool) -> ExitCode {
    let mut bad = 0;
    let mut warned = 0;
    for f in files {
        match Plan::from_file(f) {
            Ok(plan) => {
                let signals = plan.signals();
                let checks: usize = signals.iter().map(|s| s.checks.len()).sum();
                let performance = plan.performance.as_ref().map_or(String::new(), |p| {
                    let declared: Vec<String> =
                        p.declared.iter().map(|(m, v)| format!("{m} {v}")).collect();
                    format!(
                        "; performance: {}, {} metrics, outcomes within {} s{}{}",
                        format!("{:?}", p.task).to_lowercase(),
                        p.active_metrics(plan.prediction.score.is_some()).len(),
                        p.horizon_s,
                        if declared.is_empty() {
                            String::new()
                        } else {
                            format!(", declared {}", declared.join(", "))
                        },
                        if p.segments.is_empty() {
                            String::new()
                        } else {
                            format!(", per {}", p.segments.join(", "))
                        }
                    )
                });
                println!(
                    "{}: ok: system {}, plan {}, {} signals, {} checks, {}{performance}",
                    f.display(),
                    plan.system.id,
                    plan.hash,
                    signals.len(),
                    checks,
                    plan.window.describe()
                );
                for w in plan.warnings() {
                    warned += 1;
                    eprintln!("{}: warning: {}: {}", f.display(), w.key, w.message);
                }
            }
            Err(e) => {
                bad += 1;
                eprintln!("{e}");
            }
        }
    }
    if bad == 0 && !(strict && warned > 0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CONFIG)
    }
}

fn run_replay(
    plan: &std::path::Path,
    reference: Option<&std::path::Path>,
    events: &std::path::Path,
) -> ExitCode {
    let plan = match Plan::from_file(plan) {
        Ok(p) => Arc::new(p),
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    match replay::replay(plan, reference, events, &mut out) {
        Ok(s) => {
            let _ = out.flush();
            let mut line = format!(
                "driftwatch replay: {} predictions, {} outcomes, {} windows, {} alerts, max severity {}",
                s.predictions,
                s.outcomes,
                s.windows,
                s.alerts,
                s.max_severity.map_or("none", |m| m.as_str()),
            );
            if s.duplicates > 0 {
                line += &format!(", {} repeated predictions dropped", s.duplicates);
            }
            if s.late > 0 {
                line += &format!(", {} late predictions not evaluated", s.late);
            }
            if s.skewed_future + s.skewed_past > 0 {
                line += &format!(
                    ", {} predictions with a skewed timestamp skipped ({} in the future, {} in the past)",
                    s.skewed_future + s.skewed_past,
                    s.skewed_future,
                    s.skewed_past
                );
            }
            if s.other_systems > 0 {
                line += &format!(", {} events of other systems skipped", s.other_systems);
            }
            if let Some(j) = s.join {
                line += &format!(
                    "; performance: {} reports, outcomes {} joined, {} replaced, {} expired, {} orphaned, {} invalid; {} predictions evicted, {} still pending",
                    s.performance_reports,
                    j.joined,
                    j.replaced,
                    j.expired,
                    j.orphaned,
                    j.invalid,
                    j.evicted,
                    j.pending
                );
            }
            eprintln!("{line}");
            ExitCode::SUCCESS
        }
        Err(ReplayError::Source(SourceError::Io { path, source })) => {
            fail(EXIT_UNAVAILABLE, format!("{}: {source}", path.display()))
        }
        Err(ReplayError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_DATA, e),
    }
}

async fn run_detect(args: DetectArgs) -> ExitCode {
    let mut plans = Vec::new();
    for p in &args.plans {
        match Plan::from_file(p) {
            Ok(plan) => plans.push(Arc::new(plan)),
            Err(e) => return fail(EXIT_CONFIG, e),
        }
    }
    let listener = match tokio::net::TcpListener::bind(args.metrics_listen).await {
        Ok(l) => l,
        Err(e) => {
            return fail(
                EXIT_UNAVAILABLE,
                format!("cannot listen on {}: {e}", args.metrics_listen),
            )
        }
    };
    let kafka_properties = args
        .kafka_properties
        .into_iter()
        .collect::<BTreeMap<_, _>>();
    if let Err(e) = check_properties("--kafka-property", &kafka_properties) {
        return fail(EXIT_CONFIG, e);
    }
    let security = match args
        .security
        .security()
        .and_then(|s| s.resolve().map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    let receiver_roots = match &args.receiver_ca_file {
        Some(path) => match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|pem| reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string()))
            .and_then(|certs| {
                if certs.is_empty() {
                    Err("no PEM certificate in it".to_owned())
                } else {
                    Ok(certs)
                }
            }) {
            Ok(certs) => certs,
            Err(e) => {
                return fail(
                    EXIT_CONFIG,
                    format!("--receiver-ca-file \"{}\": {e}", path.display()),
                )
            }
        },
        None => Vec::new(),
    };
    let mut opts = KafkaOptions::new(&args.brokers);
    opts.group_id = args.group;
    opts.events_topic = args.events_topic;
    opts.alerts_topic = Some(args.alerts_topic).filter(|t| !t.is_empty());
    opts.reports_topic = Some(args.reports_topic).filter(|t| !t.is_empty());
    opts.state_topic = args.state_topic;
    opts.checkpoint_interval = Duration::from_millis(args.checkpoint_interval_ms.max(10));
    opts.security = security;
    opts.kafka_properties = kafka_properties;
    let mut config = ServiceConfig::new(opts, plans);
    config.delivery.receiver_roots = receiver_roots;
    match service::run(listener, config, driftwatch_common::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ DetectError::Reference { .. }) => fail(EXIT_DATA, e),
        Err(e) => fail(1, e),
    }
}
