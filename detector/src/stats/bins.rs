//! Sorting floats, quantiles, quantile bins and the proportions in them, standard
//! deviation: what the reference and the binned distances are built from.

/// A float's bits as an integer in its total order (the order of `f64::total_cmp`).
#[inline(always)]
pub(crate) fn order_key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// The float of an [`order_key`].
#[inline(always)]
pub(crate) fn from_order_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
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
#[inline]
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
pub(crate) fn bucket_sort(keys: &mut Vec<u64>) {
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
