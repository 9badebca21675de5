//! Performance through the service on librdkafka's mock cluster: predictions and their
//! late outcomes on the events topic, the detector aborted three times mid-stream (no
//! final checkpoint, no drain) and restarted. Every final performance report, join
//! counters included, equals a replay of the same events, and the performance alerts on
//! the alerts topic are exactly those replay raises: the predictions awaiting outcomes,
//! the windows open to outcomes and what they raised survive in the checkpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftwatch_detector::alert::performance_alerts;
use driftwatch_detector::driver::file::replay;
use driftwatch_detector::driver::kafka::KafkaOptions;
use driftwatch_detector::perf::{PerformanceReport, Stage};
use driftwatch_detector::plan::Plan;
use driftwatch_detector::service::{self, ServiceConfig};
use driftwatch_detector::synth::{demo_plan_toml, CreditModel, Drift};
use driftwatch_e2e::kafka::{mock_cluster, produce, read_quiet};
use driftwatch_schema::Event;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SYSTEM: &str = "credit-perf";

fn plan() -> Arc<Plan> {
    let text = demo_plan_toml(SYSTEM, 1000, 500)
        + r#"
[performance]
task = "binary"
positive_label = "repaid"
negative_label = "defaulted"
horizon_s = 600
declared = { accuracy = 0.70 }
min_severity = "warning"
segments = ["features.region"]
gap.accuracy = { warning = 0.08 }
# The synthetic model is calibrated by construction; 700 reference pairs are too few
# for the automatic choice to be stable.
calibration = "none"
"#;
    Arc::new(Plan::from_toml(&text, "plan", PathBuf::new()).expect("plan"))
}

/// 7,000 predictions (the population moves after 4,000) and their outcomes, each 300
/// predictions after its own, as wire events in the order a consumer reads them.
fn events() -> Vec<Event> {
    let mut model = CreditModel::new(SYSTEM, 77);
    let mut out = Vec::new();
    let mut awaiting = std::collections::VecDeque::new();
    let wire = |mut v: Value, kind: &str, n: usize| {
        v["v"] = json!(1);
        v["kind"] = json!(kind);
        v["event_id"] = json!(format!("00000000-0000-4000-8000-{n:012}"));
        Event::from_wire(&serde_json::to_vec(&v).expect("json")).expect("a valid event")
    };
    for i in 0..7000 {
        let drift = if i < 4000 {
            Drift::NONE
        } else {
            Drift::DEMO_WITH_INCOME
        };
        let p = model.next_json(drift);
        out.push(wire(p.clone(), "prediction", out.len()));
        awaiting.push_back(p);
        if awaiting.len() > 300 {
            let p = awaiting.pop_front().expect("one");
            let o = model.outcome_json(&p, 300);
            out.push(wire(o, "outcome", out.len()));
        }
    }
    for p in awaiting {
        let o = model.outcome_json(&p, 300);
        out.push(wire(o, "outcome", out.len()));
    }
    out
}

