//! Personal data stays home: what may leave the pod, decided per AI system before an
//! event is produced to Kafka.
//!
//! With a `[privacy]` section in the agent config, every event passes [`Privacy::apply`]:
//!
//! - Only feature fields on the system's `allow` list leave the pod; others are dropped
//!   and counted. An allowed field of the wrong type refuses the batch with a 400 that
//!   names it.
//! - `prediction_id` (on predictions and outcomes alike, so joins still work) and the
//!   fields listed under `pseudonymise` are replaced by keyed pseudonyms:
//!   `hex(HMAC-SHA-256(key, system_id \0 field \0 value))`. Plain hashes of guessable
//!   ids (citizen numbers, e-mail addresses) can be reversed by trying every candidate;
//!   a keyed HMAC cannot without the key. The key comes from `DRIFTWATCH_HMAC_KEY` or
//!   `key_file`, is at least 16 bytes, and is never logged or sent.
//! - Segment tags leave the pod only if listed under `segments`; the others are dropped
//!   and counted.
//! - Law-enforcement deployer mode (EU AI Act Art. 72(2)): fields listed under
//!   `suppress` are removed entirely and the event carries their names in `suppressed`.
//!   Only the agent sets that mark: a posted event that carries one is refused.
//!
//! ```toml
//! [privacy]
//! key_file = "/var/run/secrets/driftwatch/hmac.key"
//! unlisted_systems = "reject"            # or "pass": systems without a policy
//!
//! [privacy.systems.credit-scoring]
//! allow = { age = "number", income = "number", region = "string", employed = "bool" }
//! pseudonymise = ["customer_id"]
//! segments = ["channel"]
//! law_enforcement = false
//! suppress = []
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use driftwatch_schema::{Event, FeatureValue, FieldError};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// The `[privacy]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// File holding the pseudonymisation key (`DRIFTWATCH_HMAC_KEY` takes precedence).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Events of systems without a policy: `reject` (400, the default) or `pass`.
    #[serde(default)]
    pub unlisted_systems: Unlisted,
    /// Policies by system id.
    #[serde(default)]
    pub systems: BTreeMap<String, SystemPolicy>,
}

/// What happens to systems without a policy.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unlisted {
    /// Refuse their events with 400.
    #[default]
    Reject,
    /// Let them through unchanged.
    Pass,
}

/// The type an allowed feature must have.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// A number.
    Number,
    /// A string.
    String,
    /// A boolean.
    Bool,
    /// Any of them.
    Any,
}

/// One system's policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemPolicy {
    /// Feature fields that may leave the pod, with their types.
    #[serde(default)]
    pub allow: BTreeMap<String, FieldType>,
    /// Feature fields that leave the pod only as pseudonyms.
    #[serde(default)]
    pub pseudonymise: Vec<String>,
    /// Law-enforcement deployer mode: remove `suppress` fields and mark the event.
    #[serde(default)]
    pub law_enforcement: bool,
    /// Fields removed entirely in law-enforcement mode.
    #[serde(default)]
    pub suppress: Vec<String>,
    /// Segment tags that may leave the pod (`segment.<name>`); the rest are dropped and
    /// counted, as unlisted features are. A segment tag is data about a person too (an
    /// e-mail domain, a postcode).
    #[serde(default)]
    pub segments: Vec<String>,
}

/// Why a privacy configuration cannot be used. The key itself never appears here.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// No key was given.
    #[error(
        "privacy: a pseudonymisation key is required: set DRIFTWATCH_HMAC_KEY or privacy.key_file"
    )]
    NoKey,
    /// The key file cannot be read.
    #[error("privacy.key_file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The key is too short to be a secret.
    #[error(
        "privacy: the pseudonymisation key ({origin}) has {len} bytes; at least 16 are required"
    )]
    ShortKey {
        /// Where it came from (variable or file name).
        origin: String,
        /// Its length.
        len: usize,
    },
    /// A policy contradicts itself.
    #[error("privacy.systems.{system}: {message}")]
    Policy {
        /// The system.
        system: String,
        /// What is wrong.
        message: String,
    },
}

/// What [`Privacy::apply`] removed, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Unlisted feature fields dropped.
    pub dropped: u64,
    /// Fields removed under law-enforcement mode.
    pub suppressed: u64,
    /// Values replaced by pseudonyms.
    pub pseudonymised: u64,
}

/// A ready policy set with its key.
pub struct Privacy {
    key: Vec<u8>,
    unlisted: Unlisted,
    systems: BTreeMap<String, Compiled>,
}

struct Compiled {
    allow: BTreeMap<String, FieldType>,
    pseudonymise: BTreeSet<String>,
    suppress: BTreeSet<String>,
    segments: BTreeSet<String>,
}

