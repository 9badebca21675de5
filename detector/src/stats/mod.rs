//! Drift statistics. Pure functions over samples, no I/O, no allocation on the hot path
//! beyond what a method needs. Every function here is checked against scipy/numpy values
//! in `detector/tests/oracle.rs` (fixtures made by `detector/tests/oracle/make_fixtures.py`).

mod bins;
mod chi2;
mod distance;
mod fdr;
pub mod kolmogorov;
mod ks;

pub use bins::*;
pub use chi2::*;
pub use distance::*;
pub use fdr::*;
pub use ks::*;

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
