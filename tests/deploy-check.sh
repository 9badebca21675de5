#!/usr/bin/env bash
# The deploy/ files checked by the real tools: promtool (rule syntax and rule unit
# tests) and amtool (Alertmanager configuration).
set -euo pipefail
cd "$(dirname "$0")/../deploy"
promtool check rules prometheus/driftwatch-rules.yaml
promtool test rules prometheus/driftwatch-rules.test.yaml
amtool check-config alertmanager/alertmanager.yml
# Routing: who is told of what (--verify.receivers fails on any other set).
route() { # receivers, labels...
  local want=$1; shift
  amtool config routes test --config.file=alertmanager/alertmanager.yml \
    --verify.receivers="$want" "$@" >/dev/null 2>&1 \
    || { echo "deploy-check: $* should reach $want"; exit 1; }
}
route ml-platform-pager,compliance-office alertname=DriftwatchDriftCritical severity=critical
route ml-platform-pager,compliance-office alertname=DriftwatchPerformance severity=critical
route ml-platform-pager,compliance-office alertname=DriftwatchPerformanceCritical severity=critical
route ml-platform-tickets alertname=DriftwatchPerformanceEstimate severity=warning
route ml-platform-tickets alertname=DriftwatchDriftWarning severity=warning
route ml-platform-pager alertname=DriftwatchAgentSpoolFilling severity=critical
route compliance-office alertname=DriftwatchObligation severity=warning
route compliance-office alertname=DriftwatchObligation severity=critical
route ml-platform-pager alertname=DriftwatchTelemetryStopped severity=warning
route compliance-office,ml-platform-pager alertname=DriftwatchNoticesUnsent severity=critical
route compliance-office alertname=DriftwatchNoticeDeliveryFailing severity=warning
python3 -m json.tool grafana/driftwatch-dashboard.json >/dev/null
echo "deploy-check: rules, rule tests, Alertmanager config and routes, and dashboard are valid"
