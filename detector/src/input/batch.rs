//! Predictions decoded column by column: what the CSV reader hands the engine. A column
//! of numbers appends to a window with one copy, a column of categories with one count
//! per distinct category, instead of one enum per value per row.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::engine::{FxHasher, Observed};
use crate::plan::{FeatureType, Signal};

/// The id of a missing category.
pub const MISSING: u32 = u32::MAX;

/// The [`ColumnBatch::ids`] entry of a row without a prediction id.
pub const NO_ID: u64 = u64::MAX;

/// A 64-bit hash of a prediction id: what duplicates are recognised by, in both drivers
/// (two different ids collide with probability about 2^-64 per pair; a dedup memory of
/// 100,000 ids makes a false duplicate about a one-in-10^9 event). Eight bytes at a time,
/// then a murmur finaliser; never [`NO_ID`].
pub fn id_hash(id: &[u8]) -> u64 {
    let mut h: u64 = 0x243F_6A88_85A3_08D3 ^ id.len() as u64;
    let mut words = id.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
    let rest = words.remainder();
    let mut b = [0u8; 8];
    b[..rest.len()].copy_from_slice(rest);
    h = (h ^ u64::from_le_bytes(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    if h == NO_ID {
        0
    } else {
        h
    }
}

/// The distinct categories of one column in one batch, in order of first appearance.
#[derive(Debug, Default, Clone)]
pub struct Dict {
    names: Vec<String>,
    /// Names of up to 8 bytes by [`quick_key`] (which tells them apart by itself), in an
    /// open-addressing table at most half full: (key, id + 1), 0 for an empty slot.
    short: Vec<(u128, u32)>,
    /// Slots of `short` taken.
    short_used: usize,
    /// Longer names.
    long: HashMap<String, u32, std::hash::BuildHasherDefault<FxHasher>>,
}

/// The first 8 bytes of a category and its length: equal names of up to 8 bytes compare
/// equal here without a call to memcmp.
pub(crate) fn quick_key(c: &str) -> u128 {
    key_of(c.as_bytes())
}

fn key_of(b: &[u8]) -> u128 {
    let mut head = [0u8; 8];
    let n = b.len().min(8);
    head[..n].copy_from_slice(&b[..n]);
    (u128::from(u64::from_le_bytes(head)) << 64) | b.len() as u128
}

/// The [`key_of`] of the `len` bytes at `at` in `text` by one 8-byte read, without a
/// copy: `None` when the name is longer than 8 bytes or `text` ends before 8 bytes.
#[inline(always)]
pub(crate) fn key_at(text: &[u8], at: usize, len: usize) -> Option<u128> {
    let word = text.get(at..at + 8)?;
    if len > 8 {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(word);
    // Keep the name's bytes: all 8, or the low `len` (none for len 0).
    let keep = u64::MAX.checked_shr(64 - 8 * len as u32).unwrap_or(0);
    Some((u128::from(u64::from_le_bytes(b) & keep) << 64) | len as u128)
}

/// The first slot to probe for `key` in a table of `mask + 1` slots.
fn slot_of(key: u128, mask: usize) -> usize {
    (((key >> 64) as u64 ^ key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize & mask
}

/// Linear probing for `key` in an open-addressing table of (key, id + 1) slots, 0 for an
/// empty slot, never full: the id held, or the empty slot where the key would go.
#[inline(always)]
fn probe(table: &[(u128, u32)], key: u128) -> Result<u32, usize> {
    let mask = table.len() - 1;
    let mut slot = slot_of(key, mask);
    loop {
        match table[slot] {
            (_, 0) => return Err(slot),
            (k, id) if k == key => return Ok(id - 1),
            _ => slot = (slot + 1) & mask,
        }
    }
}

impl Dict {
    /// The id of `name`, added if new.
    pub fn intern(&mut self, name: &str) -> u32 {
        match self.intern_bytes(name.as_bytes()) {
            Some(id) => id,
            None => unreachable!("a str is UTF-8"),
        }
    }

    /// The id of the category spelled by `name`, added if new; `None` if it is new and
    /// not UTF-8 (a name already held was checked when it was added).
    pub fn intern_bytes(&mut self, name: &[u8]) -> Option<u32> {
        if name.len() > 8 {
            let name = std::str::from_utf8(name).ok()?;
            if let Some(&id) = self.long.get(name) {
                return Some(id);
            }
            let id = self.push(name);
            self.long.insert(name.to_owned(), id);
            return Some(id);
        }
        self.intern_short(name, key_of(name))
    }

    /// [`Dict::intern_bytes`] for the `len` bytes at `at` in `text`: a name of up to 8
    /// bytes is keyed by one 8-byte read where `text` has 8 bytes from `at` (no copy).
    #[inline]
    pub fn intern_at(&mut self, text: &[u8], at: usize, len: usize) -> Option<u32> {
        let name = &text[at..at + len];
        match key_at(text, at, len) {
            Some(key) => self.intern_short(name, key),
            None => self.intern_bytes(name),
        }
    }

    /// The id of a name of up to 8 bytes held, by its [`key_of`]; `None` if not held.
    #[inline(always)]
    pub(crate) fn find_short(&self, key: u128) -> Option<u32> {
        if self.short.is_empty() {
            return None;
        }
        probe(&self.short, key).ok()
    }

    /// A name of up to 8 bytes with its [`key_of`].
    fn intern_short(&mut self, name: &[u8], key: u128) -> Option<u32> {
        if self.short.is_empty() {
            self.short = vec![(0, 0); 64];
        }
        let slot = match probe(&self.short, key) {
            Ok(id) => return Some(id),
            Err(slot) => slot,
        };
        let id = self.push(std::str::from_utf8(name).ok()?);
        self.short[slot] = (key, id + 1);
        self.short_used += 1;
        if 2 * self.short_used > self.short.len() {
            self.grow_short();
        }
        Some(id)
    }

    fn push(&mut self, name: &str) -> u32 {
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        id
    }

    fn grow_short(&mut self) {
        let old = std::mem::take(&mut self.short);
        self.short = vec![(0, 0); old.len() * 2];
        for (key, id) in old.into_iter().filter(|(_, id)| *id != 0) {
            // Keys are distinct: each finds an empty slot.
            if let Err(slot) = probe(&self.short, key) {
                self.short[slot] = (key, id);
            }
        }
    }

    /// The category of `id`.
    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// Distinct categories held.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn clear(&mut self) {
        self.names.clear();
        if self.short.len() > 64 {
            self.short = vec![(0, 0); 64];
        } else {
            self.short.iter_mut().for_each(|s| *s = (0, 0));
        }
        self.short_used = 0;
        self.long.clear();
    }
}

/// How many of `ids` name each category of `dict` (indexed by id), and how many are
/// [`MISSING`].
pub fn count_ids(ids: &[u32], dict: &Dict) -> (Vec<u64>, usize) {
    let mut counts = vec![0u64; dict.len() + 1];
    for &id in ids {
        counts[if id == MISSING {
            dict.len()
        } else {
            id as usize
        }] += 1;
    }
    let missing = counts.pop().unwrap_or(0) as usize;
    (counts, missing)
}

/// The values of one signal in a batch.
#[derive(Debug, Clone)]
pub enum Column {
    /// Numbers; NaN marks a missing value (a present value is always finite).
    Num(Vec<f64>),
    /// Category ids into `dict`; [`MISSING`] marks a missing value.
    Cat {
        /// One id per row.
        ids: Vec<u32>,
        /// The names behind the ids.
        dict: Dict,
    },
}

/// Rows of predictions of one system, stored by signal (in `Plan::signals` order).
#[derive(Debug, Default, Clone)]
pub struct ColumnBatch {
    /// One column per plan signal.
    pub columns: Vec<Column>,
    /// One per row; empty when the input has no timestamps (every row at the epoch).
    pub timestamps: Vec<DateTime<Utc>>,
    /// Per row, the outcome it carries: an id into `outcome_names`, [`MISSING`] for
    /// none; empty when the input has no outcome column. A label, or a regression
    /// outcome's number as written.
    pub outcomes: Vec<u32>,
    /// The outcome values behind the ids.
    pub outcome_names: Dict,
    /// Per row, [`id_hash`] of its prediction id ([`NO_ID`] for none); empty when the
    /// input has no id column.
    pub ids: Vec<u64>,
    rows: usize,
}

impl ColumnBatch {
    /// An empty batch for `signals`.
    pub fn new(signals: &[Signal]) -> Self {
        ColumnBatch {
            columns: signals
                .iter()
                .map(|s| match s.kind {
                    FeatureType::Numeric => Column::Num(Vec::new()),
                    FeatureType::Categorical => Column::Cat {
                        ids: Vec::new(),
                        dict: Dict::default(),
                    },
                })
                .collect(),
            ..ColumnBatch::default()
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether it holds no row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Empty it, keeping the allocations.
    pub fn clear(&mut self) {
        for c in &mut self.columns {
            match c {
                Column::Num(v) => v.clear(),
                Column::Cat { ids, dict } => {
                    ids.clear();
                    dict.clear();
                }
            }
        }
        self.timestamps.clear();
        self.outcomes.clear();
        self.outcome_names.clear();
        self.ids.clear();
        self.rows = 0;
    }

    /// Count a row whose values were pushed to every column (and its timestamp and
    /// outcome flag, if the batch carries them).
    pub fn push_row(&mut self) {
        self.rows += 1;
    }

    /// Count `n` rows whose values were pushed to every column.
    pub(crate) fn add_rows(&mut self, n: usize) {
        self.rows += n;
    }

    /// Drop rows from `len` on (the rows before a bad record are kept).
    pub fn truncate(&mut self, len: usize) {
        for c in &mut self.columns {
            match c {
                Column::Num(v) => v.truncate(len),
                Column::Cat { ids, .. } => ids.truncate(len),
            }
        }
        self.timestamps.truncate(len);
        self.outcomes.truncate(len);
        self.ids.truncate(len);
        self.rows = self.rows.min(len);
    }

    /// The timestamp of row `i` (the epoch when the input has none).
    pub fn timestamp(&self, i: usize) -> DateTime<Utc> {
        self.timestamps
            .get(i)
            .copied()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    /// Whether row `i` also carries an outcome.
    pub fn has_outcome(&self, i: usize) -> bool {
        self.outcomes.get(i).is_some_and(|&o| o != MISSING)
    }

    /// The outcome row `i` carries, as written.
    pub fn outcome(&self, i: usize) -> Option<&str> {
        match self.outcomes.get(i) {
            Some(&o) if o != MISSING => Some(self.outcome_names.name(o)),
            _ => None,
        }
    }

    /// The [`id_hash`] of row `i`'s prediction id, if the input has ids.
    pub fn id(&self, i: usize) -> Option<u64> {
        self.ids.get(i).copied().filter(|&h| h != NO_ID)
    }

    /// Keep only the rows for which `keep` is true (in order): how the file driver drops
    /// repeated predictions from a batch.
    pub fn retain_rows(&mut self, keep: &[bool]) {
        fn retain<T>(v: &mut Vec<T>, keep: &[bool]) {
            if v.is_empty() {
                return;
            }
            let mut k = keep.iter();
            v.retain(|_| k.next().copied().unwrap_or(true));
        }
        for c in &mut self.columns {
            match c {
                Column::Num(v) => retain(v, keep),
                Column::Cat { ids, .. } => retain(ids, keep),
            }
        }
        retain(&mut self.timestamps, keep);
        retain(&mut self.outcomes, keep);
        retain(&mut self.ids, keep);
        self.rows = keep.iter().filter(|k| **k).count() + self.rows.saturating_sub(keep.len());
    }

    /// The value of column `c` in row `i`.
    pub fn value(&self, i: usize, c: usize) -> Observed<'_> {
        match &self.columns[c] {
            Column::Num(v) if v[i].is_nan() => Observed::Missing,
            Column::Num(v) => Observed::Num(v[i]),
            Column::Cat { ids, .. } if ids[i] == MISSING => Observed::Missing,
            Column::Cat { ids, dict } => {
                Observed::Cat(std::borrow::Cow::Borrowed(dict.name(ids[i])))
            }
        }
    }

    /// Row `i` as engine values (into `out`, cleared first).
    pub fn row<'a>(&'a self, i: usize, out: &mut Vec<Observed<'a>>) {
        out.clear();
        for c in &self.columns {
            out.push(match c {
                Column::Num(v) if v[i].is_nan() => Observed::Missing,
                Column::Num(v) => Observed::Num(v[i]),
                Column::Cat { ids, .. } if ids[i] == MISSING => Observed::Missing,
                Column::Cat { ids, dict } => {
                    Observed::Cat(std::borrow::Cow::Borrowed(dict.name(ids[i])))
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dict_ids_are_stable_past_the_list() {
        let mut d = Dict::default();
        let names: Vec<String> = (0..100).map(|i| format!("category-{i}")).collect();
        let ids: Vec<u32> = names.iter().map(|n| d.intern(n)).collect();
        assert_eq!(ids, (0..100).collect::<Vec<u32>>());
        for (i, n) in names.iter().enumerate().rev() {
            assert_eq!(d.intern(n), i as u32);
            assert_eq!(d.name(i as u32), n);
        }
        assert_eq!(d.intern("a"), 100);
        assert_eq!(d.intern("a"), 100);
        // Keyed from inside a longer text: the same ids as the names alone.
        let text = b"a,category-7,ab,abcdefgh,abcdefghi,";
        assert_eq!(d.intern_at(text, 0, 1), Some(100));
        assert_eq!(d.intern_at(text, 2, 10), Some(7));
        let ab = d.intern_at(text, 13, 2);
        assert_eq!(ab, Some(d.intern("ab")));
        assert_eq!(d.intern_at(text, 16, 8), Some(d.intern("abcdefgh")));
        assert_eq!(d.intern_at(text, 25, 9), Some(d.intern("abcdefghi")));
        assert_eq!(d.intern_at(text, 34, 0), Some(d.intern("")));
        assert_eq!(d.intern_at(b"\xff\xfe", 0, 2), None);
        d.clear();
        assert_eq!(d.intern("category-7"), 0);
    }
}
