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
//! Beside the data path, [`control`] follows the control topic: the last decision per
//! system (allowed, restricted, disabled) is persisted in the data directory and shown
//! at `GET /v1/status` and in the `driftwatch-serving` header of every ingest response.
//!
//! [`config`] holds the typed configuration and [`metrics`] the metric catalogue; logging
//! set-up, the shutdown signal and the health routes come from `driftwatch-common`,
//! shared with the detector.

pub mod config;
pub mod control;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod pipeline;
pub mod privacy;
pub mod server;
pub mod sink;
pub mod spool;

pub use config::AgentConfig;
pub use server::{run, AgentError};

pub use driftwatch_common::{shutdown_signal, telemetry};
