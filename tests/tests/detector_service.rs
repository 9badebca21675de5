//! The detector service as `driftwatch detect` runs it (`service::run`), on librdkafka's
//! mock cluster: one answer from both drivers, alert delivery that never holds up
//! consumption, and a readiness latch that waits for the references.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use driftwatch_detector::alert::alerts_for;
use driftwatch_detector::driver::file::replay;
use driftwatch_detector::driver::kafka::KafkaOptions;
use driftwatch_detector::engine::WindowReport;
use driftwatch_detector::input;
use driftwatch_detector::plan::Plan;
use driftwatch_detector::service::{self, ServiceConfig};
use driftwatch_detector::synth::{demo_plan_toml, CreditModel, Drift};
use driftwatch_e2e::kafka::{mock_cluster, produce};
use driftwatch_e2e::{eventually, metric};
use driftwatch_schema::Event;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../detector/tests/golden")
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dw-service-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Every payload of `topic` (one partition), read until `want` arrived or 30 s passed.
fn read_topic(brokers: &str, topic: &str, want: usize) -> Vec<serde_json::Value> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push(serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON"));
        }
    }
    out
}

/// Episode notifications the detector wrote for `system` (its metrics page).
fn notes_raised(page: &str, system: &str) -> usize {
    ["firing", "escalated", "ongoing", "resolved"]
        .iter()
        .map(|s| {
            metric(
                page,
                &format!(
                    "driftwatch_alert_notifications_total{{status=\"{s}\",system=\"{system}\"}}"
                ),
            )
            .unwrap_or(0.0) as usize
        })
        .sum()
}

/// The alerts topic's window alerts (ids) and episode notifications, `total` in all.
fn read_alerts(brokers: &str, total: usize) -> (Vec<String>, Vec<serde_json::Value>) {
    let all = read_topic(brokers, "driftwatch.alerts", total);
    let (notes, windows): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|a| a.get("lifecycle").is_some());
    let ids = windows
        .iter()
        .map(|a| a["alert_id"].as_str().expect("id").to_owned())
        .collect();
    (ids, notes)
}

fn kafka_options(brokers: &str) -> KafkaOptions {
    KafkaOptions {
        group_id: "dw-service-test".into(),
        ..KafkaOptions::new(brokers)
    }
}

/// The golden corpus's wire events with a retry in it: every 25th prediction sent again
/// three events later with a new event id, as a model server retrying after a lost 202
/// would.
fn events_with_retries() -> (Vec<Event>, usize) {
    let events: Vec<Event> = input::open_ndjson(&golden().join("events.ndjson"))
        .expect("open")
        .map(|e| e.expect("valid event"))
        .collect();
    let mut out = Vec::new();
    let mut pending: Vec<(usize, Event)> = Vec::new();
    let mut repeats = 0;
    for (i, e) in events.into_iter().enumerate() {
        if let Event::Prediction(p) = &e {
            if i % 25 == 0 {
                let mut again = p.clone();
                again.event_id = uuid::Uuid::from_u64_pair(0xdead, i as u64);
                pending.push((i + 3, Event::Prediction(again)));
                repeats += 1;
            }
        }
        out.push(e);
        while let Some(pos) = pending.iter().position(|(at, _)| *at <= i) {
            out.push(pending.remove(pos).1);
        }
    }
    out.extend(pending.into_iter().map(|(_, e)| e));
    (out, repeats)
}

