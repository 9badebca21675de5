//! False-discovery-rate control across the p-values of one window.

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
