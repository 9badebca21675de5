#!/usr/bin/env python3
"""Expected values for driftwatch's realized performance metrics, computed by scikit-learn
and numpy.

Run by hand (not in CI) when a metric is added; commit the output:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install scikit-learn
    /tmp/venv/bin/python detector/tests/oracle/make_perf_fixtures.py \
        > detector/tests/oracle/perf_fixtures.json

Nothing here calls driftwatch. A metric scikit-learn leaves undefined (a zero
denominator with zero_division=nan, one class only for ROC AUC, no positives for average
precision, a constant target for R^2) is null: driftwatch reports it as insufficient.
The expected calibration error has no scikit-learn function; it is computed with numpy
over ten equal-width bins, [0.9, 1.0] closed.
"""
import json
import math
import sys

import numpy as np
import sklearn
from sklearn import metrics as M

rng = np.random.default_rng(20261127)
NAN = float("nan")


def num(x):
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def ece(y, p):
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    b = np.minimum((p * 10).astype(int), 9)
    total = 0.0
    for k in range(10):
        m = b == k
        if m.any():
            total += abs(y[m].sum() - p[m].sum())
    return total / len(y)


def binary(name, scores, y, labels=None):
    scores = [float(s) for s in scores]
    y = [int(v) for v in y]
    pred = labels if labels is not None else [int(s >= 0.5) for s in scores]
    zd = dict(zero_division=np.nan)
    has_both = len(set(y)) == 2
    out = {
        "accuracy": M.accuracy_score(y, pred),
        "precision": M.precision_score(y, pred, pos_label=1, **zd),
        "recall": M.recall_score(y, pred, pos_label=1, **zd),
        "f1": M.f1_score(y, pred, pos_label=1, **zd),
        "specificity": M.recall_score(y, pred, pos_label=0, **zd),
        "roc_auc": M.roc_auc_score(y, scores) if has_both else NAN,
        "average_precision": M.average_precision_score(y, scores) if 1 in y else NAN,
        "log_loss": M.log_loss(y, scores, labels=[0, 1]),
        "brier": M.brier_score_loss(y, scores, pos_label=1),
        "ece": ece(y, scores),
    }
    return {
        "name": name,
        "task": "binary",
        "scores": scores,
        "labels": pred,
        "y": y,
        "expected": {k: num(v) for k, v in out.items()},
    }


def multiclass(name, pred, y):
    zd = dict(zero_division=np.nan)
    out = {
        "accuracy": M.accuracy_score(y, pred),
        "precision_macro": M.precision_score(y, pred, average="macro", **zd),
        "recall_macro": M.recall_score(y, pred, average="macro", **zd),
        "f1_macro": M.f1_score(y, pred, average="macro", **zd),
        "precision_micro": M.precision_score(y, pred, average="micro", **zd),
        "recall_micro": M.recall_score(y, pred, average="micro", **zd),
        "f1_micro": M.f1_score(y, pred, average="micro", **zd),
    }
    return {
        "name": name,
        "task": "multiclass",
        "pred": [str(v) for v in pred],
        "y": [str(v) for v in y],
        "expected": {k: num(v) for k, v in out.items()},
    }


def regression(name, pred, y):
    pred = [float(v) for v in pred]
    y = [float(v) for v in y]
    out = {
        "mae": M.mean_absolute_error(y, pred),
        "rmse": math.sqrt(M.mean_squared_error(y, pred)),
        "mape": M.mean_absolute_percentage_error(y, pred),
        "r2": M.r2_score(y, pred, force_finite=False) if len(y) >= 2 else NAN,
    }
    return {
        "name": name,
        "task": "regression",
        "pred": pred,
        "y": y,
        "expected": {k: num(v) for k, v in out.items()},
    }


def cases():
    out = []
    # A fair model with many ties (scores rounded to 2 decimals).
    y = rng.integers(0, 2, 500)
    s = np.clip(0.35 * y + rng.normal(0.35, 0.2, 500), 0, 1).round(2)
    out.append(binary("ties-rounded-500", s, y))
    # Continuous scores, imbalanced classes.
    y = (rng.random(2000) < 0.08).astype(int)
    s = 1 / (1 + np.exp(-(2.0 * y - 1.5 + rng.normal(0, 1.2, 2000))))
    out.append(binary("imbalanced-2000", s, y))
    # Every score equal.
    out.append(binary("all-tied", [0.3] * 40, rng.integers(0, 2, 40)))
    # One class absent from the outcomes.
    out.append(binary("no-positives", rng.random(60).round(3), [0] * 60))
    out.append(binary("no-negatives", rng.random(60).round(3), [1] * 60))
    # No predicted positives: precision undefined.
    out.append(binary("none-predicted-positive", (rng.random(50) * 0.4).round(3), rng.integers(0, 2, 50)))
    # Tiny windows.
    out.append(binary("tiny-3", [0.9, 0.2, 0.6], [1, 0, 0]))
    out.append(binary("tiny-1", [0.7], [1]))
    # Perfect and inverted models, scores at 0 and 1 exactly (log loss clipping).
    y = rng.integers(0, 2, 100)
    out.append(binary("perfect", y.astype(float), y))
    out.append(binary("inverted", 1.0 - y.astype(float), y))
    # A label from the model that disagrees with its score at 0.5.
    y = rng.integers(0, 2, 200)
    s = rng.random(200).round(4)
    out.append(binary("label-given", s, y, labels=[int(v >= 0.3) for v in s]))

    classes = ["low", "mid", "high", "veto"]
    y = rng.choice(classes, 800, p=[0.4, 0.3, 0.2, 0.1])
    pred = np.where(rng.random(800) < 0.7, y, rng.choice(classes, 800))
    out.append(multiclass("four-classes-800", pred, y))
    y = rng.choice(classes[:3], 100)
    pred = np.where(rng.random(100) < 0.5, y, "low")
    out.append(multiclass("class-never-predicted", pred, y))
    out.append(multiclass("predicted-class-never-true", ["a", "b", "c", "c"], ["a", "b", "a", "b"]))
    out.append(multiclass("tiny-2", ["x", "y"], ["x", "x"]))

    y = rng.normal(100, 15, 1000)
    out.append(regression("normal-1000", y + rng.normal(2, 5, 1000), y))
    y = rng.normal(0, 1, 300)
    out.append(regression("around-zero-300", y * 0.8 + rng.normal(0, 0.3, 300), y))
    out.append(regression("a-zero-target", [0.5, 1.0, 2.5], [0.0, 1.0, 2.0]))
    out.append(regression("tiny-1", [3.0], [2.0]))
    out.append(regression("constant-target", [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]))
    out.append(regression("perfect", [1.5, -2.0, 7.25], [1.5, -2.0, 7.25]))
    return out


json.dump(
    {
        "generator": "detector/tests/oracle/make_perf_fixtures.py",
        "versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__},
        "cases": cases(),
    },
    sys.stdout,
    indent=1,
)
sys.stdout.write("\n")
