//! Two-sample Kolmogorov-Smirnov: the exact statistic D on a sorted window, or on the
//! window as it came through a per-reference index, and scipy's asymptotic p-value.

use super::bins::{from_order_key, order_key};
use super::kolmogorov;

/// Result of a two-sample Kolmogorov-Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsResult {
    /// `D = sup |F_ref - F_win|`.
    pub statistic: f64,
    /// Two-sided asymptotic p-value as `scipy.stats.ks_2samp(..., method="asymp")`.
    pub p_value: f64,
}

impl KsResult {
    /// The answer for an empty sample.
    const UNDEFINED: KsResult = KsResult {
        statistic: f64::NAN,
        p_value: f64::NAN,
    };
}

/// First index at or after `from` where `pred` turns false (`pred` is true, then false,
/// along the sorted slice). Galloping: cost grows with the log of the distance moved,
/// so walking a long reference in the order of a short window is cheap.
#[inline]
pub(crate) fn gallop(r: &[f64], from: usize, pred: impl Fn(f64) -> bool) -> usize {
    let n = r.len();
    // Short moves are the common case (a 50,000-point reference walked by a 5,000-point
    // window moves ~10 points a step): a linear probe beats galloping there.
    let probe = (from + 16).min(n);
    for (k, &x) in r[from..probe].iter().enumerate() {
        if !pred(x) {
            return from + k;
        }
    }
    if probe == n || !pred(r[probe]) {
        return probe;
    }
    let from = probe;
    let (mut lo, mut step) = (from, 1usize);
    let mut hi = from + 1;
    while hi < n && pred(r[hi]) {
        lo = hi;
        step *= 2;
        hi = from + step;
    }
    let hi = hi.min(n);
    lo + 1 + r[lo + 1..hi].partition_point(|&x| pred(x))
}

/// The first index at or after `from` whose value is not below `v`, in a sorted slice,
/// for a short move (a 50,000-point reference walked by a 5,000-point window moves ~10
/// points a step): 16 points are compared at a time into a bit mask, without a branch
/// per point, which on real data beats a point-by-point walk (its exit mispredicts
/// once per step) by about a third.
#[inline(always)]
pub(crate) fn walk_below(r: &[f64], from: usize, v: f64) -> usize {
    const BLOCK: usize = 16;
    let mut j = from;
    while let Some(block) = r.get(j..j + BLOCK) {
        let mut mask = 0u32;
        for (k, &x) in block.iter().enumerate() {
            mask |= u32::from(x < v) << k;
        }
        // Sorted: the points below v are the block's first ones.
        let below = (!mask).trailing_zeros() as usize;
        j += below;
        if below < BLOCK {
            return j;
        }
    }
    while j < r.len() && r[j] < v {
        j += 1;
    }
    j
}

/// Two-sample KS on two **sorted** samples (NaN-free, non-empty): the reference first.
///
/// `D = sup |F_ref - F_win|` is attained at a window value `v`, either at `v` or just
/// before it (between window values the window ECDF is flat and the reference ECDF only
/// rises), so it is evaluated at the window's distinct values, walking or galloping
/// through the reference: the same set of differences scipy evaluates at every point,
/// in O(n + m), or O(m log(n/m)) for a reference far larger than the window.
///
/// The p-value is the finite-n Kolmogorov survival function at
/// `round_half_even(m*n/(m+n))`, exactly scipy's asymptotic method.
pub fn ks_2samp_sorted(r: &[f64], w: &[f64]) -> KsResult {
    let (n1, n2) = (r.len(), w.len());
    if n1 == 0 || n2 == 0 {
        return KsResult::UNDEFINED;
    }
    // The differences F_ref - F_win are kept exactly, as integers scaled by n1 * n2,
    // and D is their largest magnitude divided out once: the exact D correctly rounded.
    // (scipy subtracts two rounded quotients, which may differ from it in the last bit.)
    let (k1, k2) = (n2 as i64, n1 as i64);
    let diff = |j: usize, i: usize| j as i64 * k1 - i as i64 * k2;
    // The window in runs of about RUN values (never splitting equal values), each with
    // the reference rank below its first value: a difference D may reach. Inside a run
    // the reference rank lies between its rank and the next run's, and the window count
    // between the run's ends, which bounds every difference in it: a run whose bound is
    // no more than a difference already found cannot hold D and is not walked. Runs are
    // walked largest bound first; D is exact either way.
    const RUN: usize = 8;
    let mut starts: Vec<(usize, usize)> = Vec::with_capacity(n2 / RUN + 2);
    let (mut a, mut j) = (0usize, 0usize);
    while a < n2 {
        let v = w[a];
        j = gallop(r, j, |x| x < v);
        starts.push((a, j));
        let mut next = (a + RUN).min(n2);
        while next < n2 && w[next] == w[next - 1] {
            next += 1;
        }
        a = next;
    }
    starts.push((n2, n1));
    let mut best = starts
        .iter()
        .map(|&(a, j)| diff(j, a).abs())
        .max()
        .unwrap_or(0);
    let mut runs: Vec<(i64, usize)> = starts
        .windows(2)
        .enumerate()
        .map(|(t, p)| {
            let ((a, below), (end, above)) = (p[0], p[1]);
            (diff(above, a).abs().max(diff(below, end).abs()), t)
        })
        .filter(|&(bound, _)| bound > best)
        .collect();
    runs.sort_unstable_by_key(|&(bound, _)| std::cmp::Reverse(bound));
    // A reference up to 32 times the window is walked a block at a time; a larger one is
    // galloped through.
    let walk = n1 <= 32 * n2;
    for (bound, t) in runs {
        if bound <= best {
            break;
        }
        let ((a, j), (end, _)) = (starts[t], starts[t + 1]);
        best = best.max(walk_run(r, &w[a..end], a, j, walk, diff));
    }
    ks_result(n1, n2, best)
}

