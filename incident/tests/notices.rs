//! Notices of decisions to the plan's parties, on both backends: who gets one for which
//! decision, what it says, that it is stored with the hash of what is sent, retried
//! with backoff, counted as informing once sent, acknowledged once, and audited.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use driftwatch_incident::desk::{Desk, Handled, StepRequest};
use driftwatch_incident::model::{Decision, State, Step};
use driftwatch_incident::notify::Channel;
use driftwatch_incident::store::{AckKey, Store, StoreError};
use driftwatch_schema::Severity;
use sqlx::Row;

fn desk(store: Store) -> Desk {
    let mut d = Desk::new(Arc::new(store), vec![policy()]);
    d.evidence_wait = Duration::from_millis(100);
    d.composer.public_url = "https://driftwatch.example/".into();
    d
}

fn step(reason: &str) -> StepRequest {
    StepRequest {
        reason: Some(reason.into()),
        ..Default::default()
    }
}

/// Open an incident on `signal` and decide `decision` at minute 11.
async fn decided(d: &Desk, k: i64, signal: &str, decision: Decision) -> String {
    let Handled::Opened(id) = d
        .handle_alert(at(k), &alert(k, signal, Severity::Critical))
        .await
        .expect("alert")
    else {
        panic!("no incident")
    };
    d.step(
        at(10),
        &id,
        Step::Assess,
        "olga",
        StepRequest {
            assessment: Some("ages shifted".into()),
            ..step("seen")
        },
    )
    .await
    .expect("assess");
    d.step(
        at(11),
        &id,
        Step::Decide,
        "carol",
        StepRequest {
            decision: Some(decision),
            restriction: Some("a person reviews every refusal".into()),
            model_versions: Some(vec!["3.1.0".into()]),
            ..step("accuracy cannot be guaranteed for the new segment")
        },
    )
    .await
    .expect("decide");
    id
}

async fn token(store: &Store, notice: &str) -> String {
    sqlx::query("SELECT ack_token FROM notices WHERE id = $1")
        .bind(notice)
        .fetch_one(store.pool())
        .await
        .expect("notice")
        .try_get(0)
        .expect("token")
}

