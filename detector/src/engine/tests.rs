use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::input::batch::{Column, ColumnBatch, MISSING};
use crate::plan::{Method, Plan, Severity, Signal};
use crate::synth::{demo_plan_toml, CreditModel, Drift};
use chrono::{DateTime, Utc};
use driftwatch_schema::{Event, FeatureValue};

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
        .flat_map(|_| {
            monitor
                .observe(Input::Event(&Event::Prediction(
                    model.next_prediction(drift),
                )))
                .reports
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
        let step = m.observe(Input::Event(&Event::Prediction(
            model.next_prediction(Drift::NONE),
        )));
        assert!(step.reports.is_empty());
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
    let last = m.finish().pop().expect("partial window");
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
        if let Some(r) = m.observe(Input::Event(&Event::Prediction(p))).reports.pop() {
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
        if let Some(r) = m.observe(Input::Event(&Event::Prediction(p))).reports.pop() {
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

fn plan_text(text: &str) -> Arc<Plan> {
    Arc::new(Plan::from_toml(text, "test", PathBuf::new()).expect("valid plan"))
}

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::minutes(minutes)
}

fn pred_at(model: &mut CreditModel, ts: DateTime<Utc>, drift: Drift) -> Event {
    let mut p = model.next_prediction(drift);
    p.timestamp = ts;
    Event::Prediction(p)
}

const TIME_PLAN: &str = r#"
[system]
id = "credit"
[reference]
first_events = 600
[window]
kind = "time"
duration_s = 3600
allowed_lateness_s = 600
min_samples = 10
[features.age]
type = "numeric"
checks = ["ks"]
"#;

#[test]
fn time_windows_follow_event_time_and_count_late_events() {
    let mut model = CreditModel::new("credit", 21);
    let mut m = Monitor::new(plan_text(TIME_PLAN), None);
    for i in 0..600 {
        m.observe(Input::Event(&pred_at(&mut model, at(i), Drift::NONE)));
    }
    // One prediction a minute from 10:00; hour windows; 10 minutes of lateness allowed.
    let mut reports = Vec::new();
    for i in 0..60 {
        reports.extend(
            m.observe(Input::Event(&pred_at(&mut model, at(600 + i), Drift::NONE)))
                .reports,
        );
    }
    assert!(reports.is_empty(), "window 10:00-11:00 still open");
    // 11:05: within the lateness, the 10:00 window stays open and takes a late 10:59 event.
    assert!(m
        .observe(Input::Event(&pred_at(&mut model, at(665), Drift::NONE)))
        .reports
        .is_empty());
    let step = m.observe(Input::Event(&pred_at(&mut model, at(659), Drift::NONE)));
    assert_eq!(step.late, 0);
    // 11:10 passes 11:00 + 10 min: the 10:00 window closes with its 61 predictions.
    let step = m.observe(Input::Event(&pred_at(&mut model, at(670), Drift::NONE)));
    assert_eq!(step.reports.len(), 1);
    let w = &step.reports[0].window;
    assert_eq!(w.index, 10);
    assert_eq!(w.events, 61);
    assert_eq!(w.start, Some(at(600)));
    assert_eq!(w.end, Some(at(660)));
    // A 10:30 prediction now is late: counted, not evaluated.
    assert_eq!(
        m.observe(Input::Event(&pred_at(&mut model, at(630), Drift::NONE)))
            .late,
        1
    );
    // Out-of-order arrival inside the open window is fine.
    assert_eq!(
        m.observe(Input::Event(&pred_at(&mut model, at(662), Drift::NONE)))
            .late,
        0
    );
    // A jump of several hours closes the 11:00 window; empty hours produce no report.
    let step = m.observe(Input::Event(&pred_at(&mut model, at(1000), Drift::NONE)));
    assert_eq!(step.reports.len(), 1);
    assert_eq!(step.reports[0].window.index, 11);
    assert_eq!(step.reports[0].window.events, 3);
}

#[test]
fn sliding_count_windows_overlap() {
    let text = TIME_PLAN.replace(
        "kind = \"time\"\nduration_s = 3600\nallowed_lateness_s = 600",
        "size = 100\nslide = 25",
    );
    let mut model = CreditModel::new("credit", 22);
    let mut m = Monitor::new(plan_text(&text), None);
    let mut reports = Vec::new();
    for _ in 0..600 + 200 {
        reports.extend(
            m.observe(Input::Event(&Event::Prediction(
                model.next_prediction(Drift::NONE),
            )))
            .reports,
        );
    }
    // Windows [0,100), [25,125), ... close at 100, 125, ..., 200: five of them.
    let idx: Vec<i64> = reports.iter().map(|r| r.window.index).collect();
    assert_eq!(idx, vec![0, 1, 2, 3, 4]);
    assert!(reports.iter().all(|r| r.window.events == 100));
    // The open windows (k = 5, 6, 7) hold events: the driver must not commit past them.
    assert!(m.has_pending());
    let rest = m.finish();
    assert_eq!(
        rest.iter().map(|r| r.window.events).collect::<Vec<_>>(),
        vec![75, 50, 25]
    );
    assert!(rest.iter().all(|r| !r.window.complete));
}

#[test]
fn reference_from_a_marked_period() {
    let text = TIME_PLAN.replace(
        "first_events = 600",
        "from = 1970-01-01T01:00:00Z\nto = 1970-01-01T05:00:00Z",
    );
    let mut model = CreditModel::new("credit", 23);
    let mut m = Monitor::new(plan_text(&text), None);
    for i in 0..60 {
        // Before the period: ignored.
        assert!(m
            .observe(Input::Event(&pred_at(&mut model, at(i), Drift::DEMO)))
            .reference_frozen
            .is_none());
    }
    for i in 60..300 {
        m.observe(Input::Event(&pred_at(&mut model, at(i), Drift::NONE)));
    }
    assert!(m.reference().is_none());
    let step = m.observe(Input::Event(&pred_at(&mut model, at(300), Drift::NONE)));
    let r = step
        .reference_frozen
        .expect("frozen at the first event past `to`");
    assert_eq!(r.events, 240);
    assert!(
        r.source.starts_with("events from 1970-01-01T01:00:00"),
        "{}",
        r.source
    );
    assert!(m.reference().is_some());
}

#[test]
fn learned_thresholds_come_from_reference_windows() {
    let text = r#"
[system]
id = "credit"
[reference]
first_events = 10000
[window]
size = 500
[features.income]
type = "numeric"
checks = ["psi", "wasserstein"]
thresholds.psi = { learned = true }
"#;
    let mut model = CreditModel::new("credit", 24);
    let mut m = Monitor::new(plan_text(text), None);
    let mut frozen = None;
    for _ in 0..10_000 {
        if let Some(r) = m
            .observe(Input::Event(&Event::Prediction(
                model.next_prediction(Drift::NONE),
            )))
            .reference_frozen
        {
            frozen = Some(r);
        }
    }
    let r = frozen.expect("frozen");
    let l = &r.learned["income/psi"];
    assert_eq!(l.windows, 20);
    let (w, c) = (l.warning.expect("warning"), l.critical.expect("critical"));
    assert!(
        (w - (l.mean + 2.0 * l.std)).abs() < 1e-12 && (c - (l.mean + 3.0 * l.std)).abs() < 1e-12
    );
    // PSI of a 500-sample window against its own population is small but not zero.
    assert!(l.mean > 0.0 && l.mean < 0.1, "{l:?}");
    assert!(
        !r.learned.contains_key("income/wasserstein"),
        "only learned checks are learned"
    );
    let reports = run(&mut model, &mut m, 500, Drift::NONE);
    let psi = check(&reports[0], "income", Method::Psi);
    assert_eq!(psi.thresholds, ThresholdOrigin::Learned);
    assert_eq!((psi.warning, psi.critical), (Some(w), Some(c)));
    assert_eq!(
        check(&reports[0], "income", Method::Wasserstein).thresholds,
        ThresholdOrigin::Plan
    );
}

#[test]
fn learned_thresholds_without_enough_reference_windows_are_insufficient() {
    let text = r#"
[system]
id = "credit"
[reference]
first_events = 700
[window]
size = 500
[features.income]
type = "numeric"
checks = ["psi"]
thresholds.psi = { learned = true }
"#;
    let mut model = CreditModel::new("credit", 25);
    let mut m = Monitor::new(plan_text(text), None);
    let reports = run(&mut model, &mut m, 700 + 500, Drift::DEMO);
    let psi = check(&reports[0], "income", Method::Psi);
    assert_eq!(psi.status, CheckStatus::Insufficient);
    assert!(psi.value.is_some(), "the value is still reported");
    assert_eq!(psi.severity, Severity::Ok);
}

#[test]
fn benjamini_hochberg_adjusts_across_the_window() {
    let text = demo_plan_toml("credit", 2000, 500);
    let bh = format!("{text}\n[multiple_testing]\nmethod = \"benjamini-hochberg\"\n");
    let go = |t: &str| {
        let mut model = CreditModel::new("credit", 26);
        let mut m = Monitor::new(plan_text(t), None);
        run(&mut model, &mut m, 2000 + 500 * 40, Drift::NONE)
    };
    let (raw, adjusted) = (go(&text), go(&bh));
    for (r, a) in raw.iter().zip(&adjusted) {
        for (cr, ca) in r.checks.iter().zip(&a.checks) {
            // Both runs report raw and adjusted p-values; only the compared value differs.
            assert_eq!(cr.p_value, ca.p_value);
            assert_eq!(cr.p_value_adjusted, ca.p_value_adjusted);
            if cr.method.has_p_value() && cr.status == CheckStatus::Evaluated {
                assert_eq!(cr.value, cr.p_value);
                assert_eq!(ca.value, ca.p_value_adjusted);
                assert!(
                    ca.p_value_adjusted >= ca.p_value,
                    "{} {}: adjusted {:?} < raw {:?}",
                    ca.signal,
                    ca.method,
                    ca.p_value_adjusted,
                    ca.p_value
                );
            }
        }
    }
    let warnings = |rs: &[WindowReport]| {
        rs.iter()
            .flat_map(|r| &r.checks)
            .filter(|c| c.method.has_p_value() && c.severity >= Severity::Warning)
            .count()
    };
    assert!(
        warnings(&adjusted) < warnings(&raw),
        "{} vs {}",
        warnings(&adjusted),
        warnings(&raw)
    );
}

#[test]
fn data_quality_checks() {
    let mut model = CreditModel::new("credit", 27);
    let mut m = Monitor::new(plan(2000, 200), None);
    run(&mut model, &mut m, 2000, Drift::NONE);
    let mut report = None;
    for i in 0..200 {
        let mut p = model.next_prediction(Drift::NONE);
        if i % 4 == 0 {
            p.features.insert("income".into(), FeatureValue::Null);
        }
        if i % 10 == 0 {
            p.features
                .insert("debt_ratio".into(), FeatureValue::Number(9.0));
        }
        if i == 7 {
            p.features
                .insert("age".into(), FeatureValue::Text("forty".into()));
        }
        if i % 20 == 0 {
            p.features
                .insert("region".into(), FeatureValue::Text("mars".into()));
        }
        report = m
            .observe(Input::Event(&Event::Prediction(p)))
            .reports
            .pop()
            .or(report);
    }
    let r = report.expect("window");
    let missing = check(&r, "income", Method::Missing);
    assert_eq!(
        (missing.value, missing.severity),
        (Some(0.25), Severity::Critical)
    );
    let oor = check(&r, "debt_ratio", Method::OutOfRange);
    assert_eq!((oor.value, oor.severity), (Some(0.1), Severity::Warning));
    let te = check(&r, "age", Method::TypeErrors);
    assert_eq!((te.value, te.severity), (Some(0.005), Severity::Warning));
    let unseen = check(&r, "region", Method::Unseen);
    assert_eq!(
        (unseen.value, unseen.severity),
        (Some(0.05), Severity::Warning)
    );
    assert_eq!(
        check(&r, "employed", Method::Missing).severity,
        Severity::Ok
    );
}

/// A test row: numbers, categories (`None`: missing), and whether an outcome came.
type MixedRow = (Vec<Option<f64>>, Vec<Option<String>>, bool);

/// Rows for the column path tests: numbers with gaps, a few categories with gaps, an
/// outcome on some rows.
fn mixed_rows(n: usize, seed: u64) -> Vec<MixedRow> {
    let mut rng = crate::synth::Rng::new(seed);
    (0..n)
        .map(|i| {
            let shift = if i > n / 2 { 0.8 } else { 0.0 };
            let nums = (0..10)
                .map(|k| {
                    (!rng.next_u64().is_multiple_of(17))
                        .then(|| (rng.normal() + shift + f64::from(k)).round() / 4.0)
                })
                .collect();
            let cats = (0..5)
                .map(|k| {
                    (!rng.next_u64().is_multiple_of(13))
                        .then(|| format!("v{}", rng.next_u64() % (2 + k as u64 * 3)))
                })
                .collect();
            (nums, cats, rng.next_u64().is_multiple_of(3))
        })
        .collect()
}

fn batch_of(signals: &[Signal], rows: &[MixedRow]) -> ColumnBatch {
    let mut b = ColumnBatch::new(signals);
    for (nums, cats, outcome) in rows {
        let (mut n, mut c) = (nums.iter(), cats.iter());
        for column in &mut b.columns {
            match column {
                Column::Num(v) => v.push(n.next().copied().flatten().unwrap_or(f64::NAN)),
                Column::Cat { ids, dict } => ids.push(
                    c.next()
                        .and_then(|x| x.as_deref())
                        .map_or(MISSING, |x| dict.intern(x)),
                ),
            }
        }
        b.outcomes.push(if *outcome {
            b.outcome_names.intern("repaid")
        } else {
            MISSING
        });
        b.push_row();
    }
    b
}

#[test]
fn columns_give_the_reports_of_rows() {
    use crate::synth::wide_plan_toml;
    let rows = mixed_rows(2_300, 41);
    for (window, threads) in [
        ("size = 200", 1),
        ("size = 200", 3),
        ("size = 150\nslide = 40", 2),
    ] {
        let text = wide_plan_toml("first_events = 300", 200).replace("size = 200", window);
        let plan = plan_text(&text);
        let signals = plan.signals();
        // Row by row, each with its outcome.
        let mut by_row = Monitor::new(plan.clone(), None);
        let mut want = Vec::new();
        for (nums, cats, outcome) in &rows {
            let b = batch_of(&signals, &[(nums.clone(), cats.clone(), *outcome)]);
            let mut row = Vec::new();
            b.row(0, &mut row);
            let outcome = outcome.then_some("repaid");
            want.extend(
                by_row
                    .observe(Input::Row {
                        timestamp: b.timestamp(0),
                        values: &row,
                        outcome,
                        id: crate::input::batch::NO_ID,
                    })
                    .reports,
            );
        }
        want.extend(by_row.finish());
        // In uneven batches (rows until the reference is frozen, then columns inside the
        // engine), closed windows evaluated three at a time on several threads.
        let mut by_column = Monitor::new(plan.clone(), None);
        by_column.set_evaluation(3, threads);
        let mut got = Vec::new();
        let mut at = 0;
        for size in [1, 7, 290, 3, 500, 999, 2_000].iter().cycle() {
            if at == rows.len() {
                break;
            }
            let end = (at + size).min(rows.len());
            let b = batch_of(&signals, &rows[at..end]);
            got.extend(
                by_column
                    .observe(Input::Batch { batch: &b, from: 0 })
                    .reports,
            );
            at = end;
        }
        got.extend(by_column.finish());
        assert!(want.len() > 8, "{window}: {} reports", want.len());
        assert!(want.iter().any(|r| r.window.outcomes > 0));
        assert!(
            want.iter().any(|r| r.severity == Severity::Critical),
            "{window}"
        );
        assert_eq!(got, want, "{window}, {threads} threads");
    }
}

/// A skewed timestamp (year 9999, year 0) leaves the row out of every window, on the
/// row path and on the column path alike, and is counted.
#[test]
fn skewed_rows_are_left_out_on_rows_and_columns() {
    use crate::synth::wide_plan_toml;
    let rows = mixed_rows(1_200, 43);
    let plan = plan_text(&wide_plan_toml("first_events = 300", 200));
    let signals = plan.signals();
    let base = at(0);
    let stamped = |rows: &[MixedRow], skew_every: Option<usize>| {
        let mut b = batch_of(&signals, rows);
        b.timestamps = (0..rows.len())
            .map(|i| match skew_every {
                Some(k) if i % k == k - 1 && (i / k) % 2 == 0 => {
                    DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
                        .expect("ts")
                        .with_timezone(&Utc)
                }
                Some(k) if i % k == k - 1 => DateTime::<Utc>::MIN_UTC,
                _ => base + chrono::Duration::seconds(i as i64),
            })
            .collect();
        b
    };
    let clean = {
        let mut m = Monitor::new(plan.clone(), None);
        let b = stamped(&rows, None);
        let mut out = m.observe(Input::Batch { batch: &b, from: 0 }).reports;
        out.extend(m.finish());
        out
    };
    // Every 97th row of a copy is skewed; the clean rows are the same as above.
    let mut with_skew = Vec::new();
    let mut clean_i = 0;
    for i in 0.. {
        if clean_i == rows.len() {
            break;
        }
        if i % 97 == 96 {
            with_skew.push(rows[0].clone());
        } else {
            with_skew.push(rows[clean_i].clone());
            clean_i += 1;
        }
    }
    let b = stamped(&with_skew, Some(97));
    // Clean rows keep the clean timestamps: restamp them in order.
    let mut b = b;
    let mut n = 0;
    for i in 0..b.timestamps.len() {
        if i % 97 != 96 {
            b.timestamps[i] = base + chrono::Duration::seconds(n);
            n += 1;
        }
    }
    let skewed = with_skew.len() - rows.len();
    assert!(skewed >= 10);
    let mut m = Monitor::new(plan.clone(), None);
    let step = m.observe(Input::Batch { batch: &b, from: 0 });
    let mut got = step.reports;
    got.extend(m.finish());
    assert_eq!(step.skewed_future + step.skewed_past, skewed);
    assert!(step.skewed_future > 0 && step.skewed_past > 0);
    assert_eq!(got, clean, "columns");
    // Row by row.
    let mut m = Monitor::new(plan, None);
    let mut got = Vec::new();
    let mut counted = 0;
    let mut row = Vec::new();
    for i in 0..b.len() {
        b.row(i, &mut row);
        let step = m.observe(Input::Row {
            timestamp: b.timestamp(i),
            values: &row,
            outcome: b.has_outcome(i).then_some("repaid"),
            id: crate::input::batch::NO_ID,
        });
        counted += step.skewed_future + step.skewed_past;
        got.extend(step.reports);
    }
    got.extend(m.finish());
    assert_eq!(counted, skewed);
    assert_eq!(got, clean, "rows");
}

/// A monitor restored from a snapshot taken anywhere gives the reports of one that never
/// stopped, bit for bit: count, sliding and time windows, with more categories than the
/// short list holds.
#[test]
fn a_restored_monitor_continues_bit_for_bit() {
    let plans = [
        TIME_PLAN.replace(
            "kind = \"time\"\nduration_s = 3600\nallowed_lateness_s = 600",
            "size = 100",
        ),
        TIME_PLAN.replace(
            "kind = \"time\"\nduration_s = 3600\nallowed_lateness_s = 600",
            "size = 100\nslide = 30",
        ),
        TIME_PLAN.replace("duration_s = 3600", "duration_s = 3600\nslide_s = 1200"),
    ];
    for text in plans {
        let text = text.replace("checks = [\"ks\"]", "")
            + "[features.zip]\ntype = \"categorical\"\n[features.region]\ntype = \"categorical\"\n";
        let plan = plan_text(&text);
        let mut model = CreditModel::new("credit", 31);
        let events: Vec<Event> = (0..1500)
            .map(|i| {
                let drift = if i < 1000 { Drift::NONE } else { Drift::DEMO };
                // Mostly in order, some a few minutes late.
                let minute = i as i64 - if i % 7 == 0 { 5 } else { 0 };
                let mut e = pred_at(&mut model, at(minute.max(0)), drift);
                if let Event::Prediction(p) = &mut e {
                    p.features.insert(
                        "zip".into(),
                        FeatureValue::Text(format!("z{}", (i * 7919) % 50)),
                    );
                }
                e
            })
            .collect();
        let mut whole = Monitor::new(plan.clone(), None);
        let all: Vec<Vec<WindowReport>> = events
            .iter()
            .map(|e| whole.observe(Input::Event(e)).reports)
            .collect();
        let reference = whole.reference().cloned().expect("frozen");
        for cut in [650, 777, 1001, 1333] {
            let mut first = Monitor::new(plan.clone(), None);
            for e in &events[..cut] {
                first.observe(Input::Event(e));
            }
            let (version, bytes) = first.snapshot().expect("a snapshot");
            let mut restored = Monitor::new(plan.clone(), Some(reference.clone()));
            restored.restore(&version, &bytes).expect("restores");
            let want: Vec<WindowReport> = all[cut..].iter().flatten().cloned().collect();
            let mut got = Vec::new();
            for e in &events[cut..] {
                got.extend(restored.observe(Input::Event(e)).reports);
            }
            assert!(!want.is_empty());
            assert_eq!(got, want, "cut at {cut}: {text}");
            // Damaged bytes are refused and leave the monitor as it was.
            let mut fresh = Monitor::new(plan.clone(), Some(reference.clone()));
            assert!(fresh.restore(&version, &bytes[..bytes.len() - 3]).is_err());
            assert!(fresh.restore("fnv1a64:other", &bytes).is_err());
        }
    }
}

/// A reference too small for one whole window has no learned levels; it must still
/// round-trip through JSON, as the reference stores keep it (a NaN mean was written as
/// `null` and could not be read back).
#[test]
fn a_reference_without_whole_windows_round_trips_through_json() {
    let text = demo_plan_toml("credit", 300, 1000).replace(
        "[prediction.score]",
        "[prediction.score]\nthresholds.psi = { learned = true }",
    );
    let plan = Plan::from_toml(&text, "demo", PathBuf::new()).expect("plan");
    let mut b = ReferenceBuilder::new(&plan);
    let mut model = CreditModel::new("credit", 9);
    for _ in 0..300 {
        b.add(&model.next_prediction(Drift::NONE));
    }
    let r = b.build("test".into(), "f".into());
    let levels = &r.learned["prediction.score/psi"];
    assert_eq!((levels.windows, levels.warning), (0, None));
    let json = serde_json::to_string(&r).expect("json");
    let back: ReferenceProfile = serde_json::from_str(&json).expect("reads back");
    assert_eq!(back.version, r.version);
}
