//! The driftwatch wire contract, version 1.
//!
//! Data passes through this crate three times:
//!
//! 1. **Input validation** ([`parse_prediction`], [`parse_outcome`], [`parse_event`]): the
//!    agent turns whatever JSON a model server posted into a typed [`Prediction`] or
//!    [`Outcome`], or a [`FieldError`] that names the offending field and what was expected.
//!    `driftwatch replay` uses the same functions on NDJSON files.
//! 2. **The Kafka payload** ([`Event`], [`Event::to_wire`], [`Event::from_wire`]): one JSON
//!    object per Kafka message, tagged with `"kind"` (`prediction` | `outcome`) and the wire
//!    version `"v": 1`. The message key is the `system_id`, so all events of one AI system
//!    land on one partition and one detector instance owns the system's state.
//!
//! A prediction on the wire:
//!
//! ```json
//! {"kind":"prediction","v":1,"event_id":"0b6f…","system_id":"credit-scoring",
//!  "model_version":"3.1.0","prediction_id":"req-42","timestamp":"2026-11-23T10:00:00Z",
//!  "features":{"age":41,"region":"north","employed":true,"income":null},
//!  "prediction":{"score":0.83,"label":"approve"},"segment":{"channel":"web"}}
//! ```
//!
//! An outcome, possibly days later, joins on `(system_id, prediction_id)`:
//!
//! ```json
//! {"kind":"outcome","v":1,"event_id":"7d1c…","system_id":"credit-scoring",
//!  "prediction_id":"req-42","timestamp":"2026-11-30T08:00:00Z","outcome":{"label":"default"}}
//! ```
//!
//! The JSON Schema of both is published as `schema/driftwatch-event-v1.schema.json`.
//!
//! 3. **What flows back out**: the detector's [`Alert`] on the alerts topic
//!    (`driftwatch-alert-v1.schema.json`), and the [`Control`] message by which a decision
//!    to restrict or disable a system reaches its agents (`driftwatch-control-v1.schema.json`).
//!
//! Input is more lenient than the wire: `event_id` is assigned (UUID v4) and `timestamp`
//! stamped with the arrival time when absent; a label may be given as a string, integer or
//! boolean and is carried as a string; an outcome may be given as a bare scalar
//! (string/boolean: label, number: value).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Version of the wire format carried in every payload as `"v"`.
pub const WIRE_VERSION: u32 = 1;
/// Default topic for prediction and outcome events.
pub const DEFAULT_EVENTS_TOPIC: &str = "driftwatch.events";
/// Default topic for alerts emitted by the detector.
pub const DEFAULT_ALERTS_TOPIC: &str = "driftwatch.alerts";
/// Longest accepted identifier (system id, model version, prediction id, feature name,
/// segment key and tag).
pub const MAX_ID_LEN: usize = 256;
/// Most features one prediction may carry.
pub const MAX_FEATURES: usize = 1_000;
/// Longest accepted string feature value, in bytes (a category, not a document).
pub const MAX_TEXT_LEN: usize = 4_096;
/// Most segment tags one prediction may carry.
pub const MAX_SEGMENT_TAGS: usize = 32;
/// Longest field name quoted in an error: a longer one is cut, so an error never echoes
/// an unbounded key back.
pub const MAX_QUOTED_NAME: usize = 64;

/// A field path for errors, `prefix` and a client's key cut to [`MAX_QUOTED_NAME`]
/// characters (with `…` and the key's full length when cut).
pub fn quoted_field(prefix: &str, key: &str) -> String {
    if key.chars().count() <= MAX_QUOTED_NAME {
        format!("{prefix}{key}")
    } else {
        let shown: String = key.chars().take(MAX_QUOTED_NAME).collect();
        format!("{prefix}{shown}… ({} bytes)", key.len())
    }
}
/// Default topic for control messages (kill switch), compacted, key = `system_id`.
pub const DEFAULT_CONTROL_TOPIC: &str = "driftwatch.control";
/// The JSON Schema of the wire format, as published in the repository.
pub const JSON_SCHEMA: &str = include_str!("../driftwatch-event-v1.schema.json");
/// The JSON Schema of the alert payload.
pub const ALERT_JSON_SCHEMA: &str = include_str!("../driftwatch-alert-v1.schema.json");
/// The JSON Schema of the control message.
pub const CONTROL_JSON_SCHEMA: &str = include_str!("../driftwatch-control-v1.schema.json");

