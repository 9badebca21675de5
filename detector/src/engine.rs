//! The drift engine: pure code, no I/O. Events in, window reports out.
//!
//! Per AI system a [`Monitor`] goes through two phases:
//!
//! 1. **Reference.** A [`ReferenceProfile`] is given (built from the plan's reference file
//!    by [`ReferenceBuilder`], or loaded from where a driver persisted it), or collected
//!    from the stream: the first N predictions, or those in a marked period of event time.
//!    It is frozen once: sorted samples, quantile bins, standard deviation and range per
//!    numeric signal; category counts per categorical one; learned thresholds; and a
//!    content hash (`version`) every result quotes.
//! 2. **Windows.** Window `k` covers positions `[k*slide, k*slide+size)`, a position being
//!    the prediction's sequence number (count windows) or timestamp in ms (time windows).
//!    A window closes when the watermark passes its end: the count of predictions, or the
//!    latest timestamp minus the allowed lateness. Then every check of the plan runs
//!    against the reference, p-values are adjusted for multiple testing, and a
//!    [`WindowReport`] comes out. A prediction whose windows have all closed is late:
//!    counted, not evaluated.
//!
//! Identical input gives identical reports: nothing here reads a clock or a random source.
//!
//! Edge cases, defined: a signal with fewer than `window.min_samples` usable values (or
//! none in the reference) is `insufficient`, never an alert; so is a check whose learned
//! thresholds could not be learned (fewer than two reference windows). An empty time
//! window produces no report. A constant reference column normalises Wasserstein by
//! 1e-3 instead of 0.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use driftwatch_schema::{Event, FeatureValue, Prediction};
use serde::{Deserialize, Serialize};

use crate::batch::{count_ids, quick_key, Column, ColumnBatch};
use crate::plan::{
    Check, Correction, FeatureType, Method, Plan, Severity, Signal, Source, WindowKind, Windowing,
};
use crate::stats;

/// One value of a signal, decoded for the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed<'a> {
    /// A number (numeric signals).
    Num(f64),
    /// A category (categorical signals).
    Cat(std::borrow::Cow<'a, str>),
    /// Null or absent.
    Missing,
    /// A value of the wrong type for the signal.
    TypeError,
}

/// Add `n` to a reference category's count (the name is copied only when new).
fn count_category(counts: &mut BTreeMap<String, u64>, name: &str, n: u64) {
    match counts.get_mut(name) {
        Some(k) => *k += n,
        None => {
            counts.insert(name.to_owned(), n);
        }
    }
}

/// Hasher for category counts: FxHash's multiply-rotate, several times faster than
/// SipHash on short strings. Category values come from the provider's own model server
/// and the maps live for one window, so flooding resistance is not bought here.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const FX_K: u64 = 0x517c_c1b7_2722_0a95;

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(FX_K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(FX_K);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(FX_K);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap = HashMap<String, u64, std::hash::BuildHasherDefault<FxHasher>>;

/// Category counts of one signal in one window: a short list scanned linearly (most
/// categorical signals have a handful of values), turned into a hash map past
/// [`CatCounts::LIST_MAX`] categories.
#[derive(Clone, Default)]
struct CatCounts {
    /// (first 8 bytes and length packed for a quick compare, category, count).
    list: Vec<(u128, String, u64)>,
    map: Option<FxMap>,
}

impl CatCounts {
    const LIST_MAX: usize = 32;

    fn find(&self, c: &str) -> Option<usize> {
        let q = quick_key(c);
        let short = c.len() <= 8;
        self.list
            .iter()
            .position(|(k, s, _)| *k == q && (short || s == c))
    }

    fn add(&mut self, c: &str) {
        self.add_n(c, 1);
    }

    /// Count `n` more of category `c`.
    fn add_n(&mut self, c: &str, n: u64) {
        if let Some(map) = &mut self.map {
            if let Some(k) = map.get_mut(c) {
                *k += n;
            } else {
                map.insert(c.to_owned(), n);
            }
            return;
        }
        if let Some(i) = self.find(c) {
            self.list[i].2 += n;
        } else if self.list.len() < Self::LIST_MAX {
            self.list.push((quick_key(c), c.to_owned(), n));
        } else {
            let mut map: FxMap = self.list.drain(..).map(|(_, s, k)| (s, k)).collect();
            map.insert(c.to_owned(), n);
            self.map = Some(map);
        }
    }

    fn get(&self, c: &str) -> Option<u64> {
        match &self.map {
            Some(map) => map.get(c).copied(),
            None => self.find(c).map(|i| self.list[i].2),
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (&String, &u64)> + '_> {
        match &self.map {
            Some(map) => Box::new(map.iter()),
            None => Box::new(self.list.iter().map(|(_, k, n)| (k, n))),
        }
    }

    fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum()
    }
}

fn from_feature(v: &FeatureValue) -> Observed<'_> {
    use std::borrow::Cow;
    match v {
        FeatureValue::Null => Observed::Missing,
        FeatureValue::Number(x) => Observed::Num(*x),
        FeatureValue::Text(s) => Observed::Cat(Cow::Borrowed(s.as_str())),
        FeatureValue::Bool(b) => Observed::Cat(Cow::Borrowed(if *b { "true" } else { "false" })),
    }
}

/// Decode a prediction into one value per signal, in plan order: the row
/// [`Monitor::observe_row`] takes. Feature signals come sorted by name (the plan keeps
/// them in a sorted map) as do an event's features, so one merge walk over both replaces
/// a map lookup per signal.
pub fn decode<'a>(signals: &[Signal], p: &'a Prediction, row: &mut Vec<Observed<'a>>) {
    row.clear();
    for_each_observed(signals, p, |_, o| row.push(o));
}

