//! The plan's TOML tables as typed structs: `[system]`, `[reference]`, `[window]`,
//! `[multiple_testing]`, `[features.*]`, `[prediction.*]`, `[csv]`, `[alerts]`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Method;

/// System identity (plan element 1).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SystemInfo {
    /// The `system_id` events carry.
    pub id: String,
    /// Human-readable name.
    #[serde(default)]
    pub name: Option<String>,
    /// Intended purpose, as in the technical documentation.
    #[serde(default)]
    pub intended_purpose: Option<String>,
    /// Risk class (e.g. "high").
    #[serde(default)]
    pub risk_class: Option<String>,
    /// EU database registration number, where registered.
    #[serde(default)]
    pub eu_database_id: Option<String>,
    /// Plan version, quoted in every result.
    #[serde(default)]
    pub plan_version: Option<String>,
    /// The provider (organisation).
    #[serde(default)]
    pub provider: Option<String>,
    /// Our role for this system: provider or deployer.
    #[serde(default)]
    pub role: Option<String>,
    /// Model versions in service.
    #[serde(default)]
    pub versions: Vec<String>,
    /// Where the system is deployed.
    #[serde(default)]
    pub deployments: Vec<String>,
}

/// Where the reference distribution comes from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSpec {
    /// A CSV or NDJSON file of predictions (relative to the plan file).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Or: the first N predictions of the stream.
    #[serde(default)]
    pub first_events: Option<usize>,
    /// Or: a marked period of the stream, by event time: predictions with
    /// `from <= timestamp < to` (RFC 3339). Monitoring starts with the first event at or
    /// after `to`.
    #[serde(default, deserialize_with = "de_time")]
    pub from: Option<DateTime<Utc>>,
    /// End of the marked period (exclusive).
    #[serde(default, deserialize_with = "de_time")]
    pub to: Option<DateTime<Utc>>,
    /// Number of quantile bins for PSI (default 10).
    #[serde(default = "default_bins")]
    pub bins: usize,
}

/// A TOML datetime (`from = 2026-01-01T00:00:00Z`) or an RFC 3339 string; a zone is required.
fn de_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    use serde::de::Error;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Time {
        Text(String),
        Toml(toml::value::Datetime),
    }
    let text = match Option::<Time>::deserialize(d)? {
        None => return Ok(None),
        Some(Time::Text(s)) => s,
        Some(Time::Toml(t)) => t.to_string(),
    };
    DateTime::parse_from_rfc3339(&text)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| {
            D::Error::custom(format!(
                "\"{text}\" is not a timestamp with a time zone, such as 2026-01-01T00:00:00Z"
            ))
        })
}

fn default_bins() -> usize {
    10
}

/// How windows are counted.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// By number of predictions, in arrival order.
    #[default]
    Count,
    /// By the predictions' own timestamps (event time), not their arrival.
    Time,
}

/// Windows: count-based or event-time, tumbling or sliding.
///
/// A window `k` covers positions `[k * slide, k * slide + size)`, where a position is the
/// prediction's sequence number (count windows) or its timestamp (time windows). With
/// `slide` equal to `size` (the default) windows tumble; with a smaller slide they overlap.
/// A count window closes when its last prediction arrives; a time window closes when a
/// prediction `allowed_lateness_s` past its end arrives. A prediction for a window that
/// has already closed is late: counted, not evaluated. A time window in which no
/// prediction falls produces no report.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Count (default) or time.
    #[serde(default)]
    pub kind: WindowKind,
    /// Count windows: predictions per window.
    #[serde(default)]
    pub size: Option<usize>,
    /// Count windows: predictions between window starts (default: `size`, tumbling).
    #[serde(default)]
    pub slide: Option<usize>,
    /// Time windows: window length in seconds.
    #[serde(default)]
    pub duration_s: Option<u64>,
    /// Time windows: seconds between window starts (default: `duration_s`, tumbling).
    #[serde(default)]
    pub slide_s: Option<u64>,
    /// Time windows: how long after a window's end its late predictions still count.
    #[serde(default)]
    pub allowed_lateness_s: u64,
    /// A signal with fewer usable values than this in a window is marked insufficient
    /// instead of tested (default: 30, or the window size if smaller).
    #[serde(default)]
    pub min_samples: Option<usize>,
    /// How far a prediction's timestamp may lie after the clock, or before the latest
    /// timestamp seen, before it is skewed: counted
    /// (`driftwatch_events_skewed_total{direction}`) and left out of every window, so one
    /// event stamped 9999 cannot move the watermark past every later window. Default one
    /// day, or twice the window plus its lateness if that is longer.
    #[serde(default)]
    pub max_skew_s: Option<u64>,
}

