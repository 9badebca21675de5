//! The Kafka driver: consume the events topic in a consumer group, feed each system's
//! engine, hand every window to the outputs (metrics, alert delivery, the reports and
//! alerts topics), and checkpoint each system's state.
//!
//! **State and offsets.** Every `checkpoint_interval` (and at shutdown) the driver waits
//! until every report and alert of the windows evaluated so far is confirmed by Kafka
//! ([`outbox`]), writes a [`checkpoint`] of each system that changed (its windows,
//! watermark, duplicate memory, and the next offset of its partition it does not
//! include) to the compacted state topic, and only then stores the partitions' offsets
//! for commit. Offsets are per system: a restored system skips the events its state
//! already holds, so a restart or a takeover continues exactly where the checkpoint
//! stopped, with the same window numbers (an `alert_id` names one window forever). A
//! system still collecting its reference from the stream has no checkpoint; the
//! partition's stored offset stays at its first collected event.
//!
//! **Restore.** The state topic is read at start (before `/ready`) and again after a
//! rebalance; a system's checkpoint is restored the first time its partition delivers
//! an event in an assignment. A checkpoint of another plan, another reference or a
//! damaged one is logged and counted, and the system starts afresh.
//!
//! **Alerts never wait here.** A window's alerts are queued for delivery
//! ([`crate::alert::delivery`]) and the loop goes on; a receiver that hangs delays only
//! its own queue.
//!
//! **References** come from the [`crate::reference_store`]: loaded or built before
//! consumption starts ([`crate::service`] latches `/ready` after), and a reference
//! collected from the stream is saved there when it freezes.

pub mod checkpoint;
mod lag;
pub mod outbox;
mod rebalance;
pub mod references;
pub mod system;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftwatch_common::health::Readiness;
use driftwatch_common::kafka::ResolvedSecurity;
use driftwatch_schema::Event;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use self::checkpoint::StateRead;
use self::outbox::KafkaOutbox;
pub use self::rebalance::REVOKE_DEADLINE;
use self::rebalance::{RebalanceContext, SetOnDrop};
use self::references::KafkaStore;
use self::system::SystemState;
use crate::alert::drift_verdicts;
use crate::engine::plan_fingerprint;
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
    /// Where every window report is produced; `None` for none.
    pub reports_topic: Option<String>,
    /// The compacted topic of per-system checkpoints.
    pub state_topic: String,
    /// How often changed systems are checkpointed (and offsets move).
    pub checkpoint_interval: Duration,
    /// TLS and SASL, secrets already read.
    pub security: ResolvedSecurity,
    /// Extra librdkafka properties for consumer and producer.
    pub kafka_properties: BTreeMap<String, String>,
}

impl KafkaOptions {
    /// The options of `brokers` with every other setting at its default: the default
    /// topics, group and a 5 s checkpoint interval.
    pub fn new(brokers: &str) -> Self {
        KafkaOptions {
            brokers: brokers.into(),
            group_id: "driftwatch-detector".into(),
            events_topic: driftwatch_schema::DEFAULT_EVENTS_TOPIC.into(),
            alerts_topic: Some(driftwatch_schema::DEFAULT_ALERTS_TOPIC.into()),
            reports_topic: Some(DEFAULT_REPORTS_TOPIC.into()),
            state_topic: DEFAULT_STATE_TOPIC.into(),
            checkpoint_interval: Duration::from_secs(5),
            security: ResolvedSecurity::default(),
            kafka_properties: BTreeMap::new(),
        }
    }

    /// A client configuration with the brokers, security and properties.
    pub fn client_config(&self) -> ClientConfig {
        driftwatch_common::kafka::client_config(
            &self.brokers,
            &self.security,
            &self.kafka_properties,
        )
    }
}

/// The default topic of window reports.
pub const DEFAULT_REPORTS_TOPIC: &str = "driftwatch.reports";
/// The default compacted topic of per-system checkpoints.
pub const DEFAULT_STATE_TOPIC: &str = "driftwatch.state";

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

