//! Which offset of a partition is safe to commit: the consumer stores, per partition,
//! the offset of the first event that no window report covers yet, so a restart
//! rebuilds what was open from Kafka (at-least-once).
//!
//! For each system, the partition and offset of its first event still held (an open
//! window, a reference being collected) are remembered; the safe offset of a partition
//! is the smallest of its systems', or just past the event processed when none holds
//! anything.

use std::collections::HashMap;

/// The first held event of each system.
#[derive(Debug, Default)]
pub struct SafeOffsets {
    held: HashMap<String, (i32, i64)>,
}

impl SafeOffsets {
    /// After an event of `system` at `partition`/`offset`: whether the system still
    /// holds events no report covers.
    pub fn update(&mut self, system: &str, partition: i32, offset: i64, holds: bool) {
        if holds {
            self.held
                .entry(system.to_owned())
                .or_insert((partition, offset));
        } else {
            self.held.remove(system);
        }
    }

    /// The offset to store for `partition` after processing the event at `offset`.
    pub fn safe(&self, partition: i32, offset: i64) -> i64 {
        self.held
            .values()
            .filter(|(p, _)| *p == partition)
            .map(|(_, o)| *o)
            .min()
            .unwrap_or(offset + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_safe_offset_is_the_first_held_event_of_the_partition() {
        let mut s = SafeOffsets::default();
        assert_eq!(s.safe(0, 9), 10, "nothing held: past the event");
        s.update("a", 0, 10, true);
        s.update("a", 0, 11, true);
        s.update("b", 1, 12, true);
        assert_eq!(s.safe(0, 11), 10, "a's first held event");
        assert_eq!(s.safe(1, 12), 12);
        s.update("a", 0, 13, false);
        assert_eq!(s.safe(0, 13), 14, "a's window closed");
        assert_eq!(s.safe(1, 14), 12, "b still holds on partition 1");
    }
}
