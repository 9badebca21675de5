//! From drifted telemetry to a corrective-action record, with the binaries as processes:
//! agent -> Kafka -> detector -> alerts topic -> `driftwatch incident serve`. The incident
//! opens once per condition (not once per window) with its evidence, and Slack and
//! PagerDuty are paged once per condition (not per window); an operator assesses
//! and an approver decides `disable` through the CLI; both sidecars of the system (two
//! replicas) report it disabled (another system stays allowed); the deployer gets the decision's notice by
//! webhook (and, on the real broker, by e-mail through a real SMTP server, aiosmtpd)
//! and acknowledges it through the links; `inform` takes the parties the notices
//! reached; `enable` restores serving; the export and `audit verify` pass; a hand edit
//! of the database is then caught and located.
//!
//! `on_the_embedded_broker` runs in `cargo test` (librdkafka's mock cluster, SQLite).
//! `on_the_real_broker` runs in `tests/real-broker.sh` against tansu or any broker in
//! `DRIFTWATCH_TEST_BROKERS`, on PostgreSQL when `DRIFTWATCH_TEST_POSTGRES` names a server
//! (`.ci/run` starts one), else on SQLite.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use driftwatch_detector::synth::demo_plan_toml;
use driftwatch_e2e::process::{free_port, test_dir, Proc};
use driftwatch_e2e::smtp::SmtpSink;
use driftwatch_e2e::{binary, create_topics, eventually, post_stream, WebhookReceiver};
use driftwatch_incident::auth::{new_token, Role};
use serde_json::Value;
use sqlx::Connection as _;

/// The plan's Art. 72 tables: the deployer gets the decision's notice by webhook and,
/// with `email`, by e-mail too.
fn plan_art72(webhook: &str, email: bool) -> String {
    format!(
        r#"
[actions.critical]
action = "disable"

[[owners]]
role = "plan owner"
name = "E2E Owner"

[[parties]]
kind = "deployer"
name = "Bank A"
{contact}webhook = "{webhook}"
"#,
        contact = if email {
            "contact = \"mailto:ops@bank-a.example\"\n"
        } else {
            ""
        }
    )
}

async fn fresh_postgres() -> Option<String> {
    let admin = std::env::var("DRIFTWATCH_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())?;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&admin)
        .await
        .expect("postgres answers");
    let name = format!("dw_e2e_{}", std::process::id());
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut conn)
        .await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Some(format!("{base}/{name}"))
}