/// Resolved windowing, in positions (sequence numbers or milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windowing {
    /// Count or time.
    pub kind: WindowKind,
    /// Window length.
    pub size: i64,
    /// Distance between window starts.
    pub slide: i64,
    /// Allowed lateness (time windows; 0 for count windows).
    pub lateness: i64,
}

impl WindowSpec {
    /// The resolved minimum sample size.
    pub fn min_samples(&self) -> usize {
        let cap = match self.kind {
            WindowKind::Count => self.size.unwrap_or(30),
            WindowKind::Time => 30,
        };
        self.min_samples.unwrap_or(30.min(cap))
    }

    /// The resolved skew bound in milliseconds (see [`WindowSpec::max_skew_s`]).
    pub fn max_skew_ms(&self) -> i64 {
        let day = 86_400_000i64;
        let default = match self.kind {
            WindowKind::Count => day,
            WindowKind::Time => {
                let w = self.windowing();
                day.max(w.size.saturating_mul(2).saturating_add(w.lateness))
            }
        };
        self.max_skew_s
            .map_or(default, |s| (s.min(i64::MAX as u64 / 1000) as i64) * 1000)
    }

    /// The resolved windowing (valid after plan validation).
    pub fn windowing(&self) -> Windowing {
        match self.kind {
            WindowKind::Count => {
                let size = self.size.unwrap_or(1) as i64;
                Windowing {
                    kind: WindowKind::Count,
                    size,
                    slide: self.slide.map_or(size, |s| s as i64),
                    lateness: 0,
                }
            }
            WindowKind::Time => {
                let size = self.duration_s.unwrap_or(1) as i64 * 1000;
                Windowing {
                    kind: WindowKind::Time,
                    size,
                    slide: self.slide_s.map_or(size, |s| s as i64 * 1000),
                    lateness: self.allowed_lateness_s as i64 * 1000,
                }
            }
        }
    }

    /// A short description for humans ("windows of 1000", "1h windows every 15m").
    pub fn describe(&self) -> String {
        let w = self.windowing();
        let unit = |v: i64| match w.kind {
            WindowKind::Count => format!("{v}"),
            WindowKind::Time => format!("{}s", v / 1000),
        };
        if w.slide == w.size {
            format!("{} windows of {}", kind_name(w.kind), unit(w.size))
        } else {
            format!(
                "{} windows of {} every {}",
                kind_name(w.kind),
                unit(w.size),
                unit(w.slide)
            )
        }
    }
}

fn kind_name(k: WindowKind) -> &'static str {
    match k {
        WindowKind::Count => "count",
        WindowKind::Time => "time",
    }
}

/// Correction for the many p-value checks of one window.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MultipleTesting {
    /// `none` (default) or `benjamini-hochberg`.
    #[serde(default)]
    pub method: Correction,
}

/// A multiple-testing correction.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Correction {
    /// Compare raw p-values with the thresholds (adjusted ones are still reported).
    #[default]
    None,
    /// Benjamini-Hochberg false-discovery-rate control across all p-value checks of a
    /// window (every signal, every p-value method): thresholds apply to adjusted p-values.
    BenjaminiHochberg,
}

/// How a feature's values are compared.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FeatureType {
    /// Real-valued.
    Numeric,
    /// A finite set of labels (strings, booleans, integer codes).
    Categorical,
}

