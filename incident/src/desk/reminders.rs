//! Obligations falling due: Art. 73 report deadlines and overdue corrective tasks,
//! each returned once as an `obligation` alert to publish.

use chrono::{DateTime, Duration as Span, Utc};
use serde_json::json;

use super::*;

impl Desk {
    /// Reminders due at `now`: Art. 73 deadlines approaching or passed without a report,
    /// and overdue tasks. Each is returned (to publish) once, and audited.
    pub async fn due_reminders(&self, now: DateTime<Utc>) -> Result<Vec<Alert>, StoreError> {
        let mut out = Vec::new();
        for inc in self.store.list(None, None, 10_000).await? {
            if inc.state == State::Closed {
                continue;
            }
            if let Some(clock) = inc.clock().filter(|c| c.initial_report_at.is_none()) {
                let mut leads: Vec<(String, Span)> = self
                    .remind_before
                    .iter()
                    .map(|l| (format!("{}h", l.num_hours()), *l))
                    .collect();
                leads.push(("overdue".into(), Span::zero()));
                // Only the most urgent due reminder: a service started late does not
                // send three at once.
                if let Some((label, lead)) = leads
                    .iter()
                    .filter(|(_, l)| now >= clock.deadline - *l)
                    .min_by_key(|(_, l)| *l)
                {
                    let key = format!("{}/art73/{label}", inc.id);
                    if self.store.mark(&key, now).await? {
                        let left = clock.deadline - now;
                        let hours = left.num_minutes() as f64 / 60.0;
                        let sev = if left <= Span::hours(24) {
                            Severity::Critical
                        } else {
                            Severity::Warning
                        };
                        let summary = if left <= Span::zero() {
                            format!("{}: the serious-incident report ({}) was due {} and is overdue; aware since {}", inc.id, clock.article, crate::audit::ts(clock.deadline), crate::audit::ts(inc.aware_at))
                        } else {
                            format!("{}: the serious-incident report ({}) is due in {:.0} h, by {}; aware since {}", inc.id, clock.article, hours, crate::audit::ts(clock.deadline), crate::audit::ts(inc.aware_at))
                        };
                        let a = obligation(
                            &inc,
                            &key,
                            sev,
                            "art73.report",
                            "deadline",
                            hours,
                            lead.num_minutes() as f64 / 60.0,
                            clock.deadline,
                            summary,
                        );
                        self.store.audit(now, "driftwatch", "reminder_sent", Some(&inc.id), json!({"key": key, "alert_id": a.alert_id, "deadline": crate::audit::ts(clock.deadline)})).await?;
                        out.push(a);
                    }
                }
            }
            for t in inc
                .tasks
                .iter()
                .filter(|t| t.state == "open" && t.due <= now)
            {
                let key = format!("{}/task/{}/overdue", inc.id, t.n);
                if self.store.mark(&key, now).await? {
                    let over = (now - t.due).num_minutes() as f64 / 60.0;
                    let summary = format!(
                        "{}: corrective task {} \"{}\" (owner {}) was due {} and is still open",
                        inc.id,
                        t.n,
                        t.title,
                        t.owner,
                        crate::audit::ts(t.due)
                    );
                    let a = obligation(
                        &inc,
                        &key,
                        Severity::Warning,
                        &format!("task.{}", t.n),
                        "overdue",
                        -over,
                        0.0,
                        t.due,
                        summary,
                    );
                    self.store
                        .audit(
                            now,
                            "driftwatch",
                            "reminder_sent",
                            Some(&inc.id),
                            json!({"key": key, "alert_id": a.alert_id, "task": t.n}),
                        )
                        .await?;
                    out.push(a);
                }
            }
        }
        Ok(out)
    }
}

#[allow(clippy::too_many_arguments)]
fn obligation(
    inc: &Incident,
    key: &str,
    severity: Severity,
    signal: &str,
    method: &str,
    value: f64,
    threshold: f64,
    due: DateTime<Utc>,
    summary: String,
) -> Alert {
    Alert {
        alert_id: key.to_owned(),
        system_id: inc.system_id.clone(),
        kind: AlertKind::Obligation,
        severity,
        signal: signal.to_owned(),
        method: method.to_owned(),
        statistic: None,
        p_value: None,
        value,
        threshold,
        samples: 0,
        window: WindowInfo {
            index: 0,
            start: Some(inc.aware_at),
            end: Some(due),
            events: 0,
            outcomes: 0,
            first_event_at: inc.aware_at,
            last_event_at: due,
            complete: true,
        },
        reference_version: inc
            .reference_version
            .clone()
            .unwrap_or_else(|| "none".into()),
        plan_version: inc.plan_version.clone(),
        plan_hash: inc.plan_hash.clone(),
        summary,
        lifecycle: None,
    }
}
