//! Alerts: one per check past the plan's `alerts.min_severity` ([`alerts_for`]),
//! delivered by [`delivery`] to the plan's webhook, to its Alertmanager (API v2) and to
//! the alerts topic, each by its own worker behind a bounded queue, and logged.
//!
//! An alert id is derived from what it is about (system, reference version, window,
//! signal, method), so a redelivery after a detector restart has the same id and a
//! receiver can deduplicate.

pub use driftwatch_schema::Alert;

pub mod delivery;
pub mod episode;
pub mod receivers;

use crate::engine::{CheckStatus, ThresholdOrigin, WindowReport};
use crate::plan::{Method, Severity};

/// A number for humans: fixed for ordinary magnitudes, scientific for tiny p-values.
pub fn short(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e4) {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

/// The alerts a window report raises at or above `min`: its checks, then the checks of
/// each group of people (signal `age[features.region=south]`).
pub fn alerts_for(report: &WindowReport, min: Severity) -> Vec<Alert> {
    drift_verdicts(report, min)
        .into_iter()
        .filter_map(|v| v.alert)
        .collect()
}

/// Every evaluated check of a window report, with its alert where it breaches `min`:
/// what the episodes ([`episode`]) count, clean windows included.
pub fn drift_verdicts(report: &WindowReport, min: Severity) -> Vec<Verdict> {
    let min = min.max(Severity::Warning);
    let whole = report.checks.iter().map(|c| (c, c.signal.clone()));
    let groups = report.segments.iter().flat_map(|g| {
        g.checks
            .iter()
            .map(move |c| (c, format!("{}[{}={}]", c.signal, g.key, g.value)))
    });
    whole
        .chain(groups)
        .filter(|(c, _)| c.status == CheckStatus::Evaluated && c.value.is_some())
        .map(|(c, signal)| {
            let fingerprint = format!("{}/drift/{signal}/{}", report.system_id, c.method);
            let alert = if c.severity >= min {
                check_alert(report, c, signal)
            } else {
                None
            };
            Verdict {
                fingerprint,
                window: report.window.clone(),
                value: c.value,
                alert,
            }
        })
        .collect()
}

/// One condition in one window: breaching (with the window's alert) or clean.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The condition: `system/kind/signal/method`.
    pub fingerprint: String,
    /// The window.
    pub window: driftwatch_schema::WindowInfo,
    /// The value compared with the levels.
    pub value: Option<f64>,
    /// The window's alert, if the condition breached.
    pub alert: Option<Alert>,
}

fn check_alert(
    report: &WindowReport,
    c: &crate::engine::CheckResult,
    signal: String,
) -> Option<Alert> {
    let value = c.value?;
    let threshold = match c.severity {
        Severity::Critical => c.critical?,
        _ => c.warning?,
    };
    // Learned levels on a test with a p-value compare its statistic.
    let on_statistic = c.thresholds == ThresholdOrigin::Learned && c.method.has_p_value();
    let cmp = if c.method.lower_is_worse() && !on_statistic {
        "<"
    } else {
        ">"
    };
    let spec = c.method.spec();
    let name = if on_statistic {
        spec.statistic_title
    } else {
        spec.title
    };
    let adjusted = if c.p_value_adjusted == Some(value) && c.p_value != Some(value) {
        " (BH-adjusted)"
    } else {
        ""
    };
    let what = format!(
        "{name}{adjusted} {} {cmp} {}",
        short(value),
        short(threshold)
    );
    let stat = match (c.method, c.statistic) {
        _ if on_statistic => String::new(),
        (Method::Ks, Some(d)) => format!(", D = {}", short(d)),
        (Method::Chi2, Some(s)) => format!(", chi2 = {}", short(s)),
        _ => String::new(),
    };
    Some(Alert {
        alert_id: format!(
            "{}/{}/{}/{}/{}",
            report.system_id, report.reference_version, report.window.index, signal, c.method
        ),
        system_id: report.system_id.clone(),
        kind: driftwatch_schema::AlertKind::Drift,
        severity: c.severity,
        method: c.method.as_str().to_owned(),
        statistic: c.statistic,
        p_value: c.p_value,
        value,
        threshold,
        samples: c.samples,
        window: report.window.clone(),
        reference_version: report.reference_version.clone(),
        plan_version: report.plan_version.clone(),
        plan_hash: report.plan_hash.clone(),
        summary: format!(
            "{} drift on {} of {}: {what}{stat} over {} values in window {}",
            c.severity.as_str(),
            signal,
            report.system_id,
            c.samples,
            report.window.index
        ),
        signal,
        lifecycle: None,
    })
}

