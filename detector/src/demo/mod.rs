//! `driftwatch demo`: the whole pipeline on one machine with no configuration.
//!
//! An embedded Kafka (librdkafka's mock cluster) on a loopback port, the real agent on
//! an HTTP port, the detector in a consumer group, a webhook receiver that prints each
//! alert as it arrives, and a synthetic credit-scoring model that posts NDJSON batches
//! to the agent over HTTP. Halfway through, the applicants drift (older, more from the
//! south). The demo checks its own outcome: it exits non-zero if an alert fires before
//! the drift, if none fires after it, or if Kafka lost an alert.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::routing::post;
use axum::Router;
use driftwatch_agent::config::AgentConfig;
use prometheus::Registry;
use rdkafka::mocking::MockCluster;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::driver::kafka::KafkaOptions;
use crate::plan::{Plan, Severity};
use crate::service::{self, ServiceConfig};
use crate::synth::{demo_plan_toml, CreditModel, Drift};

mod kill_switch;
mod receivers;
use kill_switch::kill_switch;
use receivers::{count_topic, receive_alert, receive_notice, receive_page, Received};

/// Demo parameters.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Predictions before the drift starts (the first `reference` of them are the reference).
    pub before: usize,
    /// Predictions after the drift starts.
    pub after: usize,
    /// Reference size (first N predictions).
    pub reference: usize,
    /// Window size.
    pub window: usize,
    /// Predictions per HTTP request.
    pub batch: usize,
    /// Seed of the synthetic model.
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            before: 6_000,
            after: 6_000,
            reference: 2_000,
            window: 1_000,
            batch: 200,
            seed: 2026,
        }
    }
}

/// The demo plan's Art. 72 elements: owners, the action per severity, the parties to
/// inform, what is monitored and excluded, the review cadence.
fn art72_toml(deployer_webhook: &str) -> String {
    r#"
[monitoring]
data_sources = ["driftwatch-agent beside the model server: predictions and outcomes"]
excluded = ["raw personal data: request ids are pseudonymised at the agent"]
law_enforcement = "not deployed by law-enforcement authorities"

[actions.warning]
action = "continue"

[actions.critical]
action = "disable"
decided_by = "human"
runbook = "https://runbooks.example/driftwatch/credit-scoring"

[[owners]]
role = "plan owner"
name = "Demo Owner"
contact = "mailto:owner@example.com"

[[parties]]
kind = "deployer"
name = "Demo Bank"
contact = "mailto:ops@bank.example"
webhook = "DEPLOYER_WEBHOOK"

[[parties]]
kind = "market_surveillance_authority"
name = "Demo Authority"
contact = "mailto:ai-incidents@authority.example"
inform_on = ["disable", "withdraw", "recall"]

[review]
cadence_days = 90
"#
    .replace("DEPLOYER_WEBHOOK", deployer_webhook)
}

/// Outcomes arrive this long (event time) after their prediction.
const OUTCOME_DELAY_S: i64 = 300;
/// How long the demo plan waits for outcomes before a window is final.
const HORIZON_S: i64 = 600;

/// The demo plan's `[performance]` table: a binary model whose score is the chance of
/// repayment, the accuracy declared in its instructions for use, and alerts from warning
/// (CBPE estimates are warnings).
fn performance_toml() -> String {
    format!(
        r#"
[performance]
task = "binary"
positive_label = "repaid"
negative_label = "defaulted"
horizon_s = {HORIZON_S}
declared = {{ accuracy = 0.70 }}
min_severity = "warning"
"#
    )
}

