//! driftwatch detector.
pub mod engine;
pub mod plan;
pub mod stats;
pub mod synth;
