//! The agent's promises, tried against a real Kafka-protocol broker with the agent as a
//! process: nothing acknowledged is lost (kill -9, broker outage, full spool, disk
//! errors), and personal data stays in the pod.
//!
//! Run by `tests/real-broker.sh`. The kill and disk tests use the broker named by
//! `DRIFTWATCH_TEST_BROKERS`; the outage tests start a tansu broker of their own (the
//! `tansu` on `PATH`, or `DRIFTWATCH_TEST_TANSU`) so they can stop and continue it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftwatch_e2e::create_topics;
use driftwatch_e2e::metric;
use driftwatch_e2e::process::{
    brokers, prediction_ids, read_topic, start_tansu, test_dir, AgentProc,
};
use serde_json::{json, Value};

const PARTITIONS: i32 = 3;

fn event(id: &str) -> Value {
    json!({"system_id": "credit", "model_version": "1", "prediction_id": id,
           "features": {"age": 30, "region": "north"}, "prediction": {"score": 0.5}})
}

fn ndjson(ids: &[String]) -> String {
    ids.iter().map(|id| event(id).to_string() + "\n").collect()
}

/// Post batches of `batch` events with ids `{prefix}-{n}` until `stop` is set or a
/// request fails (the agent was killed); returns the acknowledged ids.
async fn load(
    addr: std::net::SocketAddr,
    prefix: String,
    batch: usize,
    stop: Arc<Mutex<bool>>,
) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    let mut n = 0;
    while !*stop.lock().expect("lock") {
        let ids: Vec<String> = (n..n + batch).map(|i| format!("{prefix}-{i}")).collect();
        n += batch;
        let r = client
            .post(format!("http://{addr}/v1/predictions"))
            .body(ndjson(&ids))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 202 => acked.extend(ids),
            Ok(r) if r.status() == 503 => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(r) => panic!("agent answered {}", r.status()),
            Err(_) => break,
        }
    }
    acked
}

/// Post `ids` in batches of `batch`; every batch must be acknowledged.
async fn post_all(addr: std::net::SocketAddr, ids: &[String], batch: usize) {
    let client = reqwest::Client::new();
    for chunk in ids.chunks(batch) {
        let r = client
            .post(format!("http://{addr}/v1/predictions"))
            .body(ndjson(chunk))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
    }
}

/// Post up to `batches` batches of 20 events (ids `{prefix}{batch}-{i}`) until one is not
/// acknowledged; returns the acknowledged ids and the first refusal.
async fn post_until_refused(
    addr: std::net::SocketAddr,
    prefix: &str,
    batches: usize,
) -> (Vec<String>, Option<reqwest::Response>) {
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    for b in 0..batches {
        let ids: Vec<String> = (0..20).map(|i| format!("{prefix}{b}-{i}")).collect();
        let r = client
            .post(format!("http://{addr}/v1/predictions"))
            .body(ndjson(&ids))
            .send()
            .await
            .expect("post");
        if r.status() != 202 {
            return (acked, Some(r));
        }
        acked.extend(ids);
    }
    (acked, None)
}

/// Post one batch again every `pause`, as a model server honouring `Retry-After` does,
/// until it is acknowledged (at most 60 s); returns the statuses of the refusals.
async fn retry_until_taken(
    addr: std::net::SocketAddr,
    ids: &[String],
    pause: Duration,
) -> Vec<u16> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refusals = Vec::new();
    loop {
        let r = client
            .post(format!("http://{addr}/v1/predictions"))
            .body(ndjson(ids))
            .send()
            .await
            .expect("post");
        if r.status() == 202 {
            return refusals;
        }
        refusals.push(r.status().as_u16());
        assert!(
            Instant::now() < deadline,
            "ingest did not resume within 60 s"
        );
        tokio::time::sleep(pause).await;
    }
}

