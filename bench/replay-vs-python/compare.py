"""Prints the comparison table: time and rows/s per tool, speed ratios, verdict agreement
on the windows where the methods are the same."""
import json, sys
d, rows, t_dw, t_nml, t_ev = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])

dw = {}
for line in open(f"{d}/driftwatch.ndjson"):
    r = json.loads(line)
    if not r["window"]["complete"]:
        continue
    for c in r["checks"]:
        dw[(r["window"]["index"], c["signal"])] = (c["severity"] != "ok", c.get("p_value"), c.get("statistic"))

def load(name, flag):
    out = {}
    for line in open(f"{d}/{name}.ndjson"):
        r = json.loads(line)
        out[(r["chunk"], r["column"])] = (r[flag], r["value"])
    return out

nml, ev = load("nannyml", "alert"), load("evidently", "drift")

def agree(other, cols, use_value):
    keys = [k for k in other if k[1] in cols and k in dw]
    same = sum(1 for k in keys if dw[k][0] == other[k][0])
    return same, len(keys)

num = [f"x{i}" for i in range(10)]
cat = [f"c{i}" for i in range(5)]
print(f"\nreplay of {rows:,} rows, 15 features (10 numeric: KS; 5 categorical: chi-squared), windows of 5,000\n")
print(f"| tool | seconds | rows/s | driftwatch is faster by |")
print(f"|---|---:|---:|---:|")
for name, t in [("driftwatch replay (median of 5)", t_dw), ("NannyML 0.13 UnivariateDriftCalculator (median of 5)", t_nml), ("Evidently 0.7 DataDriftPreset", t_ev)]:
    ratio = "-" if name.startswith("driftwatch") else f"{t / t_dw:.1f}x"
    print(f"| {name} | {t:.2f} | {rows / t:,.0f} | {ratio} |")
s, n = agree(ev, num, True)
print(f"\nverdicts (drift yes/no per window and feature, p < 0.05):")
print(f"- KS, numeric, vs Evidently ks: {s}/{n} agree")
s, n = agree(ev, cat, True)
print(f"- chi-squared, categorical, vs Evidently chisquare (goodness-of-fit, not the contingency test): {s}/{n} agree")
s, n = agree(nml, cat, True)
print(f"- chi-squared, categorical, vs NannyML chi2 (contingency, p < 0.05): {s}/{n} agree")
# NannyML's KS alerts on D against a band learned from reference chunks, not on p: compare D.
diffs = [abs(dw[k][2] - nml[k][1]) for k in nml if k[1] in num and k in dw and dw[k][2] is not None]
if diffs:
    print(f"- KS statistic D vs NannyML kolmogorov_smirnov: max |difference| {max(diffs):.2e} over {len(diffs)} windows (NannyML bins references over 10,000 rows; its KS verdict uses a learned D band, so verdicts are not compared)")
