//! The agent's HTTP contract against an embedded Kafka (librdkafka's mock cluster):
//! what a model server sees, and what arrives in Kafka.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use driftwatch_agent::config::AgentConfig;
use prometheus::Registry;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::Message;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

struct Agent {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), driftwatch_agent::AgentError>>,
    data_dir: PathBuf,
}

/// A fresh data directory for one agent.
fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dw-agent-{name}-{}-{}",
        std::process::id(),
        uuid_like()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn start_agent(brokers: &str, timeout_ms: u64) -> Agent {
    start_agent_with(brokers, timeout_ms, AgentConfig::default()).await
}

async fn start_agent_with(brokers: &str, timeout_ms: u64, mut config: AgentConfig) -> Agent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    config.kafka.brokers = brokers.into();
    config.kafka.message_timeout_ms = timeout_ms;
    config.max_batch_events = 100;
    config.shutdown_grace_ms = 2000;
    if config.data_dir == AgentConfig::default().data_dir {
        config.data_dir = data_dir("http");
    }
    let data_dir = config.data_dir.clone();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(driftwatch_agent::run(
        listener,
        config,
        Registry::new(),
        async move { s.cancelled().await },
    ));
    wait_ready(addr).await;
    Agent {
        addr,
        stop,
        task,
        data_dir,
    }
}

/// `/ready` answers 200 once the spool is recovered.
async fn wait_ready(addr: SocketAddr) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("http://{addr}/ready")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("agent at {addr} not ready within 5 s");
}

async fn post(client: &reqwest::Client, addr: SocketAddr, body: &Value) -> reqwest::Response {
    client
        .post(format!("http://{addr}/v1/predictions"))
        .json(body)
        .send()
        .await
        .expect("post")
}

/// A metric's value on a metrics page.
fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Every byte under a directory, as text (for "this never reached the disk" checks).
fn all_files_text(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out += &all_files_text(&p);
        } else {
            out += &String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default());
        }
    }
    out
}

/// A metrics page holds this exact line (`name{labels} value`).
fn assert_line(page: &str, line: &str) {
    assert!(
        page.contains(&format!("{line}\n")),
        "no line `{line}` in:\n{page}"
    );
}

/// The agent's `/metrics` page.
async fn metrics_page(client: &reqwest::Client, addr: SocketAddr) -> String {
    client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let c = MockCluster::new(1).expect("mock cluster");
    c.create_topic("driftwatch.events", 2, 1).expect("topic");
    c
}

fn prediction(system: &str, id: u32) -> Value {
    json!({"system_id": system, "model_version": "1.0", "prediction_id": format!("p{id}"),
           "features": {"age": 30 + id, "region": "north"}, "prediction": {"score": 0.5}})
}

/// Every message on the events topic: (key, payload).
fn drain(brokers: &str, expect: usize) -> Vec<(String, Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("audit-{}", uuid_like()))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer
        .subscribe(&["driftwatch.events"])
        .expect("subscribe");
    let mut out = Vec::new();
    // Proving absence needs a bound: 3 s of silence is far beyond the mock cluster's latency.
    let wait = if expect == 0 { 3 } else { 10 };
    let deadline = std::time::Instant::now() + Duration::from_secs(wait);
    while std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let v: Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("json payload");
            out.push((key, v));
        }
        if out.len() >= expect && expect > 0 {
            // Poll a little longer to catch anything unexpected.
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
                let v: Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).expect("json");
                out.push((String::new(), v));
            }
            break;
        }
    }
    out
}

/// The `prediction_id`s of drained events, in arrival order.
fn prediction_ids(got: &[(String, Value)]) -> Vec<&str> {
    got.iter()
        .filter_map(|(_, v)| v["prediction_id"].as_str())
        .collect()
}

