//! What people do at the desk: open incidents, take workflow steps, classify, keep
//! tasks, record authority reports, lift decisions.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::*;

impl Desk {
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
        let composer = self.composer.clone();
        // The parties the automatic notices reached count as informed when the
        // `inform` step names none itself.
        let notified: Vec<crate::notify::Notice> =
            if step == Step::Inform && req.parties.as_ref().is_none_or(|p| p.is_empty()) {
                self.store.notices_of(id, now).await?
            } else {
                Vec::new()
            };
        let earlier = if step == Step::Decide {
            self.store.notices_of(id, now).await?.len()
        } else {
            0
        };
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
                let mut notices = Vec::new();
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
                        let record = DecisionRecord {
                            decision,
                            rationale: reason.clone(),
                            decided_by: actor.to_owned(),
                            decided_at: now,
                            automatic: false,
                            model_versions: req.model_versions.clone().unwrap_or_default(),
                        };
                        let policy = self.policy(&inc.system_id);
                        notices = composer.notices(&policy, inc, &record, req.restriction.as_deref(), earlier);
                        inc.decision = Some(record);
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
                        // The notices of the decision in force (an earlier, ineffective
                        // decision's notices were accounted for by its own `inform`).
                        // (Stored times have milliseconds.)
                        let decided_at = inc.decision.as_ref().map(|d| d.decided_at.timestamp_millis());
                        let notified: Vec<&crate::notify::Notice> = notified
                            .iter()
                            .filter(|n| decided_at.is_some_and(|t| n.created_at.timestamp_millis() >= t))
                            .collect();
                        let sent: Vec<&crate::notify::Notice> =
                            notified.iter().copied().filter(|n| n.sent_at.is_some()).collect();
                        if parties.is_empty() && !notified.is_empty() && sent.len() < notified.len() {
                            let waiting: Vec<String> = notified
                                .iter()
                                .filter(|n| n.sent_at.is_none())
                                .map(|n| format!("{} ({} to {}{})", n.id, n.channel.as_str(), n.destination, n.last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()))
                                .collect();
                            return Err(refuse(
                                409,
                                "notices_pending",
                                Some("parties"),
                                format!(
                                    "{} of {} notices to the parties are not sent yet: {}; wait, or name the parties informed otherwise in `parties`",
                                    waiting.len(),
                                    notified.len(),
                                    waiting.join(", ")
                                ),
                            ));
                        }
                        if parties.is_empty() {
                            for n in &sent {
                                inc.parties_informed.push(PartyInformed {
                                    kind: n.party_kind.clone(),
                                    name: n.party_name.clone(),
                                    channel: format!("{} to {}", n.channel.as_str(), n.destination),
                                    informed_at: n.sent_at.unwrap_or(now),
                                    by: "driftwatch".into(),
                                    reference: Some(format!("notice {} sha256:{}", n.id, n.content_hash)),
                                });
                            }
                        }
                        if parties.is_empty() && sent.is_empty() && decision != Some(Decision::ContinueUse) {
                            let policy = self.policy(&inc.system_id);
                            let expected: Vec<String> = decision
                                .map(|d| policy.parties_for(d.as_str()))
                                .unwrap_or_default()
                                .iter()
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
                Ok(Effects {
                    control: command.take(),
                    notices: std::mem::take(&mut notices),
                })
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
}
