//! `plan show`: the plan as the "post-market monitoring plan" section of the technical
//! documentation (Annex IV item 9), in Markdown, with its text escaped.

use std::fmt::Write as _;

use super::*;

impl Plan {
    /// The plan as the "post-market monitoring plan" section of the technical
    /// documentation (Annex IV item 9), in Markdown.
    pub fn to_markdown(&self) -> String {
        let mut m = String::new();
        let s = &self.system;
        let name = s.name.as_deref().unwrap_or(&s.id);
        let _ = writeln!(m, "# Post-market monitoring plan: {name}\n");
        let _ = writeln!(
            m,
            "Annex IV item 9 of the technical documentation; Art. 72 of Regulation (EU) 2024/1689.\n"
        );
        let _ = writeln!(
            m,
            "Plan version: {} (content hash `{}`).\n",
            s.plan_version.as_deref().unwrap_or("unnamed"),
            self.hash
        );
        let _ = writeln!(m, "## 1. System identity\n");
        let row = |m: &mut String, k: &str, v: Option<&str>| {
            let _ = writeln!(m, "| {k} | {} |", md_cell(v.unwrap_or("*not stated*")));
        };
        let _ = writeln!(m, "| | |\n|---|---|");
        row(&mut m, "System id", Some(&s.id));
        row(&mut m, "Name", s.name.as_deref());
        row(&mut m, "Intended purpose", s.intended_purpose.as_deref());
        row(&mut m, "Risk class", s.risk_class.as_deref());
        row(
            &mut m,
            "EU database registration",
            s.eu_database_id.as_deref(),
        );
        row(&mut m, "Provider", s.provider.as_deref());
        row(&mut m, "Our role", s.role.as_deref());
        let versions = s.versions.join(", ");
        row(
            &mut m,
            "Model versions",
            Some(&versions)
                .filter(|v| !v.is_empty())
                .map(|v| v.as_str()),
        );
        let deployments = s.deployments.join("; ");
        row(
            &mut m,
            "Deployments",
            Some(&deployments)
                .filter(|v| !v.is_empty())
                .map(|v| v.as_str()),
        );

        let _ = writeln!(m, "\n## 2. Declared performance\n");
        match self.performance.as_ref().filter(|p| !p.declared.is_empty()) {
            Some(p) => {
                let _ = writeln!(m, "| metric | declared level |\n|---|---|");
                for (metric, v) in &p.declared {
                    let _ = writeln!(m, "| {metric} | {v} |");
                }
                let _ = writeln!(
                    m,
                    "\nA final window below a declared level is a critical alert. Outcomes are joined within {} s of the prediction; a window is judged once at least {:.0}% of its predictions have an outcome.",
                    p.horizon_s,
                    p.min_coverage * 100.0
                );
            }
            None => {
                let _ = writeln!(m, "*No declared level.*");
            }
        }

        let _ = writeln!(m, "\n## 3. Monitored aspects\n");
        for a in self.aspects() {
            let _ = writeln!(m, "- {}", a.title());
        }
        if let Some(i) = &self.monitoring.interaction {
            let _ = writeln!(m, "\nInteraction with other AI systems: {}", md_text(i));
        }

        let _ = writeln!(m, "\n## 4. Data sources and exclusions\n");
        for d in &self.monitoring.data_sources {
            let _ = writeln!(m, "- Source: {}", md_text(d));
        }
        for d in &self.monitoring.excluded {
            let _ = writeln!(m, "- Excluded: {}", md_text(d));
        }
        let _ = writeln!(
            m,
            "- Law-enforcement deployers (Art. 72(2)): {}",
            self.monitoring
                .law_enforcement
                .as_deref()
                .map_or("*not stated*".to_owned(), md_text)
        );

        let _ = writeln!(m, "\n## 5. Methods\n");
        let _ = writeln!(m, "- Windows: {}.", self.window.describe());
        let _ = writeln!(m, "- Reference: {}.", self.reference_description());
        let _ = writeln!(
            m,
            "- Minimum samples per check: {}.",
            self.window.min_samples()
        );
        let _ = writeln!(
            m,
            "- Multiple testing: {}.",
            format!("{:?}", self.multiple_testing.method).to_lowercase()
        );

        let _ = writeln!(m, "\n## 6. Thresholds\n");
        let _ = writeln!(
            m,
            "| signal | check | warning | critical |\n|---|---|---|---|"
        );
        for sig in self.signals() {
            for c in &sig.checks {
                let t = &c.thresholds;
                let level = |v: Option<f64>, k: f64| match v {
                    Some(v) if !t.learned => v.to_string(),
                    _ if t.learned => format!("learned (mean + {k} sd of reference windows)"),
                    _ => "none".to_owned(),
                };
                let (kw, kc) = t.ks();
                let (w, cr) = (level(t.warning, kw), level(t.critical, kc));
                let _ = writeln!(
                    m,
                    "| {} | {} | {w} | {cr} |",
                    md_cell(&sig.name),
                    c.method.as_str()
                );
            }
        }

        let _ = writeln!(m, "\n## 7. Actions\n");
        let _ = writeln!(m, "| severity | action | decided by | opens an incident | runbook |\n|---|---|---|---|---|");
        for sev in [Severity::Warning, Severity::Critical] {
            let opens = if self.actions.opens_incident(sev) {
                "yes"
            } else {
                "no"
            };
            match self.actions.at(sev) {
                Some(a) => {
                    let _ = writeln!(
                        m,
                        "| {} | {} | {} | {opens} | {} |",
                        sev.as_str(),
                        a.action.as_str(),
                        match a.decided_by {
                            DecidedBy::Human => "a named person",
                            DecidedBy::Automatic => "automatic",
                        },
                        a.runbook.as_deref().map_or("".to_owned(), md_cell)
                    );
                }
                None => {
                    let _ = writeln!(
                        m,
                        "| {} | *not stated* | a named person | {opens} | |",
                        sev.as_str()
                    );
                }
            }
        }

        let _ = writeln!(m, "\n## 8. Routing\n");
        let a = &self.alerts;
        let receivers: Vec<String> = [
            a.alertmanager_url
                .as_ref()
                .map(|u| format!("- Alertmanager: {}", md_text(u))),
            a.webhook_url.as_ref().map(|u| {
                format!(
                    "- Webhook ({}): {}",
                    match a.webhook_sends {
                        crate::plan::WebhookSends::Episodes => "episodes",
                        crate::plan::WebhookSends::Windows => "every window's alerts",
                    },
                    md_text(u)
                )
            }),
            a.slack_webhook_url
                .as_ref()
                .map(|u| format!("- Slack-compatible webhook: {}", md_text(u))),
            a.pagerduty_routing_key
                .as_ref()
                .map(|_| format!("- PagerDuty Events API v2: {}", md_text(&a.pagerduty_url))),
        ]
        .into_iter()
        .flatten()
        .collect();
        if receivers.is_empty() {
            let _ = writeln!(m, "Alerts are published on the alerts topic only.");
        }
        for r in receivers {
            let _ = writeln!(m, "{r}");
        }
        let _ = writeln!(
            m,
            "- Paging: once per episode of a condition; it fires when {} of its last {} windows breach and resolves after {} clean windows in a row.",
            a.episodes.fire_after, a.episodes.of_last, a.episodes.resolve_after
        );
        if let Some(h) = a.heartbeat_s {
            let _ = writeln!(
                m,
                "- Heartbeat: no telemetry for more than {h} s raises an alert."
            );
        }
        let _ = writeln!(
            m,
            "- Lowest severity alerted: {}.",
            self.alerts.min_severity.as_str()
        );

        let _ = writeln!(m, "\n## 9. Parties to inform of corrective action\n");
        if self.parties.is_empty() {
            let _ = writeln!(m, "*None stated.*");
        } else {
            let _ = writeln!(
                m,
                "| party | name | contact | notices by | acknowledge within | informed of |\n|---|---|---|---|---|---|"
            );
            for p in &self.parties {
                let by: Vec<String> = p
                    .email()
                    .map(|a| format!("e-mail to {a}"))
                    .into_iter()
                    .chain(p.webhook_url().map(|u| format!("webhook {u}")))
                    .collect();
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} h | {} |",
                    p.kind.title(),
                    md_cell(&p.name),
                    p.contact.as_deref().map_or("*none*".to_owned(), md_cell),
                    if by.is_empty() {
                        "*a person informs them*".to_owned()
                    } else {
                        md_cell(&by.join("; "))
                    },
                    p.acknowledge_within_h
                        .unwrap_or(driftwatch_incident::policy::DEFAULT_ACK_HOURS),
                    if p.inform_on.is_empty() {
                        "every corrective decision".to_owned()
                    } else {
                        md_cell(&p.inform_on.join(", "))
                    }
                );
            }
        }

        let _ = writeln!(m, "\n## 10. Owners, review and history\n");
        for o in &self.owners {
            let _ = writeln!(
                m,
                "- {}: {}{}",
                md_text(&o.role),
                md_text(&o.name),
                o.contact
                    .as_deref()
                    .map_or(String::new(), |c| format!(" ({})", md_text(c)))
            );
        }
        let _ = writeln!(
            m,
            "- Review every {}; last reviewed {}.",
            self.review
                .cadence_days
                .map_or("*(not stated)*".to_owned(), |d| format!("{d} days")),
            self.review.last_reviewed.as_deref().unwrap_or("*never*")
        );
        if !self.review.history.is_empty() {
            let _ = writeln!(m, "\n| version | date | change |\n|---|---|---|");
            for h in &self.review.history {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} |",
                    md_cell(&h.version),
                    md_cell(&h.date),
                    md_cell(&h.change)
                );
            }
        }
        let warnings = self.warnings();
        if !warnings.is_empty() {
            let _ = writeln!(m, "\n## Gaps\n");
            for w in warnings {
                let _ = writeln!(m, "- `{}`: {}", w.key, w.message);
            }
        }
        m
    }

    fn reference_description(&self) -> String {
        let r = &self.reference;
        if let Some(f) = &r.file {
            format!("the file `{}`", f.display())
        } else if let Some(n) = r.first_events {
            format!("the first {n} predictions of the stream")
        } else if let (Some(f), Some(t)) = (r.from, r.to) {
            format!("the predictions from {f} to {t}")
        } else {
            "not stated".into()
        }
    }
}

/// Text safe in a Markdown paragraph: no raw HTML, no line breaks.
pub fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text safe in a Markdown table cell.
pub fn md_cell(s: &str) -> String {
    md_text(s).replace('|', "\\|")
}
