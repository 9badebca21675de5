//! The HTTP API as each role sees it: a table of routes and roles, every cell checked,
//! plus missing, unknown and expired tokens and error bodies that name what is wrong.

mod common;

use std::sync::Arc;

use common::*;
use driftwatch_incident::api::{router, Api};
use driftwatch_incident::auth::{new_token, Role, Tokens};
use driftwatch_incident::desk::{Desk, Handled};
use driftwatch_schema::Severity;
use serde_json::{json, Value};

struct Server {
    base: String,
    tokens: Vec<(Role, String)>,
    expired: String,
    desk: Arc<Desk>,
    _dir: tempfile::TempDir,
}

async fn server() -> Server {
    let (_, store, dir) = stores().await.into_iter().next().expect("sqlite");
    let mut d = Desk::new(Arc::new(store), vec![policy()]);
    d.evidence_wait = std::time::Duration::from_millis(50);
    let desk = Arc::new(d);
    let mut lines = Vec::new();
    let mut tokens = Vec::new();
    for role in [
        Role::Viewer,
        Role::Operator,
        Role::Approver,
        Role::Deployer,
        Role::Admin,
    ] {
        let (t, line) = new_token(&format!("{}-person", role.as_str()), role, None);
        lines.push(line);
        tokens.push((role, t));
    }
    let (expired, line) = new_token(
        "gone",
        Role::Admin,
        Some(chrono::Utc::now() - chrono::Duration::hours(1)),
    );
    lines.push(line);
    let api = Arc::new(Api {
        desk: desk.clone(),
        tokens: Tokens::parse(&lines.join("\n"), "test").expect("tokens"),
        verifier_key: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router(api)).await });
    Server {
        base,
        tokens,
        expired,
        desk,
        _dir: dir,
    }
}

