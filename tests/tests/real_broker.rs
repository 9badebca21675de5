//! The binaries as processes against a real Kafka-protocol broker.
//!
//! Run by `tests/real-broker.sh`, which starts tansu and sets `DRIFTWATCH_TEST_BROKERS`;
//! point that variable at any other broker to run the suite there:
//!
//! ```sh
//! DRIFTWATCH_TEST_BROKERS=host:9092 cargo test -p driftwatch-e2e --test real_broker -- --ignored
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use driftwatch_detector::synth::{demo_plan_toml, Drift};
use driftwatch_e2e::process::{brokers, free_port, Proc};
use driftwatch_e2e::{
    binary, create_topics, eventually, metric, post_stream, post_stream_with, WebhookReceiver,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

struct Run {
    alerts: Vec<serde_json::Value>,
    windows: f64,
    alerts_in_kafka: usize,
}

async fn run_pipeline(name: &str, before: usize, after: usize, windows: usize) -> Run {
    run_pipeline_with(name, (before, after), windows, None).await
}

/// What a run with `[performance]` adds: the plan's table, and outcomes posted this many
/// predictions (and seconds) after their own.
struct WithOutcomes {
    performance: &'static str,
    delay: usize,
}

async fn run_pipeline_with(
    name: &str,
    (before, after): (usize, usize),
    windows: usize,
    outcomes: Option<WithOutcomes>,
) -> Run {
    let brokers = brokers();
    let unique = format!(
        "{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let events_topic = format!("dw-e2e-{unique}.events");
    let alerts_topic = format!("dw-e2e-{unique}.alerts");
    let state_topic = format!("dw-e2e-{unique}.state");
    let reports_topic = format!("dw-e2e-{unique}.reports");
    create_topics(
        &brokers,
        &[
            (&events_topic, 3),
            (&alerts_topic, 1),
            (&state_topic, 1),
            (&reports_topic, 1),
        ],
    )
    .await
    .expect("topics created");
    let dir = std::env::temp_dir().join(format!("dw-real-{unique}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let (hook, url) = WebhookReceiver::start().await.expect("webhook");
    let plan = dir.join("plan.toml");
    std::fs::write(
        &plan,
        demo_plan_toml(name, 2000, 1000)
            + &format!("webhook_url = \"{url}\"\nwebhook_sends = \"windows\"\n")
            + outcomes.as_ref().map_or("", |o| o.performance),
    )
    .expect("plan");

    let agent_addr = free_port();
    let mut agent = Proc::spawn(
        "driftwatch-agent",
        dir.join("agent.log"),
        Command::new(binary("driftwatch-agent"))
            .args(["--listen", &agent_addr.to_string()])
            .args(["--brokers", &brokers, "--topic", &events_topic])
            .arg("--data-dir")
            .arg(dir.join("agent")),
    );
    let metrics_addr = free_port();
    let mut detector = Proc::spawn(
        "driftwatch detect",
        dir.join("detector.log"),
        Command::new(binary("driftwatch"))
            .arg("detect")
            .arg("--plan")
            .arg(&plan)
            .args(["--brokers", &brokers, "--events-topic", &events_topic])
            .args([
                "--alerts-topic",
                &alerts_topic,
                "--group",
                &format!("dw-{unique}"),
            ])
            .args(["--metrics-listen", &metrics_addr.to_string()])
            .args([
                "--state-topic",
                &state_topic,
                "--reports-topic",
                &reports_topic,
            ]),
    );
    let client = reqwest::Client::new();
    let ready = eventually(Duration::from_secs(20), || {
        let c = client.clone();
        async move {
            let r = c
                .get(format!("http://{agent_addr}/ready"))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    assert!(ready.is_some(), "agent became ready");

    match &outcomes {
        None => post_stream(agent_addr, name, 7, before, after, false).await,
        Some(o) => {
            post_stream_with(
                agent_addr,
                name,
                7,
                (before, after),
                false,
                Drift::DEMO_WITH_INCOME,
                Some(o.delay),
            )
            .await
        }
    }
    .expect("every batch acknowledged by the agent");

    let series = format!("driftwatch_windows_total{{system=\"{name}\"}}");
    let evaluated = eventually(Duration::from_secs(60), || {
        let c = client.clone();
        let series = series.clone();
        async move {
            let page = metrics_page(&c, metrics_addr).await?;
            let n = metric(&page, &series)?;
            (n >= windows as f64).then_some(n)
        }
    })
    .await
    .unwrap_or(0.0);
    if outcomes.is_some() {
        // The last final window: reported once the last outcomes are joined.
        let series = format!("driftwatch_outcomes_total{{result=\"joined\",system=\"{name}\"}}");
        let joined = (before + after - 2000) as f64;
        let all = eventually(Duration::from_secs(60), || {
            let c = client.clone();
            let series = series.clone();
            async move {
                let page = metrics_page(&c, metrics_addr).await?;
                (metric(&page, &series)? >= joined).then_some(())
            }
        })
        .await;
        assert!(all.is_some(), "every monitored prediction's outcome joined");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The webhook reads the alerts topic in its own consumer group: wait until it has
    // caught up with the topic.
    let alerts_in_kafka = tokio::task::spawn_blocking({
        let (b, t) = (brokers.clone(), alerts_topic.clone());
        move || count(&b, &t)
    })
    .await
    .expect("count");
    let _ = eventually(Duration::from_secs(60), || {
        let n = hook.alerts().len();
        async move { (n >= alerts_in_kafka).then_some(n) }
    })
    .await;

    assert_eq!(
        agent.terminate(),
        Some(0),
        "agent drains and exits 0 on SIGTERM"
    );
    assert_eq!(detector.terminate(), Some(0), "detector exits 0 on SIGTERM");
    drop((agent, detector));
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        alerts: hook.alerts(),
        windows: evaluated,
        alerts_in_kafka,
    }
}

/// The detector's /metrics page, if it answers.
async fn metrics_page(c: &reqwest::Client, addr: std::net::SocketAddr) -> Option<String> {
    c.get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The window alerts on the alerts topic (episode notifications beside them are for
/// the pagers; the webhook here takes every window's alerts).
fn count(brokers: &str, topic: &str) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-audit"))
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.payload().is_some() => {
                let note =
                    serde_json::from_slice::<serde_json::Value>(m.payload().unwrap_or_default())
                        .is_ok_and(|v| v.get("lifecycle").is_some());
                if !note {
                    n += 1;
                }
                quiet_since = Instant::now();
            }
            _ => {
                if n > 0 && quiet_since.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real broker: run tests/real-broker.sh or set DRIFTWATCH_TEST_BROKERS"]
async fn real_broker_drift_reaches_the_webhook_and_the_alerts_topic() {
    let run = run_pipeline("credit-real-drift", 4000, 3000, 5).await;
    assert_eq!(run.windows, 5.0);
    assert!(!run.alerts.is_empty(), "drift must alert");
    assert!(
        run.alerts
            .iter()
            .all(|a| a["window"]["index"].as_u64() >= Some(2)),
        "no alert before the drift: {:?}",
        run.alerts
    );
    assert!(run
        .alerts
        .iter()
        .any(|a| a["signal"] == "age" && a["method"] == "ks" && a["severity"] == "critical"));
    assert_eq!(
        run.alerts_in_kafka,
        run.alerts.len(),
        "every alert also on the alerts topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real broker: run tests/real-broker.sh or set DRIFTWATCH_TEST_BROKERS"]
async fn real_broker_no_drift_no_alert() {
    let run = run_pipeline("credit-real-steady", 7000, 0, 5).await;
    assert_eq!(
        run.windows, 5.0,
        "all windows evaluated, so silence means no drift"
    );
    assert!(run.alerts.is_empty(), "{:?}", run.alerts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real broker: run tests/real-broker.sh or set DRIFTWATCH_TEST_BROKERS"]
async fn real_broker_late_outcomes_raise_an_estimate_then_a_realized_alert() {
    // Outcomes 300 predictions late through the agent's /v1/outcomes; the population
    // moves towards the decision boundary after 4,000 predictions (window 2).
    let run = run_pipeline_with(
        "credit-real-performance",
        (4000, 3000),
        5,
        Some(WithOutcomes {
            performance: "
[performance]
task = \"binary\"
positive_label = \"repaid\"
negative_label = \"defaulted\"
horizon_s = 600
declared = { accuracy = 0.70 }
min_severity = \"warning\"
",
            delay: 300,
        }),
    )
    .await;
    assert_eq!(run.windows, 5.0);
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        run.alerts.iter().filter(|a| a["kind"] == kind).collect()
    };
    let estimates = of("performance_estimate");
    let realized = of("performance");
    assert!(!estimates.is_empty(), "CBPE warned: {:?}", run.alerts);
    assert!(
        !realized.is_empty(),
        "realized accuracy alerted: {:?}",
        run.alerts
    );
    for a in estimates.iter().chain(&realized) {
        assert!(a["window"]["index"].as_u64() >= Some(2), "{a}");
    }
    assert!(realized.iter().any(|a| a["severity"] == "critical"
        && a["summary"]
            .as_str()
            .is_some_and(|s| s.contains("declared in the instructions for use"))));
    // At the webhook in the order raised: the estimate of a window before its realized
    // verdict.
    let first = |kind: &str| run.alerts.iter().position(|a| a["kind"] == kind);
    assert!(first("performance_estimate") < first("performance"));
    assert_eq!(run.alerts_in_kafka, run.alerts.len());
}
