"""Reference and analysis CSVs for the performance comparison: a binary model with a
score, over-confident (so CBPE calibrates), on a population whose risk drifts in the
second half of the analysis, where the model gets worse. Columns: id, timestamp,
score, outcome (0/1)."""
import sys

import numpy as np
import pandas as pd


def frame(rng, n, drift_from, start):
    drifted = np.arange(n) >= drift_from
    x = rng.normal(np.where(drifted, 0.9, 0.0), 1.2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x - 0.4)))).astype(int)
    score = np.round(1 / (1 + np.exp(-2.5 * (x - 0.4))), 6)
    ts = pd.Timestamp("2026-11-01T00:00:00Z") + pd.to_timedelta(np.arange(start, start + n), unit="s")
    return pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(start, start + n)],
            "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "score": score,
            "outcome": y,
        }
    )


if __name__ == "__main__":
    out, ref_rows, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(11)
    frame(rng, ref_rows, ref_rows + 1, 0).to_csv(f"{out}/perf-reference.csv", index=False)
    frame(rng, rows, rows // 2, ref_rows).to_csv(f"{out}/perf-analysis.csv", index=False)
