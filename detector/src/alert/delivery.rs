//! Alert delivery off the consumer loop: one worker per receiver (each webhook URL, each
//! Alertmanager), each retrying on its own, so a receiver that hangs or is down delays
//! nothing but itself.
//!
//! - **Source.** With an alerts topic (the service's default), each worker reads the
//!   topic in a consumer group of its own ([`TopicSource`]) and stores an alert's
//!   offset once it is delivered or given up: the topic is the durable outbox, and an
//!   alert not yet delivered when the process stops is delivered after the restart.
//!   Without one, workers are fed from bounded in-memory queues.
//! - **Order.** A worker delivers its queue in order, one alert at a time.
//! - **Retries.** A failed attempt (connection error, timeout of 5 s, 5xx, 429) is
//!   retried after 100 ms, doubling to at most 30 s between attempts, until it succeeds
//!   or the alert is older than [`DeliveryConfig::expiry`] (default one hour). Each
//!   failed attempt counts in `driftwatch_alert_delivery_failures_total{sink}`.
//! - **Nothing silently lost.** An alert given up is counted in
//!   `driftwatch_alerts_dropped_total{sink,reason}` and logged with its id: `expired`,
//!   `refused` (a 4xx other than 429: retrying will not help), or `queue_full` (the
//!   queue of [`DeliveryConfig::queue`] alerts is full because the receiver has been down
//!   for that long). `driftwatch_alert_queue_depth{sink}` shows a queue growing.
//! - **Shutdown.** [`AlertDelivery::shutdown`] stops the topic workers at once (what they
//!   have not delivered stays on the topic), closes the in-memory queues and waits, up to
//!   a deadline, for their workers to deliver what is queued.
//!
//! Receivers deduplicate by `alert_id`: a retry after a lost answer delivers twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftwatch_schema::Alert;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::engine::WindowReport;
use crate::metrics::DetectorMetrics;
use crate::output::Output;
use crate::plan::{Plan, WebhookSends};

/// How alerts are delivered.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Alerts a receiver's queue holds before new ones are dropped (counted).
    pub queue: usize,
    /// How long an alert is retried before it is given up (counted).
    pub expiry: Duration,
    /// Timeout of one HTTP attempt.
    pub attempt_timeout: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// CAs trusted for https receivers besides the system's trust store.
    pub receiver_roots: Vec<reqwest::Certificate>,
    /// The shortest time an alert posted to Alertmanager stays firing (its `endsAt`).
    /// Each alert is held for twice its window's span, at least this long and at most
    /// a day, so a condition that goes on is re-posted by the next breaching window
    /// before it ends, and one that clears resolves about two windows later.
    pub alertmanager_hold: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            queue: 10_000,
            expiry: Duration::from_secs(3600),
            attempt_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(30),
            receiver_roots: Vec::new(),
            alertmanager_hold: Duration::from_secs(600),
        }
    }
}

/// One queued alert: its id and summary for logs, the body to send, when it was raised.
struct Queued {
    alert_id: Arc<str>,
    body: Arc<[u8]>,
    raised: Instant,
}

/// Where one worker delivers.
#[derive(Clone)]
enum Receiver {
    Webhook(String, WebhookSends),
    Alertmanager(String),
    Slack(String),
    PagerDuty { url: String, routing_key: String },
}

