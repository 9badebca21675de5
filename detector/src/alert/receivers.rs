//! What each receiver is sent: the Alertmanager v2 alert list, a Slack-compatible
//! incoming-webhook message, a PagerDuty Events API v2 event. The generic webhook gets
//! the alert payload itself (`schema/driftwatch-alert-v1.schema.json`).
//!
//! Every message carries the one-line summary, and, when the plan names them, the
//! runbook for the episode's severity (`[actions.*] runbook`) and the link to the
//! system's incidents (`[alerts] incident_url`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use driftwatch_schema::{Alert, AlertKind, EpisodeStatus};
use serde_json::{json, Value};

/// The Alertmanager alert name of a kind.
pub fn alertname(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Drift => "DriftwatchDrift",
        AlertKind::Performance => "DriftwatchPerformance",
        AlertKind::PerformanceEstimate => "DriftwatchPerformanceEstimate",
        AlertKind::Obligation => "DriftwatchObligation",
        AlertKind::Telemetry => "DriftwatchTelemetryStopped",
    }
}

/// How long an alert posted at `now` stays firing in Alertmanager unless refreshed:
/// twice its window's span (event time; a time window's length), within `[min, 24 h]`.
/// Every breaching window of an episode refreshes it (`ongoing`); a detector that stops
/// leaves it to expire.
pub fn alertmanager_ends_at(alert: &Alert, now: DateTime<Utc>, min: Duration) -> DateTime<Utc> {
    let w = &alert.window;
    let span = match (w.start, w.end) {
        (Some(s), Some(e)) => e - s,
        _ => w.last_event_at - w.first_event_at,
    };
    let min = chrono::Duration::from_std(min).unwrap_or(chrono::Duration::minutes(10));
    let hold = (span * 2).clamp(min, chrono::Duration::hours(24).max(min));
    now + hold
}

