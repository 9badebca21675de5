//! The degradation onset, from the stored window history.

use chrono::{DateTime, Utc};
use serde_json::Value;

use driftwatch_schema::{Alert, AlertKind};

use crate::model::Onset;

/// Whether a stored report breaches the alert's condition at warning or above.
fn breaches(alert: &Alert, doc: &Value) -> bool {
    let bad = |v: &Value| {
        matches!(
            v.get("severity").and_then(Value::as_str),
            Some("warning" | "critical")
        )
    };
    match alert.kind {
        AlertKind::Drift => doc
            .get("checks")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.get("signal").and_then(Value::as_str) == Some(alert.signal.as_str()) && bad(c)
                })
            }),
        AlertKind::Performance | AlertKind::PerformanceEstimate => {
            let list = if alert.kind == AlertKind::Performance {
                "metrics"
            } else {
                "estimated"
            };
            doc.get(list).and_then(Value::as_array).is_some_and(|ms| {
                ms.iter().any(|m| {
                    m.get("metric").and_then(Value::as_str) == Some(alert.method.as_str()) && bad(m)
                })
            })
        }
        AlertKind::Obligation | AlertKind::Telemetry => false,
    }
}

/// The degradation onset: the first window of the run of consecutive breaching windows
/// that ends at the trigger (`history` newest first).
pub fn onset(alert: &Alert, history: &[(i64, Value)]) -> Option<Onset> {
    let mut first: Option<(i64, &Value)> = None;
    let mut expect = alert.window.index;
    for (k, doc) in history {
        if *k != expect || !breaches(alert, doc) {
            break;
        }
        first = Some((*k, doc));
        expect = k - 1;
    }
    match first {
        Some((k, doc)) => {
            let at = doc
                .pointer("/window/first_event_at")
                .and_then(Value::as_str)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(alert.window.first_event_at);
            Some(Onset {
                at,
                window_index: k,
                source: "history".into(),
            })
        }
        None => Some(Onset {
            at: alert.window.first_event_at,
            window_index: alert.window.index,
            source: "alert".into(),
        }),
    }
}
