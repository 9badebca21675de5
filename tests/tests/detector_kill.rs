//! `driftwatch detect` killed with SIGKILL three times mid-stream against a real broker,
//! two systems sharing one partition: the reports topic ends up with exactly the
//! windows `replay` gives for the same events (same numbers, same content however
//! often a window was evaluated), the alerts topic with exactly replay's alert ids (an
//! id never reused for other content), and a clean restart afterwards reads and sends
//! nothing again.
//!
//! Run by `tests/real-broker.sh` (`DRIFTWATCH_TEST_BROKERS`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftwatch_detector::alert::alerts_for;
use driftwatch_detector::driver::file::replay;
use driftwatch_detector::engine::WindowReport;
use driftwatch_detector::input;
use driftwatch_detector::plan::Plan;
use driftwatch_e2e::kafka::produce;
use driftwatch_e2e::process::{brokers, free_port, test_dir, Proc};
use driftwatch_e2e::{binary, create_topics, eventually, metric, WebhookReceiver};
use driftwatch_schema::Event;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

const SYSTEMS: [&str; 2] = ["golden", "golden-b"];

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../detector/tests/golden")
}

fn plan_text(file: &str, system: &str) -> String {
    std::fs::read_to_string(golden().join(file))
        .expect("plan")
        .replace("id = \"golden\"", &format!("id = \"{system}\""))
        .replace(
            "file = \"reference.csv\"",
            &format!("file = \"{}\"", golden().join("reference.csv").display()),
        )
}

fn events() -> Vec<Event> {
    let mut out = Vec::new();
    for e in input::open_ndjson(&golden().join("events.ndjson")).expect("open") {
        let e = e.expect("valid");
        let wire = String::from_utf8(e.to_wire()).expect("utf8");
        let b = wire.replace("\"system_id\":\"golden\"", "\"system_id\":\"golden-b\"");
        out.push(e);
        out.push(Event::from_wire(b.as_bytes()).expect("b"));
    }
    out
}

/// Every payload of partition 0 of `topic` up to its end as of now.
fn read_all(brokers: &str, topic: &str) -> Vec<serde_json::Value> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (low, high) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut out = Vec::new();
    if high <= low {
        return out;
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    c.assign(&tpl).expect("assign");
    // To the high watermark, then on until 1 s without a record: tansu 0.6 reports a
    // high watermark short of the last records of a multi-record batch.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut reached: Option<Instant> = None;
    while Instant::now() < deadline && reached.is_none_or(|t| t.elapsed() < Duration::from_secs(1))
    {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON"));
            if m.offset() + 1 >= high {
                reached = Some(Instant::now());
            }
        }
    }
    out
}

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
        let plan = Arc::new(
            Plan::from_toml(&plan_text(plan_file, system), plan_file, PathBuf::new())
                .expect("plan"),
        );
        let mut out = Vec::new();
        replay(plan, None, &export, &mut out).expect("replay");
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

struct Topics {
    events: String,
    alerts: String,
    reports: String,
    state: String,
}

fn detector(dir: &Path, topics: &Topics, plans: &[PathBuf], metrics: std::net::SocketAddr) -> Proc {
    let mut cmd = Command::new(binary("driftwatch"));
    cmd.arg("detect");
    for p in plans {
        cmd.arg("--plan").arg(p);
    }
    cmd.args(["--brokers", &brokers()])
        .args(["--events-topic", &topics.events])
        .args(["--alerts-topic", &topics.alerts])
        .args(["--reports-topic", &topics.reports])
        .args(["--state-topic", &topics.state])
        .args(["--group", &format!("{}-group", topics.events)])
        .args(["--checkpoint-interval-ms", "300"])
        .args(["--metrics-listen", &metrics.to_string()])
        .args(["--kafka-property", "session.timeout.ms=6000"]);
    Proc::spawn("driftwatch detect", dir.join("detector.log"), &mut cmd)
}

fn complete_reports(reports: &[serde_json::Value]) -> usize {
    reports
        .iter()
        .filter(|r| r["window"]["complete"] == true)
        .map(|r| {
            (
                r["system_id"].as_str().unwrap_or_default().to_owned(),
                r["window"]["index"].as_i64().unwrap_or_default(),
            )
        })
        .collect::<BTreeSet<_>>()
        .len()
}

