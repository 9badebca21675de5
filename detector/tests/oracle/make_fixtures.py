#!/usr/bin/env python3
"""Expected values for driftwatch's drift statistics, computed by scipy and numpy.

Run by hand (not in CI) when a method is added; commit the output:

    python3 detector/tests/oracle/make_fixtures.py > detector/tests/oracle/fixtures.json

Nothing here calls driftwatch: the expected values come from scipy and numpy only, so the
Rust tests compare against an independent implementation. Versions used are recorded in
the output.
"""
import json
import sys

import numpy as np
import scipy
from scipy import stats

rng = np.random.default_rng(20261123)


def r6(a):
    # Rounded to 6 decimals: realistic feature values, and ties happen.
    return [round(float(x), 6) for x in a]


def ks_cases():
    cases = []
    specs = [
        ("tiny", rng.normal(0, 1, 8), rng.normal(0, 1, 11)),
        ("small_shift", rng.normal(0, 1, 40), rng.normal(0.8, 1, 35)),
        ("equal_n", rng.normal(0, 1, 200), rng.normal(0.1, 1, 200)),
        ("ties_integers", rng.integers(0, 5, 300).astype(float), rng.integers(0, 6, 250).astype(float)),
        ("constant_vs_constant", np.full(50, 3.0), np.full(60, 3.0)),
        ("constant_vs_spread", np.full(50, 3.0), rng.normal(3, 1, 60)),
        ("medium_no_drift", rng.normal(10, 2, 2000), rng.normal(10, 2, 1000)),
        ("medium_drift", rng.normal(10, 2, 2000), rng.normal(10.3, 2, 1000)),
        ("lognormal_scale", rng.lognormal(0, 1, 3000), rng.lognormal(0, 1.2, 1500)),
        ("unbalanced", rng.normal(0, 1, 20000), rng.normal(0, 1, 40)),
        ("large_no_drift", rng.normal(0, 1, 20000), rng.normal(0, 1, 5000)),
        ("large_small_shift", rng.normal(0, 1, 20000), rng.normal(0.05, 1, 5000)),
        ("disjoint", rng.uniform(0, 1, 100), rng.uniform(2, 3, 80)),
    ]
    for name, a, b in specs:
        a, b = r6(a), r6(b)
        res = stats.ks_2samp(a, b, method="asymp")
        cases.append({"name": name, "reference": a, "window": b,
                      "statistic": float(res.statistic), "p_value": float(res.pvalue)})
    return cases


def kstwo_grid():
    out = []
    for n in [1, 2, 5, 10, 50, 100, 140, 141, 500, 1000, 4000, 10000, 100000, 250000]:
        for x in [0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3, 0.45,
                  0.5, 0.6, 0.8, 0.95]:
            out.append({"n": n, "x": x, "sf": float(stats.kstwo.sf(x, n)),
                        "cdf": float(stats.kstwo.cdf(x, n))})
    return out


def psi_numpy(ref, win, bins=10, eps=1e-4):
    ref = np.sort(np.asarray(ref))
    edges = np.unique(np.quantile(ref, np.arange(1, bins) / bins))
    # bin = number of edges strictly below the value: (-inf, e1], (e1, e2], ...
    rb = np.searchsorted(edges, ref, side="left")
    wb = np.searchsorted(edges, np.asarray(win), side="left")
    k = len(edges) + 1
    rp = np.bincount(rb, minlength=k) / len(ref)
    wp = np.bincount(wb, minlength=k) / len(win)
    rp = np.where(rp > 0, rp, eps)
    wp = np.where(wp > 0, wp, eps)
    return float(np.sum((wp - rp) * np.log(wp / rp))), [float(e) for e in edges]


def psi_cases():
    cases = []
    specs = [
        ("no_drift", rng.normal(0, 1, 5000), rng.normal(0, 1, 1000)),
        ("mean_shift", rng.normal(0, 1, 5000), rng.normal(0.5, 1, 1000)),
        ("heavy_ties", rng.integers(0, 3, 2000).astype(float), rng.integers(0, 4, 700).astype(float)),
        ("empty_bins", rng.uniform(0, 1, 1000), rng.uniform(0, 0.3, 500)),
        ("constant_reference", np.full(100, 1.0), rng.normal(1, 1, 100)),
    ]
    for name, a, b in specs:
        a, b = r6(a), r6(b)
        value, edges = psi_numpy(a, b)
        cases.append({"name": name, "reference": a, "window": b, "psi": value, "edges": edges})
    return cases


