//! Alerts: one per check past the plan's `alerts.min_severity`, delivered to the plan's
//! webhook, to its Alertmanager (API v2) and to the alerts topic, and logged.
//!
//! An alert id is derived from what it is about (system, reference version, window,
//! signal, method), so a redelivery after a detector restart has the same id and a
//! receiver can deduplicate.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};

pub use driftwatch_schema::Alert;

use crate::engine::{CheckStatus, ThresholdOrigin, WindowReport};
use crate::metrics::DetectorMetrics;
use crate::plan::{Method, Severity};

/// A number for humans: fixed for ordinary magnitudes, scientific for tiny p-values.
pub fn short(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e4) {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

/// The alerts a window report raises at or above `min`.
pub fn alerts_for(report: &WindowReport, min: Severity) -> Vec<Alert> {
    report
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Evaluated && c.severity >= min.max(Severity::Warning))
        .filter_map(|c| {
            let value = c.value?;
            let threshold = match c.severity {
                Severity::Critical => c.critical?,
                _ => c.warning?,
            };
            // Learned levels on a test with a p-value compare its statistic.
            let on_statistic = c.thresholds == ThresholdOrigin::Learned && c.method.has_p_value();
            let cmp = if c.method.lower_is_worse() && !on_statistic {
                "<"
            } else {
                ">"
            };
            let spec = c.method.spec();
            let name = if on_statistic {
                spec.statistic_title
            } else {
                spec.title
            };
            let adjusted = if c.p_value_adjusted == Some(value) && c.p_value != Some(value) {
                " (BH-adjusted)"
            } else {
                ""
            };
            let what = format!(
                "{name}{adjusted} {} {cmp} {}",
                short(value),
                short(threshold)
            );
            let stat = match (c.method, c.statistic) {
                _ if on_statistic => String::new(),
                (Method::Ks, Some(d)) => format!(", D = {}", short(d)),
                (Method::Chi2, Some(s)) => format!(", chi2 = {}", short(s)),
                _ => String::new(),
            };
            Some(Alert {
                alert_id: format!(
                    "{}/{}/{}/{}/{}",
                    report.system_id,
                    report.reference_version,
                    report.window.index,
                    c.signal,
                    c.method
                ),
                system_id: report.system_id.clone(),
                severity: c.severity,
                signal: c.signal.clone(),
                method: c.method.as_str().to_owned(),
                statistic: c.statistic,
                p_value: c.p_value,
                value,
                threshold,
                samples: c.samples,
                window: report.window.clone(),
                reference_version: report.reference_version.clone(),
                plan_version: report.plan_version.clone(),
                summary: format!(
                    "{} drift on {} of {}: {what}{stat} over {} values in window {}",
                    c.severity.as_str(),
                    c.signal,
                    report.system_id,
                    c.samples,
                    report.window.index
                ),
            })
        })
        .collect()
}

/// Delivers alerts to a webhook and an alerts topic.
pub struct AlertSender {
    http: reqwest::Client,
    kafka: Option<(FutureProducer, String)>,
    metrics: DetectorMetrics,
}

/// Webhook retry schedule: three tries after the first, then give up (counted, logged).
const WEBHOOK_BACKOFF_MS: [u64; 3] = [100, 500, 2000];

impl AlertSender {
    /// A sender; `kafka` is a producer and the alerts topic.
    pub fn new(kafka: Option<(FutureProducer, String)>, metrics: DetectorMetrics) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        AlertSender {
            http,
            kafka,
            metrics,
        }
    }

    /// The alerts producer, for flushing at shutdown.
    pub fn producer(&self) -> Option<&FutureProducer> {
        self.kafka.as_ref().map(|(p, _)| p)
    }

    /// Post one alert to an Alertmanager's v2 API.
    async fn post_alertmanager(&self, base: &str, alert: &Alert) -> Result<(), String> {
        let body = serde_json::json!([{
            "labels": {
                "alertname": "DriftwatchDrift",
                "system": alert.system_id,
                "signal": alert.signal,
                "method": alert.method,
                "severity": alert.severity.as_str(),
            },
            "annotations": {
                "summary": alert.summary,
                "alert_id": alert.alert_id,
                "window": alert.window.index.to_string(),
                "value": alert.value.to_string(),
                "threshold": alert.threshold.to_string(),
                "reference_version": alert.reference_version,
            },
            "generatorURL": format!("driftwatch://{}/{}", alert.system_id, alert.alert_id),
        }]);
        let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
        self.post(&url, &serde_json::to_vec(&body).unwrap_or_default())
            .await
    }

    /// Deliver one alert everywhere it should go. Failures are logged and counted per sink;
    /// one sink failing does not keep the alert from the others.
    pub async fn send(
        &self,
        alert: &Alert,
        webhook_url: Option<&str>,
        alertmanager_url: Option<&str>,
    ) {
        let body = match serde_json::to_vec(alert) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise alert");
                return;
            }
        };
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
        self.metrics
            .alerts
            .with_label_values(&[alert.system_id.as_str(), alert.severity.as_str()])
            .inc();
        if let Some(url) = webhook_url {
            if let Err(e) = self.post(url, &body).await {
                self.metrics
                    .alert_failures
                    .with_label_values(&["webhook"])
                    .inc();
                tracing::error!(alert_id = %alert.alert_id, error = %e, "webhook delivery failed");
            }
        }
        if let Some(base) = alertmanager_url {
            if let Err(e) = self.post_alertmanager(base, alert).await {
                self.metrics
                    .alert_failures
                    .with_label_values(&["alertmanager"])
                    .inc();
                tracing::error!(alert_id = %alert.alert_id, error = %e, "Alertmanager delivery failed");
            }
        }
        if let Some((producer, topic)) = &self.kafka {
            let record = FutureRecord::to(topic)
                .key(alert.system_id.as_str())
                .payload(body.as_slice());
            let result = match producer.send_result(record) {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(e.to_string()),
                    Err(_) => Err("producer shut down".to_string()),
                },
                Err((e, _)) => Err(e.to_string()),
            };
            if let Err(e) = result {
                self.metrics
                    .alert_failures
                    .with_label_values(&["kafka"])
                    .inc();
                tracing::error!(alert_id = %alert.alert_id, error = %e, "alert not written to Kafka");
            }
        }
    }

    async fn post(&self, url: &str, body: &[u8]) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..=WEBHOOK_BACKOFF_MS.len() {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(WEBHOOK_BACKOFF_MS[attempt - 1])).await;
            }
            match self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_vec())
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(()),
                // 4xx other than 429 will not get better by retrying.
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                    return Err(format!("webhook answered {}", r.status()))
                }
                Ok(r) => last = format!("webhook answered {}", r.status()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}
