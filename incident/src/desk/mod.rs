//! The incident desk: what happens to an alert, a report, a person's step. Pure of Kafka
//! and HTTP (those are drivers: [`crate::service`], [`crate::api`]); every time comes in
//! as an argument, so tests drive the clocks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, Utc};
use serde_json::{json, Value};

use driftwatch_schema::{Alert, AlertKind, Severity, WindowInfo};

use crate::model::*;
use crate::policy::Policy;
use crate::store::{AlertOutcome, Effects, Refusal, Store, StoreError};

mod onset;
mod people;
mod reminders;
mod requests;

pub use onset::onset;
pub use requests::*;

/// Reports before the trigger kept in the evidence snapshot.
pub const EVIDENCE_WINDOWS: i64 = 10;

/// What handling an alert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Opened this incident.
    Opened(String),
    /// Attached to this open incident.
    Attached(String),
    /// Recorded only.
    Recorded,
    /// A redelivery.
    Duplicate,
    /// Not for incidents (the service's own reminders).
    Ignored,
}

/// The desk.
pub struct Desk {
    /// The store.
    pub store: Arc<Store>,
    policies: HashMap<String, Policy>,
    /// How long an opening waits for its window's report to arrive (it travels on
    /// another topic).
    pub evidence_wait: Duration,
    /// Lead times of Art. 73 reminders before the deadline.
    pub remind_before: Vec<Span>,
    /// Decisions to restrict or disable are put in the control outbox for the agents
    /// (off when the service has no control topic).
    pub control: bool,
    /// Composes the notices a decision sends to the plan's parties.
    pub composer: crate::notify::Composer,
}

/// The control message a decision sends to the system's agents, if any: disable for
/// disable, withdraw and recall; restrict for restrict_use.
pub fn control_for(
    decision: Decision,
    inc: &Incident,
    decided_by: &str,
    reason: &str,
    restriction: Option<&str>,
    model_versions: &[String],
    at: DateTime<Utc>,
) -> Option<driftwatch_schema::Control> {
    use driftwatch_schema::ControlAction;
    let action = match decision {
        Decision::Disable | Decision::Withdraw | Decision::Recall => ControlAction::Disable,
        Decision::RestrictUse => ControlAction::Restrict,
        Decision::BringIntoConformity | Decision::ContinueUse => return None,
    };
    Some(driftwatch_schema::Control {
        v: driftwatch_schema::WIRE_VERSION,
        command_id: uuid::Uuid::new_v4(),
        system_id: inc.system_id.clone(),
        action,
        restriction: (action == ControlAction::Restrict)
            .then(|| restriction.unwrap_or(reason).chars().take(1000).collect()),
        reason: format!("{}: {}", decision.as_str(), reason)
            .chars()
            .take(4000)
            .collect(),
        decided_by: decided_by.chars().take(256).collect(),
        incident_id: Some(inc.id.clone()),
        model_versions: model_versions.to_vec(),
        issued_at: at,
    })
}

fn refuse(status: u16, code: &str, field: Option<&str>, message: String) -> Refusal {
    Refusal {
        status,
        code: code.into(),
        field: field.map(str::to_owned),
        message,
        current_state: None,
    }
}

fn required(field: &str, v: &Option<String>) -> Result<String, Refusal> {
    match v.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s.to_owned()),
        _ => Err(refuse(
            422,
            "missing_field",
            Some(field),
            format!("`{field}` is required and may not be empty"),
        )),
    }
}

fn new_id() -> String {
    let mut b = [0u8; 5];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: fall back to the clock (ids stay unique per nanosecond).
        let n = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
        b.copy_from_slice(&n.to_be_bytes()[3..]);
    }
    format!("INC-{}", crate::audit::hex(&b).to_uppercase())
}

impl Desk {
    /// A desk over a store with the plans' policies.
    pub fn new(store: Arc<Store>, policies: Vec<Policy>) -> Desk {
        Desk {
            store,
            policies: policies
                .into_iter()
                .map(|p| (p.system_id.clone(), p))
                .collect(),
            evidence_wait: Duration::from_secs(5),
            remind_before: vec![Span::hours(72), Span::hours(24)],
            control: true,
            composer: crate::notify::Composer {
                public_url: format!("http://{}", crate::service::DEFAULT_LISTEN),
            },
        }
    }

    /// The policies, by system.
    pub fn policies(&self) -> &HashMap<String, Policy> {
        &self.policies
    }

    fn policy(&self, system: &str) -> Policy {
        self.policies
            .get(system)
            .cloned()
            .unwrap_or_else(|| Policy::default_for(system))
    }

    /// Record the plan versions in force in the audit trail (once per version).
    pub async fn record_plans(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        for p in self.policies.values() {
            if !p.plan_hash.is_empty() {
                self.store
                    .plan_seen(now, &p.system_id, &p.plan_hash, p.plan_version.as_deref())
                    .await?;
            }
        }
        Ok(())
    }

    /// A report from the reports topic: kept for evidence and onset.
    pub async fn handle_report(&self, now: DateTime<Utc>, doc: &Value) -> Result<(), StoreError> {
        let (Some(system), Some(index)) = (
            doc.get("system_id").and_then(Value::as_str),
            doc.pointer("/window/index").and_then(Value::as_i64),
        ) else {
            return Ok(());
        };
        let kind = match doc.get("kind").and_then(Value::as_str) {
            Some("performance") => "performance",
            _ => "drift",
        };
        self.store.store_report(now, system, kind, index, doc).await
    }

