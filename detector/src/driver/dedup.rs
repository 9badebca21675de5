//! Repeated predictions, dropped the same way by both drivers: a model server retries a
//! batch the agent answered 503 (nothing of it was kept, but a retry after a lost 202
//! sends kept events again), and Kafka redelivers after a crash; an export can hold
//! the same retries. A prediction is identified by its `prediction_id` within its system
//! (the agent assigns a new `event_id` per attempt, so that cannot be the key), through
//! a 64-bit hash ([`crate::input::batch::id_hash`]).
//!
//! Memory is bounded: the last `capacity` ids per system are remembered (16 bytes each),
//! oldest forgotten first, so a repeat arriving more than `capacity` predictions later
//! is counted again.

use std::collections::{HashSet, VecDeque};

use crate::input::batch::id_hash;
use crate::plan::{Plan, WindowKind};

/// Remembers the most recent prediction ids of one system.
pub struct Dedup {
    capacity: usize,
    seen: HashSet<u64, std::hash::BuildHasherDefault<crate::engine::FxHasher>>,
    order: VecDeque<u64>,
}

impl Dedup {
    /// Remember up to `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Dedup {
            capacity,
            seen: HashSet::with_capacity_and_hasher(capacity, Default::default()),
            order: VecDeque::with_capacity(capacity),
        }
    }

    /// The memory a plan gets: two windows' worth of count windows (at least 10,000),
    /// 100,000 ids for time windows.
    pub fn for_plan(plan: &Plan) -> Self {
        let w = plan.window.windowing();
        Dedup::new(match w.kind {
            WindowKind::Count => (2 * w.size).max(10_000) as usize,
            WindowKind::Time => 100_000,
        })
    }

    /// True the first time a prediction id is offered (within the remembered horizon).
    pub fn first_time(&mut self, prediction_id: &str) -> bool {
        self.first_time_hash(id_hash(prediction_id.as_bytes()))
    }

    /// [`Dedup::first_time`] by the id's hash.
    pub fn first_time_hash(&mut self, hash: u64) -> bool {
        if !self.seen.insert(hash) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(hash);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_caught_within_the_horizon_only() {
        let mut d = Dedup::new(3);
        assert!(d.first_time("a"));
        assert!(d.first_time("b"));
        assert!(!d.first_time("a"));
        assert!(d.first_time("c"));
        assert!(d.first_time("d")); // forgets "a"
        assert!(d.first_time("a"));
        assert!(!d.first_time("d"));
    }
}
