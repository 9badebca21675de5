//! The drift tests and data-quality checks, each declared once: its name, the signal
//! kinds it applies to, whether it is a default check, its default levels, whether its
//! value is a p-value or bounded by one, whether it reads the window sorted, its
//! wording for people, and how it is computed.
//!
//! A method family is one file here (`ks.rs`, `chi2.rs`, `distance.rs`, `quality.rs`),
//! declaring a [`MethodSpec`] per method; [`Method::spec`] is the one registration.
//! Adding a method: a variant of [`Method`], its spec in a family file, one arm in
//! [`Method::spec`], its place in [`ALL_METHODS`], and its scipy oracle in
//! `tests/oracle.rs`. The statistics themselves live in [`crate::stats`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::engine::{CatCounts, SignalAcc, SignalReference};
use crate::plan::{FeatureType, Thresholds};

mod chi2;
mod distance;
mod ks;
mod quality;

/// A drift test or data-quality check. The value compared with the thresholds is given
/// for each; the documented default levels are (warning, critical).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Two-sample Kolmogorov-Smirnov, numeric. Value: p-value (asymptotic, as scipy).
    /// Alerts below (0.05, 0.01).
    Ks,
    /// Population stability index over reference-quantile bins (numeric) or categories;
    /// empty bins smoothed to 1e-4. Alerts above (0.1, 0.25).
    Psi,
    /// Chi-squared test of the reference-vs-window table, categorical. Value: p-value.
    /// Alerts below (0.05, 0.01).
    Chi2,
    /// Jensen-Shannon distance, base 2, over reference-quantile bins or categories.
    /// Alerts above (0.1, 0.2).
    Js,
    /// Hellinger distance over reference-quantile bins or categories. Above (0.1, 0.2).
    Hellinger,
    /// Wasserstein-1 distance divided by the reference's standard deviation (floored at
    /// 1e-3); the raw distance is the statistic. Numeric. Above (0.1, 0.2).
    Wasserstein,
    /// L-infinity distance between category proportions, categorical. Above (0.1, 0.2).
    Linf,
    /// Share of the window's values in categories the reference never saw, categorical.
    /// Above (0.01, 0.05).
    Unseen,
    /// Share of predictions where the signal is null or absent. Above (0.05, 0.2).
    Missing,
    /// Share of numeric values outside the reference's [min, max]. Above (0.02, 0.1).
    OutOfRange,
    /// Share of predictions where the value has the wrong type. Above (0, 0.01): any
    /// type error is a warning.
    TypeErrors,
}

/// Every method, in the order a signal's default checks run.
pub const ALL_METHODS: [Method; 11] = [
    Method::Ks,
    Method::Chi2,
    Method::Psi,
    Method::Wasserstein,
    Method::Unseen,
    Method::Missing,
    Method::OutOfRange,
    Method::TypeErrors,
    Method::Js,
    Method::Hellinger,
    Method::Linf,
];

/// The signal kinds a method applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kinds {
    /// Numeric signals only.
    Numeric,
    /// Categorical signals only.
    Categorical,
    /// Both.
    Both,
}

impl Kinds {
    fn has(self, kind: FeatureType) -> bool {
        match self {
            Kinds::Numeric => kind == FeatureType::Numeric,
            Kinds::Categorical => kind == FeatureType::Categorical,
            Kinds::Both => true,
        }
    }
}

/// What a method needs before it gives a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// `min_samples` predictions in the window (data-quality shares of all predictions).
    Events,
    /// `min_samples` usable values in the window and a non-empty reference.
    Samples,
}

/// Whether a method reads the window's numeric values sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadsSorted {
    /// Never.
    No,
    /// Always.
    Yes,
    /// Only without the reference's KS index (an empty reference has none).
    WithoutIndex,
}

/// Everything about one method, declared once.
pub struct MethodSpec {
    /// The name in plans, results, metrics and alerts (`ks`, `out_of_range`).
    pub name: &'static str,
    /// What the compared value is, for people (`KS p-value`).
    pub title: &'static str,
    /// What a learned level compares for a test with a p-value (`KS statistic D`).
    pub statistic_title: &'static str,
    /// The signal kinds it applies to.
    pub kinds: Kinds,
    /// The kinds it runs on when a plan names no checks.
    pub default_for: Option<Kinds>,
    /// Default (warning, critical) levels.
    pub levels: (f64, f64),
    /// The value is a p-value: it alerts by being small.
    pub p_value: bool,
    /// The value is a share or distance no larger than 1 (levels above 1 are refused).
    pub bounded_by_one: bool,
    /// Whether it reads the window sorted.
    pub reads_sorted: ReadsSorted,
    /// What it needs for a verdict.
    pub needs: Needs,
    /// The computation: `None` when the reference kind does not fit.
    pub(crate) compute: Compute,
}

/// How a method computes its value for one signal in one window.
pub(crate) type Compute = fn(&SignalReference, &SignalAcc, &mut Prepared) -> Option<Value>;

