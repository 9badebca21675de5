//! Realized performance from outcomes that arrive late: the join, the windows of the
//! predictions, provisional and final reports, the declared level, and replay of the
//! same data as CSV (outcomes in a column) and as NDJSON (outcome events).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use driftwatch_detector::alert::performance_alerts;
use driftwatch_detector::driver::file::replay;
use driftwatch_detector::engine::{Input, Monitor};
use driftwatch_detector::perf::{MetricStatus, PerformanceReport, Stage};
use driftwatch_detector::plan::{PerfMetric, Plan, Severity};
use driftwatch_schema::Event;
use serde_json::{json, Value};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0)
        .single()
        .expect("a valid date")
}

/// A seeded generator (xorshift), so expected values are computed here, not by the
/// code under test.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One prediction of the synthetic binary model: its score, the outcome that will come,
/// and whether the model was right.
#[derive(Clone, Copy)]
struct Case {
    score: f64,
    truth: bool,
}

/// `n` predictions; from `worse_from` on, the model is wrong 25% of the time instead
/// of 4%.
fn cases(n: usize, worse_from: usize) -> Vec<Case> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|i| {
            let truth = rng.next() < 0.4;
            let err = if i >= worse_from { 0.25 } else { 0.04 };
            let right = rng.next() >= err;
            let positive = truth == right;
            let score = if positive {
                0.5 + 0.5 * rng.next()
            } else {
                0.5 * rng.next()
            };
            Case {
                score: (score * 1e4).round() / 1e4,
                truth,
            }
        })
        .collect()
}

fn prediction(i: usize, c: &Case) -> Value {
    json!({
        "v": 1, "kind": "prediction", "system_id": "loans", "model_version": "1",
        "event_id": format!("00000000-0000-4000-8000-{:012}", i),
        "prediction_id": format!("p-{i}"),
        "timestamp": (t0() + Duration::seconds(i as i64)).to_rfc3339(),
        "features": {"x": c.score * 10.0},
        "prediction": {"score": c.score},
    })
}

fn outcome(n: usize, id: &str, at: DateTime<Utc>, label: &str) -> Value {
    json!({
        "v": 1, "kind": "outcome", "system_id": "loans",
        "event_id": format!("00000000-0000-4000-9000-{:012}", n),
        "prediction_id": id,
        "timestamp": at.to_rfc3339(),
        "outcome": {"label": label},
    })
}

const PLAN: &str = r#"
[system]
id = "loans"

[reference]
first_events = 200

[window]
size = 100

[features.x]
type = "numeric"

[prediction.score]

[performance]
task = "binary"
horizon_s = 1000
declared = { accuracy = 0.9 }
thresholds.recall = { warning = 0.8, critical = 0.6 }
"#;

fn plan() -> Arc<Plan> {
    Arc::new(Plan::from_toml(PLAN, "plan.toml", PathBuf::new()).expect("plan"))
}

/// The stream: prediction i at t0+i s; its outcome 300 s later, except every 50th
/// (from 7) never comes and every 97th (from 3) first comes wrong (at +300 s), then
/// right (at +400 s). Five outcomes name unknown predictions, three carry a label that
/// is neither class. Events are in timestamp order, as a consumer reads them.
fn stream(cs: &[Case]) -> Vec<Value> {
    let mut timed: Vec<(DateTime<Utc>, usize, Value)> = Vec::new();
    let push = |at: DateTime<Utc>, v: Value, timed: &mut Vec<(DateTime<Utc>, usize, Value)>| {
        let n = timed.len();
        timed.push((at, n, v));
    };
    for (i, c) in cs.iter().enumerate() {
        let at = t0() + Duration::seconds(i as i64);
        push(at, prediction(i, c), &mut timed);
        if i < 200 || i % 50 == 7 {
            continue;
        }
        let label = if c.truth { "1" } else { "0" };
        let wrong = if c.truth { "0" } else { "1" };
        let id = format!("p-{i}");
        if i % 97 == 3 {
            let v = outcome(timed.len(), &id, at + Duration::seconds(300), wrong);
            push(at + Duration::seconds(300), v, &mut timed);
            let v = outcome(timed.len(), &id, at + Duration::seconds(400), label);
            push(at + Duration::seconds(400), v, &mut timed);
        } else {
            let v = outcome(timed.len(), &id, at + Duration::seconds(300), label);
            push(at + Duration::seconds(300), v, &mut timed);
        }
    }
    for j in 0..5 {
        let at = t0() + Duration::seconds(500 + j * 100);
        let v = outcome(900_000 + j as usize, &format!("nobody-{j}"), at, "1");
        push(at, v, &mut timed);
    }
    for j in 0..3 {
        let at = t0() + Duration::seconds(600 + j * 100);
        let v = outcome(910_000 + j as usize, &format!("p-{}", 400 + j), at, "maybe");
        push(at, v, &mut timed);
    }
    timed.sort_by_key(|(at, n, _)| (*at, *n));
    timed.into_iter().map(|(_, _, v)| v).collect()
}

