//! The plan's `[performance]` table: what the model's outcomes are, how long they may
//! take to arrive, which metrics are watched, and the levels the provider declared in the
//! instructions for use (EU AI Act Art. 13(3)(b), Art. 15(3)).
//!
//! ```toml
//! [performance]
//! task = "binary"                  # or "multiclass", "regression"
//! positive_label = "1"             # binary: the outcome (and predicted label) meaning positive
//! horizon_s = 1209600              # outcomes may arrive up to 14 days after the prediction
//! min_coverage = 0.5               # judge a window once half its predictions have an outcome
//! declared = { accuracy = 0.93, recall = 0.85 }
//! thresholds.f1 = { warning = 0.80, critical = 0.75 }
//! thresholds.roc_auc = { learned = true }   # mean - 2/3 sd of reference windows
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Thresholds;

/// What the model predicts.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Two classes; a score (probability of the positive class) and/or a label.
    Binary,
    /// Several classes; a label.
    Multiclass,
    /// A number.
    Regression,
}

/// A performance metric.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PerfMetric {
    /// Share of predictions whose label is the outcome.
    Accuracy,
    /// Binary: TP / (TP + FP).
    Precision,
    /// Binary: TP / (TP + FN).
    Recall,
    /// Binary: 2TP / (2TP + FP + FN).
    F1,
    /// Binary: TN / (TN + FP).
    Specificity,
    /// Binary, from the score: area under the ROC curve (ties count half).
    RocAuc,
    /// Binary, from the score: average precision (as scikit-learn).
    AveragePrecision,
    /// Binary, from the score: mean negative log-likelihood.
    LogLoss,
    /// Binary, from the score: mean squared error of the probability.
    Brier,
    /// Binary, from the score: expected calibration error over ten equal-width bins.
    Ece,
    /// Multiclass: precision averaged over classes.
    PrecisionMacro,
    /// Multiclass: recall averaged over classes.
    RecallMacro,
    /// Multiclass: F1 averaged over classes.
    F1Macro,
    /// Multiclass: precision over all decisions (equals accuracy for one label each).
    PrecisionMicro,
    /// Multiclass: recall over all decisions.
    RecallMicro,
    /// Multiclass: F1 over all decisions.
    F1Micro,
    /// Regression: mean absolute error.
    Mae,
    /// Regression: root mean squared error.
    Rmse,
    /// Regression: mean absolute percentage error (a share: 0.1 is 10%).
    Mape,
    /// Regression: coefficient of determination.
    R2,
}

/// Every metric, in report order.
pub const ALL_PERF_METRICS: [PerfMetric; 20] = {
    use PerfMetric::*;
    [
        Accuracy,
        Precision,
        Recall,
        F1,
        Specificity,
        RocAuc,
        AveragePrecision,
        LogLoss,
        Brier,
        Ece,
        PrecisionMacro,
        RecallMacro,
        F1Macro,
        PrecisionMicro,
        RecallMicro,
        F1Micro,
        Mae,
        Rmse,
        Mape,
        R2,
    ]
};

impl PerfMetric {
    /// The plan's spelling.
    pub fn as_str(self) -> &'static str {
        use PerfMetric::*;
        match self {
            Accuracy => "accuracy",
            Precision => "precision",
            Recall => "recall",
            F1 => "f1",
            Specificity => "specificity",
            RocAuc => "roc_auc",
            AveragePrecision => "average_precision",
            LogLoss => "log_loss",
            Brier => "brier",
            Ece => "ece",
            PrecisionMacro => "precision_macro",
            RecallMacro => "recall_macro",
            F1Macro => "f1_macro",
            PrecisionMicro => "precision_micro",
            RecallMicro => "recall_micro",
            F1Micro => "f1_micro",
            Mae => "mae",
            Rmse => "rmse",
            Mape => "mape",
            R2 => "r2",
        }
    }

    /// Whether a higher value is better (accuracy) rather than worse (an error).
    pub fn higher_is_better(self) -> bool {
        use PerfMetric::*;
        !matches!(self, LogLoss | Brier | Ece | Mae | Rmse | Mape)
    }

    /// Whether the metric lies in [0, 1].
    pub fn bounded_by_one(self) -> bool {
        use PerfMetric::*;
        !matches!(self, LogLoss | Mae | Rmse | Mape | R2)
    }

    /// Whether it needs the score (binary).
    pub fn needs_score(self) -> bool {
        use PerfMetric::*;
        matches!(self, RocAuc | AveragePrecision | LogLoss | Brier | Ece)
    }

    /// The tasks it applies to.
    pub fn applies_to(self, task: Task) -> bool {
        use PerfMetric::*;
        match self {
            Accuracy => task != Task::Regression,
            Precision | Recall | F1 | Specificity | RocAuc | AveragePrecision | LogLoss | Brier
            | Ece => task == Task::Binary,
            PrecisionMacro | RecallMacro | F1Macro | PrecisionMicro | RecallMicro | F1Micro => {
                task == Task::Multiclass
            }
            Mae | Rmse | Mape | R2 => task == Task::Regression,
        }
    }

    /// A name for people.
    pub fn title(self) -> &'static str {
        use PerfMetric::*;
        match self {
            Accuracy => "accuracy",
            Precision => "precision",
            Recall => "recall",
            F1 => "F1 score",
            Specificity => "specificity",
            RocAuc => "ROC AUC",
            AveragePrecision => "average precision",
            LogLoss => "log loss",
            Brier => "Brier score",
            Ece => "expected calibration error",
            PrecisionMacro => "macro precision",
            RecallMacro => "macro recall",
            F1Macro => "macro F1 score",
            PrecisionMicro => "micro precision",
            RecallMicro => "micro recall",
            F1Micro => "micro F1 score",
            Mae => "mean absolute error",
            Rmse => "root mean squared error",
            Mape => "mean absolute percentage error",
            R2 => "R²",
        }
    }
}

