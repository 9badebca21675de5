use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::synth::{demo_plan_toml, CreditModel, Drift};

fn plan(first: usize, window: usize) -> Arc<Plan> {
    Arc::new(
        Plan::from_toml(
            &demo_plan_toml("credit", first, window),
            "demo",
            PathBuf::new(),
        )
        .expect("demo plan is valid"),
    )
}

fn run(
    model: &mut CreditModel,
    monitor: &mut Monitor,
    n: usize,
    drift: Drift,
) -> Vec<WindowReport> {
    (0..n)
        .filter_map(|_| {
            monitor
                .observe(&Event::Prediction(model.next_prediction(drift)))
                .report
        })
        .collect()
}

fn check<'a>(r: &'a WindowReport, signal: &str, method: Method) -> &'a CheckResult {
    r.checks
        .iter()
        .find(|c| c.signal == signal && c.method == method)
        .expect("check present")
}

#[test]
fn reference_from_first_events_then_tumbling_windows() {
    let mut model = CreditModel::new("credit", 1);
    let mut m = Monitor::new(plan(1000, 500), None);
    assert!(!m.has_pending());
    let mut frozen = None;
    for i in 0..1000 {
        let step = m.observe(&Event::Prediction(model.next_prediction(Drift::NONE)));
        assert!(step.report.is_none());
        if i < 999 {
            assert!(step.reference_frozen.is_none());
            assert!(m.has_pending(), "collected reference events are pending");
        } else {
            frozen = step.reference_frozen;
        }
    }
    let frozen = frozen.expect("reference frozen at event 1000");
    assert_eq!(frozen.events, 1000);
    assert!(frozen.version.starts_with("fnv1a64:"));
    assert!(!m.has_pending(), "a frozen reference is not pending");
    let reports = run(&mut model, &mut m, 1499, Drift::NONE);
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[1].window.index, 1);
    assert_eq!(reports[1].window.events, 500);
    assert_eq!(reports[1].reference_version, frozen.version);
    assert!(m.has_pending(), "499 events in the open window");
    let last = m.finish().expect("partial window");
    assert!(!last.window.complete);
    assert_eq!(last.window.events, 499);
}

/// Under no drift the KS p-value is (close to) uniform: about 5% of windows fall below
/// 0.05. A miscalibrated p-value would alert far more or far less often.
#[test]
fn no_drift_alerts_at_the_nominal_rate() {
    let mut model = CreditModel::new("credit", 7);
    let mut m = Monitor::new(plan(5000, 200), None);
    let reports = run(&mut model, &mut m, 5000 + 200 * 300, Drift::NONE);
    assert_eq!(reports.len(), 300);
    let below = reports
        .iter()
        .filter(|r| check(r, "debt_ratio", Method::Ks).p_value.expect("p") < 0.05)
        .count();
    assert!(
        (5..=30).contains(&below),
        "{below} of 300 windows below p=0.05"
    );
    let chi_below = reports
        .iter()
        .filter(|r| check(r, "region", Method::Chi2).p_value.expect("p") < 0.05)
        .count();
    assert!(
        (5..=30).contains(&chi_below),
        "{chi_below} of 300 chi2 below 0.05"
    );
}

#[test]
fn drift_is_critical_on_the_drifted_features_only() {
    let mut model = CreditModel::new("credit", 3);
    let mut m = Monitor::new(plan(4000, 1000), None);
    run(&mut model, &mut m, 4000, Drift::NONE);
    let reports = run(&mut model, &mut m, 1000, Drift::DEMO);
    let r = &reports[0];
    assert_eq!(r.severity, Severity::Critical);
    for (signal, method) in [
        ("age", Method::Ks),
        ("age", Method::Psi),
        ("region", Method::Chi2),
    ] {
        let c = check(r, signal, method);
        assert_eq!(c.severity, Severity::Critical, "{signal}/{method}: {c:?}");
        assert_eq!(c.status, CheckStatus::Evaluated);
    }
    // Moving 18% of applicants between regions is a PSI of about 0.24: a warning.
    assert!(check(r, "region", Method::Psi).severity >= Severity::Warning);
    // Income and debt ratio did not move: no critical verdict there.
    for signal in ["income", "debt_ratio"] {
        let c = check(r, signal, Method::Ks);
        assert_ne!(c.severity, Severity::Critical, "{signal}: {c:?}");
    }
}

#[test]
fn too_few_values_is_insufficient_not_an_alert() {
    let mut model = CreditModel::new("credit", 5);
    let mut m = Monitor::new(plan(500, 100), None);
    run(&mut model, &mut m, 500, Drift::NONE);
    let mut report = None;
    for i in 0..100 {
        let mut p = model.next_prediction(Drift::DEMO);
        // Age missing in 80 of 100: 20 usable values < min_samples (30).
        if i % 5 != 0 {
            p.features.insert("age".into(), FeatureValue::Null);
        }
        p.features
            .insert("income".into(), FeatureValue::Text("n/a".into()));
        if let Some(r) = m.observe(&Event::Prediction(p)).report {
            report = Some(r);
        }
    }
    let r = report.expect("window closed");
    let age = check(&r, "age", Method::Ks);
    assert_eq!(age.status, CheckStatus::Insufficient);
    assert_eq!(age.severity, Severity::Ok);
    assert_eq!((age.samples, age.missing), (20, 80));
    let income = check(&r, "income", Method::Ks);
    assert_eq!(income.type_errors, 100);
    assert_eq!(income.status, CheckStatus::Insufficient);
}

#[test]
fn an_unseen_category_is_drift() {
    let mut model = CreditModel::new("credit", 9);
    let mut m = Monitor::new(plan(2000, 500), None);
    run(&mut model, &mut m, 2000, Drift::NONE);
    let mut report = None;
    for i in 0..500 {
        let mut p = model.next_prediction(Drift::NONE);
        if i % 4 == 0 {
            p.features
                .insert("region".into(), FeatureValue::Text("overseas".into()));
        }
        if let Some(r) = m.observe(&Event::Prediction(p)).report {
            report = Some(r);
        }
    }
    let r = report.expect("window closed");
    assert_eq!(
        check(&r, "region", Method::Chi2).severity,
        Severity::Critical
    );
    assert_eq!(
        check(&r, "region", Method::Psi).severity,
        Severity::Critical
    );
}

#[test]
fn same_input_same_reports() {
    let go = || {
        let mut model = CreditModel::new("credit", 11);
        let mut m = Monitor::new(plan(1000, 250), None);
        let mut reports = run(&mut model, &mut m, 2000, Drift::NONE);
        reports.extend(run(&mut model, &mut m, 1000, Drift::DEMO));
        serde_json::to_string(&reports).expect("serialises")
    };
    assert_eq!(go(), go());
}

#[test]
fn detector_routes_by_system_and_refuses_unplanned() {
    let mut d = Detector::new([Monitor::new(plan(10, 10), None)]);
    let mut model = CreditModel::new("credit", 1);
    assert!(d
        .observe(&Event::Prediction(model.next_prediction(Drift::NONE)))
        .is_ok());
    let mut other = CreditModel::new("other", 1);
    let e = d
        .observe(&Event::Prediction(other.next_prediction(Drift::NONE)))
        .expect_err("no plan for other");
    assert_eq!(e.to_string(), "no monitoring plan for system \"other\"");
}