/// Two alert levels for one check: constants, or learned from the reference.
///
/// Learned (`learned = true`): the reference is cut into windows of the monitored size,
/// each is compared with the whole reference, and a level sits at the mean of those
/// values plus `k` standard deviations: `warning_k` (default 2) and `critical_k`
/// (default 3). The levels are frozen with the reference.
///
/// For the tests with a p-value (`ks`, `chi2`) the levels are learned on the test
/// statistic (KS D, chi-squared), where larger means drift, as NannyML does: p-values
/// of reference windows spread over [0, 1], so a level at their mean minus `k` standard
/// deviations is below 0 and could never be crossed. Such a check then compares the
/// statistic (its `value` is the statistic); the p-value is still reported.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Level for a warning.
    #[serde(default)]
    pub warning: Option<f64>,
    /// Level for a critical alert.
    #[serde(default)]
    pub critical: Option<f64>,
    /// Learn both levels from the reference.
    #[serde(default)]
    pub learned: bool,
    /// Learned warning level in standard deviations (default 2).
    #[serde(default)]
    pub warning_k: Option<f64>,
    /// Learned critical level in standard deviations (default 3).
    #[serde(default)]
    pub critical_k: Option<f64>,
}

impl Thresholds {
    /// `(warning_k, critical_k)` of learned thresholds.
    pub fn ks(&self) -> (f64, f64) {
        (
            self.warning_k.unwrap_or(2.0),
            self.critical_k.unwrap_or(3.0),
        )
    }
}

/// One monitored input feature.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Numeric or categorical.
    #[serde(rename = "type")]
    pub kind: FeatureType,
    /// Tests to run; defaults by type.
    #[serde(default)]
    pub checks: Option<Vec<Method>>,
    /// Per-method threshold overrides.
    #[serde(default)]
    pub thresholds: BTreeMap<Method, Thresholds>,
}

/// A monitored model output (score or label).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Tests to run; defaults by type.
    #[serde(default)]
    pub checks: Option<Vec<Method>>,
    /// Per-method threshold overrides.
    #[serde(default)]
    pub thresholds: BTreeMap<Method, Thresholds>,
}

/// Which outputs are monitored for prediction drift.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionSpec {
    /// `prediction.score` (numeric).
    #[serde(default)]
    pub score: Option<OutputSpec>,
    /// `prediction.label` (categorical).
    #[serde(default)]
    pub label: Option<OutputSpec>,
    /// `prediction.value` (numeric, regression).
    #[serde(default)]
    pub value: Option<OutputSpec>,
}

/// Column names in CSV files. Feature columns carry the feature's name.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CsvColumns {
    /// Prediction id column (default `prediction_id`; row number when absent).
    #[serde(default = "col_prediction_id")]
    pub prediction_id: String,
    /// Timestamp column, RFC 3339 (default `timestamp`; the Unix epoch when absent).
    #[serde(default = "col_timestamp")]
    pub timestamp: String,
    /// Model version column (default `model_version`).
    #[serde(default = "col_model_version")]
    pub model_version: String,
    /// Score column (default `score`).
    #[serde(default = "col_score")]
    pub score: String,
    /// Predicted label column (default `label`).
    #[serde(default = "col_label")]
    pub label: String,
    /// Predicted value column (default `value`).
    #[serde(default = "col_value")]
    pub value: String,
    /// Outcome column (default `outcome`): a label, or a number for regression.
    #[serde(default = "col_outcome")]
    pub outcome: String,
}

fn col_prediction_id() -> String {
    "prediction_id".into()
}
fn col_timestamp() -> String {
    "timestamp".into()
}
fn col_model_version() -> String {
    "model_version".into()
}
fn col_score() -> String {
    "score".into()
}
fn col_label() -> String {
    "label".into()
}
fn col_value() -> String {
    "value".into()
}
fn col_outcome() -> String {
    "outcome".into()
}

impl Default for CsvColumns {
    fn default() -> Self {
        CsvColumns {
            prediction_id: col_prediction_id(),
            timestamp: col_timestamp(),
            model_version: col_model_version(),
            score: col_score(),
            label: col_label(),
            value: col_value(),
            outcome: col_outcome(),
        }
    }
}

