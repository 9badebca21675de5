//! One page per episode, end to end on the embedded broker: drifted telemetry through
//! the agent and the detector reaches a Slack-compatible webhook, a PagerDuty Events v2
//! endpoint and a generic webhook (episodes) as one firing notification per condition,
//! while a windows webhook gets every window's alert. Each receiver here is a local
//! HTTP server that records what it was sent; the shapes are checked field by field.

use std::collections::{BTreeMap, BTreeSet};

use driftwatch_e2e::{pipeline, WebhookReceiver};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drift_pages_once_per_condition_at_slack_pagerduty_and_a_webhook() {
    let (slack, slack_url) = WebhookReceiver::start().await.expect("slack");
    let (pd, pd_url) = WebhookReceiver::start().await.expect("pagerduty");
    // The pipeline's own webhook gets every window's alert (webhook_sends = "windows");
    // Slack and PagerDuty the episodes.
    let extra = format!(
        "slack_webhook_url = \"{slack_url}\"\npagerduty_routing_key = \"TESTROUTINGKEY\"\npagerduty_url = \"{pd_url}\"\nincident_url = \"https://dw.example/v1/incidents?system_id={{system}}\"\n"
    );
    let out = pipeline("credit-paging", 4000, 4000, 6, &extra, false).await;
    assert!(!out.alerts.is_empty(), "drift must alert");

    // The windows' alerts by condition; a condition fires once 2 of its last 3 windows
    // breached (the default).
    let mut windows: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for a in &out.alerts {
        assert!(
            a.get("lifecycle").is_none(),
            "a windows webhook gets window alerts: {a}"
        );
        let key = format!(
            "{}/{}",
            a["signal"].as_str().unwrap_or_default(),
            a["method"].as_str().unwrap_or_default()
        );
        windows
            .entry(key)
            .or_default()
            .push(a["window"]["index"].as_i64().unwrap_or(-1));
    }
    let firing: BTreeSet<String> = windows
        .iter()
        .filter(|(_, ws)| {
            ws.iter()
                .any(|w| ws.iter().filter(|v| *v <= w && **v > w - 3).count() >= 2)
        })
        .map(|(k, _)| k.clone())
        .collect();
    assert!(!firing.is_empty());

    // PagerDuty: one trigger per firing condition, nothing resolved (the drift goes on).
    let wait = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pd.alerts().len() < firing.len() && std::time::Instant::now() < wait {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let events = pd.alerts();
    let mut keys = BTreeSet::new();
    for e in &events {
        assert_eq!(e["routing_key"], "TESTROUTINGKEY", "{e}");
        assert_eq!(e["client"], "driftwatch");
        let action = e["event_action"].as_str().unwrap_or_default();
        assert!(
            action == "trigger",
            "only triggers while the drift goes on: {e}"
        );
        let p = &e["payload"];
        let summary = p["summary"].as_str().unwrap_or_default();
        assert!(
            summary.starts_with("FIRING ") || summary.starts_with("ESCALATED "),
            "{e}"
        );
        assert!(summary.len() <= 1024);
        assert_eq!(p["source"], "driftwatch/credit-paging");
        assert!(
            matches!(p["severity"].as_str(), Some("critical" | "warning")),
            "{e}"
        );
        assert!(p["timestamp"]
            .as_str()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()));
        assert_eq!(
            e["links"][0]["href"],
            "https://dw.example/v1/incidents?system_id=credit-paging"
        );
        let dedup = e["dedup_key"].as_str().unwrap_or_default().to_owned();
        assert!(dedup.starts_with("credit-paging/drift/"), "{e}");
        if summary.starts_with("FIRING ") {
            assert!(
                keys.insert(dedup.clone()),
                "one firing per episode: {dedup} twice"
            );
        }
    }
    let fired: BTreeSet<String> = keys
        .iter()
        .map(|k| {
            let cond = k.trim_start_matches("credit-paging/drift/");
            cond.rsplit_once('@').map_or(cond, |(c, _)| c).to_owned()
        })
        .collect();
    assert_eq!(
        fired, firing,
        "a page per condition that fired, none for the others"
    );
    assert!(
        events.len() < out.alerts.len(),
        "{} pages for {} window alerts",
        events.len(),
        out.alerts.len()
    );

    // Slack: the same pages, as text and blocks.
    let messages = slack.alerts();
    assert_eq!(
        messages.len(),
        events.len(),
        "Slack and PagerDuty get the same pages"
    );
    for m in &messages {
        let text = m["text"].as_str().unwrap_or_default();
        assert!(
            text.contains("FIRING ") || text.contains("ESCALATED "),
            "{m}"
        );
        assert!(text.contains("<https://dw.example/v1/incidents?system_id=credit-paging|Incidents of credit-paging>"), "{m}");
        assert_eq!(m["blocks"][0]["type"], "section");
    }
}

