use super::*;

const GOOD: &str = r#"
[system]
id = "credit-scoring"

[reference]
first_events = 500

[window]
size = 200

[features.age]
type = "numeric"

[features.region]
type = "categorical"
thresholds.psi = { warning = 0.2, critical = 0.3 }

[prediction.score]
"#;

fn parse(text: &str) -> Result<Plan, PlanError> {
    Plan::from_toml(text, "plan.toml", PathBuf::new())
}

#[test]
fn good_plan_resolves_defaults() {
    let plan = parse(GOOD).expect("valid plan");
    let signals = plan.signals();
    let names: Vec<_> = signals.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["age", "region", "prediction.score"]);
    let methods: Vec<Method> = signals[0].checks.iter().map(|c| c.method).collect();
    assert_eq!(methods, default_checks(FeatureType::Numeric));
    assert_eq!(
        signals[0].checks[0].thresholds,
        Method::Ks.default_thresholds()
    );
    assert_eq!(signals[1].checks[1].thresholds.warning, Some(0.2));
    assert_eq!(plan.window.min_samples(), 30);
}

#[test]
fn time_windows_and_learned_thresholds() {
    let text = GOOD
        .replace(
            "size = 200",
            "kind = \"time\"\nduration_s = 3600\nslide_s = 900\nallowed_lateness_s = 60",
        )
        .replace(
            "[prediction.score]",
            "[prediction.score]\nthresholds.psi = { learned = true, critical_k = 4 }",
        );
    let plan = parse(&text).expect("valid");
    let w = plan.window.windowing();
    assert_eq!((w.size, w.slide, w.lateness), (3_600_000, 900_000, 60_000));
    assert_eq!(plan.window.describe(), "time windows of 3600s every 900s");
    let score = plan.signals().pop().expect("score");
    let psi = score
        .checks
        .iter()
        .find(|c| c.method == Method::Psi)
        .expect("psi");
    assert!(psi.thresholds.learned);
    assert_eq!(psi.thresholds.ks(), (2.0, 4.0));

    let e = err(&GOOD.replace("size = 200", "size = 200\nslide_s = 10"));
    assert!(
        e.contains("window.slide_s: applies to kind = \"time\""),
        "{e}"
    );
    let e = err(&GOOD.replace("size = 200", "size = 200\nslide = 300"));
    assert!(
        e.contains("window.slide: 300 must be between 1 and window.size (200)"),
        "{e}"
    );
    let e = err(&GOOD.replace(
        "[prediction.score]",
        "[prediction.score]\nthresholds.psi = { learned = true, warning = 0.1 }",
    ));
    assert!(
        e.contains("prediction.score.thresholds.psi: learned thresholds take"),
        "{e}"
    );
}

#[test]
fn alert_urls_must_be_http_or_https() {
    for bad in ["ftp://am:9093", "https://", "am:9093"] {
        let text = format!("{GOOD}\n[alerts]\nalertmanager_url = \"{bad}\"\n");
        let e = err(&text);
        assert!(
            e.contains(&format!(
                "alerts.alertmanager_url: \"{bad}\" must be an http:// or https:// URL"
            )),
            "{e}"
        );
    }
    let ok = format!("{GOOD}\n[alerts]\nalertmanager_url = \"http://am:9093\"\nwebhook_url = \"https://hook/x\"\n");
    assert!(parse(&ok).is_ok());
}

#[test]
fn reference_period() {
    let text = GOOD.replace(
        "first_events = 500",
        "from = 2026-01-01T00:00:00Z\nto = 2026-02-01T00:00:00Z",
    );
    let plan = parse(&text).expect("valid");
    assert!(plan.reference.from.is_some());
    let e = err(&GOOD.replace("first_events = 500", "from = 2026-01-01T00:00:00Z"));
    assert!(e.contains("reference.to: `from` needs `to`"), "{e}");
    let e = err(&GOOD.replace(
        "first_events = 500",
        "from = \"2026-01-01T00:00:00Z\"\nto = 2026-01-01T10:00:00",
    ));
    assert!(e.contains("is not a timestamp with a time zone"), "{e}");
}

