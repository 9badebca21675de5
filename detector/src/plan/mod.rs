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
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod art72;
mod document;
mod performance;
mod signals;
mod tables;
mod validate;

pub use crate::method::{default_checks, Method, ALL_METHODS};
pub use art72::{
    ActionSpec, Actions, Aspect, DecidedBy, GroupBy, IncidentSpec, MonitoringSpec, Owner, Party,
    PartyKind, PlanChange, PlanWarning, PlannedAction, ReviewSpec,
};
pub use document::{md_cell, md_text};
pub use performance::{Calibration, PerfMetric, PerformanceSpec, Task, ALL_PERF_METRICS};
pub use signals::{Check, Signal, Source};
pub use tables::*;

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
    /// Performance from outcomes: the task, the metrics, the declared levels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<PerformanceSpec>,
    /// Monitored aspects, data sources and exclusions (Art. 72(2)).
    #[serde(default)]
    pub monitoring: MonitoringSpec,
    /// The action per severity (Art. 20(1)).
    #[serde(default)]
    pub actions: Actions,
    /// Who is responsible.
    #[serde(default)]
    pub owners: Vec<Owner>,
    /// Who is informed of corrective action (Art. 20(1), (2)).
    #[serde(default)]
    pub parties: Vec<Party>,
    /// Review cadence and version history.
    #[serde(default)]
    pub review: ReviewSpec,
    /// How alerts are grouped into incidents.
    #[serde(default)]
    pub incidents: IncidentSpec,
    /// Content hash of the plan text (`sha256:` and 16 hex digits): the version every
    /// alert and incident record quotes.
    #[serde(skip)]
    pub hash: String,
    /// The directory of the plan file; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
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

impl Plan {
    /// The lowest severity that alerts for performance: `[performance] min_severity`,
    /// else `alerts.min_severity`.
    pub fn performance_min_severity(&self) -> Severity {
        self.performance
            .as_ref()
            .and_then(|p| p.min_severity)
            .unwrap_or(self.alerts.min_severity)
    }

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
        plan.hash = content_hash(text.as_bytes());
        plan.validate(name)?;
        Ok(plan)
    }
    /// The reference file resolved against the plan's directory.
    pub fn reference_path(&self) -> Option<PathBuf> {
        self.reference.file.as_ref().map(|f| self.base_dir.join(f))
    }
}

/// `sha256:` and the first 16 hex digits of the SHA-256 of `bytes`.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    let mut s = String::from("sha256:");
    for b in &d[..8] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests;