fn for_each_observed<'a>(
    signals: &[Signal],
    p: &'a Prediction,
    mut f: impl FnMut(usize, Observed<'a>),
) {
    let mut features = p.features.iter().peekable();
    for (i, s) in signals.iter().enumerate() {
        let raw = match &s.source {
            Source::Feature(name) => {
                while features
                    .peek()
                    .is_some_and(|(k, _)| k.as_str() < name.as_str())
                {
                    features.next();
                }
                match features.peek() {
                    Some((k, v)) if *k == name => Some(from_feature(v)),
                    _ => None,
                }
            }
            _ => None,
        };
        f(i, classify(s, p, raw));
    }
}

fn classify<'a>(signal: &Signal, p: &'a Prediction, feature: Option<Observed<'a>>) -> Observed<'a> {
    use std::borrow::Cow;
    let raw: Option<Observed<'a>> = match &signal.source {
        Source::Feature(_) => feature,
        Source::Score => p.prediction.score.map(Observed::Num),
        Source::Value => p.prediction.value.map(Observed::Num),
        Source::Label => p
            .prediction
            .label
            .as_deref()
            .map(|l| Observed::Cat(Cow::Borrowed(l))),
    };
    match (signal.kind, raw) {
        (_, None) | (_, Some(Observed::Missing)) => Observed::Missing,
        (FeatureType::Numeric, Some(Observed::Num(x))) => Observed::Num(x),
        (FeatureType::Categorical, Some(Observed::Cat(c))) => Observed::Cat(c),
        // Integer codes are common categorical values; anything fractional is a type error.
        (FeatureType::Categorical, Some(Observed::Num(x)))
            if x.fract() == 0.0 && x.abs() < 1e15 =>
        {
            Observed::Cat(Cow::Owned(format!("{}", x as i64)))
        }
        _ => Observed::TypeError,
    }
}

/// The frozen reference of one signal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SignalReference {
    /// Numeric: every value sorted (exact KS and Wasserstein), interior quantile bin
    /// edges, bin proportions, population standard deviation.
    Numeric {
        /// Sorted reference values.
        sorted: Vec<f64>,
        /// Interior quantile edges.
        edges: Vec<f64>,
        /// Reference proportion per bin.
        proportions: Vec<f64>,
        /// Population standard deviation (ddof = 0).
        std: f64,
        /// For KS without sorting the window: derived from `sorted` on first use,
        /// neither stored nor compared.
        #[serde(skip)]
        ks: KsCache,
    },
    /// Categorical: count per category.
    Categorical {
        /// Count per category.
        counts: BTreeMap<String, u64>,
    },
}

/// A numeric reference's [`stats::KsIndex`], built on first use. Derived data: a clone
/// starts empty and any two compare equal.
#[derive(Default)]
pub struct KsCache(std::sync::OnceLock<Option<stats::KsIndex>>);

impl Clone for KsCache {
    fn clone(&self) -> Self {
        KsCache::default()
    }
}

impl PartialEq for KsCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for KsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KsCache")
    }
}

impl SignalReference {
    /// The KS index of a numeric reference (`None` for an empty one).
    fn ks_index(&self) -> Option<&stats::KsIndex> {
        match self {
            SignalReference::Numeric { sorted, ks, .. } => {
                ks.0.get_or_init(|| stats::KsIndex::new(sorted)).as_ref()
            }
            SignalReference::Categorical { .. } => None,
        }
    }

    fn samples(&self) -> usize {
        match self {
            SignalReference::Numeric { sorted, .. } => sorted.len(),
            SignalReference::Categorical { counts } => counts.values().sum::<u64>() as usize,
        }
    }

    fn empty(kind: FeatureType) -> Self {
        match kind {
            FeatureType::Numeric => SignalReference::Numeric {
                sorted: vec![],
                edges: vec![],
                proportions: vec![1.0],
                std: 0.0,
                ks: KsCache::default(),
            },
            FeatureType::Categorical => SignalReference::Categorical {
                counts: BTreeMap::new(),
            },
        }
    }
}

/// Thresholds learned from the reference for one check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LearnedLevels {
    /// Reference windows the levels were learned from.
    pub windows: usize,
    /// Mean of the check's value over those windows.
    pub mean: f64,
    /// Their standard deviation (ddof = 0).
    pub std: f64,
    /// Warning level (`None` with fewer than two windows: nothing could be learned).
    pub warning: Option<f64>,
    /// Critical level.
    pub critical: Option<f64>,
}

/// The frozen reference of one system: computed once, versioned, quoted by every result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReferenceProfile {
    /// The system.
    pub system_id: String,
    /// Content hash of the profile (`fnv1a64:...`).
    pub version: String,
    /// What it was computed from (plan and source); a driver rebuilds when this changes.
    #[serde(default)]
    pub fingerprint: String,
    /// Predictions it was built from.
    pub events: usize,
    /// Where it came from (a file path, `first N events`, a period).
    pub source: String,
    /// Per signal, by name.
    pub signals: BTreeMap<String, SignalReference>,
    /// Learned thresholds by `signal/method`.
    #[serde(default)]
    pub learned: BTreeMap<String, LearnedLevels>,
}

fn learned_key(signal: &str, method: Method) -> String {
    format!("{signal}/{method}")
}

