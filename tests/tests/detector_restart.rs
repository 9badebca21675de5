//! The detector killed and restarted mid-stream (its task aborted: no final checkpoint,
//! no drain) keeps its promises, on librdkafka's mock cluster: the union of the window
//! reports of every run equals a replay of the same events, a window evaluated twice
//! (before a crash, and again after it because its checkpoint was not yet written) has
//! the same content both times, so every `alert_id` names one window forever, and a
//! clean restart after a finished run re-sends nothing. Two systems share one partition;
//! count, sliding and event-time windows.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftwatch_detector::alert::alerts_for;
use driftwatch_detector::driver::file::replay;
use driftwatch_detector::driver::kafka::KafkaOptions;
use driftwatch_detector::engine::WindowReport;
use driftwatch_detector::input;
use driftwatch_detector::plan::Plan;
use driftwatch_detector::service::{self, ServiceConfig};
use driftwatch_e2e::kafka::{mock_cluster, produce, read_quiet};
use driftwatch_e2e::{eventually, metric, WebhookReceiver};
use driftwatch_schema::Event;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SYSTEMS: [&str; 2] = ["golden", "golden-b"];

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../detector/tests/golden")
}

fn plan_of(file: &str, system: &str) -> Arc<Plan> {
    plan_with(file, system, "")
}

/// The golden plan `file` for `system`, with `alerts` appended to its `[alerts]`.
fn plan_with(file: &str, system: &str, alerts: &str) -> Arc<Plan> {
    let text = std::fs::read_to_string(golden().join(file))
        .expect("plan")
        .replace("id = \"golden\"", &format!("id = \"{system}\""))
        + alerts;
    Arc::new(Plan::from_toml(&text, file, golden()).expect("plan"))
}

/// The golden events of both systems, interleaved one for one.
fn events() -> Vec<Event> {
    let a: Vec<Event> = input::open_ndjson(&golden().join("events.ndjson"))
        .expect("open")
        .map(|e| e.expect("valid"))
        .collect();
    let mut out = Vec::new();
    for e in a {
        let wire = String::from_utf8(e.to_wire()).expect("utf8");
        let b = Event::from_wire(
            wire.replace("\"system_id\":\"golden\"", "\"system_id\":\"golden-b\"")
                .as_bytes(),
        )
        .expect("b");
        out.push(e);
        out.push(b);
    }
    out
}

/// The offset `group` committed on partition 0 of the events topic (-1: none).
fn committed(brokers: &str, group: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition("driftwatch.events", 0);
    c.committed_offsets(tpl, Duration::from_secs(5))
        .ok()
        .and_then(|t| t.elements().first().map(|e| e.offset()))
        .and_then(|o| match o {
            rdkafka::Offset::Offset(n) => Some(n),
            _ => None,
        })
        .unwrap_or(-1)
}

/// What replay says, per system: complete windows by index.
fn replayed(
    plan_file: &str,
    events: &[Event],
    dir: &Path,
) -> BTreeMap<(String, i64), serde_json::Value> {
    let mut want = BTreeMap::new();
    for system in SYSTEMS {
        let export = dir.join(format!("{system}.ndjson"));
        std::fs::write(
            &export,
            events
                .iter()
                .filter(|e| e.system_id() == system)
                .map(|e| String::from_utf8(e.to_wire()).expect("utf8") + "\n")
                .collect::<String>(),
        )
        .expect("export");
        let mut out = Vec::new();
        replay(plan_of(plan_file, system), None, &export, &mut out).expect("replay");
        for line in String::from_utf8(out).expect("utf8").lines() {
            let r: WindowReport = serde_json::from_str(line).expect("report");
            if r.window.complete {
                want.insert(
                    (system.to_owned(), r.window.index),
                    serde_json::to_value(&r).expect("json"),
                );
            }
        }
    }
    want
}

struct Run {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), service::DetectError>>,
    reports: mpsc::UnboundedReceiver<WindowReport>,
    registry: prometheus::Registry,
}

async fn start(brokers: &str, plan_file: &str) -> Run {
    start_with(brokers, plan_file, "").await
}

async fn start_with(brokers: &str, plan_file: &str, alerts: &str) -> Run {
    start_every(brokers, plan_file, alerts, Duration::from_millis(150)).await
}

async fn start_every(brokers: &str, plan_file: &str, alerts: &str, checkpoint: Duration) -> Run {
    start_on(brokers, plan_file, alerts, checkpoint, "driftwatch.state").await
}