async fn call(
    s: &Server,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let http = reqwest::Client::new();
    let url = format!("{}{path}", s.base);
    let mut req = match method {
        "POST" => http.post(&url).json(&body.unwrap_or(json!({}))),
        _ => http.get(&url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Every route, every role: allowed (any answer but 401/403) or forbidden (403).
#[tokio::test]
async fn each_role_may_do_what_the_table_says_and_nothing_else() {
    let s = server().await;
    let Handled::Opened(id) = s
        .desk
        .handle_alert(at(0), &alert(3, "age", Severity::Critical))
        .await
        .expect("alert")
    else {
        panic!("no incident")
    };
    use Role::*;
    let reads = [Viewer, Operator, Approver, Admin];
    let table: Vec<(&str, String, Option<Value>, Vec<Role>)> = vec![
        ("GET", "/v1/systems".into(), None, reads.to_vec()),
        ("GET", "/v1/incidents".into(), None, reads.to_vec()),
        ("GET", format!("/v1/incidents/{id}"), None, reads.to_vec()),
        (
            "GET",
            format!("/v1/incidents/{id}/timeline"),
            None,
            reads.to_vec(),
        ),
        (
            "GET",
            format!("/v1/incidents/{id}/evidence"),
            None,
            reads.to_vec(),
        ),
        (
            "GET",
            format!("/v1/incidents/{id}/export?format=markdown"),
            None,
            reads.to_vec(),
        ),
        ("GET", "/v1/audit".into(), None, reads.to_vec()),
        ("GET", "/v1/audit/verify".into(), None, reads.to_vec()),
        (
            "POST",
            "/v1/incidents".into(),
            Some(json!({"system_id": "credit", "description": "report"})),
            vec![Operator, Approver, Deployer, Admin],
        ),
        (
            "POST",
            format!("/v1/incidents/{id}/notes"),
            Some(json!({"text": "looking"})),
            vec![Operator, Approver, Admin],
        ),
        (
            "POST",
            format!("/v1/incidents/{id}/assess"),
            Some(json!({})),
            vec![Operator, Approver, Admin],
        ),
        (
            "POST",
            format!("/v1/incidents/{id}/classify"),
            Some(json!({})),
            vec![Operator, Approver, Admin],
        ),
        (
            "POST",
            format!("/v1/incidents/{id}/tasks"),
            Some(json!({})),
            vec![Operator, Approver, Admin],
        ),
        (
            "POST",
            format!("/v1/incidents/{id}/inform"),
            Some(json!({})),
            vec![Operator, Approver, Admin],
        ),
        (
            "POST",
            format!("/v1/incidents/{id}/verify"),
            Some(json!({})),
            vec![Operator, Approver, Admin],
        ),
        (
            "POST",
            format!("/v1/incidents/{id}/decide"),
            Some(json!({})),
            vec![Approver, Admin],
        ),
        (
            "POST",
            format!("/v1/incidents/{id}/close"),
            Some(json!({})),
            vec![Approver, Admin],
        ),
        (
            "POST",
            format!("/v1/incidents/{id}/reopen"),
            Some(json!({})),
            vec![Approver, Admin],
        ),
        (
            "POST",
            format!("/v1/incidents/{id}/authority-reports"),
            Some(json!({"kind": "initial"})),
            vec![Approver, Admin],
        ),
        (
            "POST",
            "/v1/systems/credit/enable".into(),
            Some(json!({"reason": "fixed"})),
            vec![Approver, Admin],
        ),
    ];
    let before = s.desk.store.head().await.expect("head").0;
    let mut cells = 0;
    for (method, path, body, allowed) in &table {
        for (role, token) in &s.tokens {
            let (status, v) = call(&s, Some(token), method, path, body.clone()).await;
            cells += 1;
            if allowed.contains(role) {
                assert!(
                    status != 401 && status != 403,
                    "{role:?} {method} {path}: {status} {v}"
                );
            } else {
                assert_eq!(status, 403, "{role:?} {method} {path}: {v}");
                assert_eq!(v["error"]["code"], "forbidden");
                assert!(
                    v["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(role.as_str())),
                    "{v}"
                );
            }
        }
        for (token, code) in [
            (None, "unauthenticated"),
            (Some("dwt_wrong"), "invalid_token"),
            (Some(s.expired.as_str()), "token_expired"),
        ] {
            let (status, v) = call(&s, token, method, path, body.clone()).await;
            assert_eq!(
                (status, v["error"]["code"].as_str()),
                (401, Some(code)),
                "{method} {path}"
            );
        }
    }
    assert_eq!(cells, table.len() * 5);
    // Refused requests changed nothing: the only entries added are the allowed ones.
    let entries = s
        .desk
        .store
        .audit_entries(before as i64 + 1, 1000)
        .await
        .expect("audit");
    assert!(
        entries.iter().all(
            |e| !e.actor.starts_with("viewer") && !e.actor.starts_with("deployer")
                || e.action == "incident_opened"
        ),
        "a viewer changed something"
    );
}

#[tokio::test]
async fn errors_name_the_state_and_the_field() {
    let s = server().await;
    let token = |r: Role| {
        s.tokens
            .iter()
            .find(|(x, _)| *x == r)
            .map(|(_, t)| t.clone())
            .expect("token")
    };
    let Handled::Opened(id) = s
        .desk
        .handle_alert(at(0), &alert(3, "age", Severity::Critical))
        .await
        .expect("alert")
    else {
        panic!()
    };
    let (status, v) = call(
        &s,
        Some(&token(Role::Approver)),
        "POST",
        &format!("/v1/incidents/{id}/decide"),
        Some(json!({"reason": "stop", "decision": "disable"})),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "illegal_transition");
    assert_eq!(v["error"]["current_state"], "open");
    let (status, v) = call(
        &s,
        Some(&token(Role::Operator)),
        "POST",
        &format!("/v1/incidents/{id}/assess"),
        Some(json!({"assessment": "x"})),
    )
    .await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (422, Some("reason")),
        "{v}"
    );
    let (status, v) = call(
        &s,
        Some(&token(Role::Operator)),
        "POST",
        &format!("/v1/incidents/{id}/assess"),
        Some(json!({"reason": "r", "assessment": "x", "severity": "high"})),
    )
    .await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (422, Some("severity")),
        "unknown field named: {v}"
    );
    let (status, v) = call(
        &s,
        Some(&token(Role::Approver)),
        "POST",
        &format!("/v1/incidents/{id}/decide"),
        Some(json!({"reason": "r", "decision": "explode"})),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("explode")),
        "{v}"
    );
    let (status, v) = call(
        &s,
        Some(&token(Role::Viewer)),
        "GET",
        "/v1/incidents/INC-NOPE",
        None,
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    // A deployer's report is filed, and the deployer sees only its receipt.
    let (status, v) = call(
        &s,
        Some(&token(Role::Deployer)),
        "POST",
        "/v1/incidents",
        Some(json!({"system_id": "credit", "description": "odd refusals"})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert!(
        v.get("id").is_some() && v.get("evidence_hash").is_none(),
        "{v}"
    );
    let (_, v) = call(
        &s,
        Some(&token(Role::Viewer)),
        "GET",
        &format!("/v1/incidents/{}", v["id"].as_str().expect("id")),
        None,
    )
    .await;
    assert_eq!(v["trigger"]["kind"], "deployer_report");
    assert_eq!(v["trigger"]["reported_by"], "deployer-person");
}

#[tokio::test]
async fn output_is_escaped_in_the_markdown_export() {
    let s = server().await;
    let token = s
        .tokens
        .iter()
        .find(|(r, _)| *r == Role::Operator)
        .map(|(_, t)| t.clone())
        .expect("token");
    let (_, v) = call(
        &s,
        Some(&token),
        "POST",
        "/v1/incidents",
        Some(json!({"system_id": "credit", "description": "<script>alert(1)</script> | pipe"})),
    )
    .await;
    let id = v["id"].as_str().expect("id").to_owned();
    let (status, md) = call(
        &s,
        Some(&token),
        "GET",
        &format!("/v1/incidents/{id}/export?format=markdown"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let md = md.as_str().expect("markdown text");
    assert!(!md.contains("<script>"), "{md}");
    assert!(md.contains("&lt;script&gt;"), "{md}");
    assert!(md.contains("# Corrective-action record"));
}
