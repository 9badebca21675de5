//! Logging set-up for both binaries: `DRIFTWATCH_LOG` is the filter (default
//! `info`), `DRIFTWATCH_LOG_FORMAT=json` selects JSON lines. Logs go to stderr.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber with the default filter `info`.
pub fn init_tracing() {
    init_tracing_with("info,rdkafka=warn");
}

/// Install the global subscriber; `default_filter` applies unless `DRIFTWATCH_LOG` is set.
/// Safe to call twice (the second call does nothing).
pub fn init_tracing_with(default_filter: &str) {
    let filter = EnvFilter::try_from_env("DRIFTWATCH_LOG")
        .unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("DRIFTWATCH_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
