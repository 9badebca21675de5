//! The state the Kafka driver keeps per AI system: its monitor, its duplicate memory,
//! what the plan says about its alerts, and where its input stands: the partition its
//! events come on, the next offset its state does not include, and the first offset
//! applied since its last checkpoint.

use std::sync::Arc;

use super::checkpoint::Checkpoint;
use crate::alert::episode::{Episodes, Heartbeat, Links};
use crate::codec::CodecError;
use crate::driver::dedup::Dedup;
use crate::engine::{fnv1a64, plan_fingerprint, Monitor, ReferenceProfile, WindowReport};
use crate::plan::{Plan, Severity};

/// One monitored system.
pub struct SystemState {
    /// The engine state: reference, windows.
    pub monitor: Monitor,
    /// Recent prediction ids, to drop repeats.
    pub dedup: Dedup,
    /// Alerts below this are not raised.
    pub min_severity: Severity,
    /// The plan's minimum severity for performance alerts.
    pub perf_min_severity: Severity,
    /// The events partition of the system, once an event or a checkpoint said.
    pub partition: Option<i32>,
    /// The first offset of `partition` the state does not include.
    pub next_offset: i64,
    /// The first offset applied since the last checkpoint (`None`: nothing since).
    pub dirty_from: Option<i64>,
    /// The last checkpoint's generation.
    pub generation: u64,
    /// A reference frozen from the stream, kept in the reference store only once a
    /// checkpoint of the windows after it is written (so a restart never takes the
    /// reference's own events for window events, nor collects a new reference from
    /// events past the committed offset).
    pub unsaved_reference: Option<Arc<ReferenceProfile>>,
    /// The last window report (checkpointed, so a restart restores its gauges).
    pub last_report: Option<Arc<WindowReport>>,
    /// Each condition's episode (checkpointed: a restart neither pages again for an
    /// episode in progress nor forgets to resolve it).
    pub episodes: Episodes,
    /// What the plan's notifications link to.
    pub links: Links,
    /// When its last event arrived (wall clock), for the plan's `heartbeat_s`.
    pub heartbeat: Heartbeat,
    plan: Arc<Plan>,
}

/// What a checkpoint is tied to: the plan's signals and checks and its windowing. A
/// checkpoint under another fingerprint is not restored.
pub fn state_fingerprint(plan: &Plan) -> String {
    let text = format!(
        "{}|{:?}|{}",
        plan_fingerprint(plan),
        plan.window.windowing(),
        plan.window.max_skew_ms()
    );
    format!("fnv1a64:{:016x}", fnv1a64(text.as_bytes(), 0))
}

impl SystemState {
    /// The state a plan starts with, given its reference (`None`: collected from the
    /// stream).
    pub fn new(plan: Arc<Plan>, reference: Option<ReferenceProfile>) -> Self {
        SystemState {
            dedup: Dedup::for_plan(&plan),
            min_severity: plan.alerts.min_severity,
            perf_min_severity: plan.performance_min_severity(),
            monitor: Monitor::new(plan.clone(), reference),
            partition: None,
            next_offset: 0,
            dirty_from: None,
            generation: 0,
            unsaved_reference: None,
            last_report: None,
            episodes: Episodes::default(),
            links: Links::of(&plan),
            heartbeat: Heartbeat::new(chrono::Utc::now()),
            plan,
        }
    }

    /// Back to a fresh start with the same reference (the system's partition went to
    /// another instance).
    pub fn reset(&mut self) {
        let reference = self.monitor.reference().cloned();
        let generation = self.generation;
        *self = SystemState::new(self.plan.clone(), reference);
        self.generation = generation;
    }

    /// The system's plan.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// Start afresh with `reference` (one frozen from the stream by another instance).
    pub fn adopt_reference(&mut self, reference: ReferenceProfile) {
        let generation = self.generation;
        *self = SystemState::new(self.plan.clone(), Some(reference));
        self.generation = generation;
    }

    /// This system's checkpoint now, if its state can be taken (not while a reference
    /// is being collected).
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let partition = self.partition?;
        let (reference_version, engine) = self.monitor.snapshot()?;
        Some(Checkpoint {
            system: self.plan.system.id.clone(),
            plan_fingerprint: state_fingerprint(&self.plan),
            reference_version,
            partition,
            next_offset: self.next_offset,
            generation: self.generation + 1,
            dedup: self.dedup.remembered(),
            engine,
            last_report: self
                .last_report
                .as_ref()
                .and_then(|r| serde_json::to_vec(r.as_ref()).ok())
                .unwrap_or_default(),
            episodes: self.episodes.to_bytes(),
        })
    }

    /// Continue from a checkpoint; refused (state unchanged) if it belongs to another
    /// plan, reference or system, or is damaged.
    pub fn restore(&mut self, c: &Checkpoint) -> Result<(), CodecError> {
        if c.system != self.plan.system.id {
            return Err(CodecError("a checkpoint of another system".into()));
        }
        let fingerprint = state_fingerprint(&self.plan);
        if c.plan_fingerprint != fingerprint {
            return Err(CodecError(format!(
                "taken under plan fingerprint {}, the plan now is {fingerprint} (signals, checks or windows changed)",
                c.plan_fingerprint
            )));
        }
        let episodes = Episodes::from_bytes(&c.episodes)
            .map_err(|e| CodecError(format!("alert episodes: {e}")))?;
        self.monitor.restore(&c.reference_version, &c.engine)?;
        self.episodes = episodes;
        self.heartbeat = Heartbeat::new(chrono::Utc::now());
        self.dedup.restore(&c.dedup);
        self.partition = Some(c.partition);
        self.next_offset = c.next_offset;
        self.dirty_from = None;
        self.generation = c.generation;
        self.last_report = serde_json::from_slice(&c.last_report).ok().map(Arc::new);
        Ok(())
    }
}