impl Method {
    /// The method's declaration: the one registration of each method.
    pub fn spec(self) -> &'static MethodSpec {
        match self {
            Method::Ks => &ks::KS,
            Method::Chi2 => &chi2::CHI2,
            Method::Psi => &distance::PSI,
            Method::Js => &distance::JS,
            Method::Hellinger => &distance::HELLINGER,
            Method::Linf => &distance::LINF,
            Method::Wasserstein => &distance::WASSERSTEIN,
            Method::Unseen => &quality::UNSEEN,
            Method::Missing => &quality::MISSING,
            Method::OutOfRange => &quality::OUT_OF_RANGE,
            Method::TypeErrors => &quality::TYPE_ERRORS,
        }
    }

    /// Name in results, metrics and plans.
    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// True when the value alerts by being small (p-values), false when large.
    pub fn lower_is_worse(self) -> bool {
        self.has_p_value()
    }

    /// True for hypothesis tests whose value is a p-value.
    pub fn has_p_value(self) -> bool {
        self.spec().p_value
    }

    /// Default thresholds (documented on each variant).
    pub fn default_thresholds(self) -> Thresholds {
        let (warning, critical) = self.spec().levels;
        Thresholds {
            warning: Some(warning),
            critical: Some(critical),
            ..Thresholds::default()
        }
    }

    /// Whether the method can run on a signal of `kind`.
    pub fn applies_to(self, kind: FeatureType) -> bool {
        self.spec().kinds.has(kind)
    }

    /// Whether the value is a share or distance bounded by 1.
    pub fn bounded_by_one(self) -> bool {
        self.spec().bounded_by_one
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a signal gets when its plan entry names none, in [`ALL_METHODS`] order.
pub fn default_checks(kind: FeatureType) -> Vec<Method> {
    ALL_METHODS
        .into_iter()
        .filter(|m| m.spec().default_for.is_some_and(|k| k.has(kind)))
        .collect()
}

/// The outcome of one method before thresholds.
pub(crate) struct Value {
    /// The test statistic (KS D, chi-squared, PSI, raw Wasserstein, a count for shares).
    pub(crate) statistic: f64,
    /// The p-value, for tests that have one.
    pub(crate) p_value: Option<f64>,
    /// The value compared with the thresholds.
    pub(crate) value: f64,
}

impl Value {
    /// A share: `count` of `of`.
    fn share(count: usize, of: usize) -> Value {
        Value {
            statistic: count as f64,
            p_value: None,
            value: count as f64 / of as f64,
        }
    }
}

/// Work shared by the checks of one signal in one window, computed once on demand: the
/// (reference, window) proportions over bins, or counts over categories.
#[derive(Default)]
pub(crate) struct Prepared {
    binned: Option<(Vec<f64>, Vec<f64>)>,
}

impl Prepared {
    /// Aligned (reference, window) values: bin proportions of a numeric signal (the
    /// window read sorted), or category counts of a categorical one.
    fn binned(&mut self, reference: &SignalReference, acc: &SignalAcc) -> &(Vec<f64>, Vec<f64>) {
        self.binned.get_or_insert_with(|| match reference {
            SignalReference::Numeric {
                edges, proportions, ..
            } => (
                proportions.clone(),
                crate::stats::bin_proportions_sorted(edges, &acc.num),
            ),
            SignalReference::Categorical { counts } => {
                let (rc, wc) = aligned_counts(counts, &acc.cat);
                (
                    rc.iter().map(|&x| x as f64).collect(),
                    wc.iter().map(|&x| x as f64).collect(),
                )
            }
        })
    }
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

/// Run one method on one signal's window. `None`: not enough data for a verdict.
pub(crate) fn check_value(
    method: Method,
    reference: &SignalReference,
    acc: &SignalAcc,
    prepared: &mut Prepared,
    min_samples: usize,
) -> Option<Value> {
    let spec = method.spec();
    let enough = match spec.needs {
        Needs::Events => acc.events() >= min_samples,
        Needs::Samples => acc.samples() >= min_samples && reference.samples() > 0,
    };
    if !enough {
        return None;
    }
    (spec.compute)(reference, acc, prepared).filter(|v| v.value.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry and the serde names agree, every method is registered once, and
    /// the default checks are the documented ones.
    #[test]
    fn every_method_is_declared_once_under_its_serde_name() {
        let mut names = std::collections::HashSet::new();
        for m in ALL_METHODS {
            let json = serde_json::to_string(&m).expect("serialise");
            assert_eq!(json, format!("\"{}\"", m.spec().name));
            assert!(names.insert(m.spec().name), "{m} twice");
            if m.spec().default_for.is_some() {
                assert!(
                    m.spec().kinds.has(FeatureType::Numeric)
                        || m.spec().kinds.has(FeatureType::Categorical)
                );
            }
        }
        let names = |k| {
            default_checks(k)
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(FeatureType::Numeric),
            [
                "ks",
                "psi",
                "wasserstein",
                "missing",
                "out_of_range",
                "type_errors"
            ]
        );
        assert_eq!(
            names(FeatureType::Categorical),
            ["chi2", "psi", "unseen", "missing", "type_errors"]
        );
    }
}
