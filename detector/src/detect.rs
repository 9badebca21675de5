//! The Kafka driver: consume the events topic in a consumer group, feed the engine,
//! export metrics, deliver alerts.
//!
//! **Offsets (at-least-once).** Offsets are stored by hand (`enable.auto.offset.store =
//! false`) and committed by librdkafka's auto-commit. For each partition the stored
//! offset never passes the first event of a system whose window (or first-N reference)
//! is still open, so after a crash or restart the open window is rebuilt from Kafka.
//! A window's alerts are delivered before the offsets past it are stored; a crash between
//! the two redelivers them with the same alert id.
//!
//! **References.** A reference from a file is built at start-up. A first-N reference is
//! written to `state_dir/<system>.reference.json` when frozen and loaded on the next
//! start, so a restart does not take a new reference from later (possibly drifted) data.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use driftwatch_schema::Event;
use prometheus::Registry;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::alert::{alerts_for, AlertSender};
use crate::dedup::Dedup;
use crate::engine::plan_fingerprint;
use crate::engine::{Detector, Monitor, ReferenceProfile, WindowReport};
use crate::metrics::DetectorMetrics;
use crate::plan::Plan;
use crate::replay::{reference_file_fingerprint, reference_from_file, ReplayError};

/// How to run the detector.
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group id.
    pub group_id: String,
    /// The events topic.
    pub events_topic: String,
    /// Where alerts are produced; `None` to write none to Kafka.
    pub alerts_topic: Option<String>,
    /// Where first-N references are persisted.
    pub state_dir: PathBuf,
    /// Extra librdkafka properties for consumer and producer.
    pub kafka_properties: BTreeMap<String, String>,
}

/// Why the detector could not run.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A reference file could not be used.
    #[error("reference for system \"{system}\": {source}")]
    Reference {
        /// The system.
        system: String,
        /// Why.
        source: ReplayError,
    },
    /// The state directory is unusable.
    #[error("state directory {path}: {source}")]
    State {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Two plans name the same system.
    #[error("two plans monitor system \"{0}\"")]
    DuplicateSystem(String),
    /// Kafka client set-up failed.
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Metric registration failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The metrics server failed.
    #[error("metrics server: {0}")]
    Serve(std::io::Error),
}

/// Run CPU or blocking work without stalling the other tasks on this worker: on a
/// multi-thread runtime the worker hands its queue to another thread meanwhile; on a
/// current-thread runtime (some tests) there is no other thread to hand it to.
fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn reference_file(state_dir: &Path, system: &str) -> PathBuf {
    state_dir.join(format!("{system}.reference.json"))
}

/// Load or build each plan's reference and create the engine.
pub fn build_detector(plans: &[Arc<Plan>], state_dir: &Path) -> Result<Detector, DetectError> {
    let mut monitors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for plan in plans {
        let system = plan.system.id.clone();
        if !seen.insert(system.clone()) {
            return Err(DetectError::DuplicateSystem(system));
        }
        // A frozen reference is computed once: reuse the persisted one while the plan and
        // the reference file are unchanged (same fingerprint).
        let reference = if let Some(path) = plan.reference_path() {
            let fingerprint = reference_file_fingerprint(plan, &path).map_err(|source| {
                DetectError::Reference {
                    system: system.clone(),
                    source,
                }
            })?;
            match load_persisted(state_dir, &system, &fingerprint)? {
                Some(r) => Some(r),
                None => {
                    let r = reference_from_file(plan, &path)
                        .map_err(|source| DetectError::Reference { system, source })?;
                    persist(state_dir, &r)?;
                    Some(r)
                }
            }
        } else {
            load_persisted(state_dir, &system, &plan_fingerprint(plan))?
        };
        if let Some(r) = &reference {
            tracing::info!(system = %r.system_id, version = %r.version, events = r.events, source = %r.source, "reference loaded");
        }
        monitors.push(Monitor::new(plan.clone(), reference));
    }
    Ok(Detector::new(monitors))
}

fn load_persisted(
    state_dir: &Path,
    system: &str,
    fingerprint: &str,
) -> Result<Option<ReferenceProfile>, DetectError> {
    let path = reference_file(state_dir, system);
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<ReferenceProfile>(&bytes) {
            Ok(r) if r.system_id == system && r.fingerprint == fingerprint => Ok(Some(r)),
            Ok(r) if r.system_id == system => {
                tracing::warn!(path = %path.display(), "persisted reference was built under another plan or file; building a new one");
                Ok(None)
            }
            Ok(_) | Err(_) => {
                // Never start from a reference we cannot trust; collect a new one and say so.
                tracing::error!(path = %path.display(), "persisted reference unreadable; collecting a new one");
                Ok(None)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DetectError::State { path, source }),
    }
}

fn persist(state_dir: &Path, r: &ReferenceProfile) -> Result<(), DetectError> {
    std::fs::create_dir_all(state_dir).map_err(|source| DetectError::State {
        path: state_dir.into(),
        source,
    })?;
    let path = reference_file(state_dir, &r.system_id);
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(r).unwrap_or_default();
    // Write-then-rename so a crash never leaves half a reference behind.
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| DetectError::State { path, source })
}

fn client_config(opts: &DetectOptions) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &opts.brokers);
    for (k, v) in &opts.kafka_properties {
        c.set(k, v);
    }
    c
}

