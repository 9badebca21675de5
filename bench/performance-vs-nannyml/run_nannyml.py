"""NannyML's PerformanceCalculator (realized) and CBPE (estimated) on the performance
bench's data: accuracy, precision, recall, F1, specificity, ROC AUC per chunk. Writes
both results as CSV and prints the seconds taken (reading the CSVs included)."""
import os
import sys
import time

os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"
import nannyml as nml  # noqa: E402
import pandas as pd  # noqa: E402

METRICS = ["accuracy", "precision", "recall", "f1", "specificity", "roc_auc"]

work, chunk = sys.argv[1], int(sys.argv[2])
start = time.perf_counter()
ref = pd.read_csv(f"{work}/perf-reference.csv")
ana = pd.read_csv(f"{work}/perf-analysis.csv")
for df in (ref, ana):
    df["y_pred"] = (df["score"] >= 0.5).astype(int)
calc = nml.PerformanceCalculator(
    y_pred_proba="score", y_pred="y_pred", y_true="outcome",
    problem_type="classification_binary", metrics=METRICS, chunk_size=chunk,
)
calc.fit(ref)
realized = calc.calculate(ana).filter(period="analysis").to_df()
cbpe = nml.CBPE(
    y_pred_proba="score", y_pred="y_pred", y_true="outcome",
    problem_type="classification_binary", metrics=METRICS, chunk_size=chunk,
)
cbpe.fit(ref)
estimated = cbpe.estimate(ana.drop(columns=["outcome"])).filter(period="analysis").to_df()
elapsed = time.perf_counter() - start
rows = []
for i in range(len(realized)):
    row = {"chunk": i}
    for m in METRICS:
        row[f"realized_{m}"] = realized[(m, "value")].iloc[i]
        row[f"realized_{m}_alert"] = bool(realized[(m, "alert")].iloc[i])
        row[f"realized_{m}_lower"] = realized[(m, "lower_threshold")].iloc[i]
        row[f"estimated_{m}"] = estimated[(m, "value")].iloc[i]
        row[f"estimated_{m}_alert"] = bool(estimated[(m, "alert")].iloc[i])
    rows.append(row)
pd.DataFrame(rows).to_csv(f"{work}/nannyml-performance.csv", index=False)
print(f"calibrated {cbpe.needs_calibration}", file=sys.stderr)
print(elapsed)