/// Read the state topic (at start, and after a rebalance): checkpoints and references.
pub fn read_state(opts: &KafkaOptions) -> Result<StateRead, rdkafka::error::KafkaError> {
    checkpoint::read_topic(
        opts.client_config(),
        &opts.state_topic,
        Duration::from_secs(30),
    )
}

/// What the loop keeps besides the systems.
struct Progress {
    /// Per partition, the offset after the last event processed.
    positions: HashMap<i32, i64>,
    /// Partitions whose systems were restored in this assignment.
    restored: HashSet<i32>,
    /// The state topic as last read (`None`: read again when needed).
    state: Option<StateRead>,
    last_checkpoint: Instant,
    /// The positions as of the last checkpoint, for the lag sampler.
    lag_positions: Arc<Mutex<HashMap<i32, i64>>>,
    /// Each partition's `driftwatch_partition_events_total` counter, looked up once.
    read: HashMap<i32, prometheus::IntCounter>,
}

/// Consume until `shutdown` resolves, checkpointing as it goes and at the end. `state`
/// is the state topic read at start; `ready` is set once the group is joined.
#[allow(clippy::too_many_arguments)]
pub async fn consume(
    opts: &KafkaOptions,
    mut systems: HashMap<String, SystemState>,
    state: Option<StateRead>,
    store: &KafkaStore,
    outputs: &[Arc<dyn Output>],
    outbox: &KafkaOutbox,
    producer: &FutureProducer,
    metrics: &DetectorMetrics,
    ready: &Readiness,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), rdkafka::error::KafkaError> {
    let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let consumer: StreamConsumer<RebalanceContext> = opts
        .client_config()
        .set("group.id", &opts.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .create_with_context(RebalanceContext {
            epoch: AtomicU64::new(0),
            revoked: Mutex::default(),
            revoke_pending: Default::default(),
            wake: tokio::sync::Notify::new(),
            closing: closing.clone(),
            assigned: metrics.assigned.clone(),
            rebalances: metrics.rebalances.clone(),
            ready: ready.clone(),
        })?;
    // Dropped before the consumer, however this function ends (returned, or its task
    // aborted): the revocation that closing the consumer triggers is let go at once,
    // not left waiting for a loop that is gone.
    let _closing = SetOnDrop(closing);
    consumer.subscribe(&[opts.events_topic.as_str()])?;
    tracing::info!(topic = %opts.events_topic, group = %opts.group_id, state = %opts.state_topic, systems = systems.len(), "driftwatch detector consuming");
    // The drift gauges of each system's last window, at once: a restart must not look
    // like the drift ended (rules on the gauges would resolve).
    for (system, c) in state.iter().flat_map(|s| s.checkpoints.iter()) {
        if let (true, Ok(c)) = (systems.contains_key(system), c) {
            if let Ok(r) = serde_json::from_slice::<crate::engine::WindowReport>(&c.last_report) {
                metrics.record_gauges(&r);
            }
        }
    }
    let mut progress = Progress {
        positions: HashMap::new(),
        restored: HashSet::new(),
        state,
        last_checkpoint: Instant::now(),
        lag_positions: Arc::default(),
        read: HashMap::new(),
    };
    let stop_sampler = Arc::new(std::sync::atomic::AtomicBool::new(false));
    lag::lag_sampler(
        opts,
        progress.lag_positions.clone(),
        metrics.clone(),
        stop_sampler.clone(),
    );
    let mut epoch = consumer.context().epoch.load(Ordering::SeqCst);
    let mut tick = tokio::time::interval(opts.checkpoint_interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        if consumer.context().take_revoke() {
            revoke(
                opts,
                &consumer,
                &mut systems,
                &mut progress,
                (outbox, producer, store),
                metrics,
            )
            .await;
            continue;
        }
        let message = tokio::select! {
            _ = &mut shutdown => break,
            _ = consumer.context().wake.notified() => continue,
            _ = tick.tick() => {
                // A rebalance may have run inside a recv() this tick cancelled: never
                // checkpoint a system whose partition went to another instance.
                if consumer.context().assigned_since(&mut epoch) {
                    rebalanced(&consumer, &mut systems, &mut progress);
                }
                heartbeats(&mut systems, outputs);
                if progress.last_checkpoint.elapsed() >= opts.checkpoint_interval {
                    checkpoint(opts, &consumer, &mut systems, &mut progress, (outbox, producer, store), metrics).await;
                }
                continue;
            }
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
        if consumer.context().assigned_since(&mut epoch) {
            rebalanced(&consumer, &mut systems, &mut progress);
        }
        let (partition, offset) = (message.partition(), message.offset());
        if !progress.restored.contains(&partition) {
            restore_partition(opts, partition, &mut systems, &mut progress, store, metrics);
            // A checkpoint older than the committed offset (the state topic read back
            // short of its newest checkpoint): read the partition again from the
            // oldest restored offset, so no system skips the events in between; each
            // system passes over what its state already holds.
            let behind = systems
                .values()
                .filter(|s| s.partition == Some(partition) && s.dirty_from.is_none())
                .map(|s| s.next_offset)
                .filter(|n| *n < offset)
                .min();
            if let Some(from) = behind {
                tracing::warn!(
                    partition,
                    committed = offset,
                    from,
                    "a restored checkpoint covers less than the committed offset: reading the partition again from its offset, so no event is skipped"
                );
                match consumer.seek(
                    &opts.events_topic,
                    partition,
                    Offset::Offset(from),
                    Duration::from_secs(10),
                ) {
                    Ok(()) => {
                        metrics.rewinds.inc();
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(partition, error = %e, "cannot read the partition again from the checkpoint's offset; the events in between are missing from those systems' windows");
                    }
                }
            }
        }
        progress.positions.insert(partition, offset + 1);
        progress
            .read
            .entry(partition)
            .or_insert_with(|| {
                metrics
                    .partition_events
                    .with_label_values(&[&partition.to_string()])
            })
            .inc();
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
                        let plan = state.plan().clone();
                        if let Some(back) =
                            state
                                .heartbeat
                                .event(chrono::Utc::now(), &plan, &state.links)
                        {
                            for out in outputs {
                                out.notifications(std::slice::from_ref(&back));
                            }
                        }
                        if state.partition == Some(partition) && offset < state.next_offset {
                            // Already in the state restored from the checkpoint.
                            metrics.replayed.inc();
                        } else {
                            if state.partition.is_some_and(|p| p != partition) {
                                tracing::warn!(system, from = ?state.partition, to = partition, "the system's events moved to another partition (partitions added?)");
                            }
                            state.partition = Some(partition);
                            state.dirty_from.get_or_insert(offset);
                            state.next_offset = offset + 1;
                            observe(state, &event, outputs, metrics, partition, offset);
                        }
                    }
                }
            }
        }
        if progress.last_checkpoint.elapsed() >= opts.checkpoint_interval {
            checkpoint(
                opts,
                &consumer,
                &mut systems,
                &mut progress,
                (outbox, producer, store),
                metrics,
            )
            .await;
        }
    }
    stop_sampler.store(true, Ordering::SeqCst);
    if consumer.context().take_revoke() {
        revoke(
            opts,
            &consumer,
            &mut systems,
            &mut progress,
            (outbox, producer, store),
            metrics,
        )
        .await;
    }
    if consumer.context().assigned_since(&mut epoch) {
        rebalanced(&consumer, &mut systems, &mut progress);
    }
    tracing::info!("detector stopping: checkpointing and committing offsets");
    checkpoint(
        opts,
        &consumer,
        &mut systems,
        &mut progress,
        (outbox, producer, store),
        metrics,
    )
    .await;
    if let Err(e) = off_worker(|| consumer.commit_consumer_state(CommitMode::Sync)) {
        // Nothing stored since the last auto-commit is a normal answer here.
        tracing::debug!(error = %e, "final commit");
    }
    Ok(())
}