/// Accuracy and recall of window k (predictions 200 + 100k ..) over the predictions
/// whose outcome arrives, computed from the cases.
fn expected(cs: &[Case], k: usize) -> (usize, f64, Option<f64>) {
    let (mut n, mut right, mut tp, mut pos) = (0, 0, 0, 0);
    for (i, &c) in cs.iter().enumerate().skip(200 + 100 * k).take(100) {
        if i % 50 == 7 {
            continue;
        }
        let predicted = c.score >= 0.5;
        n += 1;
        right += usize::from(predicted == c.truth);
        pos += usize::from(c.truth);
        tp += usize::from(c.truth && predicted);
    }
    let recall = (pos > 0).then(|| tp as f64 / pos as f64);
    (n, right as f64 / n as f64, recall)
}

fn metric(r: &PerformanceReport, m: PerfMetric) -> &driftwatch_detector::perf::MetricResult {
    r.metrics.iter().find(|x| x.metric == m).expect("metric")
}

fn run_monitor(events: &[Value]) -> (Vec<PerformanceReport>, Monitor) {
    let mut m = Monitor::new(plan(), None);
    let mut reports = Vec::new();
    for v in events {
        let e = Event::from_wire(&serde_json::to_vec(v).expect("valid test input"))
            .expect("a valid event");
        reports.extend(m.observe(Input::Event(&e)).performance);
    }
    reports.extend(m.finish_performance());
    (reports, m)
}

#[test]
fn late_outcomes_join_the_windows_of_their_predictions() {
    let cs = cases(2200, usize::MAX);
    let (reports, m) = run_monitor(&stream(&cs));
    let counts = m.performance().expect("tracker").counts();
    // 2000 monitored predictions; every 50th never gets an outcome.
    let joined = (200..2200).filter(|i| i % 50 != 7).count() as u64;
    let replaced = (200..2200).filter(|i| i % 50 != 7 && i % 97 == 3).count() as u64;
    assert_eq!(counts.joined, joined);
    assert_eq!(counts.replaced, replaced);
    // Five unknown ids; the reference's predictions are not in the join either.
    assert_eq!(counts.orphaned, 5);
    assert_eq!(counts.invalid, 3);
    assert_eq!(counts.expired, 0);
    assert_eq!(counts.evicted, 0);

    let mut by_window: BTreeMap<i64, Vec<&PerformanceReport>> = BTreeMap::new();
    for r in &reports {
        by_window.entry(r.window.index).or_default().push(r);
    }
    // The last event is the corrected outcome of prediction 2137, at t0+2537 s: windows
    // whose last prediction (200+100k+99) is 1000 s before that are final: k <= 12.
    // The others end with the provisional report at the end of input.
    for k in 0..20i64 {
        let rs = &by_window[&k];
        // At close no outcome of the window has arrived (they lag 300 predictions).
        let first = rs[0];
        assert_eq!(first.stage, Stage::Provisional, "window {k}");
        assert_eq!(first.window.events, 100);
        assert_eq!(first.window.outcomes, 0, "window {k} at close");
        assert!(first
            .metrics
            .iter()
            .all(|x| x.status == MetricStatus::Insufficient && x.severity == Severity::Ok));
        // Judged once half the outcomes are in, then at each tenth.
        let judged: Vec<_> = rs[1..]
            .iter()
            .filter(|r| r.stage == Stage::Provisional)
            .collect();
        assert!(!judged.is_empty(), "window {k}");
        assert!(
            judged[0].coverage >= 0.5 && judged[0].coverage < 0.6,
            "window {k}"
        );
        let last = rs.last().expect("valid test input");
        let (n, accuracy, recall) = expected(&cs, k as usize);
        assert_eq!(last.window.outcomes, n, "window {k}");
        assert!((last.coverage - n as f64 / 100.0).abs() < 1e-12);
        let acc = metric(last, PerfMetric::Accuracy);
        // The CBPE estimate made at close stands beside the realized value.
        let (value, estimate) = (acc.value.expect("value"), acc.estimate.expect("estimate"));
        assert_eq!(acc.estimate_gap, Some(value - estimate));
        assert_eq!(
            last.estimated
                .iter()
                .find(|e| e.metric == PerfMetric::Accuracy)
                .and_then(|e| e.value),
            Some(estimate)
        );
        assert!(
            (acc.value.expect("valid test input") - accuracy).abs() < 1e-12,
            "window {k}: {acc:?} vs {accuracy}"
        );
        assert_eq!(
            metric(last, PerfMetric::Recall)
                .value
                .map(|v| (v * 1e12).round()),
            recall.map(|v| (v * 1e12).round())
        );
        let finals = rs.iter().filter(|r| r.stage == Stage::Final).count();
        assert_eq!(finals, usize::from(k <= 12), "window {k}");
        assert_eq!(last.stage == Stage::Final, k <= 12, "window {k}");
    }
    assert!(
        reports.iter().all(|r| r.severity == Severity::Ok),
        "the model is good throughout"
    );
}