mod alert;
mod control;

pub use alert::{Alert, AlertKind, AlertWireError, EpisodeStatus, Lifecycle, Severity, WindowInfo};
pub use control::{Control, ControlAction, ControlError};

/// One feature value as posted by the model server.
///
/// Decoded by a hand-written visitor: serde's `untagged` buffers each value and tries
/// every variant in turn, building and dropping an error per miss, which was the
/// largest cost of decoding an event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FeatureValue {
    /// Explicitly missing (`null`).
    Null,
    /// A boolean, treated as a categorical value downstream.
    Bool(bool),
    /// A finite number.
    Number(f64),
    /// A string, treated as a categorical value.
    Text(String),
}

impl<'de> Deserialize<'de> for FeatureValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = FeatureValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number, a string, a boolean or null")
            }
            fn visit_unit<E>(self) -> Result<FeatureValue, E> {
                Ok(FeatureValue::Null)
            }
            fn visit_none<E>(self) -> Result<FeatureValue, E> {
                Ok(FeatureValue::Null)
            }
            fn visit_some<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<FeatureValue, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_bool<E>(self, b: bool) -> Result<FeatureValue, E> {
                Ok(FeatureValue::Bool(b))
            }
            fn visit_f64<E>(self, x: f64) -> Result<FeatureValue, E> {
                Ok(FeatureValue::Number(x))
            }
            fn visit_i64<E>(self, x: i64) -> Result<FeatureValue, E> {
                Ok(FeatureValue::Number(x as f64))
            }
            fn visit_u64<E>(self, x: u64) -> Result<FeatureValue, E> {
                Ok(FeatureValue::Number(x as f64))
            }
            fn visit_str<E>(self, s: &str) -> Result<FeatureValue, E> {
                Ok(FeatureValue::Text(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<FeatureValue, E> {
                Ok(FeatureValue::Text(s))
            }
        }
        d.deserialize_any(V)
    }
}

/// What the model predicted. At least one of the three is present.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionValue {
    /// A score or probability (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// A predicted class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// A predicted quantity (regression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// The ground truth for an earlier prediction: a label or a value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeValue {
    /// The true class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The true quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

mod wire;

fn wire_version() -> u32 {
    WIRE_VERSION
}

/// A prediction made by the monitored AI system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Wire version.
    #[serde(default = "wire_version")]
    pub v: u32,
    /// Unique id of this event (assigned by the agent when absent).
    pub event_id: Uuid,
    /// The AI system, as named in its monitoring plan.
    pub system_id: String,
    /// The model version that made the prediction.
    pub model_version: String,
    /// The model server's id for this prediction; outcomes join on it.
    pub prediction_id: String,
    /// When the prediction was made (UTC).
    pub timestamp: DateTime<Utc>,
    /// Input features by name.
    pub features: BTreeMap<String, FeatureValue>,
    /// The model's output.
    pub prediction: PredictionValue,
    /// Segment tags (deployment, region, channel, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub segment: BTreeMap<String, String>,
    /// Names of feature fields the agent removed under law-enforcement deployer mode
    /// (EU AI Act Art. 72(2)), so reports can state what was excluded. Set by the agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<String>,
}

/// The outcome (ground truth) of an earlier prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Wire version.
    #[serde(default = "wire_version")]
    pub v: u32,
    /// Unique id of this event (assigned by the agent when absent).
    pub event_id: Uuid,
    /// The AI system, as named in its monitoring plan.
    pub system_id: String,
    /// The prediction this outcome belongs to.
    pub prediction_id: String,
    /// When the outcome became known (UTC).
    pub timestamp: DateTime<Utc>,
    /// The true label or value.
    pub outcome: OutcomeValue,
}

