//! Confidence-based performance estimation (CBPE, as NannyML): before the outcomes
//! arrive, a binary classifier's calibrated score is the chance its prediction is
//! positive in truth, so a window's expected confusion matrix is the sum of those
//! chances. Each prediction adds to four sums at a constant cost; ROC AUC, which needs
//! the order of the scores, is computed once when the window closes, from the scores
//! the window keeps (8 + 8 bytes each while it is open).

use crate::plan::PerfMetric;

/// The metrics CBPE estimates.
pub const ESTIMATED: [PerfMetric; 6] = [
    PerfMetric::Accuracy,
    PerfMetric::Precision,
    PerfMetric::Recall,
    PerfMetric::F1,
    PerfMetric::Specificity,
    PerfMetric::RocAuc,
];

/// The expected confusion matrix of one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CbpeAcc {
    /// Predictions with a score.
    pub n: u64,
    tp: f64,
    fp: f64,
    fn_: f64,
    tn: f64,
    /// (raw score, calibrated probability) per prediction, for ROC AUC.
    scores: Vec<(f64, f64)>,
}

impl CbpeAcc {
    /// One prediction: its predicted class (1 positive), its raw score and calibrated
    /// probability.
    pub fn add(&mut self, positive: bool, raw: f64, p: f64) {
        self.n += 1;
        if positive {
            self.tp += p;
            self.fp += 1.0 - p;
        } else {
            self.fn_ += p;
            self.tn += 1.0 - p;
        }
        self.scores.push((raw, p));
    }

    /// The fields, for the checkpoint codec.
    pub(crate) fn parts(&self) -> (u64, [f64; 4], &[(f64, f64)]) {
        (self.n, [self.tp, self.fp, self.fn_, self.tn], &self.scores)
    }

    /// Back from [`CbpeAcc::parts`].
    pub(crate) fn from_parts(n: u64, s: [f64; 4], scores: Vec<(f64, f64)>) -> Self {
        CbpeAcc {
            n,
            tp: s[0],
            fp: s[1],
            fn_: s[2],
            tn: s[3],
            scores,
        }
    }

    /// The scores are no longer needed (the window closed and its AUC is known).
    pub fn release(&mut self) {
        self.scores = Vec::new();
    }

    /// One estimated metric; `None` when undefined (no predictions, a zero
    /// denominator).
    pub fn estimate(&self, m: PerfMetric) -> Option<f64> {
        let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        if self.n == 0 {
            return None;
        }
        let (tp, fp, fn_, tn) = (self.tp, self.fp, self.fn_, self.tn);
        match m {
            PerfMetric::Accuracy => Some((tp + tn) / self.n as f64),
            PerfMetric::Precision => ratio(tp, tp + fp),
            PerfMetric::Recall => ratio(tp, tp + fn_),
            PerfMetric::F1 => ratio(2.0 * tp, 2.0 * tp + fp + fn_),
            PerfMetric::Specificity => ratio(tn, tn + fp),
            PerfMetric::RocAuc => self.roc_auc(),
            _ => None,
        }
    }

    /// NannyML's estimate: walk the raw scores from the highest, each adding its
    /// calibrated probability as a true positive and the rest as a false positive; the
    /// area under that curve. Equal raw scores have equal probabilities, so their order
    /// does not matter.
    fn roc_auc(&self) -> Option<f64> {
        if self.scores.len() < 2 {
            return None;
        }
        let mut sorted = self.scores.clone();
        // Equal raw scores have equal probabilities: their order does not matter.
        sorted.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let tp_all: f64 = sorted.iter().map(|s| s.1).sum();
        let fp_all = sorted.len() as f64 - tp_all;
        if tp_all <= 0.0 || fp_all <= 0.0 {
            return None;
        }
        let (mut tp, mut fp, mut area) = (0.0f64, 0.0f64, 0.0f64);
        for &(_, p) in &sorted {
            let (tp1, fp1) = (tp + p, fp + (1.0 - p));
            area += (fp1 - fp) / fp_all * (tp + tp1) / (2.0 * tp_all);
            tp = tp1;
            fp = fp1;
        }
        Some(area)
    }
}
