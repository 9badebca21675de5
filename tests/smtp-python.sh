#!/usr/bin/env bash
# Prints the path of a Python that has aiosmtpd (the real SMTP server the e-mail tests
# start, tests/tools/smtp_sink.py), making a throwaway virtual environment under
# target/venv-smtp the first time (PyPI). Used by tests/real-tools.sh and
# tests/real-broker.sh:  export DRIFTWATCH_TEST_PYTHON=$(tests/smtp-python.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/venv-smtp
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
  rm -rf "$venv"
  mkdir -p target
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv; } >&2
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check aiosmtpd >&2
fi
echo "$PWD/$venv/bin/python"
