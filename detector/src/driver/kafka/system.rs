//! The state the Kafka driver keeps per AI system: its monitor, its duplicate memory,
//! and what the plan says about its alerts.

use std::sync::Arc;

use crate::driver::dedup::Dedup;
use crate::engine::{Monitor, ReferenceProfile};
use crate::plan::{Plan, Severity};

/// One monitored system.
pub struct SystemState {
    /// The engine state: reference, windows.
    pub monitor: Monitor,
    /// Recent prediction ids, to drop repeats.
    pub dedup: Dedup,
    /// Alerts below this are not raised.
    pub min_severity: Severity,
}

impl SystemState {
    /// The state a plan starts with, given its reference (`None`: collected from the
    /// stream).
    pub fn new(plan: Arc<Plan>, reference: Option<ReferenceProfile>) -> Self {
        SystemState {
            dedup: Dedup::for_plan(&plan),
            min_severity: plan.alerts.min_severity,
            monitor: Monitor::new(plan, reference),
        }
    }
}