/// With `fire_after = of_last = resolve_after = 1` every condition pages at its first
/// breaching window: each condition that raised a window alert has a FIRING page.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_plan_sets_when_an_episode_fires() {
    let (slack, slack_url) = WebhookReceiver::start().await.expect("slack");
    let extra = format!(
        "slack_webhook_url = \"{slack_url}\"\nepisodes = {{ fire_after = 1, of_last = 1, resolve_after = 1 }}\n"
    );
    let out = pipeline("credit-paging-k1", 4000, 3000, 5, &extra, false).await;
    let conditions: BTreeSet<String> = out
        .alerts
        .iter()
        .map(|a| {
            format!(
                "{} of credit-paging-k1",
                a["signal"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert!(!conditions.is_empty());
    let wait = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let firing = |texts: &[Value]| {
        texts
            .iter()
            .filter(|m| m["text"].as_str().is_some_and(|t| t.contains(" FIRING ")))
            .count()
    };
    let want: usize = out
        .alerts
        .iter()
        .map(|a| (a["signal"].to_string(), a["method"].to_string()))
        .collect::<BTreeSet<_>>()
        .len();
    while firing(&slack.alerts()) < want && std::time::Instant::now() < wait {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let texts = slack.alerts();
    assert!(
        firing(&texts) >= want,
        "{} firing pages for {want} conditions",
        firing(&texts)
    );
    for m in &texts {
        let t = m["text"].as_str().unwrap_or_default();
        assert!(
            conditions.iter().any(|c| t.contains(c.as_str())),
            "a page about an alerting signal: {t}"
        );
    }
}

/// Monitoring must be active (Art. 72(2)): a system whose telemetry stops for longer
/// than its plan's `heartbeat_s` pages once (`telemetry`), and its next event resolves
/// the page. Through the detector service on the embedded broker, to a Slack-compatible
/// receiver and a PagerDuty endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_that_stops_pages_and_its_return_resolves() {
    use std::sync::Arc;
    use std::time::Duration;

    use driftwatch_detector::driver::kafka::KafkaOptions;
    use driftwatch_detector::plan::Plan;
    use driftwatch_detector::service::{self, ServiceConfig};
    use driftwatch_detector::synth::{demo_plan_toml, CreditModel, Drift};
    use driftwatch_e2e::kafka::{mock_cluster, produce};
    use driftwatch_schema::Event;

    let (slack, slack_url) = WebhookReceiver::start().await.expect("slack");
    let (pd, pd_url) = WebhookReceiver::start().await.expect("pagerduty");
    let (_cluster, brokers) = mock_cluster();
    let system = "credit-heartbeat";
    let mut model = CreditModel::new(system, 3);
    let batch = |model: &mut CreditModel, n: usize| -> Vec<Event> {
        (0..n)
            .map(|_| Event::Prediction(model.next_prediction(Drift::NONE)))
            .collect()
    };
    produce(&brokers, "driftwatch.events", &batch(&mut model, 100));
    let plan_text = demo_plan_toml(system, 2000, 1000).replace(
        "min_severity = \"critical\"",
        &format!(
            "min_severity = \"critical\"\nheartbeat_s = 2\nslack_webhook_url = \"{slack_url}\"\npagerduty_routing_key = \"K\"\npagerduty_url = \"{pd_url}\""
        ),
    );
    let plan =
        Arc::new(Plan::from_toml(&plan_text, "plan", std::path::PathBuf::new()).expect("plan"));
    let mut opts = KafkaOptions::new(&brokers);
    opts.group_id = "dw-heartbeat".into();
    opts.checkpoint_interval = Duration::from_millis(500);
    let config = ServiceConfig::new(opts, vec![plan]);
    let registry = config.registry.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handle = tokio::spawn(service::run(listener, config, async move {
        s.cancelled().await
    }));

    let texts = |r: &WebhookReceiver| -> Vec<String> {
        r.alerts()
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    // Silence after the first 100 events: one page, a few seconds later.
    let fired = driftwatch_e2e::eventually(Duration::from_secs(30), || {
        let t = texts(&slack);
        async move {
            t.iter()
                .any(|t| t.contains("no telemetry from credit-heartbeat"))
                .then_some(())
        }
    })
    .await;
    assert!(fired.is_some(), "the silence pages: {:?}", texts(&slack));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        texts(&slack).len(),
        1,
        "once per silence: {:?}",
        texts(&slack)
    );
    // Telemetry comes back: the page resolves.
    produce(&brokers, "driftwatch.events", &batch(&mut model, 10));
    let resolved = driftwatch_e2e::eventually(Duration::from_secs(30), || {
        let t = texts(&slack);
        async move {
            t.iter()
                .any(|t| t.contains("RESOLVED telemetry of credit-heartbeat"))
                .then_some(())
        }
    })
    .await;
    assert!(
        resolved.is_some(),
        "the return resolves: {:?}",
        texts(&slack)
    );
    let _ = driftwatch_e2e::eventually(Duration::from_secs(30), || {
        let n = pd.alerts().len();
        async move { (n >= 2).then_some(()) }
    })
    .await;
    let events = pd.alerts();
    assert_eq!(events[0]["event_action"], "trigger", "{events:?}");
    assert_eq!(events[0]["payload"]["group"], "telemetry");
    assert_eq!(events[1]["event_action"], "resolve", "{events:?}");
    assert_eq!(events[0]["dedup_key"], events[1]["dedup_key"]);
    let page = driftwatch_common::health::render(&registry);
    assert_eq!(
        driftwatch_e2e::metric(
            &page,
            "driftwatch_alert_notifications_total{status=\"firing\",system=\"credit-heartbeat\"}"
        ),
        Some(1.0),
        "{page}"
    );
    stop.cancel();
    handle.await.expect("join").expect("service ran");
}

/// Drift that stops: every condition that fired at Slack and PagerDuty is resolved there
/// once its windows are clean again (3 in a row, the default), PagerDuty's resolve with
/// the trigger's dedup key, each after its own trigger.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drift_that_stops_resolves_every_page_it_raised() {
    use driftwatch_detector::synth::Drift;
    let (slack, slack_url) = WebhookReceiver::start().await.expect("slack");
    let (pd, pd_url) = WebhookReceiver::start().await.expect("pagerduty");
    let extra = format!(
        "slack_webhook_url = \"{slack_url}\"\npagerduty_routing_key = \"TESTROUTINGKEY\"\npagerduty_url = \"{pd_url}\"\n"
    );
    // 2,000 reference predictions, 2,000 clean, 4,000 drifted, 6,000 clean again: 12
    // windows of 1,000.
    let out = driftwatch_e2e::pipeline_with(
        "credit-recover",
        &[
            (4000, Drift::NONE),
            (4000, Drift::DEMO),
            (6000, Drift::NONE),
        ],
        12,
        &extra,
        false,
    )
    .await;
    assert!(!out.alerts.is_empty(), "the drift alerts");
    let settled = |r: &WebhookReceiver| {
        let events = r.alerts();
        let opened: BTreeSet<String> = events
            .iter()
            .filter(|e| e["event_action"] == "trigger")
            .filter_map(|e| e["dedup_key"].as_str().map(str::to_owned))
            .collect();
        let closed: BTreeSet<String> = events
            .iter()
            .filter(|e| e["event_action"] == "resolve")
            .filter_map(|e| e["dedup_key"].as_str().map(str::to_owned))
            .collect();
        (!opened.is_empty() && opened == closed).then_some(events)
    };
    let mut events = None;
    for _ in 0..300 {
        events = settled(&pd);
        if events.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let events = events.unwrap_or_else(|| {
        panic!(
            "every PagerDuty trigger resolved with its dedup key: {:#?}",
            pd.alerts()
        )
    });
    for (i, e) in events.iter().enumerate() {
        if e["event_action"] == "resolve" {
            let key = &e["dedup_key"];
            assert!(
                events[..i]
                    .iter()
                    .any(|t| t["event_action"] == "trigger" && &t["dedup_key"] == key),
                "a resolve after its trigger: {e}"
            );
        }
    }
    // Slack: a RESOLVED page for each condition that fired.
    let pages: Vec<String> = slack
        .alerts()
        .iter()
        .filter_map(|p| p["text"].as_str().map(str::to_owned))
        .collect();
    let fired = pages.iter().filter(|t| t.contains(" FIRING ")).count();
    let resolved = pages.iter().filter(|t| t.contains(" RESOLVED ")).count();
    assert!(fired > 0, "{pages:#?}");
    assert_eq!(
        resolved, fired,
        "one resolve per condition fired: {pages:#?}"
    );
}