/// Wait until the agent's spool has no unconfirmed event.
async fn wait_drained(agent: &AgentProc, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let page = agent.metrics().await;
        if metric(&page, "driftwatch_agent_spool_backlog_events") == Some(0.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backlog not drained within {within:?}:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Read the topic until every acknowledged id is there; returns (distinct, duplicates).
fn assert_all_in_kafka(brokers: &str, topic: &str, acked: &[String]) -> (usize, usize) {
    let want: HashSet<&str> = acked.iter().map(String::as_str).collect();
    let mut missing = want.clone();
    let events = read_topic(brokers, topic, PARTITIONS, Duration::from_secs(15), |e| {
        if let Some(id) = e["prediction_id"].as_str() {
            missing.remove(id);
        }
        missing.is_empty()
    });
    let ids = prediction_ids(&events);
    let missing: Vec<&&str> = want.iter().filter(|id| !ids.contains_key(**id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events never reached Kafka, e.g. {:?}",
        missing.len(),
        want.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    let duplicates = events.len() - ids.len();
    (ids.len(), duplicates)
}

/// A tmpfs of `size` mounted on `dir` (root, or CAP_SYS_ADMIN), unmounted when the
/// guard is dropped; `None` where mounting is not allowed.
fn tmpfs(dir: &std::path::Path, size: &str) -> Option<Unmount> {
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
        .then(|| Unmount(dir.to_path_buf()))
}

/// Unmounts its directory when dropped.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

async fn topic(brokers: &str, name: &str) -> String {
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let topic = format!("dw-{name}-{unique}");
    create_topics(brokers, &[(&topic, PARTITIONS)])
        .await
        .expect("topic");
    topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real broker: run tests/real-broker.sh or set DRIFTWATCH_TEST_BROKERS"]
async fn kill_9_under_load_loses_no_acknowledged_event() {
    let brokers = brokers();
    let topic = topic(&brokers, "kill9").await;
    let dir = test_dir("kill9");
    let mut acked = Vec::new();
    for round in 0..5u64 {
        let mut agent = AgentProc::start(&dir, &brokers, &topic, "", "");
        agent.wait_ready().await;
        let stop = Arc::new(Mutex::new(false));
        let workers: Vec<_> = (0..4)
            .map(|w| tokio::spawn(load(agent.addr, format!("r{round}-w{w}"), 20, stop.clone())))
            .collect();
        // Kill at a different point of the load each round.
        tokio::time::sleep(Duration::from_millis(300 + 170 * round)).await;
        agent.proc.kill9();
        for w in workers {
            acked.extend(w.await.expect("worker"));
        }
    }
    let mut agent = AgentProc::start(&dir, &brokers, &topic, "", "");
    agent.wait_ready().await;
    wait_drained(&agent, Duration::from_secs(60)).await;
    let resent = metric(
        &agent.metrics().await,
        "driftwatch_agent_kafka_resent_total",
    );
    assert_eq!(agent.proc.terminate(), Some(0), "SIGTERM exits 0");
    let (distinct, duplicates) = assert_all_in_kafka(&brokers, &topic, &acked);
    println!(
        "kill -9 x5 under load: {} acknowledged, all in Kafka ({distinct} distinct); \
         {duplicates} duplicates (sent before a kill, not yet confirmed); resent after restart: {resent:?}",
        acked.len()
    );
    assert!(acked.len() > 1000, "the load ran: {}", acked.len());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu: run tests/real-broker.sh"]
async fn a_broker_outage_longer_than_the_message_timeout_loses_nothing() {
    let dir = test_dir("outage");
    let (tansu, brokers) = start_tansu(&dir);
    let topic = topic(&brokers, "outage").await;
    // A send attempt times out after 2 s; the outage lasts 8 s.
    let mut agent = AgentProc::start(
        &dir,
        &brokers,
        &topic,
        "shutdown_grace_ms = 5000\n[spool]\nsegment_bytes = 262144\n",
        "message_timeout_ms = 2000",
    );
    agent.wait_ready().await;
    let before: Vec<String> = (0..1000).map(|i| format!("before-{i}")).collect();
    post_all(agent.addr, &before, 100).await;
    wait_drained(&agent, Duration::from_secs(30)).await;

    tansu.signal("STOP");
    let during: Vec<String> = (0..5000).map(|i| format!("during-{i}")).collect();
    post_all(agent.addr, &during, 100).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let page = agent.metrics().await;
    let rss = agent.proc.rss_kib().unwrap_or(0);
    assert_eq!(
        metric(&page, "driftwatch_agent_kafka_up"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "driftwatch_agent_spool_backlog_events"),
        Some(5000.0),
        "{page}"
    );
    assert!(
        rss < 64 * 1024,
        "memory bounded during the outage: {rss} KiB"
    );

    tansu.signal("CONT");
    wait_drained(&agent, Duration::from_secs(60)).await;
    let page = agent.metrics().await;
    assert_eq!(metric(&page, "driftwatch_agent_kafka_up"), Some(1.0));
    let resent = metric(&page, "driftwatch_agent_kafka_resent_total").unwrap_or(0.0);
    let errors = metric(&page, "driftwatch_agent_kafka_delivery_errors_total").unwrap_or(0.0);
    assert!(errors > 0.0, "sends timed out during the outage: {page}");
    assert_eq!(agent.proc.terminate(), Some(0));
    let mut acked = before;
    acked.extend(during);
    let (distinct, duplicates) = assert_all_in_kafka(&brokers, &topic, &acked);
    println!(
        "broker stopped 8 s (message timeout 2 s): {} acknowledged, {distinct} in Kafka, \
         {duplicates} duplicates; {errors} timed-out sends, {resent} resent; RSS {rss} KiB during the outage",
        acked.len()
    );
    drop(tansu);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu: run tests/real-broker.sh"]
async fn a_full_spool_answers_503_and_ingest_resumes_when_the_broker_returns() {
    let dir = test_dir("full");
    let (tansu, brokers) = start_tansu(&dir);
    let topic = topic(&brokers, "full").await;
    let mut agent = AgentProc::start(
        &dir,
        &brokers,
        &topic,
        "max_body_bytes = 16384\n[spool]\nmax_spool_bytes = 131072\nsegment_bytes = 16384\n",
        "message_timeout_ms = 2000",
    );
    agent.wait_ready().await;
    tansu.signal("STOP");
    let (mut acked, full) = post_until_refused(agent.addr, "b", 200).await;
    let r = full.expect("a 128 KiB budget fills up");
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let page = agent.metrics().await;
    assert!(metric(&page, "driftwatch_agent_spool_bytes").unwrap_or(f64::MAX) <= 131072.0);

    tansu.signal("CONT");
    // The model server retries the refused batch after Retry-After until it is taken.
    let ids: Vec<String> = (0..20).map(|i| format!("retried-{i}")).collect();
    let refusals = retry_until_taken(agent.addr, &ids, Duration::from_secs(1)).await;
    assert!(refusals.iter().all(|&s| s == 503), "{refusals:?}");
    acked.extend(ids);
    wait_drained(&agent, Duration::from_secs(60)).await;
    assert_eq!(agent.proc.terminate(), Some(0));
    let (distinct, duplicates) = assert_all_in_kafka(&brokers, &topic, &acked);
    println!(
        "spool full at {} events: 503 + Retry-After, resumed after the broker returned; \
         {distinct} in Kafka, {duplicates} duplicates",
        acked.len() - 20
    );
    drop(tansu);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real broker: run tests/real-broker.sh or set DRIFTWATCH_TEST_BROKERS"]
async fn a_disk_that_refuses_writes_gets_503_not_a_crash() {
    // The kernel refuses writes past the file size limit (EFBIG), as a full disk does
    // (ENOSPC): the same failed write, without filling the machine's disk.
    let brokers = brokers();
    let topic = topic(&brokers, "disk").await;
    let dir = test_dir("disk");
    let mut agent = AgentProc::start_with(
        &dir,
        &brokers,
        &topic,
        ("[spool]\nsegment_bytes = 1048576\n", ""),
        // 128 blocks of 512 bytes: 64 KiB per file. SIGXFSZ ignored, so write() fails.
        Some("trap '' XFSZ; ulimit -f 128"),
        &[],
    );
    agent.wait_ready().await;
    let client = reqwest::Client::new();
    let (acked, refused) = post_until_refused(agent.addr, "d", 100).await;
    let r = refused.expect("the file size limit is reached");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.expect("json");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot write the spool"),
        "{v}"
    );
    // Still serving, still refusing a batch that does not fit, never acknowledging what
    // it could not write.
    let same_size: Vec<String> = (0..20).map(|i| format!("again-{i}")).collect();
    let again = client
        .post(format!("http://{}/v1/predictions", agent.addr))
        .body(ndjson(&same_size))
        .send()
        .await
        .expect("post");
    assert_eq!(again.status(), 503);
    assert!(agent.proc.running());
    let page = agent.metrics().await;
    assert!(
        metric(
            &page,
            "driftwatch_agent_events_rejected_total{kind=\"prediction\",reason=\"disk_error\"}"
        )
        .unwrap_or(0.0)
            >= 20.0,
        "{page}"
    );
    wait_drained(&agent, Duration::from_secs(30)).await;
    assert_eq!(agent.proc.terminate(), Some(0));
    let (distinct, _) = assert_all_in_kafka(&brokers, &topic, &acked);
    assert_eq!(
        distinct,
        acked.len(),
        "the refused batches never reached Kafka"
    );
    // The spool is intact: a restart without the limit recovers it without loss.
    let mut agent = AgentProc::start(&dir, &brokers, &topic, "", "");
    agent.wait_ready().await;
    let page = agent.metrics().await;
    assert_eq!(
        metric(
            &page,
            "driftwatch_agent_spool_lost_total{reason=\"corruption\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(&page, "driftwatch_agent_spool_truncated_bytes_total"),
        Some(0.0),
        "the failed write was cut back at once, not left as a torn tail"
    );
    assert_eq!(agent.proc.terminate(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real broker: run tests/real-broker.sh or set DRIFTWATCH_TEST_BROKERS"]
async fn only_listed_fields_and_pseudonyms_reach_a_real_broker() {
    let brokers = brokers();
    let topic = topic(&brokers, "privacy").await;
    let dir = test_dir("privacy");
    let key = "a-real-broker-test-key-0123456789";
    let mut agent = AgentProc::start_with(
        &dir,
        &brokers,
        &topic,
        (
            "[privacy.systems.credit]\nallow = { age = \"number\", region = \"string\" }\n\
             pseudonymise = [\"customer_id\"]\nlaw_enforcement = true\nsuppress = [\"postcode\"]\n",
            "",
        ),
        None,
        &[("DRIFTWATCH_HMAC_KEY", key)],
    );
    agent.wait_ready().await;
    let posted = json!({"system_id": "credit", "model_version": "1",
        "prediction_id": "citizen-123456782",
        "features": {"age": 41, "region": "north", "customer_id": "NL-0042",
                     "email": "jan@example.nl", "postcode": "1011AB"},
        "prediction": {"score": 0.3}});
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/predictions", agent.addr))
        .json(&posted)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
    wait_drained(&agent, Duration::from_secs(30)).await;
    assert_eq!(agent.proc.terminate(), Some(0));
    let events = read_topic(
        &brokers,
        &topic,
        PARTITIONS,
        Duration::from_secs(10),
        |_| true,
    );
    assert_eq!(events.len(), 1);
    let e = &events[0];
    let raw = e.to_string();
    for secret in [
        "citizen-123456782",
        "NL-0042",
        "jan@example.nl",
        "1011AB",
        key,
    ] {
        assert!(!raw.contains(secret), "{secret} reached Kafka: {raw}");
    }
    let fields: Vec<&String> = e["features"]
        .as_object()
        .expect("features")
        .keys()
        .collect();
    assert_eq!(fields, ["age", "customer_id", "region"]);
    assert_eq!(e["prediction_id"].as_str().map(str::len), Some(64));
    assert_eq!(e["suppressed"], json!(["postcode"]));
    let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    for secret in ["citizen-123456782", "NL-0042", key] {
        assert!(!log.contains(secret), "{secret} in the agent's log");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real broker: run tests/real-broker.sh or set DRIFTWATCH_TEST_BROKERS"]
async fn a_truncated_and_corrupted_spool_starts_serves_and_reports_the_loss() {
    use driftwatch_agent::spool::{FsyncPolicy, Spool, SpoolRecord};
    let brokers = brokers();
    let topic = topic(&brokers, "damaged").await;
    let dir = test_dir("damaged");
    let spool_dir = dir.join("agent").join("spool");
    {
        // What a dead agent left behind: 60 events in segments of about ten.
        let (mut spool, _) = Spool::open(&spool_dir, 2500, FsyncPolicy::Always).expect("spool");
        for i in 0..60 {
            let mut e = event(&format!("left-{i}"));
            e["v"] = json!(1);
            e["kind"] = json!("prediction");
            e["event_id"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
            e["timestamp"] = json!("2026-11-23T10:00:00Z");
            e["received_at"] = json!("2026-11-23T10:00:00Z");
            spool
                .append(&[SpoolRecord {
                    key: "credit".into(),
                    payload: serde_json::to_vec(&e).expect("json"),
                }])
                .expect("append");
        }
    }
    let segments = driftwatch_agent::spool::segment_paths(&spool_dir).expect("segments");
    assert!(segments.len() >= 4, "{segments:?}");
    // A flipped byte in the second segment; the last one cut mid-record.
    let mut bytes = std::fs::read(&segments[1]).expect("read");
    bytes[100] ^= 0x55;
    std::fs::write(&segments[1], bytes).expect("write");
    let last = segments.last().expect("last");
    let len = std::fs::metadata(last).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .and_then(|f| f.set_len(len - 11))
        .expect("truncate");

    let mut agent = AgentProc::start(&dir, &brokers, &topic, "", "");
    agent.wait_ready().await;
    let page = agent.metrics().await;
    let lost = metric(
        &page,
        "driftwatch_agent_spool_lost_total{reason=\"corruption\"}",
    )
    .expect("lost counter");
    // Byte 100 of the second segment is in its first record (about 250 bytes each).
    assert_eq!(lost, 1.0, "the one damaged record is reported: {page}");
    assert!(metric(&page, "driftwatch_agent_spool_truncated_bytes_total").unwrap_or(0.0) > 0.0);
    // It serves new events, and delivers every record around the damaged one.
    post_all(agent.addr, &["new-0".to_owned()], 1).await;
    wait_drained(&agent, Duration::from_secs(30)).await;
    assert_eq!(agent.proc.terminate(), Some(0));
    let first_of = |p: &std::path::Path| -> u64 {
        p.file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .expect("segment name")
    };
    // Event left-i has sequence i + 1.
    let damaged = first_of(&segments[1]);
    let mut expected: Vec<String> = (1..=59u64)
        .filter(|seq| *seq != damaged)
        .map(|seq| format!("left-{}", seq - 1))
        .collect();
    expected.push("new-0".into());
    let (distinct, _) = assert_all_in_kafka(&brokers, &topic, &expected);
    assert_eq!(
        distinct,
        expected.len(),
        "nothing of the damaged record or the torn one"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu: run tests/real-broker.sh"]
async fn a_full_disk_refuses_events_and_recovers_once_kafka_confirms() {
    let dir = test_dir("enospc");
    let data_dir = dir.join("agent");
    std::fs::create_dir_all(&data_dir).expect("dir");
    // A 1 MiB file system for the spool, so the disk fills long before the budget.
    let Some(_unmount) = tmpfs(&data_dir, "1m") else {
        eprintln!(
            "skipped: cannot mount a tmpfs here (needs CAP_SYS_ADMIN); \
             a_disk_that_refuses_writes_gets_503_not_a_crash covers the failed write"
        );
        return;
    };
    let (tansu, brokers) = start_tansu(&dir);
    let topic = topic(&brokers, "enospc").await;
    let mut agent = AgentProc::start(
        &dir,
        &brokers,
        &topic,
        "[spool]\nsegment_bytes = 65536\nmax_spool_bytes = 67108864\n",
        "message_timeout_ms = 2000",
    );
    agent.wait_ready().await;
    tansu.signal("STOP");
    let (mut acked, refused) = post_until_refused(agent.addr, "f", 2000).await;
    let r = refused.expect("a 1 MiB disk fills up");
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.expect("json");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("No space left"),
        "{v}"
    );
    // Fill the last page too, one event at a time: now no new file fits at all.
    let client = reqwest::Client::new();
    for i in 0.. {
        let id = format!("last-{i}");
        let r = client
            .post(format!("http://{}/v1/predictions", agent.addr))
            .body(ndjson(std::slice::from_ref(&id)))
            .send()
            .await
            .expect("post");
        if r.status() != 202 {
            break;
        }
        acked.push(id);
    }
    assert!(agent.proc.running());

    // Once Kafka confirms, confirmed segments are deleted (recording the confirmation
    // must itself need no space) and ingest resumes.
    let full_at = acked.len();
    tansu.signal("CONT");
    let ids: Vec<String> = (0..20).map(|i| format!("after-{i}")).collect();
    retry_until_taken(agent.addr, &ids, Duration::from_millis(500)).await;
    acked.extend(ids);
    wait_drained(&agent, Duration::from_secs(60)).await;
    assert_eq!(agent.proc.terminate(), Some(0));
    let (distinct, duplicates) = assert_all_in_kafka(&brokers, &topic, &acked);
    println!(
        "disk full (1 MiB tmpfs) after {full_at} events: 503 \"No space left\", resumed after \
         Kafka confirmed; {distinct} in Kafka, {duplicates} duplicates"
    );
    drop(tansu);
}

/// A spool volume smaller than one segment (1 MiB tmpfs, 16 MiB segments, a 1 GiB
/// budget the disk cannot hold) with Kafka up: once the disk is full of events Kafka
/// has confirmed, the next append finds no space in the one open segment. The agent
/// rolls and deletes that confirmed segment and takes the events, and a restart on a
/// full disk does the same (it answered 503 "No space left" for good, restarts too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu: run tests/real-broker.sh"]
async fn a_disk_smaller_than_one_segment_keeps_taking_events() {
    let dir = test_dir("small-disk");
    let data_dir = dir.join("agent");
    std::fs::create_dir_all(&data_dir).expect("dir");
    let Some(_unmount) = tmpfs(&data_dir, "1m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs CAP_SYS_ADMIN)");
        return;
    };
    let (tansu, brokers) = start_tansu(&dir);
    let topic = topic(&brokers, "small-disk").await;
    let spool = "[spool]\nsegment_bytes = 16777216\nmax_spool_bytes = 1073741824\n";
    let mut agent = AgentProc::start(&dir, &brokers, &topic, spool, "message_timeout_ms = 5000");
    agent.wait_ready().await;
    let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    assert!(
        log.contains("spool.max_spool_bytes (1073741824 bytes) is larger than the filesystem"),
        "a 1 GiB budget on a 1 MiB disk is warned about at start:\n{log}"
    );
    // Batches that Kafka confirms as they come: the disk fills with confirmed events.
    let mut acked = Vec::new();
    let mut refusals = Vec::new();
    for b in 0..400 {
        let ids: Vec<String> = (0..20).map(|i| format!("s{b}-{i}")).collect();
        refusals.extend(retry_until_taken(agent.addr, &ids, Duration::from_millis(200)).await);
        acked.extend(ids);
    }
    wait_drained(&agent, Duration::from_secs(60)).await;
    // 8,000 events of about 250 bytes are 2 MB: more than the disk holds, so the open
    // segment was reclaimed at least once.
    let page = agent.metrics().await;
    assert!(
        metric(&page, "driftwatch_agent_kafka_delivered_total").unwrap_or(0.0) >= 8000.0,
        "every event confirmed: {page}"
    );
    assert_eq!(agent.proc.terminate(), Some(0));
    // Fill the disk to its last page with a file, as another writer on the volume would;
    // the agent's spool holds only confirmed events.
    let filler = data_dir.join("filler");
    let mut f = std::fs::File::create(&filler).expect("filler");
    let page = vec![0u8; 4096];
    while std::io::Write::write_all(&mut f, &page).is_ok() {}
    drop(f);
    let mut agent = AgentProc::start(&dir, &brokers, &topic, spool, "message_timeout_ms = 5000");
    agent.wait_ready().await;
    let ids: Vec<String> = (0..20).map(|i| format!("after-restart-{i}")).collect();
    refusals.extend(retry_until_taken(agent.addr, &ids, Duration::from_millis(200)).await);
    acked.extend(ids);
    wait_drained(&agent, Duration::from_secs(60)).await;
    assert_eq!(agent.proc.terminate(), Some(0));
    let _ = std::fs::remove_file(&filler);
    let (distinct, duplicates) = assert_all_in_kafka(&brokers, &topic, &acked);
    println!(
        "1 MiB disk, 16 MiB segments: {distinct} events in Kafka ({duplicates} duplicates), {} refusals on the way ({:?})",
        refusals.len(),
        refusals.iter().collect::<HashSet<_>>()
    );
    drop(tansu);
}
