//! The incident service: the Kafka driver around the [`Desk`] and the HTTP API.
//!
//! - The alerts topic (group `driftwatch-incidents`): each alert goes to
//!   [`Desk::handle_alert`]; its offset is committed only after the store has it, so a
//!   crash redelivers, and a redelivery is recognised by its `alert_id`.
//! - The reports topic (group `driftwatch-incidents-reports`): window and performance
//!   reports, kept for evidence snapshots and onsets.
//! - Every `reminder_interval`: Art. 73 deadlines and overdue tasks, published on the
//!   alerts topic (the detector's delivery forwards them to Alertmanager and webhooks).
//! - Every `checkpoint_interval`: a signed checkpoint of the audit chain's head, stored,
//!   logged and published on the checkpoints topic.
//!
//! The detector knows nothing of incidents, so it scales out on its own.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use driftwatch_common::kafka::ResolvedSecurity;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use tokio::net::TcpListener;

use crate::api::{self, Api};
use crate::audit::Signer;
use crate::auth::Tokens;
use crate::desk::{Desk, Handled};
use crate::metrics::{result_label, IncidentMetrics};
use crate::policy::Policy;
use crate::store::{Store, StoreError};

/// The default topic of audit checkpoints.
pub const DEFAULT_CHECKPOINTS_TOPIC: &str = "driftwatch.audit-checkpoints";

/// The API's default address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9480";

/// Everything the service needs.
pub struct IncidentConfig {
    /// `sqlite:PATH` or `postgres://...`.
    pub database_url: String,
    /// Kafka bootstrap servers ("" to run the API alone, without Kafka).
    pub brokers: String,
    /// Security settings.
    pub security: ResolvedSecurity,
    /// Extra librdkafka properties.
    pub kafka_properties: BTreeMap<String, String>,
    /// Alerts topic.
    pub alerts_topic: String,
    /// Reports topic ("" for none).
    pub reports_topic: String,
    /// Checkpoints topic ("" for none).
    pub checkpoints_topic: String,
    /// Control topic the agents follow: decisions to restrict or disable ("" for none).
    pub control_topic: String,
    /// Consumer group.
    pub group_id: String,
    /// Plans.
    pub policies: Vec<Policy>,
    /// Tokens.
    pub tokens: Tokens,
    /// File of the Ed25519 checkpoint key (made on first start).
    pub signing_key: PathBuf,
    /// Origin line of checkpoints.
    pub origin: String,
    /// How often to sign a checkpoint (when the chain grew).
    pub checkpoint_interval: Duration,
    /// How often to look for due reminders.
    pub reminder_interval: Duration,
    /// How long an opening waits for its window's report.
    pub evidence_wait: Duration,
    /// The SMTP server notices to parties go out through (None: e-mail notices wait).
    pub mail: Option<crate::notify::send::MailConfig>,
    /// The base URL parties reach the service at (acknowledge links); default the
    /// listener's address.
    pub public_url: Option<String>,
}

/// A failure to start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The store.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The signing key.
    #[error("signing key {path}: {message}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// Kafka.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The listener.
    #[error("http: {0}")]
    Http(std::io::Error),
    /// Metric registration (a bug).
    #[error("metrics: {0}")]
    Metrics(String),
    /// The mail settings.
    #[error("{0}")]
    Mail(#[from] crate::notify::send::SendConfigError),
}

/// Load the checkpoint key, or make one (mode 0600) on first start.
pub fn load_or_create_key(path: &std::path::Path, origin: &str) -> Result<Signer, ServiceError> {
    use base64::Engine as _;
    let err = |message: String| ServiceError::Key {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| err(format!("not base64: {e}")))?;
            let seed: [u8; 32] = bytes
                .try_into()
                .map_err(|_| err("expected a 32-byte Ed25519 seed in base64".into()))?;
            Ok(Signer::new(origin, seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| err(format!("no randomness: {e}")))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            let text = base64::engine::general_purpose::STANDARD.encode(seed);
            write_private(path, text.as_bytes()).map_err(|e| err(e.to_string()))?;
            tracing::info!(path = %path.display(), "made a new audit checkpoint key");
            Ok(Signer::new(origin, seed))
        }
        Err(e) => Err(err(e.to_string())),
    }
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Sign a checkpoint if the chain grew since the last one; returns it.
pub async fn checkpoint_now(
    store: &Store,
    signer: &Signer,
) -> Result<Option<crate::audit::Checkpoint>, StoreError> {
    let (size, head) = store.head().await?;
    let last = store
        .checkpoints()
        .await?
        .last()
        .map(|c| c.size)
        .unwrap_or(0);
    if size == 0 || size == last {
        return Ok(None);
    }
    let cp = signer.sign(size, &head);
    store.add_checkpoint(Utc::now(), &cp).await?;
    Ok(Some(cp))
}

