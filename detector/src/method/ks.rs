//! Two-sample Kolmogorov-Smirnov on numeric signals.

use super::{Kinds, MethodSpec, Needs, Prepared, ReadsSorted, Value};
use crate::engine::{SignalAcc, SignalReference};
use crate::stats;

/// `ks`: scipy's asymptotic p-value of D; alerts below (0.05, 0.01).
pub(super) const KS: MethodSpec = MethodSpec {
    name: "ks",
    title: "KS p-value",
    statistic_title: "KS statistic D",
    kinds: Kinds::Numeric,
    default_for: Some(Kinds::Numeric),
    levels: (0.05, 0.01),
    p_value: true,
    bounded_by_one: true,
    // Through the reference's index the window needs no sorting.
    reads_sorted: ReadsSorted::WithoutIndex,
    needs: Needs::Samples,
    compute,
};

fn compute(reference: &SignalReference, acc: &SignalAcc, _: &mut Prepared) -> Option<Value> {
    let SignalReference::Numeric { sorted, .. } = reference else {
        return None;
    };
    let r = match reference.ks_index() {
        Some(index) => stats::ks_2samp(sorted, index, &acc.num),
        None => stats::ks_2samp_sorted(sorted, &acc.num),
    };
    Some(Value {
        statistic: r.statistic,
        p_value: Some(r.p_value),
        value: r.p_value,
    })
}
