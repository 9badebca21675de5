//! Collecting reference predictions and freezing them into a [`ReferenceProfile`],
//! learned levels included.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use driftwatch_schema::Prediction;

use super::*;
use crate::input::batch::{count_ids, Column, ColumnBatch};
use crate::method::{check_value, Prepared, Value};
use crate::plan::{FeatureType, Method, Plan, Signal, WindowKind, Windowing};
use crate::stats;

/// Add `n` to a reference category's count (the name is copied only when new).
pub(crate) fn count_category(counts: &mut BTreeMap<String, u64>, name: &str, n: u64) {
    match counts.get_mut(name) {
        Some(k) => *k += n,
        None => {
            counts.insert(name.to_owned(), n);
        }
    }
}

/// Collects reference predictions and freezes them into a [`ReferenceProfile`].
pub struct ReferenceBuilder {
    pub(crate) system_id: String,
    pub(crate) signals: Vec<Signal>,
    pub(crate) bins: usize,
    pub(crate) windowing: Windowing,
    pub(crate) min_samples: usize,
    pub(crate) numeric: Vec<Vec<f64>>,
    pub(crate) categorical: Vec<BTreeMap<String, u64>>,
    /// Reference windows, kept only when a check learns its thresholds.
    pub(crate) chunks: Option<BTreeMap<i64, Window>>,
    pub(crate) events: usize,
    /// Predictions and outcomes, for a plan with `[performance]`.
    pub(crate) perf: Option<crate::perf::reference::PerfCollector>,
    /// Per group of people, a builder of the group's own reference (plans with
    /// `segment_drift`).
    pub(crate) groups: Option<(
        crate::perf::segments::Segments,
        BTreeMap<u16, ReferenceBuilder>,
    )>,
}

impl ReferenceBuilder {
    /// An empty builder for a plan.
    pub fn new(plan: &Plan) -> Self {
        let signals = plan.signals();
        let n = signals.len();
        let learns = signals
            .iter()
            .any(|s| s.checks.iter().any(|c| c.thresholds.learned));
        ReferenceBuilder {
            system_id: plan.system.id.clone(),
            bins: plan.reference.bins,
            windowing: plan.window.windowing(),
            min_samples: plan.window.min_samples(),
            numeric: vec![Vec::new(); n],
            categorical: vec![BTreeMap::new(); n],
            chunks: learns.then(BTreeMap::new),
            groups: plan
                .performance
                .as_ref()
                .filter(|p| p.segment_drift)
                .map(|p| {
                    (
                        crate::perf::segments::Segments::new(p, &signals),
                        BTreeMap::new(),
                    )
                }),
            signals,
            events: 0,
            perf: crate::perf::reference::PerfCollector::for_plan(plan),
        }
    }

    /// An empty builder of the same signals, for one group's reference: no performance,
    /// no learned levels (a group's share of a window varies, so its windows are not
    /// the monitored ones).
    fn for_group(&self) -> ReferenceBuilder {
        let n = self.signals.len();
        ReferenceBuilder {
            system_id: self.system_id.clone(),
            signals: self.signals.clone(),
            bins: self.bins,
            windowing: self.windowing,
            min_samples: self.min_samples,
            numeric: vec![Vec::new(); n],
            categorical: vec![BTreeMap::new(); n],
            chunks: None,
            events: 0,
            perf: None,
            groups: None,
        }
    }

    /// Add one reference prediction.
    pub fn add(&mut self, p: &Prediction) {
        let mut row = Vec::with_capacity(self.signals.len());
        decode(&self.signals, p, &mut row);
        let id = crate::input::batch::id_hash(p.prediction_id.as_bytes());
        self.add_row_tagged(p.timestamp, &row, (None, Some(id), Some(&p.segment)));
    }

    /// An outcome event of the reference: joined to its prediction, for performance.
    pub fn add_outcome(&mut self, o: &driftwatch_schema::Outcome) {
        if let Some(perf) = &mut self.perf {
            perf.outcome(
                crate::input::batch::id_hash(o.prediction_id.as_bytes()),
                &o.outcome,
            );
        }
    }

