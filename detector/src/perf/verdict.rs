//! Judging a window: its realized metrics against their levels (constants, or learned
//! from the reference) and the declared ones, its CBPE estimates, its groups of people
//! and their gaps, into a [`PerformanceReport`]; and remembering what each report
//! raised, so each (metric, stage, severity) alerts once per window.

use std::collections::BTreeMap;

use driftwatch_schema::WindowInfo;

use super::report::{
    GapResult, MetricResult, MetricStatus, PerformanceReport, SegmentResult, Stage,
};
use super::segments::Segments;
use super::tracker::{at, PerfWindow, Tracker};
use crate::engine::ThresholdOrigin;
use crate::plan::{PerfMetric, PerformanceSpec, Severity, WindowKind};

impl Tracker {
    /// The levels of metric `m`: learned from the reference or the plan's constants.
    fn levels(&self, m: PerfMetric) -> Levels {
        let t = self.spec.thresholds.get(&m).copied().unwrap_or_default();
        if t.learned {
            let l = self.learned.get(&m);
            Levels {
                warning: l.and_then(|l| l.warning),
                critical: l.and_then(|l| l.critical),
                origin: ThresholdOrigin::Learned,
                unlearned: l.is_none_or(|l| l.warning.is_none()),
            }
        } else {
            Levels {
                warning: t.warning,
                critical: t.critical,
                origin: ThresholdOrigin::Plan,
                unlearned: false,
            }
        }
    }

