//! The plan as the Art. 72 post-market monitoring plan: what is monitored and excluded,
//! the action per severity, owners, the parties to inform and the review cadence
//! (`../shared/docs/REGULATORY.md`, "Elements of a monitoring plan"). `plan show` renders
//! them in `document.rs`.
//!
//! ```toml
//! [monitoring]
//! aspects = ["performance", "data_drift", "prediction_drift", "data_quality"]
//! data_sources = ["driftwatch-agent beside each deployment: predictions and outcomes"]
//! excluded = ["raw personal data: ids are pseudonymised with HMAC-SHA-256 at the agent"]
//! law_enforcement = "not deployed by law-enforcement authorities"
//!
//! [actions.critical]
//! action = "disable"          # continue | restrict | disable
//! decided_by = "human"        # human (default) | automatic
//! runbook = "https://wiki.example/runbooks/credit-scoring"
//!
//! [[owners]]
//! role = "plan owner"
//! name = "J. Jansen"
//! contact = "mailto:j.jansen@example.com"
//!
//! [[parties]]
//! kind = "market_surveillance_authority"
//! name = "Autoriteit Persoonsgegevens"
//! contact = "mailto:ai-incidents@example.nl"   # notices of decisions by e-mail
//! webhook = "https://authority.example/notices"  # and/or by webhook
//! acknowledge_within_h = 48                      # default 24
//!
//! [review]
//! cadence_days = 90
//! last_reviewed = "2026-10-01"
//! history = [{ version = "2026-11", date = "2026-11-01", change = "declared levels from validation report v3" }]
//! ```

use serde::{Deserialize, Serialize};

use super::{Plan, Severity};

/// What is monitored, from which sources, and what is left out (plan elements 3 and 4).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringSpec {
    /// Monitored aspects; default: derived from the plan's features and tables.
    #[serde(default)]
    pub aspects: Vec<Aspect>,
    /// Where the telemetry comes from.
    #[serde(default)]
    pub data_sources: Vec<String>,
    /// What is deliberately not collected.
    #[serde(default)]
    pub excluded: Vec<String>,
    /// Art. 72(2): how sensitive operational data of law-enforcement deployers is kept
    /// out (or why it does not apply).
    #[serde(default)]
    pub law_enforcement: Option<String>,
    /// Interaction with other AI systems, where relevant (Art. 72(2)).
    #[serde(default)]
    pub interaction: Option<String>,
}

/// A monitored aspect (plan element 3).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Aspect {
    /// Realized and estimated performance.
    Performance,
    /// Missing values, type errors, out-of-range values.
    DataQuality,
    /// Input distributions.
    DataDrift,
    /// Output distributions.
    PredictionDrift,
    /// Performance and drift per group of people.
    Bias,
    /// Availability and errors of the serving path.
    Availability,
    /// Interaction with other AI systems.
    Interaction,
}

impl Aspect {
    pub(super) fn title(self) -> &'static str {
        match self {
            Aspect::Performance => "performance",
            Aspect::DataQuality => "data quality",
            Aspect::DataDrift => "data drift",
            Aspect::PredictionDrift => "prediction drift",
            Aspect::Bias => "bias per group",
            Aspect::Availability => "availability and errors",
            Aspect::Interaction => "interaction with other AI systems",
        }
    }
}

/// What happens at a severity (plan element 7).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// Continue, restrict or disable.
    pub action: PlannedAction,
    /// A person decides (default), or the decision is taken automatically.
    #[serde(default)]
    pub decided_by: DecidedBy,
    /// Whether an alert of this severity opens an incident (default: critical only).
    #[serde(default)]
    pub open_incident: Option<bool>,
    /// What a person should do, as a URL.
    #[serde(default)]
    pub runbook: Option<String>,
}

/// The action a plan foresees.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PlannedAction {
    /// Keep serving; investigate.
    Continue,
    /// Restrict use (e.g. a human reviews every decision).
    Restrict,
    /// Stop serving; fall back.
    Disable,
}

impl PlannedAction {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PlannedAction::Continue => "continue",
            PlannedAction::Restrict => "restrict",
            PlannedAction::Disable => "disable",
        }
    }
}

/// Who takes the decision.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// A named person (the default, and the safe one).
    #[default]
    Human,
    /// driftwatch records the plan's action itself when the incident opens.
    Automatic,
}

/// The actions per severity.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Actions {
    /// At warning level.
    #[serde(default)]
    pub warning: Option<ActionSpec>,
    /// At critical level.
    #[serde(default)]
    pub critical: Option<ActionSpec>,
}

impl Actions {
    /// The action at a severity.
    pub fn at(&self, severity: Severity) -> Option<&ActionSpec> {
        match severity {
            Severity::Warning => self.warning.as_ref(),
            Severity::Critical => self.critical.as_ref(),
            Severity::Ok => None,
        }
    }

