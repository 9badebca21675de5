//! Open windows: the values of each signal per window, and the watermark that closes
//! them (count or event time, tumbling or sliding).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::input::batch::{count_ids, Column, ColumnBatch, MISSING};
use crate::plan::{FeatureType, Signal, WindowKind, Windowing};

/// Values of one signal in one window.
#[derive(Clone)]
pub(crate) struct SignalAcc {
    pub(crate) num: Vec<f64>,
    pub(crate) cat: CatCounts,
    pub(crate) missing: usize,
    pub(crate) type_errors: usize,
}

impl SignalAcc {
    pub(crate) fn samples(&self) -> usize {
        self.num.len() + self.cat.total() as usize
    }

    pub(crate) fn events(&self) -> usize {
        self.samples() + self.missing + self.type_errors
    }
}

/// One open window.
#[derive(Clone)]
pub(crate) struct Window {
    pub(crate) signals: Vec<SignalAcc>,
    pub(crate) events: usize,
    pub(crate) outcomes: usize,
    pub(crate) first: Option<DateTime<Utc>>,
    pub(crate) last: Option<DateTime<Utc>>,
    /// The same window per group of people (plans with `segment_drift`), by group id
    /// (`perf::segments::Segments::group_id`).
    pub(crate) cells: BTreeMap<u16, Window>,
}

impl Window {
    /// An empty window; `capacity` values are reserved per numeric signal, so a count
    /// window never reallocates while it fills.
    pub(crate) fn new(signals: &[Signal], capacity: usize) -> Self {
        Window {
            signals: signals
                .iter()
                .map(|s| SignalAcc {
                    num: match s.kind {
                        FeatureType::Numeric => Vec::with_capacity(capacity),
                        FeatureType::Categorical => Vec::new(),
                    },
                    cat: CatCounts::default(),
                    missing: 0,
                    type_errors: 0,
                })
                .collect(),
            events: 0,
            outcomes: 0,
            first: None,
            last: None,
            cells: BTreeMap::new(),
        }
    }

