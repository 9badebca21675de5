"""NannyML univariate drift (timed after imports): KS (numeric) and chi2 (categorical), chunks of 5000.
Prints seconds and writes per-chunk alerts as JSON lines {chunk, column, alert, value}."""
import json, sys, time
import nannyml as nml
import pandas as pd
d, chunk = sys.argv[1], int(sys.argv[2])
# Timed from here: reading the CSVs and the computation, not the interpreter and imports.
t0 = time.perf_counter()
ref = pd.read_csv(f"{d}/reference.csv")
ana = pd.read_csv(f"{d}/analysis.csv")
num = [f"x{i}" for i in range(10)]
cat = [f"c{i}" for i in range(5)]
calc = nml.UnivariateDriftCalculator(column_names=num + cat, treat_as_categorical=cat,
                                     chunk_size=chunk, continuous_methods=["kolmogorov_smirnov"],
                                     categorical_methods=["chi2"])
calc.fit(ref)
res = calc.calculate(ana).filter(period="analysis").to_df()
elapsed = time.perf_counter() - t0
with open(f"{d}/nannyml.ndjson", "w") as f:
    for col in num + cat:
        method = "kolmogorov_smirnov" if col in num else "chi2"
        alerts = res[(col, method, "alert")].tolist()
        values = res[(col, method, "value")].tolist()
        for k, (a, v) in enumerate(zip(alerts, values)):
            f.write(json.dumps({"chunk": k, "column": col, "alert": bool(a), "value": float(v)}) + "\n")
print(f"{elapsed:.3f}")
