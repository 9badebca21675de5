//! The consumer group's side of the Kafka driver: what a rebalance callback records for
//! the consume loop, and the guard that lets a revocation go while closing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftwatch_common::health::Readiness;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{ClientContext, TopicPartitionList};

/// Counts assignments and holds a revocation for the loop to act on; shows the
/// assignment (`driftwatch_partitions_assigned`) and sets `/ready` at the first one (the
/// group is joined: this instance consumes its share, even if that is nothing).
///
/// **Revocation waits for a checkpoint.** librdkafka lets the application answer a
/// revocation later: until it calls `unassign`, the group waits for this member and no
/// other instance gets the partitions. So the callback only notes the revoked
/// partitions and wakes the loop, which checkpoints and commits (within
/// [`REVOKE_DEADLINE`]), resets those systems and then unassigns: the next owner
/// continues exactly where this instance stopped. While closing, the callback
/// unassigns at once.
pub(super) struct RebalanceContext {
    pub(super) epoch: AtomicU64,
    pub(super) revoked: Mutex<Vec<i32>>,
    pub(super) revoke_pending: std::sync::atomic::AtomicBool,
    pub(super) wake: tokio::sync::Notify,
    pub(super) closing: Arc<std::sync::atomic::AtomicBool>,
    pub(super) assigned: prometheus::IntGauge,
    pub(super) rebalances: prometheus::IntCounterVec,
    pub(super) ready: Readiness,
}

/// How long a revoked instance may take to checkpoint before it lets go anyway (the
/// next owner then restores the checkpoint before).
pub const REVOKE_DEADLINE: Duration = Duration::from_secs(10);

impl RebalanceContext {
    /// Whether a revocation waits to be answered (taken: answer it now).
    pub(super) fn take_revoke(&self) -> bool {
        self.revoke_pending.swap(false, Ordering::SeqCst)
    }

    /// Whether partitions were assigned since `epoch` (which moves on).
    pub(super) fn assigned_since(&self, epoch: &mut u64) -> bool {
        let now = self.epoch.load(Ordering::SeqCst);
        std::mem::replace(epoch, now) != now
    }
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn rebalance(
        &self,
        base: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::types::RDKafkaRespErr as E;
        match err {
            E::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                if let Err(e) = base.assign(tpl) {
                    tracing::error!(error = %e, "cannot take the assigned partitions");
                }
                self.assigned.set(tpl.count() as i64);
                self.rebalances.with_label_values(&["assigned"]).inc();
                self.epoch.fetch_add(1, Ordering::SeqCst);
                self.ready.set();
            }
            E::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                let mut r = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
                r.extend(tpl.elements().iter().map(|e| e.partition()));
                drop(r);
                self.assigned.set(0);
                self.rebalances.with_label_values(&["revoked"]).inc();
                if self.closing.load(Ordering::SeqCst) {
                    let _ = base.unassign();
                } else {
                    self.revoke_pending.store(true, Ordering::SeqCst);
                    self.wake.notify_one();
                }
            }
            other => {
                tracing::warn!(error = ?other, "rebalance error; letting go of every partition");
                let _ = base.unassign();
                self.assigned.set(0);
            }
        }
    }
}

/// Sets its flag when dropped.
pub(super) struct SetOnDrop(pub(super) Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