    /// Add a prediction to the window and to the windows of its `groups`.
    pub(crate) fn add_grouped(
        &mut self,
        signals: &[Signal],
        timestamp: DateTime<Utc>,
        row: &[Observed<'_>],
        outcome: bool,
        groups: &[u16],
    ) {
        self.add(timestamp, row, outcome);
        for &g in groups {
            self.cells
                .entry(g)
                .or_insert_with(|| Window::new(signals, 0))
                .add(timestamp, row, outcome);
        }
    }

    pub(crate) fn add(&mut self, timestamp: DateTime<Utc>, row: &[Observed<'_>], outcome: bool) {
        self.events += 1;
        self.outcomes += usize::from(outcome);
        self.first.get_or_insert(timestamp);
        self.last = Some(timestamp);
        for (w, obs) in self.signals.iter_mut().zip(row) {
            match obs {
                Observed::Num(x) => w.num.push(*x),
                Observed::Cat(c) => w.cat.add(c),
                Observed::Missing => w.missing += 1,
                Observed::TypeError => w.type_errors += 1,
            }
        }
    }

    /// Add rows `rows` of `batch`, column by column: the same as [`Window::add`] on each
    /// row in turn.
    pub(crate) fn add_columns(&mut self, batch: &ColumnBatch, rows: std::ops::Range<usize>) {
        if rows.is_empty() {
            return;
        }
        self.events += rows.len();
        self.first.get_or_insert(batch.timestamp(rows.start));
        self.last = Some(batch.timestamp(rows.end - 1));
        for (w, column) in self.signals.iter_mut().zip(&batch.columns) {
            match column {
                Column::Num(values) => {
                    let values = &values[rows.clone()];
                    let missing = values.iter().filter(|x| x.is_nan()).count();
                    if missing == 0 {
                        w.num.extend_from_slice(values);
                    } else {
                        w.num.extend(values.iter().filter(|x| !x.is_nan()));
                        w.missing += missing;
                    }
                }
                Column::Cat { ids, dict } => {
                    let (counts, missing) = count_ids(&ids[rows.clone()], dict);
                    w.missing += missing;
                    for (id, n) in counts.into_iter().enumerate().filter(|(_, n)| *n > 0) {
                        w.cat.add_n(dict.name(id as u32), n);
                    }
                }
            }
        }
    }
}

/// The open windows of one system and the watermark that closes them.
pub(crate) struct Windows {
    pub(crate) spec: Windowing,
    pub(crate) open: BTreeMap<i64, Window>,
    /// Every window with `k < closed_before` has closed.
    pub(crate) closed_before: i64,
    /// Predictions seen (count windows).
    pub(crate) seq: i64,
    /// Largest timestamp seen minus the allowed lateness (time windows).
    pub(crate) watermark: i64,
}

impl Windows {
    pub(crate) fn new(spec: Windowing) -> Self {
        Windows {
            spec,
            open: BTreeMap::new(),
            closed_before: i64::MIN,
            seq: 0,
            watermark: i64::MIN,
        }
    }

    /// Add a prediction (`outcome`: it carries its outcome, counted in the windows it
    /// falls in); returns the windows it closed (in order) and the windows it was placed
    /// in (none: it was late).
    pub(crate) fn add(
        &mut self,
        signals: &[Signal],
        timestamp: DateTime<Utc>,
        row: &[Observed<'_>],
        (outcome, groups): (bool, &[u16]),
    ) -> (Vec<(i64, Window)>, Option<std::ops::RangeInclusive<i64>>) {
        let Windowing {
            kind,
            size,
            slide,
            lateness,
        } = self.spec;
        // Count windows know their size; time windows start small and grow.
        let capacity = match kind {
            WindowKind::Count => size.min(1 << 20) as usize,
            WindowKind::Time => 0,
        };
        let pos = match kind {
            WindowKind::Count => self.seq,
            WindowKind::Time => timestamp.timestamp_millis(),
        };
        // Windows k with k*slide <= pos < k*slide + size.
        let mut first = (pos - size).div_euclid(slide) + 1;
        if kind == WindowKind::Count {
            first = first.max(0);
        }
        let last = pos.div_euclid(slide);
        let placed = first.max(self.closed_before)..=last;
        for k in placed.clone() {
            self.open
                .entry(k)
                .or_insert_with(|| Window::new(signals, capacity))
                .add_grouped(signals, timestamp, row, outcome, groups);
        }
        let placed = (!placed.is_empty()).then_some(placed);
        let mark = match kind {
            WindowKind::Count => {
                self.seq += 1;
                self.seq
            }
            WindowKind::Time => {
                self.watermark = self.watermark.max(pos.saturating_sub(lateness));
                self.watermark
            }
        };
        // Window k has closed once its end (k*slide + size) <= mark.
        if mark > i64::MIN {
            self.closed_before = self.closed_before.max((mark - size).div_euclid(slide) + 1);
        }
        if self
            .open
            .first_key_value()
            .is_none_or(|(k, _)| *k >= self.closed_before)
        {
            return (Vec::new(), placed);
        }
        let still_open = self.open.split_off(&self.closed_before);
        let closed = std::mem::replace(&mut self.open, still_open);
        (closed.into_iter().collect(), placed)
    }

    /// Add rows `rows` of `batch` to count windows, a run of rows at a time: the same
    /// windows, contents and closes as [`Windows::add`] row by row, each row's outcome
    /// counted in the windows the row falls in.
    pub(crate) fn add_columns(
        &mut self,
        signals: &[Signal],
        batch: &ColumnBatch,
        rows: std::ops::Range<usize>,
        mut closed: impl FnMut(i64, Window),
    ) {
        let Windowing { size, slide, .. } = self.spec;
        debug_assert_eq!(self.spec.kind, WindowKind::Count);
        let capacity = size.min(1 << 20) as usize;
        let mut at = rows.start;
        while at < rows.end {
            let pos = self.seq;
            // A run ends where a window starts or ends, so every row of it falls in the
            // same windows and only its last row can close one.
            let next_start = (pos.div_euclid(slide) + 1) * slide;
            let next_end = ((pos - size).div_euclid(slide) + 1) * slide + size;
            let n = (next_start.min(next_end) - pos).min((rows.end - at) as i64) as usize;
            let run = at..at + n;
            let first = ((pos - size).div_euclid(slide) + 1).max(0);
            let last = pos.div_euclid(slide);
            let end = pos + n as i64;
            let outcomes = if batch.outcomes.is_empty() {
                0
            } else {
                batch.outcomes[run.clone()]
                    .iter()
                    .filter(|&&o| o != MISSING)
                    .count()
            };
            for k in first.max(self.closed_before)..=last {
                let w = self
                    .open
                    .entry(k)
                    .or_insert_with(|| Window::new(signals, capacity));
                w.add_columns(batch, run.clone());
                w.outcomes += outcomes;
            }
            self.seq = end;
            self.closed_before = self.closed_before.max((end - size).div_euclid(slide) + 1);
            while let Some(entry) = self.open.first_entry() {
                if *entry.key() >= self.closed_before {
                    break;
                }
                let (k, w) = entry.remove_entry();
                closed(k, w);
            }
            at += n;
        }
    }

    pub(crate) fn bounds(&self, k: i64) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        match self.spec.kind {
            WindowKind::Count => (None, None),
            WindowKind::Time => {
                let at = |ms: i64| Utc.timestamp_millis_opt(ms).single();
                (
                    at(k * self.spec.slide),
                    at(k * self.spec.slide + self.spec.size),
                )
            }
        }
    }
}