impl fmt::Display for PerfMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How CBPE calibrates the scores.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Calibration {
    /// Isotonic when it helps on held-out parts of the reference.
    #[default]
    Auto,
    /// Always isotonic (given reference outcomes).
    Isotonic,
    /// Never: the scores are taken as probabilities.
    None,
}

/// The `[performance]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PerformanceSpec {
    /// What the model predicts.
    pub task: Task,
    /// Binary: the outcome (and predicted label) that means positive.
    #[serde(default = "one")]
    pub positive_label: String,
    /// Binary: the outcome that means negative; any other outcome is counted as invalid.
    #[serde(default = "zero")]
    pub negative_label: String,
    /// Binary without `[prediction.label]`: a score at or above this predicts positive.
    #[serde(default = "half")]
    pub score_threshold: f64,
    /// How long after its prediction an outcome may arrive (event time); a window is
    /// final once this has passed since its last prediction.
    #[serde(default = "fourteen_days")]
    pub horizon_s: u64,
    /// Share of a window's predictions with an outcome before it is judged.
    #[serde(default = "half")]
    pub min_coverage: f64,
    /// Memory for predictions awaiting their outcome, in MiB (46 bytes each, with their
    /// index; a system holds only what is pending); at the
    /// budget the oldest is evicted and counted.
    #[serde(default = "budget")]
    pub memory_budget_mib: u64,
    /// Multiclass: classes tracked; outcomes and predictions of further classes are
    /// counted as invalid.
    #[serde(default = "fifty")]
    pub max_classes: usize,
    /// Binary with a score: estimate performance before outcomes arrive (CBPE).
    #[serde(default = "yes")]
    pub estimate: bool,
    /// CBPE's calibration of the scores on the reference's outcomes: `auto` (isotonic
    /// when it cuts the held-out calibration error by a third), `isotonic`, or `none`
    /// (the scores are probabilities as they are).
    #[serde(default)]
    pub calibration: Calibration,
    /// Metrics reported (default: every one that applies to the task and the plan's
    /// prediction signals).
    #[serde(default)]
    pub metrics: Option<Vec<PerfMetric>>,
    /// Levels per metric: constants, or `learned = true` from the reference windows.
    #[serde(default)]
    pub thresholds: BTreeMap<PerfMetric, Thresholds>,
    /// The lowest severity of a performance alert (default: the plan's
    /// `alerts.min_severity`); estimates are at most warnings.
    #[serde(default)]
    pub min_severity: Option<super::Severity>,
    /// Groups of people to compare: `features.NAME` (a categorical feature of the plan)
    /// or `segment.NAME` (a tag of the event's `segment` map). Each value of each key is
    /// a cell with its own metrics.
    #[serde(default)]
    pub segments: Vec<String>,
    /// Outcomes a cell needs before its numbers are shown: smaller cells are reported as
    /// insufficient, never as a number (small cells identify people).
    #[serde(default = "hundred")]
    pub min_cell: u64,
    /// Values kept per segment key; the rest are pooled as `other`.
    #[serde(default = "twenty")]
    pub max_segment_values: usize,
    /// Also run the plan's drift checks per group, each against the group's own
    /// reference (the reference predictions of that group), with constant levels.
    #[serde(default)]
    pub segment_drift: bool,
    /// Levels for the gap between the best and the worst cell of a key, per metric
    /// (e.g. `gap.recall = { warning = 0.05, critical = 0.10 }`).
    #[serde(default)]
    pub gap: BTreeMap<PerfMetric, Thresholds>,
    /// The levels declared in the instructions for use: a final window worse than one is
    /// critical.
    #[serde(default)]
    pub declared: BTreeMap<PerfMetric, f64>,
}

fn yes() -> bool {
    true
}
fn one() -> String {
    "1".into()
}
fn zero() -> String {
    "0".into()
}
fn half() -> f64 {
    0.5
}
fn fourteen_days() -> u64 {
    14 * 86_400
}
fn budget() -> u64 {
    512
}
fn fifty() -> usize {
    50
}
fn hundred() -> u64 {
    100
}
fn twenty() -> usize {
    20
}

impl PerformanceSpec {
    /// The metrics reported, in report order; `score`: the plan has `[prediction.score]`.
    pub fn active_metrics(&self, score: bool) -> Vec<PerfMetric> {
        match &self.metrics {
            Some(m) => {
                let mut m = m.clone();
                m.sort();
                m.dedup();
                m
            }
            None => super::performance::ALL_PERF_METRICS
                .into_iter()
                .filter(|m| m.applies_to(self.task) && (score || !m.needs_score()))
                .collect(),
        }
    }

    /// Predictions that fit in the memory budget.
    pub fn max_pending(&self) -> usize {
        (self.memory_budget_mib.saturating_mul(1 << 20) / crate::perf::BUDGET_BYTES as u64)
            .min(u32::MAX as u64 - 1) as usize
    }

    /// The horizon in milliseconds.
    pub fn horizon_ms(&self) -> i64 {
        (self.horizon_s.min(i64::MAX as u64 / 1000) as i64) * 1000
    }
}
