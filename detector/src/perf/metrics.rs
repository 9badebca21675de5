//! Realized performance of one window (or one segment of it): what the joined
//! prediction/outcome pairs add up to, and the metrics computed from that.
//!
//! Every pair can be added and taken away again (a second outcome for a prediction
//! replaces the first), so the accumulator is exact under corrections. The metrics are
//! those of scikit-learn (`detector/tests/oracle/make_perf_fixtures.py` writes the
//! fixtures `detector/tests/perf_oracle.rs` checks to 1e-9), except that a metric whose
//! denominator is zero is undefined (`None`), never 0: sklearn's `zero_division=np.nan`.

use crate::plan::{PerfMetric, Task};

/// Bins of the expected calibration error (equal width over [0, 1]).
pub const ECE_BINS: usize = 10;

/// A prediction as the metrics read it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Predicted {
    /// A class (binary: 1 is positive) and, for a binary model, its score if it is a
    /// probability in [0, 1].
    Class {
        /// The class id.
        label: u16,
        /// The score.
        score: Option<f64>,
    },
    /// A regression value.
    Value(f64),
}

/// An outcome as the metrics read it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Actual {
    /// A class id (binary: 1 is positive).
    Class(u16),
    /// A regression value.
    Value(f64),
}

/// Scored pairs: (score, actual is positive).
type Pairs = Vec<(f64, bool)>;

/// The sums of one window's joined pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerfAcc {
    /// Joined pairs.
    pub n: u64,
    /// Classes tracked: the confusion matrix is `k x k`.
    k: usize,
    /// `confusion[actual * k + predicted]`.
    confusion: Vec<u64>,
    /// Binary with a score: (score, actual is positive), for ROC AUC and average
    /// precision (exact, ties included), as added.
    pairs: Vec<(f64, bool)>,
    /// Pairs taken back (a later outcome replaced theirs): subtracted when the pairs are
    /// ranked, so taking one back costs O(1), not a search.
    removed: Vec<(f64, bool)>,
    log_loss: f64,
    brier: f64,
    /// Per calibration bin: pairs, sum of scores, positives.
    ece: Vec<(u64, f64, u64)>,
    /// Regression: sum |e|, sum e^2, sum |e|/|y|, sum y, sum y^2.
    reg: [f64; 5],
}

