//! Duplicate predictions: the agent answers 503 when Kafka does not confirm a whole batch,
//! and the model server's retry sends the confirmed part again; Kafka redelivery after a
//! crash does the same. A prediction is identified by its `prediction_id` within its
//! system (the agent assigns a new `event_id` per attempt, so that cannot be the key).
//!
//! Memory is bounded: the last `capacity` ids per system are remembered, oldest forgotten
//! first, so a duplicate arriving more than `capacity` predictions later is counted again.

use std::collections::{HashSet, VecDeque};

/// Remembers the most recent prediction ids of one system.
pub struct Dedup {
    capacity: usize,
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl Dedup {
    /// Remember up to `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Dedup {
            capacity,
            seen: HashSet::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
        }
    }

    /// True the first time an id is offered (within the remembered horizon).
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(id.to_owned());
        self.order.push_back(id.to_owned());
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
