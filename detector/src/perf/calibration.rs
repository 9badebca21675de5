//! Calibrating a binary model's scores on the reference, as NannyML's CBPE does:
//! isotonic regression (scikit-learn's `IsotonicRegression(out_of_bounds="clip")`:
//! equal scores merged into their mean outcome, pool-adjacent-violators, linear
//! interpolation between the fitted points, clipped outside them), used only when it
//! lowers the expected calibration error on held-out parts of the reference.

use serde::{Deserialize, Serialize};

/// A fitted isotonic map from score to probability.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Isotonic {
    /// Increasing scores where the fitted value changes (block ends).
    pub x: Vec<f64>,
    /// The fitted probability at each.
    pub y: Vec<f64>,
    /// Per equal-width bucket of [x0, xn], the first knot in it or after: a
    /// prediction searches only its bucket's knots (made on first use).
    #[serde(skip)]
    buckets: std::sync::OnceLock<Vec<u32>>,
}

impl PartialEq for Isotonic {
    fn eq(&self, other: &Self) -> bool {
        self.x == other.x && self.y == other.y
    }
}

/// Buckets of the knot index.
const BUCKETS: usize = 4096;

impl Isotonic {
    /// Fit on (score, outcome) pairs. `None` without pairs.
    pub fn fit(pairs: &[(f64, bool)]) -> Option<Isotonic> {
        if pairs.is_empty() {
            return None;
        }
        let mut sorted: Vec<(f64, bool)> = pairs.to_vec();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Equal scores become one point: their mean outcome, weighted by their count.
        let mut xs: Vec<f64> = Vec::new();
        let mut ys: Vec<f64> = Vec::new();
        let mut ws: Vec<f64> = Vec::new();
        for &(s, y) in &sorted {
            let y = f64::from(u8::from(y));
            if xs.last() == Some(&s) {
                let i = xs.len() - 1;
                ys[i] += y;
                ws[i] += 1.0;
            } else {
                xs.push(s);
                ys.push(y);
                ws.push(1.0);
            }
        }
        for (y, w) in ys.iter_mut().zip(&ws) {
            *y /= w;
        }
        // Pool adjacent violators: blocks of (mean, weight, first index).
        let mut blocks: Vec<(f64, f64, usize)> = Vec::with_capacity(xs.len());
        for (i, (&y, &w)) in ys.iter().zip(&ws).enumerate() {
            blocks.push((y, w, i));
            while blocks.len() >= 2 {
                let b = blocks[blocks.len() - 1];
                let a = blocks[blocks.len() - 2];
                if a.0 <= b.0 {
                    break;
                }
                let w = a.1 + b.1;
                let merged = ((a.0 * a.1 + b.0 * b.1) / w, w, a.2);
                blocks.pop();
                *blocks.last_mut().expect("two blocks") = merged;
            }
        }
        let mut fitted = vec![0.0; xs.len()];
        for (j, b) in blocks.iter().enumerate() {
            let end = blocks.get(j + 1).map_or(xs.len(), |n| n.2);
            fitted[b.2..end].fill(b.0);
        }
        // Keep the points where the value changes on either side (as scikit-learn).
        let n = xs.len();
        let keep = |i: usize| {
            i == 0 || i + 1 == n || fitted[i] != fitted[i - 1] || fitted[i] != fitted[i + 1]
        };
        let (x, y): (Vec<f64>, Vec<f64>) = (0..n)
            .filter(|&i| keep(i))
            .map(|i| (xs[i], fitted[i]))
            .unzip();
        Some(Isotonic {
            x,
            y,
            buckets: std::sync::OnceLock::new(),
        })
    }

    fn bucket_of(&self, s: f64) -> usize {
        let (lo, hi) = (self.x[0], self.x[self.x.len() - 1]);
        (((s - lo) / (hi - lo) * BUCKETS as f64) as usize).min(BUCKETS - 1)
    }

    fn buckets(&self) -> &[u32] {
        self.buckets.get_or_init(|| {
            let mut out = Vec::with_capacity(BUCKETS + 1);
            let mut j = 0;
            for b in 0..=BUCKETS {
                while j < self.x.len() && self.bucket_of(self.x[j]) < b {
                    j += 1;
                }
                out.push(j as u32);
            }
            out
        })
    }

    /// The calibrated probability of a score.
    pub fn predict(&self, s: f64) -> f64 {
        let n = self.x.len();
        if n == 1 || s <= self.x[0] {
            return self.y[0];
        }
        if s >= self.x[n - 1] {
            return self.y[n - 1];
        }
        // The first knot above s: among the knots of s's bucket (those of earlier
        // buckets lie below s, of later ones above).
        let b = self.bucket_of(s);
        let buckets = self.buckets();
        let (from, to) = (buckets[b] as usize, buckets[b + 1] as usize);
        let j = from + self.x[from..to].partition_point(|&x| x <= s);
        let (x0, x1, y0, y1) = (self.x[j - 1], self.x[j], self.y[j - 1], self.y[j]);
        if x1 == x0 {
            return y1;
        }
        y0 + (s - x0) * (y1 - y0) / (x1 - x0)
    }
}

