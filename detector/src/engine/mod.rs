//! The drift engine: pure code, no I/O. Events in, window reports out.
//!
//! Per AI system a [`Monitor`] goes through two phases:
//!
//! 1. **Reference.** A [`ReferenceProfile`] is given (built from the plan's reference file
//!    by [`ReferenceBuilder`], or loaded from where a driver persisted it), or collected
//!    from the stream: the first N predictions, or those in a marked period of event time.
//!    It is frozen once: sorted samples, quantile bins, standard deviation and range per
//!    numeric signal; category counts per categorical one; learned thresholds; and a
//!    content hash (`version`) every result quotes.
//! 2. **Windows.** Window `k` covers positions `[k*slide, k*slide+size)`, a position being
//!    the prediction's sequence number (count windows) or timestamp in ms (time windows).
//!    A window closes when the watermark passes its end: the count of predictions, or the
//!    latest timestamp minus the allowed lateness. Then every check of the plan runs
//!    against the reference, p-values are adjusted for multiple testing, and a
//!    [`WindowReport`] comes out. A prediction whose windows have all closed is late:
//!    counted, not evaluated.
//!
//! Identical input gives identical reports: nothing here reads a random source, and the
//! one clock read (the skew bound: a prediction stamped more than the plan's
//! `max_skew_s` after the wall clock is left out) cannot change the reports of sound
//! input. A monitor's state can be taken as bytes and restored
//! ([`Monitor::snapshot`], [`Monitor::restore`]), with bit-identical reports after.
//!
//! Edge cases, defined: a signal with fewer than `window.min_samples` usable values (or
//! none in the reference) is `insufficient`, never an alert; so is a check whose learned
//! thresholds could not be learned (fewer than two reference windows). An empty time
//! window produces no report. A constant reference column normalises Wasserstein by
//! 1e-3 instead of 0.

mod builder;
mod evaluate;
mod monitor;
mod reference;
mod report;
mod row;
mod snapshot;
mod window;

pub use builder::ReferenceBuilder;
pub use monitor::{Detector, Input, Monitor, Step, Unplanned};
pub use reference::{
    fnv1a64, plan_fingerprint, KsCache, LearnedLevels, ReferenceProfile, SignalReference,
};
pub use report::{
    CheckResult, CheckStatus, SegmentDrift, ThresholdOrigin, WindowInfo, WindowReport,
};
pub use row::{decode, FxHasher, Observed};

pub(crate) use builder::*;
pub(crate) use evaluate::*;
pub(crate) use reference::*;
pub(crate) use row::*;
pub(crate) use window::*;

#[cfg(test)]
mod tests;