/// The largest |difference| over the sorted window values `run`, which start at window
/// index `first` with `below` reference values under the first of them; equal values
/// never continue past the run.
#[inline]
pub(crate) fn walk_run(
    r: &[f64],
    run: &[f64],
    first: usize,
    below: usize,
    walk: bool,
    diff: impl Fn(usize, usize) -> i64,
) -> i64 {
    let mut best = 0;
    let (mut i, mut j) = (0, below);
    while i < run.len() {
        let v = run[i];
        let mut after = i + 1;
        while after < run.len() && run[after] <= v {
            after += 1;
        }
        j = if walk {
            walk_below(r, j, v)
        } else {
            gallop(r, j, |x| x < v)
        };
        let before_v = diff(j, first + i);
        while j < r.len() && r[j] <= v {
            j += 1;
        }
        best = best.max(before_v.abs()).max(diff(j, first + after).abs());
        i = after;
    }
    best
}

/// A sorted reference cut into parts by value, for [`ks_2samp`]: about one part per 16
/// reference values, of equal width over the reference's range, with the number of
/// reference values below each part: a quarter of a byte per reference value.
///
/// A value's part is `(x - lo) * scale`, rounded. Rounding keeps that monotone, so
/// every value of a lower part is below every value of a higher one, which is all the
/// KS walk needs; and equal widths in value (not in the floats' bit patterns) keep the
/// parts even when the data straddle zero, where the bit patterns of tiny magnitudes
/// would take most of the parts.
#[derive(Debug, Clone, PartialEq)]
pub struct KsIndex {
    lo: f64,
    scale: f64,
    /// `below[p]`: reference values in parts before p; then the reference size.
    below: Vec<u32>,
}

impl KsIndex {
    /// The index of a sorted, NaN-free reference (`None` when empty or too long for
    /// 32-bit counts).
    pub fn new(sorted: &[f64]) -> Option<Self> {
        let m = sorted.len();
        if m == 0 || m >= u32::MAX as usize {
            return None;
        }
        let (lo, hi) = (sorted[0], sorted[m - 1]);
        let mut parts = (m / 16).max(1);
        let mut scale = parts as f64 / (hi - lo);
        if !scale.is_finite() || scale <= 0.0 {
            // A constant reference, or a range too wide for a double: one part.
            (parts, scale) = (1, 0.0);
        }
        let mut index = KsIndex {
            lo,
            scale,
            below: vec![0; parts + 1],
        };
        for &x in sorted {
            let p = index.part(x);
            index.below[p + 1] += 1;
        }
        for p in 0..parts {
            index.below[p + 1] += index.below[p];
        }
        Some(index)
    }

    fn parts(&self) -> usize {
        self.below.len() - 1
    }

    /// The part of a value: `(x - lo) * scale` rounded to an integer by adding 2^52 (a
    /// few instructions where a saturating cast takes a dozen); values beyond the
    /// reference's range in the first or last part.
    #[inline(always)]
    fn part(&self, x: f64) -> usize {
        const TWO_52: f64 = 4_503_599_627_370_496.0;
        let y = ((x - self.lo) * self.scale).max(0.0) + TWO_52;
        ((y.to_bits() - TWO_52.to_bits()) as usize).min(self.parts() - 1)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.below.len() * std::mem::size_of::<u32>()
    }
}

