//! driftwatch detector.
pub mod stats;
