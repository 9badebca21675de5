//! An incident as a document a compliance officer can file: JSON (the record, its
//! evidence, alerts and timeline) and Markdown, including the fields of an Art. 73 report
//! (identification, timeline, category, containment, root cause, corrective measures,
//! contact point).

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::audit::{ts, StoredEntry};
use crate::model::Incident;

/// Everything about one incident, as JSON.
pub fn to_json(
    inc: &Incident,
    evidence: Option<&(String, Value)>,
    alerts: &[Value],
    timeline: &[StoredEntry],
) -> Value {
    json!({
        "incident": inc,
        "art73": inc.clock(),
        "evidence": evidence.map(|(h, v)| json!({"hash": h, "snapshot": v})),
        "alerts": alerts,
        "timeline": timeline.iter().map(StoredEntry::to_entry).collect::<Vec<_>>(),
    })
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '|' => out.push_str("\\|"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn opt(s: Option<&str>) -> String {
    s.map_or("*not yet recorded*".to_owned(), esc)
}

fn label(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default()
}

/// The incident as Markdown.
pub fn to_markdown(
    inc: &Incident,
    evidence: Option<&(String, Value)>,
    alerts: &[Value],
    timeline: &[StoredEntry],
) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# Corrective-action record {}\n", inc.id);
    let _ = writeln!(m, "{}\n", esc(&inc.title));
    let _ = writeln!(m, "| | |\n|---|---|");
    let row = |m: &mut String, k: &str, v: String| {
        let _ = writeln!(m, "| {k} | {v} |");
    };
    row(&mut m, "AI system", esc(&inc.system_id));
    row(&mut m, "State", label(&inc.state));
    row(&mut m, "Severity", inc.severity.as_str().into());
    row(
        &mut m,
        "Model versions",
        if inc.model_versions.is_empty() {
            "*not stated in the plan*".into()
        } else {
            esc(&inc.model_versions.join(", "))
        },
    );
    row(
        &mut m,
        "Plan version",
        format!(
            "{} (`{}`)",
            opt(inc.plan_version.as_deref()),
            inc.plan_hash.as_deref().unwrap_or("no plan")
        ),
    );
    row(
        &mut m,
        "Reference version",
        opt(inc.reference_version.as_deref()),
    );
    row(
        &mut m,
        "Trigger",
        format!(
            "{}{}",
            label(&inc.trigger.kind),
            inc.trigger
                .alert_id
                .as_deref()
                .map_or(String::new(), |a| format!(" `{}`", esc(a)))
        ),
    );
    row(&mut m, "Opened by", esc(&inc.opened_by));
    row(&mut m, "Detected at", ts(inc.detected_at));
    row(
        &mut m,
        "Aware at (starts the Art. 73 clock)",
        ts(inc.aware_at),
    );
    row(
        &mut m,
        "Degradation onset",
        inc.onset.as_ref().map_or("*unknown*".into(), |o| {
            format!(
                "{} (window {}, from {})",
                ts(o.at),
                o.window_index,
                o.source
            )
        }),
    );
    row(&mut m, "Alerts attached", inc.alerts.count.to_string());
    row(
        &mut m,
        "Evidence snapshot (SHA-256)",
        format!("`{}`", inc.evidence_hash),
    );

    let _ = writeln!(m, "\n## Assessment\n");
    row(
        &mut m,
        "Classification",
        inc.classification
            .as_ref()
            .map_or("*not yet classified*".into(), label),
    );
    let _ = writeln!(m);
    let _ = writeln!(m, "- Assessment: {}", opt(inc.assessment.as_deref()));
    let _ = writeln!(m, "- Root cause: {}", opt(inc.root_cause.as_deref()));
    if !inc.requirements_breached.is_empty() {
        let _ = writeln!(
            m,
            "- Requirements breached: {}",
            esc(&inc.requirements_breached.join(", "))
        );
    }

    let _ = writeln!(m, "\n## Decision (Art. 20)\n");
    match &inc.decision {
        Some(d) => {
            let _ = writeln!(
                m,
                "- Decision: **{}**{}",
                label(&d.decision),
                if d.automatic {
                    " (automatic, per the plan)"
                } else {
                    ""
                }
            );
            let _ = writeln!(
                m,
                "- Decided by {} at {}",
                esc(&d.decided_by),
                ts(d.decided_at)
            );
            let _ = writeln!(m, "- Rationale: {}", esc(&d.rationale));
            if !d.model_versions.is_empty() {
                let _ = writeln!(
                    m,
                    "- Applies to model versions: {}",
                    esc(&d.model_versions.join(", "))
                );
            }
        }
        None => {
            let _ = writeln!(
                m,
                "*No decision yet.* The plan foresees: {}.",
                opt(inc.planned_action.as_deref())
            );
        }
    }

    let _ = writeln!(m, "\n## Parties informed (Art. 20(1), (2))\n");
    if inc.parties_informed.is_empty() {
        let _ = writeln!(m, "*None yet.*");
    } else {
        let _ = writeln!(
            m,
            "| party | name | channel | informed at | by | reference |\n|---|---|---|---|---|---|"
        );
        for p in &inc.parties_informed {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} |",
                esc(&p.kind.replace('_', " ")),
                esc(&p.name),
                esc(&p.channel),
                ts(p.informed_at),
                esc(&p.by),
                p.reference.as_deref().map_or(String::new(), esc)
            );
        }
    }

    let _ = writeln!(m, "\n## Corrective measures\n");
    if inc.tasks.is_empty() {
        let _ = writeln!(m, "*None recorded.*");
    } else {
        let _ = writeln!(
            m,
            "| # | measure | owner | due | state |\n|---|---|---|---|---|"
        );
        for t in &inc.tasks {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} |",
                t.n,
                esc(&t.title),
                esc(&t.owner),
                ts(t.due),
                esc(&t.state)
            );
        }
    }

    let _ = writeln!(m, "\n## Effectiveness and closure\n");
    match &inc.effectiveness {
        Some(e) => {
            let _ = writeln!(
                m,
                "- Effective: {} (checked by {} at {}): {}",
                if e.effective { "yes" } else { "no" },
                esc(&e.by),
                ts(e.at),
                esc(&e.evidence)
            );
        }
        None => {
            let _ = writeln!(m, "- Effectiveness: *not yet verified*");
        }
    }
    match &inc.closed {
        Some(c) => {
            let _ = writeln!(
                m,
                "- Closed by {} at {}: {}",
                esc(&c.by),
                ts(c.at),
                esc(&c.reason)
            );
        }
        None => {
            let _ = writeln!(m, "- *Open.*");
        }
    }

    let _ = writeln!(m, "\n## Serious-incident report (Art. 73)\n");
    match (inc.serious, inc.clock()) {
        (Some(s), Some(c)) => {
            let _ = writeln!(m, "| field | value |\n|---|---|");
            row(&mut m, "Category (Art. 3(49))", label(&s));
            row(
                &mut m,
                "Deadline",
                format!(
                    "{} ({}, {} days from awareness)",
                    ts(c.deadline),
                    c.article,
                    s.report_days()
                ),
            );
            row(
                &mut m,
                "Initial report submitted",
                c.initial_report_at.map_or("*not yet*".into(), ts),
            );
            row(
                &mut m,
                "Complete report submitted",
                c.complete_report_at.map_or("*not yet*".into(), ts),
            );
            row(
                &mut m,
                "Identification",
                format!(
                    "{} / {}",
                    esc(&inc.system_id),
                    esc(&inc.model_versions.join(", "))
                ),
            );
            row(
                &mut m,
                "Occurred (onset)",
                inc.onset.as_ref().map_or("*unknown*".into(), |o| ts(o.at)),
            );
            row(&mut m, "Aware", ts(inc.aware_at));
            row(
                &mut m,
                "Containment / corrective action",
                inc.decision
                    .as_ref()
                    .map_or("*not yet decided*".into(), |d| label(&d.decision)),
            );
            row(&mut m, "Root cause", opt(inc.root_cause.as_deref()));
            for r in &inc.authority_reports {
                row(
                    &mut m,
                    &format!("Report ({})", esc(&r.kind)),
                    format!(
                        "{} by {}{}",
                        ts(r.submitted_at),
                        esc(&r.by),
                        r.reference
                            .as_deref()
                            .map_or(String::new(), |x| format!(", reference {}", esc(x)))
                    ),
                );
            }
        }
        _ => {
            let _ = writeln!(m, "Not classified as a serious incident.");
        }
    }

    let _ = writeln!(m, "\n## Evidence snapshot\n");
    match evidence {
        Some((hash, v)) => {
            let _ = writeln!(m, "Frozen at {} before any remediation (Art. 73(6)); SHA-256 `{hash}`. {} window report(s) included.", v.get("frozen_at").and_then(Value::as_str).unwrap_or("?"), v.get("reports").and_then(Value::as_array).map_or(0, Vec::len));
        }
        None => {
            let _ = writeln!(m, "*Missing.*");
        }
    }
    if !alerts.is_empty() {
        let _ = writeln!(m, "\n## Alerts\n");
        for a in alerts.iter().take(50) {
            let _ = writeln!(
                m,
                "- `{}`: {}",
                esc(a.get("alert_id").and_then(Value::as_str).unwrap_or("?")),
                esc(a.get("summary").and_then(Value::as_str).unwrap_or(""))
            );
        }
        if alerts.len() > 50 {
            let _ = writeln!(
                m,
                "- ... and {} more (see the JSON export)",
                alerts.len() - 50
            );
        }
    }
    let _ = writeln!(m, "\n## Timeline (audit trail)\n");
    let _ = writeln!(
        m,
        "| # | at | who | what | details |\n|---|---|---|---|---|"
    );
    for e in timeline {
        let p: Value = serde_json::from_str(&e.payload).unwrap_or(Value::Null);
        let detail = match e.action.as_str() {
            "transition" => format!(
                "{} -> {}: {}",
                p.get("step").and_then(Value::as_str).unwrap_or(""),
                p.get("state").and_then(Value::as_str).unwrap_or(""),
                p.get("reason").and_then(Value::as_str).unwrap_or("")
            ),
            "note" => p
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            "alert_attached" => p
                .pointer("/alert/summary")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            _ => String::new(),
        };
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} |",
            e.seq,
            esc(&e.at),
            esc(&e.actor),
            esc(&e.action),
            esc(&detail)
        );
    }
    m
}
