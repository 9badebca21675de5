//! Predictions awaiting their outcome: a ring of fixed 40-byte entries in arrival order
//! and an open-addressing index of 4-byte slots over it.
//!
//! - An outcome finds its prediction by the 64-bit hash of `prediction_id`
//!   (`input::batch::id_hash`, the hash the duplicate filter already uses).
//! - The oldest entry leaves first: when the horizon has passed since its prediction
//!   (expired), or when the ring is full (evicted, counted: the memory budget).
//! - An entry stays after its outcome until it leaves, so a second outcome finds it
//!   and replaces the first (last one wins).
//!
//! Memory grows with what is pending, never past the budget: 40 bytes per entry in the
//! ring (doubled as it fills, up to the budget exactly) and an index doubled (and
//! rebuilt from the ring) when more than two thirds full, up to 1.5 slots of 4 bytes per
//! entry of the budget. A system with few predictions pending holds little; at the
//! budget it is 46 bytes per prediction.

/// Bytes of one pending prediction in the ring.
pub const PENDING_BYTES: usize = std::mem::size_of::<Pending>();

/// Bytes of one pending prediction at the budget: its ring entry and 1.5 index slots.
pub const BUDGET_BYTES: usize = PENDING_BYTES + 6;

/// One prediction awaiting (or holding) its outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Pending {
    /// Hash of the prediction id.
    pub key: u64,
    /// The score (binary) or predicted value (regression); NaN for none.
    pub pred: f64,
    /// The outcome: a class id or a value; meaningful once `has_outcome`.
    pub out: f64,
    /// The prediction's window position (sequence number or timestamp in ms).
    pub pos: i64,
    /// The prediction's timestamp, seconds since the epoch.
    pub ts_s: u32,
    /// The predicted class (binary: 1 positive), and flags in the top bits.
    pub label: u16,
    /// The prediction's segment cell (see `Segments`), 0 for none.
    pub cell: u16,
}

const HAS_OUTCOME: u16 = 1 << 15;
const CLASS_MASK: u16 = (1 << 12) - 1;

impl Pending {
    /// Whether an outcome has been joined.
    pub fn has_outcome(&self) -> bool {
        self.label & HAS_OUTCOME != 0
    }

    /// The predicted class.
    pub fn class(&self) -> u16 {
        self.label & CLASS_MASK
    }

    /// Record the outcome.
    pub fn set_outcome(&mut self, out: f64) {
        self.out = out;
        self.label |= HAS_OUTCOME;
    }
}

/// What happened to an outcome's lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The prediction, never joined before.
    First(usize),
    /// The prediction, already joined: this outcome replaces the earlier one.
    Again(usize),
    /// The prediction has left the ring (horizon passed or evicted), as far as the
    /// memory of departed ids tells.
    Departed,
    /// No such prediction.
    Unknown,
}

/// The pending predictions of one system.
pub struct PendingJoin {
    ring: Vec<Pending>,
    cap: usize,
    /// Position of the oldest entry in the ring, and the number of entries.
    head: usize,
    len: usize,
    /// Slot values are ring positions + 1; 0 is empty.
    index: Vec<u32>,
    /// The index never grows past this many slots (1.5 per entry of the ring).
    max_slots: usize,
    /// Hashes of departed predictions, direct-mapped: tells "expired" from "unknown"
    /// for recently departed ids (a later departure may overwrite a slot).
    departed: Vec<u64>,
}

const DEPARTED_SLOTS: usize = 1 << 16;

