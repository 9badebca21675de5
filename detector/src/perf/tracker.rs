//! The performance state of one system: predictions awaiting outcomes, the windows of
//! the predictions still open to outcomes, and when each is reported.
//!
//! A window is reported
//! - when its drift window closes (provisional, or final if the horizon has passed);
//! - as outcomes arrive, once its coverage reaches the plan's `min_coverage` and then
//!   at each further tenth;
//! - when the horizon has passed since its last prediction (final), after which it is
//!   forgotten;
//! - at the end of a replay, if it changed since its last report.
//!
//! Time is event time: the latest prediction or outcome timestamp seen.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use driftwatch_schema::OutcomeValue;

use super::calibration::Isotonic;
use super::cbpe::CbpeAcc;
use super::join::{Found, Pending, PendingJoin};
use super::metrics::{Actual, PerfAcc, Predicted};
use super::report::{JoinCounts, PerformanceReport, Stage};
use super::segments::{GroupAcc, Segments};
use crate::engine::{LearnedLevels, Observed, ReferenceProfile};
use crate::input::batch::NO_ID;
use crate::plan::{
    PerfMetric, PerformanceSpec, Plan, Severity, Signal, Source, Task, WindowKind, Windowing,
};

/// Class names to ids: binary is fixed (0 negative, 1 positive); multiclass grows to
/// the plan's `max_classes`.
#[derive(Debug, Clone)]
pub(crate) struct Classes {
    names: Vec<String>,
    max: usize,
    binary: bool,
}

impl Classes {
    pub(crate) fn new(spec: &PerformanceSpec) -> Self {
        match spec.task {
            Task::Binary => Classes {
                names: vec![spec.negative_label.clone(), spec.positive_label.clone()],
                max: 2,
                binary: true,
            },
            _ => Classes {
                names: Vec::new(),
                max: spec.max_classes,
                binary: false,
            },
        }
    }

    fn id(&mut self, name: &str) -> Option<u16> {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return Some(i as u16);
        }
        if self.binary || self.names.len() >= self.max {
            return None;
        }
        self.names.push(name.to_owned());
        Some((self.names.len() - 1) as u16)
    }

    /// The class names, by id.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    pub(crate) fn restore(&mut self, names: Vec<String>) {
        if !self.binary {
            self.names = names;
        }
    }
}

/// One window of predictions still open to outcomes.
#[derive(Debug, Clone, Default)]
pub(crate) struct PerfWindow {
    pub(crate) acc: PerfAcc,
    pub(crate) predictions: u64,
    pub(crate) first_ms: i64,
    pub(crate) last_ms: i64,
    /// Its drift window has closed.
    pub(crate) closed: bool,
    /// Coverage tenths at the last report (-1: none yet).
    pub(crate) reported_tenths: i32,
    /// Changed since its last report.
    pub(crate) dirty: bool,
    /// Severity already raised per metric and stage.
    pub(crate) raised: Vec<(PerfMetric, Stage, Severity)>,
    /// CBPE: the expected confusion matrix as predictions arrive.
    pub(crate) cbpe: CbpeAcc,
    /// CBPE estimates, made when the window closed.
    pub(crate) estimates: Option<Vec<(PerfMetric, Option<f64>)>>,
    /// Severity already raised per estimated metric.
    pub(crate) raised_estimate: Vec<(PerfMetric, Severity)>,
    /// Per (segment key, value): the group's predictions and pairs.
    pub(crate) groups: BTreeMap<(u16, u16), GroupAcc>,
    /// Severity already raised per gap (key, metric) and stage.
    pub(crate) raised_gap: Vec<(u16, PerfMetric, Stage, Severity)>,
}

