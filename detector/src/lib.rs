//! driftwatch detector: drift statistics per AI system against a monitoring plan.
//!
//! Data passes through these modules in order:
//!
//! 1. A driver reads events: [`detect`] from the Kafka events topic (consumer group,
//!    at-least-once offsets, repeated predictions dropped by [`dedup`]), or [`replay`]
//!    from files via [`input`] (NDJSON, or CSV parsed in parallel by [`input::fastcsv`]
//!    into [`input::batch::ColumnBatch`]es).
//! 2. [`engine`] routes each event to its system's [`engine::Monitor`], which holds the
//!    frozen reference (built per [`plan`]) and the open window, and on window close runs
//!    the plan's checks from [`stats`] and returns a [`engine::WindowReport`].
//! 3. [`alert`] turns checks past their thresholds into alerts for the plan's webhook
//!    and the alerts topic; [`metrics`] exports every result to Prometheus.
//!
//! [`demo`] wires agent, embedded Kafka, detector and a synthetic model ([`synth`])
//! together for `driftwatch demo`.

pub mod alert;
#[cfg(feature = "demo")]
pub mod demo;
pub mod driver;
pub mod engine;
pub mod input;
pub mod method;
pub mod metrics;
pub mod output;
pub mod plan;
pub mod reference_store;
pub mod service;
pub mod stats;
pub mod synth;