#[test]
fn a_final_window_below_the_declared_accuracy_is_critical_and_says_so() {
    // From prediction 1200 on (window 10) the model is wrong a quarter of the time.
    let cs = cases(3200, 1200);
    let (reports, _) = run_monitor(&stream(&cs));
    // Realized performance only: this model's scores are not probabilities (CBPE,
    // uncalibrated without reference outcomes, is tested on its own below).
    let mut alerts = Vec::new();
    for r in &reports {
        alerts.extend(
            performance_alerts(r, Severity::Warning)
                .into_iter()
                .filter(|a| a.kind == driftwatch_schema::AlertKind::Performance),
        );
    }
    let declared: Vec<_> = alerts
        .iter()
        .filter(|a| a.method == "accuracy" && a.severity == Severity::Critical)
        .collect();
    assert!(!declared.is_empty(), "no declared-level alert: {alerts:#?}");
    for a in &declared {
        assert!(a.window.index >= 10, "{a:?}");
        assert!(
            a.alert_id.ends_with("/performance/accuracy/final/critical"),
            "{}",
            a.alert_id
        );
        assert!(
            a.summary
                .contains("below the accuracy declared in the instructions for use: 0."),
            "{}",
            a.summary
        );
        assert!(a.summary.contains("< 0.9000"), "{}", a.summary);
        assert_eq!(a.kind, driftwatch_schema::AlertKind::Performance);
        assert_eq!(a.threshold, 0.9);
    }
    // Good windows raise nothing; a provisional window is never judged against the
    // declared level (only final ones are).
    assert!(alerts.iter().all(|a| a.window.index >= 10), "{alerts:#?}");
    for r in &reports {
        if r.stage == Stage::Provisional {
            assert!(r.metrics.iter().all(|m| !m.below_declared));
        }
    }
    // Each (window, metric, stage, severity) alert is raised once.
    let mut ids: Vec<_> = alerts.iter().map(|a| a.alert_id.clone()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "an alert raised twice");
}