impl Receiver {
    fn sink(&self) -> &'static str {
        match self {
            Receiver::Webhook(..) => "webhook",
            Receiver::Alertmanager(_) => "alertmanager",
            Receiver::Slack(_) => "slack",
            Receiver::PagerDuty { .. } => "pagerduty",
        }
    }

    /// A plan's receivers, each with the key that makes it one worker across plans.
    fn of(plan: &Plan) -> Vec<(String, Receiver)> {
        let a = &plan.alerts;
        let mut out = Vec::new();
        if let Some(url) = &a.webhook_url {
            let sends = a.webhook_sends;
            out.push((
                format!("webhook:{sends:?}:{url}"),
                Receiver::Webhook(url.clone(), sends),
            ));
        }
        if let Some(url) = &a.alertmanager_url {
            out.push((
                format!("alertmanager:{url}"),
                Receiver::Alertmanager(url.clone()),
            ));
        }
        if let Some(url) = &a.slack_webhook_url {
            out.push((format!("slack:{url}"), Receiver::Slack(url.clone())));
        }
        if let Some(key) = &a.pagerduty_routing_key {
            // The key is a secret of sorts: the worker's name carries a hash of it.
            out.push((
                format!(
                    "pagerduty:{}:{:016x}",
                    a.pagerduty_url,
                    crate::engine::fnv1a64(key.as_bytes(), 0)
                ),
                Receiver::PagerDuty {
                    url: a.pagerduty_url.clone(),
                    routing_key: key.clone(),
                },
            ));
        }
        out
    }

    /// Whether this receiver gets `alert`: obligations go everywhere; a window's own
    /// alerts only to a webhook that asks for them; episode notifications that page to
    /// every receiver, and `ongoing` ones to Alertmanager, whose alerts expire unless
    /// refreshed.
    fn wants(&self, alert: &Alert) -> bool {
        if alert.kind == driftwatch_schema::AlertKind::Obligation {
            return true;
        }
        match (&alert.lifecycle, self) {
            (None, Receiver::Webhook(_, sends)) => *sends == WebhookSends::Windows,
            (None, _) => false,
            (Some(_), Receiver::Webhook(_, WebhookSends::Windows)) => false,
            (Some(_), Receiver::Alertmanager(_)) => true,
            (Some(l), _) => l.status.pages(),
        }
    }

    /// The request of one attempt: URL and body.
    fn request(
        &self,
        payload: &[u8],
        now: chrono::DateTime<chrono::Utc>,
        config: &DeliveryConfig,
    ) -> Result<(String, Vec<u8>), Failure> {
        let alert = || {
            Alert::from_wire(payload).map_err(|e| Failure::Refused(format!("not an alert: {e}")))
        };
        Ok(match self {
            Receiver::Webhook(url, _) => (url.clone(), payload.to_vec()),
            Receiver::Alertmanager(base) => (
                format!("{}/api/v2/alerts", base.trim_end_matches('/')),
                super::receivers::alertmanager_body(&alert()?, now, config.alertmanager_hold),
            ),
            Receiver::Slack(url) => (url.clone(), super::receivers::slack_body(&alert()?)),
            Receiver::PagerDuty { url, routing_key } => (
                url.clone(),
                super::receivers::pagerduty_body(&alert()?, routing_key, now),
            ),
        })
    }
}

/// Why an attempt failed.
enum Failure {
    /// Worth another try.
    Retry(String),
    /// Will not get better (a 4xx other than 429).
    Refused(String),
}

/// The queues of every receiver of every plan, and their workers.
pub struct AlertDelivery {
    /// Per system, the queues its alerts go to, with their sink labels.
    routes: HashMap<String, Vec<(Receiver, mpsc::Sender<Queued>)>>,
    metrics: DetectorMetrics,
    workers: JoinSet<()>,
    stop: tokio_util::sync::CancellationToken,
}

