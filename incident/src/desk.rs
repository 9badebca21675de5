//! The incident desk: what happens to an alert, a report, a person's step. Pure of Kafka
//! and HTTP (those are drivers: [`crate::service`], [`crate::api`]); every time comes in
//! as an argument, so tests drive the clocks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use driftwatch_schema::{Alert, AlertKind, Severity, WindowInfo};

use crate::model::*;
use crate::policy::Policy;
use crate::store::{AlertOutcome, Refusal, Store, StoreError};

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

/// A request to open an incident by hand (a person, or a deployer's report).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    /// The system.
    pub system_id: Option<String>,
    /// One line.
    pub title: Option<String>,
    /// What happened.
    pub description: Option<String>,
    /// `warning` or `critical` (default critical).
    #[serde(default)]
    pub severity: Option<String>,
    /// `person`, `complaint` or `authority_request` (deployers: always `deployer_report`).
    #[serde(default)]
    pub trigger: Option<String>,
    /// When the provider became aware, if before now (RFC 3339).
    #[serde(default)]
    pub aware_at: Option<DateTime<Utc>>,
    /// A serious-incident category, if known at once.
    #[serde(default)]
    pub serious: Option<Serious>,
}

/// The body of a workflow step.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    /// Why (required for every step).
    pub reason: Option<String>,
    /// assess: findings.
    #[serde(default)]
    pub assessment: Option<String>,
    /// assess: root cause, if known.
    #[serde(default)]
    pub root_cause: Option<String>,
    /// assess: classification.
    #[serde(default)]
    pub classification: Option<Classification>,
    /// assess: serious-incident category.
    #[serde(default)]
    pub serious: Option<Serious>,
    /// assess: requirements breached.
    #[serde(default)]
    pub requirements_breached: Option<Vec<String>>,
    /// decide: the action.
    #[serde(default)]
    pub decision: Option<Decision>,
    /// decide: the model versions it applies to.
    #[serde(default)]
    pub model_versions: Option<Vec<String>>,
    /// decide `restrict_use`: what the restricted system may still do (default: the
    /// reason).
    #[serde(default)]
    pub restriction: Option<String>,
    /// inform: the parties informed.
    #[serde(default)]
    pub parties: Option<Vec<PartyInput>>,
    /// verify: whether the action worked.
    #[serde(default)]
    pub effective: Option<bool>,
    /// verify: what shows it.
    #[serde(default)]
    pub evidence: Option<String>,
}

/// A party informed, as given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyInput {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// How.
    pub channel: String,
    /// A reference.
    #[serde(default)]
    pub reference: Option<String>,
}

/// A task request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    /// What to do.
    pub title: Option<String>,
    /// Who.
    pub owner: Option<String>,
    /// By when.
    pub due: Option<DateTime<Utc>>,
}

/// A task update.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskUpdate {
    /// `open`, `done` or `cancelled`.
    pub state: String,
    /// Why.
    pub reason: Option<String>,
}

/// An Art. 73 report submitted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// `initial` or `complete`.
    pub kind: String,
    /// The authority's reference.
    #[serde(default)]
    pub reference: Option<String>,
    /// When it was submitted (default now).
    #[serde(default)]
    pub submitted_at: Option<DateTime<Utc>>,
}

