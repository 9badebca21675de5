//! Evaluating closed windows: every check of the plan against the reference, on several
//! threads signal by signal, with Benjamini-Hochberg across the p-values.

use chrono::{DateTime, Utc};

use super::*;
use crate::method::{check_value, Prepared, ReadsSorted};
use crate::plan::{Check, Correction, FeatureType, Method, Plan, Severity, Signal};
use crate::stats;

/// Sort a closed window's numeric values in place (it is never appended to again) if a
/// check of the signal reads them sorted. KS does not, through the reference's index:
/// a KS-only signal skips the sort.
pub(crate) fn sort_window(signal: &Signal, reference: &SignalReference, acc: &mut SignalAcc) {
    let reads_sorted = |method: Method| match method.spec().reads_sorted {
        ReadsSorted::Yes => true,
        ReadsSorted::WithoutIndex => reference.ks_index().is_none(),
        ReadsSorted::No => false,
    };
    if signal.kind == FeatureType::Numeric && signal.checks.iter().any(|c| reads_sorted(c.method)) {
        stats::sort_floats(&mut acc.num);
    }
}

/// The severity of `value` against the levels, in the direction that means drift.
pub(crate) fn severity(
    lower_is_worse: bool,
    warning: Option<f64>,
    critical: Option<f64>,
    value: f64,
) -> Severity {
    let past = |level: Option<f64>| {
        level.is_some_and(|l| if lower_is_worse { value < l } else { value > l })
    };
    if past(critical) {
        Severity::Critical
    } else if past(warning) {
        Severity::Warning
    } else {
        Severity::Ok
    }
}

/// Evaluate every check of one signal in a closed window (sorting its values first).
pub(crate) fn evaluate_signal(
    signal: &Signal,
    reference: &ReferenceProfile,
    acc: &mut SignalAcc,
    min_samples: usize,
) -> Vec<CheckResult> {
    let empty;
    let r = match reference.signals.get(&signal.name) {
        Some(r) => r,
        None => {
            // A reference frozen under an older plan lacks this signal.
            empty = SignalReference::empty(signal.kind);
            &empty
        }
    };
    sort_window(signal, r, acc);
    let acc = &*acc;
    let mut prep = Prepared::default();
    signal
        .checks
        .iter()
        .map(|check| evaluate_check(signal, check, r, acc, &mut prep, min_samples, reference))
        .collect()
}

/// Benjamini-Hochberg across every evaluated p-value of a window's checks; always
/// reported, and applied to plan thresholds when the plan asks for it.
pub(crate) fn adjust(out: &mut [CheckResult], correction: Correction) {
    let idx: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].status == CheckStatus::Evaluated && out[i].p_value.is_some())
        .collect();
    let raw: Vec<f64> = idx
        .iter()
        .map(|&i| out[i].p_value.unwrap_or(f64::NAN))
        .collect();
    for (&i, adj) in idx.iter().zip(stats::benjamini_hochberg(&raw)) {
        let c = &mut out[i];
        c.p_value_adjusted = Some(adj);
        if correction == Correction::BenjaminiHochberg && c.thresholds == ThresholdOrigin::Plan {
            c.value = Some(adj);
            c.severity = severity(c.method.lower_is_worse(), c.warning, c.critical, adj);
        }
    }
}

/// From this many values in the windows evaluated together they are spread over threads
/// (unit tests take the threaded path on small windows).
pub(crate) const MIN_PARALLEL_SAMPLES: usize = if cfg!(test) { 1 } else { 200_000 };

/// Evaluate every check of closed windows: signal by signal, so each signal's reference
/// is read into the cache once for all the windows, with the signals spread over up to
/// `threads` threads. The checks of each window, in signal order, adjusted.
pub(crate) fn evaluate(
    signals: &[Signal],
    reference: &ReferenceProfile,
    windows: &mut [Window],
    min_samples: usize,
    correction: Correction,
    threads: usize,
) -> Vec<Vec<CheckResult>> {
    let samples: usize = windows.iter().map(|w| w.events).sum::<usize>() * signals.len();
    // Per signal, its values in every window.
    let mut by_signal: Vec<(usize, Vec<&mut SignalAcc>)> =
        (0..signals.len()).map(|s| (s, Vec::new())).collect();
    for w in windows.iter_mut() {
        for (s, acc) in w.signals.iter_mut().enumerate() {
            by_signal[s].1.push(acc);
        }
    }
    let run = |part: Vec<(usize, Vec<&mut SignalAcc>)>| -> Vec<(usize, Vec<Vec<CheckResult>>)> {
        part.into_iter()
            .map(|(s, accs)| {
                let results = accs
                    .into_iter()
                    .map(|acc| evaluate_signal(&signals[s], reference, acc, min_samples))
                    .collect();
                (s, results)
            })
            .collect()
    };
    // Numeric signals cost far more than categorical ones: deal them out in turn so each
    // thread gets its share of both. Small work is not worth a thread.
    let threads = if samples >= MIN_PARALLEL_SAMPLES {
        threads.max(1)
    } else {
        1
    };
    let mut parts: Vec<Vec<(usize, Vec<&mut SignalAcc>)>> =
        (0..threads).map(|_| Vec::new()).collect();
    by_signal.sort_by_key(|(s, _)| signals[*s].kind != FeatureType::Numeric);
    for (n, entry) in by_signal.into_iter().enumerate() {
        parts[n % threads].push(entry);
    }
    let mut done: Vec<(usize, Vec<Vec<CheckResult>>)> = if threads == 1 {
        parts.into_iter().flat_map(run).collect()
    } else {
        std::thread::scope(|scope| {
            let mut parts = parts.into_iter();
            let here = parts.next().unwrap_or_default();
            let spawned: Vec<_> = parts
                .map(|part| {
                    let run = &run;
                    scope.spawn(move || run(part))
                })
                .collect();
            let mut done = run(here);
            for h in spawned {
                done.extend(
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                );
            }
            done
        })
    };
    done.sort_by_key(|(s, _)| *s);
    let mut out: Vec<Vec<CheckResult>> = (0..windows.len()).map(|_| Vec::new()).collect();
    for (_, results) in done {
        for (w, checks) in results.into_iter().enumerate() {
            out[w].extend(checks);
        }
    }
    for checks in &mut out {
        adjust(checks, correction);
    }
    out
}

