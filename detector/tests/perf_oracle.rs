//! Realized performance metrics against scikit-learn: every expected value in
//! `oracle/perf_fixtures.json` was computed by `oracle/make_perf_fixtures.py`, never by
//! driftwatch. Each case is checked twice: pairs added once, and pairs added with every
//! fifth one first joined to a wrong outcome and then corrected (last outcome wins), as a
//! late second outcome does.

use driftwatch_detector::perf::{Actual, PerfAcc, Predicted};
use driftwatch_detector::plan::{PerfMetric, Task};
use serde_json::Value;

fn fixtures() -> Value {
    serde_json::from_str(include_str!("oracle/perf_fixtures.json")).expect("fixtures are JSON")
}

fn metric(name: &str) -> PerfMetric {
    serde_json::from_value(Value::String(name.into())).expect("a metric name")
}

/// The pairs of a case, as the tracker would join them.
fn pairs(case: &Value) -> (Task, Vec<(Predicted, Actual)>) {
    let task = case["task"].as_str().expect("task");
    let arr = |k: &str| case[k].as_array().expect(k).clone();
    match task {
        "binary" => {
            let scores = arr("scores");
            let labels = arr("labels");
            let y = arr("y");
            let p = scores
                .iter()
                .zip(&labels)
                .zip(&y)
                .map(|((s, l), y)| {
                    (
                        Predicted::Class {
                            label: l.as_u64().expect("label") as u16,
                            score: s.as_f64(),
                        },
                        Actual::Class(y.as_u64().expect("y") as u16),
                    )
                })
                .collect();
            (Task::Binary, p)
        }
        "multiclass" => {
            let mut names: Vec<String> = Vec::new();
            let mut id = |s: &Value| {
                let s = s.as_str().expect("class").to_owned();
                match names.iter().position(|n| *n == s) {
                    Some(i) => i as u16,
                    None => {
                        names.push(s);
                        (names.len() - 1) as u16
                    }
                }
            };
            let p = arr("pred")
                .iter()
                .zip(&arr("y"))
                .map(|(p, y)| {
                    (
                        Predicted::Class {
                            label: id(p),
                            score: None,
                        },
                        Actual::Class(id(y)),
                    )
                })
                .collect();
            (Task::Multiclass, p)
        }
        _ => {
            let p = arr("pred")
                .iter()
                .zip(&arr("y"))
                .map(|(p, y)| {
                    (
                        Predicted::Value(p.as_f64().expect("pred")),
                        Actual::Value(y.as_f64().expect("y")),
                    )
                })
                .collect();
            (Task::Regression, p)
        }
    }
}

fn wrong(a: Actual) -> Actual {
    match a {
        Actual::Class(c) => Actual::Class(1 - c.min(1)),
        Actual::Value(v) => Actual::Value(v * 3.0 + 1.0),
    }
}

fn check(case: &Value, acc: &PerfAcc, task: Task, how: &str, failures: &mut Vec<String>) {
    let name = case["name"].as_str().expect("name");
    for (m, want) in case["expected"].as_object().expect("expected") {
        let got = acc.metric(metric(m), task);
        match (got, want.as_f64()) {
            (None, None) => {}
            (Some(g), Some(w)) => {
                let diff = (g - w).abs();
                // 1e-9 relative; an absolute floor only for values that are rounding
                // noise around zero (a perfect model's log loss is 2e-16).
                if diff > 1e-9 * w.abs() && diff > 1e-15 {
                    failures.push(format!("{name} ({how}) {m}: {g} vs scikit-learn {w}"));
                }
            }
            (g, w) => failures.push(format!("{name} ({how}) {m}: {g:?} vs scikit-learn {w:?}")),
        }
    }
}

#[test]
fn metrics_match_scikit_learn_and_survive_corrections() {
    let f = fixtures();
    let cases = f["cases"].as_array().expect("cases");
    assert!(cases.len() >= 20, "fixtures hold every case");
    let mut failures = Vec::new();
    for case in cases {
        let (task, pairs) = pairs(case);
        let mut once = PerfAcc::default();
        for &(p, a) in &pairs {
            once.apply(p, a, 1);
        }
        check(case, &once, task, "once", &mut failures);
        // All at once (one sort for ROC AUC and average precision) equals one by one.
        let all: Vec<PerfMetric> = driftwatch_detector::plan::ALL_PERF_METRICS.to_vec();
        let together = once.metrics(&all, task);
        for (m, v) in all.iter().zip(together) {
            assert_eq!(v, once.metric(*m, task), "{m} together and alone");
        }
        let mut corrected = PerfAcc::default();
        for (i, &(p, a)) in pairs.iter().enumerate() {
            if i % 5 == 0 {
                corrected.apply(p, wrong(a), 1);
                corrected.apply(p, wrong(a), -1);
            }
            corrected.apply(p, a, 1);
        }
        assert_eq!(corrected.n, pairs.len() as u64);
        check(case, &corrected, task, "corrected", &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
