//! model -> agent (HTTP) -> Kafka -> detector -> webhook, in one process on librdkafka's
//! mock cluster. Runs in `cargo test`; the same flow against a real broker is in
//! `real_broker.rs`.

use driftwatch_e2e::pipeline;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_arrives_as_an_alert_at_the_webhook() {
    let out = pipeline("credit-drift", 4000, 3000, 5, "", false).await;
    assert_eq!(out.windows, 5.0);
    assert!(!out.alerts.is_empty(), "drift must alert");
    // Windows 0 and 1 are before the drift (2000 reference + 2000 undrifted).
    assert!(
        out.alerts
            .iter()
            .all(|a| a["window"]["index"].as_u64() >= Some(2)),
        "no alert before the drift: {:?}",
        out.alerts
    );
    let age_ks = out
        .alerts
        .iter()
        .find(|a| a["signal"] == "age" && a["method"] == "ks")
        .expect("age drift detected by KS");
    assert_eq!(age_ks["severity"], "critical");
    assert!(age_ks["value"].as_f64().expect("p") < 0.01);
    assert_eq!(age_ks["system_id"], "credit-drift");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_drift_raises_no_alert() {
    let out = pipeline("credit-steady", 7000, 0, 5, "", false).await;
    assert_eq!(
        out.windows, 5.0,
        "all windows evaluated, so silence means no drift"
    );
    assert!(out.alerts.is_empty(), "{:?}", out.alerts);
}

/// A model server that retries every batch: each prediction reaches Kafka twice, and the
/// detector drops the repeats, so the windows see the same 7,000 predictions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_batches_are_counted_once() {
    let out = pipeline("credit-retry", 7000, 0, 5, "", true).await;
    assert_eq!(out.windows, 5.0);
    assert_eq!(out.duplicates, 7000.0);
    assert!(out.alerts.is_empty(), "{:?}", out.alerts);
}
