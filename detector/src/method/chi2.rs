//! Chi-squared test of homogeneity on categorical signals.

use super::{Kinds, MethodSpec, Needs, Prepared, ReadsSorted, Value};
use crate::engine::{SignalAcc, SignalReference};
use crate::stats;

/// `chi2`: `chi2_contingency`'s p-value of the reference-vs-window table; alerts below
/// (0.05, 0.01).
pub(super) const CHI2: MethodSpec = MethodSpec {
    name: "chi2",
    title: "chi2 p-value",
    statistic_title: "chi2 statistic",
    kinds: Kinds::Categorical,
    default_for: Some(Kinds::Categorical),
    levels: (0.05, 0.01),
    p_value: true,
    bounded_by_one: true,
    reads_sorted: ReadsSorted::No,
    needs: Needs::Samples,
    compute,
};

fn compute(reference: &SignalReference, acc: &SignalAcc, prep: &mut Prepared) -> Option<Value> {
    if !matches!(reference, SignalReference::Categorical { .. }) {
        return None;
    }
    let (r, w) = prep.binned(reference, acc);
    let rc: Vec<u64> = r.iter().map(|&x| x as u64).collect();
    let wc: Vec<u64> = w.iter().map(|&x| x as u64).collect();
    let c = stats::chi2_contingency(&rc, &wc);
    Some(Value {
        statistic: c.statistic,
        p_value: Some(c.p_value),
        value: c.p_value,
    })
}
