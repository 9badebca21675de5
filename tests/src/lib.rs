//! Helpers for the end-to-end tests: a webhook receiver that records alerts, a model that
//! posts predictions to an agent, topic creation on any broker, and the built binaries.
//!
//! `tests/pipeline.rs` runs in `cargo test` on librdkafka's mock cluster;
//! `tests/real_broker.rs` runs the binaries as processes against the broker named by
//! `DRIFTWATCH_TEST_BROKERS` (started by `tests/real-broker.sh`).

pub mod kafka;
pub mod process;
pub mod smtp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::path::PathBuf as PlanDir;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use driftwatch_agent::config::AgentConfig;
use driftwatch_detector::driver::kafka::KafkaOptions;
use driftwatch_detector::plan::Plan;
use driftwatch_detector::service::{self, ServiceConfig};
use driftwatch_detector::synth::{demo_plan_toml, CreditModel, Drift};
use prometheus::Registry;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

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

    /// Start on `addr` (a port reserved with `process::free_port`, so a sender can be
    /// pointed at a receiver that is not up yet).
    pub async fn start_on(addr: std::net::SocketAddr) -> anyhow::Result<WebhookReceiver> {
        let r = WebhookReceiver::default();
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let app = Router::new()
            .route("/alerts", post(record))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(r)
    }

    /// Start on a free loopback port behind TLS, with the test server certificate of
    /// `tests/fixtures/tls` (signed by its `ca.pem`, for `localhost` and 127.0.0.1).
    pub async fn start_tls() -> anyhow::Result<(WebhookReceiver, String)> {
        let r = WebhookReceiver::default();
        let listener = TlsListener::bind().await?;
        let addr = listener.tcp.local_addr()?;
        let app = Router::new()
            .route("/alerts", post(record))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((r, format!("https://localhost:{}/alerts", addr.port())))
    }

    /// Alerts received so far.
    pub fn alerts(&self) -> Vec<Value> {
        self.received.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// The committed test TLS material (`tests/fixtures/tls`, made by its `gen.sh`).
pub fn tls_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tls")
        .join(name)
}

/// A loopback TCP listener that completes a TLS handshake (test server certificate)
/// before handing a connection to axum; failed handshakes are dropped.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_native_tls::TlsAcceptor,
}