/// [`drain`] off the async workers.
async fn drain_async(
    c: &MockCluster<'static, DefaultProducerContext>,
    expect: usize,
) -> Vec<(String, Value)> {
    let brokers = c.bootstrap_servers();
    tokio::task::spawn_blocking(move || drain(&brokers, expect))
        .await
        .expect("drain")
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_are_in_kafka_keyed_by_system() {
    let c = cluster();
    let agent = start_agent(&c.bootstrap_servers(), 10_000).await;
    let client = reqwest::Client::new();
    let body = format!(
        "{}\n{}\n{}\n",
        prediction("credit", 1),
        prediction("credit", 2),
        prediction("fraud", 3)
    );
    let r = client
        .post(format!("http://{}/v1/predictions", agent.addr))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"accepted": 3})
    );
    let outcome = json!({"system_id": "credit", "prediction_id": "p1", "outcome": "default"});
    let r = client
        .post(format!("http://{}/v1/outcomes", agent.addr))
        .json(&outcome)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);

    let got = drain_async(&c, 4).await;
    assert_eq!(got.len(), 4, "exactly the acknowledged events: {got:?}");
    let mut keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["credit", "credit", "credit", "fraud"]);
    for (key, v) in &got {
        assert_eq!(v["system_id"], json!(key));
        assert_eq!(v["v"], json!(1));
        assert!(v["event_id"].as_str().is_some_and(|s| s.len() == 36), "{v}");
    }
    assert_eq!(
        got.iter().filter(|(_, v)| v["kind"] == "outcome").count(),
        1,
        "one outcome"
    );

    let metrics = metrics_page(&client, agent.addr).await;
    assert_line(
        &metrics,
        "driftwatch_agent_events_accepted_total{kind=\"prediction\"} 3",
    );
    assert_line(
        &metrics,
        "driftwatch_agent_events_accepted_total{kind=\"outcome\"} 1",
    );
    assert_line(&metrics, "driftwatch_agent_kafka_delivered_total 4");
    assert!(!metrics.contains("credit"), "no system id in metric labels");
    agent.stop.cancel();
    agent.task.await.expect("join").expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_event_refuses_the_batch_and_names_the_field() {
    let c = cluster();
    let agent = start_agent(&c.bootstrap_servers(), 10_000).await;
    let client = reqwest::Client::new();
    let mut bad = prediction("credit", 2);
    bad["features"]["age"] = json!([30]);
    let body = json!([prediction("credit", 1), bad, prediction("credit", 3)]);
    let r = client
        .post(format!("http://{}/v1/predictions", agent.addr))
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["accepted"], json!(0));
    assert_eq!(v["errors"][0]["index"], json!(1));
    assert_eq!(v["errors"][0]["field"], json!("features.age"));
    assert_eq!(
        v["errors"][0]["expected"],
        json!("a number, string, boolean or null")
    );
    assert_eq!(
        v["error"],
        json!("1 of 3 events are invalid; none were accepted")
    );

    let r = client
        .post(format!("http://{}/v1/predictions", agent.addr))
        .body("{\"system_id\": ")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let text = r.text().await.expect("text");
    assert!(text.contains("not JSON or NDJSON"), "{text}");

    let many: String = (0..101)
        .map(|i| format!("{}\n", prediction("credit", i)))
        .collect();
    let r = client
        .post(format!("http://{}/v1/predictions", agent.addr))
        .body(many)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);

    let got = drain_async(&c, 0).await;
    assert!(
        got.is_empty(),
        "nothing of a refused batch reaches Kafka: {got:?}"
    );
    let metrics = metrics_page(&client, agent.addr).await;
    assert_line(
        &metrics,
        "driftwatch_agent_events_rejected_total{kind=\"prediction\",reason=\"invalid\"} 3",
    );
    agent.stop.cancel();
    let _ = agent.task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_still_acknowledges_from_the_spool_and_delivers_after() {
    let c = cluster();
    // A send times out after 1.5 s: the outage below outlasts it twice over.
    let agent = start_agent(&c.bootstrap_servers(), 1_500).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", agent.addr);
    assert_eq!(
        client
            .get(format!("{base}/live"))
            .send()
            .await
            .expect("live")
            .status(),
        200
    );
    c.broker_down(1).expect("broker down");
    for i in 0..5 {
        let r = post(&client, agent.addr, &prediction("credit", i)).await;
        assert_eq!(
            r.status(),
            202,
            "the spool acknowledges while Kafka is down"
        );
    }
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    let page = metrics_page(&client, agent.addr).await;
    assert_eq!(
        metric(&page, "driftwatch_agent_kafka_up"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "driftwatch_agent_spool_backlog_events"),
        Some(5.0)
    );
    assert!(
        metric(&page, "driftwatch_agent_kafka_delivery_errors_total").unwrap_or(0.0) >= 1.0,
        "the timed-out sends are counted: {page}"
    );
    // Readiness is a latch: a Kafka outage does not take the pod out of service.
    assert_eq!(
        client
            .get(format!("{base}/ready"))
            .send()
            .await
            .expect("ready")
            .status(),
        200
    );
    c.broker_up(1).expect("broker up");
    let got = drain_async(&c, 5).await;
    let mut ids = prediction_ids(&got);
    ids.sort();
    ids.dedup();
    assert_eq!(ids, ["p0", "p1", "p2", "p3", "p4"], "nothing lost: {got:?}");
    let page = metrics_page(&client, agent.addr).await;
    assert_eq!(
        metric(&page, "driftwatch_agent_kafka_up"),
        Some(1.0),
        "{page}"
    );
    agent.stop.cancel();
    agent.task.await.expect("join").expect("clean shutdown");
    // Everything confirmed: the spool holds no unconfirmed record.
    let (spool, _) = driftwatch_agent::spool::Spool::open(
        &agent.data_dir.join("spool"),
        1 << 20,
        driftwatch_agent::spool::FsyncPolicy::Interval,
    )
    .expect("reopen");
    assert_eq!(spool.confirmed() + 1, spool.next_seq());
}