#[test]
fn replay_of_csv_outcomes_equals_replay_of_outcome_events() {
    let cs = cases(1400, 700);
    let dir = std::env::temp_dir().join(format!("dw-perf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("valid test input");
    let plan_path = dir.join("plan.toml");
    std::fs::write(
        &plan_path,
        format!("{PLAN}\n[csv]\nprediction_id = \"id\"\n"),
    )
    .expect("valid test input");
    // NDJSON: each outcome right after its prediction; CSV: in the row.
    let mut nd = String::new();
    let mut csv = String::from("id,timestamp,x,score,outcome\n");
    for (i, c) in cs.iter().enumerate() {
        let at = t0() + Duration::seconds(i as i64);
        nd += &prediction(i, c).to_string();
        nd.push('\n');
        let label = if c.truth { "1" } else { "0" };
        if i >= 200 {
            nd += &outcome(i, &format!("p-{i}"), at, label).to_string();
            nd.push('\n');
        }
        csv += &format!(
            "p-{i},{},{},{},{}\n",
            at.to_rfc3339(),
            c.score * 10.0,
            c.score,
            if i >= 200 { label } else { "" }
        );
    }
    std::fs::write(dir.join("events.ndjson"), nd).expect("valid test input");
    std::fs::write(dir.join("events.csv"), csv).expect("valid test input");
    let plan = Arc::new(Plan::from_file(&plan_path).expect("valid test input"));
    let last_per_window = |file: &str| {
        let mut out = Vec::new();
        let s = replay(plan.clone(), None, &dir.join(file), &mut out).expect("replay");
        let mut last: BTreeMap<i64, Value> = BTreeMap::new();
        for line in String::from_utf8(out).expect("valid test input").lines() {
            let v: Value = serde_json::from_str(line).expect("valid test input");
            if v["kind"] == "performance" {
                last.insert(
                    v["window"]["index"].as_i64().expect("valid test input"),
                    v["metrics"].clone(),
                );
            }
        }
        (s, last)
    };
    let (s_nd, nd) = last_per_window("events.ndjson");
    let (s_csv, csv) = last_per_window("events.csv");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(nd.len(), 12, "twelve windows after the reference");
    assert_eq!(nd, csv, "the same metrics per window");
    assert_eq!(s_nd.join.expect("valid test input").joined, 1200);
    assert_eq!(s_csv.join.expect("valid test input").joined, 1200);
    // The model got worse at prediction 700: window 5 on.
    let acc = |m: &Value| {
        m.as_array()
            .expect("valid test input")
            .iter()
            .find(|x| x["metric"] == "accuracy")
            .expect("valid test input")["value"]
            .as_f64()
            .expect("valid test input")
    };
    assert!(
        acc(&nd[&0]) > 0.9 && acc(&nd[&11]) < 0.85,
        "{} {}",
        acc(&nd[&0]),
        acc(&nd[&11])
    );
}

#[test]
fn a_monitor_restored_from_its_snapshot_reports_as_one_that_never_stopped() {
    let cs = cases(2600, 1300);
    let events: Vec<Event> = stream(&cs)
        .iter()
        .map(|v| {
            Event::from_wire(&serde_json::to_vec(v).expect("valid test input"))
                .expect("valid test input")
        })
        .collect();
    // Uninterrupted, keeping the reference it froze.
    let mut m = Monitor::new(plan(), None);
    let mut want = Vec::new();
    let mut reference = None;
    for e in &events {
        let step = m.observe(Input::Event(e));
        if let Some(r) = step.reference_frozen {
            reference = Some((*r).clone());
        }
        want.extend(step.performance);
    }
    want.extend(m.finish_performance());
    let reference = reference.expect("a reference was frozen");
    // Stopped every 700 events: a new monitor restores the snapshot and goes on.
    let mut got = Vec::new();
    let mut m = Monitor::new(plan(), None);
    let mut sizes = Vec::new();
    for (i, e) in events.iter().enumerate() {
        got.extend(m.observe(Input::Event(e)).performance);
        if i % 700 == 699 && m.reference().is_some() {
            let (version, bytes) = m.snapshot().expect("a snapshot");
            sizes.push(bytes.len());
            let mut fresh = Monitor::new(plan(), Some(reference.clone()));
            fresh.restore(&version, &bytes).expect("restored");
            let pending = |m: &Monitor| m.performance().expect("valid test input").counts();
            assert_eq!(pending(&fresh), pending(&m), "counters survive");
            m = fresh;
        }
    }
    got.extend(m.finish_performance());
    assert!(sizes.len() >= 4, "{sizes:?}");
    let json = |r: &[PerformanceReport]| serde_json::to_value(r).expect("valid test input");
    assert_eq!(json(&got), json(&want));
    // The alerts, too: nothing raised twice or lost across the restarts.
    let ids = |r: &[PerformanceReport]| {
        r.iter()
            .flat_map(|r| performance_alerts(r, Severity::Warning))
            .map(|a| a.alert_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&got), ids(&want));
    assert!(!ids(&want).is_empty());

    // A damaged snapshot is refused and leaves the monitor as it was.
    let (version, mut bytes) = m.snapshot().expect("a snapshot");
    bytes.truncate(bytes.len() - 5);
    let mut other = Monitor::new(plan(), Some(reference));
    let before = other.performance().expect("valid test input").counts();
    assert!(other.restore(&version, &bytes).is_err());
    assert_eq!(
        other.performance().expect("valid test input").counts(),
        before
    );
    assert_eq!(
        other.snapshot().map(|s| s.1.len()),
        Monitor::new(
            plan(),
            Some(other.reference().expect("valid test input").clone())
        )
        .snapshot()
        .map(|s| s.1.len())
    );
}

const SEGMENT_PLAN: &str = r#"
[system]
id = "loans"

[reference]
first_events = 200

[window]
size = 1000

[features.x]
type = "numeric"

[features.region]
type = "categorical"

[prediction.score]

[performance]
task = "binary"
horizon_s = 100000
segments = ["segment.channel", "features.region"]
min_cell = 100
max_segment_values = 3
gap.recall = { warning = 0.05, critical = 0.2 }
"#;

/// Predictions tagged with a channel: "branch" misses positives far more often than
/// "web" and "app"; "phone" is rare (under the cell minimum). Region has five values,
/// two past the cap. Every outcome comes with its prediction.
fn segmented_stream(n: usize) -> Vec<Event> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut out = Vec::new();
    for i in 0..n {
        let channel = match i % 20 {
            0 => "phone",
            1..=7 => "branch",
            8..=13 => "web",
            _ => "app",
        };
        // Independent of the channel (so regions do not differ).
        let region = ["north", "south", "east", "west", "islands"][(rng.next() * 5.0) as usize];
        let truth = rng.next() < 0.5;
        let miss = if channel == "branch" { 0.35 } else { 0.05 };
        let positive = if truth {
            rng.next() >= miss
        } else {
            rng.next() < 0.05
        };
        let score = if positive { 0.75 } else { 0.25 };
        let at = t0() + Duration::seconds(i as i64);
        let mut p = prediction(i, &Case { score, truth });
        p["segment"] = json!({ "channel": channel });
        p["features"]["region"] = json!(region);
        out.push(p);
        if i >= 200 {
            out.push(outcome(
                i,
                &format!("p-{i}"),
                at,
                if truth { "1" } else { "0" },
            ));
        }
    }
    out.iter()
        .map(|v| {
            Event::from_wire(&serde_json::to_vec(v).expect("valid test input"))
                .expect("valid test input")
        })
        .collect()
}

#[test]
fn groups_of_people_get_their_own_numbers_small_ones_none_and_the_gap_is_a_check() {
    let plan = Arc::new(
        Plan::from_toml(SEGMENT_PLAN, "plan.toml", PathBuf::new()).expect("valid test input"),
    );
    let mut m = Monitor::new(plan, None);
    let mut reports = Vec::new();
    for e in segmented_stream(3200) {
        reports.extend(m.observe(Input::Event(&e)).performance);
    }
    reports.extend(m.finish_performance());
    // The last report of window 0 (predictions 200..1199, every outcome in).
    let r = reports
        .iter()
        .rev()
        .find(|r| r.window.index == 0)
        .expect("window 0");
    assert_eq!(r.window.outcomes, 1000);
    let cell = |key: &str, value: &str| {
        r.segments
            .iter()
            .find(|s| s.key == key && s.value == value)
            .unwrap_or_else(|| panic!("{key}={value}: {:#?}", r.segments))
    };
    // 50 phone predictions: no number at all.
    let phone = cell("segment.channel", "phone");
    assert_eq!(phone.status, MetricStatus::Insufficient);
    assert!(phone.metrics.is_empty() && phone.predictions.is_none() && phone.outcomes.is_none());
    let branch = cell("segment.channel", "branch");
    let web = cell("segment.channel", "web");
    assert_eq!(branch.status, MetricStatus::Evaluated);
    assert_eq!(branch.outcomes, Some(350));
    let recall = |c: &driftwatch_detector::perf::SegmentResult| c.metrics[&PerfMetric::Recall];
    assert!(
        recall(branch) < 0.75 && recall(web) > 0.9,
        "{} {}",
        recall(branch),
        recall(web)
    );
    // Region: three values kept, the rest pooled as "other" (islands and west).
    let regions: Vec<&str> = r
        .segments
        .iter()
        .filter(|s| s.key == "features.region")
        .map(|s| s.value.as_str())
        .collect();
    assert_eq!(regions.len(), 4, "{regions:?}");
    assert!(regions.contains(&"other"));
    let other = cell("features.region", "other")
        .outcomes
        .expect("valid test input");
    assert!(
        (300..500).contains(&other),
        "{other} of 1000 in two of five regions"
    );
    // The recall gap between channels (about 0.3): critical, naming both ends.
    let gap = r
        .gaps
        .iter()
        .find(|g| g.key == "segment.channel" && g.metric == PerfMetric::Recall)
        .expect("gap");
    assert_eq!(gap.severity, Severity::Critical, "{gap:?}");
    assert_eq!(gap.worst.as_ref().expect("valid test input").0, "branch");
    let alerts: Vec<_> = reports
        .iter()
        .flat_map(|r| performance_alerts(r, Severity::Warning))
        .filter(|a| a.signal == "performance[segment.channel]")
        .collect();
    assert!(!alerts.is_empty());
    assert!(
        alerts[0]
            .summary
            .contains("between groups of segment.channel"),
        "{}",
        alerts[0].summary
    );
    assert!(
        alerts[0].summary.contains("branch"),
        "{}",
        alerts[0].summary
    );
    // Regions do not differ beyond sampling noise (200 outcomes each): never critical.
    assert!(reports
        .iter()
        .flat_map(|r| &r.gaps)
        .filter(|g| g.key == "features.region")
        .all(|g| g.severity < Severity::Critical));
}

#[test]
fn segments_survive_a_snapshot() {
    let plan = || {
        Arc::new(
            Plan::from_toml(SEGMENT_PLAN, "plan.toml", PathBuf::new()).expect("valid test input"),
        )
    };
    let events = segmented_stream(2600);
    let mut m = Monitor::new(plan(), None);
    let mut want = Vec::new();
    let mut reference = None;
    for e in &events {
        let step = m.observe(Input::Event(e));
        reference = reference.or(step.reference_frozen.map(|r| (*r).clone()));
        want.extend(step.performance);
    }
    want.extend(m.finish_performance());
    let mut m = Monitor::new(plan(), None);
    let mut got = Vec::new();
    for (i, e) in events.iter().enumerate() {
        got.extend(m.observe(Input::Event(e)).performance);
        if i % 900 == 899 {
            let (v, bytes) = m.snapshot().expect("snapshot");
            let mut fresh = Monitor::new(plan(), reference.clone());
            fresh.restore(&v, &bytes).expect("restore");
            m = fresh;
        }
    }
    got.extend(m.finish_performance());
    assert_eq!(
        serde_json::to_value(&got).expect("valid test input"),
        serde_json::to_value(&want).expect("valid test input")
    );
}

#[test]
fn at_the_memory_budget_the_oldest_prediction_is_evicted_and_counted() {
    let text = PLAN.replace(
        "horizon_s = 1000",
        "horizon_s = 1000000\nmemory_budget_mib = 1",
    );
    let plan =
        Arc::new(Plan::from_toml(&text, "plan.toml", PathBuf::new()).expect("valid test input"));
    let cap = plan
        .performance
        .as_ref()
        .expect("valid test input")
        .max_pending();
    assert_eq!(cap, (1 << 20) / 46);
    let cs = cases(cap + 5200, usize::MAX);
    let mut m = Monitor::new(plan, None);
    for (i, c) in cs.iter().enumerate() {
        let e = Event::from_wire(&serde_json::to_vec(&prediction(i, c)).expect("valid test input"))
            .expect("valid test input");
        m.observe(Input::Event(&e));
    }
    let counts = m.performance().expect("valid test input").counts();
    // 200 reference predictions are not in the join; the next 5000 were evicted.
    assert_eq!(counts.pending as usize, cap);
    assert_eq!(counts.evicted, 5000);
    // The outcome of an evicted prediction is expired; of a kept one, joined.
    for (n, i) in [(1, 300), (2, 6000)] {
        let at = t0() + Duration::seconds(10_000_000);
        let o = Event::from_wire(
            &serde_json::to_vec(&outcome(n, &format!("p-{i}"), at, "1")).expect("valid test input"),
        )
        .expect("valid test input");
        m.observe(Input::Event(&o));
    }
    let counts = m.performance().expect("valid test input").counts();
    assert_eq!((counts.expired, counts.joined), (1, 1));
}

#[test]
fn levels_learned_from_reference_windows_with_outcomes() {
    // A reference file of 5000 predictions with outcomes; windows of 500.
    let cs = cases(5000 + 4000, 5000 + 2000);
    let dir = std::env::temp_dir().join(format!("dw-perf-learned-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("valid test input");
    let row = |i: usize, c: &Case, outcome: bool| {
        format!(
            "p-{i},{},{},{},{}\n",
            (t0() + Duration::seconds(i as i64)).to_rfc3339(),
            c.score * 10.0,
            c.score,
            if outcome {
                if c.truth {
                    "1"
                } else {
                    "0"
                }
            } else {
                ""
            }
        )
    };
    let header = "id,timestamp,x,score,outcome\n";
    let mut reference = String::from(header);
    let mut events = String::from(header);
    for (i, c) in cs.iter().enumerate() {
        if i < 5000 {
            reference += &row(i, c, true);
        } else {
            events += &row(i, c, true);
        }
    }
    std::fs::write(dir.join("reference.csv"), reference).expect("valid test input");
    std::fs::write(dir.join("events.csv"), events).expect("valid test input");
    let text = PLAN
        .replace("first_events = 200", "file = \"reference.csv\"")
        .replace("size = 100", "size = 500")
        .replace(
            "thresholds.recall = { warning = 0.8, critical = 0.6 }",
            "thresholds.accuracy = { learned = true }\nthresholds.recall = { learned = true, warning_k = 1, critical_k = 2 }",
        )
        + "\n[csv]\nprediction_id = \"id\"\n";
    std::fs::write(dir.join("plan.toml"), text).expect("valid test input");
    let plan = Arc::new(Plan::from_file(&dir.join("plan.toml")).expect("valid test input"));
    let reference = driftwatch_detector::reference_store::build_from_file(
        &plan,
        &dir.join("reference.csv"),
        "test".into(),
    )
    .expect("valid test input");
    let perf = reference
        .performance
        .clone()
        .expect("reference performance");
    assert_eq!(perf.pairs, 5000);
    let acc = &perf.learned[&PerfMetric::Accuracy];
    assert_eq!(acc.windows, 10);
    // By hand: accuracy of each reference window of 500, mean - 2/3 sd.
    let per_window: Vec<f64> = (0..10)
        .map(|w| {
            cs[w * 500..(w + 1) * 500]
                .iter()
                .filter(|c| (c.score >= 0.5) == c.truth)
                .count() as f64
                / 500.0
        })
        .collect();
    let mean = per_window.iter().sum::<f64>() / 10.0;
    let sd = (per_window.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 10.0).sqrt();
    assert!((acc.mean - mean).abs() < 1e-12 && (acc.std - sd).abs() < 1e-12);
    assert!((acc.warning.expect("valid test input") - (mean - 2.0 * sd)).abs() < 1e-12);
    assert!((acc.critical.expect("valid test input") - (mean - 3.0 * sd)).abs() < 1e-12);
    let recall = &perf.learned[&PerfMetric::Recall];
    assert!(recall.critical.expect("valid test input") < recall.warning.expect("valid test input"));

    let mut out = Vec::new();
    replay(plan, None, &dir.join("events.csv"), &mut out).expect("valid test input");
    std::fs::remove_dir_all(&dir).ok();
    let reports: Vec<PerformanceReport> = String::from_utf8(out)
        .expect("valid test input")
        .lines()
        .filter(|l| l.contains("\"kind\":\"performance\""))
        .map(|l| serde_json::from_str(l).expect("valid test input"))
        .collect();
    let verdict = |k: i64| {
        let r = reports
            .iter()
            .rev()
            .find(|r| r.window.index == k)
            .expect("valid test input");
        let m = metric(r, PerfMetric::Accuracy);
        assert_eq!(
            m.thresholds,
            driftwatch_detector::engine::ThresholdOrigin::Learned
        );
        m.severity
    };
    // Windows 0-3 before the model got worse; 4-7 after (accuracy 0.96 -> 0.75).
    assert!((0..4).all(|k| verdict(k) < Severity::Critical));
    assert!((4..8).all(|k| verdict(k) == Severity::Critical));
}

#[test]
fn sliding_and_event_time_windows_count_an_outcome_in_every_window_of_its_prediction() {
    let cs = cases(2200, 1400);
    for (window, what) in [
        ("size = 200\nslide = 100", "sliding count windows"),
        (
            "kind = \"time\"\nduration_s = 200\nslide_s = 100",
            "sliding time windows",
        ),
    ] {
        let text = PLAN.replace("size = 100", window);
        let plan = Arc::new(Plan::from_toml(&text, "plan.toml", PathBuf::new()).expect("plan"));
        let mut m = Monitor::new(plan, None);
        let mut reports = Vec::new();
        for v in stream(&cs) {
            let e = Event::from_wire(&serde_json::to_vec(&v).expect("json")).expect("event");
            reports.extend(m.observe(Input::Event(&e)).performance);
        }
        reports.extend(m.finish_performance());
        let mut checked = 0;
        for r in reports.iter().filter(|r| r.stage == Stage::Final) {
            // The predictions of the window, by position (count: after the 200 of the
            // reference; time: seconds from t0).
            let k = r.window.index;
            let (from, to) = if what.contains("count") {
                (200 + 100 * k as usize, 400 + 100 * k as usize)
            } else {
                let start = (r.window.start.expect("start") - t0()).num_seconds() as usize;
                (start.max(200), start + 200)
            };
            let joined: Vec<usize> = (from..to.min(cs.len())).filter(|i| i % 50 != 7).collect();
            let right = joined
                .iter()
                .filter(|&&i| (cs[i].score >= 0.5) == cs[i].truth)
                .count();
            assert_eq!(r.window.outcomes, joined.len(), "{what} window {k}");
            let acc = metric(r, PerfMetric::Accuracy).value.expect("accuracy");
            assert!(
                (acc - right as f64 / joined.len() as f64).abs() < 1e-12,
                "{what} window {k}"
            );
            checked += 1;
        }
        assert!(checked >= 10, "{what}: {checked} final windows");
    }
}

/// A plan for `task` reading `[prediction.<signal>]`, count windows of 100, outcomes
/// within 10 s, every outcome in the same event order.
fn run_task(
    task: &str,
    signal: &str,
    extra: &str,
    events: &[Value],
) -> (Vec<PerformanceReport>, Monitor) {
    let text = format!(
        "[system]\nid = \"loans\"\n[reference]\nfirst_events = 50\n[window]\nsize = 100\n[prediction.{signal}]\n[performance]\ntask = \"{task}\"\nhorizon_s = 10\n{extra}\n"
    );
    let plan = Arc::new(Plan::from_toml(&text, "plan.toml", PathBuf::new()).expect("plan"));
    let mut m = Monitor::new(plan, None);
    let mut out = Vec::new();
    for v in events {
        let e = Event::from_wire(&serde_json::to_vec(v).expect("json")).expect("event");
        out.extend(m.observe(Input::Event(&e)).performance);
    }
    out.extend(m.finish_performance());
    (out, m)
}

fn event(i: usize, kind: &str, body: Value) -> Value {
    let mut v = json!({
        "v": 1, "kind": kind, "system_id": "loans", "model_version": "1",
        "event_id": format!("00000000-0000-4000-{}-{i:012}", if kind == "outcome" { 9000 } else { 8000 }),
        "prediction_id": format!("p-{i}"),
        "timestamp": (t0() + Duration::seconds(i as i64)).to_rfc3339(),
    });
    if kind == "prediction" {
        v["features"] = json!({});
        v["prediction"] = body;
    } else {
        v.as_object_mut().map(|o| o.remove("model_version"));
        v["outcome"] = body;
    }
    v
}

#[test]
fn multiclass_and_regression_outcomes_join_like_binary_ones() {
    let classes = ["low", "mid", "high", "veto"];
    let mut rng = Rng(77);
    let mut events = Vec::new();
    let mut truth = Vec::new();
    for i in 0..650 {
        let t = classes[(rng.next() * 4.0) as usize];
        let p = if rng.next() < 0.7 {
            t
        } else {
            classes[(rng.next() * 4.0) as usize]
        };
        events.push(event(i, "prediction", json!({ "label": p })));
        events.push(event(i, "outcome", json!({ "label": t })));
        truth.push((p, t));
    }
    // A fifth class past max_classes = 4: counted invalid, never joined.
    events.push(event(650, "prediction", json!({ "label": "low" })));
    events.push(event(650, "outcome", json!({ "label": "other-class" })));
    let (reports, m) = run_task("multiclass", "label", "max_classes = 4", &events);
    let counts = m.performance().expect("tracker").counts();
    assert_eq!((counts.joined, counts.invalid), (600, 1));
    for k in 0..6usize {
        let r = reports
            .iter()
            .rev()
            .find(|r| r.window.index == k as i64)
            .expect("report");
        let window = &truth[50 + 100 * k..150 + 100 * k];
        let right = window.iter().filter(|(p, t)| p == t).count();
        let acc = metric(r, PerfMetric::Accuracy).value.expect("accuracy");
        assert!((acc - right as f64 / 100.0).abs() < 1e-12, "window {k}");
        assert!(metric(r, PerfMetric::F1Macro).value.is_some());
    }

    let mut events = Vec::new();
    let mut pairs = Vec::new();
    for i in 0..650 {
        let y = 100.0 + 20.0 * rng.next();
        let v = y + 5.0 * (rng.next() - 0.5);
        events.push(event(i, "prediction", json!({ "value": v })));
        events.push(event(i, "outcome", json!({ "value": y })));
        pairs.push((v, y));
    }
    let (reports, _) = run_task("regression", "value", "", &events);
    for k in 0..6usize {
        let r = reports
            .iter()
            .rev()
            .find(|r| r.window.index == k as i64)
            .expect("report");
        let mae = pairs[50 + 100 * k..150 + 100 * k]
            .iter()
            .map(|(v, y)| (y - v).abs())
            .sum::<f64>()
            / 100.0;
        let got = metric(r, PerfMetric::Mae).value.expect("mae");
        assert!((got - mae).abs() < 1e-9, "window {k}: {got} vs {mae}");
        assert!(metric(r, PerfMetric::R2).value.is_some());
    }
}

const SEGMENT_DRIFT_PLAN: &str = r#"
[system]
id = "loans"

[reference]
first_events = 2000

[window]
size = 1000

[features.x]
type = "numeric"
checks = ["ks"]

[features.region]
type = "categorical"
checks = ["chi2"]

[prediction.score]
checks = ["ks"]

[performance]
task = "binary"
segments = ["features.region"]
segment_drift = true
"#;

/// Predictions of three regions with x ~ N(0, 1); from prediction 3000 on, the south's
/// x moves by 0.8 sd, and a fourth region, never in the reference, appears.
fn regional_stream(n: usize) -> Vec<Event> {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut out = Vec::new();
    for i in 0..n {
        let u = rng.next();
        let region = if i >= 3000 && u < 0.05 {
            "islands"
        } else {
            ["north", "south", "east"][(rng.next() * 3.0) as usize]
        };
        // Box-Muller from two uniforms.
        let z = (-2.0 * rng.next().max(1e-300).ln()).sqrt()
            * (2.0 * std::f64::consts::PI * rng.next()).cos();
        let x = z + if i >= 3000 && region == "south" {
            0.8
        } else {
            0.0
        };
        let mut p = prediction(
            i,
            &Case {
                score: 0.5,
                truth: true,
            },
        );
        p["features"] = json!({ "x": x, "region": region });
        out.push(Event::from_wire(&serde_json::to_vec(&p).expect("json")).expect("event"));
    }
    out
}

#[test]
fn drift_per_group_compares_each_group_with_its_own_reference() {
    let plan = || {
        Arc::new(Plan::from_toml(SEGMENT_DRIFT_PLAN, "plan.toml", PathBuf::new()).expect("plan"))
    };
    let events = regional_stream(6000);
    let mut m = Monitor::new(plan(), None);
    let mut reports = Vec::new();
    let mut reference = None;
    for e in &events {
        let step = m.observe(Input::Event(e));
        reference = reference.or(step.reference_frozen.map(|r| (*r).clone()));
        reports.extend(step.reports);
    }
    let reference = reference.expect("frozen");
    assert_eq!(
        reference.segments.keys().collect::<Vec<_>>(),
        [
            "features.region=east",
            "features.region=north",
            "features.region=south"
        ]
    );
    let group = |r: &driftwatch_detector::engine::WindowReport, value: &str| {
        r.segments
            .iter()
            .find(|s| s.value == value)
            .cloned()
            .unwrap_or_else(|| panic!("{value} in window {}", r.window.index))
    };
    let ks = |g: &driftwatch_detector::engine::SegmentDrift| {
        g.checks
            .iter()
            .find(|c| c.signal == "x")
            .map(|c| c.severity)
            .expect("x/ks")
    };
    // Window 0 (predictions 2000-2999): nothing moved.
    assert!(
        reports[0]
            .segments
            .iter()
            .all(|g| g.severity == Severity::Ok),
        "{:#?}",
        reports[0].segments
    );
    // Windows 1-3: the south drifted on x, the north did not; the islands have no
    // reference to compare with.
    for r in &reports[1..4] {
        assert_eq!(
            ks(&group(r, "south")),
            Severity::Critical,
            "window {}",
            r.window.index
        );
        assert_eq!(
            ks(&group(r, "north")),
            Severity::Ok,
            "window {}",
            r.window.index
        );
        let islands = group(r, "islands");
        assert!(islands.no_reference && islands.checks.is_empty());
    }
    let alerts: Vec<_> = reports
        .iter()
        .flat_map(|r| driftwatch_detector::alert::alerts_for(r, Severity::Warning))
        .collect();
    assert!(alerts
        .iter()
        .any(|a| a.signal == "x[features.region=south]" && a.severity == Severity::Critical));
    assert!(!alerts
        .iter()
        .any(|a| a.signal == "x[features.region=north]" && a.severity == Severity::Critical));

    // Stopped and restored mid-window: the same reports, groups included.
    let mut m = Monitor::new(plan(), None);
    let mut got = Vec::new();
    for (i, e) in events.iter().enumerate() {
        got.extend(m.observe(Input::Event(e)).reports);
        if i > 2000 && i % 700 == 0 {
            let (v, bytes) = m.snapshot().expect("snapshot");
            let mut fresh = Monitor::new(plan(), Some(reference.clone()));
            fresh.restore(&v, &bytes).expect("restore");
            m = fresh;
        }
    }
    assert_eq!(
        serde_json::to_value(&got).expect("json"),
        serde_json::to_value(&reports).expect("json")
    );
}

/// The gauges and counters the README lists follow the performance reports.
#[test]
fn performance_reports_reach_the_metrics() {
    let text = SEGMENT_PLAN.replace(
        "segments = [\"segment.channel\", \"features.region\"]",
        "segments = [\"segment.channel\"]",
    ) + "declared = { accuracy = 0.9 }\n";
    let plan = Arc::new(Plan::from_toml(&text, "plan.toml", PathBuf::new()).expect("plan"));
    let mut m = Monitor::new(plan, None);
    let registry = prometheus::Registry::new();
    let metrics = driftwatch_detector::metrics::DetectorMetrics::new(&registry).expect("metrics");
    for e in segmented_stream(2600) {
        for r in m.observe(Input::Event(&e)).performance {
            metrics.record_performance(&r);
        }
    }
    for r in m.finish_performance() {
        metrics.record_performance(&r);
    }
    let page = driftwatch_common::health::render(&registry);
    for series in [
        "driftwatch_performance{metric=\"accuracy\",stage=\"provisional\",system=\"loans\"}",
        "driftwatch_performance_declared{metric=\"accuracy\",system=\"loans\"} 0.9",
        "driftwatch_performance_severity{metric=\"recall\",system=\"loans\"}",
        "driftwatch_performance_coverage{stage=\"provisional\",system=\"loans\"}",
        "driftwatch_performance_gap{metric=\"recall\",segment_key=\"segment.channel\",system=\"loans\"}",
        "driftwatch_outcomes_total{result=\"joined\",system=\"loans\"} 2400",
        "driftwatch_predictions_pending{system=\"loans\"} 0",
    ] {
        assert!(page.contains(series), "{series} not in:\n{page}");
    }
}