/// The final reports of a replay of `events`, by window.
fn replayed(events: &[Event]) -> BTreeMap<i64, Value> {
    let dir = std::env::temp_dir().join(format!("dw-perf-service-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let export = dir.join("events.ndjson");
    std::fs::write(
        &export,
        events
            .iter()
            .map(|e| String::from_utf8(e.to_wire()).expect("utf8") + "\n")
            .collect::<String>(),
    )
    .expect("export");
    let mut out = Vec::new();
    replay(plan(), None, &export, &mut out).expect("replay");
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8(out)
        .expect("utf8")
        .lines()
        .filter(|l| l.contains("\"kind\":\"performance\""))
        .map(|l| serde_json::from_str::<PerformanceReport>(l).expect("report"))
        .filter(|r| r.stage == Stage::Final)
        .map(|r| (r.window.index, serde_json::to_value(&r).expect("json")))
        .collect()
}

struct Run {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), service::DetectError>>,
    reports: mpsc::UnboundedReceiver<PerformanceReport>,
}

async fn start(brokers: &str) -> Run {
    let (tx, rx) = mpsc::unbounded_channel::<PerformanceReport>();
    let mut opts = KafkaOptions::new(brokers);
    opts.group_id = "dw-perf".into();
    opts.checkpoint_interval = Duration::from_millis(300);
    opts.kafka_properties
        .insert("session.timeout.ms".into(), "6000".into());
    opts.kafka_properties
        .insert("heartbeat.interval.ms".into(), "500".into());
    let mut config = ServiceConfig::new(opts, vec![plan()]);
    config.outputs.push(Arc::new(tx));
    let stop = CancellationToken::new();
    let s = stop.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handle = tokio::spawn(service::run(listener, config, async move {
        s.cancelled().await
    }));
    Run {
        stop,
        handle,
        reports: rx,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_outcomes_survive_crashes_and_give_the_finals_of_replay() {
    let events = events();
    let want = replayed(&events);
    assert!(want.len() >= 10, "{} final windows", want.len());
    let (_cluster, brokers) = mock_cluster();
    produce(&brokers, "driftwatch.events", &events);
    driftwatch_common::telemetry::init_tracing();

    let mut finals: BTreeMap<i64, Value> = BTreeMap::new();
    let mut again = 0;
    let crashes = 3;
    let every = want.len() / (crashes + 1);
    for crash in 0..=crashes {
        let mut run = start(&brokers).await;
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut got = 0;
        let mut record = |r: PerformanceReport, finals: &mut BTreeMap<i64, Value>| {
            if r.stage != Stage::Final {
                return 0;
            }
            let v = serde_json::to_value(&r).expect("json");
            match finals.insert(r.window.index, v.clone()) {
                Some(before) => {
                    assert_eq!(
                        before, v,
                        "window {} final twice, differently",
                        r.window.index
                    );
                    again += 1;
                    0
                }
                None => 1,
            }
        };
        while finals.len() < want.len() && (crash == crashes || got < every) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, run.reports.recv()).await {
                Ok(Some(r)) => got += record(r, &mut finals),
                _ => break,
            }
        }
        if crash < crashes {
            if crash % 2 == 1 {
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            run.handle.abort();
            let _ = run.handle.await;
            // What reached the outputs before the crash counts.
            while let Ok(r) = run.reports.try_recv() {
                record(r, &mut finals);
            }
        } else {
            run.stop.cancel();
            run.handle.await.expect("join").expect("service ran");
        }
    }
    assert_eq!(
        finals.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the final windows of replay"
    );
    for (k, v) in &want {
        assert_eq!(&finals[k], v, "final window {k} as replay");
    }
    // Performance alerts: exactly the ids the engine raises over the same events once
    // (estimates and provisional verdicts raise too, not only finals).
    let min = plan().performance_min_severity();
    let mut monitor = driftwatch_detector::engine::Monitor::new(plan(), None);
    let mut want_ids = BTreeSet::new();
    // And the episodes those reports page with (checkpointed: the same across crashes).
    let mut episodes = driftwatch_detector::alert::episode::Episodes::default();
    let links = driftwatch_detector::alert::episode::Links::of(&plan());
    for e in &events {
        for r in monitor
            .observe(driftwatch_detector::engine::Input::Event(e))
            .performance
        {
            want_ids.extend(performance_alerts(&r, min).into_iter().map(|a| a.alert_id));
            let verdicts = driftwatch_detector::alert::performance_verdicts(&r, min);
            let notes = episodes.observe(&plan().alerts.episodes, &links, verdicts);
            want_ids.extend(notes.into_iter().map(|a| a.alert_id));
        }
    }
    assert!(
        want_ids.iter().any(|i| i.contains("/firing/")),
        "the performance drop fires an episode"
    );
    let on_kafka: BTreeSet<String> =
        read_quiet(&brokers, "driftwatch.alerts", Duration::from_secs(2))
            .iter()
            .filter(|a| a["kind"] == "performance" || a["kind"] == "performance_estimate")
            .map(|a| a["alert_id"].as_str().expect("id").to_owned())
            .collect();
    assert!(want_ids
        .iter()
        .any(|i| i.contains("/performance/accuracy/final/critical")));
    assert!(want_ids
        .iter()
        .any(|i| i.contains("/performance_estimate/accuracy/")));
    assert_eq!(on_kafka, want_ids, "performance alert ids");
    println!(
        "{} final windows, {crashes} crashes, {again} finals reported again with identical content, {} performance alerts",
        want.len(),
        want_ids.len()
    );
}