pub use driftwatch_schema::Severity;

/// Alert routing and paging.
///
/// Every breaching check of every window is an alert on the alerts topic (the record the
/// incident service files). A person is paged once per *episode* of a condition (one
/// check of one signal, or of one group of people): it fires when `fire_after` of the
/// last `of_last` windows breach, is sent again only when it escalates (warning to
/// critical), and resolves after `resolve_after` clean windows in a row.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    /// POST JSON to this URL: each episode's notifications (the default), or every
    /// window's alerts with `webhook_sends = "windows"`.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// What the webhook gets: `episodes` (firing, escalated, resolved) or `windows`
    /// (every breaching check of every window, the machine feed).
    #[serde(default)]
    pub webhook_sends: WebhookSends,
    /// An Alertmanager (`http://alertmanager:9093`): each episode is posted to its v2
    /// API with labels `alertname="DriftwatchDrift"` (or `DriftwatchPerformance`, ...),
    /// `system`, `signal`, `method`, `severity`; refreshed by every breaching window of
    /// the episode, and resolved (`endsAt` now) when the episode ends.
    #[serde(default)]
    pub alertmanager_url: Option<String>,
    /// A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): one
    /// message per firing, escalation and resolve.
    #[serde(default)]
    pub slack_webhook_url: Option<String>,
    /// A PagerDuty Events API v2 integration (routing) key: trigger on firing and
    /// escalation, resolve when the episode ends, `dedup_key` the episode.
    #[serde(default)]
    pub pagerduty_routing_key: Option<String>,
    /// The Events API v2 endpoint (default PagerDuty's).
    #[serde(default = "default_pagerduty_url")]
    pub pagerduty_url: String,
    /// A link to this system's incidents for the notifications; `{system}` is replaced
    /// by the system id (`https://driftwatch.example/incidents?system={system}`).
    #[serde(default)]
    pub incident_url: Option<String>,
    /// Raise a `telemetry` alert when no event of this system has arrived for this many
    /// seconds (monitoring must be active, Art. 72(2)); resolved by the next event.
    #[serde(default)]
    pub heartbeat_s: Option<u64>,
    /// When an episode fires and resolves.
    #[serde(default)]
    pub episodes: EpisodeSpec,
    /// Lowest severity that raises an alert (default `warning`).
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
}

/// What a plan's webhook receives.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WebhookSends {
    /// Each episode's firing, escalation and resolve.
    #[default]
    Episodes,
    /// Every breaching check of every window.
    Windows,
}

/// "Fire after K of the last N windows breach; resolve after M clean windows."
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EpisodeSpec {
    /// K: breaching windows among the last `of_last` that fire an episode (default 2).
    #[serde(default = "default_fire_after")]
    pub fire_after: u32,
    /// N: how many of the condition's last windows are counted (default 3, at most 64).
    #[serde(default = "default_of_last")]
    pub of_last: u32,
    /// M: clean windows in a row that resolve an episode (default 3).
    #[serde(default = "default_resolve_after")]
    pub resolve_after: u32,
}

fn default_fire_after() -> u32 {
    2
}
fn default_of_last() -> u32 {
    3
}
fn default_resolve_after() -> u32 {
    3
}

impl Default for EpisodeSpec {
    fn default() -> Self {
        EpisodeSpec {
            fire_after: default_fire_after(),
            of_last: default_of_last(),
            resolve_after: default_resolve_after(),
        }
    }
}

fn default_pagerduty_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".into()
}

fn default_min_severity() -> Severity {
    Severity::Warning
}

impl Default for AlertSpec {
    fn default() -> Self {
        AlertSpec {
            webhook_url: None,
            webhook_sends: WebhookSends::default(),
            alertmanager_url: None,
            slack_webhook_url: None,
            pagerduty_routing_key: None,
            pagerduty_url: default_pagerduty_url(),
            incident_url: None,
            heartbeat_s: None,
            episodes: EpisodeSpec::default(),
            min_severity: default_min_severity(),
        }
    }
}