/// One message on the events topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A prediction.
    Prediction(Prediction),
    /// An outcome.
    Outcome(Outcome),
}

/// The two kinds of event, for routing and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// See [`Prediction`].
    Prediction,
    /// See [`Outcome`].
    Outcome,
}

impl EventKind {
    /// The lower-case name used in payloads and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Prediction => "prediction",
            EventKind::Outcome => "outcome",
        }
    }
}

/// A payload on the events topic that is not a v1 event.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not valid JSON, or not the shape of an event.
    #[error("malformed event payload: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A version this build does not understand.
    #[error("unsupported wire version {0} (this build reads version {WIRE_VERSION})")]
    Version(u32),
}

impl Event {
    /// The system this event belongs to (the Kafka key).
    pub fn system_id(&self) -> &str {
        match self {
            Event::Prediction(p) => &p.system_id,
            Event::Outcome(o) => &o.system_id,
        }
    }

    /// The event's id.
    pub fn event_id(&self) -> Uuid {
        match self {
            Event::Prediction(p) => p.event_id,
            Event::Outcome(o) => o.event_id,
        }
    }

    /// The event's timestamp.
    pub fn timestamp(&self) -> DateTime<Utc> {
        match self {
            Event::Prediction(p) => p.timestamp,
            Event::Outcome(o) => o.timestamp,
        }
    }

    /// Prediction or outcome.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Prediction(_) => EventKind::Prediction,
            Event::Outcome(_) => EventKind::Outcome,
        }
    }

    /// Serialise to the Kafka payload.
    pub fn to_wire(&self) -> Vec<u8> {
        // Serialising these types cannot fail: every map key is a string and every
        // float was checked finite at validation, so the fallback is unreachable.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse a Kafka payload.
    ///
    /// The payload is read in one pass into the fields of either kind (`WireEvent`):
    /// serde's internally tagged enum would first buffer the whole object into a
    /// generic tree (an allocation per key and string) to find `kind`, which doubled
    /// the cost of a 15-feature prediction. A payload that is not a valid event is
    /// parsed again the ordinary way, so its error reads as before.
    pub fn from_wire(bytes: &[u8]) -> Result<Event, WireError> {
        let event = match serde_json::from_slice::<wire::WireEvent>(bytes)
            .ok()
            .and_then(wire::WireEvent::into_event)
        {
            Some(e) => e,
            None => serde_json::from_slice::<Event>(bytes)?,
        };
        let v = match &event {
            Event::Prediction(p) => p.v,
            Event::Outcome(o) => o.v,
        };
        if v != WIRE_VERSION {
            return Err(WireError::Version(v));
        }
        Ok(event)
    }
}

/// A field that failed validation: which one, what was expected, what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: expected {expected}, found {found}")]
pub struct FieldError {
    /// Dotted path of the field (`features.age`, `prediction.score`).
    pub field: String,
    /// What the contract asks for.
    pub expected: String,
    /// What the input held (a short description, never the full value).
    pub found: String,
}

impl FieldError {
    fn new(field: impl Into<String>, expected: impl Into<String>, found: &Value) -> Self {
        FieldError {
            field: field.into(),
            expected: expected.into(),
            found: describe(found),
        }
    }

    fn missing(field: impl Into<String>, expected: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            expected: expected.into(),
            found: "nothing (field is missing)".into(),
        }
    }

    /// Prefix the field path (`features.age` becomes `[3].features.age`).
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}{}", self.field);
        self
    }
}

/// A short, bounded description of a JSON value for error messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.is_empty() => "an empty string".into(),
        Value::String(s) => {
            let shown: String = s.chars().take(32).collect();
            if shown.len() < s.len() {
                format!("string \"{shown}…\"")
            } else {
                format!("string \"{shown}\"")
            }
        }
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Object(_) => "an object".into(),
    }
}

type Object = serde_json::Map<String, Value>;

fn take_object(v: Value, field: &str) -> Result<Object, FieldError> {
    match v {
        Value::Object(o) => Ok(o),
        other => Err(FieldError::new(field, "a JSON object", &other)),
    }
}