/// The expected calibration error as NannyML's `needs_calibration` computes it:
/// pairs sorted by probability, cut into `bins` runs of equal count.
fn ece_equal_count(pairs: &mut [(f64, bool)], bins: usize) -> f64 {
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = pairs.len();
    let bins = if n <= 2 * bins { n / 2 } else { bins }.max(1);
    let per = n / bins;
    let mut total = 0.0;
    for b in 0..bins {
        let start = b * per;
        let end = if b + 1 == bins { n } else { start + per };
        let part = &pairs[start..end];
        if part.is_empty() {
            continue;
        }
        let p: f64 = part.iter().map(|q| q.0).sum::<f64>() / part.len() as f64;
        let y: f64 = part.iter().filter(|q| q.1).count() as f64 / part.len() as f64;
        total += part.len() as f64 / n as f64 * (p - y).abs();
    }
    total
}

/// Whether calibrating helps, as NannyML decides it: no with one class or an AUC above
/// 0.999; else fit on nine tenths and test on the tenth left out, ten times, and
/// compare the held-out ECE over ten equal-count bins. Two differences, both so the
/// answer does not depend on chance: the tenths are every tenth pair (NannyML draws
/// them at random), and calibration must cut the ECE by at least a third (NannyML: any
/// cut; on scores already calibrated that is a coin toss, as calibrated values tie and
/// the equal-count bins then depend on the order of the ties: the ECE of a calibrated
/// model's calibrated reference moved from 0.0120 to 0.0127 with the sort alone).
pub fn needs_calibration(pairs: &[(f64, bool)]) -> bool {
    let pos = pairs.iter().filter(|p| p.1).count();
    if pos == 0 || pos == pairs.len() || pairs.len() < 20 {
        return false;
    }
    if super::metrics::roc_auc(pairs).is_some_and(|a| a > 0.999) {
        return false;
    }
    let mut raw = Vec::with_capacity(pairs.len());
    let mut calibrated = Vec::with_capacity(pairs.len());
    for fold in 0..10 {
        let train: Vec<(f64, bool)> = pairs
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 10 != fold)
            .map(|(_, p)| *p)
            .collect();
        let Some(iso) = Isotonic::fit(&train) else {
            return false;
        };
        for (_, &(s, y)) in pairs.iter().enumerate().filter(|(i, _)| i % 10 == fold) {
            raw.push((s, y));
            calibrated.push((iso.predict(s), y));
        }
    }
    3.0 * ece_equal_count(&mut calibrated, 10) < 2.0 * ece_equal_count(&mut raw, 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_pools_violators_and_interpolates_between_blocks() {
        // Outcomes 0 1 0 1 1 at scores .1 .2 .3 .4 .5: .2 and .3 pool to 0.5.
        let pairs = [
            (0.1, false),
            (0.2, true),
            (0.3, false),
            (0.4, true),
            (0.5, true),
        ];
        let iso = Isotonic::fit(&pairs).expect("pairs");
        assert_eq!(iso.predict(0.0), 0.0);
        assert_eq!(iso.predict(0.1), 0.0);
        assert_eq!(iso.predict(0.2), 0.5);
        assert_eq!(iso.predict(0.3), 0.5);
        assert!((iso.predict(0.15) - 0.25).abs() < 1e-15);
        assert!((iso.predict(0.35) - 0.75).abs() < 1e-15);
        assert_eq!(iso.predict(0.9), 1.0);
    }

    #[test]
    fn the_bucket_index_finds_the_same_knots_as_a_plain_search() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        // Clustered scores: many knots in few buckets, empty buckets elsewhere.
        let pairs: Vec<(f64, bool)> = (0..20_000)
            .map(|_| {
                let p = next();
                let s = if p < 0.5 { 0.3 + p * 1e-3 } else { p };
                ((s * 1e6).round() / 1e6, next() < p)
            })
            .collect();
        let iso = Isotonic::fit(&pairs).expect("pairs");
        assert!(iso.x.len() > 100, "{} knots", iso.x.len());
        let plain = |s: f64| {
            let n = iso.x.len();
            if s <= iso.x[0] {
                return iso.y[0];
            }
            if s >= iso.x[n - 1] {
                return iso.y[n - 1];
            }
            let j = iso.x.partition_point(|&x| x <= s);
            let (x0, x1, y0, y1) = (iso.x[j - 1], iso.x[j], iso.y[j - 1], iso.y[j]);
            y0 + (s - x0) * (y1 - y0) / (x1 - x0)
        };
        for _ in 0..100_000 {
            let s = next() * 1.2 - 0.1;
            assert_eq!(iso.predict(s).to_bits(), plain(s).to_bits(), "{s}");
        }
        for &x in &iso.x {
            assert_eq!(iso.predict(x).to_bits(), plain(x).to_bits(), "knot {x}");
        }
    }

    #[test]
    fn equal_scores_are_one_point_at_their_mean() {
        let pairs = [(0.5, true), (0.5, false), (0.5, false), (0.9, true)];
        let iso = Isotonic::fit(&pairs).expect("pairs");
        assert!((iso.predict(0.5) - 1.0 / 3.0).abs() < 1e-15);
        assert_eq!(iso.predict(0.9), 1.0);
    }

    #[test]
    fn a_calibrated_model_needs_none_a_squeezed_one_does() {
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut fair = Vec::new();
        let mut squeezed = Vec::new();
        for _ in 0..5000 {
            let p = next();
            let y = next() < p;
            fair.push((p, y));
            // Every probability pulled towards one half: miscalibrated, same ranking.
            squeezed.push((0.4 + 0.2 * p, y));
        }
        assert!(!needs_calibration(&fair));
        assert!(needs_calibration(&squeezed));
    }
}