/// The partitions are being revoked: checkpoint and commit what was processed (within
/// [`REVOKE_DEADLINE`]), start the revoked systems afresh, and let the partitions go.
async fn revoke(
    opts: &KafkaOptions,
    consumer: &StreamConsumer<RebalanceContext>,
    systems: &mut HashMap<String, SystemState>,
    progress: &mut Progress,
    sinks: (&KafkaOutbox, &FutureProducer, &KafkaStore),
    metrics: &DetectorMetrics,
) {
    let started = Instant::now();
    let saved = tokio::time::timeout(
        REVOKE_DEADLINE,
        checkpoint(opts, consumer, systems, progress, sinks, metrics),
    )
    .await
    .is_ok();
    if saved {
        if let Err(e) = off_worker(|| consumer.commit_consumer_state(CommitMode::Sync)) {
            tracing::warn!(error = %e, "commit on revoke");
        }
    } else {
        tracing::warn!(deadline = ?REVOKE_DEADLINE, "no checkpoint within the deadline; the next owner continues from the one before");
    }
    rebalanced(consumer, systems, progress);
    if let Err(e) = consumer.unassign() {
        tracing::warn!(error = %e, "cannot let go of the revoked partitions");
    }
    tracing::info!(took = ?started.elapsed(), checkpointed = saved, "revoked partitions handed over");
}

