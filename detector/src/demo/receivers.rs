//! The demo's stand-ins for the people and systems alerts reach: a webhook that prints
//! each window's alert (the machine feed), a Slack-compatible on-call channel that
//! prints each page, the deployer's webhook that prints each notice of a decision, and a
//! count of what the alerts topic holds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

use crate::alert::Alert;

#[derive(Clone, Default)]
pub(super) struct Received {
    pub(super) alerts: Arc<Mutex<Vec<Alert>>>,
    pub(super) bad: Arc<AtomicUsize>,
    /// The on-call channel's messages (Slack-compatible `text`).
    pub(super) pages: Arc<Mutex<Vec<String>>>,
    /// Notices of decisions at the deployer's webhook.
    pub(super) notices: Arc<Mutex<Vec<serde_json::Value>>>,
}

/// The deployer's webhook: prints each notice of a decision it is sent (Art. 20(1)).
pub(super) async fn receive_notice(
    State(rx): State<Received>,
    body: axum::body::Bytes,
) -> &'static str {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) => {
            println!(
                "  NOTICE to {} ({}): {}",
                v["party"]["name"].as_str().unwrap_or_default(),
                v["party"]["kind"].as_str().unwrap_or_default(),
                v["subject"].as_str().unwrap_or_default()
            );
            if let Ok(mut n) = rx.notices.lock() {
                n.push(v);
            }
        }
        Err(_) => {
            rx.bad.fetch_add(1, Ordering::Relaxed);
        }
    }
    "ok"
}

/// The on-call channel: a Slack-compatible incoming webhook that prints each page.
pub(super) async fn receive_page(
    State(rx): State<Received>,
    body: axum::body::Bytes,
) -> &'static str {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) => {
            let text = v["text"].as_str().unwrap_or_default().to_owned();
            let line = text.lines().next().unwrap_or_default();
            let line = line
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&");
            println!("  PAGE   {line}");
            if let Ok(mut p) = rx.pages.lock() {
                p.push(text);
            }
        }
        Err(_) => {
            rx.bad.fetch_add(1, Ordering::Relaxed);
        }
    }
    "ok"
}

pub(super) async fn receive_alert(
    State(rx): State<Received>,
    body: axum::body::Bytes,
) -> &'static str {
    match serde_json::from_slice::<Alert>(&body) {
        Ok(a) if a.kind != driftwatch_schema::AlertKind::Drift => {
            println!(
                "  ALERT  {:<8} window {:>2}  {:<16} {:<8}  {}",
                a.severity.as_str(),
                a.window.index,
                a.kind.as_str(),
                a.method.as_str(),
                a.summary.split(": ").skip(1).collect::<Vec<_>>().join(": "),
            );
            if let Ok(mut v) = rx.alerts.lock() {
                v.push(a);
            }
        }
        Ok(a) => {
            println!(
                "  ALERT  {:<8} window {:>2}  {:<16} {:<4}  {:>10} vs {:<5} {}",
                a.severity.as_str(),
                a.window.index,
                a.signal,
                a.method.as_str(),
                crate::alert::short(a.value),
                a.threshold,
                match (a.method.as_str(), a.statistic) {
                    ("ks", Some(d)) => format!("(D = {d:.3})"),
                    ("chi2", Some(s)) => format!("(chi2 = {s:.1})"),
                    _ => String::new(),
                }
            );
            if let Ok(mut v) = rx.alerts.lock() {
                v.push(a);
            }
        }
        Err(_) => {
            rx.bad.fetch_add(1, Ordering::Relaxed);
        }
    }
    "ok"
}

/// The window alerts and the episode notifications on the alerts topic.
pub(super) fn count_topic(brokers: &str, topic: &str) -> anyhow::Result<(usize, usize)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "driftwatch-demo-audit")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let (mut n, mut notes) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut idle = 0;
    while Instant::now() < deadline && idle < 20 {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                match m.payload().map(Alert::from_wire) {
                    Some(Ok(a)) if a.lifecycle.is_some() => notes += 1,
                    Some(_) => n += 1,
                    None => {}
                }
                idle = 0;
            }
            Some(Err(e)) => return Err(e.into()),
            None => idle += if n > 0 { 1 } else { 0 },
        }
    }
    Ok((n, notes))
}

/// The pages the on-call channel must get for these reports: their episodes, computed
/// here the way the detector does (drift and performance conditions are apart, so
/// their order between each other does not matter).
pub(super) fn expected_pages(
    plan: &crate::plan::Plan,
    reports: &[crate::engine::WindowReport],
    perf: &[crate::perf::PerformanceReport],
) -> usize {
    let mut episodes = crate::alert::episode::Episodes::default();
    let links = crate::alert::episode::Links::of(plan);
    let spec = plan.alerts.episodes;
    let mut notes = Vec::new();
    for r in reports {
        let v = crate::alert::drift_verdicts(r, plan.alerts.min_severity);
        notes.extend(episodes.observe(&spec, &links, v));
    }
    for r in perf {
        let v = crate::alert::performance_verdicts(r, plan.performance_min_severity());
        notes.extend(episodes.observe(&spec, &links, v));
    }
    notes
        .iter()
        .filter(|n| n.lifecycle.as_ref().is_some_and(|l| l.status.pages()))
        .count()
}
