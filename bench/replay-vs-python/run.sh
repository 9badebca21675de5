#!/usr/bin/env bash
# driftwatch replay against NannyML and Evidently on the same generated data, the same
# methods (KS numeric, chi-squared categorical) and the same windows; prints one table.
# Not part of CI: it installs both tools into throwaway virtual environments.
#
#   bench/replay-vs-python/run.sh [ROWS]        (default 1,000,000 analysis rows)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rows=${1:-1000000}
work=${BENCH_DIR:-$root/target/bench-replay}
venvs=${BENCH_VENVS:-$root/target/bench-venvs}
mkdir -p "$work" "$venvs"

venv() { # name, packages...
  local name=$1; shift
  if [ ! -x "$venvs/$name/bin/python" ]; then
    python3 -m venv "$venvs/$name"
    "$venvs/$name/bin/pip" install -q "$@"
  fi
}
venv nannyml nannyml==0.13.1 statsmodels "pandas<3"
venv evidently evidently==0.7.23 "pandas<3"

cargo build --release -q --bin driftwatch --manifest-path "$root/Cargo.toml"
"$venvs/nannyml/bin/python" "$here/make_data.py" "$work" 50000 "$rows"

cat > "$work/plan.toml" <<TOML
[system]
id = "wide"
[reference]
file = "reference.csv"
[window]
size = 5000
TOML
for i in $(seq 0 9); do printf '[features.x%s]\ntype = "numeric"\nchecks = ["ks"]\n' "$i" >> "$work/plan.toml"; done
for i in $(seq 0 4); do printf '[features.c%s]\ntype = "categorical"\nchecks = ["chi2"]\n' "$i" >> "$work/plan.toml"; done

# driftwatch and NannyML run five times each, alternating, and each is given its
# median: one run of either varies by 10-30% on a shared 2-core machine. Evidently
# (minutes per run) runs once.
median() { printf '%s\n' "$@" | sort -n | sed -n 3p; }
dw_times=(); nml_times=()
for _ in 1 2 3 4 5; do
  start=$(date +%s.%N)
  "$root/target/release/driftwatch" replay --plan "$work/plan.toml" --events "$work/analysis.csv" > "$work/driftwatch.ndjson"
  dw_times+=("$(echo "$(date +%s.%N) - $start" | bc)")
  nml_times+=("$("$venvs/nannyml/bin/python" "$here/run_nannyml.py" "$work" 5000 2>/dev/null | tail -1)")
done
echo "driftwatch runs: ${dw_times[*]} s; NannyML runs: ${nml_times[*]} s"
t_dw=$(median "${dw_times[@]}")
t_nml=$(median "${nml_times[@]}")
t_ev=$("$venvs/evidently/bin/python" "$here/run_evidently.py" "$work" 5000 2>/dev/null | tail -1)
python3 "$here/compare.py" "$work" "$rows" "$t_dw" "$t_nml" "$t_ev"
