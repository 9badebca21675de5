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

use crate::input::batch::id_hash;
use crate::plan::{Plan, WindowKind};

/// Remembers the most recent prediction ids of one system: a ring of the last
/// `capacity` id hashes, and an open-addressing table of them (linear probing, at most
/// half full, deletion by backward shift), 16 to 24 bytes per id remembered. About a
/// third of the time of a `HashSet` plus a `VecDeque`, which the file driver pays on
/// every row.
pub struct Dedup {
    ring: Vec<u64>,
    /// Next slot of `ring` to write (and the oldest id once the ring is full).
    next: usize,
    full: bool,
    table: Vec<u64>,
    mask: usize,
}

/// An empty table slot. Hashes are never 0 in the table (see [`Dedup::key`]).
const EMPTY: u64 = 0;

impl Dedup {
    /// Remember up to `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let slots = (capacity * 2).next_power_of_two();
        Dedup {
            ring: vec![EMPTY; capacity],
            next: 0,
            full: false,
            table: vec![EMPTY; slots],
            mask: slots - 1,
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
        let key = Self::key(hash);
        let mut slot = self.slot(key);
        loop {
            match self.table[slot] {
                EMPTY => break,
                k if k == key => return false,
                _ => slot = (slot + 1) & self.mask,
            }
        }
        if self.full {
            let old = self.ring[self.next];
            self.remove(old);
            // The slot found above may have moved up by the backward shift.
            slot = self.slot(key);
            while self.table[slot] != EMPTY {
                slot = (slot + 1) & self.mask;
            }
        }
        self.table[slot] = key;
        self.ring[self.next] = key;
        self.next += 1;
        if self.next == self.ring.len() {
            self.next = 0;
            self.full = true;
        }
        true
    }

    /// The remembered id hashes, oldest first (what a checkpoint keeps).
    pub fn remembered(&self) -> Vec<u64> {
        if self.full {
            let mut v = self.ring[self.next..].to_vec();
            v.extend_from_slice(&self.ring[..self.next]);
            v
        } else {
            self.ring[..self.next].to_vec()
        }
    }

    /// Remember `hashes` (oldest first), as [`Dedup::remembered`] gave them.
    pub fn restore(&mut self, hashes: &[u64]) {
        *self = Dedup::new(self.ring.len());
        for h in hashes {
            self.first_time_hash(*h);
        }
    }

    fn key(hash: u64) -> u64 {
        if hash == EMPTY {
            1
        } else {
            hash
        }
    }

    fn slot(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & self.mask
    }

    /// Delete `key` from the table, shifting later entries of its probe run back.
    fn remove(&mut self, key: u64) {
        let mut slot = self.slot(key);
        while self.table[slot] != key {
            if self.table[slot] == EMPTY {
                return;
            }
            slot = (slot + 1) & self.mask;
        }
        let mut hole = slot;
        let mut next = (hole + 1) & self.mask;
        while self.table[next] != EMPTY {
            let home = self.slot(self.table[next]);
            // Move the entry back if its home is not within (hole, next].
            if (next.wrapping_sub(home) & self.mask) >= (next.wrapping_sub(hole) & self.mask) {
                self.table[hole] = self.table[next];
                hole = next;
            }
            next = (next + 1) & self.mask;
        }
        self.table[hole] = EMPTY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a model (the last `capacity` ids in a list), over many ids that collide
    /// in the table: the same answer every time.
    #[test]
    fn matches_a_list_of_the_last_ids() {
        let mut rng = crate::synth::Rng::new(3);
        for capacity in [1, 2, 3, 7, 64, 1000] {
            let mut d = Dedup::new(capacity);
            let mut model: std::collections::VecDeque<u64> = Default::default();
            for _ in 0..20_000 {
                // Few distinct hashes, many of them sharing low bits: long probe runs.
                let h = (rng.next_u64() % (3 * capacity as u64 + 5)) << 40;
                let want = !model.contains(&h);
                assert_eq!(d.first_time_hash(h), want, "capacity {capacity}");
                if want {
                    if model.len() == capacity {
                        model.pop_front();
                    }
                    model.push_back(h);
                }
            }
        }
    }

    #[test]
    fn a_restored_memory_answers_as_the_original() {
        let mut rng = crate::synth::Rng::new(5);
        let mut d = Dedup::new(100);
        for _ in 0..350 {
            d.first_time_hash(rng.next_u64() % 400);
        }
        let mut r = Dedup::new(100);
        r.restore(&d.remembered());
        assert_eq!(r.remembered(), d.remembered());
        for _ in 0..2000 {
            let h = rng.next_u64() % 400;
            assert_eq!(r.first_time_hash(h), d.first_time_hash(h));
        }
    }

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
