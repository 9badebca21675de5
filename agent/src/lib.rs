//! driftwatch-agent: the sidecar beside every deployed model.
//!
//! Data passes through these modules in order:
//!
//! 1. [`server`]: the HTTP API on localhost; the model server posts predictions and
//!    outcomes (one JSON object, an array, or NDJSON).
//! 2. [`ingest`]: the body is split into events and each is validated against the wire
//!    contract (`driftwatch_schema`) and, with a `[privacy]` section, passed through
//!    [`privacy`] (allow-list, pseudonyms, law-enforcement suppression); a bad event
//!    refuses the batch with its index and field.
//! 3. [`pipeline`]: the batch is appended to the disk write-ahead log, [`spool`], and the
//!    request is answered 202 once it is written (and fsynced under `fsync = "always"`).
//! 4. [`sink`]: a sender thread follows the spool and produces each record to the events
//!    topic (key = `system_id`) with an idempotent producer; Kafka's confirmations move
//!    the spool's confirmed position, and confirmed segments are deleted.
//!
//! [`config`] holds the typed configuration, [`metrics`] the metric catalogue and
//! [`telemetry`] the logging set-up shared with the detector binary.

pub mod config;
pub mod ingest;
pub mod metrics;
pub mod pipeline;
pub mod privacy;
pub mod server;
pub mod sink;
pub mod spool;
pub mod telemetry;

pub use config::AgentConfig;
pub use server::{run, AgentError};

/// Resolves on SIGTERM or Ctrl-C: the signal a Kubernetes pod or a terminal sends.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