/// The performance state of one system.
pub struct Tracker {
    pub(crate) spec: PerformanceSpec,
    pub(crate) metrics: Vec<PerfMetric>,
    pub(crate) score: Option<usize>,
    pub(crate) label: Option<usize>,
    pub(crate) value: Option<usize>,
    pub(crate) classes: Classes,
    pub(crate) join: PendingJoin,
    pub(crate) windows: BTreeMap<i64, PerfWindow>,
    pub(crate) windowing: Windowing,
    pub(crate) horizon_ms: i64,
    /// Latest event time seen (ms).
    pub(crate) now_ms: i64,
    pub(crate) counts: JoinCounts,
    /// Entries of the join without an outcome yet.
    pub(crate) awaiting: u64,
    pub(crate) system_id: String,
    pub(crate) plan_version: Option<String>,
    pub(crate) plan_hash: Option<String>,
    pub(crate) reference_version: String,
    /// Levels learned from the reference, by metric.
    pub(crate) learned: BTreeMap<PerfMetric, LearnedLevels>,
    /// CBPE runs (binary with a score).
    pub(crate) cbpe: bool,
    /// The reference's score calibration (`None`: scores taken as probabilities).
    pub(crate) calibration: Option<Isotonic>,
    /// The segment keys and the cells seen.
    pub(crate) segments: Segments,
}

