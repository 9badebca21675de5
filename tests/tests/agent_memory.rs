//! The agent's memory is bounded whatever clients send: eight clients at once posting
//! maximal bodies (a valid batch of 10,000 events, an array of a million tiny objects,
//! one object of 700,000 features) keep the agent (this build, run as the sidecar
//! binary) under the memory limit the Kubernetes manifest gives it.
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