async fn start_on(
    brokers: &str,
    plan_file: &str,
    alerts: &str,
    checkpoint: Duration,
    state_topic: &str,
) -> Run {
    let (tx, rx) = mpsc::unbounded_channel::<WindowReport>();
    let mut opts = KafkaOptions::new(brokers);
    opts.state_topic = state_topic.into();
    opts.group_id = "dw-restart".into();
    opts.checkpoint_interval = checkpoint;
    // A killed consumer stays in the group until its session times out; keep that short.
    opts.kafka_properties
        .insert("session.timeout.ms".into(), "6000".into());
    opts.kafka_properties
        .insert("heartbeat.interval.ms".into(), "500".into());
    let plans = SYSTEMS
        .iter()
        .map(|s| plan_with(plan_file, s, alerts))
        .collect();
    let mut config = ServiceConfig::new(opts, plans);
    config.outputs.push(Arc::new(tx));
    let registry = config.registry.clone();
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
        registry,
    }
}

/// Record `run`'s complete windows until it has evaluated one and then none for 2 s.
async fn until_quiet(
    run: &mut Run,
    seen: &mut BTreeMap<(String, i64), serde_json::Value>,
    again: &mut usize,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let wait = if seen.is_empty() {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::from_secs(2)
        };
        match tokio::time::timeout(wait, run.reports.recv()).await {
            Ok(Some(r)) if r.window.complete => record(seen, &r, again),
            Ok(Some(_)) => {}
            _ => break,
        }
    }
}

/// Record a streamed report: a window seen before must have the same content.
fn record(
    seen: &mut BTreeMap<(String, i64), serde_json::Value>,
    r: &WindowReport,
    again: &mut usize,
) {
    let v = serde_json::to_value(r).expect("json");
    let key = (r.system_id.clone(), r.window.index);
    if let Some(before) = seen.get(&key) {
        assert_eq!(
            before, &v,
            "window {key:?} evaluated twice with different content"
        );
        *again += 1;
    } else {
        seen.insert(key, v);
    }
}