/// Serve `/metrics`, `/live` and `/ready` for the detector.
pub async fn serve_metrics(
    listener: TcpListener,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("text/plain; version=0.0.4"),
                        )],
                        driftwatch_agent::metrics::render(&registry),
                    )
                        .into_response()
                }
            }),
        )
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(|| async { "ready\n" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Consume until `shutdown` resolves, then commit what is safe and flush alerts.
///
/// `reports`, when given, receives every window report (the demo prints from it).
pub async fn run(
    opts: DetectOptions,
    plans: Vec<Arc<Plan>>,
    registry: Registry,
    reports: Option<mpsc::UnboundedSender<WindowReport>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DetectError> {
    let metrics = DetectorMetrics::new(&registry)?;
    let mut detector = build_detector(&plans, &opts.state_dir)?;
    for m in detector.monitors() {
        metrics
            .reference_events
            .with_label_values(&[m.plan().system.id.as_str()])
            .set(m.reference().map_or(0, |r| r.events as i64));
    }
    let consumer: StreamConsumer = client_config(&opts)
        .set("group.id", &opts.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .create()?;
    consumer.subscribe(&[opts.events_topic.as_str()])?;
    let producer = match &opts.alerts_topic {
        Some(topic) => {
            let p: FutureProducer = client_config(&opts)
                .set("enable.idempotence", "true")
                .set("compression.type", "lz4")
                .set("linger.ms", "5")
                .create()?;
            Some((p, topic.clone()))
        }
        None => None,
    };
    let sender = AlertSender::new(producer, metrics.clone());
    let routes: HashMap<String, (Option<String>, Option<String>)> = plans
        .iter()
        .map(|p| {
            (
                p.system.id.clone(),
                (
                    p.alerts.webhook_url.clone(),
                    p.alerts.alertmanager_url.clone(),
                ),
            )
        })
        .collect();
    let min_severity: HashMap<String, crate::plan::Severity> = plans
        .iter()
        .map(|p| (p.system.id.clone(), p.alerts.min_severity))
        .collect();
    // system -> (partition, first offset not yet covered by a report)
    let mut pending: HashMap<String, (i32, i64)> = HashMap::new();
    // Remember two windows' worth of prediction ids per system (at least 10,000).
    let mut dedup: HashMap<String, Dedup> = plans
        .iter()
        .map(|p| {
            let w = p.window.windowing();
            let horizon = match w.kind {
                crate::plan::WindowKind::Count => (2 * w.size).max(10_000) as usize,
                crate::plan::WindowKind::Time => 100_000,
            };
            (p.system.id.clone(), Dedup::new(horizon))
        })
        .collect();
    tracing::info!(topic = %opts.events_topic, group = %opts.group_id, systems = plans.len(), "driftwatch detector consuming");
    tokio::pin!(shutdown);
    loop {
        let message = tokio::select! {
            _ = &mut shutdown => break,
            m = consumer.recv() => m,
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "Kafka consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let (partition, offset) = (message.partition(), message.offset());
        match Event::from_wire(message.payload().unwrap_or_default()) {
            Err(e) => {
                metrics.invalid.inc();
                tracing::warn!(partition, offset, error = %e, "skipping a payload that is not a v1 event");
            }
            Ok(event) => {
                let system = event.system_id().to_owned();
                let repeated = match (&event, dedup.get_mut(&system)) {
                    (Event::Prediction(p), Some(d)) => !d.first_time(&p.prediction_id),
                    _ => false,
                };
                if repeated {
                    metrics
                        .duplicates
                        .with_label_values(&[system.as_str()])
                        .inc();
                    tracing::debug!(partition, offset, "dropping a repeated prediction");
                    // A duplicate is fully processed: its offset is stored below.
                } else {
                    let step = off_worker(|| detector.observe(&event));
                    match step {
                        Err(_) => metrics.unplanned.inc(),
                        Ok(step) => {
                            metrics
                                .events
                                .with_label_values(&[system.as_str(), event.kind().as_str()])
                                .inc();
                            if let Some(r) = &step.reference_frozen {
                                tracing::info!(system = %system, version = %r.version, events = r.events, "reference frozen");
                                metrics
                                    .reference_events
                                    .with_label_values(&[system.as_str()])
                                    .set(r.events as i64);
                                if let Err(e) = persist(&opts.state_dir, r) {
                                    tracing::error!(error = %e, "cannot persist reference; a restart will collect a new one");
                                }
                            }
                            if step.late {
                                metrics.late.with_label_values(&[system.as_str()]).inc();
                            }
                            for report in step.reports {
                                metrics.record(&report);
                                tracing::info!(
                                    system = %report.system_id,
                                    window = report.window.index,
                                    severity = report.severity.as_str(),
                                    "window evaluated"
                                );
                                let min = min_severity
                                    .get(&system)
                                    .copied()
                                    .unwrap_or(crate::plan::Severity::Warning);
                                let (hook, am) = routes.get(&system).cloned().unwrap_or_default();
                                for alert in alerts_for(&report, min) {
                                    sender.send(&alert, hook.as_deref(), am.as_deref()).await;
                                }
                                if let Some(tx) = &reports {
                                    let _ = tx.send(report);
                                }
                            }
                            let still_pending =
                                detector.monitor(&system).is_some_and(Monitor::has_pending);
                            if still_pending {
                                pending.entry(system).or_insert((partition, offset));
                            } else {
                                pending.remove(&system);
                            }
                        }
                    }
                }
            }
        }
        let safe = pending
            .values()
            .filter(|(p, _)| *p == partition)
            .map(|(_, o)| *o)
            .min()
            .unwrap_or(offset + 1);
        if let Err(e) = consumer.store_offset(&opts.events_topic, partition, safe) {
            tracing::warn!(partition, error = %e, "cannot store offset");
        }
    }
    tracing::info!("detector stopping: committing offsets");
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last auto-commit is a normal answer here.
        tracing::debug!(error = %e, "final commit");
    }
    if let Some(p) = sender.producer() {
        let _ = off_worker(|| p.flush(Duration::from_secs(5)));
    }
    Ok(())
}
