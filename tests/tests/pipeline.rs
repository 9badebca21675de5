//! model -> agent (HTTP) -> Kafka -> detector -> webhook, in one process on librdkafka's
//! mock cluster. Runs in `cargo test`; the same flow against a real broker is in
//! `real_broker.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use driftwatch_agent::config::AgentConfig;
use driftwatch_detector::detect::{self, DetectOptions};
use driftwatch_detector::plan::Plan;
use driftwatch_detector::synth::demo_plan_toml;
use driftwatch_e2e::{eventually, metric, post_stream, WebhookReceiver};
use prometheus::Registry;
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

struct Outcome {
    alerts: Vec<serde_json::Value>,
    windows: f64,
}

/// Run the pipeline for one system; returns the alerts at the webhook once `windows`
/// windows were evaluated.
async fn pipeline(system: &str, before: usize, after: usize, windows: usize) -> Outcome {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic("driftwatch.events", 3, 1)
        .expect("topic");
    cluster
        .create_topic("driftwatch.alerts", 1, 1)
        .expect("topic");
    let brokers = cluster.bootstrap_servers();
    let stop = CancellationToken::new();
    let (hook, url) = WebhookReceiver::start().await.expect("webhook");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let agent_addr = listener.local_addr().expect("addr");
    let mut config = AgentConfig::default();
    config.kafka.brokers = brokers.clone();
    let s = stop.clone();
    let agent = tokio::spawn(driftwatch_agent::run(
        listener,
        config,
        Registry::new(),
        async move { s.cancelled().await },
    ));

    let state = std::env::temp_dir().join(format!("dw-pipeline-{system}-{}", std::process::id()));
    let plan_text = demo_plan_toml(system, 2000, 1000) + &format!("webhook_url = \"{url}\"\n");
    let plan = Arc::new(Plan::from_toml(&plan_text, "plan", PathBuf::new()).expect("plan"));
    let registry = Registry::new();
    let s = stop.clone();
    let detector = tokio::spawn(detect::run(
        DetectOptions {
            brokers,
            group_id: format!("dw-{system}"),
            events_topic: "driftwatch.events".into(),
            alerts_topic: Some("driftwatch.alerts".into()),
            state_dir: state.clone(),
            kafka_properties: Default::default(),
        },
        vec![plan],
        registry.clone(),
        None,
        async move { s.cancelled().await },
    ));

    post_stream(agent_addr, system, 42, before, after)
        .await
        .expect("all batches acknowledged");
    let series = format!("driftwatch_windows_total{{system=\"{system}\"}}");
    let evaluated = eventually(Duration::from_secs(30), || {
        let page = driftwatch_agent::metrics::render(&registry);
        let n = metric(&page, &series).unwrap_or(0.0);
        async move { (n >= windows as f64).then_some(n) }
    })
    .await;
    // Alerts of the last window are delivered before the next message is read; give the
    // webhook a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let _ = agent.await;
    let _ = detector.await;
    let _ = std::fs::remove_dir_all(state);
    Outcome {
        alerts: hook.alerts(),
        windows: evaluated.unwrap_or(0.0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_arrives_as_an_alert_at_the_webhook() {
    let out = pipeline("credit-drift", 4000, 3000, 5).await;
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
    let out = pipeline("credit-steady", 7000, 0, 5).await;
    assert_eq!(
        out.windows, 5.0,
        "all windows evaluated, so silence means no drift"
    );
    assert!(out.alerts.is_empty(), "{:?}", out.alerts);
}
