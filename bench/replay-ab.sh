#!/usr/bin/env bash
# Interleaved A/B of two `driftwatch` binaries on the replay bench's data: wall time and
# user+system CPU of each run, medians, and a byte comparison of their outputs.
#
#   bench/replay-ab.sh BASE_BINARY NEW_BINARY [RUNS]
# Needs target/bench-replay/{plan.toml,reference.csv,analysis.csv} from
# bench/replay-vs-python/run.sh (or its make_data.py).
set -euo pipefail
base=$1; new=$2; runs=${3:-9}
root=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_DIR:-$root/target/bench-replay}
one() { # binary, output -> "wall cpu"
  /usr/bin/time -f '%e %U %S' -o "$work/time.txt" "$1" replay --plan "$work/plan.toml" \
    --events "$work/analysis.csv" > "$2" 2>/dev/null
  awk '{printf "%s %.2f\n", $1, $2 + $3}' "$work/time.txt"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: > "$work/ab-base.txt"; : > "$work/ab-new.txt"
for _ in $(seq "$runs"); do
  one "$base" "$work/ab-base.ndjson" >> "$work/ab-base.txt"
  one "$new" "$work/ab-new.ndjson" >> "$work/ab-new.txt"
done
cmp -s "$work/ab-base.ndjson" "$work/ab-new.ndjson" && same=identical || same=DIFFERENT
printf '| binary | median wall s | median user+sys s | runs (wall) |\n|---|---:|---:|---|\n'
for side in base new; do
  f="$work/ab-$side.txt"
  printf '| %s | %s | %s | %s |\n' "$side" "$(cut -d' ' -f1 "$f" | median)" \
    "$(cut -d' ' -f2 "$f" | median)" "$(cut -d' ' -f1 "$f" | tr '\n' ' ')"
done
echo "outputs: $same"