fn id_string(obj: &mut Object, field: &str) -> Result<String, FieldError> {
    match obj.remove(field) {
        None => Err(FieldError::missing(field, "a non-empty string")),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_LEN => Ok(s),
        Some(other) => Err(FieldError::new(
            field,
            format!("a non-empty string of at most {MAX_ID_LEN} bytes"),
            &other,
        )),
    }
}

/// 1 to 128 characters of `[A-Za-z0-9._-]`: usable as a Kafka key, a metric label and a
/// file name.
pub fn valid_system_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `system_id` must be usable as a Kafka key, a metric label and a file name.
fn system_id(obj: &mut Object) -> Result<String, FieldError> {
    let expected = "1 to 128 characters of [A-Za-z0-9._-]";
    match obj.remove("system_id") {
        None => Err(FieldError::missing("system_id", expected)),
        Some(Value::String(s)) if valid_system_id(&s) => Ok(s),
        Some(other) => Err(FieldError::new("system_id", expected, &other)),
    }
}

fn event_id(obj: &mut Object) -> Result<Uuid, FieldError> {
    match obj.remove("event_id") {
        None | Some(Value::Null) => Ok(Uuid::new_v4()),
        Some(Value::String(s)) => Uuid::parse_str(&s)
            .map_err(|_| FieldError::new("event_id", "a UUID", &Value::String(s))),
        Some(other) => Err(FieldError::new("event_id", "a UUID string", &other)),
    }
}

fn timestamp(obj: &mut Object, now: DateTime<Utc>) -> Result<DateTime<Utc>, FieldError> {
    match obj.remove("timestamp") {
        None | Some(Value::Null) => Ok(now),
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(&s) {
            Ok(t) => Ok(t.with_timezone(&Utc)),
            Err(_) => Err(FieldError::new(
                "timestamp",
                "an RFC 3339 timestamp such as 2026-11-23T10:00:00Z",
                &Value::String(s),
            )),
        },
        Some(other) => Err(FieldError::new(
            "timestamp",
            "an RFC 3339 timestamp string",
            &other,
        )),
    }
}

fn finite(v: Value, field: &str) -> Result<f64, FieldError> {
    match v.as_f64() {
        Some(x) if x.is_finite() => Ok(x),
        _ => Err(FieldError::new(field, "a finite number", &v)),
    }
}

fn label(v: Value, field: &str) -> Result<String, FieldError> {
    match v {
        Value::String(s) if !s.is_empty() && s.len() <= MAX_ID_LEN => Ok(s),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        other => Err(FieldError::new(
            field,
            "a label (non-empty string, integer or boolean)",
            &other,
        )),
    }
}

fn reject_unknown(obj: &Object, allowed: &str, prefix: &str) -> Result<(), FieldError> {
    match obj.keys().next() {
        None => Ok(()),
        Some(k) => Err(FieldError {
            field: quoted_field(prefix, k),
            expected: format!("no such field (known fields: {allowed})"),
            found: "an unknown field".into(),
        }),
    }
}

fn features(v: Value) -> Result<BTreeMap<String, FeatureValue>, FieldError> {
    let obj = take_object(v, "features")?;
    if obj.len() > MAX_FEATURES {
        return Err(FieldError {
            field: "features".into(),
            expected: format!("at most {MAX_FEATURES} features"),
            found: format!("{} features", obj.len()),
        });
    }
    let mut out = BTreeMap::new();
    for (name, value) in obj {
        let field = quoted_field("features.", &name);
        if name.is_empty() || name.len() > MAX_ID_LEN {
            return Err(FieldError::new(
                field,
                format!("a feature name of 1 to {MAX_ID_LEN} bytes"),
                &Value::String(name),
            ));
        }
        let fv = match value {
            Value::Null => FeatureValue::Null,
            Value::Bool(b) => FeatureValue::Bool(b),
            Value::String(s) if s.len() > MAX_TEXT_LEN => {
                return Err(FieldError::new(
                    field,
                    format!("a string of at most {MAX_TEXT_LEN} bytes"),
                    &Value::String(s),
                ))
            }
            Value::String(s) => FeatureValue::Text(s),
            Value::Number(_) => FeatureValue::Number(finite(value, &field)?),
            other => {
                return Err(FieldError::new(
                    field,
                    "a number, string, boolean or null",
                    &other,
                ))
            }
        };
        out.insert(name, fv);
    }
    Ok(out)
}

