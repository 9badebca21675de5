//! The kill switch, with the binaries as processes on librdkafka's mock cluster: an
//! approver decides `disable` on an incident; the sidecar reports it at `/v1/status`, in
//! the `driftwatch-serving` header of its ingest responses and as a metric within
//! seconds; an agent restarted while Kafka is away still reports it; a restriction
//! carries what is still allowed; `allow` lifts it.

use std::process::Command;
use std::time::{Duration, Instant};

use driftwatch_e2e::process::{free_port, test_dir, AgentProc, Proc};
use driftwatch_e2e::{binary, eventually};
use driftwatch_incident::auth::{new_token, Role};
use serde_json::{json, Value};

async fn status(agent: std::net::SocketAddr) -> Option<Value> {
    reqwest::get(format!("http://{agent}/v1/status?system_id=credit"))
        .await
        .ok()?
        .json()
        .await
        .ok()
}

async fn post(api: &str, token: &str, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{api}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    let v: Value = r.json().await.expect("json");
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// Open, assess and decide an incident on system `credit`; its id.
async fn decide(
    api: &str,
    olga: &str,
    carol: &str,
    decision: &str,
    restriction: Option<&str>,
) -> String {
    let inc = post(
        api,
        olga,
        "/v1/incidents",
        json!({"system_id": "credit", "description": "critical drift on age"}),
    )
    .await;
    let id = inc["id"].as_str().expect("id").to_owned();
    post(
        api,
        olga,
        &format!("/v1/incidents/{id}/assess"),
        json!({"reason": "checked", "assessment": "applicants are older"}),
    )
    .await;
    let mut body =
        json!({"reason": "accuracy for older applicants is not established", "decision": decision});
    if let Some(r) = restriction {
        body["restriction"] = json!(r);
    }
    post(api, carol, &format!("/v1/incidents/{id}/decide"), body).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_reaches_the_sidecar_and_survives_its_restart() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    for t in [
        "driftwatch.events",
        "driftwatch.alerts",
        "driftwatch.reports",
        "driftwatch.control",
        "driftwatch.audit-checkpoints",
    ] {
        cluster.create_topic(t, 1, 1).expect("topic");
    }
    let brokers = cluster.bootstrap_servers();
    let dir = test_dir("kill-switch");
    let (olga, olga_line) = new_token("olga", Role::Operator, None);
    let (carol, carol_line) = new_token("carol", Role::Approver, None);
    std::fs::write(dir.join("tokens"), format!("{olga_line}\n{carol_line}\n")).expect("tokens");
    let api_addr = free_port();
    let api = format!("http://{api_addr}");
    let _incidents = Proc::spawn(
        "driftwatch incident serve",
        dir.join("incidents.log"),
        Command::new(binary("driftwatch"))
            .args([
                "incident",
                "serve",
                "--brokers",
                &brokers,
                "--listen",
                &api_addr.to_string(),
            ])
            .arg("--database")
            .arg(format!("sqlite:{}", dir.join("incidents.db").display()))
            .arg("--tokens-file")
            .arg(dir.join("tokens"))
            .arg("--signing-key")
            .arg(dir.join("audit.key")),
    );
    let mut agent = AgentProc::start(&dir, &brokers, "driftwatch.events", "", "");
    agent.wait_ready().await;
    let up = eventually(Duration::from_secs(20), || async {
        reqwest::get(format!("{api}/live"))
            .await
            .ok()
            .filter(|r| r.status() == 200)
    })
    .await;
    assert!(up.is_some(), "incident service up");
    let before = status(agent.addr).await.expect("status");
    assert_eq!(before["serving"], "allowed", "{before}");

    let id = decide(&api, &olga, &carol, "disable", None).await;
    let decided = Instant::now();
    let seen = eventually(Duration::from_secs(20), || async {
        status(agent.addr)
            .await
            .filter(|s| s["serving"] == "disabled")
    })
    .await
    .expect("the sidecar reports the disablement");
    eprintln!("decision to sidecar: {} ms", decided.elapsed().as_millis());
    assert_eq!(seen["incident_id"], id.as_str());
    assert_eq!(seen["decided_by"], "carol");
    assert!(
        seen["reason"]
            .as_str()
            .is_some_and(|r| r.contains("older applicants")),
        "{seen}"
    );

    // The model server learns it from the answer to its next post.
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/predictions", agent.addr))
        .json(&json!({"system_id": "credit", "model_version": "1", "prediction_id": "p1", "features": {"age": 41}, "prediction": {"score": 0.4}}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202, "telemetry still flows: monitoring goes on");
    let header = r
        .headers()
        .get("driftwatch-serving")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(header, format!("disabled; system=credit; incident={id}"));
    let page = agent.metrics().await;
    assert_eq!(
        driftwatch_e2e::metric(
            &page,
            "driftwatch_agent_serving{state=\"disabled\",system=\"credit\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        driftwatch_e2e::metric(
            &page,
            "driftwatch_agent_serving{state=\"allowed\",system=\"credit\"}"
        ),
        Some(0.0)
    );

    // Restarted with Kafka away, the sidecar still reports the decision.
    assert_eq!(agent.proc.terminate(), Some(0));
    drop(agent);
    let mut offline = AgentProc::start(&dir, "127.0.0.1:9", "driftwatch.events", "", "");
    offline.wait_ready().await;
    let s = status(offline.addr).await.expect("status");
    assert_eq!(
        (s["serving"].as_str(), s["incident_id"].as_str()),
        (Some("disabled"), Some(id.as_str())),
        "{s}"
    );
    assert_eq!(offline.proc.terminate(), Some(0));
    drop(offline);

    // Lifted by an approver: a sidecar back on Kafka reports it may serve.
    post(
        &api,
        &carol,
        "/v1/systems/credit/enable",
        json!({"reason": "retrained model 1.5 verified", "incident_id": id}),
    )
    .await;
    let mut agent = AgentProc::start(&dir, &brokers, "driftwatch.events", "", "");
    agent.wait_ready().await;
    let lifted = eventually(Duration::from_secs(20), || async {
        status(agent.addr)
            .await
            .filter(|s| s["serving"] == "allowed" && s["since"].is_string())
    })
    .await
    .expect("the sidecar reports the lift");
    assert_eq!(lifted["decided_by"], "carol");

    // A restriction says what is still allowed.
    decide(
        &api,
        &olga,
        &carol,
        "restrict_use",
        Some("a person reviews every refusal"),
    )
    .await;
    let r = eventually(Duration::from_secs(20), || async {
        status(agent.addr)
            .await
            .filter(|s| s["serving"] == "restricted")
    })
    .await
    .expect("restricted");
    assert_eq!(r["restriction"], "a person reviews every refusal");
    assert_eq!(agent.proc.terminate(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Propagation, decision through the API to every agent's status, on a real broker with
/// 1 and with 20 agents (processes). A benchmark, not a timed assertion: it prints the
/// table recorded in BENCHMARKS.md. Run by hand:
///
/// ```sh
/// DRIFTWATCH_TEST_BROKERS=127.0.0.1:9092 cargo test -p driftwatch-e2e --test kill_switch -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark on a real broker"]
async fn propagation_to_one_and_twenty_agents() {
    let brokers = driftwatch_e2e::process::brokers();
    let control = format!("dw-bench-{}.control", std::process::id());
    driftwatch_e2e::create_topics(&brokers, &[(&control, 1)])
        .await
        .expect("topic");
    let dir = test_dir("kill-switch-bench");
    let (olga, olga_line) = new_token("olga", Role::Operator, None);
    let (carol, carol_line) = new_token("carol", Role::Approver, None);
    std::fs::write(dir.join("tokens"), format!("{olga_line}\n{carol_line}\n")).expect("tokens");
    let api_addr = free_port();
    let api = format!("http://{api_addr}");
    let _incidents = Proc::spawn(
        "driftwatch incident serve",
        dir.join("incidents.log"),
        Command::new(binary("driftwatch"))
            .args([
                "incident",
                "serve",
                "--brokers",
                &brokers,
                "--listen",
                &api_addr.to_string(),
            ])
            .args([
                "--control-topic",
                &control,
                "--alerts-topic",
                &format!("{control}.alerts"),
                "--reports-topic",
                "",
            ])
            .arg("--database")
            .arg(format!("sqlite:{}", dir.join("incidents.db").display()))
            .arg("--tokens-file")
            .arg(dir.join("tokens"))
            .arg("--signing-key")
            .arg(dir.join("audit.key")),
    );
    let mut rows = Vec::new();
    for n in [1usize, 20] {
        let mut agents = Vec::new();
        for i in 0..n {
            let d = dir.join(format!("agent-{n}-{i}"));
            std::fs::create_dir_all(&d).expect("dir");
            let mut a = AgentProc::start(
                &d,
                &brokers,
                "driftwatch.events",
                "",
                &format!("control_topic = \"{control}\""),
            );
            a.wait_ready().await;
            agents.push(a);
        }
        let addrs: Vec<std::net::SocketAddr> = agents.iter().map(|a| a.addr).collect();
        let mut latencies: Vec<u128> = Vec::new();
        for round in 0..10 {
            for (want, disable) in [("disabled", true), ("allowed", false)] {
                let started = Instant::now();
                if disable {
                    let inc = post(
                        &api,
                        &olga,
                        "/v1/incidents",
                        json!({"system_id": "credit", "description": format!("round {round}")}),
                    )
                    .await;
                    let id = inc["id"].as_str().expect("id").to_owned();
                    post(
                        &api,
                        &olga,
                        &format!("/v1/incidents/{id}/assess"),
                        json!({"reason": "r", "assessment": "a"}),
                    )
                    .await;
                    let started_decision = Instant::now();
                    post(
                        &api,
                        &carol,
                        &format!("/v1/incidents/{id}/decide"),
                        json!({"reason": "r", "decision": "disable"}),
                    )
                    .await;
                    let _ = started;
                    latencies.extend(wait_all(&addrs, want, started_decision).await);
                } else {
                    post(
                        &api,
                        &carol,
                        "/v1/systems/credit/enable",
                        json!({"reason": "r"}),
                    )
                    .await;
                    latencies.extend(wait_all(&addrs, want, started).await);
                }
            }
        }
        latencies.sort_unstable();
        let q = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
        rows.push((
            n,
            latencies.len(),
            q(0.5),
            q(0.99),
            *latencies.last().expect("some"),
        ));
        for mut a in agents {
            a.proc.terminate();
        }
    }
    println!("\nkill switch: decision through the API -> agent status changed (10 disable + 10 enable per run; every agent polled every 20 ms):\n");
    println!("| agents | status changes | p50 (ms) | p99 (ms) | max (ms) | target p99 |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (n, count, p50, p99, max) in rows {
        println!("| {n} | {count} | {p50} | {p99} | {max} | 2000 |");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Poll every agent until it reports `want`; the time each took from `since`.
async fn wait_all(agents: &[std::net::SocketAddr], want: &str, since: Instant) -> Vec<u128> {
    let polls = agents.iter().map(|a| {
        let a = *a;
        let want = want.to_owned();
        async move {
            let client = reqwest::Client::new();
            loop {
                if let Ok(r) = client
                    .get(format!("http://{a}/v1/status?system_id=credit"))
                    .send()
                    .await
                {
                    if let Ok(s) = r.json::<Value>().await {
                        if s["serving"] == want.as_str() {
                            return since.elapsed().as_millis();
                        }
                    }
                }
                assert!(
                    since.elapsed() < Duration::from_secs(30),
                    "agent {a} never reported {want}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    futures_util::future::join_all(polls).await
}
