//! Art. 20 notices to the plan's parties, through `driftwatch incident serve` as a
//! process: an approver decides `disable`, each listed party gets a notice by webhook
//! and by e-mail, the receivers are down at first and get it once they are up (retried
//! with backoff), the party acknowledges through the link in it, and the incident, its
//! timeline, the metrics and `audit verify` show it.
//!
//! `by_webhook_retried_until_the_receiver_is_up_and_acknowledged_through_the_link` runs
//! in `cargo test`. `by_e_mail_to_a_real_smtp_server` needs a real SMTP server (Python's
//! aiosmtpd, `tests/tools/smtp_sink.py`): `tests/real-tools.sh` makes a throwaway
//! virtual environment with it and names its Python in `DRIFTWATCH_TEST_PYTHON`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use driftwatch_detector::synth::demo_plan_toml;
use driftwatch_e2e::process::{free_port, test_dir, Proc};
use driftwatch_e2e::smtp::SmtpSink;
use driftwatch_e2e::{binary, eventually, metric, WebhookReceiver};
use driftwatch_incident::auth::{new_token, Role};
use serde_json::{json, Value};

/// The service with the plan's parties, its API and tokens.
struct Service {
    _proc: Proc,
    api: String,
    operator: String,
    approver: String,
    dir: PathBuf,
}

fn start(dir: &Path, parties: &str, extra: &[&str]) -> Service {
    let plan = dir.join("plan.toml");
    std::fs::write(
        &plan,
        demo_plan_toml("credit", 2000, 1000)
            + "\n[actions.critical]\naction = \"disable\"\n"
            + parties,
    )
    .expect("plan");
    let (operator, l1) = new_token("olga", Role::Operator, None);
    let (approver, l2) = new_token("carol", Role::Approver, None);
    std::fs::write(dir.join("tokens"), format!("{l1}\n{l2}\n")).expect("tokens");
    let addr = free_port();
    let api = format!("http://{addr}");
    let proc = Proc::spawn(
        "driftwatch incident serve",
        dir.join("incidents.log"),
        Command::new(binary("driftwatch"))
            .args(["incident", "serve", "--brokers", ""])
            .arg("--database")
            .arg(format!("sqlite:{}", dir.join("incidents.db").display()))
            .args(["--listen", &addr.to_string()])
            .arg("--plan")
            .arg(&plan)
            .arg("--tokens-file")
            .arg(dir.join("tokens"))
            .arg("--signing-key")
            .arg(dir.join("audit.key"))
            .args(["--public-url", &format!("{api}/")])
            .args(extra),
    );
    Service {
        _proc: proc,
        api,
        operator,
        approver,
        dir: dir.to_owned(),
    }
}