pub(crate) fn evaluate_check(
    signal: &Signal,
    check: &Check,
    r: &SignalReference,
    acc: &SignalAcc,
    prep: &mut Prepared,
    min_samples: usize,
    reference: &ReferenceProfile,
) -> CheckResult {
    let (warning, critical, origin) = if check.thresholds.learned {
        let l = reference
            .learned
            .get(&learned_key(&signal.name, check.method));
        (
            l.and_then(|l| l.warning),
            l.and_then(|l| l.critical),
            ThresholdOrigin::Learned,
        )
    } else {
        (
            check.thresholds.warning,
            check.thresholds.critical,
            ThresholdOrigin::Plan,
        )
    };
    let mut result = CheckResult {
        signal: signal.name.clone(),
        method: check.method,
        status: CheckStatus::Insufficient,
        statistic: None,
        p_value: None,
        p_value_adjusted: None,
        value: None,
        warning,
        critical,
        thresholds: origin,
        severity: Severity::Ok,
        samples: acc.samples(),
        missing: acc.missing,
        type_errors: acc.type_errors,
    };
    let learnable = !check.thresholds.learned || warning.is_some() || critical.is_some();
    if let Some(v) = check_value(check.method, r, acc, prep, min_samples) {
        let (value, lower_is_worse) = if check.thresholds.learned {
            (learned_value(check.method, &v), false)
        } else {
            (v.value, check.method.lower_is_worse())
        };
        result.statistic = Some(v.statistic);
        result.p_value = v.p_value;
        result.value = Some(value);
        if learnable {
            result.status = CheckStatus::Evaluated;
            result.severity = severity(lower_is_worse, warning, critical, value);
        }
    }
    result
}

/// A window that has closed, not yet evaluated (held by the monitor, see
/// [`Monitor::set_evaluation`]).
pub struct Closed {
    pub(crate) k: i64,
    pub(crate) window: Window,
    pub(crate) complete: bool,
}

/// Evaluate closed windows (in order) into their reports, on up to `threads` threads.
pub(crate) fn reports(
    plan: &Plan,
    signals: &[Signal],
    reference: &ReferenceProfile,
    windows: &Windows,
    closed: Vec<Closed>,
    (threads, groups): (usize, Option<&crate::perf::segments::Segments>),
) -> Vec<WindowReport> {
    if closed.is_empty() {
        return Vec::new();
    }
    let (keys, mut ws): (Vec<(i64, bool)>, Vec<Window>) = closed
        .into_iter()
        .map(|c| ((c.k, c.complete), c.window))
        .unzip();
    let checks = evaluate(
        signals,
        reference,
        &mut ws,
        plan.window.min_samples(),
        plan.multiple_testing.method,
        threads,
    );
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    keys.into_iter()
        .zip(ws)
        .zip(checks)
        .map(|(((k, complete), mut w), checks)| {
            let segments = match groups {
                Some(g) => segment_drift(plan, signals, reference, g, std::mem::take(&mut w.cells)),
                None => Vec::new(),
            };
            let severity = checks
                .iter()
                .map(|c| c.severity)
                .chain(segments.iter().map(|s| s.severity))
                .max()
                .unwrap_or(Severity::Ok);
            let (start, end) = windows.bounds(k);
            WindowReport {
                system_id: plan.system.id.clone(),
                plan_version: plan.system.plan_version.clone(),
                plan_hash: Some(plan.hash.clone()).filter(|h| !h.is_empty()),
                reference_version: reference.version.clone(),
                window: WindowInfo {
                    index: k,
                    start,
                    end,
                    events: w.events,
                    outcomes: w.outcomes,
                    first_event_at: w.first.unwrap_or(epoch),
                    last_event_at: w.last.unwrap_or(epoch),
                    complete,
                },
                severity,
                checks,
                segments,
            }
        })
        .collect()
}

/// The drift checks of each group's share of a window against the group's own
/// reference; a group the reference never saw has nothing to compare with.
fn segment_drift(
    plan: &Plan,
    signals: &[Signal],
    reference: &ReferenceProfile,
    groups: &crate::perf::segments::Segments,
    cells: std::collections::BTreeMap<u16, Window>,
) -> Vec<SegmentDrift> {
    cells
        .into_iter()
        .map(|(g, cell)| {
            let (key, value) = groups.group_name(g);
            match reference.segments.get(&group_key(&key, &value)) {
                Some(r) => {
                    let mut one = [cell];
                    let checks = evaluate(
                        signals,
                        r,
                        &mut one,
                        plan.window.min_samples(),
                        plan.multiple_testing.method,
                        1,
                    )
                    .pop()
                    .unwrap_or_default();
                    SegmentDrift {
                        key,
                        value,
                        severity: checks
                            .iter()
                            .map(|c| c.severity)
                            .max()
                            .unwrap_or(Severity::Ok),
                        no_reference: false,
                        checks,
                    }
                }
                None => SegmentDrift {
                    key,
                    value,
                    severity: Severity::Ok,
                    no_reference: true,
                    checks: Vec::new(),
                },
            }
        })
        .collect()
}
