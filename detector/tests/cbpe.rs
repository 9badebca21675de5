//! CBPE against NannyML: `oracle/cbpe_fixtures.json` holds, per scenario, a reference
//! (scores and outcomes), an analysis period (scores only) and NannyML's CBPE estimates
//! per chunk of 1,000 rows, computed by `oracle/make_cbpe_fixtures.py`. The same rows go
//! through `driftwatch replay` (reference file with an outcome column, count windows of
//! 1,000) and every estimate must be within 0.005 of NannyML's.

use std::path::PathBuf;
use std::sync::Arc;

use driftwatch_detector::driver::file::replay;
use driftwatch_detector::plan::Plan;
use serde_json::Value;

const PLAN: &str = r#"
[system]
id = "cbpe"

[reference]
file = "reference.csv"

[window]
size = 1000

[prediction.score]
checks = ["ks"]

[csv]
prediction_id = "id"

[performance]
task = "binary"
metrics = ["accuracy", "precision", "recall", "f1", "specificity", "roc_auc"]
"#;

fn write_csv(path: &PathBuf, scores: &[Value], outcomes: Option<&[Value]>, offset: usize) {
    let mut s = String::from("id,timestamp,score,outcome\n");
    for (i, score) in scores.iter().enumerate() {
        let at = chrono::DateTime::from_timestamp(1_790_000_000 + (offset + i) as i64, 0)
            .expect("valid test input");
        let outcome = outcomes.map_or(String::new(), |o| o[i].to_string());
        s += &format!(
            "r-{},{},{},{}\n",
            offset + i,
            at.to_rfc3339(),
            score,
            outcome
        );
    }
    std::fs::write(path, s).expect("valid test input");
}

#[test]
fn estimates_agree_with_nannyml_within_half_a_percent() {
    let f: Value =
        serde_json::from_str(include_str!("oracle/cbpe_fixtures.json")).expect("valid test input");
    let dir = std::env::temp_dir().join(format!("dw-cbpe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("valid test input");
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut worst = (0.0f64, String::new());
    for case in f["cases"].as_array().expect("valid test input") {
        let name = case["name"].as_str().expect("valid test input");
        let ref_scores = case["reference"]["score"]
            .as_array()
            .expect("valid test input");
        let ref_y = case["reference"]["y"].as_array().expect("valid test input");
        let scores = case["analysis"]["score"]
            .as_array()
            .expect("valid test input");
        write_csv(&dir.join("reference.csv"), ref_scores, Some(ref_y), 0);
        write_csv(&dir.join("events.csv"), scores, None, ref_scores.len());
        std::fs::write(dir.join("plan.toml"), PLAN).expect("valid test input");
        let plan = Arc::new(Plan::from_file(&dir.join("plan.toml")).expect("valid test input"));
        let mut out = Vec::new();
        replay(plan, None, &dir.join("events.csv"), &mut out).expect("replay");
        let reports: Vec<Value> = String::from_utf8(out)
            .expect("valid test input")
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("valid test input"))
            .filter(|v| v["kind"] == "performance" && v["window"]["complete"] == true)
            .collect();
        let chunks = case["chunks"].as_array().expect("valid test input");
        assert_eq!(reports.len(), chunks.len(), "{name}: one report per chunk");
        for (k, (r, want)) in reports.iter().zip(chunks).enumerate() {
            assert_eq!(
                r["calibrated"].as_bool(),
                case["needs_calibration"].as_bool(),
                "{name}: calibrate the scores as NannyML decided"
            );
            for (metric, w) in want.as_object().expect("valid test input") {
                let got = r["estimated"]
                    .as_array()
                    .expect("valid test input")
                    .iter()
                    .find(|e| e["metric"] == metric.as_str())
                    .and_then(|e| e["value"].as_f64());
                let w = w.as_f64().expect("valid test input");
                compared += 1;
                if let Some(g) = got {
                    if (g - w).abs() > worst.0 {
                        worst = ((g - w).abs(), format!("{name} window {k} {metric}"));
                    }
                }
                match got {
                    Some(g) if (g - w).abs() <= 0.005 => {}
                    other => failures.push(format!(
                        "{name} window {k} {metric}: {other:?} vs NannyML {w:.5}"
                    )),
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(compared, 72);
    eprintln!(
        "largest difference from NannyML: {:.2e} ({})",
        worst.0, worst.1
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
