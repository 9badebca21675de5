//! Request bodies to validated events: one JSON object, a JSON array, or NDJSON.
//!
//! A batch is all or nothing: if any event is invalid, none is accepted and the answer
//! lists every bad event (up to [`MAX_REPORTED_ERRORS`]) with its index and field, so a
//! client never has to guess which part of a batch went through.

use chrono::{DateTime, Utc};
use driftwatch_schema::{parse_outcome, parse_prediction, Event, EventKind, FieldError};

use crate::privacy::{Applied, Privacy};
use serde::Serialize;
use serde_json::Value;

/// At most this many per-event errors are reported in one answer.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// What a batch and its events may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Events per request.
    pub max_events: usize,
    /// How far before now a timestamp may lie.
    pub max_age: chrono::Duration,
    /// How far after now a timestamp may lie.
    pub max_ahead: chrono::Duration,
}

impl Limits {
    /// The limits of an agent configuration.
    pub fn of(config: &crate::config::AgentConfig) -> Self {
        let secs = |s: u64| chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000));
        Limits {
            max_events: config.max_batch_events,
            max_age: secs(config.max_timestamp_age_s),
            max_ahead: secs(config.max_timestamp_ahead_s),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::of(&crate::config::AgentConfig::default())
    }
}

/// One invalid event in a batch.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EventError {
    /// Position in the batch (0-based: array index or NDJSON line of an event).
    pub index: usize,
    /// The field at fault.
    pub field: String,
    /// What the contract asks for.
    pub expected: String,
    /// What was posted.
    pub found: String,
}

/// Why a body was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body is not JSON, a JSON array or NDJSON.
    #[error("request body is not JSON or NDJSON: {0}")]
    Syntax(String),
    /// The body holds no events.
    #[error("request body holds no events")]
    Empty,
    /// More events than `max_batch_events`.
    #[error("batch of {count} events exceeds max_batch_events = {max}")]
    TooMany {
        /// Events posted.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// One event is larger than Kafka takes (`kafka.properties."message.max.bytes"`).
    #[error("event {index} is {bytes} bytes on the wire; Kafka takes at most {max} (message.max.bytes); none were accepted")]
    EventTooLarge {
        /// Its position in the batch.
        index: usize,
        /// Its key and payload.
        bytes: usize,
        /// The most an event may be.
        max: usize,
    },
    /// The caller's sink gave up (its own error is returned instead).
    #[error("stopped")]
    Stopped,
    /// Some events failed validation.
    #[error("{invalid} of {total} events are invalid; none were accepted")]
    Invalid {
        /// Events posted.
        total: usize,
        /// How many are bad.
        invalid: usize,
        /// The first bad ones.
        errors: Vec<EventError>,
    },
}

/// Most JSON values (objects, arrays, scalars, at any depth) one event may hold: a
/// valid event has at most 1,000 features, 32 segment tags and a few fields. Parsing
/// stops past it, so one event's parsed value stays small whatever its bytes (a single
/// 8 MB object of 700,000 tiny features was 90 MB of values).
pub const MAX_VALUES_PER_EVENT: usize = 4_096;

/// The error text a value parse stops with past [`MAX_VALUES_PER_EVENT`].
const TOO_MANY_VALUES: &str = "an event holds more than 4096 JSON values";

/// Deserialises one event's JSON into a [`Value`], counting values as it goes.
struct Counted<'a>(&'a mut usize);

impl Counted<'_> {
    fn tick<E: serde::de::Error>(&mut self) -> Result<(), E> {
        *self.0 += 1;
        if *self.0 > MAX_VALUES_PER_EVENT {
            Err(E::custom(TOO_MANY_VALUES))
        } else {
            Ok(())
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Counted<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Counted<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(mut self, v: bool) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(mut self, v: i64) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: serde::de::Error>(mut self, v: u64) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(mut self, v: f64) -> Result<Value, E> {
        self.tick()?;
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(mut self, v: &str) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(mut self, v: String) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(mut self) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.tick()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Counted(&mut *self.0))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        self.tick()?;
        let mut out = serde_json::Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(Counted(&mut *self.0))?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// One event's value, from a JSON element (bounded by [`MAX_VALUES_PER_EVENT`]).
struct EventValue(Value);

impl<'de> serde::Deserialize<'de> for EventValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut n = 0;
        serde::de::DeserializeSeed::deserialize(Counted(&mut n), d).map(EventValue)
    }
}