/// A classification after assessment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    /// Why.
    pub reason: Option<String>,
    /// Classification.
    #[serde(default)]
    pub classification: Option<Classification>,
    /// Serious-incident category (`null` to clear is not allowed: a clock once started
    /// stays).
    #[serde(default)]
    pub serious: Option<Serious>,
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
        if alert.kind == AlertKind::Obligation {
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
            self.store
                .change_with(
                    now,
                    &opened.id,
                    "driftwatch",
                    "transition",
                    json!({"step": "decide", "from": "open", "decision": decision.as_str(), "reason": rationale, "automatic": true}),
                    |inc| {
                        inc.state = State::ActionDecided;
                        inc.decision = Some(DecisionRecord {
                            decision,
                            rationale: rationale.clone(),
                            decided_by: "driftwatch (plan rule)".into(),
                            decided_at: now,
                            automatic: true,
                            model_versions: Vec::new(),
                        });
                        Ok(control
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
                            .flatten())
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

    /// Open an incident by hand. `deployer` marks a deployer's report (Art. 26(5)).
    pub async fn open_manual(
        &self,
        now: DateTime<Utc>,
        actor: &str,
        deployer: bool,
        req: OpenRequest,
    ) -> Result<Incident, StoreError> {
        let system = required("system_id", &req.system_id).map_err(StoreError::Refused)?;
        let description = required("description", &req.description).map_err(StoreError::Refused)?;
        let severity = match req.severity.as_deref() {
            None => Severity::Critical,
            Some(s) => match parse_severity(s) {
                Some(s @ (Severity::Warning | Severity::Critical)) => s,
                _ => {
                    return Err(StoreError::Refused(refuse(
                        422,
                        "invalid_field",
                        Some("severity"),
                        format!("severity \"{s}\": use warning or critical"),
                    )))
                }
            },
        };
        let trigger = if deployer {
            "deployer_report".to_owned()
        } else {
            match req.trigger.as_deref().unwrap_or("person") {
                t @ ("person" | "complaint" | "authority_request") => t.to_owned(),
                t => {
                    return Err(StoreError::Refused(refuse(
                        422,
                        "invalid_field",
                        Some("trigger"),
                        format!("trigger \"{t}\": use person, complaint or authority_request"),
                    )))
                }
            }
        };
        let aware_at = match req.aware_at {
            Some(t) if t > now => {
                return Err(StoreError::Refused(refuse(
                    422,
                    "invalid_field",
                    Some("aware_at"),
                    "aware_at is in the future".into(),
                )))
            }
            Some(t) => t,
            None => now,
        };
        let policy = self.policy(&system);
        let id = new_id();
        let title = req
            .title
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| description.chars().take(120).collect());
        let evidence = json!({
            "frozen_at": crate::audit::ts(now),
            "report": {"by": actor, "trigger": trigger, "description": description},
            "plan": {"hash": Some(policy.plan_hash.clone()).filter(|h| !h.is_empty()), "version": policy.plan_version},
            "model_versions": policy.model_versions,
        });
        let inc = Incident {
            id: id.clone(),
            system_id: system.clone(),
            title,
            state: State::Open,
            severity,
            // Reports by people never merge: each is its own record.
            condition: format!("{system}/report/{id}"),
            trigger: Trigger {
                kind: trigger,
                alert_id: None,
                reported_by: Some(actor.to_owned()),
                description: Some(description),
            },
            plan_hash: Some(policy.plan_hash.clone()).filter(|h| !h.is_empty()),
            plan_version: policy.plan_version.clone(),
            reference_version: None,
            model_versions: policy.model_versions.clone(),
            detected_at: aware_at,
            aware_at,
            opened_by: actor.to_owned(),
            onset: None,
            classification: None,
            serious: req.serious,
            requirements_breached: Vec::new(),
            assessment: None,
            root_cause: None,
            decision: None,
            planned_action: policy.action(severity).map(|a| a.action.clone()),
            parties_informed: Vec::new(),
            effectiveness: None,
            closed: None,
            authority_reports: Vec::new(),
            tasks: Vec::new(),
            alerts: AlertSummary::default(),
            evidence_hash: String::new(),
            updated_at: now,
            revision: 0,
        };
        self.store.open_incident(now, inc, &evidence, None).await
    }

    /// A workflow step by a named person.
    pub async fn step(
        &self,
        now: DateTime<Utc>,
        id: &str,
        step: Step,
        actor: &str,
        req: StepRequest,
    ) -> Result<Incident, StoreError> {
        let reason = required("reason", &req.reason).map_err(StoreError::Refused)?;
        let policy_parties = self
            .store
            .get(id)
            .await?
            .map(|i| self.policy(&i.system_id).parties)
            .unwrap_or_default();
        let payload = json!({
            "step": step.as_str(),
            "reason": reason,
            "request": {
                "assessment": req.assessment, "root_cause": req.root_cause,
                "classification": req.classification, "serious": req.serious,
                "requirements_breached": req.requirements_breached,
                "decision": req.decision, "model_versions": req.model_versions,
                "parties": req.parties.as_ref().map(|ps| ps.iter().map(|p| json!({"kind": p.kind, "name": p.name, "channel": p.channel, "reference": p.reference})).collect::<Vec<_>>()),
                "effective": req.effective, "evidence": req.evidence,
            },
        });
        let control = self.control;
        self.store
            .change_with(now, id, actor, "transition", payload, |inc| {
                if inc.state != step.from_state() {
                    return Err(Refusal {
                        status: 409,
                        code: "illegal_transition".into(),
                        field: None,
                        message: format!(
                            "incident {} is {}; `{}` needs it to be {}",
                            inc.id,
                            inc.state.as_str(),
                            step.as_str(),
                            step.from_state().as_str()
                        ),
                        current_state: Some(inc.state),
                    });
                }
                let mut effective = true;
                let mut command = None;
                match step {
                    Step::Assess => {
                        inc.assessment = Some(required("assessment", &req.assessment)?);
                        if let Some(r) = req.root_cause.clone() {
                            inc.root_cause = Some(r);
                        }
                        if let Some(c) = req.classification {
                            inc.classification = Some(c);
                        }
                        if let Some(s) = req.serious {
                            inc.serious = Some(s);
                            inc.classification = Some(Classification::SeriousIncident);
                        }
                        if let Some(r) = req.requirements_breached.clone() {
                            inc.requirements_breached = r;
                        }
                    }
                    Step::Decide => {
                        let decision = req.decision.ok_or_else(|| {
                            refuse(
                                422,
                                "missing_field",
                                Some("decision"),
                                "`decision` is required: bring_into_conformity, restrict_use, disable, withdraw, recall or continue_use".into(),
                            )
                        })?;
                        inc.decision = Some(DecisionRecord {
                            decision,
                            rationale: reason.clone(),
                            decided_by: actor.to_owned(),
                            decided_at: now,
                            automatic: false,
                            model_versions: req.model_versions.clone().unwrap_or_default(),
                        });
                        if control {
                            command = control_for(
                                decision,
                                inc,
                                actor,
                                &reason,
                                req.restriction.as_deref(),
                                &req.model_versions.clone().unwrap_or_default(),
                                now,
                            );
                        }
                    }
                    Step::Inform => {
                        let parties = req.parties.clone().unwrap_or_default();
                        let decision = inc.decision.as_ref().map(|d| d.decision);
                        if parties.is_empty() && decision != Some(Decision::ContinueUse) {
                            let expected: Vec<String> = policy_parties
                                .iter()
                                .filter(|p| {
                                    decision.is_some_and(|d| {
                                        p.inform_on.is_empty()
                                            || p.inform_on.iter().any(|x| x == d.as_str())
                                    })
                                })
                                .map(|p| format!("{} {}", p.kind, p.name))
                                .collect();
                            return Err(refuse(
                                422,
                                "missing_field",
                                Some("parties"),
                                format!(
                                    "`parties` is required for a corrective decision (Art. 20(1)); the plan lists: {}",
                                    if expected.is_empty() { "none".to_owned() } else { expected.join(", ") }
                                ),
                            ));
                        }
                        for (i, p) in parties.iter().enumerate() {
                            if p.name.trim().is_empty() || p.channel.trim().is_empty() {
                                return Err(refuse(
                                    422,
                                    "missing_field",
                                    Some(&format!("parties[{i}]")),
                                    "each party needs a name and a channel".into(),
                                ));
                            }
                            inc.parties_informed.push(PartyInformed {
                                kind: p.kind.clone(),
                                name: p.name.clone(),
                                channel: p.channel.clone(),
                                informed_at: now,
                                by: actor.to_owned(),
                                reference: p.reference.clone(),
                            });
                        }
                    }
                    Step::Verify => {
                        effective = req.effective.ok_or_else(|| {
                            refuse(422, "missing_field", Some("effective"), "`effective` (true or false) is required".into())
                        })?;
                        inc.effectiveness = Some(Effectiveness {
                            effective,
                            evidence: required("evidence", &req.evidence)?,
                            by: actor.to_owned(),
                            at: now,
                        });
                    }
                    Step::Close => {
                        inc.closed = Some(Closure {
                            by: actor.to_owned(),
                            at: now,
                            reason: reason.clone(),
                        });
                    }
                    Step::Reopen => {
                        inc.closed = None;
                    }
                }
                inc.state = step.to_state(effective);
                Ok(command.take())
            })
            .await
            .map_err(|e| match e {
                StoreError::Db(ref db) if is_unique_violation(db) => StoreError::Refused(refuse(
                    409,
                    "already_open",
                    None,
                    "another incident is open for the same condition; close it first".into(),
                )),
                e => e,
            })
    }

    /// Lift a restriction or disablement: the system's agents are told it may serve.
    pub async fn enable(
        &self,
        now: DateTime<Utc>,
        actor: &str,
        system: &str,
        reason: Option<String>,
        incident_id: Option<String>,
    ) -> Result<driftwatch_schema::Control, StoreError> {
        let reason = required("reason", &reason).map_err(StoreError::Refused)?;
        if !driftwatch_schema::valid_system_id(system) {
            return Err(StoreError::Refused(refuse(
                422,
                "invalid_field",
                Some("system_id"),
                format!("\"{system}\" is not a system id"),
            )));
        }
        if let Some(id) = &incident_id {
            self.store
                .get(id)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
        }
        let c = driftwatch_schema::Control {
            v: driftwatch_schema::WIRE_VERSION,
            command_id: uuid::Uuid::new_v4(),
            system_id: system.to_owned(),
            action: driftwatch_schema::ControlAction::Allow,
            restriction: None,
            reason: reason.chars().take(4000).collect(),
            decided_by: actor.chars().take(256).collect(),
            incident_id,
            model_versions: Vec::new(),
            issued_at: now,
        };
        self.store.control(now, actor, &c, &reason).await?;
        Ok(c)
    }

    /// A note on the timeline.
    pub async fn note(
        &self,
        now: DateTime<Utc>,
        id: &str,
        actor: &str,
        text: Option<String>,
    ) -> Result<Incident, StoreError> {
        let text = required("text", &text).map_err(StoreError::Refused)?;
        self.store
            .change(now, id, actor, "note", json!({"text": text}), |_| Ok(()))
            .await
    }

    /// Classify (or reclassify) an incident; a serious category starts the Art. 73 clock.
    pub async fn classify(
        &self,
        now: DateTime<Utc>,
        id: &str,
        actor: &str,
        req: ClassifyRequest,
    ) -> Result<Incident, StoreError> {
        let reason = required("reason", &req.reason).map_err(StoreError::Refused)?;
        self.store
            .change(
                now,
                id,
                actor,
                "classified",
                json!({"reason": reason, "classification": req.classification, "serious": req.serious}),
                |inc| {
                    if req.classification.is_none() && req.serious.is_none() {
                        return Err(refuse(422, "missing_field", Some("classification"), "give `classification` or `serious`".into()));
                    }
                    if let Some(c) = req.classification {
                        inc.classification = Some(c);
                    }
                    if let Some(s) = req.serious {
                        inc.serious = Some(s);
                        inc.classification = Some(Classification::SeriousIncident);
                    }
                    Ok(())
                },
            )
            .await
    }

    /// Add a corrective measure.
    pub async fn add_task(
        &self,
        now: DateTime<Utc>,
        id: &str,
        actor: &str,
        req: TaskRequest,
    ) -> Result<Incident, StoreError> {
        let title = required("title", &req.title).map_err(StoreError::Refused)?;
        let owner = required("owner", &req.owner).map_err(StoreError::Refused)?;
        let due = req.due.ok_or_else(|| {
            StoreError::Refused(refuse(
                422,
                "missing_field",
                Some("due"),
                "`due` (RFC 3339) is required".into(),
            ))
        })?;
        self.store
            .change(
                now,
                id,
                actor,
                "task_added",
                json!({"title": title, "owner": owner, "due": crate::audit::ts(due)}),
                |inc| {
                    if inc.state == State::Closed {
                        return Err(Refusal {
                            status: 409,
                            code: "illegal_transition".into(),
                            field: None,
                            message: format!("incident {} is closed; reopen it first", inc.id),
                            current_state: Some(inc.state),
                        });
                    }
                    let n = inc.tasks.len() as u32 + 1;
                    inc.tasks.push(Task {
                        n,
                        title: title.clone(),
                        owner: owner.clone(),
                        due,
                        state: "open".into(),
                        created_by: actor.to_owned(),
                        updated_at: now,
                    });
                    Ok(())
                },
            )
            .await
    }

    /// Change a task's state.
    pub async fn update_task(
        &self,
        now: DateTime<Utc>,
        id: &str,
        n: u32,
        actor: &str,
        req: TaskUpdate,
    ) -> Result<Incident, StoreError> {
        let reason = required("reason", &req.reason).map_err(StoreError::Refused)?;
        if !matches!(req.state.as_str(), "open" | "done" | "cancelled") {
            return Err(StoreError::Refused(refuse(
                422,
                "invalid_field",
                Some("state"),
                format!("task state \"{}\": use open, done or cancelled", req.state),
            )));
        }
        self.store
            .change(
                now,
                id,
                actor,
                "task_updated",
                json!({"task": n, "state": req.state, "reason": reason}),
                |inc| {
                    let t = inc.tasks.iter_mut().find(|t| t.n == n).ok_or_else(|| {
                        refuse(
                            404,
                            "not_found",
                            Some("task"),
                            format!("incident {id} has no task {n}"),
                        )
                    })?;
                    t.state = req.state.clone();
                    t.updated_at = now;
                    Ok(())
                },
            )
            .await
    }

    /// Record an Art. 73 report submitted to the authority.
    pub async fn authority_report(
        &self,
        now: DateTime<Utc>,
        id: &str,
        actor: &str,
        req: ReportRequest,
    ) -> Result<Incident, StoreError> {
        if !matches!(req.kind.as_str(), "initial" | "complete") {
            return Err(StoreError::Refused(refuse(
                422,
                "invalid_field",
                Some("kind"),
                format!("report kind \"{}\": use initial or complete", req.kind),
            )));
        }
        let at = req.submitted_at.unwrap_or(now);
        self.store
            .change(now, id, actor, "authority_report", json!({"kind": req.kind, "reference": req.reference, "submitted_at": crate::audit::ts(at)}), |inc| {
                if inc.serious.is_none() {
                    return Err(Refusal { status: 409, code: "not_serious".into(), field: Some("serious".into()), message: format!("incident {} is not classified as a serious incident; classify it first", inc.id), current_state: Some(inc.state) });
                }
                inc.authority_reports.push(AuthorityReport { kind: req.kind.clone(), submitted_at: at, by: actor.to_owned(), reference: req.reference.clone() });
                Ok(())
            })
            .await
    }

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
        AlertKind::Obligation => false,
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
