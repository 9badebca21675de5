//! The alert payload: what the detector publishes on the alerts topic (key = `system_id`)
//! and posts to webhooks, for consumers such as an incident service.
//!
//! ```json
//! {"alert_id":"credit-scoring/fnv1a64:…/7/age/ks","system_id":"credit-scoring",
//!  "severity":"critical","signal":"age","method":"ks","statistic":0.21,"p_value":1.2e-9,
//!  "value":1.2e-9,"threshold":0.01,"samples":1000,
//!  "window":{"index":7,"events":1000,"outcomes":0,"first_event_at":"…","last_event_at":"…","complete":true},
//!  "reference_version":"fnv1a64:…","plan_version":"7","summary":"critical drift on age …"}
//! ```
//!
//! `alert_id` is derived from what the alert is about (system, reference version, window,
//! signal, method): a redelivery carries the same id, so a receiver deduplicates by it.
//! The JSON Schema is published as `schema/driftwatch-alert-v1.schema.json`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How far a check is past its levels.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Within thresholds.
    Ok,
    /// Past the warning level.
    Warning,
    /// Past the critical level.
    Critical,
}

impl Severity {
    /// Name in results and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Where a window sits in a system's stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WindowInfo {
    /// Window number `k`: it covers positions `[k*slide, k*slide+size)`. Count windows
    /// number from 0 after the reference; time windows from the Unix epoch.
    pub index: i64,
    /// Start of a time window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// End (exclusive) of a time window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// Predictions in the window.
    pub events: usize,
    /// Outcomes seen while the window was open.
    pub outcomes: usize,
    /// Timestamp of the first prediction (arrival order).
    pub first_event_at: DateTime<Utc>,
    /// Timestamp of the last prediction (arrival order).
    pub last_event_at: DateTime<Utc>,
    /// False for a window evaluated before its end, at the end of input.
    pub complete: bool,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A drift check: the inputs or outputs moved away from the reference.
    #[default]
    Drift,
    /// Realized performance: a metric from joined outcomes.
    Performance,
    /// Estimated performance (CBPE), before the outcomes arrive.
    PerformanceEstimate,
    /// An obligation falling due: an Art. 73 report deadline, an overdue corrective
    /// task (published by the incident service).
    Obligation,
    /// Monitoring itself: a system's telemetry stopped for longer than its plan's
    /// `heartbeat_s` (Art. 72(2): monitoring must be active).
    Telemetry,
}

impl AlertKind {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Drift => "drift",
            AlertKind::Performance => "performance",
            AlertKind::PerformanceEstimate => "performance_estimate",
            AlertKind::Obligation => "obligation",
            AlertKind::Telemetry => "telemetry",
        }
    }

    /// Drift alerts leave the field out, as before it existed.
    pub fn is_drift(&self) -> bool {
        *self == AlertKind::Drift
    }
}

/// An alert: one check of one window past the plan's minimum severity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Alert {
    /// Stable id: `system/reference/window/signal/method` (performance:
    /// `system/reference/window/performance/metric/stage`).
    pub alert_id: String,
    /// The AI system.
    pub system_id: String,
    /// Drift (the default, left out on the wire), performance or a performance estimate.
    #[serde(default, skip_serializing_if = "AlertKind::is_drift")]
    pub kind: AlertKind,
    /// Warning or critical.
    pub severity: Severity,
    /// The drifting signal (a feature name, `prediction.score`, ...).
    pub signal: String,
    /// The test that flagged it (`ks`, `chi2`, `psi`, ...; the plan's method names).
    pub method: String,
    /// The test statistic.
    pub statistic: Option<f64>,
    /// The p-value, where the test has one.
    pub p_value: Option<f64>,
    /// The value compared with the threshold.
    pub value: f64,
    /// The level it crossed.
    pub threshold: f64,
    /// Usable values in the window.
    pub samples: usize,
    /// The window.
    pub window: WindowInfo,
    /// Reference version compared against.
    pub reference_version: String,
    /// Plan version, if the plan names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_version: Option<String>,
    /// Content hash of the plan in force (`sha256:` and 16 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_hash: Option<String>,
    /// One line for humans.
    pub summary: String,
    /// Where this notification stands in its condition's episode. Absent on a window's
    /// own alert (one per breaching check per window, the record); present on the
    /// notifications the receivers page with (one per episode: firing, escalated,
    /// resolved; `ongoing` refreshes Alertmanager only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
}

/// What a notification says about its condition's episode.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeStatus {
    /// The condition started breaching (K of the last N windows): page.
    Firing,
    /// Its severity rose within the episode (warning to critical): page again.
    Escalated,
    /// Another breaching window of an episode already paged: no page, only a refresh
    /// for receivers that expire alerts (Alertmanager's `endsAt`).
    Ongoing,
    /// M clean windows in a row after the last breach: the episode ended.
    Resolved,
}

impl EpisodeStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EpisodeStatus::Firing => "firing",
            EpisodeStatus::Escalated => "escalated",
            EpisodeStatus::Ongoing => "ongoing",
            EpisodeStatus::Resolved => "resolved",
        }
    }

    /// A person is paged by this (everything but `ongoing`).
    pub fn pages(self) -> bool {
        self != EpisodeStatus::Ongoing
    }
}

/// One condition's episode: from the window it fired in to the one it resolved in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lifecycle {
    /// Firing, escalated, ongoing or resolved.
    pub status: EpisodeStatus,
    /// The condition: `system/kind/signal/method` (one per check and group of people);
    /// the same across episodes, so receivers group by it.
    pub fingerprint: String,
    /// The episode: `fingerprint@window` of the window it fired in; the same for every
    /// notification of one episode (PagerDuty's `dedup_key`).
    pub episode: String,
    /// The window the episode fired in.
    pub started_window: i64,
    /// When the breaching that fired it was seen (the last prediction of that window).
    pub started_at: DateTime<Utc>,
    /// Breaching windows among the last `of` when it fired.
    pub breaching: u32,
    /// The plan's N of "K of the last N windows".
    pub of: u32,
    /// Clean windows in a row since the last breach (`resolved`: the plan's M).
    pub clean: u32,
    /// The plan's runbook for this severity (`[actions.warning|critical] runbook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
    /// Where a person finds the incidents of this system (`[alerts] incident_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_url: Option<String>,
}

/// A payload on the alerts topic that is not an alert.
#[derive(Debug, thiserror::Error)]
#[error("malformed alert payload: {0}")]
pub struct AlertWireError(#[from] serde_json::Error);

impl Alert {
    /// Serialise to the Kafka payload (the webhook body too).
    pub fn to_wire(&self) -> Vec<u8> {
        // Every field is a string, a number or a nested struct with string keys:
        // serialising cannot fail, so the fallback is unreachable.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse an alerts-topic payload.
    pub fn from_wire(bytes: &[u8]) -> Result<Alert, AlertWireError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}
