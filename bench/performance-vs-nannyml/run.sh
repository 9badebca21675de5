#!/usr/bin/env bash
# driftwatch replay (realized performance from an outcome column, and CBPE) against
# NannyML's PerformanceCalculator and CBPE on the same generated data and chunks; prints
# one table. Not part of CI: it installs NannyML into a throwaway virtual environment.
#
#   bench/performance-vs-nannyml/run.sh [ROWS]   (default 1,000,000 analysis rows)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rows=${1:-1000000}
chunk=${CHUNK:-10000}
work=${BENCH_DIR:-$root/target/bench-performance}
venvs=${BENCH_VENVS:-$root/target/bench-venvs}
mkdir -p "$work" "$venvs"
if [ ! -x "$venvs/nannyml/bin/python" ]; then
  python3 -m venv "$venvs/nannyml"
  "$venvs/nannyml/bin/pip" install -q nannyml==0.13.1 statsmodels "pandas<3"
fi
cargo build --release -q --bin driftwatch --manifest-path "$root/Cargo.toml"
"$venvs/nannyml/bin/python" "$here/make_data.py" "$work" 50000 "$rows"

cat > "$work/perf-plan.toml" <<TOML
[system]
id = "perf"
[reference]
file = "perf-reference.csv"
[window]
size = $chunk
[prediction.score]
checks = ["ks"]
[csv]
prediction_id = "id"
[performance]
task = "binary"
metrics = ["accuracy", "precision", "recall", "f1", "specificity", "roc_auc"]
horizon_s = 0
TOML
for m in accuracy precision recall f1 specificity roc_auc; do
  printf 'thresholds.%s = { learned = true, warning_k = 3, critical_k = 3 }\n' "$m" >> "$work/perf-plan.toml"
done

# Both run five times, alternating; each is given its median.
median() { printf '%s\n' "$@" | sort -n | sed -n 3p; }
dw=(); nml=()
for _ in 1 2 3 4 5; do
  start=$(date +%s.%N)
  "$root/target/release/driftwatch" replay --plan "$work/perf-plan.toml" \
    --events "$work/perf-analysis.csv" > "$work/driftwatch-performance.ndjson" 2>/dev/null
  dw+=("$(echo "$(date +%s.%N) - $start" | bc)")
  nml+=("$("$venvs/nannyml/bin/python" "$here/run_nannyml.py" "$work" "$chunk" 2>/dev/null | tail -1)")
done
echo "driftwatch runs: ${dw[*]} s; NannyML runs: ${nml[*]} s"
"$venvs/nannyml/bin/python" "$here/compare.py" "$work" "$rows" "$(median "${dw[@]}")" "$(median "${nml[@]}")"
