//! Helpers for the end-to-end tests: a webhook receiver that records alerts, a model that
//! posts predictions to an agent, topic creation on any broker, and the built binaries.
//!
//! `tests/pipeline.rs` runs in `cargo test` on librdkafka's mock cluster;
//! `tests/real_broker.rs` runs the binaries as processes against the broker named by
//! `DRIFTWATCH_TEST_BROKERS` (started by `tests/real-broker.sh`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use driftwatch_detector::synth::{CreditModel, Drift};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use serde_json::Value;

/// Records every JSON body POSTed to it.
#[derive(Clone, Default)]
pub struct WebhookReceiver {
    received: Arc<Mutex<Vec<Value>>>,
}

async fn record(State(r): State<WebhookReceiver>, body: axum::body::Bytes) -> &'static str {
    if let (Ok(v), Ok(mut list)) = (serde_json::from_slice::<Value>(&body), r.received.lock()) {
        list.push(v);
    }
    "ok"
}

impl WebhookReceiver {
    /// Start on a free loopback port; returns the receiver and its URL.
    pub async fn start() -> anyhow::Result<(WebhookReceiver, String)> {
        let r = WebhookReceiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/alerts", post(record))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((r, format!("http://{addr}/alerts")))
    }

    /// Alerts received so far.
    pub fn alerts(&self) -> Vec<Value> {
        self.received.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Post `before` undrifted then `after` drifted predictions of `system` to an agent, in
/// NDJSON batches; every batch must be acknowledged with 202.
pub async fn post_stream(
    agent: SocketAddr,
    system: &str,
    seed: u64,
    before: usize,
    after: usize,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut model = CreditModel::new(system, seed);
    let total = before + after;
    let mut sent = 0;
    while sent < total {
        let n = 250.min(total - sent);
        let mut body = Vec::new();
        for i in 0..n {
            let drift = if sent + i < before {
                Drift::NONE
            } else {
                Drift::DEMO
            };
            serde_json::to_writer(&mut body, &model.next_json(drift))?;
            body.push(b'\n');
        }
        let r = client
            .post(format!("http://{agent}/v1/predictions"))
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(r.status() == 202, "agent answered {}", r.status());
        sent += n;
    }
    Ok(())
}

/// Create topics with the admin API (real brokers; the mock cluster has its own call).
pub async fn create_topics(brokers: &str, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, parts)| NewTopic::new(name, *parts, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for r in results {
        if let Err((topic, code)) = r {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                anyhow::bail!("cannot create topic {topic}: {code}");
            }
        }
    }
    Ok(())
}

/// A built binary of this workspace (`target/<profile>/<name>`), next to the test binary.
pub fn binary(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("DRIFTWATCH_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/real_broker-xxxx -> target/debug/<name>
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Poll `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of one exact metric line (`name{labels}`) in a Prometheus text page.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}
