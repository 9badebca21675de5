//! The agent against its references, in one run, on the same broker and payloads:
//! throughput of NDJSON batch ingest until Kafka confirmed it (the agent acknowledges
//! after its disk spool; the clock stops when its sender has Kafka's confirmation of the
//! last event), against a raw rdkafka producer sending the same lines and against `kcat`
//! piping them; single-event latency at a fixed rate under both fsync policies; resident
//! memory idle and under load; CPU per 1,000 events.
//!
//! `cargo bench -p driftwatch-agent --bench ingest` (embedded mock cluster), or with
//! `DRIFTWATCH_BENCH_BROKERS=host:port` against a real broker. Build the agent first:
//! `cargo build --release -p driftwatch-agent`. Figures go to BENCHMARKS.md.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const EVENTS: usize = 200_000;
const BATCH: usize = 500;
const CLIENTS: usize = 4;
const RATE: u64 = 2_000;
const LATENCY_SECONDS: u64 = 5;

fn payloads() -> Vec<String> {
    (0..EVENTS)
        .map(|i| {
            format!(
                r#"{{"system_id":"credit-scoring","model_version":"3.1.0","prediction_id":"req-{i}","timestamp":"2026-11-23T10:00:00Z","features":{{"age":{},"income":{},"debt_ratio":0.{},"region":"{}","employed":{}}},"prediction":{{"score":0.{},"label":"approve"}}}}"#,
                18 + i % 60,
                20_000 + (i * 37) % 80_000,
                i % 1000,
                ["north", "south", "east", "west"][i % 4],
                i % 5 != 0,
                i % 10_000
            )
        })
        .collect()
}

fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

fn raw_producer(brokers: &str, topic: &str, lines: &[String]) -> f64 {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let start = Instant::now();
    for line in lines {
        let mut record = BaseRecord::to(topic)
            .key("credit-scoring")
            .payload(line.as_str());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    lines.len() as f64 / start.elapsed().as_secs_f64()
}

fn kcat(brokers: &str, topic: &str, lines: &[String]) -> Option<f64> {
    let file = std::env::temp_dir().join(format!("dw-bench-{}.ndjson", std::process::id()));
    std::fs::write(&file, lines.join("\n") + "\n").ok()?;
    let before = topic_messages(brokers, topic);
    let start = Instant::now();
    // Bounded: Debian's kcat cannot talk to some brokers (tansu 0.6) and would wait.
    let status = Command::new("timeout")
        .args([
            "60", "kcat", "-b", brokers, "-t", topic, "-P", "-l", "-z", "lz4",
        ])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    let elapsed = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(file);
    // Only what the broker holds counts: an exit status alone does not prove delivery.
    let delivered = topic_messages(brokers, topic) - before >= lines.len() as i64;
    (status.success() && delivered).then(|| lines.len() as f64 / elapsed)
}

/// Messages a 3-partition topic holds (sum of high watermarks).
fn topic_messages(brokers: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let Ok(consumer) = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create::<BaseConsumer>()
    else {
        return 0;
    };
    (0..3)
        .filter_map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .ok()
        })
        .map(|(low, high)| high - low)
        .sum()
}

/// The bench topics on a real broker (3 partitions each; existing ones are fine).
async fn create_topics(brokers: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let topics: Vec<NewTopic> = ["bench.agent", "bench.raw", "bench.kcat", "bench.latency"]
        .iter()
        .map(|t| NewTopic::new(t, 3, TopicReplication::Fixed(1)))
        .collect();
    let _ = admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .expect("create topics");
}