impl AlertDelivery {
    /// Start a worker per distinct receiver of `plans`. With `source`, receivers read
    /// their alerts from the alerts topic (the durable outbox) instead of in-memory
    /// queues.
    pub fn start(
        plans: &[Arc<Plan>],
        source: Option<TopicSource>,
        config: DeliveryConfig,
        metrics: DetectorMetrics,
    ) -> Self {
        let mut http = reqwest::Client::builder().timeout(config.attempt_timeout);
        for root in &config.receiver_roots {
            http = http.add_root_certificate(root.clone());
        }
        let http = http.build().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot set up the HTTP client with the receiver CAs; using the system trust store only");
            reqwest::Client::new()
        });
        let mut workers = JoinSet::new();
        let mut by_receiver: HashMap<String, (Receiver, mpsc::Sender<Queued>)> = HashMap::new();
        let mut spawn = |key: String, receiver: Receiver| {
            by_receiver
                .entry(key)
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(config.queue.max(1));
                    workers.spawn(worker(
                        receiver.clone(),
                        rx,
                        http.clone(),
                        config.clone(),
                        metrics.clone(),
                    ));
                    (receiver, tx)
                })
                .clone()
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let mut routes = HashMap::new();
        if let Some(source) = source {
            // One consumer per distinct receiver, serving every system routed to it.
            let mut fed: HashMap<String, (Receiver, std::collections::HashSet<String>)> =
                HashMap::new();
            for plan in plans {
                for (key, receiver) in Receiver::of(plan) {
                    fed.entry(key)
                        .or_insert_with(|| (receiver, Default::default()))
                        .1
                        .insert(plan.system.id.clone());
                }
            }
            for (key, (receiver, systems)) in fed {
                workers.spawn(topic_worker(
                    receiver,
                    key,
                    systems,
                    source.clone(),
                    stop.clone(),
                    (http.clone(), config.clone(), metrics.clone()),
                ));
            }
        } else {
            for plan in plans {
                let queues = Receiver::of(plan)
                    .into_iter()
                    .map(|(key, receiver)| spawn(key, receiver))
                    .collect();
                routes.insert(plan.system.id.clone(), queues);
            }
        }
        AlertDelivery {
            routes,
            metrics,
            workers,
            stop,
        }
    }

    /// Queue one alert for every receiver of its system; never waits.
    pub fn send(&self, alert: &Alert) {
        tracing::warn!(
            alert_id = %alert.alert_id,
            system = %alert.system_id,
            severity = alert.severity.as_str(),
            signal = %alert.signal,
            method = %alert.method,
            value = alert.value,
            threshold = alert.threshold,
            "{}",
            alert.summary
        );
        let Some(queues) = self.routes.get(&alert.system_id) else {
            return;
        };
        let body: Arc<[u8]> = alert.to_wire().into();
        let alert_id: Arc<str> = alert.alert_id.as_str().into();
        let raised = Instant::now();
        for (receiver, tx) in queues {
            if !receiver.wants(alert) {
                continue;
            }
            let sink = &receiver.sink();
            let q = Queued {
                alert_id: alert_id.clone(),
                body: body.clone(),
                raised,
            };
            match tx.try_send(q) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(q)) => {
                    self.metrics
                        .alerts_dropped
                        .with_label_values(&[*sink, "queue_full"])
                        .inc();
                    tracing::error!(alert_id = %q.alert_id, sink, "alert queue full (receiver down too long): alert not delivered to this receiver");
                }
                Err(mpsc::error::TrySendError::Closed(q)) => {
                    tracing::error!(alert_id = %q.alert_id, "alert delivery has stopped: alert not queued");
                }
            }
        }
    }

    /// Close the queues and wait up to `deadline` for the workers to deliver what they
    /// hold; what is left is logged.
    pub async fn shutdown(mut self, deadline: Duration) {
        self.routes.clear();
        // Receivers fed from the alerts topic stop at once: what they have not
        // delivered stays on the topic for the next start.
        self.stop.cancel();
        let all = async { while self.workers.join_next().await.is_some() {} };
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::error!(
                "alert delivery did not finish within {deadline:?}; undelivered alerts are logged above with their ids"
            );
            self.workers.abort_all();
        }
    }
}

impl Output for AlertDelivery {
    fn window(&self, _: &WindowReport, alerts: &[Alert]) {
        for a in alerts {
            self.send(a);
        }
    }

    fn performance(&self, _: &crate::perf::PerformanceReport, alerts: &[Alert]) {
        for a in alerts {
            self.send(a);
        }
    }

    fn notifications(&self, alerts: &[Alert]) {
        for a in alerts {
            self.send(a);
        }
    }
}

async fn worker(
    receiver: Receiver,
    mut rx: mpsc::Receiver<Queued>,
    http: reqwest::Client,
    config: DeliveryConfig,
    metrics: DetectorMetrics,
) {
    let sink = receiver.sink();
    let depth = metrics.alert_queue_depth.with_label_values(&[sink]);
    while let Some(q) = rx.recv().await {
        depth.set(rx.len() as i64);
        deliver_one(&receiver, &q, &http, &config, &metrics).await;
        depth.set(rx.len() as i64);
    }
}

