#!/usr/bin/env python3
"""Expected CBPE estimates per chunk, computed by NannyML, for driftwatch's estimator.

Run by hand (not in CI) in a throwaway virtual environment; commit the output:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install nannyml statsmodels
    /tmp/venv/bin/python detector/tests/oracle/make_cbpe_fixtures.py \
        > detector/tests/oracle/cbpe_fixtures.json

Each scenario has a reference (scores and outcomes) and an analysis period (scores
only) of a binary model; NannyML's CBPE is fitted on the reference and estimates
accuracy, precision, recall, F1, specificity and ROC AUC per chunk of 1,000 analysis
rows. `detector/tests/cbpe.rs` replays the same rows through driftwatch (count windows
of 1,000) and requires every estimate within 0.005. Nothing here calls driftwatch.
"""
import json
import os
import sys

os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"
import nannyml as nml
import numpy as np
import pandas as pd

rng = np.random.default_rng(20261127)
METRICS = ["accuracy", "precision", "recall", "f1", "specificity", "roc_auc"]
CHUNK = 1000


def logistic(z):
    return 1 / (1 + np.exp(-z))


def population(n, shift):
    """A credit-like population: a latent risk x, outcome y ~ Bernoulli(logistic(x))."""
    x = rng.normal(shift, 1.2, n)
    y = (rng.random(n) < logistic(x - 0.4)).astype(int)
    return x, y


def scenario(name, score_of, shifts):
    xr, yr = population(5000, 0.0)
    parts = [population(CHUNK, s) for s in shifts]
    xa = np.concatenate([p[0] for p in parts])
    sr = np.round(score_of(xr), 6)
    sa = np.round(score_of(xa), 6)
    ref = pd.DataFrame({"score": sr, "y_pred": (sr >= 0.5).astype(int), "y": yr})
    ana = pd.DataFrame({"score": sa, "y_pred": (sa >= 0.5).astype(int)})
    est = nml.CBPE(
        y_pred_proba="score",
        y_pred="y_pred",
        y_true="y",
        problem_type="classification_binary",
        metrics=METRICS,
        chunk_size=CHUNK,
    )
    est.fit(ref)
    res = est.estimate(ana).filter(period="analysis").to_df()
    chunks = []
    for i in range(len(res)):
        row = {m: float(res[(m, "value")].iloc[i]) for m in METRICS}
        chunks.append(row)
    return {
        "name": name,
        "needs_calibration": bool(est.needs_calibration),
        "reference": {"score": sr.tolist(), "y": yr.tolist()},
        "analysis": {"score": sa.tolist()},
        "chunks": chunks,
    }


cases = [
    # Calibrated scores; the population drifts towards higher risk, then back.
    scenario("calibrated", lambda x: logistic(x - 0.4), [0.0, 0.0, 0.5, 1.0, 1.5, -0.5]),
    # Over-confident scores (miscalibrated): CBPE must calibrate on the reference.
    scenario("overconfident", lambda x: logistic(2.5 * (x - 0.4)), [0.0, 0.3, 0.8, -0.8, 0.0, 1.2]),
]

json.dump(
    {
        "generator": "detector/tests/oracle/make_cbpe_fixtures.py",
        "versions": {"nannyml": nml.__version__, "numpy": np.__version__, "pandas": pd.__version__},
        "chunk": CHUNK,
        "cases": cases,
    },
    sys.stdout,
)
sys.stdout.write("\n")