/// Run the demo; returns an error if the pipeline did not behave.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let system = "credit-scoring";
    let events_topic = "driftwatch.events";
    let alerts_topic = "driftwatch.alerts";
    println!("driftwatch demo: post-market monitoring of a synthetic high-risk AI system\n");

    // 1. Embedded Kafka.
    let cluster = MockCluster::new(1).context("cannot start the embedded Kafka")?;
    cluster.create_topic(events_topic, 3, 1)?;
    cluster.create_topic(alerts_topic, 1, 1)?;
    cluster.create_topic(crate::driver::kafka::DEFAULT_STATE_TOPIC, 1, 1)?;
    cluster.create_topic(crate::driver::kafka::DEFAULT_REPORTS_TOPIC, 1, 1)?;
    cluster.create_topic(
        driftwatch_incident::service::DEFAULT_CHECKPOINTS_TOPIC,
        1,
        1,
    )?;
    cluster.create_topic(driftwatch_schema::DEFAULT_CONTROL_TOPIC, 1, 1)?;
    let brokers = cluster.bootstrap_servers();
    println!("[1/5] embedded Kafka (librdkafka mock cluster) at {brokers}: topics {events_topic} (3 partitions), {alerts_topic}, {}, {}", crate::driver::kafka::DEFAULT_REPORTS_TOPIC, crate::driver::kafka::DEFAULT_STATE_TOPIC);

    let stop = CancellationToken::new();

    // 2. A webhook receiver standing in for the on-call channel.
    let received = Received::default();
    let hook_listener = TcpListener::bind("127.0.0.1:0").await?;
    let hook_addr = hook_listener.local_addr()?;
    let hook_app = Router::new()
        .route("/alerts", post(receive_alert))
        .route("/slack", post(receive_page))
        .route("/deployer", post(receive_notice))
        .with_state(received.clone());
    // The receiver outlives the detector, whose shutdown drains its alert queues into it.
    let hook_stop = CancellationToken::new();
    let hook_stopper = hook_stop.clone();
    let hook = tokio::spawn(async move {
        axum::serve(hook_listener, hook_app)
            .with_graceful_shutdown(async move { hook_stop.cancelled().await })
            .await
    });

    // 3. The agent, exactly as the sidecar binary runs it.
    let agent_listener = TcpListener::bind("127.0.0.1:0").await?;
    let agent_addr: SocketAddr = agent_listener.local_addr()?;
    let agent_dir =
        std::env::temp_dir().join(format!("driftwatch-demo-agent-{}", std::process::id()));
    let agent_config = AgentConfig {
        listen: agent_addr,
        data_dir: agent_dir.clone(),
        kafka: driftwatch_agent::config::KafkaConfig {
            brokers: brokers.clone(),
            topic: events_topic.into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let agent_registry = Registry::new();
    let agent_stop = stop.clone();
    let agent = tokio::spawn(driftwatch_agent::run(
        agent_listener,
        agent_config,
        agent_registry.clone(),
        async move { agent_stop.cancelled().await },
    ));
    println!("[2/5] driftwatch-agent listening on http://{agent_addr} (POST /v1/predictions)");

    // 4. The detector with a plan whose alerts go to the webhook receiver.
    let plan_text = demo_plan_toml(system, opts.reference, opts.window)
        + &format!("webhook_url = \"http://{hook_addr}/alerts\"\nwebhook_sends = \"windows\"\n")
        + &format!("slack_webhook_url = \"http://{hook_addr}/slack\"\n")
        + "incident_url = \"http://127.0.0.1/v1/incidents?system_id={system}\"\n"
        + &performance_toml()
        + &art72_toml(&format!("http://{hook_addr}/deployer"));
    let plan = Arc::new(Plan::from_toml(&plan_text, "demo plan", PathBuf::new())?);
    // The incident service beside it, on an embedded SQLite record kept after the demo.
    let record_dir = std::env::temp_dir().join(format!("driftwatch-demo-{}", std::process::id()));
    std::fs::create_dir_all(&record_dir)?;
    std::fs::write(record_dir.join("plan.toml"), &plan_text)?;
    let database_url = format!("sqlite:{}", record_dir.join("incidents.db").display());
    let (admin_token, admin_line) = driftwatch_incident::auth::new_token(
        "demo-admin",
        driftwatch_incident::auth::Role::Admin,
        None,
    );
    std::fs::write(record_dir.join("tokens"), format!("{admin_line}\n"))?;
    std::fs::write(record_dir.join("admin.token"), &admin_token)?;
    let incident_listener = TcpListener::bind("127.0.0.1:0").await?;
    let incident_addr = incident_listener.local_addr()?;
    let incident_config = driftwatch_incident::service::IncidentConfig {
        database_url: database_url.clone(),
        brokers: brokers.clone(),
        security: Default::default(),
        kafka_properties: Default::default(),
        alerts_topic: alerts_topic.into(),
        reports_topic: crate::driver::kafka::DEFAULT_REPORTS_TOPIC.into(),
        checkpoints_topic: driftwatch_incident::service::DEFAULT_CHECKPOINTS_TOPIC.into(),
        control_topic: driftwatch_schema::DEFAULT_CONTROL_TOPIC.into(),
        group_id: "driftwatch-incidents".into(),
        policies: vec![plan.policy()],
        tokens: driftwatch_incident::auth::Tokens::parse(&admin_line, "demo")?,
        signing_key: record_dir.join("audit.key"),
        origin: "driftwatch.demo/audit".into(),
        checkpoint_interval: Duration::from_secs(1),
        reminder_interval: Duration::from_secs(60),
        evidence_wait: Duration::from_secs(2),
        mail: None,
        public_url: None,
    };
    let incident_stop = CancellationToken::new();
    let incident_stopper = incident_stop.clone();
    let incident_service = tokio::spawn(driftwatch_incident::service::run(
        incident_listener,
        incident_config,
        async move { incident_stop.cancelled().await },
    ));
    let mut detect_opts = KafkaOptions::new(&brokers);
    detect_opts.events_topic = events_topic.into();
    detect_opts.alerts_topic = Some(alerts_topic.into());
    let (report_tx, mut report_rx) = mpsc::unbounded_channel::<crate::engine::WindowReport>();
    let (perf_tx, mut perf_rx) = mpsc::unbounded_channel::<crate::perf::PerformanceReport>();
    let detector_stop = stop.clone();
    let mut detector_config = ServiceConfig::new(detect_opts, vec![plan.clone()]);
    detector_config.outputs.push(Arc::new(report_tx));
    detector_config.outputs.push(Arc::new(perf_tx));
    let detector = tokio::spawn(service::run(
        TcpListener::bind("127.0.0.1:0").await?,
        detector_config,
        async move { detector_stop.cancelled().await },
    ));
    println!(
        "[3/5] detector consuming {events_topic}: reference = first {} predictions, windows of {}, KS + PSI on age/income/debt_ratio/score, chi2 + PSI on region/employed; accuracy declared 0.70, outcomes joined for {HORIZON_S} s, CBPE estimates until they arrive",
        opts.reference, opts.window
    );
    println!(
        "      incident service at http://{incident_addr} consuming {alerts_topic}: a critical alert opens an incident (plan action: disable, decided by a person); record in {database_url}"
    );

    // 5. The model posts predictions over HTTP; the population drifts halfway.
    let client = reqwest::Client::new();
    let url = format!("http://{agent_addr}/v1/predictions");
    let outcomes_url = format!("http://{agent_addr}/v1/outcomes");
    let mut model = CreditModel::new(system, opts.seed);
    let total = opts.before + opts.after;
    println!(
        "[4/5] synthetic model posting {total} predictions in NDJSON batches of {}; drift starts after prediction {}; each outcome (repaid or defaulted) follows {OUTCOME_DELAY_S} s after its prediction",
        opts.batch, opts.before
    );
    let mut sent = 0;
    // Predictions whose outcome is not yet known, oldest first.
    let mut awaiting: std::collections::VecDeque<serde_json::Value> = Default::default();
    while sent < total {
        let n = opts.batch.min(total - sent);
        let mut body = Vec::with_capacity(n * 300);
        for i in 0..n {
            let drift = if sent + i < opts.before {
                Drift::NONE
            } else {
                Drift::DEMO_WITH_INCOME
            };
            let p = model.next_json(drift);
            serde_json::to_writer(&mut body, &p)?;
            body.push(b'\n');
            awaiting.push_back(p);
        }
        // A model server keeps a batch the agent answered 503 and retries after
        // Retry-After (the agent is still recovering its spool, or the spool is full).
        let mut attempts = 0;
        let resp = loop {
            let resp = client
                .post(&url)
                .header("content-type", "application/x-ndjson")
                .body(body.clone())
                .send()
                .await
                .context("agent did not answer")?;
            attempts += 1;
            if resp.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE || attempts == 30 {
                break resp;
            }
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .unwrap_or(1);
            tokio::time::sleep(std::time::Duration::from_millis(100 * wait)).await;
        };
        if resp.status() != reqwest::StatusCode::ACCEPTED {
            bail!(
                "agent answered {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        // The outcomes now due (their predictions are OUTCOME_DELAY_S predictions old).
        let due = awaiting.len().saturating_sub(OUTCOME_DELAY_S as usize);
        let outcomes: Vec<serde_json::Value> = awaiting.drain(..due).collect();
        post_outcomes(&client, &outcomes_url, &mut model, &outcomes).await?;
        if sent < opts.before && sent + n >= opts.before {
            println!(
                "        ... {} predictions acknowledged; the applicant population now drifts",
                sent + n
            );
        }
        sent += n;
    }
    let rest: Vec<serde_json::Value> = awaiting.drain(..).collect();
    post_outcomes(&client, &outcomes_url, &mut model, &rest).await?;
    println!(
        "        ... all {total} predictions and their outcomes acknowledged (HTTP 202 once in the agent's disk spool; its sender delivers them to Kafka)"
    );

    // Wait for every window to be evaluated.
    let expected_windows = (total - opts.reference) / opts.window;
    let drift_window = ((opts.before - opts.reference) / opts.window) as i64;
    let mut reports = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while reports.len() < expected_windows {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, report_rx.recv()).await {
            Ok(Some(r)) => reports.push(r),
            _ => break,
        }
    }
    let agent_page = driftwatch_agent::metrics::render(&agent_registry);
    let agent_metric = |name: &str| {
        agent_page
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (delivered, backlog) = (
        agent_metric("driftwatch_agent_kafka_delivered_total"),
        agent_metric("driftwatch_agent_spool_backlog_events"),
    );
    // Performance: every window final whose last prediction is a horizon older than the
    // last outcome (the last prediction's).
    let last_outcome_s = total as i64 - 1 + OUTCOME_DELAY_S;
    let finals_expected = (0..expected_windows as i64)
        .filter(|k| {
            let last = (opts.reference as i64) + (k + 1) * opts.window as i64 - 1;
            last + HORIZON_S < last_outcome_s
        })
        .count();
    let mut perf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let last_window = expected_windows as i64 - 1;
    let done = |perf: &[crate::perf::PerformanceReport]| {
        perf.iter()
            .filter(|r| r.stage == crate::perf::Stage::Final)
            .count()
            >= finals_expected
            // and the last window has every outcome (its last report, at 100%)
            && perf
                .iter()
                .any(|r| r.window.index == last_window && r.window.outcomes == r.window.events)
    };
    while !done(&perf) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, perf_rx.recv()).await {
            Ok(Some(r)) => perf.push(r),
            _ => break,
        }
    }
    while let Ok(r) = perf_rx.try_recv() {
        perf.push(r);
    }
    // The webhook reads the alerts topic in a consumer group of its own: wait until it
    // has every alert the windows raised (stopping does not wait for it).
    let raised: usize = reports
        .iter()
        .map(|r| crate::alert::alerts_for(r, plan.alerts.min_severity).len())
        .sum::<usize>()
        + perf
            .iter()
            .map(|r| crate::alert::performance_alerts(r, plan.performance_min_severity()).len())
            .sum::<usize>();
    let paged = receivers::expected_pages(&plan, &reports, &perf);
    let wait = Instant::now() + Duration::from_secs(30);
    while Instant::now() < wait
        && (received.alerts.lock().map(|v| v.len()).unwrap_or(0) < raised
            || received.pages.lock().map(|v| v.len()).unwrap_or(0) < paged)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The kill switch: a person decides `disable` on the first incident; the agent
    // reports it; `enable` lifts it.
    let flip = kill_switch(
        &client,
        &format!("http://{incident_addr}"),
        &admin_token,
        agent_addr,
        system,
        &received,
    )
    .await?;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), agent).await;
    let _ = tokio::time::timeout(Duration::from_secs(15), detector).await;
    hook_stopper.cancel();
    let _ = hook.await;
    let (in_kafka, notes_in_kafka) = tokio::task::spawn_blocking({
        let brokers = brokers.clone();
        move || count_topic(&brokers, alerts_topic)
    })
    .await??;
    let _ = std::fs::remove_dir_all(&agent_dir);

    // The incident service has every alert on the topic: then it stops (signing a last
    // checkpoint of its audit trail) and the record is checked.
    let record = driftwatch_incident::store::Store::open(&database_url).await?;
    let wait = Instant::now() + Duration::from_secs(30);
    while Instant::now() < wait && (record.alert_count().await? as usize) < in_kafka {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    incident_stopper.cancel();
    match tokio::time::timeout(Duration::from_secs(15), incident_service).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => bail!("the incident service failed: {e}"),
        _ => bail!("the incident service did not stop"),
    }
    let recorded = record.alert_count().await? as usize;
    let incidents = record.list(None, None, 1000).await?;
    let verified = record.verify(&[]).await?;

    let alerts = received
        .alerts
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    println!("\n[5/5] summary");
    println!("  agent: {delivered} events delivered to Kafka from its spool, {backlog} waiting");
    println!(
        "  windows evaluated: {} of {expected_windows}",
        reports.len()
    );
    for r in &reports {
        let flagged: Vec<String> = r
            .checks
            .iter()
            .filter(|c| c.severity == Severity::Critical)
            .map(|c| format!("{}/{}", c.signal, c.method))
            .collect();
        println!(
            "    window {:>2} {:<8} {:<8} {}",
            r.window.index,
            if r.window.index < drift_window {
                "before"
            } else {
                "drifted"
            },
            r.severity.as_str(),
            flagged.join(" ")
        );
    }
    println!("  performance per window (accuracy; declared 0.70):");
    for k in 0..expected_windows as i64 {
        let of = |stage| {
            perf.iter()
                .rev()
                .find(|r| r.window.index == k && r.stage == stage)
        };
        let estimated = of(crate::perf::Stage::Provisional)
            .and_then(|r| {
                r.estimated
                    .iter()
                    .find(|m| m.metric == crate::plan::PerfMetric::Accuracy)
            })
            .and_then(|m| m.value);
        let realized = of(crate::perf::Stage::Final)
            .or_else(|| of(crate::perf::Stage::Provisional))
            .map(|r| {
                let v = r
                    .metrics
                    .iter()
                    .find(|m| m.metric == crate::plan::PerfMetric::Accuracy)
                    .and_then(|m| m.value);
                (v, r.stage, r.coverage, r.severity)
            });
        let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        match realized {
            Some((v, stage, coverage, severity)) => println!(
                "    window {k:>2}  estimated {}  realized {} ({}, {:.0}% of outcomes) {}",
                show(estimated),
                show(v),
                stage.as_str(),
                coverage * 100.0,
                severity.as_str()
            ),
            None => println!("    window {k:>2}  estimated {}", show(estimated)),
        }
    }
    let early = alerts
        .iter()
        .filter(|a| a.window.index < drift_window)
        .count();
    let late = alerts.len() - early;
    use driftwatch_schema::AlertKind;
    let first = |kind: AlertKind| alerts.iter().position(|a| a.kind == kind);
    let (estimate_at, realized_at) = (
        first(AlertKind::PerformanceEstimate),
        first(AlertKind::Performance),
    );
    println!(
        "  alerts at the webhook: {} ({early} before the drift, {late} after)",
        alerts.len()
    );
    println!("  alerts on the Kafka topic {alerts_topic}: {in_kafka} (and {notes_in_kafka} episode notifications)");
    let pages = received.pages.lock().map(|v| v.clone()).unwrap_or_default();
    let count = |word: &str| pages.iter().filter(|p| p.contains(word)).count();
    println!(
        "  pages to the on-call channel (Slack-compatible): {} for {} window alerts: {} firing, {} escalated, {} resolved",
        pages.len(),
        alerts.len(),
        count(" FIRING "),
        count(" ESCALATED "),
        count(" RESOLVED "),
    );
    println!(
        "  kill switch: demo-admin decided `disable` on {}: the agent reported `disabled` after {} ms",
        flip.incident, flip.disabled_ms
    );
    println!(
        "    (GET /v1/status; its next ingest answer said `driftwatch-serving: {}`); `enable` restored `allowed` after {} ms",
        flip.header, flip.enabled_ms
    );
    println!(
        "  notices (Art. 20): Demo Bank's webhook got the decision {} ms after it and acknowledged it through the link; {} e-mail notice(s) wait for an SMTP server (--smtp-url)",
        flip.notice_ms, flip.waiting_mail
    );
    println!(
        "  incidents opened: {} (one per condition, {recorded} alerts recorded; audit chain {} entries, {})",
        incidents.len(),
        verified.entries,
        if verified.ok { "verified" } else { "BROKEN" }
    );
    for i in &incidents {
        println!(
            "    {} {:<14} {:>2} alerts, onset window {}: {}",
            i.id,
            i.state.as_str(),
            i.alerts.count,
            i.onset
                .as_ref()
                .map_or("?".into(), |o| o.window_index.to_string()),
            i.title
        );
    }
    println!("  elapsed: {:.1} s", started.elapsed().as_secs_f64());
    drop(cluster);

    if reports.len() < expected_windows {
        bail!(
            "only {} of {expected_windows} windows were evaluated",
            reports.len()
        );
    }
    if early > 0 {
        bail!("{early} alerts fired before the drift started");
    }
    if late == 0 {
        bail!("no alert fired after the drift started");
    }
    match (estimate_at, realized_at) {
        (Some(e), Some(r)) if e < r => {
            let (e, r) = (&alerts[e], &alerts[r]);
            println!(
                "  performance: CBPE warned at window {} before any outcome; the realized accuracy confirmed it at window {} once the outcomes were in",
                e.window.index, r.window.index
            );
        }
        (None, _) => bail!("no CBPE estimate warned of the performance drop"),
        (_, None) => bail!("no realized-performance alert after the drop"),
        _ => bail!("the realized-performance alert came before any CBPE warning"),
    }
    if pages.len() != paged {
        bail!(
            "the on-call channel got {} pages, {paged} episode notifications page",
            pages.len()
        );
    }
    if count(" FIRING ") == 0 || pages.len() >= alerts.len() {
        bail!(
            "{} pages for {} window alerts: not one page per episode",
            pages.len(),
            alerts.len()
        );
    }
    if in_kafka != alerts.len() {
        bail!(
            "{} alerts reached the webhook but {in_kafka} the Kafka topic",
            alerts.len()
        );
    }
    let policy = plan.policy();
    let conditions: std::collections::BTreeSet<String> = alerts
        .iter()
        .filter(|a| a.severity == Severity::Critical)
        .map(|a| policy.condition(a))
        .collect();
    if incidents.len() != conditions.len() {
        bail!(
            "{} incidents opened for {} alerting conditions (one each expected)",
            incidents.len(),
            conditions.len()
        );
    }
    if recorded != in_kafka {
        bail!("the incident service recorded {recorded} of {in_kafka} alerts");
    }
    if !verified.ok {
        bail!("the audit chain does not verify: {:?}", verified.problem);
    }
    let dir = record_dir.display();
    println!("\n  look at the incidents (the record stays in {dir}):");
    println!("    driftwatch audit verify --database {database_url}");
    println!("    driftwatch incident serve --brokers '' --database {database_url} --plan {dir}/plan.toml --tokens-file {dir}/tokens --signing-key {dir}/audit.key &");
    println!("    export DRIFTWATCH_TOKEN_FILE={dir}/admin.token");
    println!("    driftwatch incident list");
    if let Some(i) = incidents.first() {
        println!(
            "    driftwatch incident export {}        # Markdown for the compliance file",
            i.id
        );
        println!(
            "    driftwatch incident assess {} --reason '...' --assessment '...'",
            i.id
        );
    }
    println!("\ndemo passed: the drift and the performance drop were detected and alerted on (the drop estimated before its outcomes arrived), nothing fired before them, and each alerting condition opened one incident with its evidence.");
    Ok(())
}

/// Post outcome events to the agent in one NDJSON batch.
async fn post_outcomes(
    client: &reqwest::Client,
    url: &str,
    model: &mut CreditModel,
    predictions: &[serde_json::Value],
) -> anyhow::Result<()> {
    if predictions.is_empty() {
        return Ok(());
    }
    let mut body = Vec::with_capacity(predictions.len() * 160);
    for p in predictions {
        serde_json::to_writer(&mut body, &model.outcome_json(p, OUTCOME_DELAY_S))?;
        body.push(b'\n');
    }
    for _ in 0..30 {
        let resp = client
            .post(url)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await
            .context("agent did not answer")?;
        match resp.status() {
            reqwest::StatusCode::ACCEPTED => return Ok(()),
            reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            s => bail!(
                "agent answered {s} to outcomes: {}",
                resp.text().await.unwrap_or_default()
            ),
        }
    }
    bail!("the agent kept refusing outcomes (503)")
}