/// The alerts a performance report raises at or above `min`: each realized metric that
/// reached a severity for the first time in its window and stage (provisional, final),
/// and each CBPE estimate that did so in its window.
pub fn performance_alerts(report: &crate::perf::PerformanceReport, min: Severity) -> Vec<Alert> {
    let realized = report.metrics.iter().map(|m| (m, false));
    let estimated = report.estimated.iter().map(|m| (m, true));
    let min = min.max(Severity::Warning);
    realized
        .chain(estimated)
        .filter(|(m, _)| m.raise && m.severity >= min)
        .filter_map(|(m, estimate)| performance_alert(report, m, estimate))
        .chain(
            report
                .gaps
                .iter()
                .filter(|g| g.raise && g.severity >= min)
                .filter_map(|g| gap_alert(report, g)),
        )
        .collect()
}

/// The performance conditions a report judges, with their alerts where they breach
/// `min`: realized metrics and group gaps of a *final* report (judged once every outcome
/// could have arrived), and the CBPE estimates of a window that closed. Provisional
/// reports are shown and recorded, but do not page.
pub fn performance_verdicts(
    report: &crate::perf::PerformanceReport,
    min: Severity,
) -> Vec<Verdict> {
    use crate::perf::{MetricStatus, Stage};
    use driftwatch_schema::AlertKind;
    let min = min.max(Severity::Warning);
    let mut out = Vec::new();
    let verdict = |kind: AlertKind, signal: &str, metric: &str, value, alert| Verdict {
        fingerprint: format!("{}/{}/{signal}/{metric}", report.system_id, kind.as_str()),
        window: report.window.clone(),
        value,
        alert,
    };
    if report.stage == Stage::Final {
        for m in &report.metrics {
            if m.status != MetricStatus::Evaluated || m.value.is_none() {
                continue;
            }
            let alert = (m.severity >= min)
                .then(|| performance_alert(report, m, false))
                .flatten();
            out.push(verdict(
                AlertKind::Performance,
                "performance",
                m.metric.as_str(),
                m.value,
                alert,
            ));
        }
        for g in &report.gaps {
            if g.status != MetricStatus::Evaluated || g.gap.is_none() {
                continue;
            }
            let alert = (g.severity >= min).then(|| gap_alert(report, g)).flatten();
            out.push(verdict(
                AlertKind::Performance,
                &format!("performance[{}]", g.key),
                g.metric.as_str(),
                g.gap,
                alert,
            ));
        }
    }
    for m in &report.estimated {
        if m.status != MetricStatus::Evaluated || m.value.is_none() {
            continue;
        }
        let alert = (m.severity >= min)
            .then(|| performance_alert(report, m, true))
            .flatten();
        out.push(verdict(
            AlertKind::PerformanceEstimate,
            "performance",
            m.metric.as_str(),
            m.value,
            alert,
        ));
    }
    out
}

fn gap_alert(report: &crate::perf::PerformanceReport, g: &crate::perf::GapResult) -> Option<Alert> {
    let gap = g.gap?;
    let (best, worst) = (g.best.as_ref()?, g.worst.as_ref()?);
    let threshold = match g.severity {
        Severity::Critical => g.critical?,
        _ => g.warning?,
    };
    let stage = match report.stage {
        crate::perf::Stage::Final => "final".to_owned(),
        crate::perf::Stage::Provisional => format!(
            "provisional: {:.0}% of its predictions have an outcome",
            report.coverage * 100.0
        ),
    };
    Some(Alert {
        alert_id: format!(
            "{}/{}/{}/performance/gap:{}:{}/{}/{}",
            report.system_id,
            report.reference_version,
            report.window.index,
            g.key,
            g.metric,
            report.stage.as_str(),
            g.severity.as_str()
        ),
        system_id: report.system_id.clone(),
        kind: driftwatch_schema::AlertKind::Performance,
        severity: g.severity,
        signal: format!("performance[{}]", g.key),
        method: g.metric.as_str().to_owned(),
        statistic: None,
        p_value: None,
        value: gap,
        threshold,
        samples: report.window.outcomes,
        window: report.window.clone(),
        reference_version: report.reference_version.clone(),
        plan_version: report.plan_version.clone(),
        plan_hash: report.plan_hash.clone(),
        summary: format!(
            "{} performance of {} in window {}: {} differs by {} > {} between groups of {} ({} {} best, {} {} worst) ({stage})",
            g.severity.as_str(),
            report.system_id,
            report.window.index,
            g.metric.title(),
            short(gap),
            short(threshold),
            g.key,
            best.0,
            short(best.1),
            worst.0,
            short(worst.1),
        ),
        lifecycle: None,
    })
}