fn prediction_value(v: Value) -> Result<PredictionValue, FieldError> {
    let mut obj = take_object(v, "prediction")?;
    let mut p = PredictionValue::default();
    if let Some(s) = obj.remove("score").filter(|v| !v.is_null()) {
        p.score = Some(finite(s, "prediction.score")?);
    }
    if let Some(l) = obj.remove("label").filter(|v| !v.is_null()) {
        p.label = Some(label(l, "prediction.label")?);
    }
    if let Some(x) = obj.remove("value").filter(|v| !v.is_null()) {
        p.value = Some(finite(x, "prediction.value")?);
    }
    reject_unknown(&obj, "score, label, value", "prediction.")?;
    if p.score.is_none() && p.label.is_none() && p.value.is_none() {
        return Err(FieldError {
            field: "prediction".into(),
            expected: "at least one of score, label, value".into(),
            found: "none of them".into(),
        });
    }
    Ok(p)
}

fn outcome_value(v: Value) -> Result<OutcomeValue, FieldError> {
    match v {
        Value::Object(mut obj) => {
            let mut o = OutcomeValue::default();
            if let Some(l) = obj.remove("label").filter(|v| !v.is_null()) {
                o.label = Some(label(l, "outcome.label")?);
            }
            if let Some(x) = obj.remove("value").filter(|v| !v.is_null()) {
                o.value = Some(finite(x, "outcome.value")?);
            }
            reject_unknown(&obj, "label, value", "outcome.")?;
            if o.label.is_none() && o.value.is_none() {
                return Err(FieldError {
                    field: "outcome".into(),
                    expected: "a label or a value".into(),
                    found: "neither".into(),
                });
            }
            Ok(o)
        }
        Value::Number(_) => Ok(OutcomeValue {
            label: None,
            value: Some(finite(v, "outcome")?),
        }),
        Value::String(_) | Value::Bool(_) => Ok(OutcomeValue {
            label: Some(label(v, "outcome")?),
            value: None,
        }),
        other => Err(FieldError::new(
            "outcome",
            "an object {\"label\": ...} or {\"value\": ...}, or a bare label or number",
            &other,
        )),
    }
}

fn segment(v: Value) -> Result<BTreeMap<String, String>, FieldError> {
    let obj = take_object(v, "segment")?;
    if obj.len() > MAX_SEGMENT_TAGS {
        return Err(FieldError {
            field: "segment".into(),
            expected: format!("at most {MAX_SEGMENT_TAGS} tags"),
            found: format!("{} tags", obj.len()),
        });
    }
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        if k.is_empty() || k.len() > MAX_ID_LEN {
            return Err(FieldError::new(
                quoted_field("segment.", &k),
                format!("a tag name of 1 to {MAX_ID_LEN} bytes"),
                &Value::String(k),
            ));
        }
        match v {
            Value::String(s) if s.len() <= MAX_ID_LEN => {
                out.insert(k, s);
            }
            other => {
                return Err(FieldError::new(
                    quoted_field("segment.", &k),
                    format!("a string tag of at most {MAX_ID_LEN} bytes"),
                    &other,
                ))
            }
        }
    }
    Ok(out)
}

/// `kind` and `v` may appear in input (files written by `driftwatch` itself); check them.
fn envelope(obj: &mut Object, kind: EventKind) -> Result<(), FieldError> {
    if let Some(k) = obj.remove("kind") {
        if k.as_str() != Some(kind.as_str()) {
            return Err(FieldError::new(
                "kind",
                format!("\"{}\"", kind.as_str()),
                &k,
            ));
        }
    }
    if let Some(v) = obj.remove("v") {
        if v.as_u64() != Some(u64::from(WIRE_VERSION)) {
            return Err(FieldError::new("v", format!("{WIRE_VERSION}"), &v));
        }
    }
    Ok(())
}

