//! Notices of a decision to the parties the plan lists (Art. 20(1) and (2)): deployers,
//! distributors, importers, the authorised representative, the market surveillance
//! authority.
//!
//! A corrective decision composes one notice per party and channel (e-mail for a
//! `mailto:` contact, a POST for a webhook) in the transaction that records the decision
//! ([`crate::store::Store::change_with`]), so a recorded decision always informs and an
//! unrecorded one never does. Each notice is stored with the exact bytes sent and their
//! SHA-256; the service's notifier ([`send`]) delivers it and retries until it is
//! sent; the party acknowledges through the link in it (or a person records an
//! acknowledgement received otherwise). Sending and acknowledging are audited.

use chrono::{DateTime, Duration as Span, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::{Decision, DecisionRecord, Incident};
use crate::policy::{PartyRef, Policy};

pub mod ack;
pub mod send;

/// How a notice travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// SMTP.
    Email,
    /// HTTP POST of JSON.
    Webhook,
}

impl Channel {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    /// From the stored spelling.
    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "email" => Some(Channel::Email),
            "webhook" => Some(Channel::Webhook),
            _ => None,
        }
    }
}

/// A notice composed, not yet stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotice {
    /// `INC-…-N1`, `INC-…-N2`, … in the order of the plan's parties.
    pub id: String,
    /// The incident.
    pub incident_id: String,
    /// The party's kind (`deployer`, …).
    pub party_kind: String,
    /// The party's name.
    pub party_name: String,
    /// E-mail or webhook.
    pub channel: Channel,
    /// The address or URL.
    pub destination: String,
    /// One line.
    pub subject: String,
    /// What is sent: for e-mail `{"to","subject","body"}`, for a webhook the JSON body.
    pub payload: String,
    /// SHA-256 of `payload`, hex.
    pub content_hash: String,
    /// The secret in the acknowledge link.
    pub ack_token: String,
    /// When it was composed.
    pub created_at: DateTime<Utc>,
    /// When the party should have acknowledged.
    pub acknowledge_by: DateTime<Utc>,
}

/// A stored notice, as the API shows it (the acknowledge token is never shown).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notice {
    /// Id.
    pub id: String,
    /// The incident.
    pub incident_id: String,
    /// The party's kind.
    pub party_kind: String,
    /// The party's name.
    pub party_name: String,
    /// E-mail or webhook.
    pub channel: Channel,
    /// The address or URL.
    pub destination: String,
    /// One line.
    pub subject: String,
    /// SHA-256 of what is sent.
    pub content_hash: String,
    /// Composed at.
    pub created_at: DateTime<Utc>,
    /// Acknowledge by.
    pub acknowledge_by: DateTime<Utc>,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// The last failure, until sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the next attempt is due (until sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the receiving server accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// The receiver's answer (SMTP reply, HTTP status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When the party acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Who acknowledged (the name given at the link, or the person recording it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    /// `pending`, `sent`, `acknowledged`, or `overdue` (sent, not acknowledged in time).
    pub status: String,
}

impl Notice {
    /// The status at `now`.
    pub fn status_at(&self, now: DateTime<Utc>) -> &'static str {
        match (self.sent_at, self.acknowledged_at) {
            (_, Some(_)) => "acknowledged",
            (None, None) => "pending",
            (Some(_), None) if now > self.acknowledge_by => "overdue",
            (Some(_), None) => "sent",
        }
    }
}

/// What composing needs besides the incident and the plan.
#[derive(Debug, Clone)]
pub struct Composer {
    /// The service's public base URL (the acknowledge links point here).
    pub public_url: String,
}