/// The same events through `replay` (file driver) and `service::run` (Kafka driver):
/// identical window reports for every window that closed, identical alert ids, and the
/// retried predictions dropped by both.
async fn both_drivers_one_answer(plan_file: &str) {
    let dir = temp(&format!("both-{}", plan_file.replace('.', "-")));
    let (events, repeats) = events_with_retries();
    // The file driver, over an export holding the same retries.
    let export = dir.join("export.ndjson");
    std::fs::write(
        &export,
        events
            .iter()
            .map(|e| String::from_utf8(e.to_wire()).expect("utf8") + "\n")
            .collect::<String>(),
    )
    .expect("export");
    let plan = Arc::new(Plan::from_file(&golden().join(plan_file)).expect("plan"));
    let mut out = Vec::new();
    let summary = replay(plan.clone(), None, &export, &mut out).expect("replay");
    assert_eq!(
        summary.duplicates, repeats as u64,
        "replay drops every retry"
    );
    let replayed: Vec<WindowReport> = String::from_utf8(out)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("report"))
        .filter(|r: &WindowReport| r.window.complete)
        .collect();
    assert!(replayed.len() >= 5, "{} windows", replayed.len());
    // Each window's alerts, then the episode notifications it caused, as the Kafka
    // driver writes them.
    let mut episodes = driftwatch_detector::alert::episode::Episodes::default();
    let links = driftwatch_detector::alert::episode::Links::of(&plan);
    let want_alerts: Vec<String> = replayed
        .iter()
        .flat_map(|r| {
            let min = plan.alerts.min_severity;
            let notes = episodes.observe(
                &plan.alerts.episodes,
                &links,
                driftwatch_detector::alert::drift_verdicts(r, min),
            );
            alerts_for(r, min).into_iter().chain(notes)
        })
        .map(|a| a.alert_id)
        .collect();
    assert!(!want_alerts.is_empty());
    assert!(want_alerts.iter().any(|a| a.contains("/firing/")));

    // The Kafka driver.
    let (_cluster, brokers) = mock_cluster();
    produce(&brokers, "driftwatch.events", &events);
    let (tx, mut rx) = mpsc::unbounded_channel::<WindowReport>();
    let mut config = ServiceConfig::new(kafka_options(&brokers), vec![plan]);
    config.outputs.push(Arc::new(tx));
    let registry = config.registry.clone();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let service = tokio::spawn(service::run(listener, config, async move {
        s.cancelled().await
    }));
    let mut streamed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while streamed.len() < replayed.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(r)) => streamed.push(r),
            _ => break,
        }
    }
    // Every event consumed (the last retries come after the last window closed).
    let predictions = events
        .iter()
        .filter(|e| matches!(e, Event::Prediction(_)))
        .count() as f64;
    let page = eventually(Duration::from_secs(30), || {
        let page = driftwatch_common::health::render(&registry);
        async move {
            let seen = metric(
                &page,
                "driftwatch_events_total{kind=\"prediction\",system=\"golden\"}",
            )
            .unwrap_or(0.0)
                + metric(
                    &page,
                    "driftwatch_events_duplicate_total{system=\"golden\"}",
                )
                .unwrap_or(0.0);
            (seen >= predictions).then_some(page)
        }
    })
    .await
    .unwrap_or_default();
    stop.cancel();
    service.await.expect("join").expect("service ran");
    assert_eq!(
        metric(
            &page,
            "driftwatch_events_duplicate_total{system=\"golden\"}"
        ),
        Some(repeats as f64),
        "the Kafka driver drops every retry"
    );
    assert_eq!(streamed.len(), replayed.len(), "{plan_file}: windows");
    for (s, r) in streamed.iter().zip(&replayed) {
        assert_eq!(
            serde_json::to_value(s).expect("json"),
            serde_json::to_value(r).expect("json"),
            "{plan_file}: window {}",
            r.window.index
        );
    }
    let got_alerts: Vec<String> = read_topic(&brokers, "driftwatch.alerts", want_alerts.len())
        .iter()
        .map(|a| a["alert_id"].as_str().expect("alert_id").to_owned())
        .collect();
    assert_eq!(got_alerts, want_alerts, "{plan_file}: alert ids");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_drivers_one_answer_count_windows_reference_file() {
    both_drivers_one_answer("count.toml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_drivers_one_answer_sliding_windows_reference_from_the_stream() {
    both_drivers_one_answer("sliding.toml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_drivers_one_answer_event_time_windows_with_late_events() {
    both_drivers_one_answer("time.toml").await;
}

/// A webhook that answers nothing until the test releases it.
#[derive(Clone)]
struct HangingHook {
    released: tokio::sync::watch::Receiver<bool>,
    received: Arc<Mutex<Vec<(Instant, serde_json::Value)>>>,
}

async fn hang(State(mut h): State<HangingHook>, body: axum::body::Bytes) -> &'static str {
    let _ = h.released.wait_for(|r| *r).await;
    if let (Ok(v), Ok(mut list)) = (serde_json::from_slice(&body), h.received.lock()) {
        list.push((Instant::now(), v));
    }
    "ok"
}

/// A receiver that hangs does not hold up consumption: every window is evaluated, on
/// /metrics and on the alerts topic, while it hangs; once it answers, every alert
/// arrives, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_webhook_delays_nothing_and_still_gets_every_alert() {
    let dir = temp("hang");
    let started = Instant::now();
    let (release, released) = tokio::sync::watch::channel(false);
    let hook = HangingHook {
        released,
        received: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/alerts", listener.local_addr().expect("addr"));
    let app = Router::new()
        .route("/alerts", post(hang))
        .with_state(hook.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (_cluster, brokers) = mock_cluster();
    let mut model = CreditModel::new("credit-hang", 9);
    let events: Vec<Event> = (0..6000)
        .map(|i| {
            let drift = if i < 4000 { Drift::NONE } else { Drift::DEMO };
            Event::Prediction(model.next_prediction(drift))
        })
        .collect();
    produce(&brokers, "driftwatch.events", &events);
    let plan_text = demo_plan_toml("credit-hang", 2000, 1000).replace(
        "min_severity = \"critical\"",
        &format!(
            "min_severity = \"critical\"\nwebhook_url = \"{url}\"\nwebhook_sends = \"windows\""
        ),
    );
    let plan = Arc::new(Plan::from_toml(&plan_text, "plan", PathBuf::new()).expect("plan"));
    let config = ServiceConfig::new(kafka_options(&brokers), vec![plan]);
    let registry = config.registry.clone();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let service_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let service = tokio::spawn(service::run(service_listener, config, async move {
        s.cancelled().await
    }));

    // All four windows evaluated, and their alerts on Kafka, well before the hook answers.
    let windows = eventually(Duration::from_secs(20), || {
        let page = driftwatch_common::health::render(&registry);
        async move {
            metric(&page, "driftwatch_windows_total{system=\"credit-hang\"}").filter(|n| *n >= 4.0)
        }
    })
    .await;
    assert_eq!(
        windows,
        Some(4.0),
        "windows evaluated while the webhook hangs"
    );
    let page = driftwatch_common::health::render(&registry);
    let raised = metric(
        &page,
        "driftwatch_alerts_total{severity=\"critical\",system=\"credit-hang\"}",
    )
    .expect("alerts raised");
    assert!(raised >= 2.0, "{page}");
    let notes = notes_raised(&page, "credit-hang");
    let (on_kafka, _) = tokio::task::spawn_blocking({
        let brokers = brokers.clone();
        move || read_alerts(&brokers, raised as usize + notes)
    })
    .await
    .expect("join");
    assert_eq!(
        on_kafka.len(),
        raised as usize,
        "alerts on Kafka while the webhook hangs"
    );
    assert!(hook.received.lock().expect("lock").is_empty());

    // The webhook hangs for 30 s in all (its attempts time out after 5 s and are
    // retried), then answers: every alert arrives, in the order raised.
    tokio::time::sleep_until((started + Duration::from_secs(30)).into()).await;
    let _ = release.send(true);
    let all = eventually(Duration::from_secs(90), || {
        let n = hook.received.lock().map(|v| v.len()).unwrap_or(0);
        async move { (n >= raised as usize).then_some(n) }
    })
    .await;
    assert_eq!(
        all,
        Some(raised as usize),
        "every alert reached the webhook"
    );
    let delivered: Vec<String> = hook
        .received
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, a)| a["alert_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(delivered, on_kafka, "in order");
    let page = driftwatch_common::health::render(&registry);
    assert!(
        metric(
            &page,
            "driftwatch_alert_delivery_failures_total{sink=\"webhook\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "the timed-out attempts are counted: {page}"
    );
    stop.cancel();
    service.await.expect("join").expect("service ran");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `/ready` answers 503 until every plan's reference is loaded or built and the consumer
/// has its partitions: here the reference file is a named pipe that holds nothing until
/// the test writes it.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_waits_for_the_references() {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = temp("ready");
    let fifo = dir.join("reference.ndjson");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let mut model = CreditModel::new("credit-ready", 3);
    let content: String = (0..300)
        .map(|_| format!("{}\n", model.next_json(Drift::NONE)))
        .collect();
    std::fs::write(
        dir.join("plan.toml"),
        "[system]\nid = \"credit-ready\"\n[reference]\nfile = \"reference.ndjson\"\n[window]\nsize = 100\n[features.age]\ntype = \"numeric\"\n",
    )
    .expect("plan");
    let plan = Arc::new(Plan::from_file(&dir.join("plan.toml")).expect("plan"));
    let (_cluster, brokers) = mock_cluster();
    let config = ServiceConfig::new(kafka_options(&brokers), vec![plan]);
    let stop = CancellationToken::new();
    let s = stop.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let service = tokio::spawn(service::run(listener, config, async move {
        s.cancelled().await
    }));
    let http = reqwest::Client::new();
    let status = |path: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.get(format!("{base}{path}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    // While the reference cannot be read: live, metrics, but not ready.
    for _ in 0..5 {
        assert_eq!(status("/live").await, 200);
        assert_eq!(status("/ready").await, 503);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status("/metrics").await, 200);

    // Feed the pipe each time the service opens it (it reads the file to fingerprint it,
    // then to build the reference).
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (fifo, done) = (fifo.clone(), done.clone());
        std::thread::spawn(move || {
            const O_NONBLOCK: i32 = 0o4000;
            let mut fed = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) && fed < 20 {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(O_NONBLOCK)
                    .open(&fifo)
                {
                    Ok(mut f) => {
                        let mut rest = content.as_bytes();
                        while !rest.is_empty() {
                            match f.write(rest) {
                                Ok(n) => rest = &rest[n..],
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                    std::thread::sleep(Duration::from_millis(1))
                                }
                                Err(e) => panic!("write: {e}"),
                            }
                        }
                        fed += 1;
                        drop(f);
                        // Let the reader see the end of the file and close it before
                        // the next feed (a writer that reopens at once would extend
                        // the same read).
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    // No reader yet.
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
    };
    let ready = eventually(Duration::from_secs(20), || {
        let s = status("/ready");
        async move { (s.await == 200).then_some(()) }
    })
    .await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().expect("writer");
    assert!(ready.is_some(), "ready once the reference was built");
    // Ready means consuming: the group is joined and the partitions assigned.
    let page = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metric(&page, "driftwatch_partitions_assigned").is_some_and(|n| n >= 1.0),
        "ready before the consumer had its partitions"
    );
    stop.cancel();
    service.await.expect("join").expect("service ran");
    let opts = kafka_options(&brokers);
    let kept = tokio::task::spawn_blocking(move || {
        driftwatch_detector::driver::kafka::read_state(&opts).expect("state topic")
    })
    .await
    .expect("join");
    assert!(
        kept.references
            .keys()
            .any(|(system, _)| system == "credit-ready"),
        "the built reference is kept on the state topic"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run the service on 6,000 predictions (drift after 4,000) with alerts to `url`, and
/// `roots` trusted for https receivers; returns what the alerts topic got and the
/// service's metrics page once every raised alert is on Kafka plus `settle`.
async fn run_with_webhook(
    name: &str,
    url: &str,
    roots: Vec<reqwest::Certificate>,
    settle: Duration,
) -> (usize, String) {
    let dir = temp(name);
    let (_cluster, brokers) = mock_cluster();
    let system = format!("credit-{name}");
    let mut model = CreditModel::new(&system, 11);
    let events: Vec<Event> = (0..6000)
        .map(|i| {
            let drift = if i < 4000 { Drift::NONE } else { Drift::DEMO };
            Event::Prediction(model.next_prediction(drift))
        })
        .collect();
    produce(&brokers, "driftwatch.events", &events);
    let plan_text = demo_plan_toml(&system, 2000, 1000).replace(
        "min_severity = \"critical\"",
        &format!(
            "min_severity = \"critical\"\nwebhook_url = \"{url}\"\nwebhook_sends = \"windows\""
        ),
    );
    let plan = Arc::new(Plan::from_toml(&plan_text, "plan", PathBuf::new()).expect("plan"));
    let mut config = ServiceConfig::new(kafka_options(&brokers), vec![plan]);
    config.delivery.receiver_roots = roots;
    let registry = config.registry.clone();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let service = tokio::spawn(service::run(listener, config, async move {
        s.cancelled().await
    }));
    let series = format!("driftwatch_windows_total{{system=\"{system}\"}}");
    let windows = eventually(Duration::from_secs(30), || {
        let page = driftwatch_common::health::render(&registry);
        let series = series.clone();
        async move { metric(&page, &series).filter(|n| *n >= 4.0) }
    })
    .await;
    assert_eq!(windows, Some(4.0), "every window evaluated");
    let page = driftwatch_common::health::render(&registry);
    let raised = metric(
        &page,
        &format!("driftwatch_alerts_total{{severity=\"critical\",system=\"{system}\"}}"),
    )
    .expect("alerts raised") as usize;
    let notes = notes_raised(&page, &system);
    let on_kafka = tokio::task::spawn_blocking({
        let brokers = brokers.clone();
        move || read_alerts(&brokers, raised + notes).0.len()
    })
    .await
    .expect("join");
    tokio::time::sleep(settle).await;
    let page = driftwatch_common::health::render(&registry);
    stop.cancel();
    service.await.expect("join").expect("service ran");
    let _ = std::fs::remove_dir_all(&dir);
    (on_kafka, page)
}

/// An https webhook gets every alert when its CA is given (`--receiver-ca-file`), and
/// none when it is not: the certificate is checked, never waved through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_webhook_is_reached_only_through_a_trusted_certificate() {
    let ca = std::fs::read(driftwatch_e2e::tls_fixture("ca.pem")).expect("ca");
    let roots = reqwest::Certificate::from_pem_bundle(&ca).expect("pem");

    let (hook, url) = driftwatch_e2e::WebhookReceiver::start_tls()
        .await
        .expect("https receiver");
    assert!(url.starts_with("https://"));
    let (on_kafka, _) = run_with_webhook("https", &url, roots, Duration::ZERO).await;
    assert!(on_kafka >= 2, "drift raised alerts");
    let got = eventually(Duration::from_secs(20), || {
        let n = hook.alerts().len();
        async move { (n >= on_kafka).then_some(n) }
    })
    .await;
    assert_eq!(got, Some(on_kafka), "every alert over https");

    let (untrusting, url) = driftwatch_e2e::WebhookReceiver::start_tls()
        .await
        .expect("https receiver");
    let (on_kafka, page) =
        run_with_webhook("https-untrusted", &url, Vec::new(), Duration::from_secs(6)).await;
    assert!(on_kafka >= 2);
    assert!(
        untrusting.alerts().is_empty(),
        "an unknown CA must not be trusted"
    );
    assert!(
        metric(
            &page,
            "driftwatch_alert_delivery_failures_total{sink=\"webhook\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "the refused handshakes are counted: {page}"
    );
}

/// A webhook that answers 503 until switched on, recording what it accepts.
#[derive(Clone, Default)]
struct SwitchedHook {
    on: Arc<std::sync::atomic::AtomicBool>,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl SwitchedHook {
    /// A receiver on a free loopback port, refusing (503) until `on` is set; its URL.
    async fn start() -> (SwitchedHook, String) {
        let hook = SwitchedHook::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/alerts", listener.local_addr().expect("addr"));
        let app = Router::new()
            .route("/alerts", post(switched))
            .with_state(hook.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (hook, url)
    }
}

/// 6,000 predictions of `system` on the events topic (drift after 4,000), and the demo
/// plan with critical alerts to the webhook at `url`.
fn drifting_with_webhook(
    brokers: &str,
    system: &str,
    seed: u64,
    url: &str,
    extra: &str,
) -> Arc<Plan> {
    let mut model = CreditModel::new(system, seed);
    let events: Vec<Event> = (0..6000)
        .map(|i| {
            let drift = if i < 4000 { Drift::NONE } else { Drift::DEMO };
            Event::Prediction(model.next_prediction(drift))
        })
        .collect();
    produce(brokers, "driftwatch.events", &events);
    let plan_text = demo_plan_toml(system, 2000, 1000).replace(
        "min_severity = \"critical\"",
        &format!(
            "min_severity = \"critical\"\nwebhook_url = \"{url}\"\nwebhook_sends = \"windows\"\n{extra}"
        ),
    );
    Arc::new(Plan::from_toml(&plan_text, "plan", PathBuf::new()).expect("plan"))
}

async fn switched(
    State(h): State<SwitchedHook>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    if !h.on.load(std::sync::atomic::Ordering::SeqCst) {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
    }
    if let (Ok(v), Ok(mut list)) = (serde_json::from_slice(&body), h.received.lock()) {
        list.push(v);
    }
    axum::http::StatusCode::OK
}

/// The alerts topic is the receivers' outbox: a webhook that is down for the whole of
/// one detector run, and the detector stopped meanwhile, still gets every alert from
/// the next run (which raises no new one: it has nothing new to read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_for_a_webhook_down_across_a_restart_arrive_after_it() {
    let dir = temp("outbox");
    let (hook, url) = SwitchedHook::start().await;

    let (_cluster, brokers) = mock_cluster();
    let plan = drifting_with_webhook(&brokers, "credit-outbox", 5, &url, "");
    let run = |plan: Arc<Plan>| {
        let config = ServiceConfig::new(kafka_options(&brokers), vec![plan]);
        let registry = config.registry.clone();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let handle = tokio::spawn(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            service::run(listener, config, async move { s.cancelled().await }).await
        });
        (registry, stop, handle)
    };

    // First run: every window evaluated, every alert on Kafka; the webhook refuses all.
    let (registry, stop, handle) = run(plan.clone());
    let windows = eventually(Duration::from_secs(30), || {
        let page = driftwatch_common::health::render(&registry);
        async move {
            metric(&page, "driftwatch_windows_total{system=\"credit-outbox\"}")
                .filter(|n| *n >= 4.0)
        }
    })
    .await;
    assert_eq!(windows, Some(4.0));
    let page = driftwatch_common::health::render(&registry);
    let raised = metric(
        &page,
        "driftwatch_alerts_total{severity=\"critical\",system=\"credit-outbox\"}",
    )
    .expect("alerts raised") as usize;
    assert!(raised >= 2);
    let notes = notes_raised(&page, "credit-outbox");
    let (on_kafka, _pages) = tokio::task::spawn_blocking({
        let brokers = brokers.clone();
        move || read_alerts(&brokers, raised + notes)
    })
    .await
    .expect("join");
    assert_eq!(on_kafka.len(), raised);
    let failed = eventually(Duration::from_secs(20), || {
        let page = driftwatch_common::health::render(&registry);
        async move {
            metric(
                &page,
                "driftwatch_alert_delivery_failures_total{sink=\"webhook\"}",
            )
            .filter(|n| *n >= 1.0)
        }
    })
    .await;
    assert!(failed.is_some(), "the webhook was tried and refused");
    stop.cancel();
    handle.await.expect("join").expect("service ran");
    assert!(hook.received.lock().expect("lock").is_empty());

    // The webhook comes back; the next run delivers every alert, in order.
    hook.on.store(true, std::sync::atomic::Ordering::SeqCst);
    let (registry, stop, handle) = run(plan);
    let all = eventually(Duration::from_secs(60), || {
        let n = hook.received.lock().map(|v| v.len()).unwrap_or(0);
        async move { (n >= raised).then_some(n) }
    })
    .await;
    assert_eq!(all, Some(raised), "every alert after the restart");
    let delivered: Vec<String> = hook
        .received
        .lock()
        .expect("lock")
        .iter()
        .map(|a| a["alert_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(delivered, on_kafka, "in the order raised");
    let page = driftwatch_common::health::render(&registry);
    assert_eq!(
        metric(&page, "driftwatch_windows_total{system=\"credit-outbox\"}"),
        None,
        "nothing evaluated again"
    );
    stop.cancel();
    handle.await.expect("join").expect("service ran");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A webhook down for five minutes while the detector runs: window reports reach Kafka
/// on time, nothing is given up, and once it is back every alert arrives, once, in the
/// order raised. Five minutes of wall time: run by `.ci/run` (`--ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes five minutes: .ci/run runs it"]
async fn a_webhook_down_for_five_minutes_gets_every_alert_afterwards() {
    const DOWN: Duration = Duration::from_secs(300);
    let (hook, url) = SwitchedHook::start().await;
    let (slack, slack_url) = SwitchedHook::start().await;
    let (pd, pd_url) = SwitchedHook::start().await;
    let down_since = Instant::now();

    let (_cluster, brokers) = mock_cluster();
    let plan = drifting_with_webhook(
        &brokers,
        "credit-down",
        8,
        &url,
        &format!("slack_webhook_url = \"{slack_url}\"\npagerduty_routing_key = \"K\"\npagerduty_url = \"{pd_url}\""),
    );
    let config = ServiceConfig::new(kafka_options(&brokers), vec![plan]);
    let registry = config.registry.clone();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handle = tokio::spawn(service::run(listener, config, async move {
        s.cancelled().await
    }));
    let windows = eventually(Duration::from_secs(30), || {
        let page = driftwatch_common::health::render(&registry);
        async move {
            metric(&page, "driftwatch_windows_total{system=\"credit-down\"}").filter(|n| *n >= 4.0)
        }
    })
    .await;
    assert_eq!(windows, Some(4.0));
    // The record of every window is on Kafka while the receiver is down.
    let reports = tokio::task::spawn_blocking({
        let brokers = brokers.clone();
        move || read_topic(&brokers, "driftwatch.reports", 4)
    })
    .await
    .expect("join");
    assert_eq!(
        reports.len(),
        4,
        "window reports are not held up by a receiver"
    );
    let page = driftwatch_common::health::render(&registry);
    let raised = metric(
        &page,
        "driftwatch_alerts_total{severity=\"critical\",system=\"credit-down\"}",
    )
    .expect("alerts raised") as usize;
    assert!(raised >= 2);
    let notes = notes_raised(&page, "credit-down");
    let (on_kafka, pages) = tokio::task::spawn_blocking({
        let brokers = brokers.clone();
        move || read_alerts(&brokers, raised + notes)
    })
    .await
    .expect("join");

    tokio::time::sleep(DOWN.saturating_sub(down_since.elapsed())).await;
    let page = driftwatch_common::health::render(&registry);
    let failures = metric(
        &page,
        "driftwatch_alert_delivery_failures_total{sink=\"webhook\"}",
    )
    .unwrap_or(0.0);
    assert!(
        failures >= 10.0,
        "retried all along: {failures} failed attempts"
    );
    assert!(hook.received.lock().expect("lock").is_empty());
    assert!(slack.received.lock().expect("lock").is_empty());
    assert!(pd.received.lock().expect("lock").is_empty());
    hook.on.store(true, std::sync::atomic::Ordering::SeqCst);
    slack.on.store(true, std::sync::atomic::Ordering::SeqCst);
    pd.on.store(true, std::sync::atomic::Ordering::SeqCst);
    // Retries back off to at most 30 s apart.
    let all = eventually(Duration::from_secs(60), || {
        let n = hook.received.lock().map(|v| v.len()).unwrap_or(0);
        async move { (n >= raised).then_some(n) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let delivered: Vec<String> = hook
        .received
        .lock()
        .expect("lock")
        .iter()
        .map(|a| a["alert_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(all, Some(raised), "every alert after five minutes down");
    assert_eq!(delivered, on_kafka, "each once, in the order raised");
    // Slack and PagerDuty get every page (not `ongoing`), once, in order.
    let paging: Vec<&serde_json::Value> = pages
        .iter()
        .filter(|n| n["lifecycle"]["status"] != "ongoing")
        .collect();
    assert!(!paging.is_empty(), "the drift fires an episode");
    let _ = eventually(Duration::from_secs(60), || {
        let n = (
            slack.received.lock().map(|v| v.len()).unwrap_or(0),
            pd.received.lock().map(|v| v.len()).unwrap_or(0),
        );
        let want = paging.len();
        async move { (n.0 >= want && n.1 >= want).then_some(()) }
    })
    .await;
    let want_pd: Vec<(String, String)> = paging
        .iter()
        .map(|n| {
            let action = if n["lifecycle"]["status"] == "resolved" {
                "resolve"
            } else {
                "trigger"
            };
            (
                n["lifecycle"]["episode"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                action.to_owned(),
            )
        })
        .collect();
    let got_pd: Vec<(String, String)> = pd
        .received
        .lock()
        .expect("lock")
        .iter()
        .map(|e| {
            (
                e["dedup_key"].as_str().unwrap_or_default().to_owned(),
                e["event_action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(got_pd, want_pd, "PagerDuty: every page once, in order");
    let got_slack: Vec<String> = slack
        .received
        .lock()
        .expect("lock")
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(got_slack.len(), paging.len(), "Slack: every page once");
    for (text, n) in got_slack.iter().zip(&paging) {
        let summary = n["summary"]
            .as_str()
            .unwrap_or_default()
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(
            text.contains(&summary),
            "Slack in order: {text} for {summary}"
        );
    }
    let page = driftwatch_common::health::render(&registry);
    assert_eq!(
        metric(
            &page,
            "driftwatch_alerts_dropped_total{reason=\"expired\",sink=\"webhook\"}"
        )
        .unwrap_or(0.0),
        0.0,
        "nothing given up"
    );
    println!(
        "webhook down {:?}: {raised} alerts delivered in order afterwards, {failures} failed attempts",
        down_since.elapsed()
    );
    stop.cancel();
    handle.await.expect("join").expect("service ran");
}
