//! Drift statistics. Pure functions over samples, no I/O, no allocation on the hot path
//! beyond what a method needs. Every function here is checked against scipy/numpy values
//! in `detector/tests/oracle.rs` (fixtures made by `detector/tests/oracle/make_fixtures.py`).

pub mod kolmogorov;

use statrs::distribution::{ChiSquared, ContinuousCDF};

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
fn gallop(r: &[f64], from: usize, pred: impl Fn(f64) -> bool) -> usize {
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
fn walk_below(r: &[f64], from: usize, v: f64) -> usize {
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
fn walk_run(
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
fn ks_result(n1: usize, n2: usize, best: i64) -> KsResult {
    let d = best as f64 / (n1 as f64 * n2 as f64);
    KsResult {
        statistic: d,
        p_value: ks_p_value(n1, n2, d),
    }
}

/// A float's bits as an integer in its total order (the order of `f64::total_cmp`).
#[inline(always)]
fn order_key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// The float of an [`order_key`].
#[inline(always)]
fn from_order_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// scipy's asymptotic two-sample p-value: the finite-n Kolmogorov survival function at
/// `round_half_even(m*n/(m+n))`.
fn ks_p_value(n1: usize, n2: usize, d: f64) -> f64 {
    let (f1, f2) = (n1 as f64, n2 as f64);
    let (m, n) = if f1 >= f2 { (f1, f2) } else { (f2, f1) };
    let en = (m * n / (m + n)).round_ties_even().max(1.0) as u64;
    kolmogorov::kolmogn(en, d, false)
}

/// Smoothing for empty bins in PSI: a proportion of 0 is replaced by this value (as
/// Evidently does), so the logarithm stays finite. Documented in the plan reference.
pub const PSI_EMPTY_BIN: f64 = 1e-4;

/// Population stability index between two proportion vectors of equal length:
/// `sum (w - r) * ln(w / r)`, with zero proportions replaced by [`PSI_EMPTY_BIN`].
pub fn psi(reference: &[f64], window: &[f64]) -> f64 {
    reference
        .iter()
        .zip(window)
        .map(|(&r, &w)| {
            let r = if r > 0.0 { r } else { PSI_EMPTY_BIN };
            let w = if w > 0.0 { w } else { PSI_EMPTY_BIN };
            (w - r) * (w / r).ln()
        })
        .sum()
}

/// Quantile with linear interpolation of a sorted sample (numpy's default `linear` method).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let pos = q * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Interior bin edges at the reference deciles (or `bins` quantiles), duplicates removed.
/// A value `v` falls in bin `#{edges e : e < v}`: bins are `(-inf, e1], (e1, e2], ...`.
pub fn quantile_edges(sorted_reference: &[f64], bins: usize) -> Vec<f64> {
    let mut edges: Vec<f64> = (1..bins)
        .map(|i| quantile_sorted(sorted_reference, i as f64 / bins as f64))
        .collect();
    edges.dedup();
    edges
}

/// Bin index of `v` for `edges` from [`quantile_edges`].
pub fn bin_of(edges: &[f64], v: f64) -> usize {
    edges.partition_point(|&e| e < v)
}

/// Proportions per bin of a sample.
pub fn bin_proportions(edges: &[f64], values: &[f64]) -> Vec<f64> {
    let mut counts = vec![0u64; edges.len() + 1];
    for &v in values {
        counts[bin_of(edges, v)] += 1;
    }
    let n = values.len().max(1) as f64;
    counts.into_iter().map(|c| c as f64 / n).collect()
}

/// Jensen-Shannon **distance** (the square root of the divergence), base 2, between two
/// proportion vectors; as `scipy.spatial.distance.jensenshannon(p, q, base=2)`. In [0, 1].
pub fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let mut js = 0.0;
    for (&a, &b) in p.iter().zip(q) {
        let m = 0.5 * (a + b);
        if a > 0.0 {
            js += 0.5 * a * (a / m).ln();
        }
        if b > 0.0 {
            js += 0.5 * b * (b / m).ln();
        }
    }
    (js.max(0.0) / std::f64::consts::LN_2).sqrt()
}

/// Hellinger distance `sqrt(1 - sum sqrt(p q))` between two proportion vectors. In [0, 1].
pub fn hellinger(p: &[f64], q: &[f64]) -> f64 {
    let bc: f64 = p.iter().zip(q).map(|(&a, &b)| (a * b).sqrt()).sum();
    (1.0 - bc).max(0.0).sqrt()
}

/// L-infinity distance: the largest absolute difference of proportions.
pub fn l_infinity(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .map(|(&a, &b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// Wasserstein-1 distance between two **sorted** samples (the reference first): the area
/// between their ECDFs, as `scipy.stats.wasserstein_distance(u, v)`.
///
/// Between two window values the window ECDF is a constant `c`, and the reference points
/// there are summed in one tight loop of `|F_ref - c| * gap` terms. Tied points need no
/// special case: they add zero-width segments.
pub fn wasserstein_sorted(r: &[f64], w: &[f64]) -> f64 {
    let (n1, n2) = (r.len(), w.len());
    if n1 == 0 || n2 == 0 {
        return f64::NAN;
    }
    let (f1, f2) = (n1 as f64, n2 as f64);
    let inv1 = 1.0 / f1;
    // Sum over reference points r[j..end): on [x, r[j]) the reference ECDF is j/n1.
    // Four partial sums break the add-latency chain of one accumulator (4x faster on
    // long blocks); the order differs from a plain sum by rounding only (~1e-16).
    let block = |j: usize, end: usize, x: f64, c: f64| -> f64 {
        if j >= end {
            return 0.0;
        }
        let term = |k: usize, prev: f64| (k as f64 * inv1 - c).abs() * (r[k] - prev);
        let mut acc = [term(j, x), 0.0, 0.0, 0.0];
        let mut k = j + 1;
        while k + 4 <= end {
            acc[0] += term(k, r[k - 1]);
            acc[1] += term(k + 1, r[k]);
            acc[2] += term(k + 2, r[k + 1]);
            acc[3] += term(k + 3, r[k + 2]);
            k += 4;
        }
        while k < end {
            acc[0] += term(k, r[k - 1]);
            k += 1;
        }
        (acc[0] + acc[1]) + (acc[2] + acc[3])
    };
    let mut area = 0.0;
    let (mut i, mut j) = (0usize, 0usize);
    let mut x = r[0].min(w[0]);
    while i < n2 {
        let v = w[i];
        let c = i as f64 / f2;
        let end = gallop(r, j, |y| y < v);
        area += block(j, end, x, c);
        if end > j {
            x = r[end - 1];
        }
        area += (end as f64 / f1 - c).abs() * (v - x);
        while i < n2 && w[i] <= v {
            i += 1;
        }
        j = gallop(r, end, |y| y <= v);
        x = v;
    }
    area + block(j, n1, x, 1.0)
}

/// Sort finite floats ascending, fast: as order-preserving integer keys (sign flipped for
/// positives, all bits for negatives), which sort with plain integer compares.
pub fn sort_floats(v: &mut [f64]) {
    let mut keys: Vec<u64> = v.iter().map(|&x| order_key(x)).collect();
    bucket_sort(&mut keys);
    for (x, k) in v.iter_mut().zip(keys) {
        *x = from_order_key(k);
    }
}

/// Sort keys by one counting pass over their top bits (as many buckets as keys, spread
/// over the keys' actual range), then each bucket on its own: a sample's values fill
/// the buckets a few each, so this beats a comparison sort about 1.5 times; a bucket
/// that takes many keys is sorted by comparison, so a skewed sample costs no more than
/// one extra pass.
fn bucket_sort(keys: &mut Vec<u64>) {
    let n = keys.len();
    if n < 256 {
        keys.sort_unstable();
        return;
    }
    let (lo, hi) = keys
        .iter()
        .fold((u64::MAX, 0), |(lo, hi), &k| (lo.min(k), hi.max(k)));
    let range = hi - lo;
    if range == 0 {
        return;
    }
    let bits = n.next_power_of_two().trailing_zeros();
    let shift = (64 - range.leading_zeros()).saturating_sub(bits);
    let bucket = |k: u64| ((k - lo) >> shift) as usize;
    let mut ends = vec![0u32; (range >> shift) as usize + 2];
    for &k in keys.iter() {
        ends[bucket(k) + 1] += 1;
    }
    for b in 1..ends.len() {
        ends[b] += ends[b - 1];
    }
    let mut sorted = vec![0u64; n];
    for &k in keys.iter() {
        let b = bucket(k);
        sorted[ends[b] as usize] = k;
        ends[b] += 1;
    }
    // Now ends[b] is the end of bucket b (and the start of bucket b + 1).
    let mut start = 0;
    for &end in &ends[..ends.len() - 1] {
        let part = &mut sorted[start..end as usize];
        if part.len() <= 16 {
            for i in 1..part.len() {
                let k = part[i];
                let mut j = i;
                while j > 0 && part[j - 1] > k {
                    part[j] = part[j - 1];
                    j -= 1;
                }
                part[j] = k;
            }
        } else {
            part.sort_unstable();
        }
        start = end as usize;
    }
    *keys = sorted;
}
/// Population standard deviation (ddof = 0), as `numpy.std`.
pub fn std_dev(values: &[f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    (values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64).sqrt()
}

/// Floor for the reference standard deviation when normalising Wasserstein (as Evidently),
/// so a constant reference column does not divide by zero.
pub const WASSERSTEIN_MIN_STD: f64 = 1e-3;

/// Benjamini-Hochberg adjusted p-values, in input order; as
/// `scipy.stats.false_discovery_control(ps, method="bh")`. NaNs stay NaN and do not count.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    let m = idx.len() as f64;
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 1.0f64;
    for (rank, &i) in idx.iter().enumerate().rev() {
        let adj = (p[i] * m / (rank + 1) as f64).min(1.0);
        running = running.min(adj);
        // Never below the raw p-value (p*m/m can round one ulp under p).
        out[i] = running.max(p[i]);
    }
    out
}

/// Proportions per bin of a **sorted** sample: one binary search per edge.
pub fn bin_proportions_sorted(edges: &[f64], sorted: &[f64]) -> Vec<f64> {
    let n = sorted.len().max(1) as f64;
    let mut out = Vec::with_capacity(edges.len() + 1);
    let mut below = 0usize;
    for &e in edges {
        // Bin of v is #{edges e : e < v}: values <= e fall at or below this edge.
        let upto = below + sorted[below..].partition_point(|&v| v <= e);
        out.push((upto - below) as f64 / n);
        below = upto;
    }
    out.push((sorted.len() - below) as f64 / n);
    out
}

/// Result of a chi-squared test of homogeneity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chi2Result {
    /// Pearson's statistic.
    pub statistic: f64,
    /// Upper-tail p-value.
    pub p_value: f64,
    /// Degrees of freedom.
    pub dof: u64,
}

/// Chi-squared test of the 2 x k table (reference counts, window counts), as
/// `scipy.stats.chi2_contingency(table)` with its default Yates continuity correction
/// when there is one degree of freedom. Categories empty in both rows are dropped (scipy
/// refuses zero expected counts); one remaining category gives statistic 0, p-value 1.
pub fn chi2_contingency(reference: &[u64], window: &[u64]) -> Chi2Result {
    let cols: Vec<(f64, f64)> = reference
        .iter()
        .zip(window)
        .filter(|(r, w)| **r + **w > 0)
        .map(|(&r, &w)| (r as f64, w as f64))
        .collect();
    let nr: f64 = cols.iter().map(|c| c.0).sum();
    let nw: f64 = cols.iter().map(|c| c.1).sum();
    let total = nr + nw;
    let k = cols.len();
    if k < 2 || nr == 0.0 || nw == 0.0 {
        return Chi2Result {
            statistic: 0.0,
            p_value: 1.0,
            dof: 0,
        };
    }
    let dof = (k - 1) as u64;
    let yates = dof == 1;
    let mut stat = 0.0;
    for &(r, w) in &cols {
        let col = r + w;
        for (obs, row) in [(r, nr), (w, nw)] {
            let exp = row * col / total;
            let mut o = obs;
            if yates {
                let diff = exp - o;
                o += diff.signum() * diff.abs().min(0.5);
            }
            stat += (o - exp) * (o - exp) / exp;
        }
    }
    let p_value = match ChiSquared::new(dof as f64) {
        Ok(dist) => dist.sf(stat),
        Err(_) => f64::NAN,
    };
    Chi2Result {
        statistic: stat,
        p_value,
        dof,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_of_identical_and_disjoint() {
        let p = [0.5, 0.5, 0.0];
        let q = [0.0, 0.0, 1.0];
        assert_eq!(jensen_shannon(&p, &p), 0.0);
        assert!((jensen_shannon(&p, &q) - 1.0).abs() < 1e-15);
        assert_eq!(hellinger(&p, &p), 0.0);
        assert!((hellinger(&p, &q) - 1.0).abs() < 1e-15);
        assert_eq!(l_infinity(&p, &q), 1.0);
        assert_eq!(wasserstein_sorted(&[0.0, 1.0], &[0.0, 1.0]), 0.0);
        assert_eq!(wasserstein_sorted(&[0.0], &[2.5]), 2.5);
    }

    #[test]
    fn binning_sorted_equals_binning_unsorted() {
        let mut rng = crate::synth::Rng::new(3);
        let mut r: Vec<f64> = (0..3000).map(|_| (rng.normal() * 4.0).round()).collect();
        r.sort_by(f64::total_cmp);
        let edges = quantile_edges(&r, 10);
        let mut w: Vec<f64> = (0..700)
            .map(|_| (rng.normal() * 4.0 + 1.0).round())
            .collect();
        let unsorted = bin_proportions(&edges, &w);
        w.sort_by(f64::total_cmp);
        assert_eq!(bin_proportions_sorted(&edges, &w), unsorted);
    }

    #[test]
    fn sort_floats_orders_like_total_cmp() {
        let mut rng = crate::synth::Rng::new(9);
        let mut extremes: Vec<f64> = (0..2000).map(|_| rng.normal() * 1e3).collect();
        extremes.extend([0.0, -0.0, 1e-300, -1e-300, f64::MAX, f64::MIN, 5.0, 5.0]);
        // Shapes that fill the buckets evenly, unevenly, or all into one.
        let shapes: Vec<Vec<f64>> = vec![
            extremes,
            (0..5000).map(|_| rng.normal() * 2.0 + 10.0).collect(),
            (0..5000).map(|_| (rng.normal() * 3.0).exp()).collect(),
            (0..5000).map(|_| (rng.normal() * 3.0).round()).collect(),
            (0..4999).map(|_| rng.normal()).chain([1e300]).collect(),
            vec![7.5; 3000],
            (0..300).map(|i| f64::from(300 - i)).collect(),
            (0..100).map(|_| rng.normal()).collect(),
        ];
        for mut v in shapes {
            let mut a = v.clone();
            a.sort_by(f64::total_cmp);
            sort_floats(&mut v);
            assert_eq!(
                a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn bh_keeps_order_and_caps_at_one() {
        let adj = benjamini_hochberg(&[0.01, 0.04, f64::NAN, 0.03, 0.9]);
        assert!((adj[0] - 0.04).abs() < 1e-15);
        assert!((adj[1] - 0.04 * 4.0 / 3.0).abs() < 1e-15);
        assert!(adj[2].is_nan());
        assert!((adj[3] - 0.04 * 4.0 / 3.0).abs() < 1e-15);
        assert_eq!(adj[4], 0.9);
    }

    /// The straightforward evaluation at every point of both samples, as scipy does, but
    /// in exact integers: max |ca/n1 - cb/n2| = max |ca*n2 - cb*n1| / (n1*n2).
    fn ks_d_reference(a: &[f64], b: &[f64]) -> f64 {
        let (n1, n2) = (a.len() as i64, b.len() as i64);
        let mut all: Vec<f64> = a.iter().chain(b).copied().collect();
        all.sort_by(f64::total_cmp);
        let max = all
            .iter()
            .map(|&v| {
                let ca = a.partition_point(|&x| x <= v) as i64;
                let cb = b.partition_point(|&x| x <= v) as i64;
                (ca * n2 - cb * n1).abs()
            })
            .max()
            .unwrap_or(0);
        max as f64 / (n1 as f64 * n2 as f64)
    }

    fn wasserstein_reference(a: &[f64], b: &[f64]) -> f64 {
        let (n1, n2) = (a.len() as f64, b.len() as f64);
        let mut all: Vec<f64> = a.iter().chain(b).copied().collect();
        all.sort_by(f64::total_cmp);
        all.windows(2)
            .map(|p| {
                let fa = a.partition_point(|&x| x <= p[0]) as f64 / n1;
                let fb = b.partition_point(|&x| x <= p[0]) as f64 / n2;
                (fa - fb).abs() * (p[1] - p[0])
            })
            .sum()
    }

    #[test]
    fn fast_ks_and_wasserstein_equal_the_plain_merge() {
        let mut rng = crate::synth::Rng::new(5);
        for case in 0..400 {
            let n1 = 1 + (rng.next_u64() % 400) as usize;
            let n2 = 1 + (rng.next_u64() % [60, 600][case % 2]) as usize;
            // Coarse values force ties within and across samples.
            let scale = [1.0, 4.0, 100.0][case % 3];
            let shift = rng.normal();
            let mut a: Vec<f64> = (0..n1)
                .map(|_| (rng.normal() * scale).round() / scale)
                .collect();
            let mut b: Vec<f64> = (0..n2)
                .map(|_| ((rng.normal() + shift) * scale).round() / scale)
                .collect();
            a.sort_by(f64::total_cmp);
            b.sort_by(f64::total_cmp);
            let ks = ks_2samp_sorted(&a, &b);
            assert_eq!(ks.statistic, ks_d_reference(&a, &b), "case {case}");
            // The same test of the window in any order, bit for bit.
            let mut shuffled = b.clone();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            let index = KsIndex::new(&a).expect("an index");
            assert_eq!(ks_2samp(&a, &index, &shuffled), ks, "case {case}");
            let w = wasserstein_sorted(&a, &b);
            let e = wasserstein_reference(&a, &b);
            assert!(
                (w - e).abs() <= 1e-12 * e.abs().max(1.0),
                "case {case}: {w} vs {e}"
            );
        }
    }

    #[test]
    fn ks_index_takes_any_range() {
        let mut rng = crate::synth::Rng::new(11);
        let mut cases: Vec<(Vec<f64>, Vec<f64>)> = vec![
            // A constant reference; a window beyond it on both sides.
            (vec![2.5; 3000], vec![2.5, 1.0, 9.0, 2.5, -0.0]),
            // A range wider than a double can hold (`hi - lo` overflows): one part.
            (
                vec![-1e308, -1.0, 0.0, 1.0, 1e308],
                vec![f64::MAX, -f64::MAX, 0.5],
            ),
            // Tiny magnitudes around zero, signed zeros.
            (
                (0..5000).map(|i| f64::from(i - 2500) * 1e-300).collect(),
                vec![0.0, -0.0, 1e-300, -1e-300, 5e-298, 1.0],
            ),
        ];
        for shift in [0.0, 0.3, 3.0] {
            // Standardized data straddling zero, as most scaled features are.
            let r: Vec<f64> = (0..20_000).map(|_| rng.normal()).collect();
            let w: Vec<f64> = (0..2_000).map(|_| rng.normal() + shift).collect();
            cases.push((r, w));
        }
        for (k, (mut r, w)) in cases.into_iter().enumerate() {
            r.sort_by(f64::total_cmp);
            let mut sorted = w.clone();
            sorted.sort_by(f64::total_cmp);
            let index = KsIndex::new(&r).expect("an index");
            assert_eq!(
                ks_2samp(&r, &index, &w),
                ks_2samp_sorted(&r, &sorted),
                "case {k}"
            );
            assert_eq!(
                ks_2samp_sorted(&r, &sorted).statistic,
                ks_d_reference(&r, &sorted),
                "case {k}"
            );
        }
    }

    #[test]
    fn ks_identical_samples() {
        let a: Vec<f64> = (0..100).map(f64::from).collect();
        let r = ks_2samp_sorted(&a, &a);
        assert_eq!(r.statistic, 0.0);
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn ks_disjoint_samples() {
        let a: Vec<f64> = (0..50).map(f64::from).collect();
        let b: Vec<f64> = (100..150).map(f64::from).collect();
        let r = ks_2samp_sorted(&a, &b);
        assert_eq!(r.statistic, 1.0);
        assert!(r.p_value < 1e-20, "{}", r.p_value);
    }

    #[test]
    fn psi_of_equal_proportions_is_zero() {
        assert_eq!(psi(&[0.5, 0.5], &[0.5, 0.5]), 0.0);
        assert!(psi(&[0.5, 0.5], &[0.9, 0.1]) > 0.25);
    }

    #[test]
    fn edges_and_bins() {
        let r: Vec<f64> = (1..=10).map(f64::from).collect();
        let e = quantile_edges(&r, 2);
        assert_eq!(e, vec![5.5]);
        assert_eq!(bin_of(&e, 5.5), 0);
        assert_eq!(bin_of(&e, 5.6), 1);
    }

    #[test]
    fn chi2_single_category_is_no_evidence() {
        let r = chi2_contingency(&[10, 0], &[5, 0]);
        assert_eq!((r.statistic, r.p_value, r.dof), (0.0, 1.0, 0));
    }
}
