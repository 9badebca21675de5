//! Replay output on a committed corpus, byte for byte: the guard for refactoring the
//! engine and the drivers. Each case runs `driftwatch replay` as a user would and
//! compares stdout with `tests/golden/<case>.out.ndjson`.
//!
//! The corpus (`tests/golden/*.csv`, `*.ndjson`, `*.toml`) is made by the ignored test
//! `make_golden_corpus` from the seeded synthetic model; the expected outputs by running
//! the cases with `DRIFTWATCH_BLESS=1`. Bless only for an intended change of output,
//! and show the diff in the commit.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use driftwatch_detector::synth::{CreditModel, Drift, Rng};
use serde_json::{json, Value};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// (case, plan, events): every plan against the events files it is meant for.
const CASES: [(&str, &str, &str); 7] = [
    ("count-csv", "count.toml", "events.csv"),
    ("count-ndjson", "count.toml", "events.ndjson"),
    ("sliding-ndjson", "sliding.toml", "events.ndjson"),
    ("sliding-csv", "sliding.toml", "events.csv"),
    ("time-ndjson", "time.toml", "events.ndjson"),
    ("time-csv", "time.toml", "events.csv"),
    ("learned-csv", "learned.toml", "events.csv"),
];

#[test]
fn replay_output_matches_the_committed_corpus() {
    let bless = std::env::var_os("DRIFTWATCH_BLESS").is_some();
    let mut failed = Vec::new();
    for (case, plan, events) in CASES {
        let o = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .args(["replay", "--plan"])
            .arg(dir().join(plan))
            .arg("--events")
            .arg(dir().join(events))
            .output()
            .expect("run driftwatch replay");
        assert!(
            o.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let expected_path = dir().join(format!("{case}.out.ndjson"));
        if bless {
            std::fs::write(&expected_path, &o.stdout).expect("bless");
            continue;
        }
        let expected = std::fs::read(&expected_path).expect("expected output");
        if expected != o.stdout {
            let got = String::from_utf8_lossy(&o.stdout);
            let want = String::from_utf8_lossy(&expected);
            let line = got
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .map_or_else(|| "line count".to_string(), |i| format!("line {}", i + 1));
            failed.push(format!(
                "{case}: output differs at {line} ({} vs {} lines)",
                got.lines().count(),
                want.lines().count()
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Writes the corpus. Run once with `cargo test -p driftwatch-detector --test golden --
/// --ignored make_golden_corpus`; the files are committed.
#[test]
#[ignore]
fn make_golden_corpus() {
    let d = dir();
    std::fs::create_dir_all(&d).expect("dir");
    csv_file(&d.join("reference.csv"), 1, 2000, usize::MAX, 0);
    csv_file(&d.join("events.csv"), 2, 6000, 3000, 3);
    ndjson_file(&d.join("events.ndjson"), 3, 5000, 2500);
    let features = "[features.age]\ntype = \"numeric\"\n\n[features.income]\ntype = \"numeric\"\n\n[features.region]\ntype = \"categorical\"\n\n[features.employed]\ntype = \"categorical\"\n\n[prediction.score]\n\n[prediction.label]\n";
    let plan = |name: &str, reference: &str, window: &str, extra: &str| {
        std::fs::write(
            d.join(name),
            format!("[system]\nid = \"golden\"\nplan_version = \"g1\"\n\n[reference]\n{reference}\n\n[window]\n{window}\n\n{features}{extra}\n[csv]\nprediction_id = \"id\"\n\n[alerts]\nmin_severity = \"warning\"\n"),
        )
        .expect("plan");
    };
    plan(
        "count.toml",
        "file = \"reference.csv\"",
        "size = 500",
        "\n[multiple_testing]\nmethod = \"benjamini-hochberg\"\n",
    );
    plan(
        "sliding.toml",
        "first_events = 1000",
        "size = 800\nslide = 400",
        "",
    );
    plan(
        "time.toml",
        "file = \"reference.csv\"",
        "kind = \"time\"\nduration_s = 600\nslide_s = 300\nallowed_lateness_s = 60",
        "",
    );
    plan(
        "learned.toml",
        "file = \"reference.csv\"",
        "size = 250",
        "\n[features.debt_ratio]\ntype = \"numeric\"\nchecks = [\"ks\", \"psi\", \"wasserstein\"]\nthresholds.ks = { learned = true }\nthresholds.psi = { learned = true }\nthresholds.wasserstein = { learned = true, critical_k = 4 }\n",
    );
}

/// A CSV export: one row per prediction; every `outcome_every`-th row carries the
/// outcome (0: none).
fn csv_file(path: &Path, seed: u64, rows: usize, drift_after: usize, outcome_every: usize) {
    let mut model = CreditModel::new("golden", seed);
    let mut rng = Rng::new(seed + 100);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    writeln!(
        f,
        "id,timestamp,age,income,debt_ratio,region,employed,score,label,outcome"
    )
    .expect("write");
    for i in 0..rows {
        let drift = if i < drift_after {
            Drift::NONE
        } else {
            Drift::DEMO
        };
        let p = model.next_json(drift);
        let outcome = if outcome_every > 0 && i % outcome_every == 0 {
            if rng.uniform() < 0.7 {
                "repaid"
            } else {
                "defaulted"
            }
        } else {
            ""
        };
        // Every 97th age and every 89th income is missing (a CSV cell of another type
        // stops the replay; the NDJSON file carries type errors).
        let age = if i % 97 == 5 {
            String::new()
        } else {
            p["features"]["age"].to_string()
        };
        let income = if i % 89 == 7 {
            String::new()
        } else {
            p["features"]["income"].to_string()
        };
        writeln!(
            f,
            "{},{},{},{},{},{},{},{},{},{}",
            p["prediction_id"].as_str().expect("id"),
            p["timestamp"].as_str().expect("ts"),
            age,
            income,
            p["features"]["debt_ratio"],
            p["features"]["region"].as_str().expect("region"),
            p["features"]["employed"],
            p["prediction"]["score"],
            p["prediction"]["label"].as_str().expect("label"),
            outcome,
        )
        .expect("write");
    }
}

/// Wire events: predictions one second apart, every 40th stamped 90 s early (late under
/// a 60 s lateness), every 89th income a string (a type error), and an outcome for every
/// fourth prediction.
fn ndjson_file(path: &Path, seed: u64, predictions: usize, drift_after: usize) {
    let mut model = CreditModel::new("golden", seed);
    let mut lines: Vec<Value> = Vec::new();
    for i in 0..predictions {
        let drift = if i < drift_after {
            Drift::NONE
        } else {
            Drift::DEMO
        };
        let mut p = model.next_json(drift);
        p["kind"] = json!("prediction");
        p["v"] = json!(1);
        p["event_id"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
        if i % 40 == 39 {
            let ts = chrono::DateTime::parse_from_rfc3339(p["timestamp"].as_str().expect("ts"))
                .expect("rfc3339")
                - chrono::Duration::seconds(90);
            p["timestamp"] = json!(ts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        if i % 89 == 7 {
            p["features"]["income"] = json!("n/a");
        }
        let ts = p["timestamp"].clone();
        let id = p["prediction_id"].clone();
        lines.push(p);
        if i % 4 == 3 {
            lines.push(json!({
                "kind": "outcome", "v": 1,
                "event_id": format!("00000000-0000-4000-9000-{i:012}"),
                "system_id": "golden", "prediction_id": id, "timestamp": ts,
                "outcome": {"label": if i % 3 == 0 { "defaulted" } else { "repaid" }},
            }));
        }
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
}