/// A small spool: 16 KiB budget in 4 KiB segments.
fn small_spool(mode: &str) -> AgentConfig {
    AgentConfig::from_toml(&format!(
        "max_body_bytes = 4096\n[spool]\nmax_spool_bytes = 16384\nsegment_bytes = 4096\nwhen_full = \"{mode}\"\n"
    ))
    .expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_answers_503_then_resumes_when_kafka_returns() {
    let c = cluster();
    c.broker_down(1).expect("broker down");
    let agent = start_agent_with(&c.bootstrap_servers(), 1_000, small_spool("reject")).await;
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..400 {
        let r = post(&client, agent.addr, &prediction("credit", i)).await;
        if r.status() == 202 {
            acked.push(format!("p{i}"));
        } else {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the budget fills up");
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let v: Value = r.json().await.expect("json");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("spool is full"),
        "{v}"
    );
    assert!(acked.len() > 10, "{} acknowledged before full", acked.len());
    let page = metrics_page(&client, agent.addr).await;
    assert_line(
        &page,
        "driftwatch_agent_events_rejected_total{kind=\"prediction\",reason=\"spool_full\"} 1",
    );
    assert!(metric(&page, "driftwatch_agent_spool_bytes").unwrap_or(0.0) <= 16384.0);

    c.broker_up(1).expect("broker up");
    let mut resumed = false;
    for i in 1000..1200 {
        let r = post(&client, agent.addr, &prediction("credit", i)).await;
        if r.status() == 202 {
            acked.push(format!("p{i}"));
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(resumed, "ingest resumes once Kafka confirmed the backlog");
    let n = acked.len();
    let got = drain_async(&c, n).await;
    let seen: std::collections::HashSet<&str> = prediction_ids(&got).into_iter().collect();
    for id in &acked {
        assert!(
            seen.contains(id.as_str()),
            "acknowledged {id} never reached Kafka"
        );
    }
    agent.stop.cancel();
    let _ = agent.task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_mode_counts_what_it_drops() {
    let c = cluster();
    c.broker_down(1).expect("broker down");
    let agent = start_agent_with(&c.bootstrap_servers(), 1_000, small_spool("drop_newest")).await;
    let client = reqwest::Client::new();
    let mut dropped = 0;
    for i in 0..300 {
        let r = post(&client, agent.addr, &prediction("credit", i)).await;
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.expect("json");
        dropped += v["dropped"].as_u64().unwrap_or(0);
    }
    assert!(dropped > 0, "the budget filled up");
    let page = metrics_page(&client, agent.addr).await;
    assert_eq!(
        metric(
            &page,
            "driftwatch_agent_events_dropped_total{reason=\"spool_full\"}"
        ),
        Some(dropped as f64)
    );
    agent.stop.cancel();
    let _ = agent.task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_spool_is_recovered_reported_and_the_rest_delivered() {
    use driftwatch_agent::spool::{FsyncPolicy, Spool, SpoolRecord};
    let dir = data_dir("damaged");
    let spool_dir = dir.join("spool");
    {
        // What a killed agent left: 30 events in segments of about ten.
        let (mut spool, _) = Spool::open(&spool_dir, 2000, FsyncPolicy::Always).expect("spool");
        for i in 0..30 {
            let payload = serde_json::to_vec(&json!({"v": 1, "kind": "prediction",
                "system_id": "credit", "model_version": "1", "prediction_id": format!("p{i}"),
                "event_id": format!("00000000-0000-4000-8000-{i:012}"),
                "timestamp": "2026-11-23T10:00:00Z", "received_at": "2026-11-23T10:00:00Z",
                "features": {"age": 30}, "prediction": {"score": 0.5}}))
            .expect("json");
            spool
                .append(&[SpoolRecord {
                    key: "credit".into(),
                    payload,
                }])
                .expect("append");
        }
    }
    let segments = driftwatch_agent::spool::segment_paths(&spool_dir).expect("segments");
    assert!(segments.len() >= 3, "{segments:?}");
    // Corrupt a byte in the middle of the first segment; tear the last one mid-record.
    let mut first = std::fs::read(&segments[0]).expect("read");
    first[40] ^= 0xff;
    std::fs::write(&segments[0], first).expect("write");
    let last = segments.last().expect("last");
    let len = std::fs::metadata(last).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .and_then(|f| f.set_len(len - 7))
        .expect("tear");

    let c = cluster();
    let config = AgentConfig {
        data_dir: dir.clone(),
        ..AgentConfig::default()
    };
    let agent = start_agent_with(&c.bootstrap_servers(), 10_000, config).await;
    let client = reqwest::Client::new();
    let page = metrics_page(&client, agent.addr).await;
    let lost = metric(
        &page,
        "driftwatch_agent_spool_lost_total{reason=\"corruption\"}",
    )
    .expect("lost metric");
    assert!(lost >= 1.0, "{page}");
    assert!(metric(&page, "driftwatch_agent_spool_truncated_bytes_total").unwrap_or(0.0) > 0.0);
    // It serves: a new event is acknowledged.
    assert_eq!(
        post(&client, agent.addr, &prediction("credit", 99))
            .await
            .status(),
        202
    );
    // Byte 40 is in the first record (p0): only it is lost; p29 was torn (never
    // acknowledged).
    assert_eq!(lost, 1.0, "{page}");
    let mut expected: Vec<String> = (1..29).map(|i| format!("p{i}")).collect();
    expected.push("p99".into());
    let n = expected.len();
    let got = drain_async(&c, n).await;
    let mut ids = prediction_ids(&got);
    ids.sort_by_key(|id| id[1..].parse::<u32>().unwrap_or(0));
    // Every record around the damage is delivered, then the new event; not the damaged
    // record, and not the torn one.
    assert_eq!(ids, expected);
    let quarantined = std::fs::read_dir(&spool_dir)
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".corrupt"))
        .count();
    assert_eq!(quarantined, 1, "kept for inspection");
    agent.stop.cancel();
    let _ = agent.task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_on_the_same_spool_fails_to_start() {
    let c = cluster();
    let first = start_agent(&c.bootstrap_servers(), 10_000).await;
    let mut config = AgentConfig {
        data_dir: first.data_dir.clone(),
        ..AgentConfig::default()
    };
    config.kafka.brokers = c.bootstrap_servers();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let second = driftwatch_agent::run(listener, config, Registry::new(), std::future::pending())
        .await
        .expect_err("the spool is locked");
    assert!(
        second.to_string().contains("in use by another process"),
        "{second}"
    );
    first.stop.cancel();
    let _ = first.task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_fields_and_pseudonyms_reach_kafka() {
    let c = cluster();
    let key_file = std::env::temp_dir().join(format!("dw-hmac-{}", std::process::id()));
    std::fs::write(&key_file, "a-test-key-of-more-than-16-bytes\n").expect("key");
    let config = AgentConfig::from_toml(&format!(
        r#"
[privacy]
key_file = "{}"

[privacy.systems.credit]
allow = {{ age = "number", region = "string" }}
pseudonymise = ["customer_id"]
law_enforcement = true
suppress = ["postcode"]
"#,
        key_file.display()
    ))
    .expect("config");
    let agent = start_agent_with(&c.bootstrap_servers(), 10_000, config).await;
    let client = reqwest::Client::new();
    let posted = json!({"system_id": "credit", "model_version": "1", "prediction_id": "citizen-123456782",
        "features": {"age": 41, "region": "north", "customer_id": "NL-0042",
                     "email": "jan@example.nl", "postcode": "1011AB"},
        "prediction": {"score": 0.3}});
    let r = client
        .post(format!("http://{}/v1/predictions", agent.addr))
        .json(&posted)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
    let outcome =
        json!({"system_id": "credit", "prediction_id": "citizen-123456782", "outcome": "repaid"});
    let r = client
        .post(format!("http://{}/v1/outcomes", agent.addr))
        .json(&outcome)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
    // A type that does not match the policy is refused and named.
    let mut wrong = posted.clone();
    wrong["features"]["age"] = json!("41");
    let r = client
        .post(format!("http://{}/v1/predictions", agent.addr))
        .json(&wrong)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["errors"][0]["field"], "features.age");

    let got = drain_async(&c, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let raw = got.iter().map(|(_, v)| v.to_string()).collect::<String>();
    for secret in [
        "citizen-123456782",
        "NL-0042",
        "jan@example.nl",
        "1011AB",
        "a-test-key",
    ] {
        assert!(!raw.contains(secret), "{secret} left the pod: {raw}");
    }
    let pred = &got
        .iter()
        .find(|(_, v)| v["kind"] == "prediction")
        .expect("prediction")
        .1;
    let out = &got
        .iter()
        .find(|(_, v)| v["kind"] == "outcome")
        .expect("outcome")
        .1;
    let features: Vec<&str> = pred["features"]
        .as_object()
        .expect("features")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(features, ["age", "customer_id", "region"]);
    assert_eq!(pred["suppressed"], json!(["postcode"]));
    let pseudonym = pred["prediction_id"].as_str().expect("id");
    assert_eq!(pseudonym.len(), 64, "HMAC-SHA-256 in hex");
    assert_eq!(
        out["prediction_id"], pred["prediction_id"],
        "outcomes join on the same pseudonym"
    );

    let metrics = metrics_page(&client, agent.addr).await;
    assert_line(
        &metrics,
        "driftwatch_agent_fields_removed_total{reason=\"unlisted\"} 1",
    );
    assert_line(
        &metrics,
        "driftwatch_agent_fields_removed_total{reason=\"suppressed\"} 1",
    );
    assert_line(&metrics, "driftwatch_agent_fields_pseudonymised_total 3");
    agent.stop.cancel();
    let _ = agent.task.await;
    // What is kept on the pod's disk was stripped before it was written.
    let on_disk = all_files_text(&agent.data_dir);
    for secret in ["citizen-123456782", "NL-0042", "jan@example.nl", "1011AB"] {
        assert!(!on_disk.contains(secret), "{secret} reached the spool");
    }
    let _ = std::fs::remove_file(key_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_kafka_refuses_for_good_goes_to_the_dead_letter_spool() {
    let c = cluster();
    let agent = start_agent(&c.bootstrap_servers(), 10_000).await;
    let client = reqwest::Client::new();
    // Events over the size Kafka takes are refused at ingest now; a broker can still
    // refuse for good what passed (a topic with a smaller max.message.bytes, a record
    // it finds invalid). The mock broker answers the next produce request with that.
    assert_eq!(
        post(&client, agent.addr, &prediction("credit", 0))
            .await
            .status(),
        202
    );
    let first = drain_async(&c, 1).await;
    assert_eq!(prediction_ids(&first), ["p0"]);
    c.request_errors(
        rdkafka::types::RDKafkaApiKey::Produce,
        &[rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    assert_eq!(
        post(&client, agent.addr, &prediction("credit", 1))
            .await
            .status(),
        202
    );
    let mut dead = 0.0;
    for _ in 0..100 {
        let page = metrics_page(&client, agent.addr).await;
        dead = metric(
            &page,
            "driftwatch_agent_dead_letter_total{reason=\"too_large\"}",
        )
        .unwrap_or(0.0);
        if dead >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead, 1.0, "the refused event went to the dead-letter spool");
    assert_eq!(
        post(&client, agent.addr, &prediction("credit", 2))
            .await
            .status(),
        202
    );
    let got = drain_async(&c, 2).await;
    let ids = prediction_ids(&got);
    assert_eq!(ids, ["p0", "p2"], "the rest is delivered, in order");
    let mut page = String::new();
    for _ in 0..50 {
        page = metrics_page(&client, agent.addr).await;
        if metric(&page, "driftwatch_agent_spool_backlog_events") == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_line(
        &page,
        "driftwatch_agent_dead_letter_total{reason=\"too_large\"} 1",
    );
    assert_eq!(
        metric(&page, "driftwatch_agent_spool_backlog_events"),
        Some(0.0),
        "a dead letter does not block the confirmed position"
    );
    agent.stop.cancel();
    let _ = agent.task.await;
    let mut out = Vec::new();
    let n =
        driftwatch_agent::spool::dump(&agent.data_dir.join("dead-letter"), &mut out).expect("dump");
    assert_eq!(n, 1);
    let kept: Value = serde_json::from_slice(&out).expect("one NDJSON line");
    assert_eq!(kept["prediction_id"], "p1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_outage_leaves_the_rest_in_the_spool_for_the_next_start() {
    let c = cluster();
    c.broker_down(1).expect("broker down");
    let agent = start_agent(&c.bootstrap_servers(), 1_000).await;
    let client = reqwest::Client::new();
    for i in 0..5 {
        assert_eq!(
            post(&client, agent.addr, &prediction("credit", i))
                .await
                .status(),
            202
        );
    }
    // The grace period (2 s) passes without Kafka: the agent stops anyway, cleanly.
    agent.stop.cancel();
    agent.task.await.expect("join").expect("clean shutdown");
    {
        let (spool, _) = driftwatch_agent::spool::Spool::open(
            &agent.data_dir.join("spool"),
            1 << 20,
            driftwatch_agent::spool::FsyncPolicy::Interval,
        )
        .expect("reopen");
        assert_eq!(spool.next_seq() - spool.confirmed() - 1, 5, "all five kept");
    }
    c.broker_up(1).expect("broker up");
    let config = AgentConfig {
        data_dir: agent.data_dir.clone(),
        ..AgentConfig::default()
    };
    let next = start_agent_with(&c.bootstrap_servers(), 10_000, config).await;
    let got = drain_async(&c, 5).await;
    let mut ids = prediction_ids(&got);
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids,
        ["p0", "p1", "p2", "p3", "p4"],
        "delivered by the next start"
    );
    next.stop.cancel();
    let _ = next.task.await;
}

/// Segment tags pass the privacy allow-list too (an e-mail in a tag used to leave the
/// pod), and a client cannot set the law-enforcement mark `suppressed` itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_tags_are_allow_listed_and_suppressed_is_the_agents_mark() {
    let c = cluster();
    let key_file = std::env::temp_dir().join(format!("dw-hmac-seg-{}", std::process::id()));
    std::fs::write(&key_file, "a-test-key-of-more-than-16-bytes\n").expect("key");
    let config = AgentConfig::from_toml(&format!(
        "[privacy]\nkey_file = \"{}\"\n[privacy.systems.credit]\nallow = {{ age = \"number\" }}\nsegments = [\"channel\"]\n",
        key_file.display()
    ))
    .expect("config");
    let agent = start_agent_with(&c.bootstrap_servers(), 10_000, config).await;
    let client = reqwest::Client::new();
    let posted = json!({"system_id": "credit", "model_version": "1", "prediction_id": "p1",
        "features": {"age": 41}, "prediction": {"score": 0.3},
        "segment": {"channel": "web", "customer": "jan@example.nl"}});
    assert_eq!(post(&client, agent.addr, &posted).await.status(), 202);
    let mut claimed = posted.clone();
    claimed["suppressed"] = json!(["age"]);
    let r = post(&client, agent.addr, &claimed).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["errors"][0]["field"], "suppressed", "{v}");

    let got = drain_async(&c, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let raw = got[0].1.to_string();
    assert!(
        !raw.contains("jan@example.nl"),
        "a segment tag left the pod: {raw}"
    );
    assert_eq!(got[0].1["segment"], json!({"channel": "web"}));
    assert!(got[0].1.get("suppressed").is_none_or(|s| s == &json!([])));
    let metrics = metrics_page(&client, agent.addr).await;
    assert_line(
        &metrics,
        "driftwatch_agent_fields_removed_total{reason=\"unlisted\"} 1",
    );
    agent.stop.cancel();
    let _ = agent.task.await;
    let _ = std::fs::remove_file(key_file);
}

/// What a client posts is bounded by documented limits, and an error never echoes an
/// unbounded name back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_names_values_and_counts_are_refused_with_a_bounded_answer() {
    let c = cluster();
    let agent = start_agent(&c.bootstrap_servers(), 10_000).await;
    let client = reqwest::Client::new();
    let base = prediction("credit", 1);
    let refused = |v: Value| {
        let (client, addr) = (client.clone(), agent.addr);
        async move {
            let r = post(&client, addr, &v).await;
            let status = r.status().as_u16();
            let text = r.text().await.expect("body");
            (status, text)
        }
    };
    // A 1 MB feature name.
    let mut long_name = base.clone();
    long_name["features"]["x".repeat(1 << 20)] = json!(1);
    let (status, text) = refused(long_name).await;
    assert_eq!(status, 400);
    assert!(text.len() < 2_000, "the answer is {} bytes", text.len());
    assert!(
        text.contains("features.xxxxxxxx") && text.contains("… (1048576 bytes)"),
        "{text}"
    );
    // An unknown top-level key of 100 KB.
    let mut unknown = base.clone();
    unknown["y".repeat(100_000)] = json!(1);
    let (status, text) = refused(unknown).await;
    assert_eq!(status, 400);
    assert!(text.len() < 2_000, "the answer is {} bytes", text.len());
    // Too many features, too long a string, too many segment tags.
    let mut many = base.clone();
    for i in 0..1001 {
        many["features"][format!("f{i}")] = json!(i);
    }
    let (status, text) = refused(many).await;
    assert_eq!(status, 400);
    assert!(text.contains("at most 1000 features"), "{text}");
    let mut long_value = base.clone();
    long_value["features"]["region"] = json!("n".repeat(5000));
    let (status, text) = refused(long_value).await;
    assert_eq!(status, 400);
    assert!(text.contains("a string of at most 4096 bytes"), "{text}");
    let mut tags = base.clone();
    for i in 0..33 {
        tags["segment"][format!("t{i}")] = json!("x");
    }
    let (status, text) = refused(tags).await;
    assert_eq!(status, 400);
    assert!(text.contains("at most 32 tags"), "{text}");
    agent.stop.cancel();
    let _ = agent.task.await;
}

/// A timestamp far from the agent's clock (year 9999, year 1) is refused and named; one
/// an hour old is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_timestamps_are_refused() {
    let c = cluster();
    let agent = start_agent(&c.bootstrap_servers(), 10_000).await;
    let client = reqwest::Client::new();
    for ts in ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"] {
        let mut p = prediction("credit", 1);
        p["timestamp"] = json!(ts);
        let r = post(&client, agent.addr, &p).await;
        assert_eq!(r.status(), 400, "{ts}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["errors"][0]["field"], "timestamp", "{v}");
        assert!(
            v["errors"][0]["expected"]
                .as_str()
                .is_some_and(|e| e.contains("max_timestamp_ahead_s")),
            "{v}"
        );
    }
    let mut p = prediction("credit", 2);
    p["timestamp"] = json!((chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339());
    assert_eq!(post(&client, agent.addr, &p).await.status(), 202);
    agent.stop.cancel();
    let _ = agent.task.await;
}

/// An event larger than Kafka takes is refused at ingest with 413 naming it, instead of
/// being acknowledged and ending in the dead-letter spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_kafka_would_refuse_is_refused_at_ingest() {
    let c = cluster();
    let mut config = AgentConfig::default();
    config
        .kafka
        .properties
        .insert("message.max.bytes".into(), "20000".into());
    let agent = start_agent_with(&c.bootstrap_servers(), 10_000, config).await;
    let client = reqwest::Client::new();
    let mut big = prediction("credit", 2);
    for i in 0..30 {
        big["features"][format!("text{i}")] = json!("w".repeat(1000));
    }
    let batch = json!([prediction("credit", 1), big]);
    let r = post(&client, agent.addr, &batch).await;
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["index"], 1, "{v}");
    assert!(v["bytes"].as_u64().is_some_and(|b| b > 30_000), "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("message.max.bytes")),
        "{v}"
    );
    // Nothing of the batch was kept: the next event is the only one in Kafka.
    assert_eq!(
        post(&client, agent.addr, &prediction("credit", 3))
            .await
            .status(),
        202
    );
    let got = drain_async(&c, 1).await;
    assert_eq!(prediction_ids(&got), ["p3"]);
    agent.stop.cancel();
    let _ = agent.task.await;
}

/// A broker that stops answering (here every round trip takes a minute) shows as
/// `kafka_up` 0 within seconds while sends are in flight, not only once a send times
/// out (30 s by default); the events wait in the spool and arrive after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_broker_shows_in_kafka_up_within_seconds() {
    let c = cluster();
    let mut config = AgentConfig::default();
    config.kafka.stalled_after_ms = 2_000;
    let agent = start_agent_with(&c.bootstrap_servers(), 30_000, config).await;
    let client = reqwest::Client::new();
    assert_eq!(
        post(&client, agent.addr, &prediction("credit", 0))
            .await
            .status(),
        202
    );
    assert_eq!(drain_async(&c, 1).await.len(), 1);
    let page = metrics_page(&client, agent.addr).await;
    assert_eq!(
        metric(&page, "driftwatch_agent_kafka_up"),
        Some(1.0),
        "{page}"
    );
    c.broker_round_trip_time(1, Duration::from_secs(60))
        .expect("slow broker");
    assert_eq!(
        post(&client, agent.addr, &prediction("credit", 1))
            .await
            .status(),
        202
    );
    let mut up = Some(1.0);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        up = metric(
            &metrics_page(&client, agent.addr).await,
            "driftwatch_agent_kafka_up",
        );
        if up == Some(0.0) {
            break;
        }
    }
    assert_eq!(
        up,
        Some(0.0),
        "down within 10 s, before the 30 s send timeout"
    );
    c.broker_round_trip_time(1, Duration::ZERO)
        .expect("broker back");
    agent.stop.cancel();
    let _ = agent.task.await;
}

/// Slow clients are cut off: a connection that never finishes its headers is closed
/// after header_read_timeout_ms, a body that trickles in gets 408 after
/// body_read_timeout_ms, and with every connection slot held by such clients a real
/// request still gets through once they are cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_cannot_hold_the_agent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = cluster();
    let mut config = AgentConfig {
        max_connections: 4,
        max_concurrent_requests: 2,
        header_read_timeout_ms: 500,
        body_read_timeout_ms: 500,
        ..AgentConfig::default()
    };
    config.kafka.brokers = c.bootstrap_servers();
    let agent = start_agent_with(&c.bootstrap_servers(), 10_000, config).await;
    // Four connections that send half a request line and stop: every slot taken.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(agent.addr)
            .await
            .expect("connect");
        s.write_all(b"POST /v1/predictions HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        idle.push(s);
    }
    // A real request waits for a slot, and gets one once the slow ones are cut off.
    // (No pooled connections: the server closes an idle keep-alive connection after
    // header_read_timeout_ms too, and a reuse racing that close would fail here.)
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        post(&client, agent.addr, &prediction("credit", 1)),
    )
    .await
    .expect("served once the slow connections were closed");
    assert_eq!(r.status(), 202);
    for mut s in idle {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the server closed the half-sent request");
    }
    // A body that never completes: 408, and the permit is free again.
    let mut s = tokio::net::TcpStream::connect(agent.addr)
        .await
        .expect("connect");
    s.write_all(
        b"POST /v1/predictions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"system_id\":",
    )
    .await
    .expect("write");
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_read_timeout_ms"), "{text}");
    assert_eq!(
        post(&client, agent.addr, &prediction("credit", 2))
            .await
            .status(),
        202
    );
    agent.stop.cancel();
    let _ = agent.task.await;
}
