//! The monitoring plan: one TOML file per AI system, part of its technical documentation
//! (EU AI Act Art. 72(3), Annex IV item 9).
//!
//! ```toml
//! [system]
//! id = "credit-scoring"            # matches system_id in events
//! name = "Consumer credit scoring"
//! intended_purpose = "Creditworthiness assessment of natural persons"
//! risk_class = "high"
//!
//! [reference]
//! file = "reference.csv"           # relative to this plan; or:
//! # first_events = 2000            # the first N predictions of the stream
//!
//! [window]
//! size = 1000                      # predictions per tumbling window; or:
//! # kind = "time"                  # event-time windows of the predictions' timestamps
//! # duration_s = 3600              # one hour
//! # slide_s = 900                  # sliding: a window every 15 minutes (default: tumbling)
//! # allowed_lateness_s = 300       # how late an event may arrive and still count
//!
//! [features.age]
//! type = "numeric"                 # default checks: ks, psi, wasserstein, missing, out_of_range, type_errors
//!
//! [features.region]
//! type = "categorical"             # default checks: chi2, psi, unseen, missing, type_errors
//! thresholds.psi = { warning = 0.1, critical = 0.25 }
//!
//! [prediction.score]
//! checks = ["ks", "psi"]
//! thresholds.psi = { learned = true }   # mean + 2/3 sd of reference windows
//!
//! [multiple_testing]
//! method = "benjamini-hochberg"    # FDR control across a window's p-value checks
//!
//! [alerts]
//! webhook_url = "http://alert-receiver:8080/driftwatch"
//! min_severity = "warning"
//! ```
//!
//! `driftwatch plan check FILE` parses and validates a plan and reports the first error
//! with the key at fault.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A parsed, validated monitoring plan.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Who and what is monitored.
    pub system: SystemInfo,
    /// What "normal" is.
    pub reference: ReferenceSpec,
    /// How the stream is cut into windows.
    pub window: WindowSpec,
    /// Monitored input features by name.
    #[serde(default)]
    pub features: BTreeMap<String, FeatureSpec>,
    /// Monitored model outputs.
    #[serde(default)]
    pub prediction: PredictionSpec,
    /// Column names when events come from CSV files.
    #[serde(default)]
    pub csv: CsvColumns,
    /// Where alerts go.
    #[serde(default)]
    pub alerts: AlertSpec,
    /// Correction for testing many signals in one window.
    #[serde(default)]
    pub multiple_testing: MultipleTesting,
    /// The directory of the plan file; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

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

/// A drift test or data-quality check. The value compared with the thresholds is given
/// for each; the documented default levels are (warning, critical).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Two-sample Kolmogorov-Smirnov, numeric. Value: p-value (asymptotic, as scipy).
    /// Alerts below (0.05, 0.01).
    Ks,
    /// Population stability index over reference-quantile bins (numeric) or categories;
    /// empty bins smoothed to 1e-4. Alerts above (0.1, 0.25).
    Psi,
    /// Chi-squared test of the reference-vs-window table, categorical. Value: p-value.
    /// Alerts below (0.05, 0.01).
    Chi2,
    /// Jensen-Shannon distance, base 2, over reference-quantile bins or categories.
    /// Alerts above (0.1, 0.2).
    Js,
    /// Hellinger distance over reference-quantile bins or categories. Above (0.1, 0.2).
    Hellinger,
    /// Wasserstein-1 distance divided by the reference's standard deviation (floored at
    /// 1e-3); the raw distance is the statistic. Numeric. Above (0.1, 0.2).
    Wasserstein,
    /// L-infinity distance between category proportions, categorical. Above (0.1, 0.2).
    Linf,
    /// Share of the window's values in categories the reference never saw, categorical.
    /// Above (0.01, 0.05).
    Unseen,
    /// Share of predictions where the signal is null or absent. Above (0.05, 0.2).
    Missing,
    /// Share of numeric values outside the reference's [min, max]. Above (0.02, 0.1).
    OutOfRange,
    /// Share of predictions where the value has the wrong type. Above (0, 0.01): any
    /// type error is a warning.
    TypeErrors,
}

