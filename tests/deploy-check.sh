#!/usr/bin/env bash
# The deploy/ files checked by the real tools: promtool (rule syntax and rule unit
# tests) and amtool (Alertmanager configuration).
set -euo pipefail
cd "$(dirname "$0")/../deploy"
promtool check rules prometheus/driftwatch-rules.yaml
promtool test rules prometheus/driftwatch-rules.test.yaml
amtool check-config alertmanager/alertmanager.yml
python3 -m json.tool grafana/driftwatch-dashboard.json >/dev/null
echo "deploy-check: rules, rule tests, Alertmanager config and dashboard are valid"