impl TlsListener {
    async fn bind() -> anyhow::Result<TlsListener> {
        let cert = std::fs::read(tls_fixture("server.pem"))?;
        let key = std::fs::read(tls_fixture("server.key"))?;
        let identity = native_tls::Identity::from_pkcs8(&cert, &key)?;
        let acceptor = native_tls::TlsAcceptor::new(identity)?.into();
        Ok(TlsListener {
            tcp: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
            acceptor,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_native_tls::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Post `before` undrifted then `after` drifted predictions of `system` to an agent, in
/// NDJSON batches; every batch must be acknowledged with 202. With `repeat`, each batch
/// is posted twice, as a model server retrying after a lost answer would.
pub async fn post_stream(
    agent: SocketAddr,
    system: &str,
    seed: u64,
    before: usize,
    after: usize,
    repeat: bool,
) -> anyhow::Result<()> {
    post_stream_with(
        agent,
        system,
        seed,
        (before, after),
        repeat,
        Drift::DEMO,
        None,
    )
    .await
}

/// [`post_stream`] with the drift to apply after `before` predictions, and, with
/// `outcome_delay`, each prediction's outcome posted to `/v1/outcomes` once that many
/// later predictions have been posted (stamped as many seconds after it); the last ones
/// at the end.
pub async fn post_stream_with(
    agent: SocketAddr,
    system: &str,
    seed: u64,
    (before, after): (usize, usize),
    repeat: bool,
    drift: Drift,
    outcome_delay: Option<usize>,
) -> anyhow::Result<()> {
    post_segments(
        agent,
        system,
        seed,
        &[(before, Drift::NONE), (after, drift)],
        repeat,
        outcome_delay,
    )
    .await
}

/// [`post_stream_with`] over segments of (predictions, drift) in order: drifted, then
/// recovered, for instance.
pub async fn post_segments(
    agent: SocketAddr,
    system: &str,
    seed: u64,
    segments: &[(usize, Drift)],
    repeat: bool,
    outcome_delay: Option<usize>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut model = CreditModel::new(system, seed);
    let total: usize = segments.iter().map(|(n, _)| n).sum();
    let drift_at = |i: usize| {
        let mut end = 0;
        for (n, d) in segments {
            end += n;
            if i < end {
                return *d;
            }
        }
        Drift::NONE
    };
    let mut sent = 0;
    let mut awaiting = std::collections::VecDeque::new();
    let post = |path: &'static str, body: Vec<u8>| {
        let client = client.clone();
        async move {
            // As a model server would: keep the batch on 503 and retry (the agent
            // answers 503 while it recovers its spool at start).
            let mut attempts = 0;
            let r = loop {
                let r = client
                    .post(format!("http://{agent}{path}"))
                    .body(body.clone())
                    .send()
                    .await?;
                attempts += 1;
                if r.status() != 503 || attempts == 50 {
                    break r;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            };
            anyhow::ensure!(r.status() == 202, "agent answered {}", r.status());
            Ok::<_, anyhow::Error>(())
        }
    };
    while sent < total {
        let n = 250.min(total - sent);
        let mut body = Vec::new();
        for i in 0..n {
            let d = drift_at(sent + i);
            let p = model.next_json(d);
            serde_json::to_writer(&mut body, &p)?;
            body.push(b'\n');
            if outcome_delay.is_some() {
                awaiting.push_back(p);
            }
        }
        for _ in 0..(1 + usize::from(repeat)) {
            post("/v1/predictions", body.clone()).await?;
        }
        sent += n;
        if let Some(delay) = outcome_delay {
            let due = awaiting.len().saturating_sub(delay);
            let mut body = Vec::new();
            for p in awaiting.drain(..due) {
                serde_json::to_writer(&mut body, &model.outcome_json(&p, delay as i64))?;
                body.push(b'\n');
            }
            if !body.is_empty() {
                post("/v1/outcomes", body).await?;
            }
        }
    }
    if let Some(delay) = outcome_delay {
        let mut body = Vec::new();
        for p in awaiting.drain(..) {
            serde_json::to_writer(&mut body, &model.outcome_json(&p, delay as i64))?;
            body.push(b'\n');
        }
        if !body.is_empty() {
            post("/v1/outcomes", body).await?;
        }
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
        .map(|(name, parts)| {
            let t = NewTopic::new(name, *parts, TopicReplication::Fixed(1));
            // State topics are compacted, as README asks.
            if name.ends_with(".state") {
                t.set("cleanup.policy", "compact")
            } else {
                t
            }
        })
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

/// The JSON paths where `a` and `b` differ (`$.window.count: 600 != 599`), at most
/// `limit`: what a failed "same as replay" assertion prints.
pub fn json_diff(a: &serde_json::Value, b: &serde_json::Value, limit: usize) -> Vec<String> {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        use serde_json::Value;
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let p = format!("{path}.{k}");
                    match (x.get(k), y.get(k)) {
                        (Some(u), Some(v)) => walk(&p, u, v, out),
                        (u, v) => out.push(format!("{p}: {u:?} != {v:?}")),
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (u, v)) in x.iter().zip(y).enumerate() {
                    walk(&format!("{path}[{i}]"), u, v, out);
                }
            }
            _ if a != b => out.push(format!("{path}: {a} != {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("$", a, b, &mut out);
    out.truncate(limit);
    out
}

/// What an in-process pipeline run produced.
pub struct Outcome {
    /// Alerts received at the webhook.
    pub alerts: Vec<serde_json::Value>,
    /// Windows the detector evaluated.
    pub windows: f64,
    /// Repeated predictions the detector dropped.
    pub duplicates: f64,
}

/// model -> agent (HTTP) -> mock-cluster Kafka -> detector, in this process, for one
/// system; returns the alerts at the webhook once `windows` windows were evaluated.
/// `plan_extra` is appended to the plan's `[alerts]` table.
pub async fn pipeline(
    system: &str,
    before: usize,
    after: usize,
    windows: usize,
    plan_extra: &str,
    repeat: bool,
) -> Outcome {
    pipeline_with(
        system,
        &[(before, Drift::NONE), (after, Drift::DEMO)],
        windows,
        plan_extra,
        repeat,
    )
    .await
}

/// [`pipeline`] over segments of (predictions, drift): drifted, then recovered, for
/// instance.
pub async fn pipeline_with(
    system: &str,
    segments: &[(usize, Drift)],
    windows: usize,
    plan_extra: &str,
    repeat: bool,
) -> Outcome {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic("driftwatch.events", 3, 1)
        .expect("topic");
    for t in [
        "driftwatch.alerts",
        "driftwatch.reports",
        "driftwatch.state",
    ] {
        cluster.create_topic(t, 1, 1).expect("topic");
    }
    let brokers = cluster.bootstrap_servers();
    let stop = CancellationToken::new();
    let (hook, url) = WebhookReceiver::start().await.expect("webhook");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let agent_addr = listener.local_addr().expect("addr");
    let state = std::env::temp_dir().join(format!("dw-pipeline-{system}-{}", std::process::id()));
    let mut config = AgentConfig::default();
    config.kafka.brokers = brokers.clone();
    config.data_dir = state.join("agent");
    let s = stop.clone();
    let agent = tokio::spawn(driftwatch_agent::run(
        listener,
        config,
        Registry::new(),
        async move { s.cancelled().await },
    ));

    let plan_text = demo_plan_toml(system, 2000, 1000)
        + &format!("webhook_url = \"{url}\"\nwebhook_sends = \"windows\"\n{plan_extra}");
    let plan = Arc::new(Plan::from_toml(&plan_text, "plan", PlanDir::new()).expect("plan"));
    let s = stop.clone();
    let config = ServiceConfig::new(
        KafkaOptions {
            group_id: format!("dw-{system}"),
            ..KafkaOptions::new(&brokers)
        },
        vec![plan],
    );
    let registry = config.registry.clone();
    let detector = tokio::spawn(service::run(
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind"),
        config,
        async move { s.cancelled().await },
    ));

    post_segments(agent_addr, system, 42, segments, repeat, None)
        .await
        .expect("all batches acknowledged");
    let series = format!("driftwatch_windows_total{{system=\"{system}\"}}");
    let evaluated = eventually(Duration::from_secs(30), || {
        let page = driftwatch_agent::metrics::render(&registry);
        let n = metric(&page, &series).unwrap_or(0.0);
        async move { (n >= windows as f64).then_some(n) }
    })
    .await;
    let dup_series = format!("driftwatch_events_duplicate_total{{system=\"{system}\"}}");
    if repeat {
        // The last window closes on the first copy of the last batch; its repeats may
        // still be on their way: wait for every one (more would show as a failure).
        let want = segments.iter().map(|(n, _)| n).sum::<usize>() as f64;
        let _ = eventually(Duration::from_secs(30), || {
            let n = metric(&driftwatch_agent::metrics::render(&registry), &dup_series);
            async move { n.filter(|n| *n >= want) }
        })
        .await;
    }
    let duplicates =
        metric(&driftwatch_agent::metrics::render(&registry), &dup_series).unwrap_or(0.0);
    // The webhook reads the alerts topic in a consumer group of its own: wait until it
    // has every alert raised before stopping (stopping does not wait for it).
    let raised_series = [
        format!("driftwatch_alerts_total{{severity=\"critical\",system=\"{system}\"}}"),
        format!("driftwatch_alerts_total{{severity=\"warning\",system=\"{system}\"}}"),
    ];
    let raised: usize = raised_series
        .iter()
        .map(|s| metric(&driftwatch_agent::metrics::render(&registry), s).unwrap_or(0.0) as usize)
        .sum();
    let _ = eventually(Duration::from_secs(30), || {
        let n = hook.alerts().len();
        async move { (n >= raised).then_some(n) }
    })
    .await;
    stop.cancel();
    let _ = agent.await;
    let _ = detector.await;
    let _ = std::fs::remove_dir_all(state);
    Outcome {
        alerts: hook.alerts(),
        windows: evaluated.unwrap_or(0.0),
        duplicates,
    }
}