/// Every method, for documentation and tests.
pub const ALL_METHODS: [Method; 11] = [
    Method::Ks,
    Method::Psi,
    Method::Chi2,
    Method::Js,
    Method::Hellinger,
    Method::Wasserstein,
    Method::Linf,
    Method::Unseen,
    Method::Missing,
    Method::OutOfRange,
    Method::TypeErrors,
];

impl Method {
    /// Name in results, metrics and plans.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Ks => "ks",
            Method::Psi => "psi",
            Method::Chi2 => "chi2",
            Method::Js => "js",
            Method::Hellinger => "hellinger",
            Method::Wasserstein => "wasserstein",
            Method::Linf => "linf",
            Method::Unseen => "unseen",
            Method::Missing => "missing",
            Method::OutOfRange => "out_of_range",
            Method::TypeErrors => "type_errors",
        }
    }

    /// True when the statistic alerts by being small (p-values), false when large.
    pub fn lower_is_worse(self) -> bool {
        self.has_p_value()
    }

    /// True for hypothesis tests whose value is a p-value.
    pub fn has_p_value(self) -> bool {
        matches!(self, Method::Ks | Method::Chi2)
    }

    /// Default thresholds (documented on each variant).
    pub fn default_thresholds(self) -> Thresholds {
        let (warning, critical) = match self {
            Method::Ks | Method::Chi2 => (0.05, 0.01),
            Method::Psi => (0.1, 0.25),
            Method::Js | Method::Hellinger | Method::Wasserstein | Method::Linf => (0.1, 0.2),
            Method::Unseen => (0.01, 0.05),
            Method::Missing => (0.05, 0.2),
            Method::OutOfRange => (0.02, 0.1),
            Method::TypeErrors => (0.0, 0.01),
        };
        Thresholds {
            warning: Some(warning),
            critical: Some(critical),
            ..Thresholds::default()
        }
    }

    fn applies_to(self, t: FeatureType) -> bool {
        match self {
            Method::Ks | Method::Wasserstein | Method::OutOfRange => t == FeatureType::Numeric,
            Method::Chi2 | Method::Linf | Method::Unseen => t == FeatureType::Categorical,
            Method::Psi | Method::Js | Method::Hellinger | Method::Missing | Method::TypeErrors => {
                true
            }
        }
    }

    /// Whether the value is a share or distance bounded by 1.
    fn bounded_by_one(self) -> bool {
        !matches!(self, Method::Psi | Method::Wasserstein)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

/// Alert routing.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    /// POST each alert as JSON to this URL.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// An Alertmanager (`http://alertmanager:9093`): each alert is posted to its v2 API
    /// with labels `alertname="DriftwatchDrift"`, `system`, `signal`, `method`,
    /// `severity`. Drift that persists keeps the alert active window after window;
    /// Alertmanager resolves it once windows stop raising it (its `resolve_timeout`).
    #[serde(default)]
    pub alertmanager_url: Option<String>,
    /// Lowest severity that raises an alert (default `warning`).
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
}

fn default_min_severity() -> Severity {
    Severity::Warning
}

impl Default for AlertSpec {
    fn default() -> Self {
        AlertSpec {
            webhook_url: None,
            alertmanager_url: None,
            min_severity: default_min_severity(),
        }
    }
}

/// A plan that cannot be used; the message names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The file could not be read.
    #[error("cannot read plan {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a wrong type (the message names key and line).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The TOML error.
        message: String,
    },
    /// A value that parses but cannot work.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// Dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Where a monitored value comes from in a prediction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// `features.<name>`.
    Feature(String),
    /// `prediction.score`.
    Score,
    /// `prediction.label`.
    Label,
    /// `prediction.value`.
    Value,
}

/// One resolved check of one signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The test.
    pub method: Method,
    /// Resolved thresholds (defaults merged with overrides).
    pub thresholds: Thresholds,
}

/// A monitored signal with its resolved checks, in plan order.
#[derive(Debug, Clone)]
pub struct Signal {
    /// Name in results and metrics: the feature name, or `prediction.score` etc.
    pub name: String,
    /// Where its values come from.
    pub source: Source,
    /// Numeric or categorical.
    pub kind: FeatureType,
    /// Checks to run.
    pub checks: Vec<Check>,
}

