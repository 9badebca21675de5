//! Performance from outcomes: each outcome joined to its prediction, the realized
//! metrics of the prediction's window, updated as late outcomes arrive, and judged
//! against the plan's levels and the levels declared in the instructions for use.
//!
//! Pure like the engine: a [`crate::engine::Monitor`] with a `[performance]` plan owns
//! a [`Tracker`]; both drivers feed it through `Monitor::observe`.
//!
//! - [`join`]: predictions awaiting their outcome, 40 bytes each, oldest out first.
//! - [`metrics`]: the sums of a window's joined pairs and the metrics from them.
//! - [`tracker`]: windows open to outcomes, when they are reported, provisional or final.
//! - [`report`]: the [`PerformanceReport`].

pub mod calibration;
pub mod cbpe;
pub mod join;
pub mod metrics;
pub mod reference;
pub mod report;
pub mod segments;
mod snapshot;
pub mod tracker;
mod verdict;

pub use join::{PendingJoin, BUDGET_BYTES, PENDING_BYTES};
pub use metrics::{Actual, PerfAcc, Predicted};
pub use report::{
    GapResult, JoinCounts, MetricResult, MetricStatus, PerformanceReport, SegmentResult, Stage,
};
pub use tracker::Tracker;