impl Service {
    async fn call(&self, token: &str, path: &str, body: Value) -> Value {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{}{path}", self.api))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("API answers");
        let status = r.status();
        let v: Value = r.json().await.expect("JSON");
        assert!(status.is_success(), "POST {path}: {status} {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.api))
            .bearer_auth(&self.operator)
            .send()
            .await
            .expect("API answers")
            .json()
            .await
            .expect("JSON")
    }

    /// Wait for the API, open an incident by hand, assess it and decide `disable`.
    async fn disable(&self) -> String {
        eventually(Duration::from_secs(30), || async {
            reqwest::get(format!("{}/ready", self.api))
                .await
                .ok()
                .filter(|r| r.status().is_success())
        })
        .await
        .expect("the incident service starts");
        let inc = self
            .call(
                &self.operator,
                "/v1/incidents",
                json!({"system_id": "credit", "description": "refusals doubled for applicants under 25", "title": "Refusals doubled for young applicants"}),
            )
            .await;
        let id = inc["id"].as_str().expect("id").to_owned();
        self.call(
            &self.operator,
            &format!("/v1/incidents/{id}/assess"),
            json!({"reason": "checked", "assessment": "age drift outside the training data"}),
        )
        .await;
        self.call(
            &self.approver,
            &format!("/v1/incidents/{id}/decide"),
            json!({"reason": "accuracy cannot be guaranteed for the new segment", "decision": "disable", "model_versions": ["3.1.0"]}),
        )
        .await;
        id
    }

    async fn notices(&self, id: &str) -> Vec<Value> {
        self.get(&format!("/v1/incidents/{id}/notices")).await["notices"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Wait until every notice of `id` is sent.
    async fn all_sent(&self, id: &str, within: Duration) -> Vec<Value> {
        eventually(within, || async {
            let n = self.notices(id).await;
            (!n.is_empty() && n.iter().all(|x| x["status"] == "sent")).then_some(n)
        })
        .await
        .unwrap_or_else(|| panic!("every notice sent: {:#?}", futures_block(self.notices(id))))
    }

    fn audit_verify(&self) -> (i32, String) {
        let out = Command::new(binary("driftwatch"))
            .args(["audit", "verify", "--database"])
            .arg(format!(
                "sqlite:{}",
                self.dir.join("incidents.db").display()
            ))
            .output()
            .expect("driftwatch runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }
}

/// A future's value from synchronous code (panic messages).
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_webhook_retried_until_the_receiver_is_up_and_acknowledged_through_the_link() {
    let dir = test_dir("notices-webhook");
    // The deployer's webhook is down when the decision is taken.
    let hook_addr = free_port();
    let parties = format!(
        "\n[[parties]]\nkind = \"deployer\"\nname = \"Bank <A> & Co\"\nwebhook = \"http://{hook_addr}/alerts\"\n\n[[parties]]\nkind = \"distributor\"\nname = \"Resellers BV\"\nwebhook = \"http://{hook_addr}/alerts\"\ninform_on = [\"recall\"]\n"
    );
    let s = start(&dir, &parties, &[]);
    let id = s.disable().await;
    let failed = eventually(Duration::from_secs(20), || async {
        let n = s.notices(&id).await;
        n.first()
            .filter(|x| x["attempts"].as_i64() >= Some(2))
            .cloned()
    })
    .await
    .expect("attempts while the receiver is down");
    assert_eq!(failed["status"], "pending");
    assert!(
        failed["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("webhook")),
        "{failed}"
    );
    assert_eq!(
        s.notices(&id).await.len(),
        1,
        "the distributor is informed of recalls only"
    );

    // The receiver comes up on that address: the next retry reaches it (backoff ≤ 8 s).
    let hook = WebhookReceiver::start_on(hook_addr).await.expect("webhook");
    let sent = s.all_sent(&id, Duration::from_secs(30)).await;
    let body = eventually(Duration::from_secs(5), || async {
        hook.alerts().first().cloned()
    })
    .await
    .expect("the notice at the webhook");
    assert_eq!(body["type"], "driftwatch.corrective_action_notice");
    assert_eq!(body["incident_id"], id.as_str());
    assert_eq!(body["party"]["name"], "Bank <A> & Co");
    assert_eq!(body["decision"]["decision"], "disable");
    assert_eq!(body["decision"]["decided_by"], "carol");
    assert_eq!(body["versions"], json!(["3.1.0"]));
    assert!(body["must_do"]
        .as_str()
        .is_some_and(|t| t.starts_with("Stop acting on the system's outputs")));
    assert!(body["text"]
        .as_str()
        .is_some_and(|t| t.contains("WHAT YOU MUST DO")));
    // The stored hash is the hash of the bytes the receiver got.
    let canonical = body.to_string();
    assert_eq!(
        sent[0]["content_hash"].as_str(),
        Some(driftwatch_incident::audit::sha256_hex(canonical.as_bytes()).as_str())
    );
    assert_eq!(hook.alerts().len(), 1, "sent once");

    // The link: a GET shows the notice (escaped) and changes nothing.
    let link = body["acknowledge_url"].as_str().expect("link").to_owned();
    assert!(
        link.starts_with(&format!("{}/v1/acknowledge/", s.api)),
        "{link}"
    );
    let page = reqwest::get(&link)
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("Bank &lt;A&gt; &amp; Co") && !page.contains("Bank <A>"),
        "{page}"
    );
    assert!(page.contains("<button type=\"submit\">Acknowledge</button>"));
    assert_eq!(s.notices(&id).await[0]["status"], "sent");
    // Pressing the button acknowledges; pressing it again changes nothing.
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let r = http
            .post(&link)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("by=M.+de+Vries")
            .send()
            .await
            .expect("ack");
        assert!(r.status().is_success());
    }
    let wrong = http
        .post(format!("{}/v1/acknowledge/00ff", s.api))
        .send()
        .await
        .expect("ack");
    assert_eq!(wrong.status(), 404);

    // The incident shows it; the parties count as informed; the trail has it all.
    let inc = s.get(&format!("/v1/incidents/{id}")).await;
    let n = &inc["notices"][0];
    assert_eq!(
        (n["status"].as_str(), n["acknowledged_by"].as_str()),
        (Some("acknowledged"), Some("M. de Vries"))
    );
    let inc = s
        .call(
            &s.operator,
            &format!("/v1/incidents/{id}/inform"),
            json!({"reason": "the notices went out"}),
        )
        .await;
    assert_eq!(inc["state"], "parties_informed");
    assert_eq!(inc["parties_informed"][0]["name"], "Bank <A> & Co");
    let tl = s.get(&format!("/v1/incidents/{id}/timeline")).await;
    let actions: Vec<&str> = tl["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("party_"))
        .collect();
    assert_eq!(
        actions,
        [
            "party_notice_failed",
            "party_notified",
            "party_acknowledged"
        ]
    );
    let page = reqwest::get(format!("{}/metrics", s.api))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        metric(
            &page,
            "driftwatch_notices_total{channel=\"webhook\",result=\"sent\"}"
        ),
        Some(1.0)
    );
    assert!(
        metric(
            &page,
            "driftwatch_notices_total{channel=\"webhook\",result=\"failed\"}"
        ) >= Some(2.0)
    );
    assert_eq!(
        metric(
            &page,
            "driftwatch_notices_total{channel=\"email\",result=\"sent\"}"
        ),
        Some(0.0),
        "every series exists from the start"
    );
    let (code, out) = s.audit_verify();
    assert_eq!(code, 0, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs aiosmtpd: run tests/real-tools.sh (DRIFTWATCH_TEST_PYTHON)"]
async fn by_e_mail_to_a_real_smtp_server() {
    let dir = test_dir("notices-smtp");
    let smtp = free_port();
    let out = dir.join("mail");
    let parties = "\n[[parties]]\nkind = \"deployer\"\nname = \"Bank A\"\ncontact = \"mailto:ops@bank-a.example\"\n\n[[parties]]\nkind = \"market_surveillance_authority\"\nname = \"Autoriteit Persoonsgegevens\"\ncontact = \"mailto:ai-incidents@ap.example\"\nacknowledge_within_h = 72\n";
    // The mail server is down when the decision is taken.
    let s = start(
        &dir,
        parties,
        &[
            "--smtp-url",
            &format!("smtp://{smtp}"),
            "--mail-from",
            "Provider compliance <compliance@provider.example>",
        ],
    );
    let id = s.disable().await;
    eventually(Duration::from_secs(20), || async {
        let n = s.notices(&id).await;
        (n.len() == 2 && n.iter().all(|x| x["attempts"].as_i64() >= Some(1))).then_some(())
    })
    .await
    .expect("attempts while the mail server is down");
    let _sink = SmtpSink::start(&dir, smtp, &out);
    let sent = s.all_sent(&id, Duration::from_secs(40)).await;
    let got = eventually(Duration::from_secs(5), || async {
        let m = driftwatch_e2e::smtp::mails(&out);
        (m.len() == 2).then_some(m)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "two mails at the server, got {:#?}",
            driftwatch_e2e::smtp::mails(&out)
        )
    });
    let mut rcpts: Vec<&str> = got
        .iter()
        .flat_map(|m| m["rcpt_tos"].as_array().expect("rcpts"))
        .filter_map(Value::as_str)
        .collect();
    rcpts.sort();
    assert_eq!(rcpts, ["ai-incidents@ap.example", "ops@bank-a.example"]);
    for m in &got {
        assert_eq!(m["mail_from"], "compliance@provider.example");
        assert_eq!(
            m["from"],
            "Provider compliance <compliance@provider.example>"
        );
        assert_eq!(m["content_type"], "text/plain");
        let subject = m["subject"].as_str().expect("subject");
        for want in [
            "Action required",
            "disable",
            "Synthetic consumer credit scoring",
            id.as_str(),
            "acknowledge by",
        ] {
            assert!(subject.contains(want), "subject lacks {want:?}: {subject}");
        }
        let body = m["body"].as_str().expect("a text body");
        for want in [
            "WHAT HAPPENED\nRefusals doubled for young applicants",
            "WHICH VERSIONS\n3.1.0",
            "WHAT WAS DECIDED\nDISABLE",
            "Reason: accuracy cannot be guaranteed for the new segment",
            "Decided by carol",
            "WHAT YOU MUST DO",
            "DEADLINE",
        ] {
            assert!(body.contains(want), "body lacks {want:?}:\n{body}");
        }
    }
    let deployer = got
        .iter()
        .find(|m| m["to"] == "ops@bank-a.example")
        .expect("the deployer's mail");
    let body = deployer["body"].as_str().expect("body");
    assert!(body.contains("To: Bank A (deployer)"), "{body}");
    assert!(
        body.contains("Stop acting on the system's outputs"),
        "{body}"
    );
    let authority = got
        .iter()
        .find(|m| m["to"] == "ai-incidents@ap.example")
        .expect("the authority's mail");
    assert!(authority["body"]
        .as_str()
        .is_some_and(|b| b.contains("For your information under Art. 20(2)")));
    // Each notice records the server's answer, and its id is the Message-ID's.
    for n in &sent {
        assert!(
            n["reference"]
                .as_str()
                .is_some_and(|r| r.starts_with("smtp 250")),
            "{n}"
        );
        let nid = n["id"].as_str().expect("id");
        assert!(
            got.iter().any(|m| m["message_id"]
                .as_str()
                .is_some_and(|x| x.starts_with(&format!("<{nid}.")))),
            "a mail with the Message-ID of {nid}"
        );
    }

    // The authority acknowledges with the link from its mail, by API call.
    let link = authority["body"]
        .as_str()
        .and_then(|b| b.lines().find(|l| l.contains("/v1/acknowledge/")))
        .expect("a link")
        .trim()
        .to_owned();
    let r: Value = reqwest::Client::new()
        .post(&link)
        .json(&json!({"by": "AP duty desk", "note": "received"}))
        .send()
        .await
        .expect("ack")
        .json()
        .await
        .expect("JSON");
    assert_eq!(r["notice"]["status"], "acknowledged", "{r}");
    let inc = s.get(&format!("/v1/incidents/{id}")).await;
    let statuses: Vec<(&str, &str)> = inc["notices"]
        .as_array()
        .expect("notices")
        .iter()
        .map(|n| {
            (
                n["destination"].as_str().unwrap_or_default(),
                n["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("ops@bank-a.example", "sent"),
            ("ai-incidents@ap.example", "acknowledged")
        ]
    );
    let (code, out) = s.audit_verify();
    assert_eq!(code, 0, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
