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
//! size = 1000                      # predictions per tumbling window
//!
//! [features.age]
//! type = "numeric"                 # checks default to ["ks", "psi"]
//!
//! [features.region]
//! type = "categorical"             # checks default to ["chi2", "psi"]
//! thresholds.psi = { warning = 0.1, critical = 0.25 }
//!
//! [prediction.score]
//! checks = ["ks", "psi"]
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
    /// Number of quantile bins for PSI (default 10).
    #[serde(default = "default_bins")]
    pub bins: usize,
}

fn default_bins() -> usize {
    10
}

/// Count-based tumbling windows.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Predictions per window.
    pub size: usize,
    /// A signal with fewer usable values than this in a window is marked insufficient
    /// instead of tested (default: 30, or the window size if smaller).
    #[serde(default)]
    pub min_samples: Option<usize>,
}

impl WindowSpec {
    /// The resolved minimum sample size.
    pub fn min_samples(&self) -> usize {
        self.min_samples.unwrap_or(30.min(self.size))
    }
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

/// A drift test.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Two-sample Kolmogorov-Smirnov p-value (numeric).
    Ks,
    /// Population stability index (numeric: reference-quantile bins; categorical: categories).
    Psi,
    /// Chi-squared test of homogeneity p-value (categorical).
    Chi2,
}

impl Method {
    /// Name in results, metrics and plans.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Ks => "ks",
            Method::Psi => "psi",
            Method::Chi2 => "chi2",
        }
    }

    /// True when the statistic alerts by being small (p-values), false when large.
    pub fn lower_is_worse(self) -> bool {
        matches!(self, Method::Ks | Method::Chi2)
    }

    /// Default thresholds: p < 0.05 warning / 0.01 critical; PSI 0.1 / 0.25.
    pub fn default_thresholds(self) -> Thresholds {
        match self {
            Method::Ks | Method::Chi2 => Thresholds {
                warning: Some(0.05),
                critical: Some(0.01),
            },
            Method::Psi => Thresholds {
                warning: Some(0.1),
                critical: Some(0.25),
            },
        }
    }

    fn applies_to(self, t: FeatureType) -> bool {
        match self {
            Method::Ks => t == FeatureType::Numeric,
            Method::Chi2 => t == FeatureType::Categorical,
            Method::Psi => true,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Two alert levels for one check. Either may be omitted.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Level for a warning.
    #[serde(default)]
    pub warning: Option<f64>,
    /// Level for a critical alert.
    #[serde(default)]
    pub critical: Option<f64>,
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

/// Alert severity.
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

/// Alert routing.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    /// POST each alert as JSON to this URL.
    #[serde(default)]
    pub webhook_url: Option<String>,
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
        match (&self.reference.file, self.reference.first_events) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "reference",
                    "give either `file` or `first_events`, not both".into(),
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "reference",
                    "give `file` (a CSV or NDJSON file) or `first_events` (a count)".into(),
                ))
            }
            (None, Some(0)) => {
                return Err(invalid(
                    "reference.first_events",
                    "must be at least 1".into(),
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
        if self.window.size == 0 {
            return Err(invalid("window.size", "must be at least 1".into()));
        }
        let min = self.window.min_samples();
        if min == 0 || min > self.window.size {
            return Err(invalid(
                "window.min_samples",
                format!(
                    "{min} must be between 1 and window.size ({})",
                    self.window.size
                ),
            ));
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
        if let Some(url) = &self.alerts.webhook_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "alerts.webhook_url",
                    format!("\"{url}\" must be an http:// or https:// URL"),
                ));
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

fn default_checks(kind: FeatureType) -> Vec<Method> {
    match kind {
        FeatureType::Numeric => vec![Method::Ks, Method::Psi],
        FeatureType::Categorical => vec![Method::Chi2, Method::Psi],
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
        if t.warning.is_none() && t.critical.is_none() {
            return Err((tkey, "give warning and/or critical".into()));
        }
        for v in [t.warning, t.critical].into_iter().flatten() {
            if !v.is_finite() || v < 0.0 || (m.lower_is_worse() && v > 1.0) {
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
        assert_eq!(
            signals[0].checks,
            vec![
                Check {
                    method: Method::Ks,
                    thresholds: Method::Ks.default_thresholds()
                },
                Check {
                    method: Method::Psi,
                    thresholds: Method::Psi.default_thresholds()
                }
            ]
        );
        assert_eq!(signals[1].checks[1].thresholds.warning, Some(0.2));
        assert_eq!(plan.window.min_samples(), 30);
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
        assert!(e.contains("reference: give either"), "{e}");
        let e = err(&GOOD.replace("first_events = 500", ""));
        assert!(e.contains("reference: give `file`"), "{e}");
    }

    #[test]
    fn min_samples_cannot_exceed_window() {
        let e = err(&GOOD.replace("size = 200", "size = 200\nmin_samples = 201"));
        assert!(e.contains("window.min_samples"), "{e}");
    }
}