pub(crate) fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl Tracker {
    /// A tracker for `plan`, if it has a `[performance]` table.
    pub fn for_plan(plan: &Plan, signals: &[Signal]) -> Option<Self> {
        let spec = plan.performance.clone()?;
        let find = |src: Source| signals.iter().position(|s| s.source == src);
        Some(Tracker {
            metrics: spec.active_metrics(plan.prediction.score.is_some()),
            score: find(Source::Score),
            label: find(Source::Label),
            value: find(Source::Value),
            classes: Classes::new(&spec),
            join: PendingJoin::new(spec.max_pending()),
            windows: BTreeMap::new(),
            windowing: plan.window.windowing(),
            horizon_ms: spec.horizon_ms(),
            now_ms: i64::MIN,
            counts: JoinCounts::default(),
            awaiting: 0,
            system_id: plan.system.id.clone(),
            plan_version: plan.system.plan_version.clone(),
            plan_hash: Some(plan.hash.clone()).filter(|h| !h.is_empty()),
            reference_version: String::new(),
            learned: BTreeMap::new(),
            cbpe: spec.task == Task::Binary
                && spec.estimate
                && signals.iter().any(|s| s.source == Source::Score),
            calibration: None,
            segments: Segments::new(&spec, signals),
            spec,
        })
    }

    /// An empty tracker of the same plan and reference (to restore a checkpoint into).
    pub(crate) fn fresh(&self) -> Tracker {
        Tracker {
            spec: self.spec.clone(),
            metrics: self.metrics.clone(),
            score: self.score,
            label: self.label,
            value: self.value,
            classes: Classes::new(&self.spec),
            join: PendingJoin::new(self.join.capacity()),
            windows: BTreeMap::new(),
            windowing: self.windowing,
            horizon_ms: self.horizon_ms,
            now_ms: i64::MIN,
            counts: JoinCounts::default(),
            awaiting: 0,
            system_id: self.system_id.clone(),
            plan_version: self.plan_version.clone(),
            plan_hash: self.plan_hash.clone(),
            reference_version: self.reference_version.clone(),
            learned: self.learned.clone(),
            cbpe: self.cbpe,
            calibration: self.calibration.clone(),
            segments: self.segments.fresh(),
        }
    }

    /// The reference the reports quote: its version, its learned levels and its score
    /// calibration.
    pub fn set_reference(&mut self, reference: &ReferenceProfile) {
        self.reference_version = reference.version.clone();
        let perf = reference.performance.as_ref();
        self.learned = perf.map(|p| p.learned.clone()).unwrap_or_default();
        self.calibration = perf.and_then(|p| p.calibration.clone());
    }

    /// The prediction of a decoded row, if it has what the task reads.
    pub(crate) fn predicted(&mut self, row: &[Observed<'_>]) -> Option<Predicted> {
        predicted_of(
            self.spec.task,
            &mut self.classes,
            (self.score, self.label, self.value),
            self.spec.score_threshold,
            row,
        )
    }

    /// The row positions this tracker reads: the prediction's score, label and value,
    /// and the features its segments are keyed by.
    pub(crate) fn columns(&self) -> Vec<usize> {
        let mut out: Vec<usize> = [self.score, self.label, self.value]
            .into_iter()
            .flatten()
            .chain(self.segments.row_columns())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// A monitored prediction's row placed in windows `ks`: its prediction, the outcome
    /// it carries if any (as written), joined at once or left to wait.
    pub(crate) fn row(
        &mut self,
        ks: std::ops::RangeInclusive<i64>,
        (pos, ts, id, cell): (i64, i64, u64, u16),
        row: &[Observed<'_>],
        outcome: Option<&str>,
        out: &mut Vec<PerformanceReport>,
    ) {
        let pred = self.predicted(row);
        let (actual, id) = match outcome {
            Some(text) => match self.actual_text(text) {
                Some(a) => (Some(a), id),
                None => {
                    // Not a value of the task: counted, and never joined.
                    self.counts.invalid += 1;
                    (None, NO_ID)
                }
            },
            None => (None, id),
        };
        self.prediction(ks, (pos, ts, id, cell), pred, actual, out);
    }

    /// An outcome as written in a CSV column.
    pub(crate) fn actual_text(&mut self, text: &str) -> Option<Actual> {
        actual_of_text(self.spec.task, &mut self.classes, text)
    }

    /// An outcome event's value.
    pub(crate) fn actual(&mut self, v: &OutcomeValue) -> Option<Actual> {
        actual_of(self.spec.task, &mut self.classes, v)
    }

    /// The windows of a prediction at `pos` (every one, whether still tracked or not).
    pub(crate) fn windows_of(&self, pos: i64) -> std::ops::RangeInclusive<i64> {
        let Windowing {
            kind, size, slide, ..
        } = self.windowing;
        let mut first = (pos - size).div_euclid(slide) + 1;
        if kind == WindowKind::Count {
            first = first.max(0);
        }
        first..=pos.div_euclid(slide)
    }

    /// A monitored prediction placed in windows `ks` at window position `pos`, with its
    /// outcome if it carries one; `key` hashes its prediction id ([`NO_ID`]: none).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn prediction(
        &mut self,
        ks: std::ops::RangeInclusive<i64>,
        (pos, ts_ms, key, cell): (i64, i64, u64, u16),
        pred: Option<Predicted>,
        outcome: Option<Actual>,
        out: &mut Vec<PerformanceReport>,
    ) {
        for k in ks {
            let w = self.windows.entry(k).or_insert_with(|| PerfWindow {
                first_ms: ts_ms,
                last_ms: ts_ms,
                reported_tenths: -1,
                ..PerfWindow::default()
            });
            w.predictions += 1;
            w.first_ms = w.first_ms.min(ts_ms);
            w.last_ms = w.last_ms.max(ts_ms);
            w.dirty = true;
            if let (Some(p), Some(a)) = (pred, outcome) {
                w.acc.apply(p, a, 1);
            }
            for g in self.segments.groups(cell) {
                let group = w.groups.entry(g).or_default();
                group.predictions += 1;
                if let (Some(p), Some(a)) = (pred, outcome) {
                    group.acc.apply(p, a, 1);
                }
            }
            if let (
                true,
                Some(Predicted::Class {
                    label,
                    score: Some(s),
                }),
            ) = (self.cbpe, pred)
            {
                let p = self.calibration.as_ref().map_or(s, |c| c.predict(s));
                w.cbpe.add(label == 1, s, p);
            }
        }
        match (pred, outcome) {
            (Some(_), Some(_)) => self.counts.joined += 1,
            (None, Some(_)) => self.counts.invalid += 1,
            (Some(p), None) if key != NO_ID => {
                let (pred, label) = match p {
                    Predicted::Class { label, score } => (score.unwrap_or(f64::NAN), label),
                    Predicted::Value(v) => (v, 0),
                };
                let entry = Pending {
                    key,
                    pred,
                    out: f64::NAN,
                    pos,
                    ts_s: (ts_ms.div_euclid(1000)).clamp(0, u32::MAX as i64) as u32,
                    label,
                    cell,
                };
                let before = self.join.len();
                let evicted = self.join.insert(entry);
                if let Some(e) = evicted {
                    if !e.has_outcome() {
                        self.counts.evicted += 1;
                        self.awaiting -= 1;
                    }
                }
                if evicted.is_some() || self.join.len() > before {
                    self.awaiting += 1;
                }
            }
            _ => {}
        }
        self.advance(ts_ms, out);
    }

    /// An outcome for the prediction whose id hashes to `key`, stamped `ts_ms`
    /// (`None`: not in the future beyond the skew bound, so it may move time on).
    pub(crate) fn outcome(
        &mut self,
        key: u64,
        ts_ms: Option<i64>,
        actual: Option<Actual>,
        out: &mut Vec<PerformanceReport>,
    ) {
        let Some(actual) = actual else {
            self.counts.invalid += 1;
            return;
        };
        let (at, replaced) = match self.join.find(key) {
            Found::First(at) => {
                self.awaiting = self.awaiting.saturating_sub(1);
                (at, None)
            }
            Found::Again(at) => (at, Some(self.join.get_mut(at).out)),
            Found::Departed => {
                self.counts.expired += 1;
                return;
            }
            Found::Unknown => {
                self.counts.orphaned += 1;
                return;
            }
        };
        let e = *self.join.get_mut(at);
        let pred = match self.spec.task {
            Task::Regression => Predicted::Value(e.pred),
            _ => Predicted::Class {
                label: e.class(),
                score: (!e.pred.is_nan()).then_some(e.pred),
            },
        };
        let encode = |a: Actual| match a {
            Actual::Class(c) => f64::from(c),
            Actual::Value(v) => v,
        };
        let decode = |x: f64| match actual {
            Actual::Class(_) => Actual::Class(x as u16),
            Actual::Value(_) => Actual::Value(x),
        };
        self.join.get_mut(at).set_outcome(encode(actual));
        match replaced {
            Some(_) => self.counts.replaced += 1,
            None => self.counts.joined += 1,
        }
        let min = self.spec.min_coverage;
        for k in self.windows_of(e.pos) {
            let Some(w) = self.windows.get_mut(&k) else {
                continue;
            };
            if let Some(old) = replaced {
                w.acc.apply(pred, decode(old), -1);
            }
            w.acc.apply(pred, actual, 1);
            for g in self.segments.groups(e.cell) {
                let group = w.groups.entry(g).or_default();
                if let Some(old) = replaced {
                    group.acc.apply(pred, decode(old), -1);
                }
                group.acc.apply(pred, actual, 1);
            }
            w.dirty = true;
            if w.closed {
                let coverage = w.acc.n as f64 / w.predictions.max(1) as f64;
                let tenths = (coverage * 10.0).floor() as i32;
                if coverage >= min && tenths > w.reported_tenths {
                    let r = self.report(k, Stage::Provisional);
                    out.push(r);
                }
            }
        }
        if let Some(ts) = ts_ms {
            self.advance(ts, out);
        }
    }

    /// Window `k`'s drift window closed.
    pub(crate) fn closed(&mut self, k: i64, out: &mut Vec<PerformanceReport>) {
        if let Some(w) = self.windows.get_mut(&k) {
            w.closed = true;
            // Final once event time is past the horizon (strictly: an outcome stamped
            // with its prediction's time still counts with horizon_s = 0).
            let stage = if self.now_ms > w.last_ms.saturating_add(self.horizon_ms) {
                Stage::Final
            } else {
                Stage::Provisional
            };
            out.push(self.report(k, stage));
            if stage == Stage::Final {
                self.windows.remove(&k);
            }
        }
    }

    /// Event time moved to `ts_ms`: predictions past the horizon leave the join, and
    /// closed windows past it are reported final and forgotten.
    pub(crate) fn advance(&mut self, ts_ms: i64, out: &mut Vec<PerformanceReport>) {
        if ts_ms <= self.now_ms {
            return;
        }
        self.now_ms = ts_ms;
        let cutoff = ts_ms.saturating_sub(self.horizon_ms);
        while let Some(e) = self.join.oldest() {
            if i64::from(e.ts_s) * 1000 + 999 >= cutoff {
                break;
            }
            if self.join.pop_oldest().is_some_and(|e| !e.has_outcome()) {
                self.awaiting = self.awaiting.saturating_sub(1);
            }
        }
        let done: Vec<i64> = self
            .windows
            .iter()
            .filter(|(_, w)| w.closed && w.last_ms < cutoff)
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            out.push(self.report(k, Stage::Final));
            self.windows.remove(&k);
        }
    }

    /// End of input: every window still tracked that changed since its last report,
    /// provisional (`complete` false for a window whose drift window had not closed).
    pub(crate) fn finish(&mut self, out: &mut Vec<PerformanceReport>) {
        let ks: Vec<i64> = self
            .windows
            .iter()
            .filter(|(_, w)| w.dirty)
            .map(|(k, _)| *k)
            .collect();
        for k in ks {
            out.push(self.report(k, Stage::Provisional));
        }
    }

    /// The join counters now.
    pub fn counts(&self) -> JoinCounts {
        JoinCounts {
            pending: self.awaiting,
            ..self.counts
        }
    }
}

/// The prediction of a decoded row, if it has what the task reads; `at`: the row
/// positions of the score, label and value signals.
pub(crate) fn predicted_of(
    task: Task,
    classes: &mut Classes,
    at: (Option<usize>, Option<usize>, Option<usize>),
    score_threshold: f64,
    row: &[Observed<'_>],
) -> Option<Predicted> {
    let num = |i: Option<usize>| match i.map(|i| &row[i]) {
        Some(Observed::Num(x)) if x.is_finite() => Some(*x),
        _ => None,
    };
    let cat = |i: Option<usize>| match i.map(|i| &row[i]) {
        Some(Observed::Cat(c)) => Some(c.as_ref()),
        _ => None,
    };
    let (score, label, value) = at;
    match task {
        Task::Regression => num(value).map(Predicted::Value),
        Task::Binary => {
            let score = num(score).filter(|s| (0.0..=1.0).contains(s));
            let label = match cat(label) {
                Some(l) => classes.id(l)?,
                None => u16::from(score? >= score_threshold),
            };
            Some(Predicted::Class { label, score })
        }
        Task::Multiclass => Some(Predicted::Class {
            label: classes.id(cat(label)?)?,
            score: None,
        }),
    }
}

/// An outcome as written in a CSV column.
pub(crate) fn actual_of_text(task: Task, classes: &mut Classes, text: &str) -> Option<Actual> {
    match task {
        Task::Regression => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Actual::Value),
        _ => classes.id(text).map(Actual::Class),
    }
}

/// An outcome event's value.
pub(crate) fn actual_of(task: Task, classes: &mut Classes, v: &OutcomeValue) -> Option<Actual> {
    match (task, &v.label, v.value) {
        (Task::Regression, _, Some(x)) if x.is_finite() => Some(Actual::Value(x)),
        (Task::Regression, Some(l), None) => actual_of_text(task, classes, l),
        (_, Some(l), _) => classes.id(l).map(Actual::Class),
        // An integer code as the outcome of a classifier: "1", as a label column.
        (_, None, Some(x)) if x.fract() == 0.0 && x.abs() < 1e15 => {
            classes.id(&format!("{}", x as i64)).map(Actual::Class)
        }
        _ => None,
    }
}