impl PerfAcc {
    /// Add one joined pair (`sign` 1) or take it away again (`sign` -1).
    pub fn apply(&mut self, pred: Predicted, actual: Actual, sign: i8) {
        let add = sign > 0;
        match (pred, actual) {
            (Predicted::Class { label, score }, Actual::Class(a)) => {
                let need = usize::from(label.max(a)) + 1;
                if need > self.k {
                    self.grow(need);
                }
                let cell = &mut self.confusion[usize::from(a) * self.k + usize::from(label)];
                if add {
                    *cell += 1;
                } else {
                    *cell = cell.saturating_sub(1);
                }
                if let Some(p) = score {
                    let y = a == 1;
                    let s = if add { 1.0 } else { -1.0 };
                    if add {
                        self.pairs.push((p, y));
                    } else {
                        self.removed.push((p, y));
                    }
                    let q = p.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
                    self.log_loss += s * -(if y { q.ln() } else { (1.0 - q).ln() });
                    let e = p - f64::from(u8::from(y));
                    self.brier += s * e * e;
                    if self.ece.is_empty() {
                        self.ece = vec![(0, 0.0, 0); ECE_BINS];
                    }
                    let b = ((p * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
                    let bin = &mut self.ece[b];
                    if add {
                        bin.0 += 1;
                        bin.2 += u64::from(y);
                    } else {
                        bin.0 = bin.0.saturating_sub(1);
                        bin.2 = bin.2.saturating_sub(u64::from(y));
                    }
                    bin.1 += s * p;
                }
            }
            (Predicted::Value(v), Actual::Value(y)) => {
                let s = if add { 1.0 } else { -1.0 };
                let e = y - v;
                self.reg[0] += s * e.abs();
                self.reg[1] += s * e * e;
                self.reg[2] += s * e.abs() / y.abs().max(f64::EPSILON);
                self.reg[3] += s * y;
                self.reg[4] += s * y * y;
            }
            // A class against a value cannot be joined: the tracker never pairs them.
            _ => return,
        }
        if add {
            self.n += 1;
        } else {
            self.n = self.n.saturating_sub(1);
        }
    }

    /// The fields, for the checkpoint codec.
    #[allow(clippy::type_complexity)]
    pub(crate) fn parts(
        &self,
    ) -> (
        usize,
        &[u64],
        (&[(f64, bool)], &[(f64, bool)]),
        (f64, f64),
        &[(u64, f64, u64)],
        &[f64; 5],
    ) {
        (
            self.k,
            &self.confusion,
            (&self.pairs, &self.removed),
            (self.log_loss, self.brier),
            &self.ece,
            &self.reg,
        )
    }

    /// Back from [`PerfAcc::parts`].
    pub(crate) fn from_parts(
        n: u64,
        k: usize,
        confusion: Vec<u64>,
        (pairs, removed): (Pairs, Pairs),
        sums: (f64, f64),
        ece: Vec<(u64, f64, u64)>,
        reg: [f64; 5],
    ) -> Self {
        PerfAcc {
            n,
            k,
            confusion,
            pairs,
            removed,
            log_loss: sums.0,
            brier: sums.1,
            ece,
            reg,
        }
    }

    fn grow(&mut self, k: usize) {
        let mut m = vec![0u64; k * k];
        for a in 0..self.k {
            for p in 0..self.k {
                m[a * k + p] = self.confusion[a * self.k + p];
            }
        }
        self.confusion = m;
        self.k = k;
    }

    fn cell(&self, actual: usize, predicted: usize) -> u64 {
        if actual < self.k && predicted < self.k {
            self.confusion[actual * self.k + predicted]
        } else {
            0
        }
    }

    /// Binary: (TP, FP, FN, TN), class 1 positive.
    pub fn binary_counts(&self) -> (u64, u64, u64, u64) {
        (
            self.cell(1, 1),
            self.cell(0, 1),
            self.cell(1, 0),
            self.cell(0, 0),
        )
    }

    /// Pairs that carry a score.
    pub fn scored(&self) -> usize {
        self.pairs.len() - self.removed.len()
    }

    /// Several metrics at once: the scored pairs are sorted once for ROC AUC and average
    /// precision together.
    pub fn metrics(&self, ms: &[PerfMetric], task: Task) -> Vec<Option<f64>> {
        let ranked = ms
            .iter()
            .any(|m| matches!(m, PerfMetric::RocAuc | PerfMetric::AveragePrecision))
            .then(|| ranked(&self.pairs, &self.removed));
        ms.iter()
            .map(|&m| match (m, &ranked) {
                (PerfMetric::RocAuc, Some(r)) if self.n > 0 => roc_auc_ranked(r),
                (PerfMetric::AveragePrecision, Some(r)) if self.n > 0 => {
                    average_precision_ranked(r)
                }
                _ => self.metric(m, task),
            })
            .collect()
    }

    /// One metric; `None` when it is undefined for this window (a zero denominator, one
    /// class only for ROC AUC, no pairs).
    pub fn metric(&self, m: PerfMetric, task: Task) -> Option<f64> {
        use PerfMetric::*;
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        if self.n == 0 {
            return None;
        }
        let (tp, fp, fn_, tn) = self.binary_counts();
        match m {
            Accuracy | PrecisionMicro | RecallMicro | F1Micro => {
                let right: u64 = (0..self.k).map(|i| self.cell(i, i)).sum();
                let all: u64 = self.confusion.iter().sum();
                if task == Task::Regression {
                    return None;
                }
                ratio(right, all)
            }
            Precision => ratio(tp, tp + fp),
            Recall => ratio(tp, tp + fn_),
            Specificity => ratio(tn, tn + fp),
            F1 => ratio(2 * tp, 2 * tp + fp + fn_),
            PrecisionMacro | RecallMacro | F1Macro => {
                let mut sum = 0.0;
                let mut defined = 0u32;
                for c in 0..self.k {
                    let actual: u64 = (0..self.k).map(|p| self.cell(c, p)).sum();
                    let predicted: u64 = (0..self.k).map(|a| self.cell(a, c)).sum();
                    if actual == 0 && predicted == 0 {
                        continue;
                    }
                    let t = self.cell(c, c);
                    let v = match m {
                        PrecisionMacro => ratio(t, predicted),
                        RecallMacro => ratio(t, actual),
                        _ => ratio(2 * t, actual + predicted),
                    };
                    if let Some(v) = v {
                        sum += v;
                        defined += 1;
                    }
                }
                (defined > 0).then(|| sum / f64::from(defined))
            }
            RocAuc => roc_auc_ranked(&ranked(&self.pairs, &self.removed)),
            AveragePrecision => average_precision_ranked(&ranked(&self.pairs, &self.removed)),
            LogLoss => (self.scored() > 0).then(|| self.log_loss / self.scored() as f64),
            Brier => (self.scored() > 0).then(|| self.brier / self.scored() as f64),
            Ece => {
                let n: u64 = self.ece.iter().map(|b| b.0).sum();
                (n > 0).then(|| {
                    self.ece
                        .iter()
                        .filter(|b| b.0 > 0)
                        .map(|&(_, s, y)| (y as f64 - s).abs())
                        .sum::<f64>()
                        / n as f64
                })
            }
            Mae => Some(self.reg[0] / self.n as f64),
            Rmse => Some((self.reg[1] / self.n as f64).max(0.0).sqrt()),
            Mape => Some(self.reg[2] / self.n as f64),
            R2 => {
                let n = self.n as f64;
                let sst = self.reg[4] - self.reg[3] * self.reg[3] / n;
                (self.n >= 2 && sst > 1e-12 * self.reg[4].abs()).then(|| 1.0 - self.reg[1] / sst)
            }
        }
    }
}

/// The pairs, less those taken back, as groups of equal score, highest first:
/// (positives, negatives) each.
fn ranked(pairs: &[(f64, bool)], removed: &[(f64, bool)]) -> Vec<(u64, u64)> {
    let desc = |a: &(f64, bool), b: &(f64, bool)| b.0.total_cmp(&a.0);
    let mut sorted: Vec<(f64, bool)> = pairs.to_vec();
    sorted.sort_unstable_by(desc);
    let mut gone: Vec<(f64, bool)> = removed.to_vec();
    gone.sort_unstable_by(desc);
    let mut groups = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < sorted.len() {
        let s = sorted[i].0;
        let (mut pos, mut neg) = (0u64, 0u64);
        while i < sorted.len() && sorted[i].0 == s {
            if sorted[i].1 {
                pos += 1;
            } else {
                neg += 1;
            }
            i += 1;
        }
        // Every pair taken back was added, so its score is among the pairs'.
        while j < gone.len() && gone[j].0.total_cmp(&s).is_ge() {
            if gone[j].0 == s {
                if gone[j].1 {
                    pos = pos.saturating_sub(1);
                } else {
                    neg = neg.saturating_sub(1);
                }
            }
            j += 1;
        }
        if pos + neg > 0 {
            groups.push((pos, neg));
        }
    }
    groups
}

/// ROC AUC: the chance a positive scores above a negative, ties counting half (the
/// trapezoidal area of scikit-learn's curve). `None` with one class only.
pub fn roc_auc(pairs: &[(f64, bool)]) -> Option<f64> {
    roc_auc_ranked(&ranked(pairs, &[]))
}

fn roc_auc_ranked(groups: &[(u64, u64)]) -> Option<f64> {
    let p: u64 = groups.iter().map(|g| g.0).sum();
    let n: u64 = groups.iter().map(|g| g.1).sum();
    if p == 0 || n == 0 {
        return None;
    }
    // Walking down the scores: each group's positives beat every negative seen below,
    // i.e. those not yet seen, and tie with the group's own negatives.
    let mut above_neg = 0u64;
    let mut twice = 0u128;
    for &(pos, neg) in groups {
        let below = n - above_neg - neg;
        twice += u128::from(pos) * u128::from(2 * below + neg);
        above_neg += neg;
    }
    Some(twice as f64 / (2.0 * p as f64 * n as f64))
}

/// Average precision as scikit-learn: the sum over decreasing score thresholds of the
/// recall gained times the precision there. `None` without positives.
pub fn average_precision(pairs: &[(f64, bool)]) -> Option<f64> {
    average_precision_ranked(&ranked(pairs, &[]))
}

fn average_precision_ranked(groups: &[(u64, u64)]) -> Option<f64> {
    let p: u64 = groups.iter().map(|g| g.0).sum();
    if p == 0 {
        return None;
    }
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut ap = 0.0;
    for &(pos, neg) in groups {
        tp += pos;
        fp += neg;
        if pos > 0 {
            ap += (pos as f64 / p as f64) * (tp as f64 / (tp + fp) as f64);
        }
    }
    Some(ap)
}
