//! `driftwatch incident serve`: its flags, and starting the service.

use super::*;

/// `incident serve` flags.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Monitoring plans (their actions, parties and versions).
    #[arg(long = "plan")]
    plans: Vec<PathBuf>,
    /// `sqlite:PATH` (embedded, the default) or `postgres://USER@HOST/DB` (shared).
    #[arg(
        long,
        env = "DRIFTWATCH_DATABASE_URL",
        default_value = "sqlite:driftwatch-incidents.db"
    )]
    database: String,
    /// Address of the API.
    #[arg(
        long,
        env = "DRIFTWATCH_INCIDENT_LISTEN",
        default_value = "127.0.0.1:9480"
    )]
    listen: SocketAddr,
    /// Kafka bootstrap servers ("" to serve the API without Kafka).
    #[arg(
        long,
        env = "DRIFTWATCH_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: String,
    /// Consumer group.
    #[arg(
        long,
        env = "DRIFTWATCH_INCIDENT_GROUP_ID",
        default_value = "driftwatch-incidents"
    )]
    group: String,
    /// Alerts topic.
    #[arg(long, env = "DRIFTWATCH_ALERTS_TOPIC", default_value = driftwatch_schema::DEFAULT_ALERTS_TOPIC)]
    alerts_topic: String,
    /// Reports topic ("" for none: evidence then holds the alert only).
    #[arg(long, env = "DRIFTWATCH_REPORTS_TOPIC", default_value = driftwatch_detector::driver::kafka::DEFAULT_REPORTS_TOPIC)]
    reports_topic: String,
    /// Control topic the agents follow: decisions to restrict or disable ("" for none;
    /// compacted, see README).
    #[arg(long, env = "DRIFTWATCH_CONTROL_TOPIC", default_value = driftwatch_schema::DEFAULT_CONTROL_TOPIC)]
    control_topic: String,
    /// Topic of signed audit checkpoints ("" for none).
    #[arg(long, env = "DRIFTWATCH_CHECKPOINTS_TOPIC", default_value = service::DEFAULT_CHECKPOINTS_TOPIC)]
    checkpoints_topic: String,
    /// Token file: `NAME ROLE sha256:HEX` and an optional expiry per line (`driftwatch incident
    /// token` prints lines). DRIFTWATCH_TOKENS may hold more lines, `;`-separated.
    #[arg(long, env = "DRIFTWATCH_TOKENS_FILE")]
    tokens_file: Option<PathBuf>,
    /// Ed25519 key of audit checkpoints (made on first start, mode 0600).
    #[arg(
        long,
        env = "DRIFTWATCH_AUDIT_KEY",
        default_value = "driftwatch-audit.key"
    )]
    signing_key: PathBuf,
    /// The checkpoints' origin line (names this log).
    #[arg(long, default_value = "driftwatch.audit")]
    origin: String,
    /// Seconds between checkpoints (when the chain grew).
    #[arg(long, default_value_t = 60)]
    checkpoint_interval_s: u64,
    /// Seconds between looks for due reminders.
    #[arg(long, default_value_t = 60)]
    reminder_interval_s: u64,
    /// How long an opening waits for its window's report (milliseconds).
    #[arg(long, default_value_t = 5000)]
    evidence_wait_ms: u64,
    /// SMTP server notices of decisions go to the plan's parties through:
    /// `smtp://HOST:PORT` (plain, e.g. a local relay), `smtp://HOST:PORT?tls=required`
    /// (STARTTLS) or `smtps://USER:PASSWORD@HOST:PORT`. Without it, e-mail notices wait.
    #[arg(long, env = "DRIFTWATCH_SMTP_URL")]
    smtp_url: Option<String>,
    /// The sender of notices (`Name <address>` or `address`).
    #[arg(
        long,
        env = "DRIFTWATCH_MAIL_FROM",
        default_value = "driftwatch <driftwatch@localhost>"
    )]
    mail_from: String,
    /// The base URL parties reach this service at: the acknowledge links in notices
    /// point here (default: http:// and the listen address).
    #[arg(long, env = "DRIFTWATCH_PUBLIC_URL")]
    public_url: Option<String>,
    /// Extra librdkafka property KEY=VALUE (repeatable; secrets refused here).
    #[arg(long = "kafka-property", value_parser = crate::parse_kv)]
    kafka_properties: Vec<(String, String)>,
    #[command(flatten)]
    security: crate::SecurityArgs,
}

pub(super) async fn serve(args: ServeArgs) -> ExitCode {
    let mut policies = Vec::new();
    for p in &args.plans {
        match Plan::from_file(p) {
            Ok(plan) => policies.push(plan.policy()),
            Err(e) => return fail(EXIT_CONFIG, e),
        }
    }
    let mut tokens = Tokens::default();
    if let Some(f) = &args.tokens_file {
        match Tokens::from_file(f) {
            Ok(t) => tokens.extend(t),
            Err(e) => return fail(EXIT_CONFIG, e),
        }
    }
    if let Ok(text) = std::env::var("DRIFTWATCH_TOKENS") {
        match Tokens::parse(&text, "DRIFTWATCH_TOKENS") {
            Ok(t) => tokens.extend(t),
            Err(e) => return fail(EXIT_CONFIG, e),
        }
    }
    if tokens.is_empty() {
        tracing::warn!("no API tokens: every API request will be refused (give --tokens-file)");
    }
    let kafka_properties: BTreeMap<String, String> = args.kafka_properties.into_iter().collect();
    if let Err(e) =
        driftwatch_common::kafka::check_properties("--kafka-property", &kafka_properties)
    {
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
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            return fail(
                EXIT_UNAVAILABLE,
                format!("cannot listen on {}: {e}", args.listen),
            )
        }
    };
    let config = IncidentConfig {
        database_url: args.database,
        brokers: args.brokers,
        security,
        kafka_properties,
        alerts_topic: args.alerts_topic,
        reports_topic: args.reports_topic,
        checkpoints_topic: args.checkpoints_topic,
        control_topic: args.control_topic,
        group_id: args.group,
        policies,
        tokens,
        signing_key: args.signing_key,
        origin: args.origin,
        checkpoint_interval: Duration::from_secs(args.checkpoint_interval_s.max(1)),
        reminder_interval: Duration::from_secs(args.reminder_interval_s.max(1)),
        evidence_wait: Duration::from_millis(args.evidence_wait_ms),
        mail: args.smtp_url.map(|smtp_url| MailConfig {
            smtp_url,
            from: args.mail_from,
        }),
        public_url: args.public_url,
    };
    match service::run(listener, config, driftwatch_common::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (service::ServiceError::Key { .. } | service::ServiceError::Mail(_))) => {
            fail(EXIT_CONFIG, e)
        }
        Err(e) => fail(EXIT_UNAVAILABLE, e),
    }
}
