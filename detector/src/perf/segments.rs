//! Segments: the groups of people a window's performance is split by (the plan's
//! `[performance] segments`). Each prediction's values of the segment keys are interned
//! once into a *cell* id (u16, kept in its join entry), so a late outcome finds every
//! group its prediction belongs to. Values per key are capped (`max_segment_values`;
//! the rest pooled as `other`), and so are the combinations (65,535; the rest pooled as
//! all `other`), so memory and labels stay bounded whatever the events carry.

use std::collections::{BTreeMap, HashMap};

use super::metrics::PerfAcc;
use crate::engine::Observed;
use crate::plan::{PerformanceSpec, Signal, Source};

/// The pooled value.
pub const OTHER: &str = "other";
/// A prediction without the key.
pub const MISSING: &str = "(missing)";

/// Where a key's value comes from.
#[derive(Debug, Clone)]
enum From {
    /// A categorical feature: its position in the row.
    Row(Option<usize>),
    /// A tag of the event's `segment` map.
    Tag(String),
}

/// The segment keys of a plan and the values and combinations seen.
#[derive(Debug, Clone)]
pub struct Segments {
    /// Key names as the plan gives them (`features.region`, `segment.channel`).
    pub keys: Vec<String>,
    from: Vec<From>,
    max_values: usize,
    /// Per key, its values by id (id 0 is `other`).
    pub(crate) values: Vec<Vec<String>>,
    /// Per cell id, the value id of each key (cell 0: no segments).
    pub(crate) cells: Vec<Vec<u16>>,
    cell_ids: HashMap<Vec<u16>, u16>,
}

impl Segments {
    /// The plan's segment keys (none: every prediction is cell 0).
    pub fn new(spec: &PerformanceSpec, signals: &[Signal]) -> Self {
        let from = spec
            .segments
            .iter()
            .map(|k| match k.strip_prefix("features.") {
                Some(f) => From::Row(
                    signals
                        .iter()
                        .position(|s| s.source == Source::Feature(f.to_owned())),
                ),
                None => From::Tag(k.strip_prefix("segment.").unwrap_or(k).to_owned()),
            })
            .collect();
        Segments {
            keys: spec.segments.clone(),
            from,
            max_values: spec.max_segment_values,
            values: vec![vec![OTHER.to_owned()]; spec.segments.len()],
            cells: vec![Vec::new()],
            cell_ids: HashMap::new(),
        }
    }

    /// The same keys, nothing seen yet.
    pub(crate) fn fresh(&self) -> Self {
        Segments {
            keys: self.keys.clone(),
            from: self.from.clone(),
            max_values: self.max_values,
            values: vec![vec![OTHER.to_owned()]; self.keys.len()],
            cells: vec![Vec::new()],
            cell_ids: HashMap::new(),
        }
    }

    /// The row positions of the features segments are keyed by.
    pub(crate) fn row_columns(&self) -> impl Iterator<Item = usize> + '_ {
        self.from.iter().filter_map(|f| match f {
            From::Row(at) => *at,
            From::Tag(_) => None,
        })
    }

    /// Whether the plan names segments.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn value_id(&mut self, key: usize, v: &str) -> u16 {
        let values = &mut self.values[key];
        if let Some(i) = values.iter().position(|x| x == v) {
            return i as u16;
        }
        // `other` is id 0 and does not count against the cap.
        if values.len() > self.max_values {
            return 0;
        }
        values.push(v.to_owned());
        (values.len() - 1) as u16
    }

    /// The cell of a prediction: its row and, for events, its `segment` map.
    pub(crate) fn cell_of(
        &mut self,
        row: &[Observed<'_>],
        tags: Option<&BTreeMap<String, String>>,
    ) -> u16 {
        if self.keys.is_empty() {
            return 0;
        }
        let mut ids = Vec::with_capacity(self.keys.len());
        for i in 0..self.keys.len() {
            // Borrowed from the row or the tags: nothing is copied unless it is new.
            let v: &str = match &self.from[i] {
                From::Row(Some(at)) => match &row[*at] {
                    Observed::Cat(c) => c,
                    _ => MISSING,
                },
                From::Row(None) => MISSING,
                From::Tag(t) => tags.and_then(|m| m.get(t)).map_or(MISSING, String::as_str),
            };
            ids.push(self.value_id(i, v));
        }
        if let Some(&c) = self.cell_ids.get(&ids) {
            return c;
        }
        if self.cells.len() > u16::MAX as usize - 1 {
            // Every combination slot taken: pooled with the all-`other` cell.
            let all_other = vec![0u16; self.keys.len()];
            return match self.cell_ids.get(&all_other) {
                Some(&c) => c,
                None => 0,
            };
        }
        let c = self.cells.len() as u16;
        self.cells.push(ids.clone());
        self.cell_ids.insert(ids, c);
        c
    }

    /// The (key, value) groups of a cell.
    pub(crate) fn groups(&self, cell: u16) -> impl Iterator<Item = (u16, u16)> + '_ {
        self.cells
            .get(usize::from(cell))
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(k, &v)| (k as u16, v))
    }

    /// The group id of value `v` of key `k`: one number per (key, value) the caps
    /// allow, stable for the life of the monitor.
    pub fn group_id(&self, k: u16, v: u16) -> u16 {
        k * (self.max_values as u16 + 1) + v
    }

    /// The (key, value) of a group id.
    pub fn group_of(&self, g: u16) -> (u16, u16) {
        let per = self.max_values as u16 + 1;
        (g / per, g % per)
    }

    /// The group ids of a cell.
    pub(crate) fn group_ids(&self, cell: u16) -> Vec<u16> {
        self.groups(cell)
            .map(|(k, v)| self.group_id(k, v))
            .collect()
    }

    /// The reference key of a group: `key=value`.
    pub fn group_name(&self, g: u16) -> (String, String) {
        let (k, v) = self.group_of(g);
        (
            self.keys.get(usize::from(k)).cloned().unwrap_or_default(),
            self.value_name(k, v).to_owned(),
        )
    }

    /// The name of value `v` of key `k`.
    pub(crate) fn value_name(&self, k: u16, v: u16) -> &str {
        self.values
            .get(usize::from(k))
            .and_then(|vs| vs.get(usize::from(v)))
            .map_or(OTHER, String::as_str)
    }

    /// Restore interned values and cells (from a checkpoint).
    pub(crate) fn restore(&mut self, values: Vec<Vec<String>>, cells: Vec<Vec<u16>>) {
        self.cell_ids = cells
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, c)| (c.clone(), i as u16))
            .collect();
        self.values = values;
        self.cells = cells;
    }
}

/// One group's share of a window: its predictions and its joined pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupAcc {
    /// Predictions of the group in the window.
    pub predictions: u64,
    /// The group's joined pairs.
    pub acc: PerfAcc,
}