/// FNV-1a over a reference's content: each signal's name as bytes, its numbers as
/// 64-bit words (their IEEE bits, so every bit counts; one step per number, eight times
/// fewer than per byte), then the learned levels as JSON bytes.
fn content_hash(
    signals: &BTreeMap<String, SignalReference>,
    learned: &BTreeMap<String, LearnedLevels>,
) -> u64 {
    let numbers = |h: u64, xs: &[f64]| {
        std::iter::once(xs.len() as u64)
            .chain(xs.iter().map(|x| x.to_bits()))
            .fold(h, |h, word| (h ^ word).wrapping_mul(0x0100_0000_01b3))
    };
    let mut h = fnv1a64(&[], 0);
    for (name, r) in signals {
        h = fnv1a64(name.as_bytes(), h);
        h = fnv1a64(&[0], h);
        match r {
            SignalReference::Numeric {
                sorted,
                edges,
                proportions,
                std,
                ..
            } => {
                h = fnv1a64(b"numeric", h);
                for xs in [sorted, edges, proportions] {
                    h = numbers(h, xs);
                }
                h = numbers(h, &[*std]);
            }
            SignalReference::Categorical { counts } => {
                h = fnv1a64(b"categorical", h);
                for (category, n) in counts {
                    h = fnv1a64(category.as_bytes(), h);
                    h = fnv1a64(&[0], h);
                    h = fnv1a64(&n.to_le_bytes(), h);
                }
            }
        }
    }
    fnv1a64(&serde_json::to_vec(learned).unwrap_or_default(), h)
}

/// FNV-1a, 64 bit: a stable content hash for versions and fingerprints.
pub fn fnv1a64(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = if seed == 0 {
        0xcbf2_9ce4_8422_2325
    } else {
        seed
    };
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What of a plan a reference depends on (signals, bins, windowing, thresholds): a
/// persisted reference with another plan fingerprint is stale.
pub fn plan_fingerprint(plan: &Plan) -> String {
    let mut parts = String::new();
    for s in plan.signals() {
        parts.push_str(&format!("{}:{:?}:{:?};", s.name, s.kind, s.checks));
    }
    parts.push_str(&format!(
        "bins={};window={:?};min={}",
        plan.reference.bins,
        plan.window.windowing(),
        plan.window.min_samples()
    ));
    format!("{:016x}", fnv1a64(parts.as_bytes(), 0))
}

/// Collects reference predictions and freezes them into a [`ReferenceProfile`].
pub struct ReferenceBuilder {
    system_id: String,
    signals: Vec<Signal>,
    bins: usize,
    windowing: Windowing,
    min_samples: usize,
    numeric: Vec<Vec<f64>>,
    categorical: Vec<BTreeMap<String, u64>>,
    /// Reference windows, kept only when a check learns its thresholds.
    chunks: Option<BTreeMap<i64, Window>>,
    events: usize,
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
            signals,
            events: 0,
        }
    }

    /// Add one reference prediction.
    pub fn add(&mut self, p: &Prediction) {
        let mut row = Vec::with_capacity(self.signals.len());
        decode(&self.signals, p, &mut row);
        self.add_row(p.timestamp, &row);
    }

    /// Add one decoded reference prediction (see [`decode`]).
    pub fn add_row(&mut self, timestamp: DateTime<Utc>, row: &[Observed<'_>]) {
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
        if self.chunks.is_some() {
            let mut row = Vec::with_capacity(self.signals.len());
            for i in 0..batch.len() {
                batch.row(i, &mut row);
                self.add_row(batch.timestamp(i), &row);
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
        let mut profile = ReferenceProfile {
            system_id: self.system_id,
            version: String::new(),
            fingerprint,
            events: self.events,
            source,
            signals,
            learned,
        };
        profile.version = format!(
            "fnv1a64:{:016x}",
            content_hash(&profile.signals, &profile.learned)
        );
        profile
    }
}

/// Evaluate every learned check on every reference window against the whole reference.
fn learn(
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
            let n = v.len();
            let mean = if n > 0 {
                v.iter().sum::<f64>() / n as f64
            } else {
                f64::NAN
            };
            let std = stats::std_dev(&v);
            let (wk, ck) = check.thresholds.ks();
            // Every learned value is one where larger means drift (see `learned_value`).
            let level = |k: f64| (n >= 2).then(|| mean + k * std);
            out.insert(
                key,
                LearnedLevels {
                    windows: n,
                    mean,
                    std,
                    warning: level(wk),
                    critical: level(ck),
                },
            );
        }
    }
    out
}

/// What a check with learned levels compares: the test statistic for tests with a
/// p-value (KS D, chi-squared: larger is drift; a p-value's learned band would sit below
/// 0), else the check's value.
fn learned_value(method: Method, v: &Value) -> f64 {
    if method.has_p_value() {
        v.statistic
    } else {
        v.value
    }
}

/// Whether a check could be run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The test ran.
    Evaluated,
    /// Too few values in the window or the reference, or learned thresholds that could
    /// not be learned: no verdict, never an alert.
    Insufficient,
}

/// Where a check's levels come from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdOrigin {
    /// Constants: the plan's or the documented defaults.
    Plan,
    /// Learned from the reference windows.
    Learned,
}

/// One check of one signal in one window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckResult {
    /// Signal name (feature name or `prediction.score` ...).
    pub signal: String,
    /// The test.
    pub method: Method,
    /// Evaluated or insufficient.
    pub status: CheckStatus,
    /// The test statistic (KS D, chi-squared, PSI, raw Wasserstein, counts for shares).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    /// The raw p-value, for tests that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The Benjamini-Hochberg adjusted p-value across the window's p-value checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value_adjusted: Option<f64>,
    /// The value compared with the thresholds: the p-value, raw or adjusted per the
    /// plan's `multiple_testing`, or the distance or share; with learned levels on a
    /// test with a p-value, the test statistic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Warning level.
    pub warning: Option<f64>,
    /// Critical level.
    pub critical: Option<f64>,
    /// Constant or learned levels.
    pub thresholds: ThresholdOrigin,
    /// Ok, warning or critical.
    pub severity: Severity,
    /// Usable values in the window.
    pub samples: usize,
    /// Missing values (null or absent) in the window.
    pub missing: usize,
    /// Values of the wrong type in the window.
    pub type_errors: usize,
}

