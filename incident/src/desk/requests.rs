//! What people send the desk: the bodies of the API's requests.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::model::{Classification, Decision, Serious};

/// A request to open an incident by hand (a person, or a deployer's report).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    /// The system.
    pub system_id: Option<String>,
    /// One line.
    pub title: Option<String>,
    /// What happened.
    pub description: Option<String>,
    /// `warning` or `critical` (default critical).
    #[serde(default)]
    pub severity: Option<String>,
    /// `person`, `complaint` or `authority_request` (deployers: always `deployer_report`).
    #[serde(default)]
    pub trigger: Option<String>,
    /// When the provider became aware, if before now (RFC 3339).
    #[serde(default)]
    pub aware_at: Option<DateTime<Utc>>,
    /// A serious-incident category, if known at once.
    #[serde(default)]
    pub serious: Option<Serious>,
}

/// The body of a workflow step.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    /// Why (required for every step).
    pub reason: Option<String>,
    /// assess: findings.
    #[serde(default)]
    pub assessment: Option<String>,
    /// assess: root cause, if known.
    #[serde(default)]
    pub root_cause: Option<String>,
    /// assess: classification.
    #[serde(default)]
    pub classification: Option<Classification>,
    /// assess: serious-incident category.
    #[serde(default)]
    pub serious: Option<Serious>,
    /// assess: requirements breached.
    #[serde(default)]
    pub requirements_breached: Option<Vec<String>>,
    /// decide: the action.
    #[serde(default)]
    pub decision: Option<Decision>,
    /// decide: the model versions it applies to.
    #[serde(default)]
    pub model_versions: Option<Vec<String>>,
    /// decide `restrict_use`: what the restricted system may still do (default: the
    /// reason).
    #[serde(default)]
    pub restriction: Option<String>,
    /// inform: the parties informed.
    #[serde(default)]
    pub parties: Option<Vec<PartyInput>>,
    /// verify: whether the action worked.
    #[serde(default)]
    pub effective: Option<bool>,
    /// verify: what shows it.
    #[serde(default)]
    pub evidence: Option<String>,
}

/// A party informed, as given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyInput {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// How.
    pub channel: String,
    /// A reference.
    #[serde(default)]
    pub reference: Option<String>,
}

/// A task request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    /// What to do.
    pub title: Option<String>,
    /// Who.
    pub owner: Option<String>,
    /// By when.
    pub due: Option<DateTime<Utc>>,
}

/// A task update.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskUpdate {
    /// `open`, `done` or `cancelled`.
    pub state: String,
    /// Why.
    pub reason: Option<String>,
}

/// An Art. 73 report submitted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// `initial` or `complete`.
    pub kind: String,
    /// The authority's reference.
    #[serde(default)]
    pub reference: Option<String>,
    /// When it was submitted (default now).
    #[serde(default)]
    pub submitted_at: Option<DateTime<Utc>>,
}

/// A classification after assessment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    /// Why.
    pub reason: Option<String>,
    /// Classification.
    #[serde(default)]
    pub classification: Option<Classification>,
    /// Serious-incident category (`null` to clear is not allowed: a clock once started
    /// stays).
    #[serde(default)]
    pub serious: Option<Serious>,
}
