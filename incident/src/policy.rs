//! What the incident service needs of a monitoring plan. The detector's `Plan` turns
//! into a [`Policy`] (the binary does it), so this crate does not depend on the detector.

use serde::{Deserialize, Serialize};

use driftwatch_schema::Severity;

/// The plan's action at one severity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlannedAction {
    /// `continue`, `restrict` or `disable`.
    pub action: String,
    /// Taken by driftwatch when the incident opens, not by a person.
    pub automatic: bool,
    /// Runbook URL.
    pub runbook: Option<String>,
}

/// A party to inform.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartyRef {
    /// deployer, distributor, importer, authorised_representative,
    /// market_surveillance_authority, notified_body.
    pub kind: String,
    /// Organisation.
    pub name: String,
    /// How to reach them.
    pub contact: Option<String>,
    /// Decisions they are informed of (empty: all corrective ones).
    pub inform_on: Vec<String>,
    /// E-mail address the notice of a decision goes to (from a `mailto:` contact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Webhook the notice of a decision is posted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Hours the party has to acknowledge a notice.
    #[serde(default = "default_ack_hours")]
    pub acknowledge_within_h: u32,
}

/// Hours to acknowledge a notice when the plan does not say.
pub const DEFAULT_ACK_HOURS: u32 = 24;

fn default_ack_hours() -> u32 {
    DEFAULT_ACK_HOURS
}

/// One system's plan, as the incident service uses it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Policy {
    /// The system.
    pub system_id: String,
    /// The system's name.
    pub name: Option<String>,
    /// Plan content hash.
    pub plan_hash: String,
    /// Plan version label.
    pub plan_version: Option<String>,
    /// Model versions in service.
    pub model_versions: Vec<String>,
    /// One incident per system instead of per signal.
    pub group_by_system: bool,
    /// Whether warning alerts open incidents.
    pub warning_opens: bool,
    /// Whether critical alerts open incidents.
    pub critical_opens: bool,
    /// The action at warning level.
    pub warning: Option<PlannedAction>,
    /// The action at critical level.
    pub critical: Option<PlannedAction>,
    /// Parties to inform.
    pub parties: Vec<PartyRef>,
    /// Owners (`role: name`).
    pub owners: Vec<String>,
}

impl Policy {
    /// The policy for a system without a plan loaded: critical alerts open incidents,
    /// a person decides.
    pub fn default_for(system_id: &str) -> Policy {
        Policy {
            system_id: system_id.to_owned(),
            name: None,
            plan_hash: String::new(),
            plan_version: None,
            model_versions: Vec::new(),
            group_by_system: false,
            warning_opens: false,
            critical_opens: true,
            warning: None,
            critical: None,
            parties: Vec::new(),
            owners: Vec::new(),
        }
    }

    /// Whether an alert of this severity opens an incident.
    pub fn opens(&self, s: Severity) -> bool {
        match s {
            Severity::Ok => false,
            Severity::Warning => self.warning_opens,
            Severity::Critical => self.critical_opens,
        }
    }

    /// The plan's action at a severity.
    pub fn action(&self, s: Severity) -> Option<&PlannedAction> {
        match s {
            Severity::Ok => None,
            Severity::Warning => self.warning.as_ref(),
            Severity::Critical => self.critical.as_ref(),
        }
    }

    /// The condition an alert attaches by.
    pub fn condition(&self, alert: &driftwatch_schema::Alert) -> String {
        if self.group_by_system {
            alert.system_id.clone()
        } else {
            format!(
                "{}/{}/{}",
                alert.system_id,
                alert.kind.as_str(),
                alert.signal
            )
        }
    }

    /// The parties to inform of a decision.
    pub fn parties_for(&self, decision: &str) -> Vec<&PartyRef> {
        self.parties
            .iter()
            .filter(|p| p.inform_on.is_empty() || p.inform_on.iter().any(|d| d == decision))
            .collect()
    }
}
