//! What both driftwatch binaries share, so neither links the other:
//!
//! - [`telemetry`]: logging set-up (`DRIFTWATCH_LOG`, `DRIFTWATCH_LOG_FORMAT=json`);
//! - [`shutdown_signal`]: SIGTERM or Ctrl-C;
//! - [`health`]: the `/metrics`, `/live` and `/ready` routes, with [`health::Readiness`],
//!   a latch that turns true once and never flips back;
//! - [`kafka`]: a client configuration with the brokers and the operator's properties.

pub mod health;
pub mod kafka;
pub mod telemetry;

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
