//! The detector service, as `driftwatch detect` runs it and as the demo and the tests
//! start it: [`run`] serves `/metrics`, `/live` and `/ready` on the listener it is
//! given, reads the state topic, loads or builds every plan's reference, joins the
//! consumer group (`/ready` answers 503 until all three are done), consumes the events
//! topic, hands every window to the outputs, and on
//! shutdown commits what is safe and drains alert delivery.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use driftwatch_common::health::{self, Readiness};
use prometheus::Registry;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::alert::delivery::{AlertDelivery, DeliveryConfig};
use crate::driver::kafka::references::KafkaStore;
use crate::driver::kafka::{self, system::SystemState, KafkaOptions};
use crate::metrics::DetectorMetrics;
use crate::output::Output;
use crate::plan::Plan;
use crate::reference_store::{self, ReferenceStore, StoreError};

/// What the service runs.
pub struct ServiceConfig {
    /// Kafka and the state directory.
    pub kafka: KafkaOptions,
    /// One plan per system.
    pub plans: Vec<Arc<Plan>>,
    /// Alert delivery settings.
    pub delivery: DeliveryConfig,
    /// Outputs besides the metrics and alert delivery (the demo's report channel).
    pub outputs: Vec<Arc<dyn Output>>,
    /// The registry `/metrics` serves (the service registers its metrics in it).
    pub registry: Registry,
}

impl ServiceConfig {
    /// A service for `plans` on `kafka`, with default delivery and no extra outputs.
    pub fn new(kafka: KafkaOptions, plans: Vec<Arc<Plan>>) -> Self {
        ServiceConfig {
            kafka,
            plans,
            delivery: DeliveryConfig::default(),
            outputs: Vec::new(),
            registry: Registry::new(),
        }
    }
}

/// Why the detector could not run.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A reference could not be loaded, built or kept.
    #[error("reference for system \"{system}\": {source}")]
    Reference {
        /// The system.
        system: String,
        /// Why.
        source: StoreError,
    },
    /// Two plans name the same system.
    #[error("two plans monitor system \"{0}\"")]
    DuplicateSystem(String),
    /// The state topic could not be read.
    #[error("cannot read the state topic \"{0}\" (create it, compacted: see README): {1}")]
    StateTopic(String, rdkafka::error::KafkaError),
    /// Kafka client set-up failed.
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Metric registration failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The health server failed.
    #[error("metrics server: {0}")]
    Serve(std::io::Error),
}

/// How long shutdown waits for queued alerts to be delivered.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Run the detector until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: ServiceConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DetectError> {
    let ServiceConfig {
        kafka: opts,
        plans,
        delivery,
        outputs: extra,
        registry,
    } = config;
    let metrics = DetectorMetrics::new(&registry)?;
    let ready = Readiness::new();
    let stop_health = CancellationToken::new();
    let health = {
        let app = health::router(
            registry,
            ready.clone(),
            "starting: references, state topic, consumer group\n",
        );
        let stop = stop_health.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        })
    };
    let result = serve(opts, plans, delivery, extra, metrics, ready, shutdown).await;
    stop_health.cancel();
    match health.await {
        Ok(Err(e)) if result.is_ok() => return Err(DetectError::Serve(e)),
        _ => {}
    }
    result
}

async fn serve(
    opts: KafkaOptions,
    plans: Vec<Arc<Plan>>,
    delivery: DeliveryConfig,
    extra: Vec<Arc<dyn Output>>,
    metrics: DetectorMetrics,
    ready: Readiness,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DetectError> {
    tokio::pin!(shutdown);
    let producer: FutureProducer = opts
        .client_config()
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .create()?;
    // The state topic is read first: it holds the references kept by every instance
    // and where every system stopped; a restart answers ready once it knows both.
    let state = {
        let reader = opts.clone();
        let reading = tokio::task::spawn_blocking(move || kafka::read_state(&reader));
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            read = reading => match read {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(DetectError::StateTopic(opts.state_topic.clone(), e)),
                Err(panic) => std::panic::resume_unwind(panic.into_panic()),
            },
        }
    };
    tracing::info!(topic = %opts.state_topic, checkpoints = state.checkpoints.len(), references = state.references.len(), "state topic read");
    let store = Arc::new(KafkaStore::new(
        producer.clone(),
        opts.state_topic.clone(),
        &state,
    ));
    // References are built off the async workers; a shutdown meanwhile stops waiting.
    let building = {
        let (plans, store) = (plans.clone(), store.clone());
        tokio::task::spawn_blocking(move || build_systems(&plans, store.as_ref()))
    };
    let systems = tokio::select! {
        _ = &mut shutdown => return Ok(()),
        built = building => match built {
            Ok(r) => r?,
            Err(panic) => std::panic::resume_unwind(panic.into_panic()),
        },
    };
    for (id, s) in &systems {
        metrics
            .reference_events
            .with_label_values(&[id.as_str()])
            .set(s.monitor.reference().map_or(0, |r| r.events as i64));
    }
    let outbox = Arc::new(kafka::outbox::KafkaOutbox::new(
        producer.clone(),
        opts.reports_topic.clone(),
        opts.alerts_topic.clone(),
    ));
    // With an alerts topic, receivers read it (the durable outbox); without one they
    // are fed from memory.
    let source = opts
        .alerts_topic
        .as_ref()
        .map(|topic| crate::alert::delivery::TopicSource {
            client: opts.client_config(),
            topic: topic.clone(),
            group_prefix: opts.group_id.clone(),
        });
    let alerts = Arc::new(AlertDelivery::start(
        &plans,
        source,
        delivery,
        metrics.clone(),
    ));
    let mut outputs: Vec<Arc<dyn Output>> =
        vec![Arc::new(metrics.clone()), outbox.clone(), alerts.clone()];
    outputs.extend(extra);
    let consumed = kafka::consume(
        &opts,
        systems,
        Some(state),
        &store,
        &outputs,
        &outbox,
        &producer,
        &metrics,
        &ready,
        &mut shutdown,
    )
    .await;
    drop(outputs);
    match Arc::try_unwrap(alerts) {
        Ok(alerts) => alerts.shutdown(DRAIN_DEADLINE).await,
        Err(_) => tracing::error!("alert delivery still shared at shutdown; not drained"),
    }
    let _ = kafka::off_worker(|| producer.flush(Duration::from_secs(5)));
    consumed?;
    Ok(())
}

/// Load or build each plan's reference and the state of its system.
pub fn build_systems(
    plans: &[Arc<Plan>],
    store: &dyn ReferenceStore,
) -> Result<HashMap<String, SystemState>, DetectError> {
    let mut systems = HashMap::new();
    for plan in plans {
        let system = plan.system.id.clone();
        if systems.contains_key(&system) {
            return Err(DetectError::DuplicateSystem(system));
        }
        let reference = reference_store::resolve(plan, None, store).map_err(|source| {
            DetectError::Reference {
                system: system.clone(),
                source,
            }
        })?;
        if let Some(r) = &reference {
            tracing::info!(system = %r.system_id, version = %r.version, events = r.events, source = %r.source, "reference loaded");
        }
        systems.insert(system, SystemState::new(plan.clone(), reference));
    }
    Ok(systems)
}