/// Run until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: IncidentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let registry = prometheus::Registry::new();
    let systems: Vec<String> = config
        .policies
        .iter()
        .map(|p| p.system_id.clone())
        .collect();
    let metrics = IncidentMetrics::new(&registry, &systems)
        .map_err(|e| ServiceError::Metrics(e.to_string()))?;
    let ready = driftwatch_common::health::Readiness::new();
    let store = Arc::new(Store::open(&config.database_url).await?);
    let version = store.schema_version().await?;
    tracing::info!(backend = ?store.backend(), version, "incident store ready");
    let signer = Arc::new(load_or_create_key(&config.signing_key, &config.origin)?);
    tracing::info!(verifier_key = %signer.verifier_key(), "audit checkpoints are signed with this key");
    let senders = crate::notify::send::Senders::new(config.mail.as_ref())?;
    let mut desk = Desk::new(store.clone(), config.policies.clone());
    desk.evidence_wait = config.evidence_wait;
    desk.composer.public_url = match &config.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => format!(
            "http://{}",
            listener.local_addr().map_err(ServiceError::Http)?
        ),
    };
    if !senders.has_mail() {
        for p in &config.policies {
            for party in p.parties.iter().filter(|x| x.email.is_some()) {
                tracing::warn!(system = p.system_id, party = party.name, "the plan sends this party notices by e-mail, but no SMTP server is configured (--smtp-url): they will wait");
            }
        }
    }
    desk.control = !config.control_topic.is_empty() && !config.brokers.is_empty();
    let desk = Arc::new(desk);
    desk.record_plans(Utc::now()).await?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();

    let producer: Option<FutureProducer> = if config.brokers.is_empty() {
        None
    } else {
        let mut c = base_config(&config);
        c.set("enable.idempotence", "true");
        Some(c.create()?)
    };

    if !config.brokers.is_empty() {
        let consumer = consumer(&config, &config.group_id)?;
        consumer.subscribe(&[config.alerts_topic.as_str()])?;
        tasks.spawn(consume_alerts(
            consumer,
            desk.clone(),
            metrics.clone(),
            stop_rx.clone(),
        ));
        if !config.reports_topic.is_empty() {
            let consumer = consumer_for(&config, &format!("{}-reports", config.group_id))?;
            consumer.subscribe(&[config.reports_topic.as_str()])?;
            tasks.spawn(consume_reports(
                consumer,
                desk.clone(),
                metrics.clone(),
                stop_rx.clone(),
            ));
        }
    }
    tasks.spawn(reminders(
        desk.clone(),
        metrics.clone(),
        producer.clone(),
        config.alerts_topic.clone(),
        config.reminder_interval,
        stop_rx.clone(),
    ));
    if let (Some(p), false) = (&producer, config.control_topic.is_empty()) {
        tasks.spawn(publish_controls(
            store.clone(),
            metrics.clone(),
            p.clone(),
            config.control_topic.clone(),
            stop_rx.clone(),
        ));
    }
    tasks.spawn(crate::notify::send::run(
        store.clone(),
        senders,
        metrics.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(checkpoints(
        store.clone(),
        metrics.clone(),
        signer.clone(),
        producer.clone(),
        config.checkpoints_topic.clone(),
        config.checkpoint_interval,
        stop_rx.clone(),
    ));

    let api = Arc::new(Api {
        desk: desk.clone(),
        tokens: config.tokens,
        verifier_key: Some(signer.verifier_key()),
    });
    let app = api::router(api).merge(driftwatch_common::health::router(
        registry,
        ready.clone(),
        "incident store not ready\n",
    ));
    ready.set();
    let mut http_stop = stop_rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = http_stop.wait_for(|s| *s).await;
    });
    let server = tokio::spawn(async move { server.await });
    shutdown.await;
    tracing::info!("incident service stopping");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let _ = server.await;
    // A last checkpoint so the head at shutdown is signed too.
    if let Ok(Some(cp)) = checkpoint_now(&store, &signer).await {
        tracing::info!(size = cp.size, head = %cp.head, note = %cp.note, "audit checkpoint at shutdown");
        if let (Some(p), false) = (&producer, config.checkpoints_topic.is_empty()) {
            let rec = FutureRecord::to(&config.checkpoints_topic)
                .key(signer.origin())
                .payload(&cp.note);
            if let Err((e, _)) = p.send(rec, Duration::from_secs(10)).await {
                tracing::warn!(error = %e, "cannot publish the last audit checkpoint (kept in the store and the log)");
            }
        }
    }
    Ok(())
}