    /// Whether an alert of this severity opens an incident.
    pub fn opens_incident(&self, severity: Severity) -> bool {
        match severity {
            Severity::Ok => false,
            Severity::Warning => self
                .warning
                .as_ref()
                .and_then(|a| a.open_incident)
                .unwrap_or(false),
            Severity::Critical => self
                .critical
                .as_ref()
                .and_then(|a| a.open_incident)
                .unwrap_or(true),
        }
    }
}

/// A person responsible for part of the plan (plan element 10).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// What they own ("plan owner", "model owner", "on-call").
    pub role: String,
    /// Their name.
    pub name: String,
    /// How to reach them (`mailto:`, `https:`, a phone number).
    #[serde(default)]
    pub contact: Option<String>,
}

/// Who must be informed of a corrective action (Art. 20(1), (2); plan element 9).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum PartyKind {
    /// Deployers of the system (Art. 20(1)).
    Deployer,
    /// Distributors (Art. 20(1)).
    Distributor,
    /// Importers (Art. 20(1)).
    Importer,
    /// The authorised representative (Art. 20(1)).
    AuthorisedRepresentative,
    /// The market surveillance authority (Art. 20(2), 73).
    MarketSurveillanceAuthority,
    /// The notified body, where one issued a certificate (Art. 20(2)).
    NotifiedBody,
}

impl PartyKind {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PartyKind::Deployer => "deployer",
            PartyKind::Distributor => "distributor",
            PartyKind::Importer => "importer",
            PartyKind::AuthorisedRepresentative => "authorised_representative",
            PartyKind::MarketSurveillanceAuthority => "market_surveillance_authority",
            PartyKind::NotifiedBody => "notified_body",
        }
    }

    pub(super) fn title(self) -> &'static str {
        match self {
            PartyKind::Deployer => "Deployer",
            PartyKind::Distributor => "Distributor",
            PartyKind::Importer => "Importer",
            PartyKind::AuthorisedRepresentative => "Authorised representative",
            PartyKind::MarketSurveillanceAuthority => "Market surveillance authority",
            PartyKind::NotifiedBody => "Notified body",
        }
    }
}

/// A party to inform.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    /// Deployer, distributor, importer, authorised representative, market surveillance
    /// authority or notified body.
    pub kind: PartyKind,
    /// Organisation name.
    pub name: String,
    /// How to reach them (`mailto:` or `https:`).
    #[serde(default)]
    pub contact: Option<String>,
    /// The decisions they are informed of (default: every corrective decision).
    #[serde(default)]
    pub inform_on: Vec<String>,
    /// A webhook the incident service posts the notice of a decision to (a `mailto:`
    /// contact gets it by e-mail; an `https:` contact is a webhook too).
    #[serde(default)]
    pub webhook: Option<String>,
    /// Hours the party has to acknowledge a notice (default 24).
    #[serde(default)]
    pub acknowledge_within_h: Option<u32>,
}

impl Party {
    /// The e-mail address notices go to: a `mailto:` contact.
    pub fn email(&self) -> Option<&str> {
        self.contact
            .as_deref()
            .and_then(|c| c.strip_prefix("mailto:"))
            .map(|a| a.split('?').next().unwrap_or(a))
    }

    /// The webhook notices go to: `webhook`, else an `http(s):` contact.
    pub fn webhook_url(&self) -> Option<&str> {
        self.webhook.as_deref().or(self
            .contact
            .as_deref()
            .filter(|c| c.starts_with("https://") || c.starts_with("http://")))
    }
}

/// One change of the plan (plan element 10, version history).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlanChange {
    /// The plan version.
    pub version: String,
    /// When.
    pub date: String,
    /// What changed and why.
    pub change: String,
}

/// Review cadence and history (plan element 10).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewSpec {
    /// Days between reviews of the plan.
    #[serde(default)]
    pub cadence_days: Option<u32>,
    /// Date of the last review.
    #[serde(default)]
    pub last_reviewed: Option<String>,
    /// Version history.
    #[serde(default)]
    pub history: Vec<PlanChange>,
}

/// How alerts are grouped into incidents.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentSpec {
    /// `signal` (default): one open incident per system, kind and signal; `system`: one
    /// open incident per system.
    #[serde(default)]
    pub group_by: GroupBy,
}

/// Incident grouping.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// System, alert kind and signal.
    #[default]
    Signal,
    /// System only.
    System,
}

/// A gap a regulator would notice: the plan works, but is incomplete as an Art. 72 plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanWarning {
    /// The dotted key at fault.
    pub key: String,
    /// What is missing and why it matters.
    pub message: String,
}