/// The error text an array parse stops with at the event limit.
const OVER_LIMIT: &str = "over the event limit";

/// Hands each element of a JSON array to a callback as it is read (then drops it),
/// failing as soon as there are more than `max`.
struct EachElement<'a> {
    max: usize,
    each: &'a mut dyn FnMut(usize, Value) -> bool,
}

impl<'de> serde::de::Visitor<'de> for EachElement<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while let Some(EventValue(v)) = seq.next_element::<EventValue>()? {
            if n == self.max {
                return Err(serde::de::Error::custom(OVER_LIMIT));
            }
            if !(self.each)(n, v) {
                return Err(serde::de::Error::custom(STOPPED));
            }
            n += 1;
        }
        Ok(n)
    }
}

/// The error text an array parse stops with when the callback gave up.
const STOPPED: &str = "stopped";

/// Read a body's events one at a time: `[...]` is an array of events; anything else is
/// a sequence of whitespace-separated objects (one object, or NDJSON). `each` gets every
/// event's index and value as it is read (and returns false to stop); no more than one
/// event's value is held at a time, and reading stops at `max + 1` events. Returns how
/// many were read.
fn each_value(
    body: &[u8],
    max: usize,
    each: &mut dyn FnMut(usize, Value) -> bool,
) -> Result<usize, IngestError> {
    let n = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(IngestError::Empty),
        Some(b'[') => {
            let mut de = serde_json::Deserializer::from_slice(body);
            match serde::Deserializer::deserialize_seq(&mut de, EachElement { max, each }) {
                Ok(n) => {
                    de.end().map_err(|e| IngestError::Syntax(e.to_string()))?;
                    n
                }
                Err(e) => {
                    let text = e.to_string();
                    return Err(if text.starts_with(OVER_LIMIT) {
                        IngestError::TooMany {
                            count: max + 1,
                            max,
                        }
                    } else if text.starts_with(STOPPED) {
                        IngestError::Stopped
                    } else {
                        IngestError::Syntax(text)
                    });
                }
            }
        }
        Some(_) => {
            let mut n = 0;
            for v in serde_json::Deserializer::from_slice(body).into_iter::<EventValue>() {
                let EventValue(v) =
                    v.map_err(|e| IngestError::Syntax(format!("event {n}: {e}")))?;
                if n == max {
                    // Stop parsing early: the batch is refused whatever follows.
                    return Err(IngestError::TooMany {
                        count: max + 1,
                        max,
                    });
                }
                if !each(n, v) {
                    return Err(IngestError::Stopped);
                }
                n += 1;
            }
            n
        }
    };
    if n == 0 {
        return Err(IngestError::Empty);
    }
    Ok(n)
}

/// Parse and validate a body of events of one kind, then apply the privacy policy (if
/// any) to each; a refusal by either names the event's index and field.
pub fn parse_batch(
    body: &[u8],
    kind: EventKind,
    limits: &Limits,
    now: DateTime<Utc>,
    privacy: Option<&Privacy>,
) -> Result<(Vec<Event>, Applied), IngestError> {
    let mut events = Vec::new();
    let applied = parse_batch_into(body, kind, limits, now, privacy, &mut |_, e| {
        events.push(e);
        Ok(())
    })?;
    Ok((events, applied))
}