/// A run's topics, plans and expectations, with the events being produced over about
/// 10 s so kills land mid-stream.
struct Setup {
    brokers: String,
    dir: PathBuf,
    topics: Topics,
    plans: Vec<PathBuf>,
    want: BTreeMap<(String, i64), serde_json::Value>,
}

async fn setup(name: &str, plan_file: &str, alerts: &str) -> Setup {
    let brokers = brokers();
    let dir = test_dir(&format!("{name}-{}", plan_file.replace('.', "-")));
    let unique = dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned();
    let topics = Topics {
        events: format!("{unique}.events"),
        alerts: format!("{unique}.alerts"),
        reports: format!("{unique}.reports"),
        state: format!("{unique}.state"),
    };
    create_topics(
        &brokers,
        &[
            (&topics.events, 1),
            (&topics.alerts, 1),
            (&topics.reports, 1),
            (&topics.state, 1),
        ],
    )
    .await
    .expect("topics");
    let plans: Vec<PathBuf> = SYSTEMS
        .iter()
        .map(|s| {
            let p = dir.join(format!("{s}.toml"));
            std::fs::write(&p, plan_text(plan_file, s) + alerts).expect("plan");
            p
        })
        .collect();
    let events = events();
    let want = replayed(plan_file, &events, &dir);
    assert!(want.len() >= 10);
    Setup {
        brokers,
        dir,
        topics,
        plans,
        want,
    }
}

/// Produce the events over about 10 s, in the background (detached: every window on
/// the reports topic means every event was produced).
fn start_producing(s: &Setup) {
    let (brokers, topic) = (s.brokers.clone(), s.topics.events.clone());
    tokio::task::spawn_blocking(move || {
        for chunk in events().chunks(500) {
            produce(&brokers, &topic, chunk);
            std::thread::sleep(Duration::from_millis(400));
        }
    });
}

/// Wait until `target` complete windows are on the reports topic.
async fn windows_on_kafka(s: &Setup, target: usize, within: Duration) -> Option<usize> {
    eventually(within, || {
        let (b, t) = (s.brokers.clone(), s.topics.reports.clone());
        async move {
            let n = tokio::task::spawn_blocking(move || complete_reports(&read_all(&b, &t)))
                .await
                .ok()?;
            (n >= target).then_some(n)
        }
    })
    .await
}

/// The reports topic holds exactly replay's windows (a window reported twice with the
/// same content); returns how many were reported again.
fn check_reports(s: &Setup) -> usize {
    let reports = read_all(&s.brokers, &s.topics.reports);
    let mut seen: BTreeMap<(String, i64), serde_json::Value> = BTreeMap::new();
    let mut again = 0;
    for r in reports.iter().filter(|r| r["window"]["complete"] == true) {
        let key = (
            r["system_id"].as_str().expect("system").to_owned(),
            r["window"]["index"].as_i64().expect("index"),
        );
        if let Some(before) = seen.get(&key) {
            assert!(
                before == r,
                "window {key:?} reported twice with different content (first != later): {:#?}",
                driftwatch_e2e::json_diff(before, r, 20)
            );
            again += 1;
        }
        seen.insert(key, r.clone());
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        s.want.keys().collect::<Vec<_>>(),
        "the windows of replay"
    );
    for (k, v) in &s.want {
        // The detectors' plan has receivers appended, so only its content hash differs.
        let (got, want) = (without_plan_hash(&seen[k]), without_plan_hash(v));
        assert!(
            got == want,
            "window {k:?} differs from replay (detector != replay): {:#?}",
            driftwatch_e2e::json_diff(&got, &want, 20)
        );
    }
    again
}

/// A report without its `plan_hash`.
fn without_plan_hash(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("plan_hash");
    }
    v
}