/// After a rebalance: systems of revoked partitions start afresh (another instance
/// continues them from their checkpoint), and the state topic is read again before
/// any partition is restored.
fn rebalanced(
    consumer: &StreamConsumer<RebalanceContext>,
    systems: &mut HashMap<String, SystemState>,
    progress: &mut Progress,
) {
    let revoked: Vec<i32> = std::mem::take(
        &mut *consumer
            .context()
            .revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    for s in systems.values_mut() {
        if s.partition.is_some_and(|p| revoked.contains(&p)) {
            s.reset();
        }
    }
    for p in &revoked {
        progress.positions.remove(p);
    }
    progress.restored.clear();
    progress.state = None;
}

/// Restore the systems whose checkpoint names `partition` and which hold nothing yet.
/// A system still collecting its reference first takes the one another instance froze
/// and kept, if any: the checkpoint was computed against it.
fn restore_partition(
    opts: &KafkaOptions,
    partition: i32,
    systems: &mut HashMap<String, SystemState>,
    progress: &mut Progress,
    store: &KafkaStore,
    metrics: &DetectorMetrics,
) {
    if progress.state.is_none() {
        match off_worker(|| read_state(opts)) {
            Ok(s) => {
                store.refresh(&s);
                progress.state = Some(s);
            }
            Err(e) => {
                tracing::error!(topic = %opts.state_topic, error = %e, "cannot read the state topic; systems start afresh");
                progress.state = Some(StateRead::default());
            }
        }
    }
    let Some(state) = &progress.state else {
        return;
    };
    for (system, s) in systems.iter_mut() {
        if s.partition.is_some() || s.dirty_from.is_some() {
            continue;
        }
        match state.checkpoints.get(system) {
            None => {}
            Some(Ok(c)) if c.partition != partition => {}
            Some(Ok(c)) => match adopt_kept_reference(s, store).and_then(|()| s.restore(c)) {
                Ok(()) => {
                    metrics.restores.with_label_values(&["restored"]).inc();
                    if let Some(r) = &s.last_report {
                        metrics.record_gauges(r);
                    }
                    tracing::info!(
                        system,
                        partition,
                        next_offset = c.next_offset,
                        generation = c.generation,
                        "state restored from checkpoint"
                    );
                }
                Err(e) => {
                    metrics.restores.with_label_values(&["discarded"]).inc();
                    tracing::error!(system, error = %e, "checkpoint not restored; the system starts afresh from the committed offset");
                }
            },
            Some(Err(e)) => {
                metrics.restores.with_label_values(&["damaged"]).inc();
                tracing::error!(system, error = %e, "checkpoint damaged; the system starts afresh from the committed offset");
            }
        }
    }
    progress.restored.insert(partition);
}

/// A system collecting its reference from the stream takes the one kept in `store`
/// under its plan, if another instance froze it.
fn adopt_kept_reference(
    s: &mut SystemState,
    store: &KafkaStore,
) -> Result<(), crate::codec::CodecError> {
    if s.monitor.reference().is_some() {
        return Ok(());
    }
    let plan = s.plan().clone();
    match store.load(&plan.system.id, &plan_fingerprint(&plan)) {
        Ok(Some(r)) => {
            tracing::info!(system = %plan.system.id, version = %r.version, "continuing with the reference another instance collected");
            s.adopt_reference(r);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(crate::codec::CodecError(e.to_string())),
    }
}

/// Reports and alerts confirmed, then every changed system's checkpoint written, then
/// the offsets they cover stored for commit. Anything failing leaves offsets where they
/// were (the events are read again after a restart).
async fn checkpoint(
    opts: &KafkaOptions,
    consumer: &StreamConsumer<RebalanceContext>,
    systems: &mut HashMap<String, SystemState>,
    progress: &mut Progress,
    (outbox, producer, store): (&KafkaOutbox, &FutureProducer, &KafkaStore),
    metrics: &DetectorMetrics,
) {
    progress.last_checkpoint = Instant::now();
    if !outbox.settle(Duration::from_secs(30)).await {
        metrics.checkpoints.with_label_values(&["failed"]).inc();
        tracing::warn!("reports or alerts not yet confirmed by Kafka; offsets stay until they are");
        return;
    }
    let mut sends = Vec::new();
    let mut written = Vec::new();
    for (name, s) in systems.iter() {
        if s.dirty_from.is_none() {
            continue;
        }
        let Some(c) = s.checkpoint() else {
            continue;
        };
        let records = c.records();
        let mut ok = true;
        for (key, value) in &records {
            match producer.send_result(
                FutureRecord::to(&opts.state_topic)
                    .key(key.as_str())
                    .payload(value.as_slice()),
            ) {
                Ok(f) => sends.push(f),
                Err((e, _)) => {
                    tracing::warn!(system = %name, error = %e, "cannot queue a checkpoint");
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            written.push((
                name.clone(),
                c.generation,
                records.iter().map(|(_, v)| v.len()).sum::<usize>(),
            ));
        }
    }
    let mut failed = false;
    for f in sends {
        match tokio::time::timeout(Duration::from_secs(30), f).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err((e, _)))) => {
                tracing::warn!(error = %e, "a checkpoint was not confirmed by Kafka");
                failed = true;
            }
            _ => failed = true,
        }
    }
    if failed {
        metrics.checkpoints.with_label_values(&["failed"]).inc();
        return;
    }
    for (name, generation, bytes) in written {
        if let Some(s) = systems.get_mut(&name) {
            s.generation = generation;
            if let Some(r) = s.unsaved_reference.take() {
                if let Err(e) = off_worker(|| store.save(&r)) {
                    // Offsets stay at the first collected event: a restart collects
                    // the same reference again.
                    tracing::error!(system = %name, error = %e, "cannot keep the reference collected from the stream");
                    s.unsaved_reference = Some(r);
                    continue;
                }
            }
            s.dirty_from = None;
        }
        metrics.checkpoints.with_label_values(&["written"]).inc();
        metrics
            .checkpoint_bytes
            .with_label_values(&[&name])
            .set(bytes as i64);
    }
    // A partition's safe offset: past every event processed, except where a system
    // still holds events no checkpoint covers (a reference being collected). Stored as
    // given (rd_kafka_offsets_store; rd_kafka_offset_store would add one).
    let mut tpl = TopicPartitionList::new();
    for (partition, position) in &progress.positions {
        let hold = systems
            .values()
            .filter(|s| s.partition == Some(*partition))
            .filter_map(|s| s.dirty_from)
            .min();
        let safe = hold.map_or(*position, |h| h.min(*position));
        let _ = tpl.add_partition_offset(&opts.events_topic, *partition, Offset::Offset(safe));
    }
    if tpl.count() > 0 {
        if let Err(e) = consumer.store_offsets(&tpl) {
            tracing::debug!(error = %e, "cannot store offsets (partition revoked?)");
        }
    }
    metrics
        .last_checkpoint
        .set(chrono::Utc::now().timestamp() as f64);
    // The next checkpoint comes a whole interval after this one ends, however long it
    // took.
    progress.last_checkpoint = Instant::now();
    // The lag sampler reads these; it never blocks this loop.
    *progress
        .lag_positions
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = progress.positions.clone();
}

/// Each system of this instance (its partition assigned here) whose telemetry has
/// stopped past its plan's `heartbeat_s` raises a `telemetry` notification, once per
/// silence; the next event resolves it ([`crate::alert::episode::Heartbeat`]).
fn heartbeats(systems: &mut HashMap<String, SystemState>, outputs: &[Arc<dyn Output>]) {
    let now = chrono::Utc::now();
    for state in systems.values_mut() {
        if state.partition.is_none() {
            // Not (yet) ours: the instance holding its partition watches it.
            continue;
        }
        let plan = state.plan().clone();
        if let Some(alert) = state.heartbeat.check(now, &plan, &state.links) {
            tracing::warn!(system = %plan.system.id, "{}", alert.summary);
            for out in outputs {
                out.notifications(std::slice::from_ref(&alert));
            }
        }
    }
}

/// One event of a planned system: drop a repeat, feed the engine, hand out its windows.
fn observe(
    state: &mut SystemState,
    event: &Event,
    outputs: &[Arc<dyn Output>],
    metrics: &DetectorMetrics,
    partition: i32,
    offset: i64,
) {
    let system = event.system_id();
    if let Event::Prediction(p) = event {
        if !state.dedup.first_time(&p.prediction_id) {
            metrics.duplicates.with_label_values(&[system]).inc();
            tracing::debug!(partition, offset, "dropping a repeated prediction");
            return;
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
        state.unsaved_reference = Some(r.clone());
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
        let verdicts = drift_verdicts(&report, state.min_severity);
        let alerts: Vec<_> = verdicts.iter().filter_map(|v| v.alert.clone()).collect();
        for out in outputs {
            out.window(&report, &alerts);
        }
        let spec = state.plan().alerts.episodes;
        let notes = state.episodes.observe(&spec, &state.links, verdicts);
        if !notes.is_empty() {
            for out in outputs {
                out.notifications(&notes);
            }
        }
        state.last_report = Some(Arc::new(report));
    }
    for report in step.performance {
        tracing::info!(
            system = %report.system_id,
            window = report.window.index,
            stage = report.stage.as_str(),
            coverage = report.coverage,
            severity = report.severity.as_str(),
            "performance reported"
        );
        let alerts = crate::alert::performance_alerts(&report, state.perf_min_severity);
        for out in outputs {
            out.performance(&report, &alerts);
        }
        let verdicts = crate::alert::performance_verdicts(&report, state.perf_min_severity);
        let spec = state.plan().alerts.episodes;
        let notes = state.episodes.observe(&spec, &state.links, verdicts);
        if !notes.is_empty() {
            for out in outputs {
                out.notifications(&notes);
            }
        }
    }
}
