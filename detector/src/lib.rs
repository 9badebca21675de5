//! driftwatch detector: drift and performance per AI system against a monitoring plan.
//!
//! Data passes through these modules in order:
//!
//! 1. [`service`] runs the detector: health routes, references, consumption, shutdown.
//! 2. A driver reads events: [`driver::kafka`] from the events topic (consumer group,
//!    at-least-once offsets), or [`driver::file`] (`driftwatch replay`) from files via
//!    [`input`] (NDJSON, or CSV parsed in parallel by [`input::fastcsv`] into
//!    [`input::batch::ColumnBatch`]es). Both drop repeated predictions with
//!    [`driver::dedup`] and get each plan's frozen reference from the
//!    [`reference_store`].
//! 3. Each system's [`engine::Monitor`] takes every input through one call,
//!    [`engine::Monitor::observe`]: it holds the reference (built per [`plan`]) and the
//!    open windows, and on window close runs the plan's checks ([`method`], computed by
//!    [`stats`]) and returns [`engine::WindowReport`]s. With a `[performance]` plan it
//!    also owns a [`perf::Tracker`]: outcomes joined to their predictions, realized and
//!    estimated (CBPE) performance per window and per segment, returned as
//!    [`perf::PerformanceReport`]s.
//! 4. Every report and the alerts it raises ([`alert::alerts_for`],
//!    [`alert::performance_alerts`]) go to each
//!    [`output::Output`]: [`metrics`] for Prometheus, [`alert::delivery`] for the plan's
//!    webhook, Alertmanager and the alerts topic, each receiver behind its own queue.
//!
//! `demo` (default feature) wires agent, embedded Kafka, detector and a synthetic model
//! ([`synth`]) together for `driftwatch demo`.

pub mod alert;
pub mod codec;
#[cfg(feature = "demo")]
pub mod demo;
pub mod driver;
pub mod engine;
pub mod input;
pub mod method;
pub mod metrics;
pub mod output;
pub mod perf;
pub mod plan;
pub mod reference_store;
pub mod service;
pub mod stats;
pub mod synth;