#[tokio::test]
async fn each_listed_party_gets_a_notice_saying_what_happened_what_was_decided_and_what_to_do() {
    for (backend, store, _dir) in stores().await {
        let d = desk(store);
        let disabled = decided(&d, 3, "age", Decision::Disable).await;
        let restricted = decided(&d, 4, "income", Decision::RestrictUse).await;
        let continued = decided(&d, 5, "region", Decision::ContinueUse).await;

        // The deployer is told of every corrective decision, the authority only of
        // disable and recall (its `inform_on`); continue_use informs no one.
        let n = d
            .store
            .notices_of(&disabled, at(12))
            .await
            .expect("notices");
        let to: Vec<(&str, Channel, &str)> = n
            .iter()
            .map(|n| (n.party_name.as_str(), n.channel, n.destination.as_str()))
            .collect();
        assert_eq!(
            to,
            [
                ("Bank A", Channel::Email, "ops@bank-a.example"),
                ("AP", Channel::Email, "ai@ap.example")
            ],
            "{backend}"
        );
        assert_eq!(n[0].id, format!("{disabled}-N1"));
        assert_eq!(n[0].status, "pending");
        assert_eq!(n[0].acknowledge_by, at(11) + chrono::Duration::hours(24));
        assert_eq!(n[1].acknowledge_by, at(11) + chrono::Duration::hours(72));
        let r = d
            .store
            .notices_of(&restricted, at(12))
            .await
            .expect("notices");
        assert_eq!(
            r.len(),
            1,
            "{backend}: restrict_use goes to the deployer only"
        );
        assert!(d
            .store
            .notices_of(&continued, at(12))
            .await
            .expect("notices")
            .is_empty());

        // What is sent: the stored payload, and its hash.
        let due = d.store.notices_due(at(12), 10).await.expect("due");
        assert_eq!(due.len(), 3, "{backend}");
        let mail = due.iter().find(|x| x.id == n[0].id).expect("deployer's");
        assert_eq!(
            mail.content_hash,
            driftwatch_incident::audit::sha256_hex(mail.payload.as_bytes())
        );
        let (rcpt, subject, body) =
            driftwatch_incident::notify::email_parts(&mail.payload).expect("an e-mail");
        assert_eq!(rcpt, "ops@bank-a.example");
        for want in [
            &disabled,
            "disable",
            "credit",
            "acknowledge by 2026-11-29 09:11 UTC",
        ] {
            assert!(subject.contains(want), "subject lacks {want:?}: {subject}");
        }
        let link = format!(
            "https://driftwatch.example/v1/acknowledge/{}",
            token(&d.store, &n[0].id).await
        );
        for want in [
            "WHAT HAPPENED",
            "WHICH VERSIONS\n3.1.0",
            "WHAT WAS DECIDED\nDISABLE",
            "Reason: accuracy cannot be guaranteed for the new segment",
            "Decided by carol on 2026-11-28 09:11 UTC",
            "WHAT YOU MUST DO\nStop acting on the system's outputs",
            "DEADLINE\nAcknowledge receipt by 2026-11-29 09:11 UTC",
            &link,
        ] {
            assert!(
                body.contains(want),
                "{backend}: body lacks {want:?}:\n{body}"
            );
        }
        let restrict_mail = due.iter().find(|x| x.id == r[0].id).expect("restrict");
        let (_, _, body) =
            driftwatch_incident::notify::email_parts(&restrict_mail.payload).expect("an e-mail");
        assert!(
            body.contains("a person reviews every refusal"),
            "the restriction is spelled out: {body}"
        );

        // The decision's audit entry names the notices and their hashes.
        let tl = d.store.timeline(&disabled).await.expect("timeline");
        let decide: serde_json::Value = tl
            .iter()
            .map(|e| serde_json::from_str::<serde_json::Value>(&e.payload).expect("json"))
            .find(|p| p["step"] == "decide")
            .expect("decide entry");
        assert_eq!(
            decide["notices"][0]["content_hash"],
            n[0].content_hash.as_str()
        );
        assert_eq!(decide["notices"][1]["to"], "ai@ap.example");
        assert!(d.store.verify(&[]).await.expect("verify").ok, "{backend}");
    }
}

