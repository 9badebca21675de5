//! Distances between the reference and the window: over quantile bins (numeric) or
//! categories (PSI, Jensen-Shannon, Hellinger, L-infinity), and Wasserstein-1 on the
//! sorted values.

use super::{Kinds, MethodSpec, Needs, Prepared, ReadsSorted, Value};
use crate::engine::{SignalAcc, SignalReference};
use crate::stats;

/// `psi`: population stability index; above (0.1, 0.25).
pub(super) const PSI: MethodSpec = MethodSpec {
    name: "psi",
    title: "PSI",
    statistic_title: "PSI",
    kinds: Kinds::Both,
    default_for: Some(Kinds::Both),
    levels: (0.1, 0.25),
    p_value: false,
    bounded_by_one: false,
    reads_sorted: ReadsSorted::Yes,
    needs: Needs::Samples,
    compute: |r, acc, prep| binned(r, acc, prep, stats::psi),
};

/// `js`: Jensen-Shannon distance, base 2; above (0.1, 0.2).
pub(super) const JS: MethodSpec = MethodSpec {
    name: "js",
    title: "Jensen-Shannon distance",
    statistic_title: "Jensen-Shannon distance",
    kinds: Kinds::Both,
    default_for: None,
    levels: (0.1, 0.2),
    p_value: false,
    bounded_by_one: true,
    reads_sorted: ReadsSorted::Yes,
    needs: Needs::Samples,
    compute: |r, acc, prep| binned(r, acc, prep, stats::jensen_shannon),
};

/// `hellinger`: Hellinger distance; above (0.1, 0.2).
pub(super) const HELLINGER: MethodSpec = MethodSpec {
    name: "hellinger",
    title: "Hellinger distance",
    statistic_title: "Hellinger distance",
    kinds: Kinds::Both,
    default_for: None,
    levels: (0.1, 0.2),
    p_value: false,
    bounded_by_one: true,
    reads_sorted: ReadsSorted::Yes,
    needs: Needs::Samples,
    compute: |r, acc, prep| binned(r, acc, prep, stats::hellinger),
};

/// `linf`: L-infinity distance between category proportions; above (0.1, 0.2).
pub(super) const LINF: MethodSpec = MethodSpec {
    name: "linf",
    title: "L-infinity distance",
    statistic_title: "L-infinity distance",
    kinds: Kinds::Categorical,
    default_for: None,
    levels: (0.1, 0.2),
    p_value: false,
    bounded_by_one: true,
    reads_sorted: ReadsSorted::No,
    needs: Needs::Samples,
    compute: |r, acc, prep| {
        matches!(r, SignalReference::Categorical { .. })
            .then(|| binned(r, acc, prep, stats::l_infinity))
            .flatten()
    },
};

/// `wasserstein`: Wasserstein-1 over the reference's standard deviation (floored at
/// 1e-3); above (0.1, 0.2).
pub(super) const WASSERSTEIN: MethodSpec = MethodSpec {
    name: "wasserstein",
    title: "Wasserstein distance / reference std",
    statistic_title: "Wasserstein distance / reference std",
    kinds: Kinds::Numeric,
    default_for: Some(Kinds::Numeric),
    levels: (0.1, 0.2),
    p_value: false,
    bounded_by_one: false,
    reads_sorted: ReadsSorted::Yes,
    needs: Needs::Samples,
    compute: wasserstein,
};

/// A distance over aligned proportions: bins of a numeric signal, categories of a
/// categorical one (counts turned into proportions).
fn binned(
    reference: &SignalReference,
    acc: &SignalAcc,
    prep: &mut Prepared,
    distance: fn(&[f64], &[f64]) -> f64,
) -> Option<Value> {
    let (r, w) = prep.binned(reference, acc);
    let d = match reference {
        SignalReference::Numeric { .. } => distance(r, w),
        SignalReference::Categorical { .. } => distance(&proportions(r), &proportions(w)),
    };
    Some(Value {
        statistic: d,
        p_value: None,
        value: d,
    })
}

fn proportions(counts: &[f64]) -> Vec<f64> {
    let total = counts.iter().sum::<f64>().max(1.0);
    counts.iter().map(|&c| c / total).collect()
}

fn wasserstein(reference: &SignalReference, acc: &SignalAcc, _: &mut Prepared) -> Option<Value> {
    let SignalReference::Numeric { sorted, std, .. } = reference else {
        return None;
    };
    let raw = stats::wasserstein_sorted(sorted, &acc.num);
    Some(Value {
        statistic: raw,
        p_value: None,
        value: raw / std.max(stats::WASSERSTEIN_MIN_STD),
    })
}
