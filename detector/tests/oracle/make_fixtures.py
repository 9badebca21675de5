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


def main():
    out = {
        "generator": "detector/tests/oracle/make_fixtures.py",
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__,
                     "scipy": scipy.__version__},
        "ks_2samp": ks_cases(),
        "kstwo": kstwo_grid(),
        "psi": psi_cases(),
        "chi2_contingency": chi2_cases(),
    }
    json.dump(out, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