/// Where a window sits in the stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WindowInfo {
    /// Window number `k`: it covers positions `[k*slide, k*slide+size)`. Count windows
    /// number from 0 after the reference; time windows from the Unix epoch.
    pub index: i64,
    /// Start of a time window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// End (exclusive) of a time window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// Predictions in the window.
    pub events: usize,
    /// Outcomes seen while the window was open.
    pub outcomes: usize,
    /// Timestamp of the first prediction (arrival order).
    pub first_event_at: DateTime<Utc>,
    /// Timestamp of the last prediction (arrival order).
    pub last_event_at: DateTime<Utc>,
    /// False for a window evaluated before its end, at the end of input.
    pub complete: bool,
}

/// Every check of one system in one window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WindowReport {
    /// The system.
    pub system_id: String,
    /// The plan version, if the plan names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_version: Option<String>,
    /// The reference version compared against.
    pub reference_version: String,
    /// The window.
    pub window: WindowInfo,
    /// Highest severity among the checks.
    pub severity: Severity,
    /// One result per signal and method, in plan order.
    pub checks: Vec<CheckResult>,
}

/// Values of one signal in one window.
#[derive(Clone)]
struct SignalAcc {
    num: Vec<f64>,
    cat: CatCounts,
    missing: usize,
    type_errors: usize,
}

impl SignalAcc {
    fn samples(&self) -> usize {
        self.num.len() + self.cat.total() as usize
    }

    fn events(&self) -> usize {
        self.samples() + self.missing + self.type_errors
    }
}

/// One open window.
#[derive(Clone)]
struct Window {
    signals: Vec<SignalAcc>,
    events: usize,
    outcomes: usize,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

impl Window {
    /// An empty window; `capacity` values are reserved per numeric signal, so a count
    /// window never reallocates while it fills.
    fn new(signals: &[Signal], capacity: usize) -> Self {
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
        }
    }

