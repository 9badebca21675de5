"""One table: time per tool, and how far driftwatch's realized and estimated metrics
and its alerts are from NannyML's on the same chunks."""
import json
import sys

import pandas as pd

work, rows, t_dw, t_nml = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
METRICS = ["accuracy", "precision", "recall", "f1", "specificity", "roc_auc"]
nml = pd.read_csv(f"{work}/nannyml-performance.csv")
last = {}
with open(f"{work}/driftwatch-performance.ndjson") as f:
    for line in f:
        r = json.loads(line)
        if r.get("kind") == "performance" and r["window"]["complete"]:
            last[r["window"]["index"]] = r
windows = [last[k] for k in sorted(last)]
assert len(windows) == len(nml), f"{len(windows)} windows vs {len(nml)} chunks"

def value(results, m):
    return next(x.get("value") for x in results if x["metric"] == m)

def flagged(results, m):
    return next(x["severity"] for x in results if x["metric"] == m) != "ok"

worst_realized = worst_estimated = 0.0
agree = disagree = 0
for w, (_, n) in zip(windows, nml.iterrows()):
    for m in METRICS:
        worst_realized = max(worst_realized, abs(value(w["metrics"], m) - n[f"realized_{m}"]))
        worst_estimated = max(worst_estimated, abs(value(w["estimated"], m) - n[f"estimated_{m}"]))
        # NannyML alerts on either side of its band; driftwatch on the worse side only:
        # compare where NannyML's value is below its lower threshold.
        nml_low = bool(n[f"realized_{m}_alert"]) and n[f"realized_{m}"] < n[f"realized_{m}_lower"]
        dw = flagged(w["metrics"], m)
        agree += nml_low == dw
        disagree += nml_low != dw

print(f"\n{rows:,} predictions with outcomes, {len(windows)} windows of {rows // len(windows):,}; "
      "realized accuracy, precision, recall, F1, specificity, ROC AUC and their CBPE estimates\n")
print("| tool | seconds | predictions/s | vs NannyML |")
print("|---|---:|---:|---:|")
print(f"| driftwatch replay | {t_dw:.2f} | {rows / t_dw:,.0f} | {t_nml / t_dw:.1f}x |")
print(f"| NannyML PerformanceCalculator + CBPE | {t_nml:.2f} | {rows / t_nml:,.0f} | 1.0x |")
print(f"\nlargest difference from NannyML: realized {worst_realized:.2e}, estimated {worst_estimated:.2e}")
print(f"realized-metric alerts (worse side, 3 sd band learned on reference chunks): "
      f"{agree} of {agree + disagree} window-metric verdicts agree")
