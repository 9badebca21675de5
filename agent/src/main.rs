//! `driftwatch-agent`: parse configuration, bind, serve until SIGTERM, drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use driftwatch_agent::{config::AgentConfig, telemetry};

/// The driftwatch sidecar: validates prediction and outcome events from the model server
/// and ships them to Kafka.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (every key has a default).
    #[arg(long, env = "DRIFTWATCH_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP listen address (overrides `listen`).
    #[arg(long, env = "DRIFTWATCH_AGENT_LISTEN")]
    listen: Option<SocketAddr>,
    /// Kafka bootstrap servers (overrides `kafka.brokers`).
    #[arg(long, env = "DRIFTWATCH_KAFKA_BROKERS")]
    brokers: Option<String>,
    /// Events topic (overrides `kafka.topic`).
    #[arg(long, env = "DRIFTWATCH_EVENTS_TOPIC")]
    topic: Option<String>,
    /// Control topic of decisions to restrict or disable, "" for none (overrides
    /// `kafka.control_topic`).
    #[arg(long, env = "DRIFTWATCH_CONTROL_TOPIC")]
    control_topic: Option<String>,
    /// Data directory holding the spool (overrides `data_dir`).
    #[arg(long, env = "DRIFTWATCH_AGENT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print the events Kafka refused for good (the dead-letter spool under the data
    /// directory) as NDJSON on stdout, one wire event per line, to inspect or re-send.
    DeadLetters,
}

/// sysexits.h EX_CONFIG-style code for unusable configuration.
const EXIT_CONFIG: u8 = 64;
const EXIT_UNAVAILABLE: u8 = 69;

fn load(args: &Args) -> anyhow::Result<AgentConfig> {
    let mut config = match &args.config {
        Some(path) => AgentConfig::from_file(path)?,
        None => AgentConfig::default(),
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(b) = &args.brokers {
        config.kafka.brokers = b.clone();
    }
    if let Some(t) = &args.control_topic {
        config.kafka.control_topic = t.clone();
    }
    if let Some(t) = &args.topic {
        config.kafka.topic = t.clone();
    }
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    config.validate()?;
    if let Some(p) = &config.privacy {
        // Load the key now so a missing or short key stops the agent before it binds.
        driftwatch_agent::privacy::Privacy::load(p, std::env::var("DRIFTWATCH_HMAC_KEY").ok())?;
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    telemetry::init_tracing();
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("driftwatch-agent: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(Cmd::DeadLetters) = args.command {
        let dir = config.data_dir.join("dead-letter");
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        return match driftwatch_agent::spool::dump(&dir, &mut out) {
            Ok(n) => {
                eprintln!("driftwatch-agent: {n} dead letters in {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("driftwatch-agent: cannot read {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        };
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("driftwatch-agent: cannot listen on {}: {e}", config.listen);
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    // Both addresses are bound before anything starts: a port in use is one clear error.
    let admin = match config.admin_listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("driftwatch-agent: cannot listen on admin_listen {addr}: {e}");
                return ExitCode::from(EXIT_UNAVAILABLE);
            }
        },
        None => None,
    };
    let registry = prometheus::Registry::new();
    match driftwatch_agent::server::serve(
        listener,
        admin,
        config,
        registry,
        driftwatch_agent::shutdown_signal(),
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("driftwatch-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