impl Plan {
    /// Read, parse and validate a plan file.
    pub fn from_file(path: &Path) -> Result<Plan, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Plan::from_toml(&text, &path.display().to_string(), base)
    }

    /// Parse and validate plan text; `name` is used in errors.
    pub fn from_toml(text: &str, name: &str, base_dir: PathBuf) -> Result<Plan, PlanError> {
        let mut plan: Plan = toml::from_str(text).map_err(|e| PlanError::Parse {
            path: name.into(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        plan.base_dir = base_dir;
        plan.validate(name)?;
        Ok(plan)
    }

    fn validate(&self, name: &str) -> Result<(), PlanError> {
        let invalid = |key: &str, message: String| PlanError::Invalid {
            path: name.into(),
            key: key.into(),
            message,
        };
        let id = &self.system.id;
        if id.is_empty()
            || id.len() > 128
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(invalid(
                "system.id",
                format!("\"{id}\" must be 1 to 128 characters of [A-Za-z0-9._-]"),
            ));
        }
        let r = &self.reference;
        let sources = usize::from(r.file.is_some())
            + usize::from(r.first_events.is_some())
            + usize::from(r.from.is_some() || r.to.is_some());
        if sources != 1 {
            return Err(invalid(
                "reference",
                "give exactly one of `file` (a CSV or NDJSON file), `first_events` (a count) or `from` and `to` (a period of the stream)".into(),
            ));
        }
        if r.first_events == Some(0) {
            return Err(invalid(
                "reference.first_events",
                "must be at least 1".into(),
            ));
        }
        match (r.from, r.to) {
            (Some(_), None) => return Err(invalid("reference.to", "`from` needs `to`".into())),
            (None, Some(_)) => return Err(invalid("reference.from", "`to` needs `from`".into())),
            (Some(f), Some(t)) if f >= t => {
                return Err(invalid(
                    "reference.to",
                    format!("{t} is not after `from` ({f})"),
                ))
            }
            _ => {}
        }
        if !(2..=1000).contains(&self.reference.bins) {
            return Err(invalid(
                "reference.bins",
                format!("{} is outside 2..=1000", self.reference.bins),
            ));
        }
        let w = &self.window;
        match w.kind {
            WindowKind::Count => {
                for (key, set) in [
                    ("window.duration_s", w.duration_s.is_some()),
                    ("window.slide_s", w.slide_s.is_some()),
                    ("window.allowed_lateness_s", w.allowed_lateness_s > 0),
                ] {
                    if set {
                        return Err(invalid(
                            key,
                            "applies to kind = \"time\" windows only".into(),
                        ));
                    }
                }
                let size = match w.size {
                    None | Some(0) => {
                        return Err(invalid(
                            "window.size",
                            "count windows need a size of at least 1 prediction".into(),
                        ))
                    }
                    Some(s) => s,
                };
                if let Some(slide) = w.slide {
                    if slide == 0 || slide > size {
                        return Err(invalid(
                            "window.slide",
                            format!("{slide} must be between 1 and window.size ({size})"),
                        ));
                    }
                }
                let min = w.min_samples();
                if min == 0 || min > size {
                    return Err(invalid(
                        "window.min_samples",
                        format!("{min} must be between 1 and window.size ({size})"),
                    ));
                }
            }
            WindowKind::Time => {
                for (key, set) in [
                    ("window.size", w.size.is_some()),
                    ("window.slide", w.slide.is_some()),
                ] {
                    if set {
                        return Err(invalid(
                            key,
                            "applies to count windows; time windows use duration_s and slide_s"
                                .into(),
                        ));
                    }
                }
                let duration = match w.duration_s {
                    None | Some(0) => {
                        return Err(invalid(
                            "window.duration_s",
                            "time windows need a duration of at least 1 second".into(),
                        ))
                    }
                    Some(d) => d,
                };
                if let Some(slide) = w.slide_s {
                    if slide == 0 || slide > duration {
                        return Err(invalid(
                            "window.slide_s",
                            format!("{slide} must be between 1 and window.duration_s ({duration})"),
                        ));
                    }
                }
                if w.min_samples() == 0 {
                    return Err(invalid("window.min_samples", "must be at least 1".into()));
                }
            }
        }
        if self.features.is_empty()
            && self.prediction.score.is_none()
            && self.prediction.label.is_none()
            && self.prediction.value.is_none()
        {
            return Err(invalid(
                "features",
                "the plan monitors nothing: add [features.NAME] or [prediction.score]".into(),
            ));
        }
        for (fname, spec) in &self.features {
            if fname.is_empty() || fname.len() > driftwatch_schema::MAX_ID_LEN {
                return Err(invalid("features", format!("bad feature name \"{fname}\"")));
            }
            check_methods(
                &format!("features.{fname}"),
                spec.kind,
                spec.checks.as_deref(),
                &spec.thresholds,
            )
            .map_err(|(k, m)| invalid(&k, m))?;
        }
        for (oname, kind, spec) in self.outputs() {
            if let Some(spec) = spec {
                check_methods(
                    &format!("prediction.{oname}"),
                    kind,
                    spec.checks.as_deref(),
                    &spec.thresholds,
                )
                .map_err(|(k, m)| invalid(&k, m))?;
            }
        }
        for (key, url) in [
            ("alerts.webhook_url", &self.alerts.webhook_url),
            ("alerts.alertmanager_url", &self.alerts.alertmanager_url),
        ] {
            if let Some(url) = url {
                // TLS is not built in yet (no TLS stack in the HTTP client): refuse https
                // here rather than fail at the first alert.
                if !url.starts_with("http://") {
                    return Err(invalid(
                        key,
                        format!("\"{url}\" must be an http:// URL (https is not supported yet)"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn outputs(&self) -> [(&'static str, FeatureType, Option<&OutputSpec>); 3] {
        [
            (
                "score",
                FeatureType::Numeric,
                self.prediction.score.as_ref(),
            ),
            (
                "label",
                FeatureType::Categorical,
                self.prediction.label.as_ref(),
            ),
            (
                "value",
                FeatureType::Numeric,
                self.prediction.value.as_ref(),
            ),
        ]
    }

    /// Every monitored signal with resolved checks: features by name, then outputs.
    pub fn signals(&self) -> Vec<Signal> {
        let mut out = Vec::new();
        for (name, spec) in &self.features {
            out.push(Signal {
                name: name.clone(),
                source: Source::Feature(name.clone()),
                kind: spec.kind,
                checks: resolve(spec.kind, spec.checks.as_deref(), &spec.thresholds),
            });
        }
        for (oname, kind, spec) in self.outputs() {
            if let Some(spec) = spec {
                out.push(Signal {
                    name: format!("prediction.{oname}"),
                    source: match oname {
                        "score" => Source::Score,
                        "label" => Source::Label,
                        _ => Source::Value,
                    },
                    kind,
                    checks: resolve(kind, spec.checks.as_deref(), &spec.thresholds),
                });
            }
        }
        out
    }

    /// The reference file resolved against the plan's directory.
    pub fn reference_path(&self) -> Option<PathBuf> {
        self.reference.file.as_ref().map(|f| self.base_dir.join(f))
    }
}

/// Checks a signal gets when its plan entry names none.
pub fn default_checks(kind: FeatureType) -> Vec<Method> {
    match kind {
        FeatureType::Numeric => vec![
            Method::Ks,
            Method::Psi,
            Method::Wasserstein,
            Method::Missing,
            Method::OutOfRange,
            Method::TypeErrors,
        ],
        FeatureType::Categorical => vec![
            Method::Chi2,
            Method::Psi,
            Method::Unseen,
            Method::Missing,
            Method::TypeErrors,
        ],
    }
}

fn resolve(
    kind: FeatureType,
    checks: Option<&[Method]>,
    overrides: &BTreeMap<Method, Thresholds>,
) -> Vec<Check> {
    let methods = checks
        .map(<[Method]>::to_vec)
        .unwrap_or_else(|| default_checks(kind));
    methods
        .into_iter()
        .map(|method| {
            let mut t = method.default_thresholds();
            if let Some(o) = overrides.get(&method) {
                // An override replaces the pair: a plan that sets only `critical` means
                // "no warning level" rather than inheriting the default warning.
                t = *o;
            }
            Check {
                method,
                thresholds: t,
            }
        })
        .collect()
}

fn check_methods(
    key: &str,
    kind: FeatureType,
    checks: Option<&[Method]>,
    overrides: &BTreeMap<Method, Thresholds>,
) -> Result<(), (String, String)> {
    let kind_name = match kind {
        FeatureType::Numeric => "numeric",
        FeatureType::Categorical => "categorical",
    };
    if let Some(checks) = checks {
        if checks.is_empty() {
            return Err((
                format!("{key}.checks"),
                "must name at least one method".into(),
            ));
        }
        for m in checks {
            if !m.applies_to(kind) {
                return Err((
                    format!("{key}.checks"),
                    format!("method \"{m}\" does not apply to a {kind_name} signal"),
                ));
            }
        }
    }
    let active = checks
        .map(<[Method]>::to_vec)
        .unwrap_or_else(|| default_checks(kind));
    for (m, t) in overrides {
        let tkey = format!("{key}.thresholds.{m}");
        if !active.contains(m) {
            return Err((tkey, format!("method \"{m}\" is not among the checks")));
        }
        if t.learned {
            if t.warning.is_some() || t.critical.is_some() {
                return Err((
                    tkey,
                    "learned thresholds take warning_k/critical_k, not warning/critical".into(),
                ));
            }
            let (wk, ck) = t.ks();
            if !(wk > 0.0 && ck > 0.0 && wk.is_finite() && ck.is_finite()) || wk > ck {
                return Err((
                    tkey,
                    format!("warning_k ({wk}) and critical_k ({ck}) must be positive, warning_k <= critical_k"),
                ));
            }
            continue;
        }
        if t.warning_k.is_some() || t.critical_k.is_some() {
            return Err((tkey, "warning_k/critical_k need learned = true".into()));
        }
        if t.warning.is_none() && t.critical.is_none() {
            return Err((
                tkey,
                "give warning and/or critical, or learned = true".into(),
            ));
        }
        for v in [t.warning, t.critical].into_iter().flatten() {
            if !v.is_finite() || v < 0.0 || (m.bounded_by_one() && v > 1.0) {
                return Err((tkey, format!("{v} is not a valid level for {m}")));
            }
        }
        if let (Some(w), Some(c)) = (t.warning, t.critical) {
            let ordered = if m.lower_is_worse() { c <= w } else { c >= w };
            if !ordered {
                return Err((
                    tkey,
                    format!(
                        "critical ({c}) must be {} than warning ({w})",
                        if m.lower_is_worse() {
                            "no larger"
                        } else {
                            "no smaller"
                        }
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[system]
id = "credit-scoring"

[reference]
first_events = 500

[window]
size = 200

[features.age]
type = "numeric"

[features.region]
type = "categorical"
thresholds.psi = { warning = 0.2, critical = 0.3 }

[prediction.score]
"#;

    fn parse(text: &str) -> Result<Plan, PlanError> {
        Plan::from_toml(text, "plan.toml", PathBuf::new())
    }

    #[test]
    fn good_plan_resolves_defaults() {
        let plan = parse(GOOD).expect("valid plan");
        let signals = plan.signals();
        let names: Vec<_> = signals.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["age", "region", "prediction.score"]);
        let methods: Vec<Method> = signals[0].checks.iter().map(|c| c.method).collect();
        assert_eq!(methods, default_checks(FeatureType::Numeric));
        assert_eq!(
            signals[0].checks[0].thresholds,
            Method::Ks.default_thresholds()
        );
        assert_eq!(signals[1].checks[1].thresholds.warning, Some(0.2));
        assert_eq!(plan.window.min_samples(), 30);
    }

    #[test]
    fn time_windows_and_learned_thresholds() {
        let text = GOOD
            .replace(
                "size = 200",
                "kind = \"time\"\nduration_s = 3600\nslide_s = 900\nallowed_lateness_s = 60",
            )
            .replace(
                "[prediction.score]",
                "[prediction.score]\nthresholds.psi = { learned = true, critical_k = 4 }",
            );
        let plan = parse(&text).expect("valid");
        let w = plan.window.windowing();
        assert_eq!((w.size, w.slide, w.lateness), (3_600_000, 900_000, 60_000));
        assert_eq!(plan.window.describe(), "time windows of 3600s every 900s");
        let score = plan.signals().pop().expect("score");
        let psi = score
            .checks
            .iter()
            .find(|c| c.method == Method::Psi)
            .expect("psi");
        assert!(psi.thresholds.learned);
        assert_eq!(psi.thresholds.ks(), (2.0, 4.0));

        let e = err(&GOOD.replace("size = 200", "size = 200\nslide_s = 10"));
        assert!(
            e.contains("window.slide_s: applies to kind = \"time\""),
            "{e}"
        );
        let e = err(&GOOD.replace("size = 200", "size = 200\nslide = 300"));
        assert!(
            e.contains("window.slide: 300 must be between 1 and window.size (200)"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "[prediction.score]",
            "[prediction.score]\nthresholds.psi = { learned = true, warning = 0.1 }",
        ));
        assert!(
            e.contains("prediction.score.thresholds.psi: learned thresholds take"),
            "{e}"
        );
    }

    #[test]
    fn alert_urls_must_be_http() {
        let text = format!("{GOOD}\n[alerts]\nalertmanager_url = \"https://am:9093\"\n");
        let e = err(&text);
        assert!(
            e.contains("alerts.alertmanager_url: \"https://am:9093\" must be an http:// URL"),
            "{e}"
        );
        let ok = format!("{GOOD}\n[alerts]\nalertmanager_url = \"http://am:9093\"\nwebhook_url = \"http://hook/x\"\n");
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn reference_period() {
        let text = GOOD.replace(
            "first_events = 500",
            "from = 2026-01-01T00:00:00Z\nto = 2026-02-01T00:00:00Z",
        );
        let plan = parse(&text).expect("valid");
        assert!(plan.reference.from.is_some());
        let e = err(&GOOD.replace("first_events = 500", "from = 2026-01-01T00:00:00Z"));
        assert!(e.contains("reference.to: `from` needs `to`"), "{e}");
        let e = err(&GOOD.replace(
            "first_events = 500",
            "from = \"2026-01-01T00:00:00Z\"\nto = 2026-01-01T10:00:00",
        ));
        assert!(e.contains("is not a timestamp with a time zone"), "{e}");
    }

    fn err(text: &str) -> String {
        parse(text).expect_err("must be refused").to_string()
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = err(&GOOD.replace("size = 200", "size = 200\nsizee = 3"));
        assert!(e.contains("unknown field `sizee`"), "{e}");
        assert!(e.contains("line 10"), "{e}");
    }

    #[test]
    fn method_type_mismatch_names_the_key() {
        let e = err(&GOOD.replace(
            "type = \"categorical\"",
            "type = \"categorical\"\nchecks = [\"ks\"]",
        ));
        assert_eq!(
            e,
            "plan.toml: features.region.checks: method \"ks\" does not apply to a categorical signal"
        );
    }

    #[test]
    fn inverted_thresholds_are_refused() {
        let e = err(&GOOD.replace(
            "warning = 0.2, critical = 0.3",
            "warning = 0.3, critical = 0.2",
        ));
        assert!(
            e.starts_with("plan.toml: features.region.thresholds.psi: critical (0.2)"),
            "{e}"
        );
    }

    #[test]
    fn reference_must_be_one_source() {
        let e = err(&GOOD.replace("first_events = 500", "first_events = 500\nfile = \"r.csv\""));
        assert!(e.contains("reference: give exactly one of"), "{e}");
        let e = err(&GOOD.replace("first_events = 500", ""));
        assert!(e.contains("reference: give exactly one of"), "{e}");
    }

    #[test]
    fn min_samples_cannot_exceed_window() {
        let e = err(&GOOD.replace("size = 200", "size = 200\nmin_samples = 201"));
        assert!(e.contains("window.min_samples"), "{e}");
    }
}
