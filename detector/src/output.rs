//! The output seam: what the detector does with each evaluated window. The Kafka driver
//! hands every window report, with the alerts it raised, to each [`Output`] in turn:
//! the metrics ([`crate::metrics::DetectorMetrics`]), the alert delivery
//! ([`crate::alert::delivery::AlertDelivery`]), and whatever a caller adds (the demo
//! prints from a channel; an incident service or a reports topic plugs in here).
//!
//! An output must not block: the consumer loop calls it inline. Anything slow (a
//! receiver over the network) goes behind a queue of its own.

use driftwatch_schema::Alert;
use tokio::sync::mpsc;

use crate::engine::WindowReport;
use crate::perf::PerformanceReport;

/// Receives every evaluated window and the alerts it raised.
pub trait Output: Send + Sync {
    /// A window was evaluated; `alerts` are those at or above the plan's minimum
    /// severity (possibly none). Must return at once.
    fn window(&self, report: &WindowReport, alerts: &[Alert]);

    /// A window's performance was reported (closed, judged as outcomes arrived, or
    /// final), with the alerts it raised. Must return at once.
    fn performance(&self, report: &PerformanceReport, alerts: &[Alert]);

    /// Episode notifications (firing, escalated, ongoing, resolved; see
    /// [`crate::alert::episode`]) and the service's own alerts (a heartbeat), after the
    /// report that caused them. Must return at once.
    fn notifications(&self, _alerts: &[Alert]) {}
}

/// Every performance report, to a channel (the demo and the tests read them from it).
impl Output for mpsc::UnboundedSender<PerformanceReport> {
    fn window(&self, _: &WindowReport, _: &[Alert]) {}

    fn performance(&self, report: &PerformanceReport, _: &[Alert]) {
        let _ = self.send(report.clone());
    }
}

/// Every report, to a channel (the demo and the tests read them from it).
impl Output for mpsc::UnboundedSender<WindowReport> {
    fn window(&self, report: &WindowReport, _: &[Alert]) {
        // A receiver that has gone away wants no more reports.
        let _ = self.send(report.clone());
    }

    fn performance(&self, _: &PerformanceReport, _: &[Alert]) {}
}

impl Output for crate::metrics::DetectorMetrics {
    fn window(&self, report: &WindowReport, alerts: &[Alert]) {
        self.record(report);
        for a in alerts {
            self.alerts
                .with_label_values(&[a.system_id.as_str(), a.severity.as_str()])
                .inc();
        }
    }

    fn performance(&self, report: &PerformanceReport, alerts: &[Alert]) {
        self.record_performance(report);
        for a in alerts {
            self.alerts
                .with_label_values(&[a.system_id.as_str(), a.severity.as_str()])
                .inc();
        }
    }

    fn notifications(&self, alerts: &[Alert]) {
        for a in alerts {
            if let Some(l) = &a.lifecycle {
                self.notifications
                    .with_label_values(&[a.system_id.as_str(), l.status.as_str()])
                    .inc();
            }
        }
    }
}
