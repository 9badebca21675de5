//! The agent's HTTP contract against an embedded Kafka (librdkafka's mock cluster):
//! what a model server sees, and what arrives in Kafka.

use std::net::SocketAddr;
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
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(driftwatch_agent::run(
        listener,
        config,
        Registry::new(),
        async move { s.cancelled().await },
    ));
    Agent { addr, stop, task }
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

    let brokers = c.bootstrap_servers();
    let got = tokio::task::spawn_blocking(move || drain(&brokers, 4))
        .await
        .expect("drain");
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

    let brokers = c.bootstrap_servers();
    let got = tokio::task::spawn_blocking(move || drain(&brokers, 0))
        .await
        .expect("drain");
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
async fn kafka_down_answers_503_with_retry_after_and_live_ready_hold() {
    let c = cluster();
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
    assert_eq!(
        client
            .get(format!("{base}/ready"))
            .send()
            .await
            .expect("ready")
            .status(),
        200
    );
    c.broker_down(1).expect("broker down");
    let r = client
        .post(format!("{base}/v1/predictions"))
        .json(&prediction("credit", 1))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
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
    let mut ok = false;
    for _ in 0..20 {
        let r = client
            .post(format!("{base}/v1/predictions"))
            .json(&prediction("credit", 2))
            .send()
            .await
            .expect("post");
        if r.status() == 202 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ok, "ingest resumes once the broker is back");
    agent.stop.cancel();
    let _ = agent.task.await;
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

    let brokers = c.bootstrap_servers();
    let got = tokio::task::spawn_blocking(move || drain(&brokers, 2))
        .await
        .expect("drain");
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
    let _ = std::fs::remove_file(key_file);
}
