//! The agent binary as the Kubernetes sidecar manifest runs it:
//! - its memory is bounded whatever clients send: eight clients at once posting maximal
//!   bodies (a valid batch of 10,000 events, an array of a million tiny objects, one
//!   object of 700,000 features) keep it under the manifest's memory limit;
//! - the manifest's own agent configuration serves the probes and `/metrics` on an
//!   admin port reachable off loopback, and ingest on loopback only.
//!
//! Kafka is not needed: the agent acknowledges from its spool.

use driftwatch_e2e::process::{test_dir, AgentProc};
use serde_json::json;

/// The sidecar's memory limit in `deploy/kubernetes/model-with-agent.yaml`, MiB.
const MANIFEST_LIMIT_MIB: u64 = 192;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_concurrent_maximal_requests() {
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/kubernetes/model-with-agent.yaml"),
    )
    .expect("manifest");
    assert!(
        manifest.contains(&format!("memory: {MANIFEST_LIMIT_MIB}Mi")),
        "the manifest's sidecar limit is the bound tested here"
    );
    let dir = test_dir("agent-memory");
    // Nothing listens on port 9: Kafka is away, the spool takes everything.
    let mut agent = AgentProc::start(&dir, "127.0.0.1:9", "driftwatch.events", "", "");
    agent.wait_ready().await;
    let idle = agent.proc.rss_kib().expect("rss");

    let event = |i: usize| {
        json!({"system_id": "s", "model_version": "1", "prediction_id": format!("p{i}"),
               "prediction": {"score": 0.5},
               "features": (0..12).map(|k| (format!("f{k}"), json!("v".repeat(40))))
                   .collect::<serde_json::Map<_, _>>()})
    };
    let valid: String = (0..10_000).map(|i| format!("{}\n", event(i))).collect();
    let tiny = format!("[{}]", vec!["{}"; 1_200_000].join(","));
    let features: Vec<String> = (0..700_000).map(|i| format!("\"f{i}\":1")).collect();
    let wide = format!(
        r#"{{"system_id":"s","model_version":"1","prediction_id":"p","prediction":{{"score":0.5}},"features":{{{}}}}}"#,
        features.join(",")
    );
    let client = reqwest::Client::new();
    for (name, body, status) in [
        ("valid batch", valid, 202),
        ("tiny objects", tiny, 413),
        ("wide object", wide, 400),
    ] {
        assert!(
            body.len() <= 8 * 1024 * 1024,
            "{name}: {} bytes",
            body.len()
        );
        let posts = (0..8).map(|_| {
            let (client, body) = (client.clone(), body.clone());
            let url = format!("http://{}/v1/predictions", agent.addr);
            tokio::spawn(async move {
                client
                    .post(url)
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        });
        for p in posts.collect::<Vec<_>>() {
            assert_eq!(p.await.expect("join").expect("answer"), status, "{name}");
        }
    }
    let peak = agent.proc.peak_rss_kib().expect("peak") / 1024;
    eprintln!("agent RSS idle {} MiB, peak {peak} MiB", idle / 1024);
    assert!(
        peak < MANIFEST_LIMIT_MIB,
        "peak {peak} MiB over the manifest's {MANIFEST_LIMIT_MIB} MiB"
    );
    agent.proc.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The sidecar manifest's own agent configuration, run as the binary: the probes and
/// Prometheus reach `/ready`, `/live` and `/metrics` on the admin port from another
/// address than loopback's 127.0.0.1 (the kubelet probes the pod IP; here 127.0.0.2
/// stands in for it), while ingest answers on 127.0.0.1 only. With ingest on loopback
/// and the probes on it, a native sidecar never became ready and the model never started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifests_probes_reach_the_admin_port_and_ingest_stays_on_loopback() {
    use driftwatch_e2e::process::{free_port, Proc};
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/kubernetes/model-with-agent.yaml"),
    )
    .expect("manifest");
    // The ConfigMap's agent.toml: the indented block after `agent.toml: |`.
    let start = manifest.find("agent.toml: |").expect("agent.toml") + "agent.toml: |".len();
    let toml: String = manifest[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    assert!(toml.contains("listen = \"127.0.0.1:8686\""), "{toml}");
    assert!(toml.contains("admin_listen = \"0.0.0.0:8687\""), "{toml}");
    for probe in [
        "httpGet: {path: /ready, port: 8687}",
        "httpGet: {path: /live, port: 8687}",
    ] {
        assert!(manifest.contains(probe), "the manifest probes {probe}");
    }
    assert!(manifest.contains("prometheus.io/port: \"8687\""));
    // Free ports instead of 8686/8687; a test directory and an absent broker.
    let (ingest, admin) = (free_port().port(), free_port().port());
    let dir = test_dir("manifest");
    let toml = toml
        .replace("127.0.0.1:8686", &format!("127.0.0.1:{ingest}"))
        .replace("0.0.0.0:8687", &format!("0.0.0.0:{admin}"))
        .replace(
            "/var/lib/driftwatch-agent",
            &dir.join("agent").display().to_string(),
        )
        .replace("kafka-bootstrap.kafka.svc:9092", "127.0.0.1:9");
    let config = dir.join("agent.toml");
    std::fs::write(&config, toml).expect("config");
    let bin = driftwatch_e2e::binary("driftwatch-agent");
    let mut agent = Proc::spawn(
        "driftwatch-agent",
        dir.join("agent.log"),
        std::process::Command::new(bin).arg("--config").arg(&config),
    );
    let client = reqwest::Client::new();
    let status = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    };
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(200) = status(format!("http://127.0.0.2:{admin}/ready")).await {
            ready = true;
            break;
        }
        assert!(agent.running(), "the agent exited");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "the startup probe passes on the admin port");
    assert_eq!(
        status(format!("http://127.0.0.2:{admin}/live")).await.ok(),
        Some(200)
    );
    let page = client
        .get(format!("http://127.0.0.2:{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(page.contains("driftwatch_agent_ready 1"), "{page}");
    // No ingest on the admin port, and ingest not reachable off loopback's 127.0.0.1.
    let on_admin = client
        .post(format!("http://127.0.0.2:{admin}/v1/predictions"))
        .body("{}")
        .send()
        .await
        .expect("answer");
    assert_eq!(on_admin.status(), 404);
    assert!(
        status(format!("http://127.0.0.2:{ingest}/ready"))
            .await
            .is_err(),
        "ingest listens on 127.0.0.1 only"
    );
    let posted = client
        .post(format!("http://127.0.0.1:{ingest}/v1/predictions"))
        .json(
            &json!({"system_id": "credit-scoring", "model_version": "1", "prediction_id": "p1",
                      "features": {"age": 40}, "prediction": {"score": 0.5}}),
        )
        .send()
        .await
        .expect("post");
    assert_eq!(posted.status(), 202);
    agent.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}