#[tokio::test]
async fn a_notice_is_retried_until_sent_counts_as_informing_and_is_acknowledged_once() {
    for (backend, store, _dir) in stores().await {
        let d = desk(store);
        let id = decided(&d, 3, "age", Decision::Disable).await;
        let due = d.store.notices_due(at(12), 10).await.expect("due");
        assert_eq!(due.len(), 2);
        // The deployer's server accepts; the authority's refuses for now.
        assert!(d.store.claim_notice(&due[0], at(14)).await.expect("claim"));
        assert!(
            !d.store.claim_notice(&due[0], at(14)).await.expect("claim"),
            "{backend}: a claimed notice is not claimed again (another replica)"
        );
        d.store
            .notice_sent(at(12), &due[0], "smtp 250 queued as 7F3A")
            .await
            .expect("sent");
        d.store
            .notice_failed(at(12), &due[1], "smtp: connection refused", at(13))
            .await
            .expect("failed");
        assert!(
            d.store
                .notices_due(at(12), 10)
                .await
                .expect("due")
                .is_empty(),
            "{backend}: nothing due before the retry time"
        );
        let n = d.store.notices_of(&id, at(12)).await.expect("notices");
        assert_eq!(
            (
                n[0].status.as_str(),
                n[0].reference.as_deref(),
                n[0].attempts
            ),
            ("sent", Some("smtp 250 queued as 7F3A"), 1)
        );
        assert_eq!(
            (
                n[1].status.as_str(),
                n[1].last_error.as_deref(),
                n[1].next_attempt_at
            ),
            ("pending", Some("smtp: connection refused"), Some(at(13)))
        );

        // Informing without naming parties waits for every notice, naming the late one.
        let r = d
            .step(at(12), &id, Step::Inform, "olga", step("notices out"))
            .await;
        match r {
            Err(StoreError::Refused(r)) => {
                assert_eq!((r.status, r.code.as_str()), (409, "notices_pending"));
                assert!(
                    r.message.contains(&n[1].id) && r.message.contains("connection refused"),
                    "{}",
                    r.message
                );
            }
            other => panic!("{backend}: expected a refusal, got {other:?}"),
        }
        let again = d.store.notices_due(at(13), 10).await.expect("due");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
        d.store
            .notice_sent(at(13), &again[0], "smtp 250 ok")
            .await
            .expect("sent");
        let inc = d
            .step(at(14), &id, Step::Inform, "olga", step("notices out"))
            .await
            .expect("inform");
        assert_eq!(inc.state, State::PartiesInformed);
        let informed: Vec<(&str, &str, &str)> = inc
            .parties_informed
            .iter()
            .map(|p| (p.name.as_str(), p.channel.as_str(), p.by.as_str()))
            .collect();
        assert_eq!(
            informed,
            [
                ("Bank A", "email to ops@bank-a.example", "driftwatch"),
                ("AP", "email to ai@ap.example", "driftwatch")
            ],
            "{backend}"
        );
        assert_eq!(inc.parties_informed[1].informed_at, at(13));
        assert!(inc.parties_informed[0]
            .reference
            .as_deref()
            .is_some_and(|r| r.contains(&n[0].content_hash)));

        // The deployer acknowledges through the link; a second click changes nothing.
        let t = token(&d.store, &n[0].id).await;
        let a = d
            .store
            .acknowledge(at(20), AckKey::Token(&t), "M. de Vries", "link", None)
            .await
            .expect("ack");
        assert!(!a.already);
        assert_eq!(
            (
                a.notice.status.as_str(),
                a.notice.acknowledged_by.as_deref()
            ),
            ("acknowledged", Some("M. de Vries"))
        );
        let b = d
            .store
            .acknowledge(at(25), AckKey::Token(&t), "someone else", "link", None)
            .await
            .expect("ack again");
        assert!(b.already);
        assert_eq!(b.notice.acknowledged_at, Some(at(20)));
        // A person records the authority's acknowledgement by phone, late.
        let late = at(11) + chrono::Duration::hours(80);
        let c = d
            .store
            .acknowledge(
                late,
                AckKey::Notice {
                    incident: &id,
                    notice: &n[1].id,
                },
                "J. Bakker (recorded by olga)",
                "person",
                Some("phoned back"),
            )
            .await
            .expect("ack by person");
        assert_eq!(c.notice.status, "acknowledged");
        let wrong = d
            .store
            .acknowledge(at(30), AckKey::Token("0000"), "", "link", None)
            .await;
        assert!(
            matches!(wrong, Err(StoreError::Refused(ref r)) if r.status == 404),
            "{backend}: {wrong:?}"
        );
        // Overdue: sent, not acknowledged past its deadline.
        let other = decided(&d, 6, "income", Decision::Disable).await;
        for x in d.store.notices_due(at(12), 10).await.expect("due") {
            d.store
                .notice_sent(at(12), &x, "smtp 250")
                .await
                .expect("sent");
        }
        let o = d
            .store
            .notices_of(&other, at(11) + chrono::Duration::hours(25))
            .await
            .expect("notices");
        assert_eq!(o[0].status, "overdue", "{backend}");
        assert_eq!(o[1].status, "sent", "{backend}: the authority has 72 h");

        // The trail: sent, the first failure, each acknowledgement.
        let actions: Vec<String> = d
            .store
            .timeline(&id)
            .await
            .expect("timeline")
            .iter()
            .map(|e| e.action.clone())
            .filter(|a| a.starts_with("party_"))
            .collect();
        assert_eq!(
            actions,
            [
                "party_notified",
                "party_notice_failed",
                "party_notified",
                "party_acknowledged",
                "party_acknowledged"
            ],
            "{backend}"
        );
        let tl = d.store.timeline(&id).await.expect("timeline");
        let last: serde_json::Value =
            serde_json::from_str(&tl.last().expect("entry").payload).expect("json");
        assert_eq!(
            (last["via"].as_str(), last["in_time"].as_bool()),
            (Some("person"), Some(false))
        );
        assert!(d.store.verify(&[]).await.expect("verify").ok, "{backend}");
    }
}
