//! Data-quality shares: missing values, type errors, values outside the reference's
//! range, categories the reference never saw.

use super::{Kinds, MethodSpec, Needs, Prepared, ReadsSorted, Value};
use crate::engine::{SignalAcc, SignalReference};

/// `missing`: share of predictions where the signal is null or absent; above (0.05, 0.2).
pub(super) const MISSING: MethodSpec = MethodSpec {
    name: "missing",
    title: "missing-value rate",
    statistic_title: "missing-value rate",
    kinds: Kinds::Both,
    default_for: Some(Kinds::Both),
    levels: (0.05, 0.2),
    p_value: false,
    bounded_by_one: true,
    reads_sorted: ReadsSorted::No,
    needs: Needs::Events,
    compute: |_, acc, _| Some(Value::share(acc.missing, acc.events())),
};

/// `type_errors`: share of predictions whose value has the wrong type; above (0, 0.01).
pub(super) const TYPE_ERRORS: MethodSpec = MethodSpec {
    name: "type_errors",
    title: "type-error rate",
    statistic_title: "type-error rate",
    kinds: Kinds::Both,
    default_for: Some(Kinds::Both),
    levels: (0.0, 0.01),
    p_value: false,
    bounded_by_one: true,
    reads_sorted: ReadsSorted::No,
    needs: Needs::Events,
    compute: |_, acc, _| Some(Value::share(acc.type_errors, acc.events())),
};

/// `out_of_range`: share of numeric values outside the reference's [min, max]; above
/// (0.02, 0.1).
pub(super) const OUT_OF_RANGE: MethodSpec = MethodSpec {
    name: "out_of_range",
    title: "share outside the reference range",
    statistic_title: "share outside the reference range",
    kinds: Kinds::Numeric,
    default_for: Some(Kinds::Numeric),
    levels: (0.02, 0.1),
    p_value: false,
    bounded_by_one: true,
    reads_sorted: ReadsSorted::Yes,
    needs: Needs::Samples,
    compute: out_of_range,
};

/// `unseen`: share of the window's values in categories the reference never saw; above
/// (0.01, 0.05).
pub(super) const UNSEEN: MethodSpec = MethodSpec {
    name: "unseen",
    title: "share of unseen categories",
    statistic_title: "share of unseen categories",
    kinds: Kinds::Categorical,
    default_for: Some(Kinds::Categorical),
    levels: (0.01, 0.05),
    p_value: false,
    bounded_by_one: true,
    reads_sorted: ReadsSorted::No,
    needs: Needs::Samples,
    compute: unseen,
};

fn out_of_range(reference: &SignalReference, acc: &SignalAcc, _: &mut Prepared) -> Option<Value> {
    let SignalReference::Numeric { sorted: r, .. } = reference else {
        return None;
    };
    let (lo, hi) = (r[0], r[r.len() - 1]);
    let sorted = &acc.num;
    let below = sorted.partition_point(|&x| x < lo);
    let above = sorted.len() - sorted.partition_point(|&x| x <= hi);
    Some(Value::share(below + above, sorted.len()))
}

fn unseen(reference: &SignalReference, acc: &SignalAcc, prep: &mut Prepared) -> Option<Value> {
    if !matches!(reference, SignalReference::Categorical { .. }) {
        return None;
    }
    let (r, w) = prep.binned(reference, acc);
    let unseen: f64 = r
        .iter()
        .zip(w)
        .filter(|(r, _)| **r == 0.0)
        .map(|(_, w)| w)
        .sum();
    Some(Value::share(unseen as usize, acc.samples()))
}