fn performance_alert(
    report: &crate::perf::PerformanceReport,
    m: &crate::perf::MetricResult,
    estimate: bool,
) -> Option<Alert> {
    use crate::perf::Stage;
    use driftwatch_schema::AlertKind;
    let value = m.value?;
    let cmp = if m.metric.higher_is_better() {
        "<"
    } else {
        ">"
    };
    let name = if estimate {
        format!("estimated {}", m.metric.title())
    } else {
        m.metric.title().to_owned()
    };
    let (threshold, what) = if m.below_declared {
        let d = m.declared?;
        (
            d,
            format!(
                "{name} {} the {} declared in the instructions for use: {} {cmp} {}",
                if m.metric.higher_is_better() {
                    "below"
                } else {
                    "above"
                },
                m.metric.title(),
                short(value),
                short(d)
            ),
        )
    } else {
        let t = match m.severity {
            Severity::Critical => m.critical?,
            _ => m.warning?,
        };
        (t, format!("{name} {} {cmp} {}", short(value), short(t)))
    };
    let (kind, stage, basis) = if estimate {
        (
            AlertKind::PerformanceEstimate,
            "estimate",
            format!(
                "estimated by CBPE from {} predictions before their outcomes",
                report.window.events
            ),
        )
    } else {
        let stage = match report.stage {
            Stage::Final => "final".to_owned(),
            Stage::Provisional => format!(
                "provisional: {:.0}% of its predictions have an outcome",
                report.coverage * 100.0
            ),
        };
        (
            AlertKind::Performance,
            report.stage.as_str(),
            format!(
                "over {} outcomes of {} predictions ({stage})",
                report.window.outcomes, report.window.events
            ),
        )
    };
    Some(Alert {
        alert_id: format!(
            "{}/{}/{}/{}/{}/{}/{}",
            report.system_id,
            report.reference_version,
            report.window.index,
            kind.as_str(),
            m.metric,
            stage,
            m.severity.as_str()
        ),
        system_id: report.system_id.clone(),
        kind,
        severity: m.severity,
        signal: "performance".into(),
        method: m.metric.as_str().to_owned(),
        statistic: None,
        p_value: None,
        value,
        threshold,
        samples: if estimate {
            report.window.events
        } else {
            report.window.outcomes
        },
        window: report.window.clone(),
        reference_version: report.reference_version.clone(),
        plan_version: report.plan_version.clone(),
        plan_hash: report.plan_hash.clone(),
        summary: format!(
            "{} performance of {} in window {}: {what} {basis}",
            m.severity.as_str(),
            report.system_id,
            report.window.index,
        ),
        lifecycle: None,
    })
}

/// An alert for tests: window `n`, critical KS drift on `age` of system `s`.
#[cfg(test)]
pub(crate) fn sample_alert(n: i64) -> Alert {
    let at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    Alert {
        alert_id: format!("s/r/{n}/age/ks"),
        system_id: "s".into(),
        kind: driftwatch_schema::AlertKind::Drift,
        severity: Severity::Critical,
        signal: "age".into(),
        method: "ks".into(),
        statistic: Some(0.5),
        p_value: Some(0.0),
        value: 0.0,
        threshold: 0.01,
        samples: 100,
        window: driftwatch_schema::WindowInfo {
            index: n,
            start: None,
            end: None,
            events: 100,
            outcomes: 0,
            first_event_at: at,
            last_event_at: at,
            complete: true,
        },
        reference_version: "r".into(),
        plan_version: None,
        plan_hash: None,
        summary: "critical drift".into(),
        lifecycle: None,
    }
}