    /// The report of window `k` now, remembering what it raised.
    pub(crate) fn report(&mut self, k: i64, stage: Stage) -> PerformanceReport {
        let counts = self.counts();
        let levels: Vec<(PerfMetric, Levels)> =
            self.metrics.iter().map(|&m| (m, self.levels(m))).collect();
        let estimate_levels: Vec<(PerfMetric, Levels)> = if self.cbpe {
            super::cbpe::ESTIMATED
                .iter()
                .filter(|m| self.metrics.contains(m))
                .map(|&m| (m, self.levels(m)))
                .collect()
        } else {
            Vec::new()
        };
        let task = self.spec.task;
        let min_coverage = self.spec.min_coverage;
        let declared = &self.spec.declared;
        let segments = &self.segments;
        let metric_list = &self.metrics;
        let Some(w) = self.windows.get_mut(&k) else {
            unreachable!("reported windows are tracked");
        };
        let coverage = if w.predictions == 0 {
            0.0
        } else {
            w.acc.n as f64 / w.predictions as f64
        };
        let judged = coverage >= min_coverage;
        // Estimates are made once the window's predictions are all in (at close).
        if w.estimates.is_none() && w.closed && self.cbpe {
            w.estimates = Some(
                estimate_levels
                    .iter()
                    .map(|&(m, _)| (m, w.cbpe.estimate(m)))
                    .collect(),
            );
            w.cbpe.release();
        }
        let estimates: Vec<(PerfMetric, Option<f64>)> = match &w.estimates {
            Some(e) => e.clone(),
            None if self.cbpe => estimate_levels
                .iter()
                .map(|&(m, _)| (m, w.cbpe.estimate(m)))
                .collect(),
            None => Vec::new(),
        };
        let mut severity = Severity::Ok;
        let values = w.acc.metrics(metric_list, task);
        let metrics: Vec<MetricResult> = levels
            .iter()
            .zip(values)
            .map(|(&(m, l), value)| {
                let d = declared.get(&m).copied();
                let estimate = estimates.iter().find(|e| e.0 == m).and_then(|e| e.1);
                let (status, sev, below) = match value {
                    None => (MetricStatus::Insufficient, Severity::Ok, false),
                    Some(_) if l.unlearned => (MetricStatus::Insufficient, Severity::Ok, false),
                    Some(_) if !judged => (MetricStatus::AwaitingOutcomes, Severity::Ok, false),
                    Some(v) => {
                        let below = stage == Stage::Final && d.is_some_and(|d| worse(m, v, d));
                        let sev = if below {
                            Severity::Critical
                        } else {
                            l.judge(m, v)
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
                if raise {
                    w.raised.push((m, stage, sev));
                }
                MetricResult {
                    estimate,
                    estimate_gap: value.zip(estimate).map(|(v, e)| v - e),
                    raise,
                    ..l.result(m, value, d, (status, sev, below))
                }
            })
            .collect();
        // Estimates: judged against the same levels, and an estimate worse than the
        // declared level is a warning; never critical (realized numbers decide).
        let estimated: Vec<MetricResult> = estimate_levels
            .iter()
            .zip(&estimates)
            .map(|(&(m, l), &(_, value))| {
                let d = declared.get(&m).copied();
                let (status, sev, below) = match value {
                    None => (MetricStatus::Insufficient, Severity::Ok, false),
                    Some(_) if l.unlearned => (MetricStatus::Insufficient, Severity::Ok, false),
                    Some(v) => {
                        let below = d.is_some_and(|d| worse(m, v, d));
                        let sev = if below {
                            Severity::Warning
                        } else {
                            l.judge(m, v)
                        };
                        (MetricStatus::Evaluated, sev.min(Severity::Warning), below)
                    }
                };
                let raise = sev > Severity::Ok
                    && w.closed
                    && !w
                        .raised_estimate
                        .iter()
                        .any(|&(rm, rv)| rm == m && rv >= sev);
                if raise {
                    w.raised_estimate.push((m, sev));
                }
                MetricResult {
                    raise,
                    ..l.result(m, value, d, (status, sev, below))
                }
            })
            .collect();
        let (segments_out, gaps) =
            group_results(segments, &self.spec, metric_list, w, judged, stage);
        for g in &gaps {
            if g.raise {
                let ki = segments.keys.iter().position(|k| *k == g.key).unwrap_or(0) as u16;
                w.raised_gap.push((ki, g.metric, stage, g.severity));
            }
            severity = severity.max(g.severity);
        }
        w.reported_tenths = (coverage * 10.0).floor() as i32;
        w.dirty = false;
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
            plan_hash: self.plan_hash.clone(),
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
            estimated,
            segments: segments_out,
            gaps,
            calibrated: self.cbpe.then_some(self.calibration.is_some()),
            join: counts,
        }
    }
}

/// Each group's results and each key's best-to-worst gaps, in a window.
fn group_results(
    segments: &Segments,
    spec: &PerformanceSpec,
    metrics: &[PerfMetric],
    w: &PerfWindow,
    judged: bool,
    stage: Stage,
) -> (Vec<SegmentResult>, Vec<GapResult>) {
    let mut out = Vec::new();
    for (&(k, v), g) in &w.groups {
        let enough = g.acc.n >= spec.min_cell;
        let status = if !enough {
            MetricStatus::Insufficient
        } else if !judged {
            MetricStatus::AwaitingOutcomes
        } else {
            MetricStatus::Evaluated
        };
        out.push(SegmentResult {
            key: segments.keys[usize::from(k)].clone(),
            value: segments.value_name(k, v).to_owned(),
            status,
            predictions: enough.then_some(g.predictions),
            outcomes: enough.then_some(g.acc.n),
            metrics: if enough {
                metrics
                    .iter()
                    .zip(g.acc.metrics(metrics, spec.task))
                    .filter_map(|(&m, x)| x.map(|x| (m, x)))
                    .collect()
            } else {
                BTreeMap::new()
            },
        });
    }
    let mut gaps = Vec::new();
    for (ki, key) in segments.keys.iter().enumerate() {
        for (&m, t) in &spec.gap {
            let mut cells: Vec<(&str, f64)> = w
                .groups
                .iter()
                .filter(|((k, _), g)| usize::from(*k) == ki && g.acc.n >= spec.min_cell)
                .filter_map(|((k, v), g)| {
                    g.acc
                        .metric(m, spec.task)
                        .map(|x| (segments.value_name(*k, *v), x))
                })
                .collect();
            // Best first.
            cells.sort_by(|a, b| {
                let o = b.1.total_cmp(&a.1);
                if m.higher_is_better() {
                    o
                } else {
                    o.reverse()
                }
            });
            let (status, best, worst, gap, severity) = match (cells.first(), cells.last()) {
                (Some(b), Some(l)) if cells.len() >= 2 => {
                    let gap = (b.1 - l.1).abs();
                    let sev = if !judged {
                        Severity::Ok
                    } else if t.critical.is_some_and(|c| gap > c) {
                        Severity::Critical
                    } else if t.warning.is_some_and(|c| gap > c) {
                        Severity::Warning
                    } else {
                        Severity::Ok
                    };
                    let status = if judged {
                        MetricStatus::Evaluated
                    } else {
                        MetricStatus::AwaitingOutcomes
                    };
                    (
                        status,
                        Some((b.0.to_owned(), b.1)),
                        Some((l.0.to_owned(), l.1)),
                        Some(gap),
                        sev,
                    )
                }
                _ => (MetricStatus::Insufficient, None, None, None, Severity::Ok),
            };
            let raise = severity > Severity::Ok
                && !w.raised_gap.iter().any(|&(rk, rm, rs, rv)| {
                    usize::from(rk) == ki && rm == m && rs == stage && rv >= severity
                });
            gaps.push(GapResult {
                key: key.clone(),
                metric: m,
                status,
                best,
                worst,
                gap,
                warning: t.warning,
                critical: t.critical,
                severity,
                raise,
            });
        }
    }
    (out, gaps)
}

/// Whether `v` is worse than `level` for metric `m`.
fn worse(m: PerfMetric, v: f64, level: f64) -> bool {
    if m.higher_is_better() {
        v < level
    } else {
        v > level
    }
}

/// The levels of one metric.
#[derive(Debug, Clone, Copy)]
struct Levels {
    warning: Option<f64>,
    critical: Option<f64>,
    origin: ThresholdOrigin,
    /// Learned levels that could not be learned (a reference without outcomes, or
    /// fewer than two windows): the metric is insufficient, never an alert.
    unlearned: bool,
}

impl Levels {
    /// The result of metric `m` judged against these levels (no estimate beside it,
    /// nothing raised).
    fn result(
        &self,
        m: PerfMetric,
        value: Option<f64>,
        declared: Option<f64>,
        (status, severity, below_declared): (MetricStatus, Severity, bool),
    ) -> MetricResult {
        MetricResult {
            metric: m,
            status,
            value,
            warning: self.warning,
            critical: self.critical,
            thresholds: self.origin,
            declared,
            below_declared,
            estimate: None,
            estimate_gap: None,
            severity,
            raise: false,
        }
    }

    fn judge(&self, m: PerfMetric, v: f64) -> Severity {
        if self.critical.is_some_and(|c| worse(m, v, c)) {
            Severity::Critical
        } else if self.warning.is_some_and(|l| worse(m, v, l)) {
            Severity::Warning
        } else {
            Severity::Ok
        }
    }
}