fn mix(key: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl PendingJoin {
    /// Room for `cap` pending predictions (at least 1).
    pub fn new(cap: usize) -> Self {
        let cap = cap.clamp(1, 1 << 31);
        let max_slots = cap + cap / 2 + 1;
        let slots = max_slots.min(1024);
        PendingJoin {
            ring: Vec::new(),
            cap,
            head: 0,
            len: 0,
            index: vec![0; slots],
            max_slots,
            departed: vec![0; DEPARTED_SLOTS],
        }
    }

    /// Entries pending.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room in the ring.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Slots of the index now.
    pub fn allocated_index_slots(&self) -> usize {
        self.index.len()
    }

    /// Bytes allocated (ring at full capacity, index, departed memory).
    pub fn allocated_bytes(&self) -> usize {
        self.cap * PENDING_BYTES + self.index.len() * 4 + self.departed.len() * 8
    }

    /// The home slot: the top 32 bits of the mixed key scaled to the index length.
    fn slot_of(&self, key: u64) -> usize {
        (((mix(key) >> 32) * self.index.len() as u64) >> 32) as usize
    }

    fn next(&self, s: usize) -> usize {
        if s + 1 == self.index.len() {
            0
        } else {
            s + 1
        }
    }

    /// Find the index slot holding `key`, if any.
    fn find_slot(&self, key: u64) -> Option<usize> {
        let mut s = self.slot_of(key);
        loop {
            let v = self.index[s];
            if v == 0 {
                return None;
            }
            if self.ring[(v - 1) as usize].key == key {
                return Some(s);
            }
            s = self.next(s);
        }
    }

    /// The oldest entry.
    pub fn oldest(&self) -> Option<&Pending> {
        (self.len > 0).then(|| &self.ring[self.head])
    }

    /// Add a prediction; a full ring first gives up its oldest entry, returned. A key
    /// already pending keeps its first entry (the duplicate filter drops repeats before
    /// this; a hash collision keeps the older).
    pub fn insert(&mut self, entry: Pending) -> Option<Pending> {
        if self.find_slot(entry.key).is_some() {
            return None;
        }
        let evicted = if self.len == self.cap {
            self.pop_oldest()
        } else {
            None
        };
        // Room in the index for one more (before the new entry is in the ring).
        if (self.len + 1) * 3 > self.index.len() * 2 && self.index.len() < self.max_slots {
            self.grow();
        }
        let at = (self.head + self.len) % self.cap;
        if at == self.ring.len() {
            if self.ring.len() == self.ring.capacity() {
                // Doubling, but never past the budget.
                let more = self
                    .ring
                    .capacity()
                    .max(1024)
                    .min(self.cap - self.ring.len());
                self.ring.reserve_exact(more);
            }
            self.ring.push(entry);
        } else {
            self.ring[at] = entry;
        }
        self.len += 1;
        self.place(entry.key, at);
        evicted
    }

    /// Put ring position `at` (holding `key`) into the index.
    fn place(&mut self, key: u64, at: usize) {
        let mut s = self.slot_of(key);
        while self.index[s] != 0 {
            s = self.next(s);
        }
        self.index[s] = at as u32 + 1;
    }

    /// Double the index (at most to `max_slots`) and place every entry again.
    fn grow(&mut self) {
        let slots = (self.index.len() * 2).min(self.max_slots);
        self.index = vec![0; slots];
        for i in 0..self.len {
            let at = (self.head + i) % self.cap;
            self.place(self.ring[at].key, at);
        }
    }

    /// Remove and return the oldest entry, remembering it departed.
    pub fn pop_oldest(&mut self) -> Option<Pending> {
        if self.len == 0 {
            return None;
        }
        let e = self.ring[self.head];
        if let Some(s) = self.find_slot(e.key) {
            self.remove_slot(s);
        }
        self.departed[(mix(e.key) >> 48) as usize % DEPARTED_SLOTS] = e.key;
        self.head = (self.head + 1) % self.cap;
        self.len -= 1;
        Some(e)
    }

    /// Backward-shift deletion: no tombstones, so lookups stay short.
    fn remove_slot(&mut self, mut hole: usize) {
        let n = self.index.len();
        self.index[hole] = 0;
        let mut s = self.next(hole);
        loop {
            let v = self.index[s];
            if v == 0 {
                return;
            }
            let home = self.slot_of(self.ring[(v - 1) as usize].key);
            // Move the entry back into the hole if its home is not in (hole, s].
            let dist_s = (s + n - home) % n;
            let dist_hole = (hole + n - home) % n;
            if dist_hole < dist_s {
                self.index[hole] = v;
                self.index[s] = 0;
                hole = s;
            }
            s = self.next(s);
        }
    }

    /// Look up an outcome's prediction.
    pub fn find(&self, key: u64) -> Found {
        match self.find_slot(key) {
            Some(s) => {
                let at = (self.index[s] - 1) as usize;
                if self.ring[at].has_outcome() {
                    Found::Again(at)
                } else {
                    Found::First(at)
                }
            }
            None if self.departed[(mix(key) >> 48) as usize % DEPARTED_SLOTS] == key => {
                Found::Departed
            }
            None => Found::Unknown,
        }
    }

    /// The entry at a ring position from [`PendingJoin::find`].
    pub fn get_mut(&mut self, at: usize) -> &mut Pending {
        &mut self.ring[at]
    }

    /// Every pending entry, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Pending> {
        (0..self.len).map(move |i| &self.ring[(self.head + i) % self.cap])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: u64, pos: i64) -> Pending {
        Pending {
            key,
            pred: 0.5,
            out: f64::NAN,
            pos,
            ts_s: pos as u32,
            label: 1,
            cell: 0,
        }
    }

    #[test]
    fn an_entry_is_forty_bytes() {
        assert_eq!(PENDING_BYTES, 40);
    }

    #[test]
    fn finds_joins_once_and_again_and_forgets_the_oldest_at_capacity() {
        let mut j = PendingJoin::new(1000);
        for k in 0..1000u64 {
            assert_eq!(j.insert(entry(k * 7919 + 1, k as i64)), None);
        }
        assert_eq!(j.len(), 1000);
        let Found::First(at) = j.find(7919 * 500 + 1) else {
            panic!("not found")
        };
        assert_eq!(j.get_mut(at).pos, 500);
        j.get_mut(at).set_outcome(1.0);
        assert!(matches!(j.find(7919 * 500 + 1), Found::Again(_)));
        assert_eq!(j.find(3), Found::Unknown);
        // Full: the next insert evicts key 1 (pos 0).
        let evicted = j.insert(entry(42, 1000)).expect("evicted");
        assert_eq!(evicted.pos, 0);
        assert_eq!(j.find(1), Found::Departed);
        assert_eq!(j.len(), 1000);
        // Every remaining key is still found after the deletions shifted the index.
        for k in 1..1000u64 {
            assert!(
                matches!(j.find(k * 7919 + 1), Found::First(_) | Found::Again(_)),
                "{k}"
            );
        }
    }

    #[test]
    fn the_index_grows_with_what_is_pending_not_with_the_budget() {
        let mut j = PendingJoin::new(10_000_000);
        assert!(j.allocated_index_slots() <= 1024);
        for k in 0..100_000u64 {
            j.insert(entry(k.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, k as i64));
        }
        let slots = j.allocated_index_slots();
        assert!(
            (150_000..=300_000).contains(&slots),
            "{slots} slots for 100,000"
        );
        for k in 0..100_000u64 {
            assert!(
                matches!(
                    j.find(k.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
                    Found::First(_)
                ),
                "{k}"
            );
        }
        // Never past 1.5 slots per entry of the budget.
        let mut small = PendingJoin::new(1000);
        for k in 0..5000u64 {
            small.insert(entry(k * 31 + 7, k as i64));
        }
        assert_eq!(small.allocated_index_slots(), 1501);
        assert_eq!(small.len(), 1000);
    }

    #[test]
    fn deletions_in_a_crowded_index_keep_every_key_reachable() {
        // Keys chosen to collide on few home slots.
        let mut j = PendingJoin::new(64);
        let keys: Vec<u64> = (0..64u64).map(|i| i << 58).collect();
        for (i, &k) in keys.iter().enumerate() {
            j.insert(entry(k, i as i64));
        }
        for _ in 0..32 {
            j.pop_oldest();
        }
        for (i, &k) in keys.iter().enumerate() {
            let found = j.find(k);
            if i < 32 {
                assert!(matches!(found, Found::Departed | Found::Unknown), "{i}");
            } else {
                assert!(matches!(found, Found::First(_)), "{i}: {found:?}");
            }
        }
    }
}