/// Deliver one alert to one receiver: retried with backoff until it succeeds, is
/// refused (4xx) or outlives the expiry; every give-up counted.
async fn deliver_one(
    receiver: &Receiver,
    q: &Queued,
    http: &reqwest::Client,
    config: &DeliveryConfig,
    metrics: &DetectorMetrics,
) {
    let sink = receiver.sink();
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = match receiver.request(&q.body, chrono::Utc::now(), config) {
            Ok((url, body)) => post(http, &url, body).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return,
            Err(Failure::Refused(e)) => {
                metrics.alert_failures.with_label_values(&[sink]).inc();
                metrics
                    .alerts_dropped
                    .with_label_values(&[sink, "refused"])
                    .inc();
                tracing::error!(alert_id = %q.alert_id, sink, error = %e, "receiver refused the alert; not retried");
                return;
            }
            Err(Failure::Retry(e)) => {
                metrics.alert_failures.with_label_values(&[sink]).inc();
                if q.raised.elapsed() + backoff > config.expiry {
                    metrics
                        .alerts_dropped
                        .with_label_values(&[sink, "expired"])
                        .inc();
                    tracing::error!(alert_id = %q.alert_id, sink, error = %e, "alert not delivered before its expiry; given up");
                    return;
                }
                tracing::warn!(alert_id = %q.alert_id, sink, error = %e, retry_in = ?backoff, "alert delivery failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
    }
}

/// Where receivers read their alerts when the alerts topic is the outbox.
#[derive(Clone)]
pub struct TopicSource {
    /// Client configuration (brokers, security, properties).
    pub client: rdkafka::config::ClientConfig,
    /// The alerts topic.
    pub topic: String,
    /// Prefix of each receiver's consumer group (the detector's group).
    pub group_prefix: String,
}

/// A receiver fed from the alerts topic: its own consumer group, so its position
/// survives restarts and several instances share the partitions; an alert's offset is
/// stored only once it is delivered or given up, so one pending at a crash is
/// delivered after the restart (at least once; receivers deduplicate by `alert_id`).
async fn topic_worker(
    receiver: Receiver,
    key: String,
    systems: std::collections::HashSet<String>,
    source: TopicSource,
    stop: tokio_util::sync::CancellationToken,
    (http, config, metrics): (reqwest::Client, DeliveryConfig, DetectorMetrics),
) {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Message;
    let sink = receiver.sink();
    let group = format!(
        "{}.deliver.{sink}.{:016x}",
        source.group_prefix,
        crate::engine::fnv1a64(key.as_bytes(), 0)
    );
    let consumer: StreamConsumer = match source
        .client
        .clone()
        .set("group.id", &group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(sink, error = %e, "cannot start a receiver's consumer; its alerts wait on the alerts topic");
            return;
        }
    };
    if let Err(e) = consumer.subscribe(&[source.topic.as_str()]) {
        tracing::error!(sink, error = %e, "cannot subscribe to the alerts topic");
        return;
    }
    tracing::info!(sink, group = %group, "delivering alerts from the alerts topic");
    let mut delivered = Delivered::default();
    let mut warmed: std::collections::HashSet<i32> = std::collections::HashSet::new();
    loop {
        let m = tokio::select! {
            _ = stop.cancelled() => break,
            m = consumer.recv() => m,
        };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(sink, error = %e, "alerts topic consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if warmed.insert(m.partition()) {
            // What this receiver got before this consumer held the partition (another
            // instance, an earlier run): an alert evaluated again after a crash or a
            // takeover is written again, and must not notify twice.
            let (client, topic, partition, offset) = (
                source.client.clone(),
                source.topic.clone(),
                m.partition(),
                m.offset(),
            );
            match tokio::task::spawn_blocking(move || {
                read_back(client, &topic, partition, offset, WARM)
            })
            .await
            {
                Ok(Ok(ids)) => {
                    for id in ids {
                        delivered.insert(id);
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(sink, partition = m.partition(), error = %e, "cannot read back earlier alerts; a repeat of one may be delivered again");
                }
                Err(_) => {}
            }
        }
        let payload = m.payload().unwrap_or_default();
        if let Ok(alert) = Alert::from_wire(payload) {
            if delivered.contains(&alert.alert_id) {
                metrics.alert_repeats.with_label_values(&[sink]).inc();
                tracing::debug!(sink, alert_id = %alert.alert_id, "alert already delivered; not sent again");
            } else if systems.contains(&alert.system_id) && receiver.wants(&alert) {
                // Its age counts from when it was written, across restarts.
                let written = m.timestamp().to_millis().unwrap_or(0);
                let age_ms = (chrono::Utc::now().timestamp_millis() - written).max(0) as u64;
                let raised = Instant::now()
                    .checked_sub(Duration::from_millis(age_ms))
                    .unwrap_or_else(Instant::now);
                let q = Queued {
                    alert_id: alert.alert_id.as_str().into(),
                    body: payload.into(),
                    raised,
                };
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = deliver_one(&receiver, &q, &http, &config, &metrics) => {}
                }
                delivered.insert(q.alert_id);
            }
        }
        let mut tpl = rdkafka::TopicPartitionList::new();
        let _ = tpl.add_partition_offset(
            m.topic(),
            m.partition(),
            rdkafka::Offset::Offset(m.offset() + 1),
        );
        if let Err(e) = consumer.store_offsets(&tpl) {
            tracing::debug!(sink, error = %e, "cannot store a delivery offset");
        }
        // Committed at once (not at the next auto-commit): an instance that dies now
        // leaves the fewest delivered alerts for the next owner to send again.
        if let Err(e) = consumer.commit(&tpl, rdkafka::consumer::CommitMode::Async) {
            tracing::debug!(sink, error = %e, "cannot commit a delivery offset");
        }
    }
    let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
}

/// How many alerts before its position a receiver's consumer reads back when it gets a
/// partition, to know what was delivered before it.
const WARM: i64 = 10_000;

/// The alert ids a receiver delivered (or gave up) lately, to deliver a repeat (an alert
/// evaluated again after a crash) only once. Bounded: the oldest are forgotten.
#[derive(Default)]
struct Delivered {
    ids: std::collections::HashSet<Arc<str>>,
    order: std::collections::VecDeque<Arc<str>>,
}

impl Delivered {
    const CAP: usize = 100_000;

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: Arc<str>) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > Self::CAP {
                if let Some(old) = self.order.pop_front() {
                    self.ids.remove(&old);
                }
            }
        }
    }
}