async fn crash_and_restart(plan_file: &str, crashes: usize) {
    let dir = std::env::temp_dir().join(format!(
        "dw-restart-{}-{}",
        plan_file.replace('.', "-"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let events = events();
    let want = replayed(plan_file, &events, &dir);
    assert!(want.len() >= 10, "{} windows", want.len());

    let (_cluster, brokers) = mock_cluster();
    produce(&brokers, "driftwatch.events", &events);

    let mut seen = BTreeMap::new();
    let mut again = 0;
    driftwatch_common::telemetry::init_tracing();
    let every = (want.len() / (crashes + 1)).max(1);
    for crash in 0..=crashes {
        let mut run = start(&brokers, plan_file).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut got = 0;
        // Crash after `every` new reports. The last run goes to the end: until every
        // window is seen and its offsets are committed at the end of the topic (an
        // earlier run may have seen every window before it crashed, so this one
        // evaluates some again).
        while seen.len() < want.len() && (crash == crashes || got < every) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, run.reports.recv()).await {
                Ok(Some(r)) => {
                    if r.window.complete {
                        let before = seen.len();
                        record(&mut seen, &r, &mut again);
                        got += seen.len() - before;
                    }
                }
                _ => break,
            }
        }
        if crash < crashes {
            // Give a checkpoint a chance to land sometimes, not always.
            if crash % 2 == 1 {
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            run.handle.abort();
            let _ = run.handle.await;
            // What reached the outputs before the crash counts: a checkpoint can only
            // cover windows already handed to them.
            while let Ok(r) = run.reports.try_recv() {
                if r.window.complete {
                    record(&mut seen, &r, &mut again);
                }
            }
        } else {
            let end = events.len() as i64;
            let at_end = eventually(Duration::from_secs(60), || {
                let brokers = brokers.clone();
                async move {
                    let c = tokio::task::spawn_blocking(move || committed(&brokers, "dw-restart"))
                        .await
                        .expect("join");
                    (c == end).then_some(())
                }
            })
            .await;
            assert!(
                at_end.is_some(),
                "{plan_file}: the last run committed the end of the topic"
            );
            while let Ok(r) = run.reports.try_recv() {
                if r.window.complete {
                    record(&mut seen, &r, &mut again);
                }
            }
            run.stop.cancel();
            run.handle.await.expect("join").expect("service ran");
        }
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{plan_file}: the same windows as replay, numbered the same"
    );
    for (k, v) in &want {
        // The service's plan has a webhook URL appended, so its content hash differs.
        assert_eq!(
            without_plan_hash(&seen[k]),
            without_plan_hash(v),
            "{plan_file}: window {k:?} as replay"
        );
    }

    // Alerts: each id once in content, and exactly the ids replay raises: its window
    // alerts, and the episode notifications of those windows in order (episodes are
    // checkpointed: a crash neither pages again nor skips a resolve).
    let mut episodes: HashMap<String, driftwatch_detector::alert::episode::Episodes> =
        HashMap::new();
    let want_alerts: BTreeMap<String, ()> = want
        .values()
        .map(|v| serde_json::from_value::<WindowReport>(v.clone()).expect("report"))
        .flat_map(|r| {
            let plan = plan_of(plan_file, &r.system_id);
            let min = plan.alerts.min_severity;
            let notes = episodes.entry(r.system_id.clone()).or_default().observe(
                &plan.alerts.episodes,
                &driftwatch_detector::alert::episode::Links::of(&plan),
                driftwatch_detector::alert::drift_verdicts(&r, min),
            );
            alerts_for(&r, min).into_iter().chain(notes)
        })
        .map(|a| (a.alert_id, ()))
        .collect();
    assert!(
        want_alerts.keys().any(|k| k.contains("/firing/")),
        "{plan_file}: the drift fires an episode"
    );
    let on_kafka = read_quiet(&brokers, "driftwatch.alerts", Duration::from_secs(2));
    let mut by_id: HashMap<String, serde_json::Value> = HashMap::new();
    for a in &on_kafka {
        let id = a["alert_id"].as_str().expect("alert_id").to_owned();
        // The detected-at time may differ between evaluations; the rest may not.
        let mut content = a.clone();
        content.as_object_mut().map(|o| o.remove("raised_at"));
        if let Some(before) = by_id.get(&id) {
            assert_eq!(before, &content, "alert id {id} reused for other content");
        }
        by_id.insert(id, content);
    }
    let got_alerts: BTreeMap<String, ()> = by_id.keys().map(|k| (k.clone(), ())).collect();
    assert_eq!(got_alerts, want_alerts, "{plan_file}: alert ids");

    // Every report is on the reports topic too.
    let on_reports = read_quiet(&brokers, "driftwatch.reports", Duration::from_secs(1));
    let complete: std::collections::BTreeSet<(String, i64)> = on_reports
        .iter()
        .filter(|r| r["window"]["complete"] == true)
        .map(|r| {
            (
                r["system_id"].as_str().expect("system").to_owned(),
                r["window"]["index"].as_i64().expect("index"),
            )
        })
        .collect();
    assert_eq!(complete.len(), want.len(), "reports topic");

    // A clean restart after the finished run: nothing read again, nothing evaluated
    // again, nothing re-sent. One more prediction per system (at its last timestamp:
    // no window closes) restores each system from its checkpoint.
    let alerts_before = on_kafka.len();
    let mut run = start(&brokers, plan_file).await;
    // Before any event, the drift gauges are back: the last window's verdicts.
    let last_severity = want
        .iter()
        .rev()
        .find(|((s, _), _)| s == "golden")
        .map(|(_, v)| v["checks"][0]["severity"].clone())
        .expect("a window");
    let series = format!(
        "driftwatch_drift_severity{{method=\"{}\",signal=\"{}\",system=\"golden\"}}",
        want.values().next().expect("w")["checks"][0]["method"]
            .as_str()
            .expect("m"),
        want.values().next().expect("w")["checks"][0]["signal"]
            .as_str()
            .expect("s"),
    );
    let gauge = eventually(Duration::from_secs(20), || {
        let page = driftwatch_common::health::render(&run.registry);
        let series = series.clone();
        async move { metric(&page, &series) }
    })
    .await;
    let expected = match last_severity.as_str() {
        Some("critical") => 2.0,
        Some("warning") => 1.0,
        _ => 0.0,
    };
    assert_eq!(
        gauge,
        Some(expected),
        "{series} restored from the checkpoint"
    );
    let more: Vec<Event> = SYSTEMS
        .iter()
        .map(|system| {
            let last = events
                .iter()
                .rev()
                .find(|e| e.system_id() == *system && matches!(e, Event::Prediction(_)))
                .expect("a prediction");
            let wire = String::from_utf8(last.to_wire())
                .expect("utf8")
                .replace("\"prediction_id\":\"", "\"prediction_id\":\"after-restart-");
            Event::from_wire(wire.as_bytes()).expect("event")
        })
        .collect();
    produce(&brokers, "driftwatch.events", &more);
    let page = eventually(Duration::from_secs(30), || {
        let page = driftwatch_common::health::render(&run.registry);
        async move {
            metric(
                &page,
                "driftwatch_state_restores_total{outcome=\"restored\"}",
            )
            .filter(|n| *n >= 2.0)
            .map(|_| page)
        }
    })
    .await
    .expect("both systems restored from their checkpoints");
    let quiet = tokio::time::timeout(Duration::from_secs(1), run.reports.recv()).await;
    assert!(
        !matches!(quiet, Ok(Some(ref r)) if r.window.complete),
        "a clean restart re-evaluated a window"
    );
    assert_eq!(
        metric(&page, "driftwatch_events_replayed_total"),
        Some(0.0),
        "the committed offset is exact: nothing read twice"
    );
    run.stop.cancel();
    run.handle.await.expect("join").expect("service ran");
    let after = read_quiet(&brokers, "driftwatch.alerts", Duration::from_secs(1)).len();
    assert_eq!(after, alerts_before, "nothing re-sent");
    println!(
        "{plan_file}: {} windows, {crashes} crashes, {again} windows evaluated again with identical content, {} alerts ({} on Kafka with repeats)",
        want.len(),
        want_alerts.len(),
        alerts_before
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_windows_survive_crashes() {
    crash_and_restart("count.toml", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_windows_with_a_stream_reference_survive_crashes() {
    crash_and_restart("sliding.toml", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_windows_survive_crashes() {
    crash_and_restart("time.toml", 3).await;
}

/// Copy every record (key and payload) of `from` to `to`: a snapshot of a state topic.
fn copy_topic(brokers: &str, from: &str, to: &str) -> usize {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::Message;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("copy-{from}"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(from, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    c.assign(&tpl).expect("assign");
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    let mut n = 0;
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(2) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let mut r = BaseRecord::to(to).payload(m.payload().unwrap_or_default());
            if let Some(k) = m.key() {
                r = r.key(k);
            }
            p.send(r).expect("queue");
            n += 1;
            last = Instant::now();
        }
    }
    p.flush(Duration::from_secs(10)).expect("flush");
    n
}

/// A state topic read back short of its newest checkpoint (tansu 0.6 has reported a
/// high watermark short of a topic's last records) gives an older checkpoint than the
/// committed offset covers. The detector reads the partition again from the
/// checkpoint's offset instead of skipping the events in between: the windows stay
/// replay's, and those evaluated again have the same content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_older_than_the_committed_offset_reads_again_instead_of_skipping() {
    let dir = std::env::temp_dir().join(format!("dw-stale-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let plan_file = "count.toml";
    let events = events();
    let want = replayed(plan_file, &events, &dir);
    let (cluster, brokers) = mock_cluster();
    cluster.create_topic("stale.state", 1, 1).expect("topic");
    let third = events.len() / 3;
    let mut seen = BTreeMap::new();
    let mut again = 0;
    for (i, (upto, state)) in [
        (third, "driftwatch.state"),
        (2 * third, "driftwatch.state"),
        (events.len(), "stale.state"),
    ]
    .into_iter()
    .enumerate()
    {
        let from = [0, third, 2 * third][i];
        produce(&brokers, "driftwatch.events", &events[from..upto]);
        let mut run = start_on(&brokers, plan_file, "", Duration::from_millis(150), state).await;
        let end = upto as i64;
        let committed_end = eventually(Duration::from_secs(60), || {
            let brokers = brokers.clone();
            async move {
                let c = tokio::task::spawn_blocking(move || committed(&brokers, "dw-restart"))
                    .await
                    .expect("join");
                (c == end).then_some(())
            }
        })
        .await;
        assert!(committed_end.is_some(), "run {i}: committed offset {end}");
        run.stop.cancel();
        run.handle.await.expect("join").expect("service ran");
        while let Ok(r) = run.reports.try_recv() {
            if r.window.complete {
                record(&mut seen, &r, &mut again);
            }
        }
        if i == 0 {
            // The state as the first run left it: the third run reads this one.
            let n = tokio::task::spawn_blocking({
                let brokers = brokers.clone();
                move || copy_topic(&brokers, "driftwatch.state", "stale.state")
            })
            .await
            .expect("join");
            assert!(n > 0, "the first run checkpointed");
        }
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same windows as replay"
    );
    for (k, v) in &want {
        assert_eq!(
            without_plan_hash(&seen[k]),
            without_plan_hash(v),
            "window {k:?} as replay"
        );
    }
    assert!(
        again > 0,
        "the third run evaluated the second run's windows again (it read the partition again from the older checkpoint)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two instances in one group, sharing nothing but Kafka (two pods): the first runs
/// alone for a while, the second joins, then the first is killed mid-window.
/// Whichever instance holds the partition, the windows are those of replay, numbered the
/// same, compared against the same reference: one collected from the stream by the
/// first instance is the one the second continues with.
async fn takeover(plan_file: &str) {
    let dir = std::env::temp_dir().join(format!(
        "dw-takeover-{}-{}",
        plan_file.replace('.', "-"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let events = events();
    let want = replayed(plan_file, &events, &dir);
    let (_cluster, brokers) = mock_cluster();
    // The first instance sees the first 40% of the stream (past the reference), the
    // second the rest: the kill lands with windows open.
    let (early, late) = events.split_at(events.len() * 2 / 5);
    produce(&brokers, "driftwatch.events", early);
    driftwatch_common::telemetry::init_tracing();

    let (hook, url) = WebhookReceiver::start().await.expect("webhook");
    let alerts = format!("webhook_url = \"{url}\"\nwebhook_sends = \"windows\"\n");
    let mut seen = BTreeMap::new();
    let mut again = 0;
    let mut first = start_with(&brokers, plan_file, &alerts).await;
    // The first instance evaluates what it has, then goes quiet.
    until_quiet(&mut first, &mut seen, &mut again).await;
    assert!(
        !seen.is_empty(),
        "{plan_file}: the first instance evaluated no window"
    );
    let mut second = start_with(&brokers, plan_file, &alerts).await;
    // Let the second instance join, then send the rest of the stream and kill whichever
    // instance evaluates it, right after its first new window: mid-stream, with
    // windows open and (likely) evaluated since its last checkpoint.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let by_first = seen.len();
    assert!(
        by_first < want.len() / 2,
        "{by_first} of {} windows before the kill",
        want.len()
    );
    produce(&brokers, "driftwatch.events", late);
    let deadline = Instant::now() + Duration::from_secs(60);
    let first_busy = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (busy, r) = tokio::select! {
            r = first.reports.recv() => (true, r),
            r = second.reports.recv() => (false, r),
            _ = tokio::time::sleep(left) => panic!("{plan_file}: no instance went on"),
        };
        if let Some(r) = r.filter(|r| r.window.complete) {
            record(&mut seen, &r, &mut again);
            break busy;
        }
    };
    let (mut killed, mut survivor) = if first_busy {
        (first, second)
    } else {
        (second, first)
    };
    killed.handle.abort();
    let _ = killed.handle.await;
    while let Ok(r) = killed.reports.try_recv() {
        if r.window.complete {
            record(&mut seen, &r, &mut again);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.len() < want.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, survivor.reports.recv()).await {
            Ok(Some(r)) if r.window.complete => record(&mut seen, &r, &mut again),
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    // Every alert of replay reaches the webhook exactly once, though the first
    // instance's receiver died with it and windows were evaluated again.
    let want_alerts: std::collections::BTreeSet<String> = want
        .values()
        .map(|v| serde_json::from_value::<WindowReport>(v.clone()).expect("report"))
        .flat_map(|r| {
            let min = plan_of(plan_file, &r.system_id).alerts.min_severity;
            alerts_for(&r, min)
        })
        .map(|a| a.alert_id)
        .collect();
    let ids = |hook: &WebhookReceiver| -> Vec<String> {
        hook.alerts()
            .iter()
            .map(|a| a["alert_id"].as_str().expect("alert_id").to_owned())
            .collect()
    };
    eventually(Duration::from_secs(60), || {
        let got: std::collections::BTreeSet<String> = ids(&hook).into_iter().collect();
        let done = got.len() >= want_alerts.len();
        async move { done.then_some(()) }
    })
    .await;
    // Room for a repeat to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    survivor.stop.cancel();
    survivor.handle.await.expect("join").expect("service ran");
    let delivered = ids(&hook);
    let unique: std::collections::BTreeSet<String> = delivered.iter().cloned().collect();
    assert_eq!(unique, want_alerts, "{plan_file}: the alert ids of replay");
    assert_eq!(
        delivered.len(),
        unique.len(),
        "{plan_file}: each alert delivered exactly once across the takeover"
    );
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{plan_file}: the same windows as replay across the takeover"
    );
    for (k, v) in &want {
        // The service's plan has a webhook URL appended, so its content hash differs.
        assert_eq!(
            without_plan_hash(&seen[k]),
            without_plan_hash(v),
            "{plan_file}: window {k:?} as replay"
        );
    }
    println!(
        "{plan_file}: {} windows across a takeover ({by_first} by the first instance), {again} evaluated again with identical content",
        want.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_takes_over_count_windows() {
    takeover("count.toml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_takes_over_a_stream_reference() {
    takeover("sliding.toml").await;
}

/// A second instance joins while the first runs, with no periodic checkpoint due (every
/// minute): the rebalance revokes the partition, the first instance checkpoints before
/// it lets go, and whichever instance gets the partition continues exactly there: no
/// window evaluated twice (before: 8 of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_instance_checkpoints_before_it_lets_go() {
    let plan_file = "count.toml";
    let dir = std::env::temp_dir().join(format!("dw-revoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let events = events();
    let want = replayed(plan_file, &events, &dir);
    let (_cluster, brokers) = mock_cluster();
    let (early, late) = events.split_at(events.len() * 2 / 5);
    produce(&brokers, "driftwatch.events", early);
    driftwatch_common::telemetry::init_tracing();
    let minute = Duration::from_secs(60);
    let mut seen = BTreeMap::new();
    let mut again = 0;
    let mut first = start_every(&brokers, plan_file, "", minute).await;
    until_quiet(&mut first, &mut seen, &mut again).await;
    assert!(!seen.is_empty());
    let mut second = start_every(&brokers, plan_file, "", minute).await;
    // The join: the second instance has its (possibly empty) assignment, so the first
    // was revoked and has handed over.
    let joined = eventually(Duration::from_secs(30), || {
        let page = driftwatch_common::health::render(&second.registry);
        async move {
            metric(&page, "driftwatch_rebalances_total{event=\"assigned\"}").filter(|n| *n >= 1.0)
        }
    })
    .await;
    // The first instance's revocation callback may still be finishing on a loaded
    // machine when the second counts its assignment: wait for it. The group may take
    // more than one round to settle (a CI run saw two revocations); what matters is
    // below: no window is evaluated twice across them.
    let revoked = eventually(Duration::from_secs(30), || {
        let page = driftwatch_common::health::render(&first.registry);
        async move {
            metric(&page, "driftwatch_rebalances_total{event=\"revoked\"}").filter(|n| *n >= 1.0)
        }
    })
    .await;
    assert!(revoked.is_some(), "the first instance was revoked");
    assert!(joined.is_some(), "the second instance joined");
    produce(&brokers, "driftwatch.events", late);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < want.len() && Instant::now() < deadline {
        tokio::select! {
            Some(r) = first.reports.recv() => if r.window.complete { record(&mut seen, &r, &mut again) },
            Some(r) = second.reports.recv() => if r.window.complete { record(&mut seen, &r, &mut again) },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    let replayed_events: f64 = [&first, &second]
        .iter()
        .map(|r| {
            metric(
                &driftwatch_common::health::render(&r.registry),
                "driftwatch_events_replayed_total",
            )
            .unwrap_or(0.0)
        })
        .sum();
    let read: f64 = [&first, &second]
        .iter()
        .map(|r| {
            metric(
                &driftwatch_common::health::render(&r.registry),
                "driftwatch_partition_events_total{partition=\"0\"}",
            )
            .unwrap_or(0.0)
        })
        .sum();
    assert!(
        read >= events.len() as f64,
        "throughput per partition: {read} of {} events",
        events.len()
    );
    for run in [first, second] {
        run.stop.cancel();
        run.handle.await.expect("join").expect("service ran");
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the windows of replay"
    );
    // The mock cluster refuses the commit during the rebalance (RebalanceInProgress;
    // Kafka takes it while the group prepares): the new owner reads those events again
    // and skips them by its restored checkpoint's offsets (`replayed`).
    assert_eq!(again, 0, "no window evaluated twice");
    println!(
        "{} windows; {replayed_events} events read again and skipped by the new owner",
        want.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A report without its `plan_hash`: the service's plans add a receiver URL to the
/// golden plan text, so only the hash differs from replay's.
fn without_plan_hash(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("plan_hash");
    }
    v
}
