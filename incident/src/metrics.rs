//! The incident service's Prometheus metrics. Labels are bounded: results and kinds are
//! fixed sets, systems come from the loaded plans (plus those alerts name).

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::desk::Handled;

/// The service's metrics.
#[derive(Clone)]
pub struct IncidentMetrics {
    /// Alerts consumed, by what they did.
    pub alerts: IntCounterVec,
    /// Incidents not closed, per system.
    pub open: IntGaugeVec,
    /// Entries in the audit chain.
    pub audit_entries: IntGauge,
    /// Entries covered by the last signed checkpoint.
    pub checkpoint_size: IntGauge,
    /// Reminders published, by kind (`art73`, `task`).
    pub obligations: IntCounterVec,
    /// Store operations that failed (and were retried).
    pub store_errors: IntCounterVec,
    /// Decisions published on the control topic, by action.
    pub controls: IntCounterVec,
    /// Decisions recorded but not yet on the control topic.
    pub control_pending: IntGauge,
    /// Delivery attempts of notices to parties, by channel and result.
    pub notices: IntCounterVec,
    /// Notices composed but not yet accepted by their receiver.
    pub notices_pending: IntGauge,
    /// Notices sent but not yet acknowledged by their party.
    pub notices_unacknowledged: IntGauge,
}

/// What a handled alert counts as.
pub fn result_label(h: &Handled) -> &'static str {
    match h {
        Handled::Opened(_) => "opened",
        Handled::Attached(_) => "attached",
        Handled::Recorded => "recorded",
        Handled::Duplicate => "duplicate",
        Handled::Ignored => "ignored",
    }
}

impl IncidentMetrics {
    /// Register on `registry`, every known series at 0.
    pub fn new(registry: &Registry, systems: &[String]) -> prometheus::Result<Self> {
        let alerts = IntCounterVec::new(
            Opts::new(
                "driftwatch_incident_alerts_total",
                "Alerts consumed by the incident service, by what they did (opened, attached, recorded, duplicate, ignored, invalid).",
            ),
            &["result"],
        )?;
        let open = IntGaugeVec::new(
            Opts::new(
                "driftwatch_incidents_open",
                "Incidents not closed, per system.",
            ),
            &["system"],
        )?;
        let audit_entries =
            IntGauge::new("driftwatch_audit_entries", "Entries in the audit chain.")?;
        let checkpoint_size = IntGauge::new(
            "driftwatch_audit_checkpoint_size",
            "Audit entries covered by the last signed checkpoint.",
        )?;
        let obligations = IntCounterVec::new(
            Opts::new(
                "driftwatch_obligations_published_total",
                "Reminders published on the alerts topic: Art. 73 deadlines (art73) and overdue corrective tasks (task).",
            ),
            &["kind"],
        )?;
        let store_errors = IntCounterVec::new(
            Opts::new(
                "driftwatch_incident_store_errors_total",
                "Failed incident store operations (each retried with backoff), by what was being stored.",
            ),
            &["what"],
        )?;
        let controls = IntCounterVec::new(
            Opts::new(
                "driftwatch_control_published_total",
                "Decisions published on the control topic for the agents, by action (allow, restrict, disable).",
            ),
            &["action"],
        )?;
        let control_pending = IntGauge::new(
            "driftwatch_control_pending",
            "Decisions recorded but not yet acknowledged by the broker on the control topic.",
        )?;
        let notices = IntCounterVec::new(
            Opts::new(
                "driftwatch_notices_total",
                "Delivery attempts of decision notices to the plan's parties, by channel (email, webhook) and result (sent, failed); failed ones are retried until sent.",
            ),
            &["channel", "result"],
        )?;
        let notices_pending = IntGauge::new(
            "driftwatch_notices_pending",
            "Decision notices to parties composed but not yet accepted by their receiver.",
        )?;
        let notices_unacknowledged = IntGauge::new(
            "driftwatch_notices_unacknowledged",
            "Decision notices sent to parties but not yet acknowledged.",
        )?;
        registry.register(Box::new(notices.clone()))?;
        registry.register(Box::new(notices_pending.clone()))?;
        registry.register(Box::new(notices_unacknowledged.clone()))?;
        for c in ["email", "webhook"] {
            for r in ["sent", "failed"] {
                notices.with_label_values(&[c, r]);
            }
        }
        registry.register(Box::new(controls.clone()))?;
        registry.register(Box::new(control_pending.clone()))?;
        for a in ["allow", "restrict", "disable"] {
            controls.with_label_values(&[a]);
        }
        registry.register(Box::new(alerts.clone()))?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(audit_entries.clone()))?;
        registry.register(Box::new(checkpoint_size.clone()))?;
        registry.register(Box::new(obligations.clone()))?;
        registry.register(Box::new(store_errors.clone()))?;
        for r in [
            "opened",
            "attached",
            "recorded",
            "duplicate",
            "ignored",
            "invalid",
        ] {
            alerts.with_label_values(&[r]);
        }
        for k in ["art73", "task"] {
            obligations.with_label_values(&[k]);
        }
        for w in [
            "alert",
            "report",
            "reminders",
            "checkpoint",
            "control",
            "notice",
        ] {
            store_errors.with_label_values(&[w]);
        }
        for s in systems {
            open.with_label_values(&[s.as_str()]);
        }
        Ok(IncidentMetrics {
            alerts,
            open,
            audit_entries,
            checkpoint_size,
            obligations,
            store_errors,
            controls,
            control_pending,
            notices,
            notices_pending,
            notices_unacknowledged,
        })
    }
}
