//! The outcome join at scale: 10 million predictions pending, then an outcome for each
//! in a shuffled order. Prints bytes per pending prediction (resident memory growth,
//! from /proc/self/statm) and joins per second on one core, against the targets, and
//! the same through the whole engine (`Monitor::observe` of outcome events, windows
//! updated) on 1 million.
//!
//! ```text
//! cargo bench -p driftwatch-detector --bench join
//! ```
//!
//! Set `DRIFTWATCH_JOIN_N` for another size (the CI smoke run uses a small one).

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use driftwatch_detector::engine::{Input, Monitor};
use driftwatch_detector::perf::join::{Found, Pending, PendingJoin, PENDING_BYTES};
use driftwatch_detector::plan::Plan;
use driftwatch_schema::{Event, Outcome, OutcomeValue, Prediction, PredictionValue};

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A 64-bit mix, as a stand-in for prediction id hashes.
fn key(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn raw(n: usize) -> (f64, f64, f64) {
    let before = resident_bytes();
    let mut join = PendingJoin::new(n);
    let t = Instant::now();
    for i in 0..n as u64 {
        join.insert(Pending {
            key: key(i),
            pred: 0.5,
            out: f64::NAN,
            pos: i as i64,
            ts_s: i as u32,
            label: 1,
            cell: 0,
        });
    }
    let insert_s = t.elapsed().as_secs_f64();
    let bytes = (resident_bytes() - before) as f64 / n as f64;
    // Outcomes in an order unrelated to arrival: a stride through the ids.
    let stride = 7_919u64;
    let t = Instant::now();
    let mut joined = 0u64;
    for j in 0..n as u64 {
        let i = (j * stride) % n as u64;
        if let Found::First(at) = join.find(key(i)) {
            join.get_mut(at).set_outcome(1.0);
            joined += 1;
        }
    }
    let join_s = t.elapsed().as_secs_f64();
    assert_eq!(joined, n as u64, "every outcome joined");
    (bytes, n as f64 / insert_s, n as f64 / join_s)
}

const PLAN: &str = r#"
[system]
id = "bench"

[reference]
first_events = 1000

[window]
size = 10000

[prediction.score]
checks = ["ks"]

[performance]
task = "binary"
memory_budget_mib = 64
"#;

fn engine(n: usize) -> (f64, f64) {
    let plan = Arc::new(Plan::from_toml(PLAN, "bench", std::path::PathBuf::new()).expect("plan"));
    let mut m = Monitor::new(plan, None);
    let t0 = Utc
        .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .expect("a valid date");
    let id = |i: usize| format!("req-{i}");
    let t = Instant::now();
    for i in 0..n {
        let p = Event::Prediction(Prediction {
            v: 1,
            event_id: uuid::Uuid::from_u64_pair(0, i as u64),
            system_id: "bench".into(),
            model_version: "1".into(),
            prediction_id: id(i),
            timestamp: t0 + Duration::milliseconds(i as i64),
            features: Default::default(),
            prediction: PredictionValue {
                score: Some((i % 997) as f64 / 997.0),
                label: None,
                value: None,
            },
            segment: Default::default(),
            suppressed: Vec::new(),
        });
        m.observe(Input::Event(&p));
    }
    let predictions_s = t.elapsed().as_secs_f64();
    let outcomes: Vec<Event> = (0..n)
        .map(|j| {
            let i = (j * 7_919) % n;
            Event::Outcome(Outcome {
                v: 1,
                event_id: uuid::Uuid::from_u64_pair(1, j as u64),
                system_id: "bench".into(),
                prediction_id: id(i),
                timestamp: t0 + Duration::milliseconds(n as i64),
                outcome: OutcomeValue {
                    label: Some(if i.is_multiple_of(3) { "0" } else { "1" }.into()),
                    value: None,
                },
            })
        })
        .collect();
    let t = Instant::now();
    for o in &outcomes {
        m.observe(Input::Event(o));
    }
    let outcomes_s = t.elapsed().as_secs_f64();
    let joined = m.performance().expect("tracker").counts().joined;
    assert!(joined as usize >= n - 1000, "{joined} joined");
    (n as f64 / predictions_s, n as f64 / outcomes_s)
}

fn main() {
    let n: usize = std::env::var("DRIFTWATCH_JOIN_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let (bytes, inserts, joins) = raw(n);
    let (predictions, outcomes) = engine((n / 10).max(20_000));
    println!("outcome join, {n} pending predictions ({PENDING_BYTES}-byte entries), one core");
    println!("{:<44} {:>14} {:>14}", "", "driftwatch", "target");
    println!(
        "{:<44} {:>14.1} {:>14}",
        "bytes per pending prediction (resident)", bytes, "<= 48"
    );
    println!(
        "{:<44} {:>14.0} {:>14}",
        "joins per second (find + record)", joins, ">= 1,000,000"
    );
    println!("{:<44} {:>14.0} {:>14}", "inserts per second", inserts, "");
    println!(
        "{:<44} {:>14.0} {:>14}",
        format!("engine: predictions/s ({} events)", (n / 10).max(20_000)),
        predictions,
        ""
    );
    println!(
        "{:<44} {:>14.0} {:>14}",
        "engine: outcome events/s (windows updated)", outcomes, ""
    );
}