impl std::fmt::Debug for Privacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Privacy")
            .field("systems", &self.systems.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Privacy {
    /// Load the key (environment first, then file) and check the policies.
    pub fn load(cfg: &PrivacyConfig, env_key: Option<String>) -> Result<Self, PrivacyError> {
        let (key, origin) = match (env_key, &cfg.key_file) {
            (Some(k), _) => (k.into_bytes(), "DRIFTWATCH_HMAC_KEY".to_owned()),
            (None, Some(path)) => (
                std::fs::read(path).map_err(|source| PrivacyError::KeyFile {
                    path: path.display().to_string(),
                    source,
                })?,
                path.display().to_string(),
            ),
            (None, None) => return Err(PrivacyError::NoKey),
        };
        // A trailing newline from `echo key > file` is not part of the secret.
        let key: Vec<u8> = match key.strip_suffix(b"\n") {
            Some(k) => k.to_vec(),
            None => key,
        };
        if key.len() < 16 {
            return Err(PrivacyError::ShortKey {
                origin,
                len: key.len(),
            });
        }
        let mut systems = BTreeMap::new();
        for (system, p) in &cfg.systems {
            let policy_error = |message: String| PrivacyError::Policy {
                system: system.clone(),
                message,
            };
            for f in &p.pseudonymise {
                if p.allow.contains_key(f) {
                    return Err(policy_error(format!(
                        "\"{f}\" is both allowed in clear and pseudonymised; list it in one place"
                    )));
                }
            }
            if !p.law_enforcement && !p.suppress.is_empty() {
                return Err(policy_error(
                    "suppress applies in law_enforcement mode only; set law_enforcement = true"
                        .into(),
                ));
            }
            systems.insert(
                system.clone(),
                Compiled {
                    allow: p.allow.clone(),
                    pseudonymise: p.pseudonymise.iter().cloned().collect(),
                    suppress: p.suppress.iter().cloned().collect(),
                    segments: p.segments.iter().cloned().collect(),
                },
            );
        }
        Ok(Privacy {
            key,
            unlisted: cfg.unlisted_systems,
            systems,
        })
    }

    /// The keyed pseudonym of one value.
    pub fn pseudonym(&self, system: &str, field: &str, value: &str) -> String {
        // HMAC accepts keys of any length: this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(system.as_bytes());
        mac.update(&[0]);
        mac.update(field.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Apply the system's policy to one event, in place.
    pub fn apply(&self, event: &mut Event) -> Result<Applied, FieldError> {
        let system = event.system_id().to_owned();
        let Some(policy) = self.systems.get(&system) else {
            return match self.unlisted {
                Unlisted::Pass => Ok(Applied::default()),
                Unlisted::Reject => Err(FieldError {
                    field: "system_id".into(),
                    expected: "a system with a privacy policy in the agent's configuration".into(),
                    found: format!("\"{system}\", which has none"),
                }),
            };
        };
        let mut applied = Applied::default();
        match event {
            Event::Outcome(o) => {
                o.prediction_id = self.pseudonym(&system, "prediction_id", &o.prediction_id);
                applied.pseudonymised += 1;
            }
            Event::Prediction(p) => {
                p.prediction_id = self.pseudonym(&system, "prediction_id", &p.prediction_id);
                applied.pseudonymised += 1;
                let before = p.segment.len();
                p.segment.retain(|k, _| policy.segments.contains(k));
                applied.dropped += (before - p.segment.len()) as u64;
                let features = std::mem::take(&mut p.features);
                for (name, value) in features {
                    if policy.suppress.contains(&name) {
                        p.suppressed.push(name);
                        applied.suppressed += 1;
                    } else if policy.pseudonymise.contains(&name) {
                        let clear = match &value {
                            FeatureValue::Null => {
                                p.features.insert(name, FeatureValue::Null);
                                continue;
                            }
                            FeatureValue::Text(s) => s.clone(),
                            FeatureValue::Number(x) => x.to_string(),
                            FeatureValue::Bool(b) => b.to_string(),
                        };
                        let pseudonym = self.pseudonym(&system, &name, &clear);
                        p.features.insert(name, FeatureValue::Text(pseudonym));
                        applied.pseudonymised += 1;
                    } else if let Some(&t) = policy.allow.get(&name) {
                        let ok = matches!(
                            (t, &value),
                            (_, FeatureValue::Null)
                                | (FieldType::Any, _)
                                | (FieldType::Number, FeatureValue::Number(_))
                                | (FieldType::String, FeatureValue::Text(_))
                                | (FieldType::Bool, FeatureValue::Bool(_))
                        );
                        if !ok {
                            return Err(FieldError {
                                field: format!("features.{name}"),
                                expected: format!(
                                    "a {} (privacy policy of {system})",
                                    match t {
                                        FieldType::Number => "number",
                                        FieldType::String => "string",
                                        FieldType::Bool => "boolean",
                                        FieldType::Any => "value",
                                    }
                                ),
                                found: describe(&value),
                            });
                        }
                        p.features.insert(name, value);
                    } else {
                        applied.dropped += 1;
                    }
                }
            }
        }
        Ok(applied)
    }
}

fn describe(v: &FeatureValue) -> String {
    match v {
        FeatureValue::Null => "null".into(),
        FeatureValue::Bool(_) => "a boolean".into(),
        FeatureValue::Number(_) => "a number".into(),
        FeatureValue::Text(_) => "a string".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use driftwatch_schema::{parse_outcome, parse_prediction};
    use serde_json::json;

    fn privacy(extra: &str) -> Privacy {
        let cfg: PrivacyConfig = toml::from_str(&format!(
            "[systems.credit]\nallow = {{ age = \"number\", region = \"string\" }}\npseudonymise = [\"customer_id\"]\n{extra}"
        ))
        .expect("config");
        Privacy::load(&cfg, Some("0123456789abcdef-secret".into())).expect("load")
    }

    fn prediction() -> Event {
        Event::Prediction(
            parse_prediction(
                json!({"system_id": "credit", "model_version": "1", "prediction_id": "req-1",
                       "features": {"age": 41, "region": "north", "customer_id": "NL-123",
                                    "email": "a@b.nl", "postcode": "1011AB"},
                       "prediction": {"score": 0.4}}),
                Utc::now(),
            )
            .expect("valid"),
        )
    }

    #[test]
    fn only_allowed_fields_leave_and_ids_are_pseudonymised() {
        let p = privacy("");
        let mut e = prediction();
        let applied = p.apply(&mut e).expect("applies");
        let Event::Prediction(pred) = &e else {
            panic!("prediction")
        };
        let names: Vec<&str> = pred.features.keys().map(String::as_str).collect();
        assert_eq!(names, ["age", "customer_id", "region"]);
        assert_eq!(
            applied,
            Applied {
                dropped: 2,
                suppressed: 0,
                pseudonymised: 2
            }
        );
        assert_eq!(
            pred.prediction_id,
            p.pseudonym("credit", "prediction_id", "req-1")
        );
        assert_eq!(pred.prediction_id.len(), 64);
        assert_ne!(pred.prediction_id, "req-1");
        assert_eq!(
            pred.features["customer_id"],
            FeatureValue::Text(p.pseudonym("credit", "customer_id", "NL-123"))
        );
        // The outcome carries the same pseudonym: joins still work downstream.
        let mut o = Event::Outcome(
            parse_outcome(
                json!({"system_id": "credit", "prediction_id": "req-1", "outcome": 1}),
                Utc::now(),
            )
            .expect("valid"),
        );
        p.apply(&mut o).expect("applies");
        let Event::Outcome(out) = &o else {
            panic!("outcome")
        };
        assert_eq!(out.prediction_id, pred.prediction_id);
    }

    #[test]
    fn pseudonyms_depend_on_the_key_and_the_field() {
        let a = privacy("");
        let cfg: PrivacyConfig = toml::from_str("").expect("config");
        let b = Privacy::load(&cfg, Some("another-key-of-16-bytes".into())).expect("load");
        assert_ne!(
            a.pseudonym("credit", "f", "x"),
            b.pseudonym("credit", "f", "x")
        );
        assert_ne!(
            a.pseudonym("credit", "f", "x"),
            a.pseudonym("credit", "g", "x")
        );
        assert_eq!(
            a.pseudonym("credit", "f", "x"),
            a.pseudonym("credit", "f", "x")
        );
    }

    #[test]
    fn law_enforcement_mode_suppresses_and_marks() {
        let p = privacy("law_enforcement = true\nsuppress = [\"postcode\"]\n");
        let mut e = prediction();
        let applied = p.apply(&mut e).expect("applies");
        let Event::Prediction(pred) = &e else {
            panic!("prediction")
        };
        assert!(!pred.features.contains_key("postcode"));
        assert_eq!(pred.suppressed, ["postcode"]);
        assert_eq!(applied.suppressed, 1);
        let wire = String::from_utf8(e.to_wire()).expect("utf8");
        assert!(wire.contains("\"suppressed\":[\"postcode\"]"), "{wire}");
        assert!(
            !wire.contains("1011AB") && !wire.contains("a@b.nl") && !wire.contains("NL-123"),
            "{wire}"
        );
    }

    #[test]
    fn wrong_types_and_unknown_systems_are_refused_by_name() {
        let p = privacy("");
        let mut e = prediction();
        if let Event::Prediction(pred) = &mut e {
            pred.features
                .insert("age".into(), FeatureValue::Text("forty".into()));
        }
        let err = p.apply(&mut e).expect_err("type mismatch");
        assert_eq!(
            err.to_string(),
            "features.age: expected a number (privacy policy of credit), found a string"
        );
        let mut other = prediction();
        if let Event::Prediction(pred) = &mut other {
            pred.system_id = "fraud".into();
        }
        assert_eq!(
            p.apply(&mut other).expect_err("no policy").field,
            "system_id"
        );
    }

    #[test]
    fn keys_must_be_real_secrets_and_are_never_printed() {
        let cfg: PrivacyConfig = toml::from_str("").expect("config");
        let e = Privacy::load(&cfg, Some("short".into())).expect_err("short key");
        assert_eq!(
            e.to_string(),
            "privacy: the pseudonymisation key (DRIFTWATCH_HMAC_KEY) has 5 bytes; at least 16 are required"
        );
        assert!(matches!(
            Privacy::load(&cfg, None),
            Err(PrivacyError::NoKey)
        ));
        let p = privacy("");
        assert!(!format!("{p:?}").contains("secret"));
    }
}
