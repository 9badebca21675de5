//! Drift statistics against scipy/numpy: every expected value in `oracle/fixtures.json`
//! was computed by `oracle/make_fixtures.py`, never by driftwatch.

use driftwatch_detector::stats::{self, kolmogorov};
use serde_json::Value;

fn fixtures() -> Value {
    serde_json::from_str(include_str!("oracle/fixtures.json")).expect("fixtures are JSON")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn counts(v: &Value) -> Vec<u64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("count"))
        .collect()
}

/// Relative difference, with an absolute floor for values near zero.
fn close(actual: f64, expected: f64, rel: f64, abs_floor: f64) -> bool {
    if actual == expected {
        return true;
    }
    let diff = (actual - expected).abs();
    diff <= abs_floor || diff <= rel * expected.abs()
}

#[test]
fn kstwo_matches_scipy_over_the_grid() {
    let f = fixtures();
    let mut worst = (0.0f64, String::new());
    let mut failures = Vec::new();
    for case in f["kstwo"].as_array().expect("cases") {
        let n = case["n"].as_u64().expect("n");
        let x = case["x"].as_f64().expect("x");
        for (key, cdf) in [("sf", false), ("cdf", true)] {
            let expected = case[key].as_f64().expect("value");
            let actual = kolmogorov::kolmogn(n, x, cdf);
            let rel = if expected == 0.0 {
                actual.abs()
            } else {
                ((actual - expected) / expected).abs()
            };
            if rel > worst.0 && expected > 1e-300 {
                worst = (rel, format!("{key}(n={n}, x={x}): {actual} vs {expected}"));
            }
            if !close(actual, expected, 1e-9, 1e-300) {
                failures.push(format!(
                    "{key}(n={n}, x={x}): {actual:e} vs scipy {expected:e}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("worst relative error: {:e} at {}", worst.0, worst.1);
}

#[test]
fn ks_2samp_matches_scipy() {
    let f = fixtures();
    for case in f["ks_2samp"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let mut a = floats(&case["reference"]);
        let mut b = floats(&case["window"]);
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        let r = stats::ks_2samp_sorted(&a, &b);
        let (d, p) = (
            case["statistic"].as_f64().expect("d"),
            case["p_value"].as_f64().expect("p"),
        );
        assert!(
            close(r.statistic, d, 1e-12, 0.0),
            "{name}: D {} vs {d}",
            r.statistic
        );
        assert!(
            close(r.p_value, p, 1e-9, 1e-300),
            "{name}: p {:e} vs scipy {p:e}",
            r.p_value
        );
    }
}

#[test]
fn psi_matches_numpy() {
    let f = fixtures();
    for case in f["psi"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let mut reference = floats(&case["reference"]);
        reference.sort_by(f64::total_cmp);
        let window = floats(&case["window"]);
        let edges = stats::quantile_edges(&reference, 10);
        let expected_edges = floats(&case["edges"]);
        assert_eq!(edges.len(), expected_edges.len(), "{name}: edges {edges:?}");
        for (e, x) in edges.iter().zip(&expected_edges) {
            assert!(close(*e, *x, 1e-12, 1e-15), "{name}: edge {e} vs {x}");
        }
        let value = stats::psi(
            &stats::bin_proportions(&edges, &reference),
            &stats::bin_proportions(&edges, &window),
        );
        let expected = case["psi"].as_f64().expect("psi");
        assert!(
            close(value, expected, 1e-9, 1e-15),
            "{name}: PSI {value} vs {expected}"
        );
    }
}

#[test]
fn chi2_contingency_matches_scipy() {
    let f = fixtures();
    for case in f["chi2_contingency"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let r = stats::chi2_contingency(&counts(&case["reference"]), &counts(&case["window"]));
        let stat = case["statistic"].as_f64().expect("stat");
        let p = case["p_value"].as_f64().expect("p");
        assert_eq!(r.dof, case["dof"].as_u64().expect("dof"), "{name}: dof");
        assert!(
            close(r.statistic, stat, 1e-12, 1e-15),
            "{name}: chi2 {} vs {stat}",
            r.statistic
        );
        assert!(
            close(r.p_value, p, 1e-9, 1e-300),
            "{name}: p {:e} vs scipy {p:e}",
            r.p_value
        );
    }
}

#[test]
fn distances_match_scipy_and_numpy() {
    let f = fixtures();
    for case in f["distances"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let mut reference = floats(&case["reference"]);
        reference.sort_by(f64::total_cmp);
        let mut window = floats(&case["window"]);
        window.sort_by(f64::total_cmp);
        let edges = stats::quantile_edges(&reference, 10);
        let (rp, wp) = (
            stats::bin_proportions(&edges, &reference),
            stats::bin_proportions(&edges, &window),
        );
        let want = |k: &str| case[k].as_f64().expect(k);
        let js = stats::jensen_shannon(&rp, &wp);
        assert!(
            close(js, want("jensen_shannon"), 1e-9, 1e-12),
            "{name}: JS {js} vs {}",
            want("jensen_shannon")
        );
        let h = stats::hellinger(&rp, &wp);
        assert!(
            close(h, want("hellinger"), 1e-9, 1e-12),
            "{name}: Hellinger {h} vs {}",
            want("hellinger")
        );
        let l = stats::l_infinity(&rp, &wp);
        assert!(
            close(l, want("l_infinity"), 1e-12, 1e-15),
            "{name}: Linf {l} vs {}",
            want("l_infinity")
        );
        let w = stats::wasserstein_sorted(&reference, &window);
        assert!(
            close(w, want("wasserstein"), 1e-9, 1e-15),
            "{name}: W1 {w} vs {}",
            want("wasserstein")
        );
        let wn = w / stats::std_dev(&reference).max(stats::WASSERSTEIN_MIN_STD);
        assert!(
            close(wn, want("wasserstein_normalised"), 1e-9, 1e-15),
            "{name}: W1/std {wn} vs {}",
            want("wasserstein_normalised")
        );
    }
}

#[test]
fn categorical_distances_match_scipy() {
    let f = fixtures();
    for case in f["categorical_distances"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let props = |v: &Value| {
            let c = counts(v);
            let t: u64 = c.iter().sum();
            c.iter().map(|&x| x as f64 / t as f64).collect::<Vec<_>>()
        };
        let (r, w) = (props(&case["reference"]), props(&case["window"]));
        let want = |k: &str| case[k].as_f64().expect(k);
        assert!(
            close(
                stats::jensen_shannon(&r, &w),
                want("jensen_shannon"),
                1e-9,
                1e-12
            ),
            "{name}: JS"
        );
        assert!(
            close(stats::hellinger(&r, &w), want("hellinger"), 1e-9, 1e-12),
            "{name}: Hellinger"
        );
        assert!(
            close(stats::l_infinity(&r, &w), want("l_infinity"), 1e-12, 1e-15),
            "{name}: Linf"
        );
    }
}

#[test]
fn benjamini_hochberg_matches_scipy() {
    let f = fixtures();
    for case in f["benjamini_hochberg"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let adj = stats::benjamini_hochberg(&floats(&case["p"]));
        for (a, e) in adj.iter().zip(floats(&case["adjusted"])) {
            assert!(close(*a, e, 1e-12, 1e-300), "{name}: {a:e} vs scipy {e:e}");
        }
    }
}
