//! The `driftwatch` binary as an operator runs it: `plan check` and `replay`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use driftwatch_detector::synth::{demo_plan_toml, CreditModel, Drift};
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_driftwatch"))
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("driftwatch-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

/// `driftwatch replay --plan DIR/plan.toml --events DIR/<events>`.
fn replay(dir: &TempDir, events: &str) -> Output {
    bin()
        .args(["replay", "--plan"])
        .arg(dir.path("plan.toml"))
        .arg("--events")
        .arg(dir.path(events))
        .output()
        .expect("run")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const PLAN_WITH_FILE: &str = r#"
[system]
id = "credit-scoring"
plan_version = "7"

[reference]
file = "reference.csv"

[window]
size = 1000

[features.age]
type = "numeric"

[features.region]
type = "categorical"

[prediction.score]

[csv]
prediction_id = "id"
"#;

/// A CSV export of the synthetic model, as a team would have from its own data.
fn write_csv(path: &Path, seed: u64, rows: usize, drift_after: usize) {
    let mut model = CreditModel::new("credit-scoring", seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    writeln!(f, "id,timestamp,age,income,region,score,label,unused").expect("write");
    for i in 0..rows {
        let drift = if i < drift_after {
            Drift::NONE
        } else {
            Drift::DEMO
        };
        let p = model.next_json(drift);
        writeln!(
            f,
            "{},{},{},{},{},{},{},x",
            p["prediction_id"].as_str().expect("id"),
            p["timestamp"].as_str().expect("ts"),
            p["features"]["age"],
            p["features"]["income"],
            p["features"]["region"].as_str().expect("region"),
            p["prediction"]["score"],
            p["prediction"]["label"].as_str().expect("label"),
        )
        .expect("write");
    }
}

#[test]
fn plan_check_accepts_a_good_plan_and_names_the_bad_key() {
    let dir = TempDir::new("plancheck");
    let good = dir.path("good.toml");
    write(&good, &demo_plan_toml("credit", 1000, 500));
    let o = bin()
        .args(["plan", "check"])
        .arg(&good)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("ok: system credit, plan sha256:")
            && out.contains(", 6 signals, 34 checks, count windows of 500"),
        "{out}"
    );

    let bad = dir.path("bad.toml");
    write(
        &bad,
        &demo_plan_toml("credit", 1000, 500).replace(
            "[features.age]\ntype = \"numeric\"",
            "[features.age]\ntype = \"numerical\"",
        ),
    );
    let o = bin()
        .args(["plan", "check"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(64));
    let err = stderr(&o);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(
        err.contains("unknown variant `numerical`, expected `numeric` or `categorical`"),
        "{err}"
    );
    assert!(err.contains("line 15, column 8"), "{err}");
}

#[test]
fn replay_csv_against_a_reference_file() {
    let dir = TempDir::new("replaycsv");
    write(&dir.path("plan.toml"), PLAN_WITH_FILE);
    write_csv(&dir.path("reference.csv"), 1, 5000, usize::MAX);
    write_csv(&dir.path("events.csv"), 2, 6000, 3000);
    let o = replay(&dir, "events.csv");
    assert!(o.status.success(), "{}", stderr(&o));
    let reports: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(reports.len(), 6);
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r["window"]["index"], i as u64);
        assert_eq!(r["plan_version"], "7");
        let age_ks = r["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["signal"] == "age" && c["method"] == "ks")
            .expect("age ks");
        if i < 3 {
            assert_ne!(age_ks["severity"], "critical", "window {i}: {age_ks}");
        } else {
            assert_eq!(age_ks["severity"], "critical", "window {i}: {age_ks}");
        }
    }
    let err = stderr(&o);
    assert!(
        err.contains("6000 predictions, 0 outcomes, 6 windows"),
        "{err}"
    );

    // Same input, same bytes out.
    let again = replay(&dir, "events.csv");
    assert_eq!(o.stdout, again.stdout);
}

#[test]
fn replay_ndjson_with_first_events_reference() {
    let dir = TempDir::new("replayndjson");
    write(
        &dir.path("plan.toml"),
        &demo_plan_toml("credit-scoring", 2000, 1000),
    );
    let mut model = CreditModel::new("credit-scoring", 3);
    let mut lines = String::new();
    for i in 0..5000 {
        let drift = if i < 4000 { Drift::NONE } else { Drift::DEMO };
        lines.push_str(&model.next_json(drift).to_string());
        lines.push('\n');
    }
    lines.push_str("{\"system_id\":\"other\",\"prediction_id\":\"x\",\"outcome\":1}\n");
    write(&dir.path("events.ndjson"), &lines);
    let o = replay(&dir, "events.ndjson");
    assert!(o.status.success(), "{}", stderr(&o));
    let reports: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[2]["severity"], "critical");
    assert!(
        stderr(&o).contains("1 events of other systems skipped"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_bad_record_stops_replay_with_file_line_and_column() {
    let dir = TempDir::new("badrecord");
    write(&dir.path("plan.toml"), PLAN_WITH_FILE);
    write_csv(&dir.path("reference.csv"), 1, 100, usize::MAX);
    write(
        &dir.path("events.csv"),
        "id,timestamp,age,income,region,score\na,2026-01-01T00:00:00Z,41,1,north,0.5\nb,2026-01-01T00:00:01Z,forty,1,north,0.5\n",
    );
    let o = replay(&dir, "events.csv");
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("events.csv:3: column age: expected a number, found \"forty\""),
        "{err}"
    );

    write(&dir.path("events.csv"), "id,age,score\na,41,0.5\n");
    let o = replay(&dir, "events.csv");
    assert_eq!(o.status.code(), Some(65));
    assert!(
        stderr(&o).contains("the plan's feature \"region\" has no column"),
        "{}",
        stderr(&o)
    );

    write(&dir.path("events.ndjson"), "{\"system_id\":\"credit-scoring\",\"model_version\":\"1\",\"prediction_id\":\"a\",\"features\":{},\"prediction\":{\"score\":\"high\"}}\n");
    let o = replay(&dir, "events.ndjson");
    assert_eq!(o.status.code(), Some(65));
    assert!(
        stderr(&o).contains(
            "events.ndjson:1: prediction.score: expected a finite number, found string \"high\""
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_bad_record_after_many_batches_reports_its_line_after_the_windows_before_it() {
    // The CSV is parsed on a second thread in batches of 4,096 rows: a bad record deep in
    // the file must still stop the replay at its own line, after every window before it.
    let dir = TempDir::new("deepbad");
    write(&dir.path("plan.toml"), PLAN_WITH_FILE);
    write_csv(&dir.path("reference.csv"), 1, 3000, usize::MAX);
    write_csv(&dir.path("events.csv"), 2, 9000, usize::MAX);
    let text = std::fs::read_to_string(dir.path("events.csv")).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Line 8,502 of the file (header is line 1): row 8,501.
    let mut cols: Vec<String> = lines[8501].split(',').map(str::to_owned).collect();
    cols[2] = "forty".into();
    lines[8501] = cols.join(",");
    write(&dir.path("events.csv"), &(lines.join("\n") + "\n"));
    let o = replay(&dir, "events.csv");
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("events.csv:8502: column age: expected a number, found \"forty\""),
        "{}",
        stderr(&o)
    );
    let indices: Vec<u64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .map(|r| r["window"]["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(
        indices,
        (0..8).collect::<Vec<_>>(),
        "the 8 whole windows before it"
    );
}

/// Every row of a CSV export carries its outcome: each window of 500 rows counts 500
/// outcomes, the row that closes a window included (it used to count 499).
#[test]
fn an_outcome_on_the_row_that_closes_a_window_counts_in_that_window() {
    let dir = TempDir::new("outcomes");
    write(
        &dir.path("plan.toml"),
        PLAN_WITH_FILE.replace("size = 1000", "size = 500").as_str(),
    );
    write_csv(&dir.path("reference.csv"), 1, 1000, usize::MAX);
    write_csv(&dir.path("events.csv"), 2, 2000, usize::MAX);
    let text = std::fs::read_to_string(dir.path("events.csv")).expect("read");
    let with_outcomes: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l},outcome\n")
            } else {
                format!("{l},repaid\n")
            }
        })
        .collect();
    write(&dir.path("events.csv"), &with_outcomes);
    let o = replay(&dir, "events.csv");
    assert!(o.status.success(), "{}", stderr(&o));
    let outcomes: Vec<u64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .map(|r| r["window"]["outcomes"].as_u64().expect("outcomes"))
        .collect();
    assert_eq!(outcomes, vec![500; 4]);
    assert!(stderr(&o).contains("2000 predictions, 2000 outcomes, 4 windows"));
}

/// Learned levels on a p-value check: a window of N(3, 1) against a reference of
/// N(0, 1) (D near 0.87, p = 0) must be critical. Levels learned on the p-value itself
/// came out as 0 (`mean - 3 sd` of p-values spread over [0, 1], floored), and `p < 0`
/// never holds.
#[test]
fn learned_levels_on_ks_flag_a_large_shift() {
    let dir = TempDir::new("learnedks");
    write(
        &dir.path("plan.toml"),
        "[system]\nid = \"s\"\n[reference]\nfile = \"reference.csv\"\n[window]\nsize = 1000\n[features.x]\ntype = \"numeric\"\nchecks = [\"ks\"]\nthresholds.ks = { learned = true, warning_k = 3, critical_k = 3 }\n",
    );
    let mut rng = driftwatch_detector::synth::Rng::new(5);
    let mut column = |n: usize, mean: f64| {
        let mut s = String::from("prediction_id,x\n");
        for i in 0..n {
            s.push_str(&format!("p{i},{:.6}\n", mean + rng.normal()));
        }
        s
    };
    write(&dir.path("reference.csv"), &column(10_000, 0.0));
    let mut events = column(1000, 0.0);
    events.push_str(
        &column(1000, 3.0)
            .replace("prediction_id,x\n", "")
            .replace('p', "q"),
    );
    write(&dir.path("events.csv"), &events);
    let o = replay(&dir, "events.csv");
    assert!(o.status.success(), "{}", stderr(&o));
    let reports: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .collect();
    assert_eq!(reports.len(), 2);
    let ks = |r: &Value| r["checks"][0].clone();
    assert_eq!(ks(&reports[0])["severity"], "ok", "{}", ks(&reports[0]));
    assert_eq!(
        ks(&reports[1])["severity"],
        "critical",
        "{}",
        ks(&reports[1])
    );
    assert!(ks(&reports[1])["statistic"].as_f64().expect("D") > 0.8);
}

/// An export holding a model server's retries: replay drops the repeated prediction ids
/// as the Kafka driver does, so the windows see each prediction once.
#[test]
fn replay_drops_retried_predictions_of_a_csv_export() {
    let dir = TempDir::new("retries");
    write(&dir.path("plan.toml"), PLAN_WITH_FILE);
    write_csv(&dir.path("reference.csv"), 1, 2000, usize::MAX);
    write_csv(&dir.path("events.csv"), 2, 3000, usize::MAX);
    let clean = replay(&dir, "events.csv");
    assert!(clean.status.success(), "{}", stderr(&clean));
    // Every 10th row sent again two rows later.
    let text = std::fs::read_to_string(dir.path("events.csv")).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = vec![lines[0].to_owned()];
    let mut repeats = 0;
    for (i, l) in lines[1..].iter().enumerate() {
        out.push((*l).to_owned());
        if i % 10 == 2 {
            out.push(lines[1 + i - 2].to_owned());
            repeats += 1;
        }
    }
    write(&dir.path("events.csv"), &(out.join("\n") + "\n"));
    let retried = replay(&dir, "events.csv");
    assert!(retried.status.success(), "{}", stderr(&retried));
    assert_eq!(
        retried.stdout, clean.stdout,
        "the same windows as without retries"
    );
    assert!(
        stderr(&retried).contains(&format!(
            "{} predictions, 0 outcomes, 3 windows",
            3000 + repeats
        )) && stderr(&retried).contains(&format!(", {repeats} repeated predictions dropped")),
        "{}",
        stderr(&retried)
    );
}

/// Kafka secrets never come from a flag (visible in `ps`), and a security setting that
/// cannot work stops `detect` before it connects, naming the setting.
#[test]
fn detect_refuses_secrets_in_flags_and_names_unusable_security() {
    let dir = TempDir::new("detect-security");
    let plan = dir.path("plan.toml");
    write(&plan, &demo_plan_toml("credit", 1000, 500));
    let detect = |extra: &[&str], env: &[(&str, &str)]| {
        let mut c = bin();
        c.arg("detect")
            .arg("--plan")
            .arg(&plan)
            .args([
                "--brokers",
                "127.0.0.1:9",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env_remove("DRIFTWATCH_KAFKA_SASL_PASSWORD");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run")
    };
    let o = detect(&["--kafka-property", "sasl.password=hunter2"], &[]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--kafka-property: \"sasl.password\" carries a secret"),
        "{}",
        stderr(&o)
    );
    let o = detect(&["--kafka-security-protocol", "sasl_ssl"], &[]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains("protocol sasl_ssl needs SASL credentials"),
        "{}",
        stderr(&o)
    );
    let o = detect(
        &[
            "--kafka-security-protocol",
            "sasl_plaintext",
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-256",
            "--kafka-sasl-username",
            "dw",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains("environment variable DRIFTWATCH_KAFKA_SASL_PASSWORD is not set"),
        "{}",
        stderr(&o)
    );
    let o = detect(
        &[
            "--kafka-security-protocol",
            "ssl",
            "--kafka-ca-file",
            "/nonexistent/ca.pem",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains("\"/nonexistent/ca.pem\""),
        "{}",
        stderr(&o)
    );
    let o = detect(&["--receiver-ca-file", plan.to_str().expect("utf8")], &[]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains("--receiver-ca-file") && stderr(&o).contains("no PEM certificate"),
        "{}",
        stderr(&o)
    );
}

/// One event stamped 9999-12-31 used to move the watermark to year 9999: every later
/// event was late and no window closed again. A far-future and a far-past event are now
/// counted as skewed and change no window.
#[test]
fn a_far_future_or_far_past_timestamp_changes_no_window() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let dir = TempDir::new("skew");
    let plan = std::fs::read_to_string(golden.join("time.toml"))
        .expect("plan")
        .replace(
            "file = \"reference.csv\"",
            &format!("file = \"{}\"", golden.join("reference.csv").display()),
        );
    write(&dir.path("plan.toml"), &plan);
    let events = std::fs::read_to_string(golden.join("events.ndjson")).expect("events");
    let lines: Vec<&str> = events.lines().collect();
    let mut skewed = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        skewed.push(line.to_string());
        if i == 1000 || i == 3000 {
            let mut v: Value = serde_json::from_str(line).expect("json");
            v["prediction_id"] = Value::from(format!("skewed-{i}"));
            v["timestamp"] = Value::from(if i == 1000 {
                "9999-12-31T23:59:59Z"
            } else {
                "0000-01-01T00:00:00Z"
            });
            skewed.push(v.to_string());
        }
    }
    write(&dir.path("clean.ndjson"), &events);
    write(&dir.path("skewed.ndjson"), &(skewed.join("\n") + "\n"));
    let clean = replay(&dir, "clean.ndjson");
    assert!(clean.status.success(), "{}", stderr(&clean));
    let with = replay(&dir, "skewed.ndjson");
    assert!(with.status.success(), "{}", stderr(&with));
    let windows = |o: &Output| String::from_utf8_lossy(&o.stdout).lines().count();
    assert!(windows(&clean) >= 15, "{}", stderr(&clean));
    assert_eq!(windows(&with), windows(&clean), "{}", stderr(&with));
    assert!(
        with.stdout == clean.stdout,
        "the same windows, the same numbers"
    );
    assert!(
        stderr(&with).contains(
            "2 predictions with a skewed timestamp skipped (1 in the future, 1 in the past)"
        ),
        "{}",
        stderr(&with)
    );
}

/// A plan with `[performance]`, checked and replayed as an operator would: the check
/// says what it watches, replay's summary says what became of the outcomes, and the
/// output has a performance report per window after the window reports.
#[test]
fn replay_with_outcomes_reports_performance_and_counts_the_join() {
    let dir = TempDir::new("performance");
    let plan = demo_plan_toml("credit", 1000, 500)
        + "\n[performance]\ntask = \"binary\"\npositive_label = \"repaid\"\nnegative_label = \"defaulted\"\nhorizon_s = 0\ndeclared = { accuracy = 0.70 }\nsegments = [\"features.region\"]\n";
    write(&dir.path("plan.toml"), &plan);
    let o = bin()
        .args(["plan", "check"])
        .arg(dir.path("plan.toml"))
        .output()
        .expect("run");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("performance: binary, 10 metrics, outcomes within 0 s, declared accuracy 0.7, per features.region"),
        "{out}"
    );
    // NDJSON: 3,000 predictions, each followed by its outcome, two unknown outcomes.
    let mut model = CreditModel::new("credit", 5);
    let mut f = std::fs::File::create(dir.path("events.ndjson")).expect("create");
    for i in 0..3000 {
        let mut p = model.next_json(if i < 2000 {
            Drift::NONE
        } else {
            Drift::DEMO_WITH_INCOME
        });
        let mut o = model.outcome_json(&p, 0);
        for (v, kind) in [(&mut p, "prediction"), (&mut o, "outcome")] {
            v["v"] = 1.into();
            v["kind"] = kind.into();
        }
        writeln!(f, "{p}\n{o}").expect("write");
    }
    for j in 0..2 {
        writeln!(
            f,
            r#"{{"v":1,"kind":"outcome","system_id":"credit","prediction_id":"nobody-{j}","timestamp":"2026-11-23T10:00:00Z","outcome":{{"label":"repaid"}}}}"#
        )
        .expect("write");
    }
    drop(f);
    let o = replay(&dir, "events.ndjson");
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    // Orphaned: the two unknown ids, and the outcome of the last reference prediction,
    // which arrives after the reference froze (the others went into the reference).
    assert!(
        err.contains("performance: 11 reports, outcomes 2000 joined, 0 replaced, 0 expired, 3 orphaned, 0 invalid; 0 predictions evicted, 0 still pending"),
        "{err}"
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    // Per window: at its close (the closing prediction's outcome follows it), at full
    // coverage, and final once a later prediction moves event time past it; the last
    // window ends provisional with the input.
    let perf: Vec<&Value> = lines
        .iter()
        .filter(|v| v["kind"] == "performance")
        .collect();
    assert_eq!(perf.len(), 11);
    for k in 0..4 {
        let last = perf
            .iter()
            .rev()
            .find(|r| r["window"]["index"] == k)
            .expect("a report");
        assert_eq!(last["stage"], if k < 3 { "final" } else { "provisional" });
        assert_eq!(last["coverage"], 1.0);
        assert!(last["segments"].as_array().expect("segments").len() >= 4);
    }
}

/// The Art. 72 elements a regulator looks for: each gap is a warning naming its key;
/// `--strict` turns them into a failure; a complete plan has none; `plan show` renders it.
#[test]
fn plan_check_warns_about_art72_gaps_and_plan_show_renders_the_plan() {
    let dir = TempDir::new("art72");
    let bare = dir.path("bare.toml");
    write(&bare, &demo_plan_toml("credit", 1000, 500));
    let o = bin()
        .args(["plan", "check"])
        .arg(&bare)
        .output()
        .expect("run");
    assert!(
        o.status.success(),
        "warnings alone do not fail: {}",
        stderr(&o)
    );
    let err = stderr(&o);
    for key in [
        "owners",
        "performance.declared",
        "actions.critical",
        "parties",
        "review.cadence_days",
        "monitoring.law_enforcement",
    ] {
        assert!(
            err.contains(&format!("warning: {key}: ")),
            "{key} named: {err}"
        );
    }
    let o = bin()
        .args(["plan", "check", "--strict"])
        .arg(&bare)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(64), "--strict fails on warnings");

    let full = dir.path("full.toml");
    let text = demo_plan_toml("credit", 1000, 500)
        + r#"
[performance]
task = "binary"
positive_label = "default"
declared = { accuracy = 0.7 }

[monitoring]
data_sources = ["agent sidecar"]
excluded = ["raw ids <pseudonymised>"]
law_enforcement = "not deployed by law-enforcement authorities"

[actions.critical]
action = "disable"
runbook = "https://runbooks.example/credit"

[[owners]]
role = "plan owner"
name = "J. Jansen"

[[parties]]
kind = "market_surveillance_authority"
name = "AP | NL"
contact = "mailto:ai@ap.example"
inform_on = ["disable", "recall"]

[review]
cadence_days = 90
history = [{ version = "2026-11", date = "2026-11-01", change = "first plan" }]
"#;
    write(&full, &text);
    let o = bin()
        .args(["plan", "check", "--strict"])
        .arg(&full)
        .output()
        .expect("run");
    assert!(o.status.success(), "a complete plan: {}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    let o = bin()
        .args(["plan", "show"])
        .arg(&full)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let md = String::from_utf8_lossy(&o.stdout);
    for section in [
        "# Post-market monitoring plan: Synthetic consumer credit scoring",
        "## 1. System identity",
        "## 2. Declared performance",
        "| accuracy | 0.7 |",
        "## 7. Actions",
        "| critical | disable | a named person | yes | https://runbooks.example/credit |",
        "## 9. Parties to inform",
        "| Market surveillance authority | AP \\| NL | mailto:ai@ap.example | e-mail to ai@ap.example | 24 h | disable, recall |",
        "## 10. Owners, review and history",
        "content hash `sha256:",
    ] {
        assert!(md.contains(section), "missing {section:?} in:\n{md}");
    }
    assert!(
        md.contains("raw ids &lt;pseudonymised&gt;"),
        "escaped: {md}"
    );
    assert!(!md.contains("## Gaps"), "{md}");

    let bad = dir.path("bad-party.toml");
    write(
        &bad,
        &text.replace(
            "inform_on = [\"disable\", \"recall\"]",
            "inform_on = [\"shutdown\"]",
        ),
    );
    let o = bin()
        .args(["plan", "check"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains("parties[0].inform_on") && stderr(&o).contains("shutdown"),
        "{}",
        stderr(&o)
    );
    // The channels of the notices: each refused value is named with its key.
    for (from, to, key, named) in [
        (
            "contact = \"mailto:ai@ap.example\"",
            "contact = \"mailto:ai-at-ap\"",
            "parties[0].contact",
            "mailto:ai-at-ap",
        ),
        (
            "inform_on = [\"disable\", \"recall\"]",
            "webhook = \"ftp://ap.example/in\"",
            "parties[0].webhook",
            "ftp://ap.example/in",
        ),
        (
            "inform_on = [\"disable\", \"recall\"]",
            "acknowledge_within_h = 0",
            "parties[0].acknowledge_within_h",
            "0 hours",
        ),
    ] {
        let bad = dir.path("bad-channel.toml");
        write(&bad, &text.replace(from, to));
        let o = bin()
            .args(["plan", "check"])
            .arg(&bad)
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(64), "{to}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(key) && stderr(&o).contains(named),
            "{to}: {}",
            stderr(&o)
        );
    }
}