    fn add(&mut self, timestamp: DateTime<Utc>, row: &[Observed<'_>], outcome: bool) {
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
    fn add_columns(&mut self, batch: &ColumnBatch, rows: std::ops::Range<usize>) {
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

/// Work shared by the checks of one signal in one window, computed once on demand.
#[derive(Default)]
struct Prepared {
    binned: Option<(Vec<f64>, Vec<f64>)>,
}

/// Aligned (reference, window) counts over the union of categories, reference order first,
/// then unseen categories in sorted order (deterministic).
fn aligned_counts(reference: &BTreeMap<String, u64>, window: &CatCounts) -> (Vec<u64>, Vec<u64>) {
    let mut r: Vec<u64> = Vec::with_capacity(reference.len() + 4);
    let mut w: Vec<u64> = Vec::with_capacity(reference.len() + 4);
    for (cat, &n) in reference {
        r.push(n);
        w.push(window.get(cat).unwrap_or(0));
    }
    let mut unseen: Vec<(&String, &u64)> = window
        .iter()
        .filter(|(c, _)| !reference.contains_key(*c))
        .collect();
    unseen.sort();
    for (_, &n) in unseen {
        r.push(0);
        w.push(n);
    }
    (r, w)
}

fn proportions(counts: &[f64]) -> Vec<f64> {
    let total = counts.iter().sum::<f64>().max(1.0);
    counts.iter().map(|&c| c / total).collect()
}

/// Sort a closed window's numeric values in place (it is never appended to again) if a
/// check of the signal reads them sorted. KS does not, through the reference's index:
/// a KS-only signal skips the sort.
fn sort_window(signal: &Signal, reference: &SignalReference, acc: &mut SignalAcc) {
    let reads_sorted = |method: Method| match method {
        Method::Ks => reference.ks_index().is_none(),
        Method::Wasserstein | Method::OutOfRange | Method::Psi | Method::Js | Method::Hellinger => {
            true
        }
        _ => false,
    };
    if signal.kind == FeatureType::Numeric && signal.checks.iter().any(|c| reads_sorted(c.method)) {
        stats::sort_floats(&mut acc.num);
    }
}

/// The outcome of one check before thresholds.
struct Value {
    statistic: f64,
    p_value: Option<f64>,
    value: f64,
}

/// Run one method on one signal's window. `None`: not enough data for a verdict.
fn check_value(
    method: Method,
    reference: &SignalReference,
    acc: &SignalAcc,
    prep: &mut Prepared,
    min_samples: usize,
) -> Option<Value> {
    let share = |count: usize, of: usize| Value {
        statistic: count as f64,
        p_value: None,
        value: count as f64 / of as f64,
    };
    // Data-quality shares need enough predictions, not enough usable values.
    match method {
        Method::Missing => {
            return (acc.events() >= min_samples).then(|| share(acc.missing, acc.events()))
        }
        Method::TypeErrors => {
            return (acc.events() >= min_samples).then(|| share(acc.type_errors, acc.events()))
        }
        _ => {}
    }
    if acc.samples() < min_samples || reference.samples() == 0 {
        return None;
    }
    let v = match reference {
        SignalReference::Numeric {
            sorted: r_sorted,
            edges,
            proportions: r_props,
            std,
            ..
        } => match method {
            Method::Ks => {
                // Through the reference's index the window needs no sorting (see
                // `sort_window`).
                let r = match reference.ks_index() {
                    Some(index) => stats::ks_2samp(r_sorted, index, &acc.num),
                    None => stats::ks_2samp_sorted(r_sorted, &acc.num),
                };
                Value {
                    statistic: r.statistic,
                    p_value: Some(r.p_value),
                    value: r.p_value,
                }
            }
            Method::Wasserstein => {
                let raw = stats::wasserstein_sorted(r_sorted, &acc.num);
                Value {
                    statistic: raw,
                    p_value: None,
                    value: raw / std.max(stats::WASSERSTEIN_MIN_STD),
                }
            }
            Method::OutOfRange => {
                let (lo, hi) = (r_sorted[0], r_sorted[r_sorted.len() - 1]);
                let sorted = &acc.num;
                let below = sorted.partition_point(|&x| x < lo);
                let above = sorted.len() - sorted.partition_point(|&x| x <= hi);
                share(below + above, sorted.len())
            }
            Method::Psi | Method::Js | Method::Hellinger => {
                let (r, w) = prep.binned.get_or_insert_with(|| {
                    (
                        r_props.clone(),
                        stats::bin_proportions_sorted(edges, &acc.num),
                    )
                });
                distance(method, r, w)
            }
            _ => return None,
        },
        SignalReference::Categorical { counts } => {
            // Categorical: aligned counts (as f64) over the union of categories.
            let (r, w) = prep.binned.get_or_insert_with(|| {
                let (rc, wc) = aligned_counts(counts, &acc.cat);
                (
                    rc.iter().map(|&x| x as f64).collect(),
                    wc.iter().map(|&x| x as f64).collect(),
                )
            });
            let (r, w) = (&*r, &*w);
            match method {
                Method::Chi2 => {
                    let rc: Vec<u64> = r.iter().map(|&x| x as u64).collect();
                    let wc: Vec<u64> = w.iter().map(|&x| x as u64).collect();
                    let c = stats::chi2_contingency(&rc, &wc);
                    Value {
                        statistic: c.statistic,
                        p_value: Some(c.p_value),
                        value: c.p_value,
                    }
                }
                Method::Unseen => {
                    let unseen: f64 = r
                        .iter()
                        .zip(w)
                        .filter(|(r, _)| **r == 0.0)
                        .map(|(_, w)| w)
                        .sum();
                    share(unseen as usize, acc.samples())
                }
                Method::Psi | Method::Js | Method::Hellinger | Method::Linf => {
                    distance(method, &proportions(r), &proportions(w))
                }
                _ => return None,
            }
        }
    };
    v.value.is_finite().then_some(v)
}

fn distance(method: Method, r: &[f64], w: &[f64]) -> Value {
    let d = match method {
        Method::Psi => stats::psi(r, w),
        Method::Js => stats::jensen_shannon(r, w),
        Method::Hellinger => stats::hellinger(r, w),
        _ => stats::l_infinity(r, w),
    };
    Value {
        statistic: d,
        p_value: None,
        value: d,
    }
}

fn severity(
    lower_is_worse: bool,
    warning: Option<f64>,
    critical: Option<f64>,
    value: f64,
) -> Severity {
    let past = |level: Option<f64>| {
        level.is_some_and(|l| if lower_is_worse { value < l } else { value > l })
    };
    if past(critical) {
        Severity::Critical
    } else if past(warning) {
        Severity::Warning
    } else {
        Severity::Ok
    }
}

/// Evaluate every check of one signal in a closed window (sorting its values first).
fn evaluate_signal(
    signal: &Signal,
    reference: &ReferenceProfile,
    acc: &mut SignalAcc,
    min_samples: usize,
) -> Vec<CheckResult> {
    let empty;
    let r = match reference.signals.get(&signal.name) {
        Some(r) => r,
        None => {
            // A reference frozen under an older plan lacks this signal.
            empty = SignalReference::empty(signal.kind);
            &empty
        }
    };
    sort_window(signal, r, acc);
    let acc = &*acc;
    let mut prep = Prepared::default();
    signal
        .checks
        .iter()
        .map(|check| evaluate_check(signal, check, r, acc, &mut prep, min_samples, reference))
        .collect()
}

/// Benjamini-Hochberg across every evaluated p-value of a window's checks; always
/// reported, and applied to plan thresholds when the plan asks for it.
fn adjust(out: &mut [CheckResult], correction: Correction) {
    let idx: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].status == CheckStatus::Evaluated && out[i].p_value.is_some())
        .collect();
    let raw: Vec<f64> = idx
        .iter()
        .map(|&i| out[i].p_value.unwrap_or(f64::NAN))
        .collect();
    for (&i, adj) in idx.iter().zip(stats::benjamini_hochberg(&raw)) {
        let c = &mut out[i];
        c.p_value_adjusted = Some(adj);
        if correction == Correction::BenjaminiHochberg && c.thresholds == ThresholdOrigin::Plan {
            c.value = Some(adj);
            c.severity = severity(c.method.lower_is_worse(), c.warning, c.critical, adj);
        }
    }
}

/// From this many values in the windows evaluated together they are spread over threads
/// (unit tests take the threaded path on small windows).
const MIN_PARALLEL_SAMPLES: usize = if cfg!(test) { 1 } else { 200_000 };

/// Evaluate every check of closed windows: signal by signal, so each signal's reference
/// is read into the cache once for all the windows, with the signals spread over up to
/// `threads` threads. The checks of each window, in signal order, adjusted.
fn evaluate(
    signals: &[Signal],
    reference: &ReferenceProfile,
    windows: &mut [Window],
    min_samples: usize,
    correction: Correction,
    threads: usize,
) -> Vec<Vec<CheckResult>> {
    let samples: usize = windows.iter().map(|w| w.events).sum::<usize>() * signals.len();
    // Per signal, its values in every window.
    let mut by_signal: Vec<(usize, Vec<&mut SignalAcc>)> =
        (0..signals.len()).map(|s| (s, Vec::new())).collect();
    for w in windows.iter_mut() {
        for (s, acc) in w.signals.iter_mut().enumerate() {
            by_signal[s].1.push(acc);
        }
    }
    let run = |part: Vec<(usize, Vec<&mut SignalAcc>)>| -> Vec<(usize, Vec<Vec<CheckResult>>)> {
        part.into_iter()
            .map(|(s, accs)| {
                let results = accs
                    .into_iter()
                    .map(|acc| evaluate_signal(&signals[s], reference, acc, min_samples))
                    .collect();
                (s, results)
            })
            .collect()
    };
    // Numeric signals cost far more than categorical ones: deal them out in turn so each
    // thread gets its share of both. Small work is not worth a thread.
    let threads = if samples >= MIN_PARALLEL_SAMPLES {
        threads.max(1)
    } else {
        1
    };
    let mut parts: Vec<Vec<(usize, Vec<&mut SignalAcc>)>> =
        (0..threads).map(|_| Vec::new()).collect();
    by_signal.sort_by_key(|(s, _)| signals[*s].kind != FeatureType::Numeric);
    for (n, entry) in by_signal.into_iter().enumerate() {
        parts[n % threads].push(entry);
    }
    let mut done: Vec<(usize, Vec<Vec<CheckResult>>)> = if threads == 1 {
        parts.into_iter().flat_map(run).collect()
    } else {
        std::thread::scope(|scope| {
            let mut parts = parts.into_iter();
            let here = parts.next().unwrap_or_default();
            let spawned: Vec<_> = parts
                .map(|part| {
                    let run = &run;
                    scope.spawn(move || run(part))
                })
                .collect();
            let mut done = run(here);
            for h in spawned {
                done.extend(
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                );
            }
            done
        })
    };
    done.sort_by_key(|(s, _)| *s);
    let mut out: Vec<Vec<CheckResult>> = (0..windows.len()).map(|_| Vec::new()).collect();
    for (_, results) in done {
        for (w, checks) in results.into_iter().enumerate() {
            out[w].extend(checks);
        }
    }
    for checks in &mut out {
        adjust(checks, correction);
    }
    out
}

fn evaluate_check(
    signal: &Signal,
    check: &Check,
    r: &SignalReference,
    acc: &SignalAcc,
    prep: &mut Prepared,
    min_samples: usize,
    reference: &ReferenceProfile,
) -> CheckResult {
    let (warning, critical, origin) = if check.thresholds.learned {
        let l = reference
            .learned
            .get(&learned_key(&signal.name, check.method));
        (
            l.and_then(|l| l.warning),
            l.and_then(|l| l.critical),
            ThresholdOrigin::Learned,
        )
    } else {
        (
            check.thresholds.warning,
            check.thresholds.critical,
            ThresholdOrigin::Plan,
        )
    };
    let mut result = CheckResult {
        signal: signal.name.clone(),
        method: check.method,
        status: CheckStatus::Insufficient,
        statistic: None,
        p_value: None,
        p_value_adjusted: None,
        value: None,
        warning,
        critical,
        thresholds: origin,
        severity: Severity::Ok,
        samples: acc.samples(),
        missing: acc.missing,
        type_errors: acc.type_errors,
    };
    let learnable = !check.thresholds.learned || warning.is_some() || critical.is_some();
    if let Some(v) = check_value(check.method, r, acc, prep, min_samples) {
        let (value, lower_is_worse) = if check.thresholds.learned {
            (learned_value(check.method, &v), false)
        } else {
            (v.value, check.method.lower_is_worse())
        };
        result.statistic = Some(v.statistic);
        result.p_value = v.p_value;
        result.value = Some(value);
        if learnable {
            result.status = CheckStatus::Evaluated;
            result.severity = severity(lower_is_worse, warning, critical, value);
        }
    }
    result
}

/// The open windows of one system and the watermark that closes them.
struct Windows {
    spec: Windowing,
    open: BTreeMap<i64, Window>,
    /// Every window with `k < closed_before` has closed.
    closed_before: i64,
    /// Predictions seen (count windows).
    seq: i64,
    /// Largest timestamp seen minus the allowed lateness (time windows).
    watermark: i64,
}

impl Windows {
    fn new(spec: Windowing) -> Self {
        Windows {
            spec,
            open: BTreeMap::new(),
            closed_before: i64::MIN,
            seq: 0,
            watermark: i64::MIN,
        }
    }

    /// Add a prediction (`outcome`: it carries its outcome, counted in the windows it
    /// falls in); returns the windows it closed (in order) and whether it was late.
    fn add(
        &mut self,
        signals: &[Signal],
        timestamp: DateTime<Utc>,
        row: &[Observed<'_>],
        outcome: bool,
    ) -> (Vec<(i64, Window)>, bool) {
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
        let mut placed = false;
        for k in first.max(self.closed_before)..=last {
            self.open
                .entry(k)
                .or_insert_with(|| Window::new(signals, capacity))
                .add(timestamp, row, outcome);
            placed = true;
        }
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
            return (Vec::new(), !placed);
        }
        let still_open = self.open.split_off(&self.closed_before);
        let closed = std::mem::replace(&mut self.open, still_open);
        (closed.into_iter().collect(), !placed)
    }

    /// Add rows `rows` of `batch` to count windows, a run of rows at a time: the same
    /// windows, contents and closes as [`Windows::add`] row by row, each row's outcome
    /// counted in the windows the row falls in.
    fn add_columns(
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
                batch.outcomes[run.clone()].iter().filter(|o| **o).count()
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

    fn bounds(&self, k: i64) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
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

/// How the reference is being collected from the stream.
#[derive(Debug, Clone, Copy)]
enum Collect {
    FirstN(usize),
    Period(DateTime<Utc>, DateTime<Utc>),
}

enum Phase {
    Collecting(Box<ReferenceBuilder>, Collect),
    Monitoring {
        reference: Arc<ReferenceProfile>,
        windows: Windows,
    },
}

/// What one observed event produced.
#[derive(Debug, Default)]
pub struct Step {
    /// Windows that closed, in order.
    pub reports: Vec<WindowReport>,
    /// The reference was frozen by this event (collected from the stream); persist it.
    pub reference_frozen: Option<Arc<ReferenceProfile>>,
    /// The prediction arrived after all its windows had closed; it was not evaluated.
    pub late: bool,
}

impl Step {
    /// A step that only reports these windows.
    pub fn of(reports: Vec<WindowReport>) -> Self {
        Step {
            reports,
            ..Step::default()
        }
    }
}

/// The engine state of one AI system.
pub struct Monitor {
    plan: Arc<Plan>,
    signals: Vec<Signal>,
    phase: Phase,
}

impl Monitor {
    /// A monitor for `plan`. With `reference`, monitoring starts at once; without, the
    /// plan's `first_events` or `from`/`to` period collects it from the stream.
    pub fn new(plan: Arc<Plan>, reference: Option<ReferenceProfile>) -> Self {
        let signals = plan.signals();
        let phase = match reference {
            Some(r) => Phase::Monitoring {
                reference: Arc::new(r),
                windows: Windows::new(plan.window.windowing()),
            },
            None => {
                let how = match (plan.reference.from, plan.reference.to) {
                    (Some(f), Some(t)) => Collect::Period(f, t),
                    _ => Collect::FirstN(plan.reference.first_events.unwrap_or(1)),
                };
                Phase::Collecting(Box::new(ReferenceBuilder::new(&plan)), how)
            }
        };
        Monitor {
            plan,
            signals,
            phase,
        }
    }

    /// The plan this monitor runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The frozen reference, once there is one.
    pub fn reference(&self) -> Option<&ReferenceProfile> {
        match &self.phase {
            Phase::Monitoring { reference, .. } => Some(reference),
            Phase::Collecting(..) => None,
        }
    }

    /// True while events are held that no report covers yet (an open window or a
    /// reference being collected): a Kafka driver must not commit past them.
    pub fn has_pending(&self) -> bool {
        match &self.phase {
            Phase::Collecting(b, _) => !b.is_empty(),
            Phase::Monitoring { windows, .. } => windows
                .open
                .values()
                .any(|w| w.events > 0 || w.outcomes > 0),
        }
    }

    fn freeze(&mut self, step: &mut Step) {
        let Phase::Collecting(builder, how) = &mut self.phase else {
            return;
        };
        let taken = std::mem::replace(builder.as_mut(), ReferenceBuilder::new(&self.plan));
        let source = match how {
            Collect::FirstN(_) => format!("first {} events", taken.len()),
            Collect::Period(f, t) => {
                format!("events from {} to {}", f.to_rfc3339(), t.to_rfc3339())
            }
        };
        let profile = Arc::new(taken.build(source, plan_fingerprint(&self.plan)));
        step.reference_frozen = Some(profile.clone());
        self.phase = Phase::Monitoring {
            reference: profile,
            windows: Windows::new(self.plan.window.windowing()),
        };
    }

    /// Feed one event of this system.
    pub fn observe(&mut self, event: &Event) -> Step {
        match event {
            Event::Prediction(p) => {
                let mut row = Vec::with_capacity(self.signals.len());
                decode(&self.signals, p, &mut row);
                self.observe_row(p.timestamp, &row, false)
            }
            Event::Outcome(_) => {
                self.observe_outcome();
                Step::default()
            }
        }
    }

    /// Count an outcome event in every open window (an outcome that arrives on its own,
    /// after its prediction).
    pub fn observe_outcome(&mut self) {
        if let Phase::Monitoring { windows, .. } = &mut self.phase {
            for w in windows.open.values_mut() {
                w.outcomes += 1;
            }
        }
    }

    /// Feed one decoded prediction (see [`decode`]): the engine's core, for drivers that
    /// decode rows themselves (the CSV reader decodes columns straight into rows).
    /// `outcome`: the row carries its outcome (a CSV export's outcome column), counted
    /// in the windows the row falls in.
    pub fn observe_row(
        &mut self,
        timestamp: DateTime<Utc>,
        row: &[Observed<'_>],
        outcome: bool,
    ) -> Step {
        let mut step = Step::default();
        if let Phase::Collecting(builder, how) = &mut self.phase {
            match *how {
                Collect::FirstN(n) => {
                    builder.add_row(timestamp, row);
                    if builder.len() >= n {
                        self.freeze(&mut step);
                    }
                    return step;
                }
                Collect::Period(from, to) => {
                    if timestamp < from {
                        return step;
                    }
                    if timestamp < to {
                        builder.add_row(timestamp, row);
                        return step;
                    }
                    // The first prediction past the period freezes it and is monitored.
                    self.freeze(&mut step);
                }
            }
        }
        let Phase::Monitoring { reference, windows } = &mut self.phase else {
            return step;
        };
        let (closed, late) = windows.add(&self.signals, timestamp, row, outcome);
        step.late = late;
        let closed = closed
            .into_iter()
            .map(|(k, window)| Closed {
                k,
                window,
                complete: true,
            })
            .collect();
        step.reports = reports(&self.plan, &self.signals, reference, windows, closed, 1);
        step
    }

    /// Whether [`Monitor::observe_columns`] takes the next rows: monitoring count
    /// windows. Otherwise feed rows one at a time with [`Monitor::observe_row`].
    pub fn takes_columns(&self) -> bool {
        matches!(&self.phase, Phase::Monitoring { windows, .. } if windows.spec.kind == WindowKind::Count)
    }

    /// Feed rows `from..` of `batch` column by column, each row's outcome included (see
    /// [`ColumnBatch::has_outcome`]): the windows that closed, to evaluate with
    /// [`Monitor::evaluate`]. The same windows and reports as [`Monitor::observe_row`]
    /// row by row, at a fraction of the cost. Call only
    /// while [`Monitor::takes_columns`].
    pub fn close_columns(&mut self, batch: &ColumnBatch, from: usize) -> Vec<Closed> {
        let mut closed = Vec::new();
        let Phase::Monitoring { windows, .. } = &mut self.phase else {
            debug_assert!(false, "close_columns while collecting the reference");
            return closed;
        };
        windows.add_columns(&self.signals, batch, from..batch.len(), |k, window| {
            closed.push(Closed {
                k,
                window,
                complete: true,
            })
        });
        closed
    }

    /// Evaluate windows from [`Monitor::close_columns`], in order, on up to `threads`
    /// threads. Evaluating several windows in one call reads each signal's reference once
    /// for all of them.
    pub fn evaluate(&self, closed: Vec<Closed>, threads: usize) -> Vec<WindowReport> {
        match &self.phase {
            Phase::Monitoring { reference, windows } => reports(
                &self.plan,
                &self.signals,
                reference,
                windows,
                closed,
                threads,
            ),
            Phase::Collecting(..) => Vec::new(),
        }
    }

    /// The plan's signals, in row order.
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    /// End of input: evaluate the windows still open, marked incomplete.
    pub fn finish(&mut self) -> Vec<WindowReport> {
        let Phase::Monitoring { reference, windows } = &mut self.phase else {
            return Vec::new();
        };
        let open = std::mem::take(&mut windows.open);
        let closed = open
            .into_iter()
            .filter(|(_, w)| w.events > 0)
            .map(|(k, window)| Closed {
                k,
                window,
                complete: false,
            })
            .collect();
        reports(&self.plan, &self.signals, reference, windows, closed, 1)
    }
}

/// A window that has closed, not yet evaluated (see [`Monitor::close_columns`]).
pub struct Closed {
    k: i64,
    window: Window,
    complete: bool,
}

/// Evaluate closed windows (in order) into their reports, on up to `threads` threads.
fn reports(
    plan: &Plan,
    signals: &[Signal],
    reference: &ReferenceProfile,
    windows: &Windows,
    closed: Vec<Closed>,
    threads: usize,
) -> Vec<WindowReport> {
    if closed.is_empty() {
        return Vec::new();
    }
    let (keys, mut ws): (Vec<(i64, bool)>, Vec<Window>) = closed
        .into_iter()
        .map(|c| ((c.k, c.complete), c.window))
        .unzip();
    let checks = evaluate(
        signals,
        reference,
        &mut ws,
        plan.window.min_samples(),
        plan.multiple_testing.method,
        threads,
    );
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    keys.into_iter()
        .zip(ws)
        .zip(checks)
        .map(|(((k, complete), w), checks)| {
            let severity = checks
                .iter()
                .map(|c| c.severity)
                .max()
                .unwrap_or(Severity::Ok);
            let (start, end) = windows.bounds(k);
            WindowReport {
                system_id: plan.system.id.clone(),
                plan_version: plan.system.plan_version.clone(),
                reference_version: reference.version.clone(),
                window: WindowInfo {
                    index: k,
                    start,
                    end,
                    events: w.events,
                    outcomes: w.outcomes,
                    first_event_at: w.first.unwrap_or(epoch),
                    last_event_at: w.last.unwrap_or(epoch),
                    complete,
                },
                severity,
                checks,
            }
        })
        .collect()
}

/// An event for a system no plan covers.
#[derive(Debug, thiserror::Error)]
#[error("no monitoring plan for system \"{0}\"")]
pub struct Unplanned(pub String);

/// All monitored systems, routed by `system_id`.
pub struct Detector {
    monitors: HashMap<String, Monitor>,
}

impl Detector {
    /// A detector over monitors keyed by their plan's system id.
    pub fn new(monitors: impl IntoIterator<Item = Monitor>) -> Self {
        Detector {
            monitors: monitors
                .into_iter()
                .map(|m| (m.plan.system.id.clone(), m))
                .collect(),
        }
    }

    /// Route one event to its system's monitor.
    pub fn observe(&mut self, event: &Event) -> Result<Step, Unplanned> {
        match self.monitors.get_mut(event.system_id()) {
            Some(m) => Ok(m.observe(event)),
            None => Err(Unplanned(event.system_id().to_owned())),
        }
    }

    /// The monitor of one system.
    pub fn monitor(&self, system_id: &str) -> Option<&Monitor> {
        self.monitors.get(system_id)
    }

    /// Every monitor, in system id order.
    pub fn monitors(&self) -> Vec<&Monitor> {
        let mut v: Vec<&Monitor> = self.monitors.values().collect();
        v.sort_by(|a, b| a.plan.system.id.cmp(&b.plan.system.id));
        v
    }

    /// End of input: open windows of every system, in system id order.
    pub fn finish(&mut self) -> Vec<WindowReport> {
        let mut ids: Vec<String> = self.monitors.keys().cloned().collect();
        ids.sort();
        ids.iter()
            .flat_map(|id| {
                self.monitors
                    .get_mut(id)
                    .map(Monitor::finish)
                    .unwrap_or_default()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