/// The Alertmanager v2 body for an alert posted at `now`. The labels name the
/// condition (system, signal, method, severity), not the window or the episode, so the
/// notifications of one episode update one Alertmanager alert: `firing`, `escalated`
/// and `ongoing` hold it until [`alertmanager_ends_at`], `resolved` ends it now. An
/// escalation also ends the alert under the lower severity's labels.
pub fn alertmanager_body(alert: &Alert, now: DateTime<Utc>, hold: Duration) -> Vec<u8> {
    let status = alert.lifecycle.as_ref().map(|l| l.status);
    let starts_at = alert
        .lifecycle
        .as_ref()
        .map_or(alert.window.last_event_at, |l| l.started_at)
        .min(now);
    let ends_at = match status {
        Some(EpisodeStatus::Resolved) => now,
        _ => alertmanager_ends_at(alert, now, hold),
    };
    let labels = |severity: &str| {
        json!({
            "alertname": alertname(alert.kind),
            "system": alert.system_id,
            "signal": alert.signal,
            "method": alert.method,
            "severity": severity,
        })
    };
    let mut annotations = json!({
        "summary": alert.summary,
        "alert_id": alert.alert_id,
        "window": alert.window.index.to_string(),
        "value": alert.value.to_string(),
        "threshold": alert.threshold.to_string(),
        "reference_version": alert.reference_version,
    });
    if let Some(l) = &alert.lifecycle {
        annotations["episode"] = json!(l.episode);
        annotations["status"] = json!(l.status.as_str());
        if let Some(u) = &l.runbook_url {
            annotations["runbook_url"] = json!(u);
        }
        if let Some(u) = &l.incident_url {
            annotations["incident_url"] = json!(u);
        }
    }
    let generator = alert
        .lifecycle
        .as_ref()
        .and_then(|l| l.incident_url.clone())
        .unwrap_or_else(|| format!("driftwatch://{}/{}", alert.system_id, alert.alert_id));
    let mut out = vec![json!({
        "startsAt": starts_at.to_rfc3339(),
        "endsAt": ends_at.to_rfc3339(),
        "labels": labels(alert.severity.as_str()),
        "annotations": annotations,
        "generatorURL": generator,
    })];
    if status == Some(EpisodeStatus::Escalated) {
        out.push(json!({
            "startsAt": starts_at.to_rfc3339(),
            "endsAt": now.to_rfc3339(),
            "labels": labels("warning"),
            "annotations": {"summary": alert.summary, "alert_id": alert.alert_id},
            "generatorURL": generator,
        }));
    }
    serde_json::to_vec(&Value::Array(out)).unwrap_or_default()
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped; nothing else is markup in a link
/// text or a sentence of ours.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack-compatible incoming-webhook message: `text` (what Mattermost and
/// Rocket.Chat show, and Slack's notification) and the same as Block Kit blocks, with
/// the runbook and incident links.
pub fn slack_body(alert: &Alert) -> Vec<u8> {
    let icon = match alert.lifecycle.as_ref().map(|l| l.status) {
        Some(EpisodeStatus::Resolved) => ":white_check_mark:",
        _ => match alert.severity {
            driftwatch_schema::Severity::Critical => ":rotating_light:",
            _ => ":warning:",
        },
    };
    let mut links = Vec::new();
    let (runbook, incidents) = alert.lifecycle.as_ref().map_or((None, None), |l| {
        (l.runbook_url.as_deref(), l.incident_url.as_deref())
    });
    if let Some(u) = incidents {
        links.push(format!(
            "<{}|Incidents of {}>",
            slack_escape(u),
            slack_escape(&alert.system_id)
        ));
    }
    if let Some(u) = runbook {
        links.push(format!("<{}|Runbook>", slack_escape(u)));
    }
    let text = format!("{icon} {}", slack_escape(&alert.summary));
    let mut context = vec![json!({
        "type": "mrkdwn",
        "text": format!(
            "system `{}` · {} `{}` · window {} · plan {}",
            slack_escape(&alert.system_id),
            slack_escape(&alert.signal),
            slack_escape(&alert.method),
            alert.window.index,
            slack_escape(alert.plan_version.as_deref().unwrap_or("unversioned")),
        ),
    })];
    if !links.is_empty() {
        context.push(json!({"type": "mrkdwn", "text": links.join(" · ")}));
    }
    let full = if links.is_empty() {
        text.clone()
    } else {
        format!("{text}\n{}", links.join(" · "))
    };
    let body = json!({
        "text": full,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": context},
        ],
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A PagerDuty Events API v2 event: `trigger` for firing and escalation (the same
/// `dedup_key`, the episode, so an escalation updates the open PagerDuty alert),
/// `resolve` when the episode ends. Obligations trigger under their own id.
pub fn pagerduty_body(alert: &Alert, routing_key: &str, now: DateTime<Utc>) -> Vec<u8> {
    let (action, dedup_key) = match &alert.lifecycle {
        Some(l) if l.status == EpisodeStatus::Resolved => ("resolve", l.episode.as_str()),
        Some(l) => ("trigger", l.episode.as_str()),
        None => ("trigger", alert.alert_id.as_str()),
    };
    if action == "resolve" {
        return serde_json::to_vec(&json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        }))
        .unwrap_or_default();
    }
    // PagerDuty refuses a summary over 1,024 characters.
    let summary: String = alert.summary.chars().take(1024).collect();
    let mut links = Vec::new();
    let mut details = json!({
        "alert_id": alert.alert_id,
        "signal": alert.signal,
        "method": alert.method,
        "value": alert.value,
        "threshold": alert.threshold,
        "window": alert.window.index,
        "samples": alert.samples,
        "reference_version": alert.reference_version,
        "plan_version": alert.plan_version,
        "plan_hash": alert.plan_hash,
    });
    if let Some(l) = &alert.lifecycle {
        details["status"] = json!(l.status.as_str());
        details["started_window"] = json!(l.started_window);
        details["breaching"] = json!(format!("{} of the last {} windows", l.breaching, l.of));
        if let Some(u) = &l.incident_url {
            links.push(json!({"href": u, "text": format!("Incidents of {}", alert.system_id)}));
        }
        if let Some(u) = &l.runbook_url {
            links.push(json!({"href": u, "text": "Runbook"}));
            details["runbook_url"] = json!(u);
        }
    }
    let body = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key,
        "client": "driftwatch",
        "payload": {
            "summary": summary,
            "source": format!("driftwatch/{}", alert.system_id),
            "severity": match alert.severity {
                driftwatch_schema::Severity::Critical => "critical",
                _ => "warning",
            },
            "timestamp": alert.window.last_event_at.min(now).to_rfc3339(),
            "component": alert.system_id,
            "group": alert.kind.as_str(),
            "class": alert.method,
            "custom_details": details,
        },
        "links": links,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use driftwatch_schema::{Lifecycle, Severity};

    use super::*;
    use crate::alert::sample_alert as alert;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn json(b: &[u8]) -> Value {
        serde_json::from_slice(b).expect("json")
    }

    fn episode(status: EpisodeStatus, severity: Severity) -> Alert {
        let mut a = alert(7);
        a.severity = severity;
        a.alert_id = format!("s/drift/age/ks@5/{}/7", status.as_str());
        a.summary = "FIRING critical drift on age of s in window 7 <b>&".into();
        a.lifecycle = Some(Lifecycle {
            status,
            fingerprint: "s/drift/age/ks".into(),
            episode: "s/drift/age/ks@5".into(),
            started_window: 5,
            started_at: at("2026-11-27T11:00:00Z"),
            breaching: 2,
            of: 3,
            clean: 0,
            runbook_url: Some("https://wiki.example/rb".into()),
            incident_url: Some("https://dw.example/incidents?system=s".into()),
        });
        a
    }

    #[test]
    fn alertmanager_holds_an_alert_for_two_windows_within_bounds() {
        let now = at("2026-11-27T12:00:00Z");
        let min = Duration::from_secs(600);
        let held = |first: &str, last: &str, window: Option<(&str, &str)>| {
            let mut a = alert(1);
            a.window.first_event_at = at(first);
            a.window.last_event_at = at(last);
            if let Some((s, e)) = window {
                a.window.start = Some(at(s));
                a.window.end = Some(at(e));
            }
            (alertmanager_ends_at(&a, now, min) - now).num_minutes()
        };
        // A count window whose events span 30 minutes: held an hour.
        assert_eq!(
            held("2026-11-27T11:00:00Z", "2026-11-27T11:30:00Z", None),
            60
        );
        // A minute's window: the 10-minute floor.
        assert_eq!(
            held("2026-11-27T11:59:00Z", "2026-11-27T12:00:00Z", None),
            10
        );
        // A time window is held for twice its length, whatever its events span.
        assert_eq!(
            held(
                "2026-11-27T08:00:00Z",
                "2026-11-27T08:01:00Z",
                Some(("2026-11-27T08:00:00Z", "2026-11-27T10:00:00Z"))
            ),
            240
        );
        // Days: a day at most, so a forgotten condition ends.
        assert_eq!(
            held("2026-11-20T00:00:00Z", "2026-11-27T00:00:00Z", None),
            24 * 60
        );

        let v = json(&alertmanager_body(&alert(3), now, min));
        assert_eq!(v[0]["endsAt"], "2026-11-27T12:10:00+00:00");
        // The labels name the condition, not the window.
        let w = json(&alertmanager_body(&alert(4), now, min));
        assert_eq!(v[0]["labels"], w[0]["labels"]);
    }

    /// Alertmanager tells drift, realized performance and estimates apart by alertname
    /// (README; the routes in deploy/alertmanager match on it).
    #[test]
    fn the_alertname_says_what_the_alert_is_about() {
        let now = Utc::now();
        for (kind, name) in [
            (AlertKind::Drift, "DriftwatchDrift"),
            (AlertKind::Performance, "DriftwatchPerformance"),
            (
                AlertKind::PerformanceEstimate,
                "DriftwatchPerformanceEstimate",
            ),
            (AlertKind::Obligation, "DriftwatchObligation"),
            (AlertKind::Telemetry, "DriftwatchTelemetryStopped"),
        ] {
            let a = Alert { kind, ..alert(1) };
            let v = json(&alertmanager_body(&a, now, Duration::from_secs(600)));
            assert_eq!(v[0]["labels"]["alertname"], name);
        }
    }

    #[test]
    fn alertmanager_episodes_start_at_the_onset_and_end_when_resolved() {
        let now = at("2026-11-27T12:00:00Z");
        let hold = Duration::from_secs(600);
        let firing = json(&alertmanager_body(
            &episode(EpisodeStatus::Firing, Severity::Warning),
            now,
            hold,
        ));
        assert_eq!(firing[0]["startsAt"], "2026-11-27T11:00:00+00:00");
        assert_eq!(firing[0]["endsAt"], "2026-11-27T12:10:00+00:00");
        assert_eq!(
            firing[0]["annotations"]["runbook_url"],
            "https://wiki.example/rb"
        );
        assert_eq!(
            firing[0]["generatorURL"],
            "https://dw.example/incidents?system=s"
        );
        assert_eq!(firing[0]["labels"]["severity"], "warning");
        // An escalation fires the critical alert and ends the warning one.
        let up = json(&alertmanager_body(
            &episode(EpisodeStatus::Escalated, Severity::Critical),
            now,
            hold,
        ));
        assert_eq!(up.as_array().map(Vec::len), Some(2));
        assert_eq!(up[0]["labels"]["severity"], "critical");
        assert_eq!(up[1]["labels"]["severity"], "warning");
        assert_eq!(up[1]["endsAt"], "2026-11-27T12:00:00+00:00");
        let mut w = up[1]["labels"].clone();
        w["severity"] = json!("critical");
        assert_eq!(w, up[0]["labels"], "the same condition otherwise");
        let resolved = json(&alertmanager_body(
            &episode(EpisodeStatus::Resolved, Severity::Critical),
            now,
            hold,
        ));
        assert_eq!(resolved[0]["endsAt"], "2026-11-27T12:00:00+00:00");
        assert_eq!(resolved[0]["labels"], up[0]["labels"]);
    }

    #[test]
    fn slack_messages_are_escaped_and_link_the_runbook_and_incidents() {
        let v = json(&slack_body(&episode(
            EpisodeStatus::Firing,
            Severity::Critical,
        )));
        let text = v["text"].as_str().expect("text");
        assert!(
            text.starts_with(
                ":rotating_light: FIRING critical drift on age of s in window 7 &lt;b&gt;&amp;"
            ),
            "{text}"
        );
        assert!(
            text.contains("<https://dw.example/incidents?system=s|Incidents of s>"),
            "{text}"
        );
        assert!(text.contains("<https://wiki.example/rb|Runbook>"), "{text}");
        assert_eq!(v["blocks"][0]["type"], "section");
        assert_eq!(v["blocks"][1]["type"], "context");
        let r = json(&slack_body(&episode(
            EpisodeStatus::Resolved,
            Severity::Critical,
        )));
        assert!(r["text"]
            .as_str()
            .expect("text")
            .starts_with(":white_check_mark:"));
    }

    #[test]
    fn pagerduty_triggers_and_resolves_one_dedup_key_per_episode() {
        let now = at("2026-11-27T12:00:00Z");
        let t = json(&pagerduty_body(
            &episode(EpisodeStatus::Firing, Severity::Warning),
            "KEY",
            now,
        ));
        assert_eq!(t["routing_key"], "KEY");
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["dedup_key"], "s/drift/age/ks@5");
        assert_eq!(t["payload"]["severity"], "warning");
        assert_eq!(t["payload"]["source"], "driftwatch/s");
        assert_eq!(
            t["links"][0]["href"],
            "https://dw.example/incidents?system=s"
        );
        assert_eq!(t["links"][1]["href"], "https://wiki.example/rb");
        let e = json(&pagerduty_body(
            &episode(EpisodeStatus::Escalated, Severity::Critical),
            "KEY",
            now,
        ));
        assert_eq!(e["dedup_key"], t["dedup_key"]);
        assert_eq!(e["payload"]["severity"], "critical");
        let r = json(&pagerduty_body(
            &episode(EpisodeStatus::Resolved, Severity::Critical),
            "KEY",
            now,
        ));
        assert_eq!(
            r,
            json!({"routing_key": "KEY", "event_action": "resolve", "dedup_key": "s/drift/age/ks@5"})
        );
        // A summary past PagerDuty's limit is cut to it.
        let mut long = episode(EpisodeStatus::Firing, Severity::Warning);
        long.summary = "x".repeat(5000);
        let l = json(&pagerduty_body(&long, "KEY", now));
        assert_eq!(l["payload"]["summary"].as_str().map(str::len), Some(1024));
    }
}