/// [`parse_batch`], handing each valid event to `sink` as soon as it is read and
/// checked, so a caller that encodes it holds the event's bytes, not its parsed value:
/// a request's memory is its body, the encoded events, and one event's value. `sink`
/// refusing an event (an error) refuses the batch at once.
pub fn parse_batch_into(
    body: &[u8],
    kind: EventKind,
    limits: &Limits,
    now: DateTime<Utc>,
    privacy: Option<&Privacy>,
    sink: &mut dyn FnMut(usize, Event) -> Result<(), IngestError>,
) -> Result<Applied, IngestError> {
    let mut errors = Vec::new();
    let mut invalid = 0;
    let mut applied = Applied::default();
    let mut refused: Option<IngestError> = None;
    let total = each_value(body, limits.max_events, &mut |index, v| {
        let parsed = match kind {
            EventKind::Prediction => parse_prediction(v, now).and_then(|p| {
                // The law-enforcement mark is the agent's to set (privacy policy): a
                // client that sets it could make the detector skip fields.
                if p.suppressed.is_empty() {
                    Ok(Event::Prediction(p))
                } else {
                    Err(FieldError {
                        field: "suppressed".into(),
                        expected:
                            "nothing: the agent sets it under a law-enforcement privacy policy"
                                .into(),
                        found: format!("a list of {} field names", p.suppressed.len()),
                    })
                }
            }),
            EventKind::Outcome => parse_outcome(v, now).map(Event::Outcome),
        };
        let parsed = parsed.and_then(|e| {
                let t = e.timestamp();
                if t < now - limits.max_age || t > now + limits.max_ahead {
                    Err(FieldError {
                        field: "timestamp".into(),
                        expected: format!(
                            "a time from {} s before to {} s after the agent's clock (max_timestamp_age_s, max_timestamp_ahead_s)",
                            limits.max_age.num_seconds(),
                            limits.max_ahead.num_seconds()
                        ),
                        found: t.to_rfc3339(),
                    })
                } else {
                    Ok(e)
                }
            });
        let parsed = parsed.and_then(|mut e| match privacy {
            Some(p) => p.apply(&mut e).map(|a| {
                applied.dropped += a.dropped;
                applied.suppressed += a.suppressed;
                applied.pseudonymised += a.pseudonymised;
                e
            }),
            None => Ok(e),
        });
        match parsed {
            // Once one event is invalid the batch is refused: the rest are only checked.
            Ok(e) if invalid == 0 => {
                if let Err(e) = sink(index, e) {
                    refused = Some(e);
                    return false;
                }
            }
            Ok(_) => {}
            Err(FieldError {
                field,
                expected,
                found,
            }) => {
                invalid += 1;
                if errors.len() < MAX_REPORTED_ERRORS {
                    errors.push(EventError {
                        index,
                        field,
                        expected,
                        found,
                    });
                }
            }
        }
        true
    });
    if let Some(e) = refused {
        return Err(e);
    }
    let total = total?;
    if invalid > 0 {
        return Err(IngestError::Invalid {
            total,
            invalid,
            errors,
        });
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(max_events: usize) -> Limits {
        Limits {
            max_events,
            ..Limits::default()
        }
    }

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    const P: &str = r#"{"system_id":"s","model_version":"1","prediction_id":"p","features":{"x":1},"prediction":{"score":0.5}}"#;

    #[test]
    fn accepts_object_array_and_ndjson() {
        let (one, _) = parse_batch(P.as_bytes(), EventKind::Prediction, &small(10), now(), None)
            .expect("object");
        assert_eq!(one.len(), 1);
        let arr = format!("[{P},{P},{P}]");
        assert_eq!(
            parse_batch(
                arr.as_bytes(),
                EventKind::Prediction,
                &small(10),
                now(),
                None
            )
            .expect("array")
            .0
            .len(),
            3
        );
        let nd = format!("{P}\n{P}\n\n{P}\n");
        assert_eq!(
            parse_batch(
                nd.as_bytes(),
                EventKind::Prediction,
                &small(10),
                now(),
                None
            )
            .expect("ndjson")
            .0
            .len(),
            3
        );
    }

    #[test]
    fn one_bad_event_refuses_the_batch_and_says_which() {
        let bad = P.replace("\"score\":0.5", "\"score\":\"high\"");
        let nd = format!("{P}\n{bad}\n{P}\n");
        match parse_batch(
            nd.as_bytes(),
            EventKind::Prediction,
            &small(10),
            now(),
            None,
        ) {
            Err(IngestError::Invalid {
                total,
                invalid,
                errors,
            }) => {
                assert_eq!((total, invalid), (3, 1));
                assert_eq!(errors[0].index, 1);
                assert_eq!(errors[0].field, "prediction.score");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_empty_and_too_many() {
        assert!(matches!(
            parse_batch(b"{\"a\":", EventKind::Prediction, &small(10), now(), None),
            Err(IngestError::Syntax(_))
        ));
        assert!(matches!(
            parse_batch(b"  \n", EventKind::Prediction, &small(10), now(), None),
            Err(IngestError::Empty)
        ));
        assert!(matches!(
            parse_batch(b"[]", EventKind::Prediction, &small(10), now(), None),
            Err(IngestError::Empty)
        ));
        let nd = format!("{P}\n{P}\n{P}\n");
        assert!(matches!(
            parse_batch(nd.as_bytes(), EventKind::Prediction, &small(2), now(), None),
            Err(IngestError::TooMany { max: 2, .. })
        ));
    }

    /// One event of more JSON values than any valid event holds is refused while it is
    /// parsed, as one object or inside an array.
    #[test]
    fn an_event_of_too_many_values_is_refused_while_parsed() {
        let features: Vec<String> = (0..5000).map(|i| format!("\"f{i}\":1")).collect();
        let big = format!(
            r#"{{"system_id":"s","model_version":"1","prediction_id":"p","prediction":{{"score":0.5}},"features":{{{}}}}}"#,
            features.join(",")
        );
        for body in [big.clone(), format!("[{big}]"), format!("{P}\n{big}")] {
            match parse_batch(
                body.as_bytes(),
                EventKind::Prediction,
                &small(10),
                now(),
                None,
            ) {
                Err(IngestError::Syntax(e)) => {
                    assert!(e.contains("more than 4096 JSON values"), "{e}")
                }
                other => panic!("{other:?}"),
            }
        }
        // A nested array counts too.
        let nested = format!(
            r#"{{"system_id":"s","model_version":"1","prediction_id":"p","prediction":{{"score":0.5}},"features":{{"x":[{}]}}}}"#,
            vec!["1"; 5000].join(",")
        );
        assert!(matches!(
            parse_batch(
                nested.as_bytes(),
                EventKind::Prediction,
                &small(10),
                now(),
                None
            ),
            Err(IngestError::Syntax(_))
        ));
    }

    /// An array over the limit is refused at its first extra element: whatever follows
    /// is never parsed (here, a tail that is not JSON at all would otherwise be a
    /// syntax error), so no body builds more than `max_batch_events` values.
    #[test]
    fn an_array_over_the_limit_stops_parsing_at_the_limit() {
        let body = format!("[{P},{P},{P},{{\"never\": parsed ... ");
        assert!(matches!(
            parse_batch(
                body.as_bytes(),
                EventKind::Prediction,
                &small(2),
                now(),
                None
            ),
            Err(IngestError::TooMany { max: 2, .. })
        ));
        let body = format!("[{P},{P}]");
        let (events, _) = parse_batch(
            body.as_bytes(),
            EventKind::Prediction,
            &small(2),
            now(),
            None,
        )
        .expect("at the limit is fine");
        assert_eq!(events.len(), 2);
        assert!(matches!(
            parse_batch(
                b"[1, 2] trailing",
                EventKind::Prediction,
                &small(10),
                now(),
                None
            ),
            Err(IngestError::Syntax(_))
        ));
    }

    #[test]
    fn kind_mismatch_is_named() {
        let outcome = r#"{"kind":"outcome","system_id":"s","prediction_id":"p","outcome":1}"#;
        match parse_batch(
            outcome.as_bytes(),
            EventKind::Prediction,
            &small(10),
            now(),
            None,
        ) {
            Err(IngestError::Invalid { errors, .. }) => assert_eq!(errors[0].field, "kind"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
}
