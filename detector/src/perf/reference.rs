//! What the reference says about performance: its realized metrics, levels learned
//! from its windows, and the calibration CBPE uses. Collected by the
//! `ReferenceBuilder` from reference predictions with outcomes (a CSV outcome column,
//! or outcome events in an NDJSON reference).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::calibration::{needs_calibration, Isotonic};
use super::metrics::{Actual, PerfAcc, Predicted};
use super::tracker::Classes;
use crate::engine::{LearnedLevels, Observed};
use crate::plan::{Calibration, PerfMetric, Plan, Source, Task, WindowKind, Windowing};

/// The reference's performance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReferencePerformance {
    /// Reference predictions with an outcome.
    pub pairs: u64,
    /// Realized metrics over the whole reference.
    pub metrics: BTreeMap<PerfMetric, f64>,
    /// Levels learned from reference windows (metrics with `learned = true`).
    pub learned: BTreeMap<PerfMetric, LearnedLevels>,
    /// The isotonic calibration of the scores, when it helps (binary with a score);
    /// `None`: scores are taken as probabilities.
    pub calibration: Option<Isotonic>,
}

/// Collects the reference's predictions and outcomes.
pub(crate) struct PerfCollector {
    task: Task,
    metrics: Vec<PerfMetric>,
    learned: Vec<(PerfMetric, f64, f64)>,
    classes: Classes,
    score: Option<usize>,
    label: Option<usize>,
    value: Option<usize>,
    score_threshold: f64,
    calibration: Calibration,
    windowing: Windowing,
    /// Predictions awaiting an outcome event (NDJSON references): id hash -> index.
    waiting: HashMap<u64, usize>,
    /// Per reference prediction: its window, prediction and outcome.
    rows: Vec<(i64, Option<Predicted>, Option<Actual>)>,
}

impl PerfCollector {
    pub(crate) fn for_plan(plan: &Plan) -> Option<Self> {
        let spec = plan.performance.as_ref()?;
        let signals = plan.signals();
        let find = |src: Source| signals.iter().position(|s| s.source == src);
        Some(PerfCollector {
            task: spec.task,
            metrics: spec.active_metrics(plan.prediction.score.is_some()),
            learned: spec
                .thresholds
                .iter()
                .filter(|(_, t)| t.learned)
                .map(|(m, t)| {
                    let (w, c) = t.ks();
                    (*m, w, c)
                })
                .collect(),
            classes: Classes::new(spec),
            score: find(Source::Score),
            label: find(Source::Label),
            value: find(Source::Value),
            score_threshold: spec.score_threshold,
            calibration: spec.calibration,
            windowing: plan.window.windowing(),
            waiting: HashMap::new(),
            rows: Vec::new(),
        })
    }

    /// One reference prediction (the `index`-th, stamped `ts_ms`), with its outcome if
    /// it carries one; `id`: its prediction id's hash, for a later outcome event.
    pub(crate) fn add(
        &mut self,
        index: usize,
        ts_ms: i64,
        row: &[Observed<'_>],
        outcome: Option<&str>,
        id: Option<u64>,
    ) {
        let pred = super::tracker::predicted_of(
            self.task,
            &mut self.classes,
            (self.score, self.label, self.value),
            self.score_threshold,
            row,
        );
        let actual =
            outcome.and_then(|o| super::tracker::actual_of_text(self.task, &mut self.classes, o));
        let pos = match self.windowing.kind {
            WindowKind::Count => index as i64,
            WindowKind::Time => ts_ms,
        };
        // Reference windows tumble at the monitored size, as for drift.
        let k = pos.div_euclid(self.windowing.size);
        if let (Some(id), None) = (id, actual) {
            self.waiting.insert(id, self.rows.len());
        }
        self.rows.push((k, pred, actual));
    }

    /// An outcome event of the reference file.
    pub(crate) fn outcome(&mut self, id: u64, value: &driftwatch_schema::OutcomeValue) {
        if let Some(&i) = self.waiting.get(&id) {
            let a = super::tracker::actual_of(self.task, &mut self.classes, value);
            if a.is_some() {
                self.rows[i].2 = a;
            }
        }
    }

    pub(crate) fn build(self) -> Option<ReferencePerformance> {
        let mut all = PerfAcc::default();
        let mut chunks: BTreeMap<i64, (u64, PerfAcc)> = BTreeMap::new();
        let mut scored: Vec<(f64, bool)> = Vec::new();
        for &(k, pred, actual) in &self.rows {
            let chunk = chunks.entry(k).or_default();
            chunk.0 += 1;
            if let (Some(p), Some(a)) = (pred, actual) {
                all.apply(p, a, 1);
                chunk.1.apply(p, a, 1);
                if let (Predicted::Class { score: Some(s), .. }, Actual::Class(c)) = (p, a) {
                    scored.push((s, c == 1));
                }
            }
        }
        if all.n == 0 {
            return None;
        }
        if self.windowing.kind == WindowKind::Count {
            // Whole windows only, as for drift.
            let size = self.windowing.size as u64;
            chunks.retain(|_, (n, _)| *n == size);
        }
        let mut learned = BTreeMap::new();
        for &(m, wk, ck) in &self.learned {
            let values: Vec<f64> = chunks
                .values()
                .filter_map(|(_, acc)| acc.metric(m, self.task))
                .collect();
            learned.insert(
                m,
                LearnedLevels::from_values(&values, (wk, ck), !m.higher_is_better()),
            );
        }
        let calibrate = match self.calibration {
            Calibration::Auto => needs_calibration(&scored),
            Calibration::Isotonic => true,
            Calibration::None => false,
        };
        let calibration = if self.task == Task::Binary && calibrate {
            Isotonic::fit(&scored)
        } else {
            None
        };
        Some(ReferencePerformance {
            pairs: all.n,
            metrics: self
                .metrics
                .iter()
                .filter_map(|&m| all.metric(m, self.task).map(|v| (m, v)))
                .collect(),
            learned,
            calibration,
        })
    }
}
