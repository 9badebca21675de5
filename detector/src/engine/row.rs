//! Rows: one decoded value per plan signal, and the category counts of a window.

use std::collections::HashMap;

use driftwatch_schema::{FeatureValue, Prediction};

use crate::input::batch::quick_key;
use crate::plan::{FeatureType, Signal, Source};

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

/// Hasher for category counts: FxHash's multiply-rotate, several times faster than
/// SipHash on short strings. Category values come from the provider's own model server
/// and the maps live for one window, so flooding resistance is not bought here.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

pub(crate) const FX_K: u64 = 0x517c_c1b7_2722_0a95;

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

pub(crate) type FxMap = HashMap<String, u64, std::hash::BuildHasherDefault<FxHasher>>;

/// Category counts of one signal in one window: a short list scanned linearly (most
/// categorical signals have a handful of values), turned into a hash map past
/// [`CatCounts::LIST_MAX`] categories.
#[derive(Clone, Default)]
pub(crate) struct CatCounts {
    /// (first 8 bytes and length packed for a quick compare, category, count).
    pub(crate) list: Vec<(u128, String, u64)>,
    pub(crate) map: Option<FxMap>,
}

impl CatCounts {
    const LIST_MAX: usize = 32;

    pub(crate) fn find(&self, c: &str) -> Option<usize> {
        let q = quick_key(c);
        let short = c.len() <= 8;
        self.list
            .iter()
            .position(|(k, s, _)| *k == q && (short || s == c))
    }

    pub(crate) fn add(&mut self, c: &str) {
        self.add_n(c, 1);
    }

    /// Count `n` more of category `c`.
    pub(crate) fn add_n(&mut self, c: &str, n: u64) {
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

    pub(crate) fn get(&self, c: &str) -> Option<u64> {
        match &self.map {
            Some(map) => map.get(c).copied(),
            None => self.find(c).map(|i| self.list[i].2),
        }
    }

    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = (&String, &u64)> + '_> {
        match &self.map {
            Some(map) => Box::new(map.iter()),
            None => Box::new(self.list.iter().map(|(_, k, n)| (k, n))),
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum()
    }
}

pub(crate) fn from_feature(v: &FeatureValue) -> Observed<'_> {
    use std::borrow::Cow;
    match v {
        FeatureValue::Null => Observed::Missing,
        FeatureValue::Number(x) => Observed::Num(*x),
        FeatureValue::Text(s) => Observed::Cat(Cow::Borrowed(s.as_str())),
        FeatureValue::Bool(b) => Observed::Cat(Cow::Borrowed(if *b { "true" } else { "false" })),
    }
}

/// Decode a prediction into one value per signal, in plan order: the row
/// [`super::Monitor::observe`] takes (as [`super::Input::Row`]). Feature signals come sorted by name (the plan keeps
/// them in a sorted map) as do an event's features, so one merge walk over both replaces
/// a map lookup per signal.
pub fn decode<'a>(signals: &[Signal], p: &'a Prediction, row: &mut Vec<Observed<'a>>) {
    row.clear();
    for_each_observed(signals, p, |_, o| row.push(o));
}

pub(crate) fn for_each_observed<'a>(
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

pub(crate) fn classify<'a>(
    signal: &Signal,
    p: &'a Prediction,
    feature: Option<Observed<'a>>,
) -> Observed<'a> {
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
