//! driftwatch's incident service: from alert to corrective action (EU AI Act Art. 20),
//! with the Art. 73 clocks and a tamper-evident audit trail.
//!
//! Data flow:
//!
//! 1. [`service`] consumes the detector's alerts and reports topics (Kafka is a driver);
//! 2. [`desk::Desk`] decides what an alert does: open an incident with a frozen evidence
//!    snapshot and an estimated onset, attach to the open incident of the same condition,
//!    or just be recorded; it also runs people's workflow steps and finds due reminders;
//! 3. [`store::Store`] keeps the [`model::Incident`] records on SQLite or PostgreSQL, each
//!    change in one transaction with its [`audit`] entry (hash-chained);
//! 4. [`api`] serves the record over HTTP to the roles of [`auth`]; [`export`] renders an
//!    incident as JSON or Markdown; [`client`] is the CLI's side of the API.

pub mod api;
pub mod audit;
pub mod auth;
pub mod client;
pub mod desk;
pub mod export;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod policy;
pub mod predictions;
pub mod service;
pub mod store;
