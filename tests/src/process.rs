//! The binaries (and a tansu broker) as child processes, for the real-broker suites.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;

use crate::binary;

/// The broker of the real-broker suites.
pub fn brokers() -> String {
    std::env::var("DRIFTWATCH_TEST_BROKERS")
        .expect("DRIFTWATCH_TEST_BROKERS must name a broker (tests/real-broker.sh starts one)")
}

/// A loopback address nobody listens on (yet).
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A fresh directory for one test.
pub fn test_dir(name: &str) -> PathBuf {
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("dw-{name}-{unique}"));
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

/// A child process that is killed when dropped; its log is printed if the test fails.
pub struct Proc {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Proc {
    /// Start with its stderr in `log`.
    pub fn spawn(name: &'static str, log: PathBuf, cmd: &mut Command) -> Proc {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = cmd
            .env("DRIFTWATCH_LOG", "info,rdkafka=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", cmd.get_program()));
        Proc { child, name, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal by name (`STOP`, `CONT`, `TERM`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot send SIG{sig} to {}", self.name);
    }

    /// SIGKILL, as the OOM killer or a node failure would, and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM and wait: a graceful shutdown exits within the grace period.
    pub fn terminate(&mut self) -> Option<i32> {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("{} did not stop within 30 s of SIGTERM", self.name);
    }

    /// Resident memory in KiB, from `/proc`.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    /// The most resident memory it has had, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // A stopped process must be continued to die promptly.
            let _ = Command::new("kill")
                .args(["-CONT", &self.child.id().to_string()])
                .status();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- {} log ({}), last lines ---\n{}",
                self.name,
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

/// A tansu broker of the test's own, which the test may stop and continue.
pub fn start_tansu(dir: &Path) -> (Proc, String) {
    let addr = free_port();
    let url = format!("tcp://{addr}");
    let tansu = std::env::var("DRIFTWATCH_TEST_TANSU").unwrap_or_else(|_| "tansu".into());
    let proc = Proc::spawn(
        "tansu",
        dir.join("tansu.log"),
        Command::new(&tansu)
            .arg("broker")
            .arg("--storage-engine=memory://tansu/")
            .arg(format!("--listener-url={url}"))
            .arg(format!("--advertised-listener-url={url}")),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "tansu did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (proc, addr.to_string())
}

/// A `driftwatch-agent` process with its config file in `dir/agent.toml`.
pub struct AgentProc {
    /// The process.
    pub proc: Proc,
    /// Its HTTP address.
    pub addr: SocketAddr,
}

impl AgentProc {
    /// Start an agent on `brokers`/`topic` with `data_dir = dir/agent`. `toml` is
    /// configuration before the `[kafka]` table (top-level keys, other tables); `kafka` are
    /// more keys of the `[kafka]` table.
    pub fn start(dir: &Path, brokers: &str, topic: &str, toml: &str, kafka: &str) -> AgentProc {
        Self::start_with(dir, brokers, topic, (toml, kafka), None, &[])
    }

    /// As [`AgentProc::start`], run under `sh -c` after `shell_prefix` (for `ulimit`), with
    /// extra environment.
    pub fn start_with(
        dir: &Path,
        brokers: &str,
        topic: &str,
        (toml, kafka): (&str, &str),
        shell_prefix: Option<&str>,
        env: &[(&str, &str)],
    ) -> AgentProc {
        let addr = free_port();
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"{addr}\"\ndata_dir = \"{}\"\n{toml}\n[kafka]\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\n{kafka}\n",
                dir.join("agent").display()
            ),
        )
        .expect("agent config");
        let bin = binary("driftwatch-agent");
        let mut cmd = match shell_prefix {
            Some(prefix) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!(
                    "{prefix}; exec '{}' --config '{}'",
                    bin.display(),
                    config.display()
                ));
                c
            }
            None => {
                let mut c = Command::new(bin);
                c.arg("--config").arg(&config);
                c
            }
        };
        for (k, v) in env {
            cmd.env(k, v);
        }
        let proc = Proc::spawn("driftwatch-agent", dir.join("agent.log"), &mut cmd);
        AgentProc { proc, addr }
    }

    /// Wait until `/ready` answers 200 (the spool is recovered).
    pub async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client
                .get(format!("http://{}/ready", self.addr))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(self.proc.running(), "the agent exited before it was ready");
            assert!(Instant::now() < deadline, "agent not ready within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The agent's `/metrics` page.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.addr))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

/// Every payload on a topic's partitions `0..partitions`, read from the beginning until
/// `done` (called with each payload) says enough or `quiet` passes without a message.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    quiet: Duration,
    mut done: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if let Some(p) = m.payload() {
                let v: Value = serde_json::from_slice(p).expect("JSON payload");
                last = Instant::now();
                let enough = done(&v);
                out.push(v);
                if enough {
                    break;
                }
            }
        }
    }
    out
}

/// How many times each `prediction_id` appears.
pub fn prediction_ids(events: &[Value]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for e in events {
        if let Some(id) = e["prediction_id"].as_str() {
            *seen.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    seen
}