impl Composer {
    /// The notices a decision sends: one per listed party and channel, numbered on
    /// from the incident's `earlier` notices (a decision taken again after an
    /// ineffective one informs again). None for `continue_use`, and none for parties
    /// without an e-mail address or webhook (a person informs those and records it in
    /// the `inform` step).
    pub fn notices(
        &self,
        policy: &Policy,
        inc: &Incident,
        decision: &DecisionRecord,
        restriction: Option<&str>,
        earlier: usize,
    ) -> Vec<NewNotice> {
        if decision.decision == Decision::ContinueUse {
            return Vec::new();
        }
        let mut out = Vec::new();
        for party in policy.parties_for(decision.decision.as_str()) {
            let channels = [
                party.email.as_deref().map(|a| (Channel::Email, a)),
                party.webhook.as_deref().map(|u| (Channel::Webhook, u)),
            ];
            for (channel, destination) in channels.into_iter().flatten() {
                let n = earlier + out.len() + 1;
                out.push(self.compose(
                    policy,
                    inc,
                    decision,
                    restriction,
                    party,
                    channel,
                    destination,
                    n,
                ));
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn compose(
        &self,
        policy: &Policy,
        inc: &Incident,
        decision: &DecisionRecord,
        restriction: Option<&str>,
        party: &PartyRef,
        channel: Channel,
        destination: &str,
        n: usize,
    ) -> NewNotice {
        let id = format!("{}-N{n}", inc.id);
        let token = token();
        let ack_url = format!(
            "{}/v1/acknowledge/{token}",
            self.public_url.trim_end_matches('/')
        );
        let deadline = decision.decided_at + Span::hours(i64::from(party.acknowledge_within_h));
        let system = match &policy.name {
            Some(name) => format!("\"{name}\" ({})", inc.system_id),
            None => inc.system_id.clone(),
        };
        let versions = if decision.model_versions.is_empty() {
            if inc.model_versions.is_empty() {
                "every version in service".to_owned()
            } else {
                format!(
                    "every version in service: {}",
                    inc.model_versions.join(", ")
                )
            }
        } else {
            decision.model_versions.join(", ")
        };
        let what_decided = decided(decision.decision, restriction);
        let must_do = must_do(decision.decision, &party.kind, restriction);
        let subject = format!(
            "{}: {} of the AI system {system} ({}); acknowledge by {}",
            headline(decision.decision),
            decision.decision.as_str().replace('_', " "),
            inc.id,
            human(deadline)
        );
        let body = format!(
            "To: {name} ({kind})\n\
             \n\
             The provider of the high-risk AI system {system} has decided a corrective action under Article 20 of the EU AI Act.\n\
             \n\
             WHAT HAPPENED\n\
             {title}\n\
             Severity {severity}, detected {detected}; incident {inc_id}.\n\
             \n\
             WHICH VERSIONS\n\
             {versions}\n\
             \n\
             WHAT WAS DECIDED\n\
             {what_decided}\n\
             Reason: {rationale}\n\
             Decided by {by} on {at}.\n\
             \n\
             WHAT YOU MUST DO\n\
             {must_do}\n\
             \n\
             DEADLINE\n\
             Acknowledge receipt by {deadline}: open\n\
             {ack_url}\n\
             and press \"Acknowledge\" (or POST to that address).\n\
             \n\
             Notice {id}, sent by driftwatch for the provider.\n",
            name = party.name,
            kind = party.kind.replace('_', " "),
            title = inc.title,
            severity = inc.severity.as_str(),
            detected = human(inc.detected_at),
            inc_id = inc.id,
            rationale = decision.rationale,
            by = decision.decided_by,
            at = human(decision.decided_at),
            deadline = human(deadline),
        );
        let payload = match channel {
            Channel::Email => json!({"to": destination, "subject": subject, "body": body}),
            Channel::Webhook => json!({
                "type": "driftwatch.corrective_action_notice",
                "notice_id": id,
                "incident_id": inc.id,
                "system_id": inc.system_id,
                "system_name": policy.name,
                "party": {"kind": party.kind, "name": party.name},
                "subject": subject,
                "text": body,
                "what_happened": {"title": inc.title, "severity": inc.severity.as_str(), "detected_at": crate::audit::ts(inc.detected_at)},
                "versions": if decision.model_versions.is_empty() { &inc.model_versions } else { &decision.model_versions },
                "decision": {
                    "decision": decision.decision.as_str(),
                    "restriction": restriction,
                    "rationale": decision.rationale,
                    "decided_by": decision.decided_by,
                    "decided_at": crate::audit::ts(decision.decided_at),
                },
                "must_do": must_do,
                "acknowledge_by": crate::audit::ts(deadline),
                "acknowledge_url": ack_url,
            }),
        };
        let payload = crate::audit::canonical(&payload);
        NewNotice {
            id,
            incident_id: inc.id.clone(),
            party_kind: party.kind.clone(),
            party_name: party.name.clone(),
            channel,
            destination: destination.to_owned(),
            subject,
            content_hash: crate::audit::sha256_hex(payload.as_bytes()),
            payload,
            ack_token: token,
            created_at: decision.decided_at,
            acknowledge_by: deadline,
        }
    }
}

/// An e-mail's parts, from its stored payload.
pub fn email_parts(payload: &str) -> Option<(String, String, String)> {
    let v: Value = serde_json::from_str(payload).ok()?;
    Some((
        v["to"].as_str()?.to_owned(),
        v["subject"].as_str()?.to_owned(),
        v["body"].as_str()?.to_owned(),
    ))
}

fn human(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn headline(d: Decision) -> &'static str {
    match d {
        Decision::Disable | Decision::Withdraw | Decision::Recall => "Action required",
        Decision::RestrictUse => "Action required",
        Decision::BringIntoConformity | Decision::ContinueUse => "For your information",
    }
}

fn decided(d: Decision, restriction: Option<&str>) -> String {
    match d {
        Decision::Disable => "DISABLE: the system no longer serves; the driftwatch agent beside each deployment reports serving=disabled.".into(),
        Decision::Withdraw => "WITHDRAW: the system is no longer made available (Art. 3(17)); its agents report serving=disabled.".into(),
        Decision::Recall => "RECALL: the system is taken out of service (Art. 3(16)); its agents report serving=disabled.".into(),
        Decision::RestrictUse => format!(
            "RESTRICT USE: {}; the agents report serving=restricted.",
            restriction.unwrap_or("use only under the provider's restriction")
        ),
        Decision::BringIntoConformity => "BRING INTO CONFORMITY: the provider is correcting the system; it keeps serving meanwhile.".into(),
        Decision::ContinueUse => "CONTINUE USE: no corrective action.".into(),
    }
}

/// What a party of `kind` must do on decision `d` (Art. 20(1): distributors, importers
/// and deployers are informed; 20(2): the authorities, of a risk).
pub fn must_do(d: Decision, kind: &str, restriction: Option<&str>) -> String {
    let off = matches!(d, Decision::Disable | Decision::Withdraw | Decision::Recall);
    match (kind, d) {
        ("deployer", _) if off => "Stop acting on the system's outputs at once and fall back to your human procedure. Do not resume until the provider tells you the system conforms again.".into(),
        ("deployer", Decision::RestrictUse) => format!(
            "Use the system only within the restriction ({}); have a person review every output before it is acted on where the restriction says so. Keep reporting telemetry: monitoring continues.",
            restriction.unwrap_or("as stated above")
        ),
        ("deployer", _) => "Keep using the system under increased human oversight and report anything unusual to the provider; you will be told when the correction is in place.".into(),
        ("distributor" | "importer", Decision::Recall) => "Stop making the system available (Art. 20(1)), tell the deployers you supplied, and take part in the recall of the copies you supplied.".into(),
        ("distributor" | "importer", _) if off => "Stop making the system available (Art. 20(1)) and tell the deployers you supplied. Do not resume until the provider tells you it conforms again.".into(),
        ("distributor" | "importer", Decision::RestrictUse) => "Tell the deployers you supplied of the restriction and make the system available only with it.".into(),
        ("distributor" | "importer", _) => "Take note: the provider is bringing the system into conformity; no action is needed beyond acknowledging receipt.".into(),
        ("authorised_representative", _) => "Keep this notice with the technical documentation and have it ready for the authorities on request.".into(),
        ("market_surveillance_authority", _) => "For your information under Art. 20(2): the provider has identified a risk or non-conformity and taken the corrective action above. Please acknowledge receipt.".into(),
        ("notified_body", _) => "For your information: the corrective action may bear on the certificate you issued (Art. 20(2), 44). Please acknowledge receipt.".into(),
        _ => "Take note of the corrective action above and acknowledge receipt.".into(),
    }
}

/// 128 random bits, hex.
fn token() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        let n = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128;
        b.copy_from_slice(&n.to_be_bytes());
    }
    crate::audit::hex(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_party_kind_is_told_what_to_do_for_every_decision() {
        let decisions = [
            Decision::BringIntoConformity,
            Decision::RestrictUse,
            Decision::Disable,
            Decision::Withdraw,
            Decision::Recall,
        ];
        for kind in [
            "deployer",
            "distributor",
            "importer",
            "authorised_representative",
            "market_surveillance_authority",
            "notified_body",
        ] {
            for d in decisions {
                let text = must_do(d, kind, Some("human review of every refusal"));
                assert!(
                    !text.starts_with("Take note of the corrective action above"),
                    "{kind} on {} gets the generic text",
                    d.as_str()
                );
            }
        }
        assert!(must_do(Decision::Disable, "deployer", None).contains("Stop acting"));
        assert!(must_do(
            Decision::RestrictUse,
            "deployer",
            Some("no automatic refusals")
        )
        .contains("no automatic refusals"));
        assert!(must_do(Decision::Recall, "importer", None).contains("recall"));
    }

    #[test]
    fn a_status_follows_sending_acknowledging_and_the_deadline() {
        let t = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("time")
                .with_timezone(&Utc)
        };
        let mut n = Notice {
            id: "INC-1-N1".into(),
            incident_id: "INC-1".into(),
            party_kind: "deployer".into(),
            party_name: "Bank".into(),
            channel: Channel::Email,
            destination: "ops@bank.example".into(),
            subject: "s".into(),
            content_hash: "h".into(),
            created_at: t("2026-12-01T10:00:00Z"),
            acknowledge_by: t("2026-12-02T10:00:00Z"),
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
            sent_at: None,
            reference: None,
            acknowledged_at: None,
            acknowledged_by: None,
            status: String::new(),
        };
        assert_eq!(n.status_at(t("2026-12-03T00:00:00Z")), "pending");
        n.sent_at = Some(t("2026-12-01T10:00:01Z"));
        assert_eq!(n.status_at(t("2026-12-01T12:00:00Z")), "sent");
        assert_eq!(n.status_at(t("2026-12-02T10:00:01Z")), "overdue");
        n.acknowledged_at = Some(t("2026-12-02T11:00:00Z"));
        assert_eq!(n.status_at(t("2026-12-09T00:00:00Z")), "acknowledged");
    }
}
