//! The one-pass decoder of Kafka payloads behind [`Event::from_wire`](crate::Event::from_wire).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    wire_version, Event, FeatureValue, Outcome, OutcomeValue, Prediction, PredictionValue,
};

/// Every field of both kinds of event, read in one pass ([`Event::from_wire`]).
#[derive(Deserialize)]
pub(crate) struct WireEvent {
    #[serde(default = "wire_version")]
    v: u32,
    kind: WireKind,
    event_id: Uuid,
    system_id: String,
    #[serde(default)]
    model_version: Option<String>,
    prediction_id: String,
    #[serde(deserialize_with = "rfc3339")]
    timestamp: DateTime<Utc>,
    #[serde(default, deserialize_with = "sorted_features")]
    features: Option<BTreeMap<String, FeatureValue>>,
    #[serde(default)]
    prediction: Option<PredictionValue>,
    #[serde(default)]
    segment: BTreeMap<String, String>,
    #[serde(default)]
    suppressed: Vec<String>,
    #[serde(default)]
    outcome: Option<OutcomeValue>,
}

/// A timestamp by chrono's strict RFC 3339 parser (hand-written, the common case),
/// else by the relaxed one `DateTime<Utc>` deserialises with (spaces, lower case).
fn rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = DateTime<Utc>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an RFC 3339 timestamp")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<DateTime<Utc>, E> {
            match DateTime::parse_from_rfc3339(s) {
                Ok(t) => Ok(t.with_timezone(&Utc)),
                Err(_) => s.parse::<DateTime<Utc>>().map_err(E::custom),
            }
        }
    }
    d.deserialize_str(V)
}

/// Features as a map built in bulk from its sorted entries (the agent writes them
/// sorted), not one insert at a time; a repeated name keeps its last value, as inserts
/// would.
fn sorted_features<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, FeatureValue>>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<BTreeMap<String, FeatureValue>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of feature names to values")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut entries: Vec<(String, FeatureValue)> =
                Vec::with_capacity(m.size_hint().unwrap_or(16));
            while let Some(e) = m.next_entry()? {
                entries.push(e);
            }
            // Stable: of equal names the later stays later, and from_iter keeps the
            // last of equal keys.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(Some(entries.into_iter().collect()))
        }
    }
    d.deserialize_map(V)
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireKind {
    Prediction,
    Outcome,
}

impl WireEvent {
    /// The event, if every field its kind needs is there (`None`: let the ordinary
    /// parse name what is missing).
    pub(crate) fn into_event(self) -> Option<Event> {
        Some(match self.kind {
            WireKind::Prediction => Event::Prediction(Prediction {
                v: self.v,
                event_id: self.event_id,
                system_id: self.system_id,
                model_version: self.model_version?,
                prediction_id: self.prediction_id,
                timestamp: self.timestamp,
                features: self.features?,
                prediction: self.prediction?,
                segment: self.segment,
                suppressed: self.suppressed,
            }),
            WireKind::Outcome => Event::Outcome(Outcome {
                v: self.v,
                event_id: self.event_id,
                system_id: self.system_id,
                prediction_id: self.prediction_id,
                timestamp: self.timestamp,
                outcome: self.outcome?,
            }),
        })
    }
}