/// The alert ids of the `back` messages of `partition` before `offset`: alerts written
/// (and delivered, the committed offset says) before this consumer took the partition.
fn read_back(
    client: rdkafka::config::ClientConfig,
    topic: &str,
    partition: i32,
    offset: i64,
    back: i64,
) -> Result<Vec<Arc<str>>, rdkafka::error::KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let timeout = Duration::from_secs(10);
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", "driftwatch-alert-read-back")
        .set("enable.auto.commit", "false")
        .create()?;
    let (low, _) = consumer.fetch_watermarks(topic, partition, timeout)?;
    let from = (offset - back).max(low);
    let mut ids = Vec::new();
    if from >= offset {
        return Ok(ids);
    }
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(from))?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if m.offset() >= offset {
                    break;
                }
                if let Ok(a) = Alert::from_wire(m.payload().unwrap_or_default()) {
                    ids.push(a.alert_id.into());
                }
                if m.offset() + 1 >= offset {
                    break;
                }
            }
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    Ok(ids)
}

async fn post(http: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<(), Failure> {
    match http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
            Err(Failure::Refused(format!("answered {}", r.status())))
        }
        Ok(r) => Err(Failure::Retry(format!("answered {}", r.status()))),
        Err(e) => Err(Failure::Retry(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use axum::http::StatusCode;
    use axum::routing::post;
    use prometheus::Registry;

    use super::*;

    fn alert(n: i64) -> Alert {
        crate::alert::sample_alert(n)
    }

    /// Who gets what: a window's alert only a windows webhook; paging notifications
    /// every episode receiver; `ongoing` only Alertmanager; obligations everyone.
    #[test]
    fn each_receiver_gets_what_it_pages_with() {
        use driftwatch_schema::{AlertKind, EpisodeStatus, Lifecycle};
        let note = |status| Alert {
            lifecycle: Some(Lifecycle {
                status,
                fingerprint: "s/drift/age/ks".into(),
                episode: "s/drift/age/ks@1".into(),
                started_window: 1,
                started_at: chrono::Utc::now(),
                breaching: 2,
                of: 3,
                clean: 0,
                runbook_url: None,
                incident_url: None,
            }),
            ..alert(1)
        };
        let receivers = [
            Receiver::Webhook("http://h".into(), WebhookSends::Windows),
            Receiver::Webhook("http://h".into(), WebhookSends::Episodes),
            Receiver::Alertmanager("http://am".into()),
            Receiver::Slack("http://slack".into()),
            Receiver::PagerDuty {
                url: "http://pd".into(),
                routing_key: "k".into(),
            },
        ];
        let wants = |a: &Alert| receivers.iter().map(|r| r.wants(a)).collect::<Vec<_>>();
        assert_eq!(wants(&alert(1)), [true, false, false, false, false]);
        for s in [
            EpisodeStatus::Firing,
            EpisodeStatus::Escalated,
            EpisodeStatus::Resolved,
        ] {
            assert_eq!(wants(&note(s)), [false, true, true, true, true], "{s:?}");
        }
        assert_eq!(
            wants(&note(EpisodeStatus::Ongoing)),
            [false, false, true, false, false]
        );
        let obligation = Alert {
            kind: AlertKind::Obligation,
            ..alert(1)
        };
        assert_eq!(wants(&obligation), [true; 5]);
    }

    /// A receiver answering `status` to everything; its URL.
    async fn receiver(status: StatusCode) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let app = axum::Router::new().route("/hook", post(move || async move { status }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn plan(url: &str) -> Arc<Plan> {
        let text = format!(
            "[system]\nid = \"s\"\n[reference]\nfirst_events = 10\n[window]\nsize = 10\n[features.age]\ntype = \"numeric\"\n[alerts]\nwebhook_url = \"{url}\"\nwebhook_sends = \"windows\"\n"
        );
        Arc::new(Plan::from_toml(&text, "plan", PathBuf::new()).expect("plan"))
    }

    fn dropped(metrics: &DetectorMetrics, reason: &str) -> u64 {
        metrics
            .alerts_dropped
            .with_label_values(&["webhook", reason])
            .get()
    }

    /// The give-ups the README promises, each counted: a full queue, an alert that
    /// outlives its expiry, and a receiver that refuses with a 4xx.
    #[tokio::test(flavor = "current_thread")]
    async fn every_alert_given_up_is_counted_by_reason() {
        let metrics = DetectorMetrics::new(&Registry::new()).expect("metrics");
        let config = DeliveryConfig {
            queue: 1,
            expiry: Duration::from_millis(300),
            attempt_timeout: Duration::from_secs(1),
            max_backoff: Duration::from_millis(50),
            ..DeliveryConfig::default()
        };
        // A receiver that keeps failing: the first alert fills the queue of one, the
        // next two find it full; the queued one is retried until it expires.
        let failing = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
        let delivery =
            AlertDelivery::start(&[plan(&failing)], None, config.clone(), metrics.clone());
        for n in 0..3 {
            delivery.send(&alert(n));
        }
        assert_eq!(dropped(&metrics, "queue_full"), 2);
        delivery.shutdown(Duration::from_secs(10)).await;
        assert_eq!(dropped(&metrics, "expired"), 1);
        assert!(metrics.alert_failures.with_label_values(&["webhook"]).get() >= 2);

        // A receiver that refuses: not retried, counted once.
        let refusing = receiver(StatusCode::BAD_REQUEST).await;
        let delivery = AlertDelivery::start(&[plan(&refusing)], None, config, metrics.clone());
        delivery.send(&alert(9));
        delivery.shutdown(Duration::from_secs(10)).await;
        assert_eq!(dropped(&metrics, "refused"), 1);
    }
}
