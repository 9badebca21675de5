//! What a closed window produces: one [`CheckResult`] per signal and method, in a
//! [`WindowReport`].

use serde::{Deserialize, Serialize};

pub use driftwatch_schema::WindowInfo;

use crate::plan::{Method, Severity};

/// Whether a check could be run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The test ran.
    Evaluated,
    /// Too few values in the window or the reference, or learned thresholds that could
    /// not be learned: no verdict, never an alert.
    Insufficient,
}

/// Where a check's levels come from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdOrigin {
    /// Constants: the plan's or the documented defaults.
    Plan,
    /// Learned from the reference windows.
    Learned,
}

/// One check of one signal in one window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckResult {
    /// Signal name (feature name or `prediction.score` ...).
    pub signal: String,
    /// The test.
    pub method: Method,
    /// Evaluated or insufficient.
    pub status: CheckStatus,
    /// The test statistic (KS D, chi-squared, PSI, raw Wasserstein, counts for shares).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    /// The raw p-value, for tests that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The Benjamini-Hochberg adjusted p-value across the window's p-value checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value_adjusted: Option<f64>,
    /// The value compared with the thresholds: the p-value, raw or adjusted per the
    /// plan's `multiple_testing`, or the distance or share; with learned levels on a
    /// test with a p-value, the test statistic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Warning level.
    pub warning: Option<f64>,
    /// Critical level.
    pub critical: Option<f64>,
    /// Constant or learned levels.
    pub thresholds: ThresholdOrigin,
    /// Ok, warning or critical.
    pub severity: Severity,
    /// Usable values in the window.
    pub samples: usize,
    /// Missing values (null or absent) in the window.
    pub missing: usize,
    /// Values of the wrong type in the window.
    pub type_errors: usize,
}

/// The drift checks of one group of people in a window, against the group's own
/// reference (plans with `segment_drift`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentDrift {
    /// The segment key (`features.region`, `segment.channel`).
    pub key: String,
    /// The group (the key's value).
    pub value: String,
    /// Highest severity among the checks (ok when the group has no reference).
    pub severity: Severity,
    /// The reference has no predictions of this group: nothing to compare with.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_reference: bool,
    /// One result per signal and method, in plan order.
    pub checks: Vec<CheckResult>,
}

/// Every check of one system in one window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WindowReport {
    /// The system.
    pub system_id: String,
    /// The plan version, if the plan names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_version: Option<String>,
    /// Content hash of the plan in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_hash: Option<String>,
    /// The reference version compared against.
    pub reference_version: String,
    /// The window.
    pub window: WindowInfo,
    /// Highest severity among the checks.
    pub severity: Severity,
    /// One result per signal and method, in plan order.
    pub checks: Vec<CheckResult>,
    /// The same checks per group of people (plans with `segment_drift`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentDrift>,
}