/// The alert ids replay raises; with `notes`, also the episode notification ids of its
/// windows in order per system (episodes are checkpointed with the windows: kills
/// neither page twice nor skip a resolve).
fn want_alert_ids(s: &Setup, plan_file: &str, notes: bool) -> BTreeSet<String> {
    let mut episodes: BTreeMap<String, driftwatch_detector::alert::episode::Episodes> =
        BTreeMap::new();
    s.want
        .values()
        .map(|v| serde_json::from_value::<WindowReport>(v.clone()).expect("report"))
        .flat_map(|r| {
            let plan = Plan::from_toml(
                &plan_text(plan_file, &r.system_id),
                plan_file,
                PathBuf::new(),
            )
            .expect("plan");
            let min = plan.alerts.min_severity;
            let episode = episodes.entry(r.system_id.clone()).or_default();
            let n = if notes {
                episode.observe(
                    &plan.alerts.episodes,
                    &driftwatch_detector::alert::episode::Links::of(&plan),
                    driftwatch_detector::alert::drift_verdicts(&r, min),
                )
            } else {
                Vec::new()
            };
            alerts_for(&r, min).into_iter().chain(n)
        })
        .map(|a| a.alert_id)
        .collect()
}

async fn killed_three_times(plan_file: &str) {
    let s = setup("kill", plan_file, "").await;
    start_producing(&s);
    let (brokers, dir, topics, plans, want) = (&s.brokers, &s.dir, &s.topics, &s.plans, &s.want);
    // Kill after a third, then two thirds of the windows are on the reports topic, and
    // once more right after a restart.
    let metrics = free_port();
    for (i, target) in [want.len() / 3, 2 * want.len() / 3, 2 * want.len() / 3 + 1]
        .into_iter()
        .enumerate()
    {
        let mut d = detector(dir, topics, plans, metrics);
        let reached = windows_on_kafka(&s, target, Duration::from_secs(90)).await;
        assert!(
            reached.is_some(),
            "run {i}: {target} windows on the reports topic"
        );
        d.kill9();
        // The killed member stays in the group until its session (6 s) expires; tansu
        // 0.6 gives a member that joins meanwhile no partition and does not rebalance
        // it later, so the next detector starts after the expiry.
        tokio::time::sleep(Duration::from_secs(8)).await;
    }
    let mut d = detector(dir, topics, plans, metrics);
    let all = windows_on_kafka(&s, want.len(), Duration::from_secs(120)).await;
    assert_eq!(all, Some(want.len()), "every window after three kills");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(d.terminate(), Some(0));
    let again = check_reports(&s);
    let want_ids = want_alert_ids(&s, plan_file, true);
    let alerts = read_all(brokers, &topics.alerts);
    let mut by_id: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for a in &alerts {
        let id = a["alert_id"].as_str().expect("id").to_owned();
        if let Some(before) = by_id.get(&id) {
            assert!(before == a, "alert id {id} reused for other content");
        }
        by_id.insert(id, a.clone());
    }
    assert_eq!(
        by_id.keys().cloned().collect::<BTreeSet<_>>(),
        want_ids,
        "the alert ids of replay"
    );

    // A clean restart after the finished run reads nothing again and sends nothing.
    let mut d = detector(dir, topics, plans, metrics);
    let page = eventually(Duration::from_secs(30), || async move {
        let page = reqwest::get(format!("http://{metrics}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metric(&page, "driftwatch_events_replayed_total").map(|_| page)
    })
    .await
    .expect("metrics");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(d.terminate(), Some(0));
    assert_eq!(
        metric(&page, "driftwatch_windows_total{system=\"golden\"}"),
        None,
        "nothing evaluated again: {page}"
    );
    let after = read_all(brokers, &topics.alerts).len();
    assert_eq!(after, alerts.len(), "nothing sent again");
    println!(
        "{plan_file}: {} windows, 3 kills, {again} windows reported again with identical content, {} alert ids ({} alerts on Kafka)",
        want.len(),
        want_ids.len(),
        alerts.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real broker: run tests/real-broker.sh or set DRIFTWATCH_TEST_BROKERS"]
async fn killed_detector_time_windows_match_replay() {
    killed_three_times("time.toml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real broker: run tests/real-broker.sh or set DRIFTWATCH_TEST_BROKERS"]
async fn killed_detector_sliding_windows_with_a_stream_reference_match_replay() {
    killed_three_times("sliding.toml").await;
}

/// Two `driftwatch detect` processes in one group, sharing nothing but the broker: once
/// a third of the windows are on Kafka, the one holding the partition is killed with
/// SIGKILL and the other takes over. The reports topic holds replay's windows, and the
/// webhook gets each of replay's alert ids exactly once.
async fn two_instances_one_killed(plan_file: &str) {
    let (hook, url) = WebhookReceiver::start().await.expect("webhook");
    let s = setup(
        "takeover",
        plan_file,
        &format!("webhook_url = \"{url}\"\nwebhook_sends = \"windows\"\n"),
    )
    .await;
    let (a_metrics, b_metrics) = (free_port(), free_port());
    let a_dir = s.dir.join("a");
    let b_dir = s.dir.join("b");
    std::fs::create_dir_all(&a_dir).expect("dir");
    std::fs::create_dir_all(&b_dir).expect("dir");
    let a = detector(&a_dir, &s.topics, &s.plans, a_metrics);
    let b = detector(&b_dir, &s.topics, &s.plans, b_metrics);
    // Both in the group and the group settled (no rebalance for 8 s) before any event:
    // tansu 0.6 can lose a member that dies in the middle of a rebalance, and never
    // give its partitions to the other one.
    let page = |addr: std::net::SocketAddr| async move {
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    let count = |p: Option<String>| {
        p.and_then(|p| metric(&p, "driftwatch_rebalances_total{event=\"assigned\"}"))
    };
    let mut last = (None, None);
    let mut since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut settled = None;
    while Instant::now() < deadline {
        let now = (count(page(a_metrics).await), count(page(b_metrics).await));
        if now != last || now.0.unwrap_or(0.0) < 1.0 || now.1.unwrap_or(0.0) < 1.0 {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_secs(8) {
            settled = Some(());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(settled.is_some(), "the two instances' group settled");
    start_producing(&s);
    let reached = windows_on_kafka(&s, s.want.len() / 3, Duration::from_secs(90)).await;
    assert!(
        reached.is_some(),
        "a third of the windows on the reports topic"
    );
    let assigned = |addr: std::net::SocketAddr| async move {
        let page = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metric(&page, "driftwatch_partitions_assigned")
    };
    let (in_a, in_b) = (assigned(a_metrics).await, assigned(b_metrics).await);
    let (killed, mut victim, mut survivor) = match (in_a, in_b) {
        (Some(n), _) if n >= 1.0 => ("a", a, b),
        (_, Some(n)) if n >= 1.0 => ("b", b, a),
        other => panic!("no instance holds the partition: {other:?}"),
    };
    victim.kill9();
    let all = windows_on_kafka(&s, s.want.len(), Duration::from_secs(120)).await;
    assert_eq!(all, Some(s.want.len()), "every window after the takeover");
    let want_ids = want_alert_ids(&s, plan_file, false);
    let delivered = eventually(Duration::from_secs(60), || {
        let n = hook
            .alerts()
            .iter()
            .filter_map(|a| a["alert_id"].as_str().map(str::to_owned))
            .collect::<BTreeSet<_>>()
            .len();
        let want = want_ids.len();
        async move { (n >= want).then_some(n) }
    })
    .await;
    assert_eq!(
        delivered,
        Some(want_ids.len()),
        "every alert id at the webhook"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(survivor.terminate(), Some(0));
    let again = check_reports(&s);
    let ids: Vec<String> = hook
        .alerts()
        .iter()
        .map(|a| a["alert_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(
        ids.iter().cloned().collect::<BTreeSet<_>>(),
        want_ids,
        "the alert ids of replay"
    );
    assert_eq!(ids.len(), want_ids.len(), "each alert delivered once");
    println!(
        "{plan_file}: {} windows, instance {killed} killed holding the partition, {again} windows reported again with identical content, {} alerts delivered once each",
        s.want.len(),
        ids.len()
    );
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real broker: run tests/real-broker.sh or set DRIFTWATCH_TEST_BROKERS"]
async fn another_detector_takes_over_time_windows() {
    two_instances_one_killed("time.toml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real broker: run tests/real-broker.sh or set DRIFTWATCH_TEST_BROKERS"]
async fn another_detector_takes_over_a_stream_reference() {
    two_instances_one_killed("sliding.toml").await;
}