fn cli(url: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("driftwatch"))
        .args(args)
        .env("DRIFTWATCH_INCIDENT_URL", url)
        .env("DRIFTWATCH_TOKEN", token)
        .env_remove("DRIFTWATCH_TOKEN_FILE")
        .output()
        .expect("driftwatch runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn verify(database: &str, checkpoint: &Path, key: &str) -> (i32, String, String) {
    let out = Command::new(binary("driftwatch"))
        .args([
            "audit",
            "verify",
            "--database",
            database,
            "--verifier-key",
            key,
        ])
        .arg("--checkpoint")
        .arg(checkpoint)
        .output()
        .expect("driftwatch runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn get(url: &str, token: &str) -> Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

/// The agent's status of `system` once it reports `want` as its serving state (30 s).
async fn serving_state(agent: std::net::SocketAddr, system: &str, want: &str) -> Option<Value> {
    eventually(Duration::from_secs(30), || async move {
        let s: Value = reqwest::get(format!("http://{agent}/v1/status?system_id={system}"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (s["serving"] == want).then_some(s)
    })
    .await
}

/// The test's topics and their partitions.
fn topics(name: &str) -> Vec<(String, i32)> {
    [
        "events",
        "alerts",
        "state",
        "reports",
        "checkpoints",
        "control",
    ]
    .iter()
    .map(|s| {
        (
            format!("dw-{name}-{}.{s}", std::process::id()),
            if *s == "events" { 3 } else { 1 },
        )
    })
    .collect()
}

async fn chain(brokers: &str, database: Option<String>, name: &str, create: bool, email: bool) {
    let dir = test_dir(name);
    let (hook, hook_url) = WebhookReceiver::start().await.expect("webhook");
    let (slack, slack_url) = WebhookReceiver::start().await.expect("slack");
    let (pd, pd_url) = WebhookReceiver::start().await.expect("pagerduty");
    let smtp = free_port();
    let mail_dir = dir.join("mail");
    let _smtp_sink = email.then(|| SmtpSink::start(&dir, smtp, &mail_dir));
    let t = |s: &str| format!("dw-{name}-{}.{s}", std::process::id());
    let (events, alerts, state, reports, checkpoints, control) = (
        t("events"),
        t("alerts"),
        t("state"),
        t("reports"),
        t("checkpoints"),
        t("control"),
    );
    if create {
        let list = topics(name);
        let refs: Vec<(&str, i32)> = list.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        create_topics(brokers, &refs).await.expect("topics");
    }
    let database =
        database.unwrap_or_else(|| format!("sqlite:{}", dir.join("incidents.db").display()));
    let plan = dir.join("plan.toml");
    std::fs::write(
        &plan,
        demo_plan_toml(name, 2000, 1000)
            + &format!(
                "slack_webhook_url = \"{slack_url}\"\npagerduty_routing_key = \"E2EKEY\"\npagerduty_url = \"{pd_url}\"\n"
            )
            + &plan_art72(&hook_url, email),
    )
    .expect("plan");
    let mut tokens = BTreeMap::new();
    let mut lines = Vec::new();
    for (person, role) in [
        ("vera", Role::Viewer),
        ("olga", Role::Operator),
        ("carol", Role::Approver),
    ] {
        let (token, line) = new_token(person, role, None);
        tokens.insert(person, token);
        lines.push(line);
    }
    std::fs::write(dir.join("tokens"), lines.join("\n")).expect("tokens");

    let agent_addr = free_port();
    let mut agent = Proc::spawn(
        "driftwatch-agent",
        dir.join("agent.log"),
        Command::new(binary("driftwatch-agent"))
            .args([
                "--listen",
                &agent_addr.to_string(),
                "--brokers",
                brokers,
                "--topic",
                &events,
            ])
            .args(["--control-topic", &control])
            .arg("--data-dir")
            .arg(dir.join("agent")),
    );
    // A second replica of the model with its own sidecar: a decision reaches every agent
    // of the system.
    let agent2_addr = free_port();
    let _agent2 = Proc::spawn(
        "driftwatch-agent (second replica)",
        dir.join("agent2.log"),
        Command::new(binary("driftwatch-agent"))
            .args([
                "--listen",
                &agent2_addr.to_string(),
                "--brokers",
                brokers,
                "--topic",
                &events,
            ])
            .args(["--control-topic", &control])
            .arg("--data-dir")
            .arg(dir.join("agent2")),
    );
    let detector_metrics = free_port();
    let mut detector = Proc::spawn(
        "driftwatch detect",
        dir.join("detector.log"),
        Command::new(binary("driftwatch"))
            .args([
                "detect",
                "--brokers",
                brokers,
                "--events-topic",
                &events,
                "--alerts-topic",
                &alerts,
            ])
            .args([
                "--state-topic",
                &state,
                "--reports-topic",
                &reports,
                "--group",
                &t("detector"),
            ])
            .args(["--metrics-listen", &detector_metrics.to_string()])
            .arg("--plan")
            .arg(&plan),
    );
    let api_addr = free_port();
    let api = format!("http://{api_addr}");
    let mut incidents = Proc::spawn(
        "driftwatch incident serve",
        dir.join("incidents.log"),
        Command::new(binary("driftwatch"))
            .args([
                "incident",
                "serve",
                "--database",
                &database,
                "--listen",
                &api_addr.to_string(),
            ])
            .args([
                "--brokers",
                brokers,
                "--alerts-topic",
                &alerts,
                "--reports-topic",
                &reports,
            ])
            .args([
                "--checkpoints-topic",
                &checkpoints,
                "--control-topic",
                &control,
                "--group",
                &t("incidents"),
            ])
            .args(["--checkpoint-interval-s", "1", "--evidence-wait-ms", "5000"])
            .arg("--tokens-file")
            .arg(dir.join("tokens"))
            .arg("--signing-key")
            .arg(dir.join("audit.key"))
            .arg("--plan")
            .arg(&plan)
            .args(["--smtp-url", &format!("smtp://{smtp}")]),
    );
    let http = reqwest::Client::new();
    let ready = eventually(Duration::from_secs(30), || {
        let h = http.clone();
        async move {
            (h.get(format!("http://{agent_addr}/ready"))
                .send()
                .await
                .ok()?
                .status()
                == 200)
                .then_some(())
        }
    })
    .await;
    assert!(ready.is_some(), "agent ready");
    post_stream(agent_addr, name, 7, 4000, 4000, false)
        .await
        .expect("every batch acknowledged");

    // Every window evaluated (8,000 predictions, 2,000 of them the reference): then the
    // topic has all the alerts there will be.
    let series = format!("driftwatch_windows_total{{system=\"{name}\"}}");
    let evaluated = eventually(Duration::from_secs(120), || {
        let (h, s) = (http.clone(), series.clone());
        async move {
            let page = h
                .get(format!("http://{detector_metrics}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (driftwatch_e2e::metric(&page, &s)? >= 6.0).then_some(())
        }
    })
    .await;
    assert!(
        evaluated.is_some(),
        "the detector evaluated all six windows"
    );
    // Every alert on the topic reaches the record.
    let viewer = tokens["vera"].clone();
    let topic_alerts = eventually(Duration::from_secs(90), || {
        let (b, a) = (brokers.to_owned(), alerts.clone());
        async move {
            let all = tokio::task::spawn_blocking(move || {
                driftwatch_e2e::kafka::read_quiet(&b, &a, Duration::from_millis(3000))
            })
            .await
            .ok()?;
            (!all.is_empty()).then_some(all)
        }
    })
    .await
    .expect("alerts on the topic");
    // The windows' alerts: the episode notifications beside them are for the pagers,
    // not the record.
    let (notes, topic_alerts): (Vec<_>, Vec<_>) = topic_alerts
        .into_iter()
        .partition(|a| a.get("lifecycle").is_some());
    assert!(
        notes.iter().any(|n| n["lifecycle"]["status"] == "firing"),
        "the drift fires an episode"
    );
    // The on-call people are paged once per episode, not once per window: each firing
    // notification on the topic reaches Slack and PagerDuty once.
    let firing: std::collections::BTreeSet<String> = notes
        .iter()
        .filter(|n| n["lifecycle"]["status"] == "firing")
        .filter_map(|n| n["lifecycle"]["fingerprint"].as_str().map(str::to_owned))
        .collect();
    let triggers = eventually(Duration::from_secs(30), || async {
        let t: Vec<Value> = pd
            .alerts()
            .into_iter()
            .filter(|e| e["event_action"] == "trigger")
            .collect();
        (t.len() >= firing.len()).then_some(t)
    })
    .await
    .expect("a PagerDuty trigger per firing condition");
    let keys: std::collections::BTreeSet<&str> = triggers
        .iter()
        .filter(|e| {
            e["payload"]["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("FIRING "))
        })
        .filter_map(|e| e["dedup_key"].as_str())
        .collect();
    assert_eq!(
        keys.len(),
        firing.len(),
        "one trigger per condition: {triggers:#?}"
    );
    let pages = eventually(Duration::from_secs(30), || async {
        let p: Vec<Value> = slack
            .alerts()
            .into_iter()
            .filter(|p| p["text"].as_str().is_some_and(|t| t.contains(" FIRING ")))
            .collect();
        (p.len() >= firing.len()).then_some(p)
    })
    .await
    .expect("a Slack page per firing condition");
    assert_eq!(pages.len(), firing.len(), "one page per condition");
    let windows = topic_alerts.len();
    assert!(
        firing.len() < windows,
        "fewer pages ({}) than window alerts ({windows})",
        firing.len()
    );
    let in_kafka = topic_alerts.len();
    let list = eventually(Duration::from_secs(60), || {
        let (url, v) = (format!("{api}/v1/incidents"), viewer.clone());
        async move {
            let l = get(&url, &v).await;
            let total: u64 = l["incidents"]
                .as_array()?
                .iter()
                .map(|i| i["alerts"]["count"].as_u64().unwrap_or(0))
                .sum();
            (total as usize >= in_kafka).then_some(l)
        }
    })
    .await
    .expect("every alert on the topic attached to an incident");
    let list = list["incidents"].as_array().cloned().unwrap_or_default();
    let signals: std::collections::BTreeSet<String> = topic_alerts
        .iter()
        .map(|a| {
            format!(
                "{}/{}",
                a["kind"].as_str().unwrap_or("drift"),
                a["signal"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        list.len(),
        signals.len(),
        "one incident per condition (signal), not per window: {signals:?}"
    );
    let age = list
        .iter()
        .find(|i| {
            i["condition"]
                .as_str()
                .is_some_and(|c| c.ends_with("/drift/age"))
        })
        .expect("an incident for the drift on age");
    let id = age["id"].as_str().expect("id").to_owned();
    assert!(
        age["alerts"]["count"].as_u64().unwrap_or(0) > 1,
        "repeats attached: {age}"
    );
    assert_eq!(age["state"], "open");
    assert_eq!(age["planned_action"], "disable");
    assert!(
        age["plan_hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("sha256:")),
        "{age}"
    );
    assert_eq!(
        age["onset"]["window_index"], 2,
        "the drift starts in window 2: {age}"
    );
    // What an operator's Prometheus sees: every alert counted by what it did.
    let page = reqwest::get(format!("{api}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let m = |s: &str| driftwatch_e2e::metric(&page, s).unwrap_or(-1.0);
    assert_eq!(
        m("driftwatch_incident_alerts_total{result=\"opened\"}"),
        list.len() as f64,
        "{page}"
    );
    assert_eq!(
        m("driftwatch_incident_alerts_total{result=\"attached\"}"),
        (in_kafka - list.len()) as f64,
        "{page}"
    );
    assert_eq!(
        m("driftwatch_incident_alerts_total{result=\"invalid\"}"),
        0.0
    );
    let ev = get(&format!("{api}/v1/incidents/{id}/evidence"), &viewer).await;
    assert_eq!(
        ev["snapshot"]["trigger_report_received"], true,
        "the window report is in the evidence: {ev}"
    );
    assert_eq!(ev["hash"], age["evidence_hash"]);

    // The workflow through the CLI, by named people.
    let (olga, carol) = (tokens["olga"].clone(), tokens["carol"].clone());
    let (code, _, err) = cli(
        &api,
        &olga,
        &[
            "incident",
            "decide",
            &id,
            "--decision",
            "disable",
            "--reason",
            "stop it",
        ],
    );
    assert_eq!(code, 77, "an operator cannot decide: {err}");
    assert!(err.contains("operator"), "{err}");
    let (code, _, err) = cli(
        &api,
        &carol,
        &[
            "incident",
            "decide",
            &id,
            "--decision",
            "disable",
            "--reason",
            "stop it",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("409") && err.contains("is open"),
        "the error names the state: {err}"
    );
    let (code, out, err) = cli(
        &api,
        &olga,
        &[
            "incident",
            "assess",
            &id,
            "--reason",
            "three windows past KS 0.01",
            "--assessment",
            "applicants are older than in the reference",
            "--requirement",
            "Art. 15(1) accuracy",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"assessed\""), "{out}");
    let (code, out, err) = cli(&api, &carol, &["incident", "decide", &id, "--decision", "disable", "--reason", "accuracy for older applicants is not established; deployers fall back to manual review"]);
    assert_eq!(code, 0, "{err}");
    let decided: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(decided["decision"]["decided_by"], "carol");
    assert_eq!(decided["state"], "action_decided");
    // The decision reaches the sidecar through the control topic.
    let serving = serving_state(agent_addr, name, "disabled")
        .await
        .expect("the agent reports the system disabled");
    assert_eq!(serving["incident_id"], id.as_str());
    let serving2 = serving_state(agent2_addr, name, "disabled")
        .await
        .expect("the second replica's agent reports the system disabled too");
    assert_eq!(serving2["incident_id"], id.as_str());

    // The decisions to re-review: every prediction since the onset (window 2 starts at
    // prediction 4,000 of 8,000), read back from the events topic.
    let out = Command::new(binary("driftwatch"))
        .args([
            "incident",
            "predictions",
            &id,
            "--brokers",
            brokers,
            "--events-topic",
            &events,
        ])
        .env("DRIFTWATCH_INCIDENT_URL", &api)
        .env("DRIFTWATCH_TOKEN", &viewer)
        .output()
        .expect("driftwatch runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json line")["prediction_id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 4000, "{}", String::from_utf8_lossy(&out.stderr));

    // The export a compliance officer files.
    let (code, md, err) = cli(&api, &viewer, &["incident", "export", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        md.contains(&format!("# Corrective-action record {id}")),
        "{md}"
    );
    assert!(
        md.contains("**disable**") && md.contains("Decided by carol"),
        "{md}"
    );
    assert!(md.contains("manual review"), "{md}");
    let (code, json, _) = cli(
        &api,
        &viewer,
        &["incident", "export", &id, "--format", "json"],
    );
    assert_eq!(code, 0);
    let export: Value = serde_json::from_str(&json).expect("json export");
    let steps: Vec<&str> = export["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["payload"]["step"].as_str())
        .collect();
    assert_eq!(steps, ["assess", "decide"]);

    // Only that system stops: the same sidecar serves another one as before.
    // (Polled: a reused keep-alive connection may be closed under it.)
    let other = serving_state(agent_addr, "another-system", "allowed").await;
    assert!(other.is_some(), "another system stays allowed");

    // The deployer is told (Art. 20(1)): by webhook, and by e-mail through a real SMTP
    // server where the suite has one; it acknowledges through the links.
    let notice = eventually(Duration::from_secs(30), || async {
        hook.alerts()
            .into_iter()
            .find(|a| a["type"] == "driftwatch.corrective_action_notice")
    })
    .await
    .expect("the decision's notice at the deployer's webhook");
    assert_eq!(notice["incident_id"], id.as_str());
    assert_eq!(notice["decision"]["decision"], "disable");
    let mut links = vec![notice["acknowledge_url"].as_str().expect("link").to_owned()];
    if email {
        let mail = eventually(Duration::from_secs(30), || async {
            driftwatch_e2e::smtp::mails(&mail_dir).into_iter().next()
        })
        .await
        .expect("the decision's notice by e-mail");
        assert_eq!(mail["rcpt_tos"], serde_json::json!(["ops@bank-a.example"]));
        let subject = mail["subject"].as_str().expect("subject");
        assert!(
            subject.contains(&id) && subject.contains("disable"),
            "{subject}"
        );
        let body = mail["body"].as_str().expect("body");
        assert!(body.contains("WHAT YOU MUST DO\nStop acting"), "{body}");
        links.push(
            body.lines()
                .find(|l| l.contains("/v1/acknowledge/"))
                .expect("a link in the mail")
                .trim()
                .to_owned(),
        );
    }
    for link in &links {
        let r = http
            .post(link)
            .json(&serde_json::json!({"by": "Bank A operations"}))
            .send()
            .await
            .expect("acknowledge");
        assert!(r.status().is_success(), "{link}: {}", r.status());
    }
    let shown = get(&format!("{api}/v1/incidents/{id}"), &viewer).await;
    let statuses: Vec<&str> = shown["notices"]
        .as_array()
        .expect("notices")
        .iter()
        .filter_map(|n| n["status"].as_str())
        .collect();
    assert_eq!(statuses, vec!["acknowledged"; links.len()], "{shown}");
    // `inform` without --party takes the parties the notices reached.
    let (code, out, err) = cli(
        &api,
        &olga,
        &[
            "incident",
            "inform",
            &id,
            "--reason",
            "notices sent and acknowledged",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let informed: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(informed["state"], "parties_informed");
    assert_eq!(
        informed["parties_informed"].as_array().map(Vec::len),
        Some(links.len())
    );

    // Lifting the decision restores serving.
    let (code, _, err) = cli(
        &api,
        &carol,
        &[
            "incident",
            "enable",
            "--system",
            name,
            "--reason",
            "retrained on the new population",
            "--incident",
            &id,
        ],
    );
    assert_eq!(code, 0, "{err}");
    for agent in [agent_addr, agent2_addr] {
        serving_state(agent, name, "allowed")
            .await
            .unwrap_or_else(|| panic!("agent {agent} serves again after `enable`"));
    }

    // A signed checkpoint, published on its topic, and verify with it.
    let entries = get(&format!("{api}/v1/audit?limit=10000"), &viewer).await["entries"]
        .as_array()
        .map_or(0, Vec::len) as u64;
    let cp = eventually(Duration::from_secs(20), || {
        let (url, v) = (format!("{api}/v1/audit/checkpoint"), viewer.clone());
        async move {
            let c = get(&url, &v).await;
            // The checkpoint that covers the decision.
            (c["latest"]["size"].as_u64()? == entries)
                .then_some((c["verifier_key"].as_str()?.to_owned(), ()))
        }
    })
    .await
    .expect("a checkpoint of the whole chain");
    assert_eq!(
        incidents.terminate(),
        Some(0),
        "incident service exits 0 on SIGTERM"
    );
    let notes = {
        let (b, c) = (brokers.to_owned(), checkpoints.clone());
        tokio::task::spawn_blocking(move || read_texts(&b, &c))
            .await
            .expect("read")
    };
    assert!(!notes.is_empty(), "checkpoints published on {checkpoints}");
    let last_note = notes.last().cloned().expect("a note");
    let held = dir.join("checkpoint.txt");
    std::fs::write(&held, &last_note).expect("write checkpoint");
    let (verifier_key, _) = cp;
    let (code, out, err) = verify(&database, &held, &verifier_key);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("audit chain ok"), "{out}");

    // A hand edit: the decision rewritten in the database.
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&database)
        .await
        .expect("open the database by hand");
    let changed = sqlx::query("UPDATE incidents SET doc = replace(doc, '\"decision\":\"disable\"', '\"decision\":\"continue_use\"') WHERE id = $1")
        .bind(&id)
        .execute(&mut db)
        .await
        .expect("hand edit")
        .rows_affected();
    assert_eq!(changed, 1);
    let (code, _, err) = verify(&database, &held, &verifier_key);
    assert_eq!(code, 65, "{err}");
    assert!(
        err.contains(&id) && err.contains("edited outside the service"),
        "names the record: {err}"
    );
    // And the trail itself: its last entries deleted.
    sqlx::query("UPDATE incidents SET doc = replace(doc, '\"decision\":\"continue_use\"', '\"decision\":\"disable\"') WHERE id = $1").bind(&id).execute(&mut db).await.expect("restore");
    let n: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM audit")
        .fetch_one(&mut db)
        .await
        .expect("max");
    sqlx::query("DELETE FROM audit WHERE seq > $1")
        .bind(n - 2)
        .execute(&mut db)
        .await
        .expect("delete");
    sqlx::query("DELETE FROM checkpoints")
        .execute(&mut db)
        .await
        .expect("delete");
    let (code, _, err) = verify(&database, &held, &verifier_key);
    assert_eq!(code, 65, "{err}");
    assert!(
        err.contains(&format!("entry {}", n - 1)) && err.contains("truncated"),
        "names the first missing entry: {err}"
    );

    assert_eq!(detector.terminate(), Some(0));
    assert_eq!(agent.terminate(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

fn read_texts(brokers: &str, topic: &str) -> Vec<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut last = std::time::Instant::now();
    while last.elapsed() < Duration::from_secs(3) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            last = std::time::Instant::now();
        }
    }
    out
}

#[tokio::test]
async fn on_the_embedded_broker() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    for (t, p) in topics("inc-mock") {
        cluster.create_topic(&t, p, 1).expect("topic");
    }
    chain(&cluster.bootstrap_servers(), None, "inc-mock", false, false).await;
}

#[tokio::test]
#[ignore = "needs a real broker: tests/real-broker.sh"]
async fn on_the_real_broker() {
    let brokers = driftwatch_e2e::process::brokers();
    chain(&brokers, fresh_postgres().await, "inc-real", true, true).await;
}