fn base_config(config: &IncidentConfig) -> ClientConfig {
    driftwatch_common::kafka::client_config(
        &config.brokers,
        &config.security,
        &config.kafka_properties,
    )
}

fn consumer(
    config: &IncidentConfig,
    group: &str,
) -> Result<StreamConsumer, rdkafka::error::KafkaError> {
    consumer_for(config, group)
}

fn consumer_for(
    config: &IncidentConfig,
    group: &str,
) -> Result<StreamConsumer, rdkafka::error::KafkaError> {
    let mut c = base_config(config);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range");
    for (k, v) in &config.kafka_properties {
        c.set(k, v);
    }
    c.create()
}

async fn retry<F, Fut, T>(
    what: &str,
    metrics: &IncidentMetrics,
    stop: &tokio::sync::watch::Receiver<bool>,
    mut f: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut delay = Duration::from_millis(200);
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => {
                metrics.store_errors.with_label_values(&[what]).inc();
                tracing::warn!(error = %e, what, "incident store failed; retrying");
                if *stop.borrow() {
                    return None;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn consume_alerts(
    consumer: StreamConsumer,
    desk: Arc<Desk>,
    metrics: IncidentMetrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let msg = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "alerts topic");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let payload = msg.payload().unwrap_or_default();
        match driftwatch_schema::Alert::from_wire(payload) {
            Err(e) => {
                metrics.alerts.with_label_values(&["invalid"]).inc();
                tracing::warn!(error = %e, partition = msg.partition(), offset = msg.offset(), "skipping a payload on the alerts topic that is not an alert");
            }
            Ok(alert) => {
                let Some(h) = retry("alert", &metrics, &stop, || {
                    desk.handle_alert(Utc::now(), &alert)
                })
                .await
                else {
                    return;
                };
                metrics.alerts.with_label_values(&[result_label(&h)]).inc();
                match &h {
                    Handled::Opened(id) => {
                        tracing::info!(incident = %id, system = %alert.system_id, alert = %alert.alert_id, "incident opened")
                    }
                    Handled::Attached(id) => {
                        tracing::debug!(incident = %id, alert = %alert.alert_id, "alert attached")
                    }
                    _ => {}
                }
            }
        }
        if let Err(e) = consumer.commit_message(&msg, CommitMode::Async) {
            tracing::warn!(error = %e, "cannot commit the alerts offset (the alert will be recognised if redelivered)");
        }
    }
}

async fn consume_reports(
    consumer: StreamConsumer,
    desk: Arc<Desk>,
    metrics: IncidentMetrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let msg = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "reports topic");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        match serde_json::from_slice::<serde_json::Value>(msg.payload().unwrap_or_default()) {
            Ok(doc) => {
                if retry("report", &metrics, &stop, || {
                    desk.handle_report(Utc::now(), &doc)
                })
                .await
                .is_none()
                {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "skipping a payload on the reports topic that is not JSON")
            }
        }
        if let Err(e) = consumer.commit_message(&msg, CommitMode::Async) {
            tracing::warn!(error = %e, "cannot commit the reports offset");
        }
    }
}

