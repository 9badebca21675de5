//! The corrective-action record (Art. 20) and its workflow, as the fields of
//! `REGULATORY.md` ("A corrective-action record holds").

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use driftwatch_schema::Severity;

/// Where an incident stands. Transitions go one way, each by a named person with a
/// reason; [`Step::Reopen`] takes a closed incident back to `open`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Opened by an alert, a person or a deployer's report.
    Open,
    /// Investigated: assessment, root cause, classification.
    Assessed,
    /// A corrective action is decided, with its rationale.
    ActionDecided,
    /// The parties the plan lists are informed.
    PartiesInformed,
    /// The action is checked to have worked.
    EffectivenessVerified,
    /// Closed by an approver.
    Closed,
}

impl State {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Assessed => "assessed",
            State::ActionDecided => "action_decided",
            State::PartiesInformed => "parties_informed",
            State::EffectivenessVerified => "effectiveness_verified",
            State::Closed => "closed",
        }
    }

    /// Parse the wire spelling.
    pub fn parse(s: &str) -> Option<State> {
        [
            State::Open,
            State::Assessed,
            State::ActionDecided,
            State::PartiesInformed,
            State::EffectivenessVerified,
            State::Closed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A workflow step.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// open -> assessed.
    Assess,
    /// assessed -> action_decided.
    Decide,
    /// action_decided -> parties_informed.
    Inform,
    /// parties_informed -> effectiveness_verified (or back to assessed when the action
    /// did not work).
    Verify,
    /// effectiveness_verified -> closed.
    Close,
    /// closed -> open.
    Reopen,
}

impl Step {
    /// The wire spelling (also the API path segment and the CLI verb).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Assess => "assess",
            Step::Decide => "decide",
            Step::Inform => "inform",
            Step::Verify => "verify",
            Step::Close => "close",
            Step::Reopen => "reopen",
        }
    }

    /// The state a step starts from.
    pub fn from_state(self) -> State {
        match self {
            Step::Assess => State::Open,
            Step::Decide => State::Assessed,
            Step::Inform => State::ActionDecided,
            Step::Verify => State::PartiesInformed,
            Step::Close => State::EffectivenessVerified,
            Step::Reopen => State::Closed,
        }
    }

    /// The state a step leads to (a failed effectiveness check goes back to assessed).
    pub fn to_state(self, effective: bool) -> State {
        match self {
            Step::Assess => State::Assessed,
            Step::Decide => State::ActionDecided,
            Step::Inform => State::PartiesInformed,
            Step::Verify if effective => State::EffectivenessVerified,
            Step::Verify => State::Assessed,
            Step::Close => State::Closed,
            Step::Reopen => State::Open,
        }
    }
}

/// A corrective action (Art. 20(1), 3(16), 3(17)), or none.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Bring the system into conformity (fix, retrain, recalibrate).
    BringIntoConformity,
    /// Restrict its use (e.g. every decision reviewed by a person).
    RestrictUse,
    /// Disable it: deployers fall back to their manual process.
    Disable,
    /// Withdraw it: it is no longer made available (Art. 3(17)).
    Withdraw,
    /// Recall it: taken out of service (Art. 3(16)).
    Recall,
    /// No corrective action: the system conforms (rationale required, as for any).
    ContinueUse,
}

impl Decision {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::BringIntoConformity => "bring_into_conformity",
            Decision::RestrictUse => "restrict_use",
            Decision::Disable => "disable",
            Decision::Withdraw => "withdraw",
            Decision::Recall => "recall",
            Decision::ContinueUse => "continue_use",
        }
    }
}

/// Classification of the event (REGULATORY.md).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// The system does not conform (Art. 20(1)).
    NonConformity,
    /// It presents a risk within the meaning of Art. 79(1) (Art. 20(2)).
    Art79Risk,
    /// A serious incident (Art. 3(49)); see [`Serious`].
    SeriousIncident,
    /// Formal non-compliance (marking, documentation).
    FormalNonCompliance,
    /// Investigated: no non-conformity.
    NoNonConformity,
}

