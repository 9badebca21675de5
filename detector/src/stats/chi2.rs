//! Chi-squared test of homogeneity on a reference-vs-window contingency table.

use statrs::distribution::{ChiSquared, ContinuousCDF};

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