/// [`ks_2samp_sorted`] for a window in any order, through the reference's [`KsIndex`]:
/// the same D and p-value, bit for bit, without sorting the window.
///
/// The window is counted into the reference's parts (one pass). At each part's lower
/// edge the difference is exact (reference values below the edge against window values
/// below it), and inside a part every difference lies within the box of its two edges'
/// counts, as in the runs of [`ks_2samp_sorted`]. With parts this fine most hold one
/// window value or none, so only the few parts whose box reaches past the largest edge
/// difference are sorted and walked.
pub fn ks_2samp(r: &[f64], index: &KsIndex, w: &[f64]) -> KsResult {
    let (n1, n2) = (r.len(), w.len());
    if n1 == 0 || n2 == 0 {
        return KsResult::UNDEFINED;
    }
    let parts = index.parts();
    // Window values per part, then (in place) window values below each part.
    let mut ends = vec![0u32; parts + 1];
    for &x in w {
        ends[index.part(x) + 1] += 1;
    }
    let (k1, k2) = (n2 as i64, n1 as i64);
    let diff = |j: u32, i: u32| i64::from(j) * k1 - i64::from(i) * k2;
    let below = &index.below;
    let mut best = 0;
    let mut sum = 0;
    for (e, &b) in ends.iter_mut().zip(below) {
        sum += *e;
        *e = sum;
        best = best.max(diff(b, sum).abs());
    }
    let mut open: Vec<(i64, usize)> = Vec::new();
    for p in 0..parts {
        let (a, e) = (ends[p], ends[p + 1]);
        if e > a {
            let bound = diff(below[p + 1], a).abs().max(diff(below[p], e).abs());
            if bound > best {
                open.push((bound, p));
            }
        }
    }
    if open.is_empty() {
        return ks_result(n1, n2, best);
    }
    open.sort_unstable_by_key(|&(bound, _)| std::cmp::Reverse(bound));
    // The window values of the open parts only, each part's together: where each open
    // part's values go in `picked` (NONE for the others), filled in one pass.
    const NONE: u32 = u32::MAX;
    let mut slot = vec![NONE; parts];
    let mut total = 0;
    for &(_, p) in &open {
        slot[p] = total;
        total += ends[p + 1] - ends[p];
    }
    let mut picked = vec![0u64; total as usize];
    for &x in w {
        let p = index.part(x);
        let s = slot[p];
        if s != NONE {
            // Order keys sort as the values do; -0.0 is 0.0 here, as the comparisons
            // with the reference have it.
            picked[s as usize] = order_key(if x == 0.0 { 0.0 } else { x });
            slot[p] = s + 1;
        }
    }
    let diff = |j: usize, i: usize| j as i64 * k1 - i as i64 * k2;
    let mut values = Vec::new();
    for (bound, p) in open {
        if bound <= best {
            break;
        }
        let (a, e) = (ends[p] as usize, ends[p + 1] as usize);
        // The part's values end where its slot stopped.
        let part = &mut picked[slot[p] as usize - (e - a)..slot[p] as usize];
        part.sort_unstable();
        values.clear();
        values.extend(part.iter().map(|&k| from_order_key(k)));
        best = best.max(walk_run(r, &values, a, below[p] as usize, true, diff));
    }
    ks_result(n1, n2, best)
}

/// The result from the largest |n2*j - n1*i| found: D divided out once, and its p-value.
pub(crate) fn ks_result(n1: usize, n2: usize, best: i64) -> KsResult {
    let d = best as f64 / (n1 as f64 * n2 as f64);
    KsResult {
        statistic: d,
        p_value: ks_p_value(n1, n2, d),
    }
}

/// scipy's asymptotic two-sample p-value: the finite-n Kolmogorov survival function at
/// `round_half_even(m*n/(m+n))`.
pub(crate) fn ks_p_value(n1: usize, n2: usize, d: f64) -> f64 {
    let (f1, f2) = (n1 as f64, n2 as f64);
    let (m, n) = if f1 >= f2 { (f1, f2) } else { (f2, f1) };
    let en = (m * n / (m + n)).round_ties_even().max(1.0) as u64;
    kolmogorov::kolmogn(en, d, false)
}
