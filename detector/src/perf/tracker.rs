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
use driftwatch_schema::{OutcomeValue, WindowInfo};

use super::join::{Found, Pending, PendingJoin};
use super::metrics::{Actual, PerfAcc, Predicted};
use super::report::{JoinCounts, MetricResult, MetricStatus, PerformanceReport, Stage};
use crate::engine::{Observed, ThresholdOrigin};
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
    fn new(spec: &PerformanceSpec) -> Self {
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
}

/// The performance state of one system.
pub struct Tracker {
    pub(crate) spec: PerformanceSpec,
    metrics: Vec<PerfMetric>,
    score: Option<usize>,
    label: Option<usize>,
    value: Option<usize>,
    pub(crate) classes: Classes,
    pub(crate) join: PendingJoin,
    pub(crate) windows: BTreeMap<i64, PerfWindow>,
    windowing: Windowing,
    horizon_ms: i64,
    /// Latest event time seen (ms).
    pub(crate) now_ms: i64,
    pub(crate) counts: JoinCounts,
    system_id: String,
    plan_version: Option<String>,
    reference_version: String,
}

fn at(ms: i64) -> DateTime<Utc> {
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
            system_id: plan.system.id.clone(),
            plan_version: plan.system.plan_version.clone(),
            reference_version: String::new(),
            spec,
        })
    }

    /// The reference version the reports quote.
    pub fn set_reference(&mut self, version: &str) {
        self.reference_version = version.to_owned();
    }

    /// The prediction of a decoded row, if it has what the task reads.
    pub(crate) fn predicted(&mut self, row: &[Observed<'_>]) -> Option<Predicted> {
        let num = |i: Option<usize>| match i.map(|i| &row[i]) {
            Some(Observed::Num(x)) if x.is_finite() => Some(*x),
            _ => None,
        };
        let cat = |i: Option<usize>| match i.map(|i| &row[i]) {
            Some(Observed::Cat(c)) => Some(c.as_ref()),
            _ => None,
        };
        match self.spec.task {
            Task::Regression => num(self.value).map(Predicted::Value),
            Task::Binary => {
                let score = num(self.score).filter(|s| (0.0..=1.0).contains(s));
                let label = match cat(self.label) {
                    Some(l) => self.classes.id(l)?,
                    None => u16::from(score? >= self.spec.score_threshold),
                };
                Some(Predicted::Class { label, score })
            }
            Task::Multiclass => Some(Predicted::Class {
                label: self.classes.id(cat(self.label)?)?,
                score: None,
            }),
        }
    }

    /// An outcome as written in a CSV column.
    pub(crate) fn actual_text(&mut self, text: &str) -> Option<Actual> {
        match self.spec.task {
            Task::Regression => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Actual::Value),
            _ => self.classes.id(text).map(Actual::Class),
        }
    }

    /// An outcome event's value.
    pub(crate) fn actual(&mut self, v: &OutcomeValue) -> Option<Actual> {
        match (self.spec.task, &v.label, v.value) {
            (Task::Regression, _, Some(x)) if x.is_finite() => Some(Actual::Value(x)),
            (Task::Regression, Some(l), None) => self.actual_text(l),
            (_, Some(l), _) => self.classes.id(l).map(Actual::Class),
            // An integer code as the outcome of a classifier: "1", as a label column.
            (_, None, Some(x)) if x.fract() == 0.0 && x.abs() < 1e15 => {
                self.classes.id(&format!("{}", x as i64)).map(Actual::Class)
            }
            _ => None,
        }
    }

    /// The windows of a prediction at `pos` (every one, whether still tracked or not).
    fn windows_of(&self, pos: i64) -> std::ops::RangeInclusive<i64> {
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
        pos: i64,
        ts_ms: i64,
        key: u64,
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
                    cell: 0,
                };
                if let Some(e) = self.join.insert(entry) {
                    if !e.has_outcome() {
                        self.counts.evicted += 1;
                    }
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
            Found::First(at) => (at, None),
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
            w.dirty = true;
            if w.closed {
                let coverage = w.acc.n as f64 / w.predictions.max(1) as f64;
                let tenths = (coverage * 10.0).floor() as i32;
                if coverage >= min && tenths > w.reported_tenths {
                    let r = self.report(k, Stage::Provisional, true);
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
            let stage = if self.now_ms >= w.last_ms.saturating_add(self.horizon_ms) {
                Stage::Final
            } else {
                Stage::Provisional
            };
            out.push(self.report(k, stage, true));
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
            self.join.pop_oldest();
        }
        let done: Vec<i64> = self
            .windows
            .iter()
            .filter(|(_, w)| w.closed && w.last_ms <= cutoff)
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            out.push(self.report(k, Stage::Final, true));
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
            out.push(self.report(k, Stage::Provisional, true));
        }
    }

    /// The join counters now.
    pub fn counts(&self) -> JoinCounts {
        JoinCounts {
            pending: self.join.len() as u64,
            ..self.counts
        }
    }

    /// The report of window `k` now; `mark`: remember what it raised.
    fn report(&mut self, k: i64, stage: Stage, mark: bool) -> PerformanceReport {
        let counts = self.counts();
        let Some(w) = self.windows.get_mut(&k) else {
            unreachable!("reported windows are tracked");
        };
        let coverage = if w.predictions == 0 {
            0.0
        } else {
            w.acc.n as f64 / w.predictions as f64
        };
        let judged = coverage >= self.spec.min_coverage;
        let mut severity = Severity::Ok;
        let metrics: Vec<MetricResult> = self
            .metrics
            .iter()
            .map(|&m| {
                let value = w.acc.metric(m, self.spec.task);
                let t = self.spec.thresholds.get(&m).copied().unwrap_or_default();
                let (warning, critical) = (t.warning, t.critical);
                let declared = self.spec.declared.get(&m).copied();
                let worse = |v: f64, level: f64| {
                    if m.higher_is_better() {
                        v < level
                    } else {
                        v > level
                    }
                };
                let (status, sev, below) = match value {
                    None => (MetricStatus::Insufficient, Severity::Ok, false),
                    Some(_) if !judged => (MetricStatus::AwaitingOutcomes, Severity::Ok, false),
                    Some(v) => {
                        let below = stage == Stage::Final && declared.is_some_and(|d| worse(v, d));
                        let sev = if below || critical.is_some_and(|c| worse(v, c)) {
                            Severity::Critical
                        } else if warning.is_some_and(|l| worse(v, l)) {
                            Severity::Warning
                        } else {
                            Severity::Ok
                        };
                        (MetricStatus::Evaluated, sev, below)
                    }
                };
                severity = severity.max(sev);
                let raise = sev > Severity::Ok
                    && !w
                        .raised
                        .iter()
                        .any(|&(rm, rs, rv)| rm == m && rs == stage && rv >= sev);
                if raise && mark {
                    w.raised.push((m, stage, sev));
                }
                MetricResult {
                    metric: m,
                    status,
                    value,
                    warning,
                    critical,
                    thresholds: ThresholdOrigin::Plan,
                    declared,
                    below_declared: below,
                    severity: sev,
                    raise,
                }
            })
            .collect();
        if mark {
            w.reported_tenths = (coverage * 10.0).floor() as i32;
            w.dirty = false;
        }
        let (start, end) = match self.windowing.kind {
            WindowKind::Count => (None, None),
            WindowKind::Time => (
                Some(at(k * self.windowing.slide)),
                Some(at(k * self.windowing.slide + self.windowing.size)),
            ),
        };
        PerformanceReport {
            kind: "performance".into(),
            system_id: self.system_id.clone(),
            plan_version: self.plan_version.clone(),
            reference_version: self.reference_version.clone(),
            window: WindowInfo {
                index: k,
                start,
                end,
                events: w.predictions as usize,
                outcomes: w.acc.n as usize,
                first_event_at: at(w.first_ms),
                last_event_at: at(w.last_ms),
                complete: w.closed,
            },
            stage,
            coverage,
            severity,
            metrics,
            join: counts,
        }
    }
}
