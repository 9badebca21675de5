"""Reference and analysis CSVs for the replay comparison: x0..x9 numeric, c0..c4
categorical; in the second half of the analysis x0-x2 shift by 0.5 sd and c0 reverses."""
import sys
import numpy as np
import pandas as pd

CATS = [list("abcde"), ["north", "south", "east", "west"], [f"x{i}" for i in range(1, 9)],
        ["yes", "no"], list("pqrstuvwyz") + ["aa", "bb"]]

def frame(rng, n, drift_from):
    cols = {}
    drifted = np.arange(n) >= drift_from
    for i in range(10):
        x = rng.normal(size=n) + np.where(drifted & (i < 3), 0.5, 0.0)
        cols[f"x{i}"] = np.round(10 * i + (1 + i / 10) * x, 6)
    for i, cats in enumerate(CATS):
        w = 1 / np.arange(1, len(cats) + 1)
        p = w / w.sum()
        base = rng.choice(len(cats), size=n, p=p)
        rev = rng.choice(len(cats), size=n, p=p[::-1])
        idx = np.where(drifted & (i == 0), rev, base)
        cols[f"c{i}"] = np.array(cats)[idx]
    return pd.DataFrame(cols)

if __name__ == "__main__":
    out, ref_rows, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(7)
    frame(rng, ref_rows, ref_rows + 1).to_csv(f"{out}/reference.csv", index=False)
    frame(rng, rows, rows // 2).to_csv(f"{out}/analysis.csv", index=False)