    /// Add one decoded reference prediction (see [`decode`]).
    pub fn add_row(&mut self, timestamp: DateTime<Utc>, row: &[Observed<'_>]) {
        self.add_row_with(timestamp, row, None, None);
    }

    /// Add one decoded reference prediction with the outcome it carries and its
    /// prediction id's hash (for performance; see [`ReferenceBuilder::add_outcome`]).
    pub fn add_row_with(
        &mut self,
        timestamp: DateTime<Utc>,
        row: &[Observed<'_>],
        outcome: Option<&str>,
        id: Option<u64>,
    ) {
        self.add_row_tagged(timestamp, row, (outcome, id, None));
    }

    /// [`ReferenceBuilder::add_row_with`], with the prediction's `segment` tags (events).
    pub(crate) fn add_row_tagged(
        &mut self,
        timestamp: DateTime<Utc>,
        row: &[Observed<'_>],
        (outcome, id, tags): (
            Option<&str>,
            Option<u64>,
            Option<&std::collections::BTreeMap<String, String>>,
        ),
    ) {
        if self.groups.is_some() {
            let template = self.for_group();
            if let Some((segments, builders)) = &mut self.groups {
                let cell = segments.cell_of(row, tags);
                for g in segments.group_ids(cell) {
                    builders
                        .entry(g)
                        .or_insert_with(|| template.for_group())
                        .add_row(timestamp, row);
                }
            }
        }
        if let Some(perf) = &mut self.perf {
            perf.add(self.events, timestamp.timestamp_millis(), row, outcome, id);
        }
        if let Some(chunks) = &mut self.chunks {
            // Reference windows tumble at the monitored size, whatever the slide.
            let pos = match self.windowing.kind {
                WindowKind::Count => self.events as i64,
                WindowKind::Time => timestamp.timestamp_millis(),
            };
            let k = pos.div_euclid(self.windowing.size);
            chunks
                .entry(k)
                .or_insert_with(|| Window::new(&self.signals, 0))
                .add(timestamp, row, false);
        }
        self.events += 1;
        for (i, obs) in row.iter().enumerate() {
            match obs {
                Observed::Num(x) => self.numeric[i].push(*x),
                Observed::Cat(c) => count_category(&mut self.categorical[i], c, 1),
                Observed::Missing | Observed::TypeError => {}
            }
        }
    }

    /// Add every row of `batch`: the same as [`ReferenceBuilder::add_row`] on each row,
    /// column by column when no threshold is learned (no reference windows to keep).
    pub fn add_columns(&mut self, batch: &ColumnBatch) {
        if self.chunks.is_some() || self.perf.is_some() {
            let mut row = Vec::with_capacity(self.signals.len());
            for i in 0..batch.len() {
                batch.row(i, &mut row);
                let id = batch
                    .ids
                    .get(i)
                    .copied()
                    .filter(|&h| h != crate::input::batch::NO_ID);
                self.add_row_with(batch.timestamp(i), &row, batch.outcome(i), id);
            }
            return;
        }
        self.events += batch.len();
        for (i, column) in batch.columns.iter().enumerate() {
            match column {
                Column::Num(values) => {
                    self.numeric[i].extend(values.iter().filter(|x| !x.is_nan()))
                }
                Column::Cat { ids, dict } => {
                    let (counts, _) = count_ids(ids, dict);
                    for (id, n) in counts.into_iter().enumerate().filter(|(_, n)| *n > 0) {
                        count_category(&mut self.categorical[i], dict.name(id as u32), n);
                    }
                }
            }
        }
    }

    /// Predictions added so far.
    pub fn len(&self) -> usize {
        self.events
    }

    /// True before the first prediction.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Freeze: sort, bin, learn thresholds, hash.
    pub fn build(mut self, source: String, fingerprint: String) -> ReferenceProfile {
        let bins = self.bins;
        let numeric = |mut sorted: Vec<f64>| {
            stats::sort_floats(&mut sorted);
            let edges = stats::quantile_edges(&sorted, bins);
            let proportions = stats::bin_proportions_sorted(&edges, &sorted);
            // 0 for an empty signal (never used: it is insufficient), not NaN, which
            // JSON cannot carry.
            let std = if sorted.is_empty() {
                0.0
            } else {
                stats::std_dev(&sorted)
            };
            SignalReference::Numeric {
                sorted,
                edges,
                proportions,
                std,
                ks: KsCache::default(),
            }
        };
        // Numeric signals are sorted and binned on as many threads as there are cores.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let mut work: Vec<(usize, Vec<f64>)> = (0..self.signals.len())
            .filter(|&i| self.signals[i].kind == FeatureType::Numeric)
            .map(|i| (i, std::mem::take(&mut self.numeric[i])))
            .collect();
        let values: usize = work.iter().map(|(_, v)| v.len()).sum();
        let mut built: Vec<(usize, SignalReference)> = if threads > 1 && values >= 100_000 {
            let per = work.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let handles: Vec<_> = std::iter::from_fn(|| {
                    (!work.is_empty()).then(|| work.split_off(work.len().saturating_sub(per)))
                })
                .map(|part| {
                    let numeric = &numeric;
                    scope.spawn(move || {
                        part.into_iter()
                            .map(|(i, v)| (i, numeric(v)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
                handles
                    .into_iter()
                    .flat_map(|h| {
                        h.join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    })
                    .collect()
            })
        } else {
            work.into_iter().map(|(i, v)| (i, numeric(v))).collect()
        };
        for (i, s) in self.signals.iter().enumerate() {
            if s.kind == FeatureType::Categorical {
                built.push((
                    i,
                    SignalReference::Categorical {
                        counts: std::mem::take(&mut self.categorical[i]),
                    },
                ));
            }
        }
        let mut signals = BTreeMap::new();
        for (i, r) in built {
            signals.insert(self.signals[i].name.clone(), r);
        }
        let learned = match self.chunks.take() {
            Some(mut chunks) => {
                if self.windowing.kind == WindowKind::Count {
                    // A short trailing chunk is noisier than a monitored window and
                    // would widen the learned band: only whole windows count.
                    let size = self.windowing.size as usize;
                    chunks.retain(|_, w| w.events == size);
                }
                learn(&self.signals, &signals, chunks, self.min_samples)
            }
            None => BTreeMap::new(),
        };
        let groups = match self.groups.take() {
            Some((segments, builders)) => builders
                .into_iter()
                .map(|(g, b)| {
                    let (key, value) = segments.group_name(g);
                    (
                        group_key(&key, &value),
                        b.build(source.clone(), fingerprint.clone()),
                    )
                })
                .collect(),
            None => BTreeMap::new(),
        };
        let mut profile = ReferenceProfile {
            segments: groups,
            system_id: self.system_id,
            version: String::new(),
            fingerprint,
            events: self.events,
            source,
            signals,
            learned,
            performance: self.perf.take().and_then(|p| p.build()),
        };
        profile.version = format!(
            "fnv1a64:{:016x}",
            content_hash(
                &profile.signals,
                &profile.learned,
                profile.performance.as_ref()
            ) ^ profile.segments.iter().fold(0, |h, (k, r)| fnv1a64(
                r.version.as_bytes(),
                fnv1a64(k.as_bytes(), h)
            ))
        );
        profile
    }
}

/// Evaluate every learned check on every reference window against the whole reference.
pub(crate) fn learn(
    signals: &[Signal],
    reference: &BTreeMap<String, SignalReference>,
    mut chunks: BTreeMap<i64, Window>,
    min_samples: usize,
) -> BTreeMap<String, LearnedLevels> {
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for chunk in chunks.values_mut() {
        for (s, acc) in signals.iter().zip(chunk.signals.iter_mut()) {
            let Some(r) = reference.get(&s.name) else {
                continue;
            };
            sort_window(s, r, acc);
            let mut prep = Prepared::default();
            for check in s.checks.iter().filter(|c| c.thresholds.learned) {
                if let Some(v) = check_value(check.method, r, acc, &mut prep, min_samples) {
                    values
                        .entry(learned_key(&s.name, check.method))
                        .or_default()
                        .push(learned_value(check.method, &v));
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for s in signals {
        for check in s.checks.iter().filter(|c| c.thresholds.learned) {
            let key = learned_key(&s.name, check.method);
            let v = values.remove(&key).unwrap_or_default();
            // Every learned value is one where larger means drift (see `learned_value`).
            out.insert(
                key,
                LearnedLevels::from_values(&v, check.thresholds.ks(), true),
            );
        }
    }
    out
}

/// What a check with learned levels compares: the test statistic for tests with a
/// p-value (KS D, chi-squared: larger is drift; a p-value's learned band would sit below
/// 0), else the check's value.
pub(crate) fn learned_value(method: Method, v: &Value) -> f64 {
    if method.has_p_value() {
        v.statistic
    } else {
        v.value
    }
}

/// The name a group's reference is kept under: `key=value`.
pub(crate) fn group_key(key: &str, value: &str) -> String {
    format!("{key}={value}")
}
