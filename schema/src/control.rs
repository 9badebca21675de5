//! The control message: a decision about whether an AI system may keep serving (EU AI Act
//! Art. 20: bring into conformity, restrict, disable), published on the control topic
//! (compacted, key = `system_id`, so the last message per system is its state) for every
//! sidecar agent of that system to enforce.
//!
//! ```json
//! {"v":1,"command_id":"5b0e…","system_id":"credit-scoring","action":"disable",
//!  "reason":"critical drift on age since window 7","decided_by":"j.devries",
//!  "incident_id":"INC-2026-0007","issued_at":"2026-11-27T10:00:00Z"}
//! ```
//!
//! The JSON Schema is published as `schema/driftwatch-control-v1.schema.json`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{valid_system_id, WireError, MAX_ID_LEN, WIRE_VERSION};

/// What a system is allowed to do from now on.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    /// Serve normally (lifts an earlier restriction or disablement).
    Allow,
    /// Serve only within the restriction the message names (`restriction`).
    Restrict,
    /// Stop serving: the agents refuse the model's traffic.
    Disable,
}

impl ControlAction {
    /// The lower-case name used in payloads and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlAction::Allow => "allow",
            ControlAction::Restrict => "restrict",
            ControlAction::Disable => "disable",
        }
    }
}

/// One decision about one system.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Wire version.
    pub v: u32,
    /// Unique id of this decision; agents acknowledge by it.
    pub command_id: Uuid,
    /// The AI system.
    pub system_id: String,
    /// Allow, restrict or disable.
    pub action: ControlAction,
    /// What a restriction allows (free text for people, e.g. "human review of every
    /// decision"); required with `restrict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restriction: Option<String>,
    /// Why, in one line.
    pub reason: String,
    /// Who decided (a person, or `plan` for an automatic action the plan allows).
    pub decided_by: String,
    /// The incident the decision belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    /// The model versions it applies to (empty: every version of the system).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_versions: Vec<String>,
    /// When it was decided (UTC).
    pub issued_at: DateTime<Utc>,
}

/// A control payload that must not be enforced.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Not valid JSON, not the shape of a control message, or an unsupported version.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A field breaks a rule the types cannot express.
    #[error("control message: {0}")]
    Invalid(String),
}

impl Control {
    /// Serialise to the Kafka payload.
    pub fn to_wire(&self) -> Vec<u8> {
        // Strings, a UUID, a timestamp and an enum: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse and check a control-topic payload.
    pub fn from_wire(bytes: &[u8]) -> Result<Control, ControlError> {
        let c: Control = serde_json::from_slice(bytes).map_err(WireError::from)?;
        if c.v != WIRE_VERSION {
            return Err(WireError::Version(c.v).into());
        }
        c.validate()?;
        Ok(c)
    }

    /// The rules the types cannot express.
    pub fn validate(&self) -> Result<(), ControlError> {
        let bad = |s: String| Err(ControlError::Invalid(s));
        if !valid_system_id(&self.system_id) {
            return bad(format!(
                "system_id: expected 1 to 128 of A-Z a-z 0-9 . _ -, found {:?}",
                self.system_id.chars().take(32).collect::<String>()
            ));
        }
        if self.decided_by.is_empty() || self.decided_by.len() > MAX_ID_LEN {
            return bad("decided_by: expected 1 to 256 bytes".into());
        }
        if self.reason.len() > 4096 {
            return bad("reason: expected at most 4096 bytes".into());
        }
        match (self.action, &self.restriction) {
            (ControlAction::Restrict, None) => {
                bad("restriction: required when action is \"restrict\"".into())
            }
            (ControlAction::Allow | ControlAction::Disable, Some(_)) => {
                bad("restriction: only with action \"restrict\"".into())
            }
            _ => Ok(()),
        }
    }
}
