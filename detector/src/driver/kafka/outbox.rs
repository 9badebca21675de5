//! What the detector writes to Kafka for each window: the report (on the reports topic,
//! the Art. 72 record of every window) and its alerts (on the alerts topic, the outbox
//! that receivers and other consumers read). Records are handed to the producer without
//! waiting; [`KafkaOutbox::settle`] waits until every one is confirmed, sending again
//! what failed, and a checkpoint is written only after it succeeds: a window whose
//! report or alerts are not yet in Kafka is never checkpointed as done, so a crash
//! re-evaluates it (the same window number, so the same `alert_id`).

use std::sync::Mutex;
use std::time::Duration;

use driftwatch_schema::Alert;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::engine::WindowReport;
use crate::output::Output;

/// A record to write: topic, key, payload.
type Record = (String, String, Vec<u8>);

/// Reports and alerts on their topics.
pub struct KafkaOutbox {
    producer: FutureProducer,
    reports_topic: Option<String>,
    alerts_topic: Option<String>,
    /// Handed to the producer, not yet confirmed.
    pending: Mutex<Vec<(Record, DeliveryFuture)>>,
    /// Refused by the producer's queue or failed: to send again.
    retry: Mutex<Vec<Record>>,
}

impl KafkaOutbox {
    /// Write reports to `reports_topic` and alerts to `alerts_topic` (either may be
    /// `None`).
    pub fn new(
        producer: FutureProducer,
        reports_topic: Option<String>,
        alerts_topic: Option<String>,
    ) -> Self {
        KafkaOutbox {
            producer,
            reports_topic,
            alerts_topic,
            pending: Mutex::new(Vec::new()),
            retry: Mutex::new(Vec::new()),
        }
    }

    fn send(&self, record: Record) {
        let sent = {
            let (topic, key, payload) = &record;
            self.producer
                .send_result(FutureRecord::to(topic).key(key).payload(payload))
                .map_err(|(e, _)| e)
        };
        match sent {
            Ok(f) => lock(&self.pending).push((record, f)),
            Err(e) => {
                tracing::debug!(error = %e, "producer queue full; the record is sent again at the next checkpoint");
                lock(&self.retry).push(record);
            }
        }
    }

    /// Wait until everything handed over is in Kafka, sending failures again, for at
    /// most `deadline`. True when nothing is outstanding.
    pub async fn settle(&self, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            for r in std::mem::take(&mut *lock(&self.retry)) {
                self.send(r);
            }
            let pending = std::mem::take(&mut *lock(&self.pending));
            for (record, f) in pending {
                match tokio::time::timeout_at(until, f).await {
                    Ok(Ok(Ok(_))) => {}
                    Ok(Ok(Err((e, _)))) => {
                        tracing::warn!(topic = %record.0, error = %e, "a report or alert was not confirmed by Kafka; sending it again");
                        lock(&self.retry).push(record);
                    }
                    // Cancelled (the producer went away) or out of time: keep it.
                    Ok(Err(_)) | Err(_) => lock(&self.retry).push(record),
                }
            }
            if lock(&self.retry).is_empty() && lock(&self.pending).is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Output for KafkaOutbox {
    fn window(&self, report: &WindowReport, alerts: &[Alert]) {
        if let Some(topic) = &self.reports_topic {
            match serde_json::to_vec(report) {
                Ok(body) => self.send((topic.clone(), report.system_id.clone(), body)),
                Err(e) => tracing::error!(error = %e, "cannot encode a window report"),
            }
        }
        self.alerts(alerts);
    }

    fn performance(&self, report: &crate::perf::PerformanceReport, alerts: &[Alert]) {
        if let Some(topic) = &self.reports_topic {
            match serde_json::to_vec(report) {
                Ok(body) => self.send((topic.clone(), report.system_id.clone(), body)),
                Err(e) => tracing::error!(error = %e, "cannot encode a performance report"),
            }
        }
        self.alerts(alerts);
    }

    fn notifications(&self, alerts: &[Alert]) {
        self.alerts(alerts);
    }
}

impl KafkaOutbox {
    fn alerts(&self, alerts: &[Alert]) {
        if let Some(topic) = &self.alerts_topic {
            for a in alerts {
                self.send((topic.clone(), a.system_id.clone(), a.to_wire()));
            }
        }
    }
}