const PREDICTION_FIELDS: &str = "event_id, system_id, model_version, prediction_id, timestamp, features, prediction, segment, suppressed";
const OUTCOME_FIELDS: &str = "event_id, system_id, prediction_id, timestamp, outcome";

/// Validate one posted prediction. `now` stamps a missing timestamp.
pub fn parse_prediction(v: Value, now: DateTime<Utc>) -> Result<Prediction, FieldError> {
    let mut obj = take_object(v, "event")?;
    envelope(&mut obj, EventKind::Prediction)?;
    let event_id = event_id(&mut obj)?;
    let system_id = system_id(&mut obj)?;
    let model_version = id_string(&mut obj, "model_version")?;
    let prediction_id = id_string(&mut obj, "prediction_id")?;
    let timestamp = timestamp(&mut obj, now)?;
    let features = match obj.remove("features") {
        None => {
            return Err(FieldError::missing(
                "features",
                "an object of feature values",
            ))
        }
        Some(f) => features(f)?,
    };
    let prediction = match obj.remove("prediction") {
        None => {
            return Err(FieldError::missing(
                "prediction",
                "an object with score, label and/or value",
            ))
        }
        Some(p) => prediction_value(p)?,
    };
    let segment = match obj.remove("segment") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(s) => segment(s)?,
    };
    // `suppressed` is the agent's mark; a model server cannot claim it, but the wire form
    // (files written from the topic) is valid input.
    let suppressed = match obj.remove("suppressed") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => out.push(s),
                    other => {
                        return Err(FieldError::new(
                            "suppressed",
                            "a list of field names",
                            &other,
                        ))
                    }
                }
            }
            out
        }
        Some(other) => {
            return Err(FieldError::new(
                "suppressed",
                "a list of field names",
                &other,
            ))
        }
    };
    reject_unknown(&obj, PREDICTION_FIELDS, "")?;
    Ok(Prediction {
        v: WIRE_VERSION,
        event_id,
        system_id,
        model_version,
        prediction_id,
        timestamp,
        features,
        prediction,
        segment,
        suppressed,
    })
}

/// Validate one posted outcome. `now` stamps a missing timestamp.
pub fn parse_outcome(v: Value, now: DateTime<Utc>) -> Result<Outcome, FieldError> {
    let mut obj = take_object(v, "event")?;
    envelope(&mut obj, EventKind::Outcome)?;
    let event_id = event_id(&mut obj)?;
    let system_id = system_id(&mut obj)?;
    let prediction_id = id_string(&mut obj, "prediction_id")?;
    let timestamp = timestamp(&mut obj, now)?;
    let outcome = match obj.remove("outcome") {
        None => return Err(FieldError::missing("outcome", "a label or a value")),
        Some(o) => outcome_value(o)?,
    };
    reject_unknown(&obj, OUTCOME_FIELDS, "")?;
    Ok(Outcome {
        v: WIRE_VERSION,
        event_id,
        system_id,
        prediction_id,
        timestamp,
        outcome,
    })
}

/// Validate an event of either kind: `kind` decides, else the presence of `outcome`.
pub fn parse_event(v: Value, now: DateTime<Utc>) -> Result<Event, FieldError> {
    let kind = match v.get("kind") {
        Some(Value::String(k)) if k == "prediction" => EventKind::Prediction,
        Some(Value::String(k)) if k == "outcome" => EventKind::Outcome,
        Some(other) => {
            return Err(FieldError::new(
                "kind",
                "\"prediction\" or \"outcome\"",
                other,
            ))
        }
        None if v.get("outcome").is_some() => EventKind::Outcome,
        None => EventKind::Prediction,
    };
    match kind {
        EventKind::Prediction => parse_prediction(v, now).map(Event::Prediction),
        EventKind::Outcome => parse_outcome(v, now).map(Event::Outcome),
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