impl Plan {
    /// Gaps in the plan as an Art. 72 plan, each naming its key.
    pub fn warnings(&self) -> Vec<PlanWarning> {
        let mut out = Vec::new();
        let mut warn = |key: &str, message: &str| {
            out.push(PlanWarning {
                key: key.into(),
                message: message.into(),
            })
        };
        if self.system.intended_purpose.is_none() {
            warn(
                "system.intended_purpose",
                "no intended purpose: conformity is judged against it (Art. 13(3)(b))",
            );
        }
        if self.owners.is_empty() {
            warn(
                "owners",
                "no owner: nobody is named responsible for the plan (Art. 72(1))",
            );
        }
        let declared = self
            .performance
            .as_ref()
            .is_some_and(|p| !p.declared.is_empty());
        if !declared {
            warn(
                "performance.declared",
                "no declared performance level: the accuracy promised in the instructions for use (Art. 13(3)(b)(ii), 15(3)) is not checked",
            );
        }
        if self.actions.critical.is_none() {
            warn(
                "actions.critical",
                "critical thresholds without an action: say whether to continue, restrict or disable (Art. 20(1))",
            );
        }
        if !self
            .parties
            .iter()
            .any(|p| p.kind == PartyKind::MarketSurveillanceAuthority && p.contact.is_some())
        {
            warn(
                "parties",
                "no market surveillance authority with a contact: serious incidents must be reported to it (Art. 20(2), 73)",
            );
        }
        for (i, p) in self.parties.iter().enumerate() {
            if p.contact.is_none() {
                out.push(PlanWarning {
                    key: format!("parties[{i}].contact"),
                    message: format!("{} \"{}\" has no contact", p.kind.as_str(), p.name),
                });
            }
        }
        let mut warn = |key: &str, message: &str| {
            out.push(PlanWarning {
                key: key.into(),
                message: message.into(),
            })
        };
        if self.review.cadence_days.is_none() {
            warn(
                "review.cadence_days",
                "no review cadence: the plan must be kept up to date over the system's lifetime",
            );
        }
        if self.monitoring.law_enforcement.is_none() {
            warn(
                "monitoring.law_enforcement",
                "say how sensitive operational data of law-enforcement deployers is excluded, or why it does not apply (Art. 72(2))",
            );
        }
        out
    }

    /// The monitored aspects: the plan's list, or derived from what it monitors.
    pub fn aspects(&self) -> Vec<Aspect> {
        if !self.monitoring.aspects.is_empty() {
            return self.monitoring.aspects.clone();
        }
        let mut a = Vec::new();
        if self.performance.is_some() {
            a.push(Aspect::Performance);
        }
        if !self.features.is_empty() {
            a.push(Aspect::DataQuality);
            a.push(Aspect::DataDrift);
        }
        if self.prediction.score.is_some() || self.prediction.label.is_some() {
            a.push(Aspect::PredictionDrift);
        }
        if self
            .performance
            .as_ref()
            .is_some_and(|p| !p.segments.is_empty())
        {
            a.push(Aspect::Bias);
        }
        a
    }

    /// What the incident service needs of this plan.
    pub fn policy(&self) -> driftwatch_incident::policy::Policy {
        use driftwatch_incident::policy as p;
        let action = |a: Option<&ActionSpec>| {
            a.map(|a| p::PlannedAction {
                action: a.action.as_str().to_owned(),
                automatic: a.decided_by == DecidedBy::Automatic,
                runbook: a.runbook.clone(),
            })
        };
        p::Policy {
            system_id: self.system.id.clone(),
            name: self.system.name.clone(),
            plan_hash: self.hash.clone(),
            plan_version: self.system.plan_version.clone(),
            model_versions: self.system.versions.clone(),
            group_by_system: self.incidents.group_by == GroupBy::System,
            warning_opens: self.actions.opens_incident(Severity::Warning),
            critical_opens: self.actions.opens_incident(Severity::Critical),
            warning: action(self.actions.warning.as_ref()),
            critical: action(self.actions.critical.as_ref()),
            parties: self
                .parties
                .iter()
                .map(|x| p::PartyRef {
                    kind: x.kind.as_str().to_owned(),
                    name: x.name.clone(),
                    contact: x.contact.clone(),
                    inform_on: x.inform_on.clone(),
                    email: x.email().map(str::to_owned),
                    webhook: x.webhook_url().map(str::to_owned),
                    acknowledge_within_h: x.acknowledge_within_h.unwrap_or(p::DEFAULT_ACK_HOURS),
                })
                .collect(),
            owners: self
                .owners
                .iter()
                .map(|o| format!("{}: {}", o.role, o.name))
                .collect(),
        }
    }
}
