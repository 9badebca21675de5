//! Drift alerts reach a real Alertmanager through its v2 API.
//!
//! Run by `tests/real-tools.sh`, which starts Debian's `prometheus-alertmanager` and sets
//! `DRIFTWATCH_TEST_ALERTMANAGER`; point that variable at any Alertmanager to run it there.

use std::collections::BTreeSet;

use driftwatch_e2e::pipeline;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an Alertmanager: run tests/real-tools.sh or set DRIFTWATCH_TEST_ALERTMANAGER"]
async fn drift_alerts_are_active_in_alertmanager() {
    let am = std::env::var("DRIFTWATCH_TEST_ALERTMANAGER").expect(
        "DRIFTWATCH_TEST_ALERTMANAGER must name an Alertmanager (tests/real-tools.sh starts one)",
    );
    let system = format!("credit-am-{}", std::process::id());
    let out = pipeline(
        &system,
        4000,
        3000,
        5,
        &format!("alertmanager_url = \"{am}\"\n"),
        false,
    )
    .await;
    assert_eq!(out.windows, 5.0);
    assert!(!out.alerts.is_empty(), "drift must alert");

    // Alertmanager keeps one active alert per label set (system, signal, method,
    // severity), and gets episodes, not windows: a condition is there once 2 of its last
    // 3 windows breached (the plan's default), under the highest severity it reached
    // (an escalation ends the lower one). Nothing resolves: the drift goes on to the end.
    let mut by_condition: std::collections::BTreeMap<(String, String), Vec<(i64, String)>> =
        Default::default();
    for a in &out.alerts {
        let s = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
        let w = a["window"]["index"].as_i64().unwrap_or_default();
        by_condition
            .entry((s("signal"), s("method")))
            .or_default()
            .push((w, s("severity")));
    }
    let expected: BTreeSet<(String, String, String)> = by_condition
        .into_iter()
        .filter_map(|((signal, method), hits)| {
            let fired = hits.iter().position(|(w, _)| {
                hits.iter().filter(|(v, _)| v <= w && *v > w - 3).count() >= 2
            })?;
            let severity = if hits[fired..].iter().any(|(_, s)| s == "critical") {
                "critical"
            } else {
                "warning"
            };
            Some((signal, method, severity.to_owned()))
        })
        .collect();
    assert!(
        !expected.is_empty(),
        "some condition must fire: {:?}",
        out.alerts
    );
    let url = format!("{am}/api/v2/alerts?filter=system%3D%22{system}%22");
    let active: Vec<Value> = reqwest::get(&url)
        .await
        .expect("Alertmanager answers")
        .json()
        .await
        .expect("JSON list of alerts");
    let got: BTreeSet<(String, String, String)> = active
        .iter()
        .map(|a| {
            let l = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_owned();
            assert_eq!(l("alertname"), "DriftwatchDrift");
            assert_eq!(l("system"), system);
            assert_eq!(a["status"]["state"], "active", "{a}");
            // Without endsAt, Alertmanager would resolve the alert after its
            // resolve_timeout (5 min) while the drift goes on: the detector holds it
            // firing past the next expected window (at least 10 minutes).
            let ends = a["endsAt"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .unwrap_or_else(|| panic!("endsAt: {a}"));
            let held = ends.with_timezone(&chrono::Utc) - chrono::Utc::now();
            assert!(
                held > chrono::Duration::minutes(9),
                "an alert must stay firing past the next window, not expire after resolve_timeout: {a}"
            );
            assert!(
                a["annotations"]["summary"]
                    .as_str()
                    .is_some_and(|s| s.contains("drift on")),
                "{a}"
            );
            (l("signal"), l("method"), l("severity"))
        })
        .collect();
    assert_eq!(got, expected);
}