def chi2_cases():
    cases = []
    specs = [
        ("two_categories_yates", [120, 80], [40, 60]),
        ("three_categories", [500, 300, 200], [90, 60, 50]),
        ("shifted", [500, 300, 200], [50, 60, 90]),
        ("unseen_category", [500, 300, 0], [80, 60, 10]),
        ("sparse", [3, 1, 0, 7, 2], [1, 0, 2, 5, 0]),
        ("large_table", [9000, 5000, 3000, 2000, 1000, 500, 250, 125],
                        [450, 260, 140, 110, 45, 20, 15, 10]),
        ("strong_drift", [1000, 1000], [10, 300]),
    ]
    for name, ref, win in specs:
        table = np.array([ref, win])
        keep = table.sum(axis=0) > 0
        stat, p, dof, _ = stats.chi2_contingency(table[:, keep])
        cases.append({"name": name, "reference": ref, "window": win,
                      "statistic": float(stat), "p_value": float(p), "dof": int(dof)})
    return cases


def distance_cases():
    """JS (base 2), Hellinger and L-infinity on proportions; Wasserstein on raw samples."""
    from scipy.spatial.distance import jensenshannon
    cases = []
    specs = [
        ("no_drift", rng.normal(0, 1, 5000), rng.normal(0, 1, 1000)),
        ("mean_shift", rng.normal(0, 1, 5000), rng.normal(0.5, 1, 1000)),
        ("scale_change", rng.normal(5, 1, 3000), rng.normal(5, 2, 800)),
        ("heavy_ties", rng.integers(0, 4, 2000).astype(float), rng.integers(1, 5, 700).astype(float)),
        ("empty_bins", rng.uniform(0, 1, 1000), rng.uniform(0, 0.3, 500)),
        ("constant_reference", np.full(200, 2.0), rng.normal(2, 1, 150)),
        ("tiny", rng.normal(0, 1, 12), rng.normal(1, 1, 9)),
    ]
    for name, a, b in specs:
        a, b = np.array(r6(a)), np.array(r6(b))
        ref = np.sort(a)
        edges = np.unique(np.quantile(ref, np.arange(1, 10) / 10))
        k = len(edges) + 1
        rp = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=k) / len(ref)
        wp = np.bincount(np.searchsorted(edges, b, side="left"), minlength=k) / len(b)
        w = stats.wasserstein_distance(a, b)
        cases.append({
            "name": name, "reference": a.tolist(), "window": b.tolist(),
            "jensen_shannon": float(jensenshannon(rp, wp, base=2)),
            "hellinger": float(np.sqrt(np.sum((np.sqrt(rp) - np.sqrt(wp)) ** 2)) / np.sqrt(2)),
            "l_infinity": float(np.max(np.abs(rp - wp))),
            "wasserstein": float(w),
            "wasserstein_normalised": float(w / max(np.std(a), 1e-3)),
        })
    return cases


def categorical_distance_cases():
    from scipy.spatial.distance import jensenshannon
    cases = []
    for name, ref, win in [
        ("same", [500, 300, 200], [50, 30, 20]),
        ("shifted", [500, 300, 200], [20, 30, 50]),
        ("unseen", [500, 300, 200, 0], [40, 30, 20, 10]),
        ("missing_category", [500, 300, 200], [60, 40, 0]),
    ]:
        r = np.array(ref, float) / sum(ref)
        w = np.array(win, float) / sum(win)
        cases.append({"name": name, "reference": ref, "window": win,
                      "jensen_shannon": float(jensenshannon(r, w, base=2)),
                      "hellinger": float(np.sqrt(np.sum((np.sqrt(r) - np.sqrt(w)) ** 2)) / np.sqrt(2)),
                      "l_infinity": float(np.max(np.abs(r - w)))})
    return cases


def bh_cases():
    cases = []
    for name, ps in [
        ("mixed", [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216]),
        ("ties", [0.01, 0.01, 0.02, 0.5, 0.5]),
        ("random", rng.uniform(0, 1, 40).tolist()),
        ("tiny", [1e-300, 1e-12, 0.3]),
        ("single", [0.2]),
    ]:
        adj = stats.false_discovery_control(np.array(ps), method="bh")
        cases.append({"name": name, "p": [float(x) for x in ps], "adjusted": [float(x) for x in adj]})
    return cases


def main():
    out = {
        "generator": "detector/tests/oracle/make_fixtures.py",
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__,
                     "scipy": scipy.__version__},
        "ks_2samp": ks_cases(),
        "kstwo": kstwo_grid(),
        "psi": psi_cases(),
        "chi2_contingency": chi2_cases(),
        "distances": distance_cases(),
        "categorical_distances": categorical_distance_cases(),
        "benjamini_hochberg": bh_cases(),
    }
    json.dump(out, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