async fn reminders(
    desk: Arc<Desk>,
    metrics: IncidentMetrics,
    producer: Option<FutureProducer>,
    topic: String,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match desk.due_reminders(Utc::now()).await {
            Ok(alerts) => {
                for a in alerts {
                    let kind = if a.signal.starts_with("task.") {
                        "task"
                    } else {
                        "art73"
                    };
                    metrics.obligations.with_label_values(&[kind]).inc();
                    tracing::warn!(incident_alert = %a.alert_id, "{}", a.summary);
                    if let Some(p) = &producer {
                        let wire = a.to_wire();
                        let rec = FutureRecord::to(&topic).key(&a.system_id).payload(&wire);
                        if let Err((e, _)) = p.send(rec, Duration::from_secs(30)).await {
                            tracing::error!(error = %e, alert = %a.alert_id, "cannot publish a reminder on the alerts topic (logged above)");
                        }
                    }
                }
            }
            Err(e) => {
                metrics.store_errors.with_label_values(&["reminders"]).inc();
                tracing::warn!(error = %e, "cannot check deadlines");
            }
        }
        if let Ok(open) = desk.store.list(None, None, 100_000).await {
            let mut per: std::collections::BTreeMap<String, i64> =
                desk.policies().keys().map(|s| (s.clone(), 0)).collect();
            for i in open
                .iter()
                .filter(|i| i.state != crate::model::State::Closed)
            {
                *per.entry(i.system_id.clone()).or_default() += 1;
            }
            for (s, n) in per {
                metrics.open.with_label_values(&[s.as_str()]).set(n);
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Publish the control outbox in order: a decision recorded is published however long
/// Kafka is away, and marked sent only once the broker has it.
async fn publish_controls(
    store: Arc<Store>,
    metrics: IncidentMetrics,
    producer: FutureProducer,
    topic: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match store.control_pending(100).await {
            Ok(pending) => {
                metrics.control_pending.set(pending.len() as i64);
                for (seq, system, payload) in pending {
                    let rec = FutureRecord::to(&topic).key(&system).payload(&payload);
                    match producer.send(rec, Duration::from_secs(10)).await {
                        Ok(_) => {
                            let action = driftwatch_schema::Control::from_wire(payload.as_bytes())
                                .map(|c| c.action.as_str())
                                .unwrap_or("invalid");
                            metrics.controls.with_label_values(&[action]).inc();
                            tracing::info!(
                                system,
                                action,
                                "decision published on the control topic"
                            );
                            if let Err(e) = store.control_sent(seq, Utc::now()).await {
                                // Sent again later: agents apply a repeat idempotently.
                                tracing::warn!(error = %e, "cannot mark a control message sent");
                            }
                        }
                        Err((e, _)) => {
                            tracing::warn!(error = %e, system, "cannot publish a decision on the control topic yet; retrying");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                metrics.store_errors.with_label_values(&["control"]).inc();
                tracing::warn!(error = %e, "cannot read the control outbox");
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = store.control_added.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn checkpoints(
    store: Arc<Store>,
    metrics: IncidentMetrics,
    signer: Arc<Signer>,
    producer: Option<FutureProducer>,
    topic: String,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Ok((size, _)) = store.head().await {
            metrics.audit_entries.set(size as i64);
        }
        match checkpoint_now(&store, &signer).await {
            Ok(Some(cp)) => {
                metrics.checkpoint_size.set(cp.size as i64);
                tracing::info!(size = cp.size, head = %cp.head, note = %cp.note, "audit checkpoint");
                if let (Some(p), false) = (&producer, topic.is_empty()) {
                    let rec = FutureRecord::to(&topic)
                        .key(signer.origin())
                        .payload(&cp.note);
                    if let Err((e, _)) = p.send(rec, Duration::from_secs(30)).await {
                        tracing::warn!(error = %e, "cannot publish the audit checkpoint (kept in the store and the log)");
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                metrics
                    .store_errors
                    .with_label_values(&["checkpoint"])
                    .inc();
                tracing::warn!(error = %e, "cannot sign an audit checkpoint");
            }
        }
    }
}
