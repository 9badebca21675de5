#!/usr/bin/env bash
# The real-tool suite: deploy/ checked by promtool and amtool, and drift alerts posted to
# a real Alertmanager (Debian's prometheus-alertmanager, started here on a free port), and
# e-mail notices to parties through a real SMTP server (aiosmtpd in a throwaway venv).
#
#   tests/real-tools.sh
#   DRIFTWATCH_TEST_ALERTMANAGER=http://host:9093 tests/real-tools.sh   # any Alertmanager
set -euo pipefail
cd "$(dirname "$0")/.."

tests/deploy-check.sh

work=$(mktemp -d)
am_pid=""
cleanup() {
  if [ -n "$am_pid" ]; then kill "$am_pid" 2>/dev/null || true; wait "$am_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${DRIFTWATCH_TEST_ALERTMANAGER:-}" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$work/alertmanager.yml" <<'YAML'
route:
  receiver: nowhere
receivers:
  - name: nowhere
YAML
  prometheus-alertmanager --config.file="$work/alertmanager.yml" --storage.path="$work/data" \
    --web.listen-address="127.0.0.1:$port" --cluster.listen-address= >"$work/am.log" 2>&1 &
  am_pid=$!
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$am_pid" 2>/dev/null; then cat "$work/am.log"; echo "alertmanager exited"; exit 1; fi
    sleep 0.1
  done
  export DRIFTWATCH_TEST_ALERTMANAGER="http://127.0.0.1:$port"
fi
echo "real-tools: Alertmanager at $DRIFTWATCH_TEST_ALERTMANAGER"
cargo test -p driftwatch-e2e --test alertmanager -- --ignored

# A real SMTP server for the e-mail notices to parties: aiosmtpd from PyPI, in a
# throwaway virtual environment (tests/smtp-python.sh).
if [ -z "${DRIFTWATCH_TEST_PYTHON:-}" ]; then
  DRIFTWATCH_TEST_PYTHON=$(tests/smtp-python.sh)
  export DRIFTWATCH_TEST_PYTHON
fi
echo "real-tools: SMTP server aiosmtpd ($("$DRIFTWATCH_TEST_PYTHON" -c 'import aiosmtpd; print(aiosmtpd.__version__)'))"
cargo test -p driftwatch-e2e --test party_notices -- --ignored
