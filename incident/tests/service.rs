//! The service with its Kafka driver on librdkafka's mock cluster: an Art. 73 deadline
//! comes due and its reminder is published on the alerts topic (where the detector's
//! delivery takes it to Alertmanager), the service skips its own reminder and a damaged
//! payload when it reads them back, and signed checkpoints reach their topic.

mod common;

use std::time::{Duration, Instant};

use common::policy;
use driftwatch_incident::auth::{new_token, Role, Tokens};
use driftwatch_incident::service::{run, IncidentConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message};
use serde_json::{json, Value};

fn read_all(brokers: &str, topic: &str) -> Vec<Vec<u8>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(2) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(m.payload().unwrap_or_default().to_vec());
            last = Instant::now();
        }
    }
    out
}

fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_deadline_is_published_and_checkpoints_reach_their_topic() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for t in ["alerts", "reports", "checkpoints"] {
        cluster.create_topic(t, 1, 1).expect("topic");
    }
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().expect("dir");
    let (token, line) = new_token("olga", Role::Operator, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let config = IncidentConfig {
        database_url: format!("sqlite:{}", dir.path().join("i.db").display()),
        brokers: brokers.clone(),
        security: Default::default(),
        kafka_properties: Default::default(),
        alerts_topic: "alerts".into(),
        reports_topic: "reports".into(),
        checkpoints_topic: "checkpoints".into(),
        control_topic: String::new(),
        group_id: "incidents".into(),
        policies: vec![policy()],
        tokens: Tokens::parse(&line, "test").expect("tokens"),
        signing_key: dir.path().join("audit.key"),
        origin: "driftwatch.test/audit".into(),
        checkpoint_interval: Duration::from_millis(200),
        reminder_interval: Duration::from_millis(200),
        evidence_wait: Duration::from_millis(100),
        mail: None,
        public_url: None,
    };
    let stop = tokio_util_like::Stop::new();
    let stopped = stop.clone();
    let service = tokio::spawn(run(listener, config, async move { stopped.wait().await }));
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http
        .get(format!("{base}/ready"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "service ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A serious incident the provider became aware of 14.5 days ago: its 15-day
    // deadline is 12 h away, inside the 24 h reminder.
    let aware = chrono::Utc::now() - chrono::Duration::hours(14 * 24 + 12);
    let r = http
        .post(format!("{base}/v1/incidents"))
        .bearer_auth(&token)
        .json(&json!({"system_id": "credit", "description": "a deployer reported harm", "serious": "serious_harm_to_health", "aware_at": aware}))
        .send()
        .await
        .expect("open");
    assert_eq!(r.status(), 201);
    let inc: Value = r.json().await.expect("json");
    let id = inc["id"].as_str().expect("id").to_owned();
    // A damaged payload on the alerts topic is skipped and counted, nothing else.
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("producer");
    p.send(
        BaseRecord::to("alerts")
            .key("credit")
            .payload("not an alert"),
    )
    .expect("send");
    p.flush(Duration::from_secs(10)).expect("flush");

    let mut page = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        page = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let ok = metric(
            &page,
            "driftwatch_incident_alerts_total{result=\"ignored\"}",
        ) == Some(1.0)
            && metric(
                &page,
                "driftwatch_incident_alerts_total{result=\"invalid\"}",
            ) == Some(1.0)
            && metric(&page, "driftwatch_audit_checkpoint_size").is_some_and(|n| n >= 3.0);
        if ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(
            &page,
            "driftwatch_obligations_published_total{kind=\"art73\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        metric(
            &page,
            "driftwatch_incident_alerts_total{result=\"ignored\"}"
        ),
        Some(1.0),
        "its own reminder, read back: {page}"
    );
    assert_eq!(
        metric(
            &page,
            "driftwatch_incident_alerts_total{result=\"invalid\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "driftwatch_incidents_open{system=\"credit\"}"),
        Some(1.0),
        "{page}"
    );

    let alerts: Vec<Value> = read_all(&brokers, "alerts")
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();
    assert_eq!(alerts.len(), 1, "one reminder, once: {alerts:?}");
    let a = &alerts[0];
    assert_eq!(a["kind"], "obligation");
    assert_eq!(a["alert_id"], format!("{id}/art73/24h"));
    assert_eq!(a["severity"], "critical");
    assert_eq!(a["system_id"], "credit");
    assert!(
        a["summary"]
            .as_str()
            .is_some_and(|s| s.contains("Art. 73(2)") && s.contains(&id)),
        "{a}"
    );
    assert!(driftwatch_schema::Alert::from_wire(&serde_json::to_vec(a).expect("json")).is_ok());

    let cp: Value = http
        .get(format!("{base}/v1/audit/checkpoint"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("cp")
        .json()
        .await
        .expect("json");
    let key = cp["verifier_key"].as_str().expect("key").to_owned();
    let notes = read_all(&brokers, "checkpoints");
    assert!(!notes.is_empty(), "checkpoints published");
    for n in &notes {
        let note = String::from_utf8_lossy(n);
        driftwatch_incident::audit::parse_checkpoint(&note, Some(&key))
            .expect("each published checkpoint verifies");
    }
    stop.stop();
    service
        .await
        .expect("join")
        .expect("the service stopped cleanly");
}

/// A tiny stop latch (the crate has no tokio-util dependency).
mod tokio_util_like {
    use std::sync::Arc;
    use tokio::sync::watch;

    #[derive(Clone)]
    pub struct Stop(Arc<watch::Sender<bool>>);

    impl Stop {
        pub fn new() -> Stop {
            Stop(Arc::new(watch::channel(false).0))
        }
        pub fn stop(&self) {
            let _ = self.0.send(true);
        }
        pub async fn wait(&self) {
            let mut rx = self.0.subscribe();
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}
