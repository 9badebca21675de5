//! The incident record on both backends: opening once per condition, evidence and onset,
//! the workflow and its refusals, automatic decisions, the Art. 73 clocks, and tampering
//! caught by `verify`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Span;
use common::*;
use driftwatch_incident::audit::Signer;
use driftwatch_incident::desk::{
    ClassifyRequest, Desk, Handled, OpenRequest, PartyInput, ReportRequest, StepRequest,
    TaskRequest,
};
use driftwatch_incident::model::{Decision, Serious, State, Step};
use driftwatch_incident::store::{Store, StoreError};
use driftwatch_schema::Severity;

fn desk(store: Store) -> Desk {
    let mut d = Desk::new(Arc::new(store), vec![policy()]);
    d.evidence_wait = Duration::from_millis(300);
    d
}

fn step(reason: &str) -> StepRequest {
    StepRequest {
        reason: Some(reason.into()),
        ..Default::default()
    }
}

async fn refusal(
    r: Result<driftwatch_incident::model::Incident, StoreError>,
) -> (u16, String, Option<String>, Option<State>) {
    match r {
        Err(StoreError::Refused(r)) => (r.status, r.code, r.field, r.current_state),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_critical_condition_opens_one_incident_and_repeats_attach() {
    for (backend, store, _dir) in stores().await {
        let d = desk(store);
        for k in 0..3 {
            d.handle_report(
                at(k),
                &report(k, "age", if k == 0 { "ok" } else { "warning" }),
            )
            .await
            .expect("report");
        }
        d.handle_report(at(3), &report(3, "age", "critical"))
            .await
            .expect("report");
        let first = d
            .handle_alert(at(10), &alert(3, "age", Severity::Critical))
            .await
            .expect("alert");
        let Handled::Opened(id) = first else {
            panic!("{backend}: expected an opening, got {first:?}")
        };
        for k in 4..9 {
            let h = d
                .handle_alert(at(10 + k), &alert(k, "age", Severity::Critical))
                .await
                .expect("alert");
            assert_eq!(h, Handled::Attached(id.clone()), "{backend}: window {k}");
        }
        // A redelivered alert changes nothing.
        let again = d
            .handle_alert(at(30), &alert(5, "age", Severity::Critical))
            .await
            .expect("alert");
        assert_eq!(again, Handled::Duplicate, "{backend}");
        // Another signal is another condition.
        let other = d
            .handle_alert(at(31), &alert(8, "income", Severity::Critical))
            .await
            .expect("alert");
        assert!(
            matches!(other, Handled::Opened(ref o) if *o != id),
            "{backend}: {other:?}"
        );
        // A warning opens nothing by default, but attaches to an open incident.
        let w = d
            .handle_alert(at(32), &alert(9, "debt", Severity::Warning))
            .await
            .expect("alert");
        assert_eq!(w, Handled::Recorded, "{backend}");
        let w = d
            .handle_alert(at(33), &alert(9, "age", Severity::Warning))
            .await
            .expect("alert");
        assert_eq!(w, Handled::Attached(id.clone()), "{backend}");

        let inc = d.store.get(&id).await.expect("get").expect("exists");
        assert_eq!(
            inc.alerts.count, 7,
            "{backend}: the opening alert and six attached"
        );
        assert_eq!(inc.state, State::Open);
        assert_eq!(
            inc.aware_at,
            at(10),
            "{backend}: aware when the first alert arrived"
        );
        assert_eq!(inc.plan_hash.as_deref(), Some("sha256:00112233aabbccdd"));
        assert_eq!(inc.planned_action.as_deref(), Some("disable"));
        // Onset: windows 1-3 breach on age in a row; window 0 did not.
        let onset = inc.onset.expect("onset");
        assert_eq!(
            (onset.window_index, onset.source.as_str(), onset.at),
            (1, "history", window(1).first_event_at),
            "{backend}"
        );
        // The evidence: the alert and the reports up to the trigger, hashed.
        let (hash, ev) = d
            .store
            .evidence(&id)
            .await
            .expect("evidence")
            .expect("exists");
        assert_eq!(hash, inc.evidence_hash);
        assert_eq!(ev["alert"]["alert_id"], "credit/ref1/3/age/ks");
        assert_eq!(ev["trigger_report_received"], true);
        assert_eq!(ev["reports"].as_array().map(Vec::len), Some(4));
        assert_eq!(ev["model_versions"][0], "1.4.2");
        assert_eq!(d.store.alerts_of(&id).await.expect("alerts").len(), 7);
        assert!(d.store.verify(&[]).await.expect("verify").ok, "{backend}");
    }
}

#[tokio::test]
async fn an_alert_without_its_report_still_opens_after_the_wait() {
    for (backend, store, _dir) in stores().await {
        let d = desk(store);
        let h = d
            .handle_alert(at(0), &alert(7, "age", Severity::Critical))
            .await
            .expect("alert");
        let Handled::Opened(id) = h else {
            panic!("{backend}: {h:?}")
        };
        let (_, ev) = d
            .store
            .evidence(&id)
            .await
            .expect("evidence")
            .expect("exists");
        assert_eq!(
            ev["trigger_report_received"], false,
            "{backend}: the snapshot says what it lacks"
        );
        let inc = d.store.get(&id).await.expect("get").expect("exists");
        assert_eq!(inc.onset.map(|o| o.source), Some("alert".to_owned()));
    }
}

#[tokio::test]
async fn the_workflow_runs_in_order_by_named_people_and_refuses_the_rest() {
    for (backend, store, _dir) in stores().await {
        let d = desk(store);
        let Handled::Opened(id) = d
            .handle_alert(at(0), &alert(3, "age", Severity::Critical))
            .await
            .expect("alert")
        else {
            panic!("{backend}: no incident")
        };
        // Deciding before assessing is refused, naming the state.
        let r = d
            .step(
                at(1),
                &id,
                Step::Decide,
                "carol",
                StepRequest {
                    decision: Some(Decision::Disable),
                    ..step("now")
                },
            )
            .await;
        assert_eq!(
            refusal(r).await,
            (409, "illegal_transition".into(), None, Some(State::Open)),
            "{backend}"
        );
        // A reason is required, and an assessment.
        let r = d
            .step(at(1), &id, Step::Assess, "olga", StepRequest::default())
            .await;
        assert_eq!(refusal(r).await.2.as_deref(), Some("reason"));
        let r = d
            .step(at(1), &id, Step::Assess, "olga", step("looked"))
            .await;
        assert_eq!(refusal(r).await.2.as_deref(), Some("assessment"));
        let inc = d
            .step(
                at(2),
                &id,
                Step::Assess,
                "olga",
                StepRequest {
                    assessment: Some("applicants' ages shifted after a marketing campaign".into()),
                    root_cause: Some("new customer segment outside the training data".into()),
                    requirements_breached: Some(vec!["Art. 15(1) accuracy".into()]),
                    ..step("KS 0.21 on age over 3 windows")
                },
            )
            .await
            .expect("assess");
        assert_eq!(inc.state, State::Assessed);
        let r = d
            .step(at(3), &id, Step::Decide, "carol", step("no decision given"))
            .await;
        assert_eq!(refusal(r).await.2.as_deref(), Some("decision"));
        let inc = d
            .step(
                at(3),
                &id,
                Step::Decide,
                "carol",
                StepRequest {
                    decision: Some(Decision::Disable),
                    ..step("accuracy cannot be guaranteed for the new segment")
                },
            )
            .await
            .expect("decide");
        let dec = inc.decision.clone().expect("decision");
        assert_eq!(
            (dec.decision, dec.decided_by.as_str(), dec.automatic),
            (Decision::Disable, "carol", false)
        );
        // The decision composed notices to the plan's parties; until they are sent,
        // informing needs the parties named (the pending notices are named in the error).
        let r = d.step(at(4), &id, Step::Inform, "olga", step("sent")).await;
        let (status, code, field, _) = refusal(r).await;
        assert_eq!(
            (status, code.as_str(), field.as_deref()),
            (409, "notices_pending", Some("parties"))
        );
        let inc = d
            .step(
                at(4),
                &id,
                Step::Inform,
                "olga",
                StepRequest {
                    parties: Some(vec![
                        PartyInput {
                            kind: "deployer".into(),
                            name: "Bank A".into(),
                            channel: "e-mail".into(),
                            reference: Some("msg-1".into()),
                        },
                        PartyInput {
                            kind: "market_surveillance_authority".into(),
                            name: "AP".into(),
                            channel: "portal".into(),
                            reference: None,
                        },
                    ]),
                    ..step("Art. 20(1) and (2)")
                },
            )
            .await
            .expect("inform");
        assert_eq!(inc.parties_informed.len(), 2);
        // A failed effectiveness check sends it back for a new decision.
        let inc = d
            .step(
                at(5),
                &id,
                Step::Verify,
                "olga",
                StepRequest {
                    effective: Some(false),
                    evidence: Some("agents still serving".into()),
                    ..step("checked")
                },
            )
            .await
            .expect("verify");
        assert_eq!(inc.state, State::Assessed, "{backend}");
        d.step(
            at(6),
            &id,
            Step::Decide,
            "carol",
            StepRequest {
                decision: Some(Decision::Disable),
                ..step("again, per agent")
            },
        )
        .await
        .expect("decide");
        d.step(
            at(7),
            &id,
            Step::Inform,
            "olga",
            StepRequest {
                parties: Some(vec![PartyInput {
                    kind: "deployer".into(),
                    name: "Bank A".into(),
                    channel: "e-mail".into(),
                    reference: None,
                }]),
                ..step("re-sent")
            },
        )
        .await
        .expect("inform");
        d.step(
            at(8),
            &id,
            Step::Verify,
            "olga",
            StepRequest {
                effective: Some(true),
                evidence: Some("0 predictions served since".into()),
                ..step("checked")
            },
        )
        .await
        .expect("verify");
        let inc = d
            .step(
                at(9),
                &id,
                Step::Close,
                "carol",
                step("disabled and verified"),
            )
            .await
            .expect("close");
        assert_eq!(inc.state, State::Closed);
        assert_eq!(inc.closed.as_ref().map(|c| c.by.as_str()), Some("carol"));
        // Closed: a new alert of the same condition opens a new incident.
        let h = d
            .handle_alert(at(20), &alert(30, "age", Severity::Critical))
            .await
            .expect("alert");
        assert!(
            matches!(h, Handled::Opened(ref n) if *n != id),
            "{backend}: {h:?}"
        );
        // Reopening the old one is refused while another is open for the condition.
        let r = d
            .step(at(21), &id, Step::Reopen, "carol", step("same cause"))
            .await;
        assert_eq!(refusal(r).await.1, "already_open", "{backend}");
        // Every step is on the timeline, in order, by name.
        let tl = d.store.timeline(&id).await.expect("timeline");
        let who: Vec<(String, String)> = tl
            .iter()
            .map(|e| (e.action.clone(), e.actor.clone()))
            .collect();
        assert_eq!(who.first().map(|w| w.0.as_str()), Some("incident_opened"));
        assert_eq!(
            who.iter().filter(|w| w.0 == "transition").count(),
            8,
            "{backend}: {who:?}"
        );
        assert!(d.store.verify(&[]).await.expect("verify").ok);
    }
}

#[tokio::test]
async fn an_automatic_plan_decides_at_once_and_says_so() {
    for (backend, store, _dir) in stores().await {
        let mut p = policy();
        if let Some(a) = p.critical.as_mut() {
            a.automatic = true;
        }
        let d = Desk::new(Arc::new(store), vec![p]);
        let Handled::Opened(id) = d
            .handle_alert(at(0), &alert(3, "age", Severity::Critical))
            .await
            .expect("alert")
        else {
            panic!("{backend}")
        };
        let inc = d.store.get(&id).await.expect("get").expect("exists");
        assert_eq!(inc.state, State::ActionDecided, "{backend}");
        let dec = inc.decision.expect("decision");
        assert!(dec.automatic);
        assert_eq!(dec.decision, Decision::Disable);
        assert!(
            dec.rationale.contains("sha256:00112233aabbccdd"),
            "{}",
            dec.rationale
        );
    }
}

#[tokio::test]
async fn people_and_deployers_open_incidents_of_their_own() {
    for (backend, store, _dir) in stores().await {
        let d = desk(store);
        let r = d
            .open_manual(
                at(0),
                "dora",
                true,
                OpenRequest {
                    system_id: Some("credit".into()),
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(
            refusal(r).await.2.as_deref(),
            Some("description"),
            "{backend}"
        );
        let a = d
            .open_manual(
                at(0),
                "bank-a",
                true,
                OpenRequest {
                    system_id: Some("credit".into()),
                    description: Some("three applicants refused with identical scores".into()),
                    ..Default::default()
                },
            )
            .await
            .expect("deployer report");
        let b = d
            .open_manual(
                at(1),
                "bank-a",
                true,
                OpenRequest {
                    system_id: Some("credit".into()),
                    description: Some("a second, unrelated report".into()),
                    ..Default::default()
                },
            )
            .await
            .expect("second report");
        assert_ne!(a.id, b.id, "reports never merge");
        assert_eq!(a.trigger.kind, "deployer_report");
        assert_eq!(a.trigger.reported_by.as_deref(), Some("bank-a"));
        let r = d
            .open_manual(
                at(2),
                "olga",
                false,
                OpenRequest {
                    system_id: Some("credit".into()),
                    description: Some("x".into()),
                    trigger: Some("rumour".into()),
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(refusal(r).await.2.as_deref(), Some("trigger"));
        let r = d
            .open_manual(
                at(2),
                "olga",
                false,
                OpenRequest {
                    system_id: Some("credit".into()),
                    description: Some("x".into()),
                    aware_at: Some(at(60)),
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(refusal(r).await.2.as_deref(), Some("aware_at"));
    }
}

#[tokio::test]
async fn art73_clocks_remind_once_per_lead_and_stop_after_the_report() {
    for (backend, store, _dir) in stores().await {
        let d = desk(store);
        let Handled::Opened(id) = d
            .handle_alert(at(0), &alert(3, "age", Severity::Critical))
            .await
            .expect("alert")
        else {
            panic!("{backend}")
        };
        assert!(
            d.due_reminders(at(1)).await.expect("reminders").is_empty(),
            "not serious: no clock"
        );
        let inc = d
            .classify(
                at(1),
                &id,
                "olga",
                ClassifyRequest {
                    reason: Some("a rejected applicant was harmed".into()),
                    classification: None,
                    serious: Some(Serious::Death),
                },
            )
            .await
            .expect("classify");
        let clock = inc.clock().expect("a clock");
        assert_eq!(
            clock.deadline,
            at(0) + Span::days(10),
            "{backend}: 10 days from awareness for a death"
        );
        assert_eq!(clock.article, "Art. 73(4)");
        let day = |d: i64| at(0) + Span::days(d);
        assert!(
            d.due_reminders(day(6)).await.expect("r").is_empty(),
            "day 6: nothing yet"
        );
        let r = d.due_reminders(day(7) + Span::hours(1)).await.expect("r");
        assert_eq!(r.len(), 1, "{backend}: 72 h before");
        assert_eq!(
            (r[0].severity, r[0].alert_id.as_str()),
            (Severity::Warning, format!("{id}/art73/72h").as_str())
        );
        assert!(r[0].summary.contains("Art. 73(4)"), "{}", r[0].summary);
        assert!(
            d.due_reminders(day(7) + Span::hours(2))
                .await
                .expect("r")
                .is_empty(),
            "once per lead"
        );
        let r = d.due_reminders(day(9) + Span::hours(1)).await.expect("r");
        assert_eq!(
            (r.len(), r[0].severity),
            (1, Severity::Critical),
            "{backend}: 24 h before"
        );
        let r = d.due_reminders(day(10) + Span::hours(1)).await.expect("r");
        assert!(
            r.len() == 1 && r[0].summary.contains("overdue"),
            "{backend}: {r:?}"
        );
        // An initial report stops the clock's reminders.
        d.authority_report(
            day(11),
            &id,
            "carol",
            ReportRequest {
                kind: "initial".into(),
                reference: Some("AP-2026-17".into()),
                submitted_at: None,
            },
        )
        .await
        .expect("report");
        let inc = d.store.get(&id).await.expect("get").expect("exists");
        assert_eq!(inc.clock().and_then(|c| c.initial_report_at), Some(day(11)));
        assert!(d.due_reminders(day(12)).await.expect("r").is_empty());
        // An overdue corrective task reminds once.
        d.add_task(
            day(12),
            &id,
            "olga",
            TaskRequest {
                title: Some("retrain on the new segment".into()),
                owner: Some("ds-team".into()),
                due: Some(day(14)),
            },
        )
        .await
        .expect("task");
        assert!(d.due_reminders(day(13)).await.expect("r").is_empty());
        let r = d.due_reminders(day(15)).await.expect("r");
        assert_eq!(r.len(), 1, "{backend}");
        assert!(r[0].summary.contains("retrain"), "{}", r[0].summary);
        assert!(d.due_reminders(day(16)).await.expect("r").is_empty());
        // A report on an incident that is not serious is refused.
        let Handled::Opened(other) = d
            .handle_alert(at(1), &alert(3, "income", Severity::Critical))
            .await
            .expect("alert")
        else {
            panic!()
        };
        let r = d
            .authority_report(
                day(1),
                &other,
                "carol",
                ReportRequest {
                    kind: "initial".into(),
                    reference: None,
                    submitted_at: None,
                },
            )
            .await;
        assert_eq!(refusal(r).await.1, "not_serious");
        assert!(d.store.verify(&[]).await.expect("verify").ok);
    }
}

/// Hand edits in the database: each is detected and located.
#[tokio::test]
async fn hand_edits_in_the_database_are_detected_and_located() {
    for (backend, store, _dir) in stores().await {
        let d = desk(store);
        let signer = Signer::new("driftwatch.test/audit", [3u8; 32]);
        let Handled::Opened(id) = d
            .handle_alert(at(0), &alert(3, "age", Severity::Critical))
            .await
            .expect("alert")
        else {
            panic!()
        };
        for k in 4..10 {
            d.handle_alert(at(k), &alert(k, "age", Severity::Critical))
                .await
                .expect("alert");
        }
        d.step(
            at(20),
            &id,
            Step::Assess,
            "olga",
            StepRequest {
                assessment: Some("age shift".into()),
                ..step("seen")
            },
        )
        .await
        .expect("assess");
        let cp = driftwatch_incident::service::checkpoint_now(&d.store, &signer)
            .await
            .expect("cp")
            .expect("a checkpoint");
        let n = cp.size as i64;
        assert!(d.store.verify(&[]).await.expect("verify").ok);
        let pool = d.store.pool();
        let exec =
            |sql: String| async move { sqlx::query(&sql).execute(pool).await.expect("hand edit") };

        // 1. One audit row edited.
        exec("UPDATE audit SET actor = 'mallory' WHERE seq = 4".into()).await;
        let v = d.store.verify(&[]).await.expect("verify");
        let p = v.problem.expect("caught");
        assert_eq!(
            (p.seq, p.kind.as_str()),
            (4, "altered"),
            "{backend}: {}",
            p.message
        );
        exec("UPDATE audit SET actor = 'driftwatch' WHERE seq = 4".into()).await;
        assert!(
            d.store.verify(&[]).await.expect("verify").ok,
            "{backend}: restored"
        );

        // 2. Two rows reordered.
        exec("UPDATE audit SET seq = -1 WHERE seq = 5".into()).await;
        exec("UPDATE audit SET seq = 5 WHERE seq = 6".into()).await;
        exec("UPDATE audit SET seq = 6 WHERE seq = -1".into()).await;
        let p = d
            .store
            .verify(&[])
            .await
            .expect("verify")
            .problem
            .expect("caught");
        assert_eq!(p.seq, 5, "{backend}: {}", p.message);
        exec("UPDATE audit SET seq = -1 WHERE seq = 5".into()).await;
        exec("UPDATE audit SET seq = 5 WHERE seq = 6".into()).await;
        exec("UPDATE audit SET seq = 6 WHERE seq = -1".into()).await;
        assert!(d.store.verify(&[]).await.expect("verify").ok);

        // 3. The record itself edited (the decision rewritten behind the service's back).
        let doc: String = sqlx::query_scalar("SELECT doc FROM incidents WHERE id = $1")
            .bind(&id)
            .fetch_one(pool)
            .await
            .expect("doc");
        let forged = doc.replace("\"age shift\"", "\"nothing happened\"");
        assert_ne!(forged, doc);
        sqlx::query("UPDATE incidents SET doc = $1 WHERE id = $2")
            .bind(&forged)
            .bind(&id)
            .execute(pool)
            .await
            .expect("edit");
        let p = d
            .store
            .verify(&[])
            .await
            .expect("verify")
            .problem
            .expect("caught");
        assert_eq!(p.kind, "record_altered", "{backend}");
        assert!(p.message.contains(&id), "{}", p.message);
        sqlx::query("UPDATE incidents SET doc = $1 WHERE id = $2")
            .bind(&doc)
            .bind(&id)
            .execute(pool)
            .await
            .expect("restore");

        // 4. The evidence altered.
        exec(format!("UPDATE evidence SET doc = replace(doc, 'credit/ref1/3/age/ks', 'credit/ref1/2/age/ks') WHERE incident_id = '{id}'")).await;
        let p = d
            .store
            .verify(&[])
            .await
            .expect("verify")
            .problem
            .expect("caught");
        assert!(p.message.contains("evidence"), "{backend}: {}", p.message);
        exec(format!("UPDATE evidence SET doc = replace(doc, 'credit/ref1/2/age/ks', 'credit/ref1/3/age/ks') WHERE incident_id = '{id}'")).await;
        assert!(d.store.verify(&[]).await.expect("verify").ok);

        // 5. The last rows deleted (and the kept checkpoints with them): only a checkpoint
        // held elsewhere catches it.
        exec(format!("DELETE FROM audit WHERE seq > {}", n - 2)).await;
        exec("DELETE FROM checkpoints".into()).await;
        let self_consistent = d.store.verify(&[]).await.expect("verify");
        assert!(!self_consistent.ok || self_consistent.entries == n - 2);
        let held =
            driftwatch_incident::audit::parse_checkpoint(&cp.note, Some(&signer.verifier_key()))
                .expect("checkpoint");
        let p = d
            .store
            .verify(&[held])
            .await
            .expect("verify")
            .problem
            .expect("caught");
        assert_eq!(
            (p.seq, p.kind.as_str()),
            (n - 1, "truncated"),
            "{backend}: {}",
            p.message
        );

        // 6. A checkpoint forged for the shortened chain with another key: the verifier
        // key tells it apart.
        let mallory = Signer::new("driftwatch.test/audit", [9u8; 32]);
        let (size, head) = d.store.head().await.expect("head");
        d.store
            .add_checkpoint(at(30), &mallory.sign(size, &head))
            .await
            .expect("forge");

        let p = d
            .store
            .verify_with(&[], Some(&signer.verifier_key()))
            .await
            .expect("verify")
            .problem
            .expect("caught");
        assert_eq!(p.kind, "bad_signature", "{backend}: {}", p.message);
    }
}

#[tokio::test]
async fn two_replicas_on_one_store_open_one_incident() {
    for (backend, store, dir) in stores().await {
        // A second connection to the same database: a second replica.
        let url = match backend.as_str() {
            "sqlite" => format!("sqlite:{}", dir.path().join("incidents.db").display()),
            _ => continue_pg(&store).await,
        };
        let other = Store::open(&url).await.expect("second replica");
        let a = Arc::new(desk(store));
        let b = Arc::new(desk(other));
        let mut tasks = Vec::new();
        for k in 0..8 {
            let d = if k % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                d.handle_alert(at(k), &alert(k, "age", Severity::Critical))
                    .await
            }));
        }
        let mut opened = 0;
        for t in tasks {
            if matches!(t.await.expect("task").expect("handled"), Handled::Opened(_)) {
                opened += 1;
            }
        }
        assert_eq!(opened, 1, "{backend}");
        let list = a.store.list(Some("credit"), None, 100).await.expect("list");
        assert_eq!(list.len(), 1, "{backend}");
        assert_eq!(list[0].alerts.count, 8, "{backend}");
        assert!(a.store.verify(&[]).await.expect("verify").ok, "{backend}");
    }
}

/// The URL of the PostgreSQL database a store is connected to.
async fn continue_pg(store: &Store) -> String {
    let name: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(store.pool())
        .await
        .expect("db name");
    let admin = std::env::var("DRIFTWATCH_TEST_POSTGRES").expect("postgres run");
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(b, _)| b)
        .to_owned();
    format!("{base}/{name}")
}

#[tokio::test]
async fn migrations_run_once_and_upgrade_an_older_database_keeping_its_data() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite:{}", dir.path().join("m.db").display());
    let s = Store::open(&url).await.expect("open");
    assert_eq!(s.schema_version().await.expect("v"), 3);
    let d = desk(s);
    d.handle_alert(at(0), &alert(1, "age", Severity::Critical))
        .await
        .expect("alert");
    // Make it a version-1 database, as the first release left it.
    sqlx::query("DROP TABLE control_outbox")
        .execute(d.store.pool())
        .await
        .expect("drop");
    sqlx::query("DROP TABLE notices")
        .execute(d.store.pool())
        .await
        .expect("drop");
    sqlx::query("DELETE FROM schema_migrations WHERE version >= 2")
        .execute(d.store.pool())
        .await
        .expect("delete");
    drop(d);
    let s = Store::open(&url).await.expect("reopen");
    assert_eq!(s.schema_version().await.expect("v"), 3, "upgraded");
    assert_eq!(
        s.list(None, None, 10).await.expect("list").len(),
        1,
        "data kept"
    );
    assert!(s.control_pending(10).await.expect("outbox").is_empty());
    assert!(s.notices_due(at(0), 10).await.expect("notices").is_empty());
    assert!(s.verify(&[]).await.expect("verify").ok);
    drop(s);
    let s = Store::open(&url).await.expect("reopen again");
    assert_eq!(
        s.schema_version().await.expect("v"),
        3,
        "nothing to do the second time"
    );
}

#[tokio::test]
async fn a_bad_database_url_is_named() {
    let e = Store::open("mysql://x").await.err().expect("refused");
    assert!(e.to_string().contains("mysql://x"), "{e}");
}

#[tokio::test]
async fn a_decision_to_stop_or_restrict_goes_to_the_control_outbox_with_its_audit_entry() {
    for (backend, store, _dir) in stores().await {
        let d = desk(store);
        let mut ids = Vec::new();
        for (k, decision) in [
            (3, Decision::Disable),
            (4, Decision::ContinueUse),
            (5, Decision::RestrictUse),
        ] {
            let signal = format!("s{k}");
            let Handled::Opened(id) = d
                .handle_alert(at(k), &alert(k, &signal, Severity::Critical))
                .await
                .expect("alert")
            else {
                panic!()
            };
            d.step(
                at(10),
                &id,
                Step::Assess,
                "olga",
                StepRequest {
                    assessment: Some("x".into()),
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
                    ..step("because")
                },
            )
            .await
            .expect("decide");
            ids.push(id);
        }
        let pending = d.store.control_pending(10).await.expect("outbox");
        let msgs: Vec<driftwatch_schema::Control> = pending
            .iter()
            .map(|(_, _, p)| {
                driftwatch_schema::Control::from_wire(p.as_bytes())
                    .expect("a valid control message")
            })
            .collect();
        assert_eq!(
            msgs.len(),
            2,
            "{backend}: disable and restrict, not continue_use"
        );
        assert_eq!(
            (msgs[0].action, msgs[0].incident_id.as_deref()),
            (
                driftwatch_schema::ControlAction::Disable,
                Some(ids[0].as_str())
            )
        );
        assert_eq!(msgs[1].action, driftwatch_schema::ControlAction::Restrict);
        assert_eq!(
            msgs[1].restriction.as_deref(),
            Some("a person reviews every refusal")
        );
        assert_eq!(msgs[0].decided_by, "carol");
        let tl = d.store.timeline(&ids[0]).await.expect("timeline");
        let last: serde_json::Value =
            serde_json::from_str(&tl.last().expect("entry").payload).expect("json");
        assert_eq!(
            last["control"]["action"], "disable",
            "{backend}: the audit entry names what was sent"
        );
        d.store
            .control_sent(pending[0].0, at(12))
            .await
            .expect("sent");
        assert_eq!(d.store.control_pending(10).await.expect("outbox").len(), 1);
        let lifted = d
            .enable(
                at(13),
                "carol",
                "credit",
                Some("fixed".into()),
                Some(ids[0].clone()),
            )
            .await
            .expect("allow");
        assert_eq!(lifted.action, driftwatch_schema::ControlAction::Allow);
        assert_eq!(d.store.control_pending(10).await.expect("outbox").len(), 2);
        assert!(d.store.verify(&[]).await.expect("verify").ok);
    }
}