/// The Art. 3(49) category of a serious incident; it sets the Art. 73 deadline.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Serious {
    /// Death of a person (Art. 73(4): 10 days).
    Death,
    /// Serious harm to a person's health (15 days).
    SeriousHarmToHealth,
    /// Serious and irreversible disruption of critical infrastructure (Art. 73(3): 2 days).
    CriticalInfrastructure,
    /// Infringement of obligations protecting fundamental rights (15 days).
    FundamentalRights,
    /// A widespread infringement (Art. 73(3): 2 days).
    WidespreadInfringement,
    /// Serious harm to property or the environment (15 days).
    PropertyOrEnvironment,
}

impl Serious {
    /// Days from awareness to the report (Art. 73(2)-(4)).
    pub fn report_days(self) -> i64 {
        match self {
            Serious::Death => 10,
            Serious::CriticalInfrastructure | Serious::WidespreadInfringement => 2,
            _ => 15,
        }
    }

    /// The article that sets the deadline.
    pub fn article(self) -> &'static str {
        match self {
            Serious::Death => "Art. 73(4)",
            Serious::CriticalInfrastructure | Serious::WidespreadInfringement => "Art. 73(3)",
            _ => "Art. 73(2)",
        }
    }
}

/// What opened the incident.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Trigger {
    /// `alert`, `person`, `deployer_report`, `complaint` or `authority_request`.
    pub kind: String,
    /// The alert that opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
    /// Who reported it (a person or a deployer's token name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_by: Option<String>,
    /// What they reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The estimated start of the degradation (owk-02: from which moment it stopped working
/// as intended).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Onset {
    /// First prediction of the first window of the breaching run.
    pub at: DateTime<Utc>,
    /// That window.
    pub window_index: i64,
    /// `history` (consecutive breaching windows in the stored reports) or `alert` (the
    /// triggering window only).
    pub source: String,
}

/// The decision, by a named person (or the plan, where it says automatic).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DecisionRecord {
    /// The action.
    pub decision: Decision,
    /// Why.
    pub rationale: String,
    /// Who decided.
    pub decided_by: String,
    /// When.
    pub decided_at: DateTime<Utc>,
    /// Taken by the plan's rule, not a person.
    #[serde(default)]
    pub automatic: bool,
    /// Model versions the decision applies to (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_versions: Vec<String>,
}

/// A party informed of the decision (Art. 20(1), (2)).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartyInformed {
    /// deployer, distributor, importer, authorised_representative,
    /// market_surveillance_authority, notified_body.
    pub kind: String,
    /// Organisation.
    pub name: String,
    /// E-mail, webhook, letter, phone.
    pub channel: String,
    /// When.
    pub informed_at: DateTime<Utc>,
    /// By whom.
    pub by: String,
    /// A reference (message id, letter number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// The check that the action worked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Effectiveness {
    /// Whether it worked.
    pub effective: bool,
    /// What shows it.
    pub evidence: String,
    /// Who checked.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// An Art. 73 report to the market surveillance authority.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuthorityReport {
    /// `initial` (may be incomplete, Art. 73(5)) or `complete`.
    pub kind: String,
    /// When it was submitted.
    pub submitted_at: DateTime<Utc>,
    /// Who submitted it.
    pub by: String,
    /// The authority's reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// A corrective measure tracked as a task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Task {
    /// Number within the incident, from 1.
    pub n: u32,
    /// What to do.
    pub title: String,
    /// Who does it.
    pub owner: String,
    /// By when.
    pub due: DateTime<Utc>,
    /// `open`, `done` or `cancelled`.
    pub state: String,
    /// Created by.
    pub created_by: String,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Alerts attached to the incident.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct AlertSummary {
    /// How many.
    pub count: u64,
    /// The first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_at: Option<DateTime<Utc>>,
    /// The last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<DateTime<Utc>>,
    /// The last window index attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_window: Option<i64>,
}