    /// An alert from the alerts topic.
    pub async fn handle_alert(
        &self,
        now: DateTime<Utc>,
        alert: &Alert,
    ) -> Result<Handled, StoreError> {
        // Reminders are the service's own; episode notifications repeat the windows'
        // own alerts for the pagers.
        if alert.kind == AlertKind::Obligation || alert.lifecycle.is_some() {
            return Ok(Handled::Ignored);
        }
        let policy = self.policy(&alert.system_id);
        let condition = policy.condition(alert);
        if self.store.alert_seen(&alert.alert_id).await? {
            return Ok(Handled::Duplicate);
        }
        let open = self.store.open_for(&condition).await?;
        if open.is_some() || !policy.opens(alert.severity) {
            return Ok(
                match self.store.record_alert(now, alert, &condition).await? {
                    AlertOutcome::Duplicate => Handled::Duplicate,
                    AlertOutcome::Attached(id) => Handled::Attached(id),
                    AlertOutcome::Recorded => Handled::Recorded,
                },
            );
        }
        let kind = report_kind(alert);
        self.wait_for_report(&alert.system_id, kind, alert.window.index)
            .await?;
        let history = self
            .store
            .reports_before(
                &alert.system_id,
                kind,
                alert.window.index,
                EVIDENCE_WINDOWS * 10,
            )
            .await?;
        let onset = onset(alert, &history);
        let evidence = json!({
            "frozen_at": crate::audit::ts(now),
            "alert": alert,
            "plan": {"hash": alert.plan_hash.clone().or(Some(policy.plan_hash.clone()).filter(|h| !h.is_empty())), "version": alert.plan_version.clone().or(policy.plan_version.clone())},
            "reference_version": alert.reference_version,
            "model_versions": policy.model_versions,
            "reports": history.iter().take(EVIDENCE_WINDOWS as usize).map(|(_, d)| d.clone()).collect::<Vec<_>>(),
            "trigger_report_received": history.first().is_some_and(|(k, _)| *k == alert.window.index),
        });
        let planned = policy.action(alert.severity).cloned();
        let detected_at = alert.window.end.unwrap_or(alert.window.last_event_at);
        let inc = Incident {
            id: new_id(),
            system_id: alert.system_id.clone(),
            title: alert.summary.clone(),
            state: State::Open,
            severity: alert.severity,
            condition,
            trigger: Trigger {
                kind: "alert".into(),
                alert_id: Some(alert.alert_id.clone()),
                reported_by: None,
                description: None,
            },
            plan_hash: alert
                .plan_hash
                .clone()
                .or(Some(policy.plan_hash.clone()).filter(|h| !h.is_empty())),
            plan_version: alert.plan_version.clone().or(policy.plan_version.clone()),
            reference_version: Some(alert.reference_version.clone()),
            model_versions: policy.model_versions.clone(),
            detected_at,
            aware_at: now,
            opened_by: "driftwatch".into(),
            onset,
            classification: None,
            serious: None,
            requirements_breached: Vec::new(),
            assessment: None,
            root_cause: None,
            decision: None,
            planned_action: planned.as_ref().map(|a| a.action.clone()),
            parties_informed: Vec::new(),
            effectiveness: None,
            closed: None,
            authority_reports: Vec::new(),
            tasks: Vec::new(),
            alerts: AlertSummary {
                count: 1,
                first_at: Some(now),
                last_at: Some(now),
                last_window: Some(alert.window.index),
            },
            evidence_hash: String::new(),
            updated_at: now,
            revision: 0,
        };
        let opened = self
            .store
            .open_incident(now, inc.clone(), &evidence, Some(alert))
            .await;
        let opened = match opened {
            Ok(o) => o,
            Err(StoreError::Refused(r)) if r.code == "duplicate_alert" => {
                return Ok(Handled::Duplicate)
            }
            Err(e) => return Err(e),
        };
        if opened.id != inc.id {
            return Ok(Handled::Attached(opened.id));
        }
        if let Some(a) = planned.filter(|a| a.automatic) {
            let decision = match a.action.as_str() {
                "disable" => Decision::Disable,
                "restrict" => Decision::RestrictUse,
                _ => Decision::ContinueUse,
            };
            let rationale = format!(
                "automatic per the monitoring plan ({}): {} on {} alerts",
                opened.plan_hash.as_deref().unwrap_or("no plan"),
                a.action,
                alert.severity.as_str()
            );
            let control = self.control;
            let policy = self.policy(&opened.system_id);
            let composer = self.composer.clone();
            self.store
                .change_with(
                    now,
                    &opened.id,
                    "driftwatch",
                    "transition",
                    json!({"step": "decide", "from": "open", "decision": decision.as_str(), "reason": rationale, "automatic": true}),
                    |inc| {
                        inc.state = State::ActionDecided;
                        let record = DecisionRecord {
                            decision,
                            rationale: rationale.clone(),
                            decided_by: "driftwatch (plan rule)".into(),
                            decided_at: now,
                            automatic: true,
                            model_versions: Vec::new(),
                        };
                        let notices = composer.notices(&policy, inc, &record, None, 0);
                        inc.decision = Some(record);
                        Ok(Effects {
                            control: control
                                .then(|| {
                                    control_for(
                                        decision,
                                        inc,
                                        "plan",
                                        &rationale,
                                        None,
                                        &[],
                                        now,
                                    )
                                })
                                .flatten(),
                            notices,
                        })
                    },
                )
                .await?;
        }
        Ok(Handled::Opened(opened.id))
    }

    async fn wait_for_report(
        &self,
        system: &str,
        kind: &str,
        index: i64,
    ) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + self.evidence_wait;
        loop {
            let got = self.store.reports_before(system, kind, index, 1).await?;
            if got.first().is_some_and(|(k, _)| *k == index)
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn report_kind(alert: &Alert) -> &'static str {
    match alert.kind {
        AlertKind::Drift => "drift",
        _ => "performance",
    }
}