fn err(text: &str) -> String {
    parse(text).expect_err("must be refused").to_string()
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let e = err(&GOOD.replace("size = 200", "size = 200\nsizee = 3"));
    assert!(e.contains("unknown field `sizee`"), "{e}");
    assert!(e.contains("line 10"), "{e}");
}

#[test]
fn method_type_mismatch_names_the_key() {
    let e = err(&GOOD.replace(
        "type = \"categorical\"",
        "type = \"categorical\"\nchecks = [\"ks\"]",
    ));
    assert_eq!(
        e,
        "plan.toml: features.region.checks: method \"ks\" does not apply to a categorical signal"
    );
}

#[test]
fn inverted_thresholds_are_refused() {
    let e = err(&GOOD.replace(
        "warning = 0.2, critical = 0.3",
        "warning = 0.3, critical = 0.2",
    ));
    assert!(
        e.starts_with("plan.toml: features.region.thresholds.psi: critical (0.2)"),
        "{e}"
    );
}

#[test]
fn reference_must_be_one_source() {
    let e = err(&GOOD.replace("first_events = 500", "first_events = 500\nfile = \"r.csv\""));
    assert!(e.contains("reference: give exactly one of"), "{e}");
    let e = err(&GOOD.replace("first_events = 500", ""));
    assert!(e.contains("reference: give exactly one of"), "{e}");
}

#[test]
fn min_samples_cannot_exceed_window() {
    let e = err(&GOOD.replace("size = 200", "size = 200\nmin_samples = 201"));
    assert!(e.contains("window.min_samples"), "{e}");
}

#[test]
fn performance_table_errors_name_the_key() {
    let with = |perf: &str| err(&format!("{GOOD}\n[performance]\n{perf}\n"));
    let cases = [
        (
            "task = \"regression\"",
            "performance.task",
            "add [prediction.value]",
        ),
        (
            "task = \"multiclass\"",
            "performance.task",
            "add [prediction.label]",
        ),
        (
            "task = \"binary\"\nmetrics = [\"mae\"]",
            "performance.metrics",
            "does not apply",
        ),
        (
            "task = \"binary\"\nmin_coverage = 0",
            "performance.min_coverage",
            "above 0",
        ),
        (
            "task = \"binary\"\ndeclared = { accuracy = 1.5 }",
            "performance.declared.accuracy",
            "not a valid level",
        ),
        (
            "task = \"binary\"\ndeclared = { mae = 3 }",
            "performance.declared.mae",
            "not among the metrics",
        ),
        (
            "task = \"binary\"\nthresholds.recall = { warning = 0.7, critical = 0.8 }",
            "performance.thresholds.recall",
            "higher is better",
        ),
        (
            "task = \"binary\"\nsegments = [\"features.age\"]",
            "performance.segments",
            "numeric feature",
        ),
        (
            "task = \"binary\"\nsegments = [\"region\"]",
            "performance.segments",
            "features.NAME or segment.NAME",
        ),
        (
            "task = \"binary\"\ngap.recall = { warning = 0.1 }",
            "performance.gap.recall",
            "needs segments",
        ),
        (
            "task = \"binary\"\npositive_label = \"0\"",
            "performance.negative_label",
            "two different",
        ),
        ("task = \"binary\"\nhorizon = 5", "horizon", "unknown field"),
        ("task = \"ranking\"", "task", "unknown variant"),
    ];
    for (perf, key, says) in cases {
        let e = with(perf);
        assert!(e.contains(key) && e.contains(says), "{perf}: {e}");
    }
    let good = parse(&format!(
        "{GOOD}\n[performance]\ntask = \"binary\"\nsegments = [\"features.region\", \"segment.channel\"]\ngap.recall = {{ warning = 0.05 }}\ndeclared = {{ accuracy = 0.9 }}\n"
    ))
    .expect("valid");
    let p = good.performance.expect("performance");
    assert_eq!(p.horizon_s, 14 * 86_400);
    assert_eq!(p.min_coverage, 0.5);
    assert_eq!(p.min_cell, 100);
    assert!(p.active_metrics(true).contains(&PerfMetric::RocAuc));
    assert!(!p.active_metrics(false).contains(&PerfMetric::RocAuc));
}
