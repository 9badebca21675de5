#!/usr/bin/env bash
# The real-broker suite: starts a tansu broker on a free loopback port (installing tansu
# if missing), runs tests/tests/real_broker.rs (the pipeline: drift, and performance
# from outcomes posted late through the agent),
# tests/tests/incident_service.rs (alert to decided incident; on PostgreSQL when
# DRIFTWATCH_TEST_POSTGRES names a server), tests/tests/detector_kill.rs (detect killed -9 three times; two detect processes with
# the partition's holder killed) and tests/tests/agent_durability.rs (kill -9, outage,
# full spool, disk errors, privacy) against it, and stops it. tests/tests/kafka_security.rs starts a tansu of its own that
# demands SASL SCRAM behind a TLS endpoint (socat, installed if missing).
#
#   tests/real-broker.sh                       # tansu, installed if needed
#   DRIFTWATCH_TEST_BROKERS=host:9092 tests/real-broker.sh   # any other broker
set -euo pipefail
cd "$(dirname "$0")/.."

log_dir=$(mktemp -d)
broker_pid=""
cleanup() {
  if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  rm -rf "$log_dir"
}
trap cleanup EXIT

# The outage tests start (and SIGSTOP) a tansu of their own, whatever the broker.
if [ -z "${DRIFTWATCH_TEST_TANSU:-}" ] && ! command -v tansu >/dev/null 2>&1; then
  echo "real-broker: installing tansu (first time about 20 minutes)"
  cargo install tansu --locked --features dynostore,libsql
fi

if ! command -v socat >/dev/null 2>&1; then
  echo "real-broker: installing socat (the TLS endpoint of the Kafka security suite)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends socat \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends socat; }
fi

if [ -z "${DRIFTWATCH_TEST_BROKERS:-}" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  echo "real-broker: starting tansu on 127.0.0.1:$port"
  tansu broker --storage-engine=memory://tansu/ \
    --listener-url="tcp://127.0.0.1:$port" \
    --advertised-listener-url="tcp://127.0.0.1:$port" >"$log_dir/tansu.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    if ! kill -0 "$broker_pid" 2>/dev/null; then cat "$log_dir/tansu.log"; echo "tansu exited"; exit 1; fi
    sleep 0.1
  done
  export DRIFTWATCH_TEST_BROKERS="127.0.0.1:$port"
fi

# The decision's e-mail notices go to a real SMTP server (aiosmtpd, tests/smtp-python.sh).
if [ -z "${DRIFTWATCH_TEST_PYTHON:-}" ]; then
  DRIFTWATCH_TEST_PYTHON=$(tests/smtp-python.sh)
  export DRIFTWATCH_TEST_PYTHON
fi

echo "real-broker: suite against $DRIFTWATCH_TEST_BROKERS"
cargo build --workspace --bins
status=0
cargo test -p driftwatch-e2e --test real_broker --test incident_service --test detector_kill --test agent_durability --test kafka_security -- --ignored --test-threads=1 --nocapture || status=$?
if [ "$status" -ne 0 ] && [ -f "$log_dir/tansu.log" ]; then
  echo "--- last lines of the tansu log ---"; tail -n 40 "$log_dir/tansu.log"
fi
exit "$status"