/// The corrective-action record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Incident {
    /// `INC-` and 10 hex digits.
    pub id: String,
    /// The AI system.
    pub system_id: String,
    /// One line.
    pub title: String,
    /// Where it stands.
    pub state: State,
    /// The highest severity attached.
    pub severity: Severity,
    /// The condition alerts attach by (`system/kind/signal`, or `system`).
    pub condition: String,
    /// What opened it.
    pub trigger: Trigger,
    /// Content hash of the plan in force when it opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_hash: Option<String>,
    /// The plan's version label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_version: Option<String>,
    /// The reference version the triggering alert compared against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_version: Option<String>,
    /// Model versions in service (from the plan).
    #[serde(default)]
    pub model_versions: Vec<String>,
    /// When the condition was detected (the alert's window end).
    pub detected_at: DateTime<Utc>,
    /// When the provider became aware: written once, starts the Art. 73 clocks.
    pub aware_at: DateTime<Utc>,
    /// Who opened it (`driftwatch` for alerts).
    pub opened_by: String,
    /// Estimated degradation onset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset: Option<Onset>,
    /// Classification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    /// Serious-incident category (Art. 3(49)), when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serious: Option<Serious>,
    /// Requirements breached (e.g. "Art. 15(1) accuracy").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements_breached: Vec<String>,
    /// The investigation's findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assessment: Option<String>,
    /// The root cause, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_cause: Option<String>,
    /// The decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionRecord>,
    /// The plan's action for the severity, for the decider's information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_action: Option<String>,
    /// Parties informed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parties_informed: Vec<PartyInformed>,
    /// The effectiveness check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effectiveness: Option<Effectiveness>,
    /// Closure: who, when, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Closure>,
    /// Art. 73 reports submitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authority_reports: Vec<AuthorityReport>,
    /// Corrective measures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<Task>,
    /// Alerts attached.
    #[serde(default)]
    pub alerts: AlertSummary,
    /// SHA-256 of the evidence snapshot frozen at opening.
    pub evidence_hash: String,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Changes so far (optimistic concurrency between replicas).
    pub revision: i64,
}

/// Closure by an approver.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Closure {
    /// Who.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Why.
    pub reason: String,
}

/// The Art. 73 clock of a serious incident.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Clock {
    /// The article.
    pub article: String,
    /// Awareness plus the days the article allows.
    pub deadline: DateTime<Utc>,
    /// Whether a report (initial or complete) was submitted.
    pub initial_report_at: Option<DateTime<Utc>>,
    /// Whether the complete report was submitted.
    pub complete_report_at: Option<DateTime<Utc>>,
}

impl Incident {
    /// The Art. 73 reporting clock, for serious incidents.
    pub fn clock(&self) -> Option<Clock> {
        let s = self.serious?;
        let first = |kind: Option<&str>| {
            self.authority_reports
                .iter()
                .filter(|r| kind.is_none_or(|k| r.kind == k))
                .map(|r| r.submitted_at)
                .min()
        };
        Some(Clock {
            article: s.article().into(),
            deadline: self.aware_at + Duration::days(s.report_days()),
            initial_report_at: first(None),
            complete_report_at: first(Some("complete")),
        })
    }
}

/// An audit entry, as stored: every change to the record, in order, hash-chained.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (a token's name, `driftwatch` for the service).
    pub actor: String,
    /// What (`alert_received`, `incident_opened`, `transition`, `note`, ...).
    pub action: String,
    /// The incident it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    /// The details, as JSON.
    pub payload: serde_json::Value,
    /// The previous entry's hash (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 of `prev_hash`, a newline and the entry's canonical JSON.
    pub hash: String,
}

/// Severity from its wire spelling.
pub fn parse_severity(s: &str) -> Option<Severity> {
    match s {
        "ok" => Some(Severity::Ok),
        "warning" => Some(Severity::Warning),
        "critical" => Some(Severity::Critical),
        _ => None,
    }
}
