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

/// Split a body into JSON values: `[...]` is an array of events; anything else is a
/// sequence of whitespace-separated objects (one object, or NDJSON).
fn values(body: &[u8], max: usize) -> Result<Vec<Value>, IngestError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let values = match first {
        None => return Err(IngestError::Empty),
        Some(b'[') => serde_json::from_slice::<Vec<Value>>(body)
            .map_err(|e| IngestError::Syntax(e.to_string()))?,
        Some(_) => {
            let mut out = Vec::new();
            for (i, v) in serde_json::Deserializer::from_slice(body)
                .into_iter::<Value>()
                .enumerate()
            {
                match v {
                    Ok(v) => out.push(v),
                    Err(e) => return Err(IngestError::Syntax(format!("event {i}: {e}"))),
                }
                if out.len() > max {
                    // Stop parsing early: the batch is refused whatever follows.
                    return Err(IngestError::TooMany {
                        count: out.len(),
                        max,
                    });
                }
            }
            out
        }
    };
    if values.is_empty() {
        return Err(IngestError::Empty);
    }
    if values.len() > max {
        return Err(IngestError::TooMany {
            count: values.len(),
            max,
        });
    }
    Ok(values)
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
    let values = values(body, limits.max_events)?;
    let total = values.len();
    let mut events = Vec::with_capacity(total);
    let mut errors = Vec::new();
    let mut invalid = 0;
    let mut applied = Applied::default();
    for (index, v) in values.into_iter().enumerate() {
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
            Ok(e) => events.push(e),
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
    }
    if invalid > 0 {
        return Err(IngestError::Invalid {
            total,
            invalid,
            errors,
        });
    }
    Ok((events, applied))
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
