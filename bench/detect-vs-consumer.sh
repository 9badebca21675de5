#!/usr/bin/env bash
# `driftwatch detect` against a bare librdkafka consumer reading the same topic (the
# limit for a Kafka consumer on this machine and broker), on N wire-v1 events of the
# wide synthetic model (15 features, every default check, windows of 5,000, a reference
# of the first 50,000). Prints events/s, wall and CPU seconds, and the ratio.
#
#   bench/detect-vs-consumer.sh [N] [CHECKPOINT_INTERVAL_MS]
# Starts tansu (memory storage) on a free port unless DRIFTWATCH_BENCH_BROKERS is set.
set -euo pipefail
n=${1:-1000000}; interval=${2:-5000}
root=$(cd "$(dirname "$0")/.." && pwd); cd "$root"
cargo build --release -q --bin driftwatch -p driftwatch-detector
cargo build --release -q --example kafka_bench -p driftwatch-e2e
bin=target/release/driftwatch; kb=target/release/examples/kafka_bench
work=$(mktemp -d); broker_pid=""
cleanup() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
if [ -z "${DRIFTWATCH_BENCH_BROKERS:-}" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  tansu broker --storage-engine=memory://tansu/ --listener-url="tcp://127.0.0.1:$port" \
    --advertised-listener-url="tcp://127.0.0.1:$port" --silent >"$work/tansu.log" 2>&1 &
  broker_pid=$!; sleep 1
  brokers="127.0.0.1:$port"
else
  brokers=$DRIFTWATCH_BENCH_BROKERS
fi
t=bench-$$
for topic in "$t.events" "$t.alerts" "$t.reports" "$t.state"; do
  tansu topic create --broker "tcp://$brokers" --partitions 1 "$topic" >/dev/null 2>&1 || true
done
echo "producing $n events to $t.events on $brokers"
"$kb" produce "$brokers" "$t.events" "$n"
"$kb" plan 5000 > "$work/plan.toml"

read -r bare_s bytes < <("$kb" consume "$brokers" "$t.events" "$n")

cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DRIFTWATCH_LOG=warn "$bin" detect --plan "$work/plan.toml" --brokers "$brokers" \
  --events-topic "$t.events" --alerts-topic "$t.alerts" --reports-topic "$t.reports" \
  --state-topic "$t.state" --group "detect-$$" --checkpoint-interval-ms "$interval" \
  --metrics-listen "127.0.0.1:$port" 2>"$work/detect.log" &
pid=$!
seen() { curl -s "127.0.0.1:$port/metrics" | awk '/^driftwatch_events_total\{/ {s += $2} END {print s + 0}'; }
until [ "$(seen)" -ge 1 ] 2>/dev/null; do sleep 0.05; done
start=$(date +%s.%N); cpu0=$(cpu "$pid")
until [ "$(seen)" -ge "$n" ]; do sleep 0.05; done
end=$(date +%s.%N); cpu1=$(cpu "$pid")
kill -TERM "$pid"; wait "$pid" || true
detect_s=$(echo "$end - $start" | bc -l)
awk -v n="$n" -v b="$bare_s" -v d="$detect_s" -v c="$(echo "$cpu1 - $cpu0" | bc -l)" -v mb="$bytes" \
  -v commit="$(git rev-parse --short HEAD)" -v iv="$interval" 'BEGIN {
  printf "commit %s, %d events (%.0f MB), checkpoint every %d ms\n\n", commit, n, mb / 1e6, iv
  printf "| reader | wall s | events/s | CPU s | us CPU/event |\n|---|---:|---:|---:|---:|\n"
  printf "| bare librdkafka consumer | %.2f | %.0f | | |\n", b, n / b
  printf "| driftwatch detect | %.2f | %.0f | %.2f | %.1f |\n", d, n / d, c, c * 1e6 / n
  printf "\ndetect / bare consumer: %.2f\n", b / d
}'
