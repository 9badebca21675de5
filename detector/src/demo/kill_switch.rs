//! The demo's kill switch: a person decides `disable` on an incident through the API,
//! and the demo times the agent's status flip, and back after `enable`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::synth::{CreditModel, Drift};

/// What the kill switch did in the demo.
pub(super) struct Flip {
    pub(super) incident: String,
    pub(super) disabled_ms: u128,
    pub(super) header: String,
    pub(super) enabled_ms: u128,
    /// Decision -> the notice at the deployer's webhook.
    pub(super) notice_ms: u128,
    /// E-mail notices waiting (the demo has no SMTP server).
    pub(super) waiting_mail: usize,
}

/// Wait for an incident, assess it and decide `disable` as the demo's approver; time the
/// agent's status flip; then `enable` and time it back.
pub(super) async fn kill_switch(
    client: &reqwest::Client,
    api: &str,
    token: &str,
    agent: SocketAddr,
    system: &str,
    received: &super::Received,
) -> anyhow::Result<Flip> {
    let call = |path: String, body: serde_json::Value| {
        let req = client
            .post(format!("{api}{path}"))
            .bearer_auth(token)
            .json(&body);
        async move {
            let r = req
                .send()
                .await
                .context("incident service did not answer")?;
            let status = r.status();
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            if !status.is_success() {
                bail!("incident service answered {status}: {v}");
            }
            Ok::<_, anyhow::Error>(v)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let incident = loop {
        let list: serde_json::Value = client
            .get(format!("{api}/v1/incidents?system_id={system}"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        if let Some(id) = list["incidents"]
            .as_array()
            .and_then(|l| l.last())
            .and_then(|i| i["id"].as_str())
        {
            break id.to_owned();
        }
        if Instant::now() > deadline {
            bail!("no incident opened");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    call(
        format!("/v1/incidents/{incident}/assess"),
        serde_json::json!({"reason": "demo", "assessment": "the applicant population drifted"}),
    )
    .await?;
    let status = |want: &'static str| async move {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            let s: serde_json::Value = client
                .get(format!("http://{agent}/v1/status?system_id={system}"))
                .send()
                .await?
                .json()
                .await?;
            if s["serving"] == want {
                return Ok(started.elapsed().as_millis());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("the agent did not report `{want}` within 20 s")
    };
    call(
        format!("/v1/incidents/{incident}/decide"),
        serde_json::json!({"reason": "demo: accuracy for the new population is not established", "decision": "disable"}),
    )
    .await?;
    let decided = Instant::now();
    let disabled_ms = status("disabled").await?;
    // The deployer is told by webhook, and acknowledges through the notice's link.
    let notice = loop {
        let got = received
            .notices
            .lock()
            .ok()
            .and_then(|n| n.first().cloned());
        if let Some(n) = got {
            break n;
        }
        if decided.elapsed() > Duration::from_secs(20) {
            bail!("no notice reached the deployer's webhook");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let notice_ms = decided.elapsed().as_millis();
    let link = notice["acknowledge_url"]
        .as_str()
        .context("a notice without its acknowledge link")?;
    let r = client
        .post(link)
        .json(&serde_json::json!({"by": "Demo Bank operations"}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("acknowledging the notice answered {}", r.status());
    }
    let notices: serde_json::Value = client
        .get(format!("{api}/v1/incidents/{incident}/notices"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let waiting_mail = notices["notices"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|n| n["channel"] == "email" && n["status"] == "pending")
                .count()
        })
        .unwrap_or(0);
    // The model server's next post learns it from the answer.
    let p = CreditModel::new(system, 1).next_json(Drift::NONE);
    let r = client
        .post(format!("http://{agent}/v1/predictions"))
        .json(&p)
        .send()
        .await?;
    let header = r
        .headers()
        .get("driftwatch-serving")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !header.starts_with("disabled") {
        bail!("the agent's answer says `{header}`, not disabled");
    }
    call(
        format!("/v1/systems/{system}/enable"),
        serde_json::json!({"reason": "demo: lifted", "incident_id": incident}),
    )
    .await?;
    let enabled_ms = status("allowed").await?;
    Ok(Flip {
        incident,
        disabled_ms,
        header,
        enabled_ms,
        notice_ms,
        waiting_mail,
    })
}