/// Start the release agent with its spool in a fresh directory; wait until ready.
async fn start_agent(
    brokers: &str,
    topic: &str,
    fsync: &str,
) -> (std::process::Child, String, PathBuf) {
    let bin = std::env::var("DRIFTWATCH_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/driftwatch-agent")
        });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let dir = std::env::temp_dir().join(format!("dw-bench-agent-{}-{fsync}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("data dir");
    let config = dir.join("agent.toml");
    std::fs::write(&config, format!("[spool]\nfsync = \"{fsync}\"\n")).expect("config");
    let child = Command::new(&bin)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--brokers",
            brokers,
            "--topic",
            topic,
        ])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("DRIFTWATCH_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); cargo build --release -p driftwatch-agent",
                bin.display()
            )
        });
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..400 {
        if client
            .get(format!("{base}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    (child, base, dir)
}

fn stop(child: &mut std::process::Child, dir: &std::path::Path) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

/// Single-event POSTs at `RATE` per second for `LATENCY_SECONDS` (open loop): sorted
/// latencies in ms of the 202s, and how many were not 202.
async fn latency(client: &reqwest::Client, base: &str, line: &str) -> (Vec<f64>, usize) {
    let one = Arc::new(line.to_owned());
    let mut handles = Vec::new();
    let interval = Duration::from_micros(1_000_000 / RATE);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = (RATE * LATENCY_SECONDS) as usize;
    for _ in 0..total {
        tick.tick().await;
        let (client, one, url) = (
            client.clone(),
            one.clone(),
            format!("{base}/v1/predictions"),
        );
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = client.post(&url).body((*one).clone()).send().await;
            let ok = r.is_ok_and(|r| r.status() == 202);
            (t.elapsed().as_secs_f64() * 1000.0, ok)
        }));
    }
    let mut lat = Vec::with_capacity(total);
    let mut failed = 0;
    for h in handles {
        let (ms, ok) = h.await.expect("request");
        if ok {
            lat.push(ms);
        } else {
            failed += 1;
        }
    }
    lat.sort_by(f64::total_cmp);
    (lat, failed)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cluster;
    let (brokers, broker_name) = match std::env::var("DRIFTWATCH_BENCH_BROKERS") {
        Ok(b) => {
            create_topics(&b).await;
            (b.clone(), format!("broker {b}"))
        }
        Err(_) => {
            cluster = MockCluster::new(1).expect("mock cluster");
            for t in ["bench.agent", "bench.raw", "bench.kcat", "bench.latency"] {
                cluster.create_topic(t, 3, 1).expect("topic");
            }
            (
                cluster.bootstrap_servers(),
                "librdkafka mock cluster".to_owned(),
            )
        }
    };
    let lines = payloads();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();

    // 1. The limit on this machine: a raw producer.
    let raw = raw_producer(&brokers, "bench.raw", &lines);
    // 2. kcat piping the same NDJSON.
    let kcat_rate = kcat(&brokers, "bench.kcat", &lines);

    // 3. The agent binary, with the default fsync policy (interval).
    let client = reqwest::Client::new();
    let (mut child, base, data_dir) = start_agent(&brokers, "bench.agent", "interval").await;
    let pid = child.id();
    let idle_rss_kb = proc_status(pid, "VmRSS:");

    let batches: Arc<Vec<String>> = Arc::new(lines.chunks(BATCH).map(|c| c.join("\n")).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = cpu_seconds(pid);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, batches, next, url) = (
            client.clone(),
            batches.clone(),
            next.clone(),
            format!("{base}/v1/predictions"),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = batches.get(i) else { break };
                loop {
                    let r = client
                        .post(&url)
                        .body(body.clone())
                        .send()
                        .await
                        .expect("post");
                    if r.status() == 202 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let acked_rate = EVENTS as f64 / start.elapsed().as_secs_f64();
    // Until Kafka confirmed every event: the sender's delivered counter.
    loop {
        let page = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let delivered = page
            .lines()
            .find_map(|l| l.strip_prefix("driftwatch_agent_kafka_delivered_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if delivered >= EVENTS as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let agent_rate = EVENTS as f64 / start.elapsed().as_secs_f64();
    let cpu_per_1000 = (cpu_seconds(pid) - cpu_before) / (EVENTS as f64 / 1000.0) * 1000.0;
    let load_rss_kb = proc_status(pid, "VmHWM:");

    // 4. Latency of single-event POSTs at a fixed rate (open loop), both policies.
    let (lat, failed) = latency(&client, &base, &lines[0]).await;
    stop(&mut child, &data_dir);
    let (mut always_child, always_base, always_dir) =
        start_agent(&brokers, "bench.latency", "always").await;
    let (lat_always, failed_always) = latency(&client, &always_base, &lines[0]).await;
    stop(&mut always_child, &always_dir);

    println!("\ncommit measured: {}", commit());
    println!(
        "\nagent ingest, {EVENTS} events ({:.0} bytes each), {broker_name}\n",
        bytes as f64 / EVENTS as f64
    );
    println!("| sender | events/s until Kafka confirmed | vs raw producer |");
    println!("|---|---:|---:|");
    println!("| raw rdkafka producer (idempotent, lz4) | {raw:.0} | 100% |");
    match kcat_rate {
        Some(k) => println!(
            "| kcat -P -l (Debian's kcat, older librdkafka) | {k:.0} | {:.0}% |",
            100.0 * k / raw
        ),
        None => {
            println!("| kcat | failed: missing, or its librdkafka cannot talk to this broker | |")
        }
    }
    println!(
        "| driftwatch-agent (spool, fsync interval), {CLIENTS} clients x NDJSON batches of {BATCH} | {agent_rate:.0} | {:.0}% |",
        100.0 * agent_rate / raw
    );
    println!(
        "\n(the agent acknowledged, i.e. spooled, at {acked_rate:.0} events/s; the table's figure waits for Kafka)"
    );
    println!("\nsingle-event POSTs at {RATE}/s for {LATENCY_SECONDS} s:\n");
    println!("| fsync policy | p50 ms | p99 ms | p99.9 ms | not 202 |");
    println!("|---|---:|---:|---:|---:|");
    for (name, lat, failed) in [
        ("interval (default)", &lat, failed),
        ("always (group commit)", &lat_always, failed_always),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {failed} |",
            percentile(lat, 0.5),
            percentile(lat, 0.99),
            percentile(lat, 0.999)
        );
    }
    println!();
    println!(
        "resident memory: idle {:.1} MiB, peak under load {:.1} MiB; CPU {:.1} ms per 1,000 events",
        idle_rss_kb as f64 / 1024.0,
        load_rss_kb as f64 / 1024.0,
        cpu_per_1000
    );
}

/// The commit this bench measured (`git describe --always --dirty`), so a figure copied
/// into BENCHMARKS.md says which code it belongs to.
fn commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown (not a git checkout)".into())
}
