//! The Kafka driver: consume the events topic in a consumer group, feed each system's
//! engine, hand every window to the outputs (metrics, alert delivery, ...).
//!
//! **Offsets (at-least-once).** Offsets are stored by hand (`enable.auto.offset.store =
//! false`) and committed by librdkafka's auto-commit; [`offsets`] keeps the stored offset
//! of each partition at the first event of a system whose window (or first-N reference)
//! is still open, so after a crash or restart the open window is rebuilt from Kafka.
//!
//! **Alerts never wait here.** A window's alerts are queued for delivery
//! ([`crate::alert::delivery`]) and the loop goes on; a receiver that hangs delays only
//! its own queue.
//!
//! **References** come from the [`crate::reference_store`]: loaded or built before
//! consumption starts ([`crate::service`] latches `/ready` after), and a reference
//! collected from the stream is saved there when it freezes.

pub mod offsets;
pub mod system;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use driftwatch_common::kafka::ResolvedSecurity;
use driftwatch_schema::Event;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;

use self::offsets::SafeOffsets;
use self::system::SystemState;
use crate::alert::alerts_for;
use crate::engine::Input;
use crate::metrics::DetectorMetrics;
use crate::output::Output;
use crate::reference_store::ReferenceStore;

/// How to reach Kafka.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group id.
    pub group_id: String,
    /// The events topic.
    pub events_topic: String,
    /// Where alerts are produced; `None` to write none to Kafka.
    pub alerts_topic: Option<String>,
    /// Where the file reference store keeps references.
    pub state_dir: PathBuf,
    /// TLS and SASL, secrets already read.
    pub security: ResolvedSecurity,
    /// Extra librdkafka properties for consumer and producer.
    pub kafka_properties: BTreeMap<String, String>,
}

/// Run CPU or blocking work without stalling the other tasks on this worker: on a
/// multi-thread runtime the worker hands its queue to another thread meanwhile; on a
/// current-thread runtime (some tests) there is no other thread to hand it to.
pub(crate) fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Consume until `shutdown` resolves, then commit what is safe.
pub async fn consume(
    opts: &KafkaOptions,
    mut systems: HashMap<String, SystemState>,
    store: &dyn ReferenceStore,
    outputs: &[Arc<dyn Output>],
    metrics: &DetectorMetrics,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), rdkafka::error::KafkaError> {
    let consumer: StreamConsumer = driftwatch_common::kafka::client_config(
        &opts.brokers,
        &opts.security,
        &opts.kafka_properties,
    )
    .set("group.id", &opts.group_id)
    .set("enable.auto.commit", "true")
    .set("auto.commit.interval.ms", "1000")
    .set("enable.auto.offset.store", "false")
    .set("auto.offset.reset", "earliest")
    .set("partition.assignment.strategy", "range")
    .create()?;
    consumer.subscribe(&[opts.events_topic.as_str()])?;
    let mut offsets = SafeOffsets::default();
    tracing::info!(topic = %opts.events_topic, group = %opts.group_id, systems = systems.len(), "driftwatch detector consuming");
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
                let system = event.system_id();
                match systems.get_mut(system) {
                    None => metrics.unplanned.inc(),
                    Some(state) => {
                        let holds =
                            observe(state, &event, store, outputs, metrics, partition, offset);
                        offsets.update(system, partition, offset, holds);
                    }
                }
            }
        }
        let safe = offsets.safe(partition, offset);
        if let Err(e) = consumer.store_offset(&opts.events_topic, partition, safe) {
            tracing::warn!(partition, error = %e, "cannot store offset");
        }
    }
    tracing::info!("detector stopping: committing offsets");
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last auto-commit is a normal answer here.
        tracing::debug!(error = %e, "final commit");
    }
    Ok(())
}

/// One event of a planned system: drop a repeat, feed the engine, hand out its windows.
/// Whether the system still holds events no report covers.
fn observe(
    state: &mut SystemState,
    event: &Event,
    store: &dyn ReferenceStore,
    outputs: &[Arc<dyn Output>],
    metrics: &DetectorMetrics,
    partition: i32,
    offset: i64,
) -> bool {
    let system = event.system_id();
    if let Event::Prediction(p) = event {
        if !state.dedup.first_time(&p.prediction_id) {
            metrics.duplicates.with_label_values(&[system]).inc();
            tracing::debug!(partition, offset, "dropping a repeated prediction");
            // A repeat is fully processed: its offset may be stored.
            return state.monitor.has_pending();
        }
    }
    let step = off_worker(|| state.monitor.observe(Input::Event(event)));
    metrics
        .events
        .with_label_values(&[system, event.kind().as_str()])
        .inc();
    if let Some(r) = &step.reference_frozen {
        tracing::info!(system = %system, version = %r.version, events = r.events, "reference frozen");
        metrics
            .reference_events
            .with_label_values(&[system])
            .set(r.events as i64);
        if let Err(e) = store.save(r) {
            tracing::error!(error = %e, "cannot keep the reference; a restart will collect a new one");
        }
    }
    for (direction, n) in [("future", step.skewed_future), ("past", step.skewed_past)] {
        if n > 0 {
            metrics
                .skewed
                .with_label_values(&[system, direction])
                .inc_by(n as u64);
            tracing::warn!(
                partition,
                offset,
                direction,
                "a prediction with a skewed timestamp left out of every window"
            );
        }
    }
    if step.late > 0 {
        metrics
            .late
            .with_label_values(&[system])
            .inc_by(step.late as u64);
    }
    for report in step.reports {
        tracing::info!(
            system = %report.system_id,
            window = report.window.index,
            severity = report.severity.as_str(),
            "window evaluated"
        );
        let alerts = alerts_for(&report, state.min_severity);
        for out in outputs {
            out.window(&report, &alerts);
        }
    }
    state.monitor.has_pending()
}
