//! What the performance of one window produces: a [`PerformanceReport`], one
//! [`MetricResult`] per metric of the plan.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use driftwatch_schema::WindowInfo;

use crate::engine::ThresholdOrigin;
use crate::plan::{PerfMetric, Severity};

/// How far a window's outcomes are known.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Outcomes may still arrive (the horizon has not passed since its last prediction).
    Provisional,
    /// The horizon has passed: the numbers no longer change.
    Final,
}

impl Stage {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Provisional => "provisional",
            Stage::Final => "final",
        }
    }
}

/// Whether a metric could be judged.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MetricStatus {
    /// Judged against its levels.
    Evaluated,
    /// Fewer outcomes than the plan's `min_coverage` asks: shown, not judged.
    AwaitingOutcomes,
    /// Undefined for this window (a zero denominator, one class only for ROC AUC), or
    /// levels that could not be learned: never an alert.
    Insufficient,
}

/// One metric of one window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricResult {
    /// The metric.
    pub metric: PerfMetric,
    /// Judged, awaiting outcomes, or insufficient.
    pub status: MetricStatus,
    /// The value over the joined pairs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Warning level.
    pub warning: Option<f64>,
    /// Critical level.
    pub critical: Option<f64>,
    /// Constant or learned levels.
    pub thresholds: ThresholdOrigin,
    /// The level declared in the instructions for use, if the plan gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared: Option<f64>,
    /// Worse than the declared level (a final window, or an estimate).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub below_declared: bool,
    /// The CBPE estimate of the same metric for this window, when there is one: the
    /// realized value minus it is how far the estimate was off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<f64>,
    /// How far the estimate was off: the realized value minus the estimate (when both
    /// exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_gap: Option<f64>,
    /// Ok, warning or critical.
    pub severity: Severity,
    /// This report is the first of its window and stage to reach this severity: an
    /// alert is raised (once per window, stage and severity).
    #[serde(skip)]
    pub raise: bool,
}

/// One group of people (a value of a segment key) in one window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentResult {
    /// The segment key (`features.region`, `segment.channel`).
    pub key: String,
    /// Its value (`other` pools the values past the plan's cap).
    pub value: String,
    /// Evaluated; insufficient below the plan's `min_cell` outcomes (no number is shown:
    /// small cells identify people); awaiting outcomes below `min_coverage`.
    pub status: MetricStatus,
    /// The group's predictions and outcomes, once it has `min_cell` outcomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictions: Option<u64>,
    /// See `predictions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<u64>,
    /// The group's metrics, once it has `min_cell` outcomes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<PerfMetric, f64>,
}

/// The gap between the best and the worst group of one key, for one metric.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GapResult {
    /// The segment key.
    pub key: String,
    /// The metric.
    pub metric: PerfMetric,
    /// Evaluated, or insufficient with fewer than two groups of `min_cell` outcomes.
    pub status: MetricStatus,
    /// The best group and its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<(String, f64)>,
    /// The worst group and its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst: Option<(String, f64)>,
    /// How far apart they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<f64>,
    /// Warning level.
    pub warning: Option<f64>,
    /// Critical level.
    pub critical: Option<f64>,
    /// Ok, warning or critical.
    pub severity: Severity,
    /// First report of its window and stage at this severity: an alert is raised.
    #[serde(skip)]
    pub raise: bool,
}

/// Join counters of a system since it started (or was restored).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct JoinCounts {
    /// Outcomes joined to their prediction.
    pub joined: u64,
    /// Second and later outcomes for a prediction: the last one counts.
    pub replaced: u64,
    /// Outcomes for a prediction that had left the join (horizon passed, or evicted at
    /// the memory budget).
    pub expired: u64,
    /// Outcomes for a prediction never seen.
    pub orphaned: u64,
    /// Outcomes with no usable value for the task (an unknown label, no number).
    pub invalid: u64,
    /// Predictions evicted unjoined at the memory budget.
    pub evicted: u64,
    /// Predictions awaiting their outcome now.
    pub pending: u64,
}

/// The realized performance of one system in one window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PerformanceReport {
    /// Always `performance`: tells these lines from window reports in replay output.
    pub kind: String,
    /// The system.
    pub system_id: String,
    /// The plan version, if the plan names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_version: Option<String>,
    /// Content hash of the plan in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_hash: Option<String>,
    /// The reference version.
    pub reference_version: String,
    /// The window of the predictions; `events` are its predictions, `outcomes` those
    /// with a joined outcome.
    pub window: WindowInfo,
    /// Provisional or final.
    pub stage: Stage,
    /// Share of the window's predictions with an outcome.
    pub coverage: f64,
    /// Highest severity among the metrics.
    pub severity: Severity,
    /// One result per metric, in plan order: realized from the joined outcomes.
    pub metrics: Vec<MetricResult>,
    /// CBPE estimates (binary with a score), made from the window's predictions alone
    /// when it closed: available before any outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub estimated: Vec<MetricResult>,
    /// Per group of people (plans with `segments`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentResult>,
    /// Best-to-worst gaps per segment key and metric (the plan's `gap` levels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<GapResult>,
    /// Whether CBPE calibrated the scores on the reference (isotonic), or took them as
    /// probabilities; absent without CBPE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated: Option<bool>,
    /// The system's join counters when this report was made.
    pub join: JoinCounts,
}
