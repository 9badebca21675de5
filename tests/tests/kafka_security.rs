//! Both binaries against a Kafka that demands TLS, a client certificate and SASL
//! SCRAM-SHA-512: a tansu broker with `--authentication` (which checks SCRAM proofs
//! against the credential stored in it) behind a TLS endpoint (`socat OPENSSL-LISTEN`
//! with the test certificates of `tests/fixtures/tls`, `verify=1`: a client without a
//! certificate signed by the test CA is cut off). tansu does not terminate TLS itself
//! (its `--cert` flag is accepted but not used in 0.6), hence the TLS endpoint in front;
//! the broker advertises the TLS address, so every connection librdkafka makes goes
//! through TLS.
//!
//! Exercised: TLS server verification with `ca_file`, a client certificate, SCRAM-SHA-512
//! with the password from a file (agent) and from the environment (detector), the whole
//! pipeline through it, and refusals (wrong password, no client certificate, an
//! untrusted broker certificate) that deliver nothing, lose nothing and say why.
//! Not exercised here: SASL PLAIN against a checking broker (tansu accepts any PLAIN
//! password), SCRAM-SHA-256 (same code path, other mechanism name).
//!
//! Run by `tests/real-broker.sh` (needs `tansu` and `socat`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use driftwatch_detector::synth::demo_plan_toml;
use driftwatch_e2e::process::{free_port, test_dir, AgentProc, Proc};
use driftwatch_e2e::{binary, eventually, metric, post_stream, tls_fixture, WebhookReceiver};

const USER: &str = "dw-client";
const PASSWORD: &str = "scram-test-password";

fn tansu() -> String {
    std::env::var("DRIFTWATCH_TEST_TANSU").unwrap_or_else(|_| "tansu".into())
}

fn wait_listening(addr: std::net::SocketAddr, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A secured broker: returns (tansu, socat, TLS address). The user and the topics are
/// made while the broker is open, then it restarts on the same storage demanding SASL.
fn secure_broker(dir: &Path, topics: &[(&str, u32)]) -> (Proc, Proc, String) {
    let plain = free_port();
    let tls = free_port();
    let start = |auth: bool, advertised: std::net::SocketAddr| {
        let mut c = Command::new(tansu());
        c.current_dir(dir)
            .arg("broker")
            // tansu joins the path to its working directory: keep it relative.
            .arg("--storage-engine=sqlite://broker.db")
            .arg(format!("--listener-url=tcp://{plain}"))
            .arg(format!("--advertised-listener-url=tcp://{advertised}"));
        if auth {
            c.arg("--authentication");
        }
        let p = Proc::spawn("tansu", dir.join("tansu.log"), &mut c);
        wait_listening(plain, "tansu");
        p
    };
    let mut open = start(false, plain);
    run(
        Command::new(tansu()).args([
            "user",
            "create",
            "--broker",
            &format!("tcp://{plain}"),
            "--mechanism",
            "scram512",
            USER,
            PASSWORD,
        ]),
        "tansu user create",
    );
    for (topic, partitions) in topics {
        run(
            Command::new(tansu()).args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://{plain}"),
                "--partitions",
                &partitions.to_string(),
                topic,
            ]),
            "tansu topic create",
        );
    }
    assert!(open.terminate().is_some(), "open tansu stopped");
    drop(open);
    let broker = start(true, tls);
    let socat = Proc::spawn(
        "socat",
        dir.join("socat.log"),
        Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{},bind=127.0.0.1,reuseaddr,fork,cert={},key={},cafile={},verify=1",
                tls.port(),
                tls_fixture("server.pem").display(),
                tls_fixture("server.key").display(),
                tls_fixture("ca.pem").display(),
            ))
            .arg(format!("TCP:{plain}")),
    );
    wait_listening(tls, "socat");
    (broker, socat, tls.to_string())
}

/// `[kafka.security]` for an agent in `dir`: `password` goes to a file there; with or
/// without the client certificate and the test CA.
fn agent_security(dir: &Path, password: &str, cert: bool, ca: bool) -> String {
    let pw = dir.join("password");
    std::fs::write(&pw, format!("{password}\n")).expect("password file");
    let mut s = String::from("[kafka.security]\nprotocol = \"sasl_ssl\"\n");
    if ca {
        s += &format!("ca_file = \"{}\"\n", tls_fixture("ca.pem").display());
    }
    if cert {
        s += &format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\n",
            tls_fixture("client.pem").display(),
            tls_fixture("client.key").display()
        );
    }
    s + &format!(
        "[kafka.security.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"{USER}\"\npassword_file = \"{}\"\n",
        pw.display()
    )
}

/// An agent in `dir` (a fresh directory) with the given security.
fn start_agent(
    dir: &Path,
    brokers: &str,
    topic: &str,
    (password, cert, ca): (&str, bool, bool),
) -> AgentProc {
    std::fs::create_dir_all(dir).expect("dir");
    let addr = free_port();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{addr}\"\ndata_dir = \"{}\"\n[kafka]\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\n{}",
            dir.join("spool").display(),
            agent_security(dir, password, cert, ca)
        ),
    )
    .expect("config");
    AgentProc {
        proc: Proc::spawn(
            "driftwatch-agent",
            dir.join("agent.log"),
            Command::new(binary("driftwatch-agent"))
                .arg("--config")
                .arg(&config),
        ),
        addr,
    }
}

/// A refused agent: kafka_up drops to 0, nothing is delivered, every acknowledged event
/// waits in the spool, and the log names the refusal (`logged`: the agent's own line, or
/// librdkafka's, which the agent's log carries).
async fn refused(
    dir: &Path,
    brokers: &str,
    topic: &str,
    security: (&str, bool, bool),
    why: &str,
    logged: &str,
) {
    let sub = dir.join(why.replace(' ', "-"));
    let mut agent = start_agent(&sub, brokers, topic, security);
    agent.wait_ready().await;
    post_stream(agent.addr, "credit-refused", 3, 50, 0, false)
        .await
        .expect("the agent acknowledges while Kafka refuses it: the spool keeps the events");
    let log_file = sub.join("agent.log");
    let down = eventually(Duration::from_secs(20), || {
        let a = &agent;
        let log = std::fs::read_to_string(&log_file).unwrap_or_default();
        async move {
            let page = a.metrics().await;
            (metric(&page, "driftwatch_agent_kafka_up") == Some(0.0) && log.contains(logged))
                .then_some(page)
        }
    })
    .await;
    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
    let down = down.unwrap_or_else(|| {
        panic!("{why}: kafka_up at 0 and \"{logged}\" logged, within 20 s:\n{log}")
    });
    assert_eq!(
        metric(&down, "driftwatch_agent_kafka_delivered_total"),
        Some(0.0),
        "{why}: nothing gets through"
    );
    assert_eq!(
        metric(&down, "driftwatch_agent_spool_backlog_events"),
        Some(50.0),
        "{why}: every acknowledged event waits in the spool"
    );
    assert!(agent.proc.terminate().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu and socat: run tests/real-broker.sh"]
async fn both_binaries_over_tls_with_a_client_certificate_and_scram() {
    let dir = test_dir("kafka-security");
    let events = "secure.events";
    let alerts = "secure.alerts";
    let (_broker, _socat, brokers) = secure_broker(
        &dir,
        &[
            (events, 3),
            (alerts, 1),
            ("secure.state", 1),
            ("secure.reports", 1),
        ],
    );

    // The agent: password from a file, client certificate, the test CA.
    let mut agent = start_agent(
        &dir.join("agent-ok"),
        &brokers,
        events,
        (PASSWORD, true, true),
    );

    // The detector: flags and environment only, the password in DRIFTWATCH_KAFKA_SASL_PASSWORD.
    let (hook, url) = WebhookReceiver::start().await.expect("webhook");
    let system = "credit-secure";
    let plan = dir.join("plan.toml");
    std::fs::write(
        &plan,
        demo_plan_toml(system, 2000, 1000)
            + &format!("webhook_url = \"{url}\"\nwebhook_sends = \"windows\"\n"),
    )
    .expect("plan");
    let metrics_addr = free_port();
    let mut detector = Proc::spawn(
        "driftwatch detect",
        dir.join("detector.log"),
        Command::new(binary("driftwatch"))
            .arg("detect")
            .arg("--plan")
            .arg(&plan)
            .args(["--brokers", &brokers, "--events-topic", events])
            .args(["--alerts-topic", alerts, "--group", "dw-secure"])
            .args([
                "--state-topic",
                "secure.state",
                "--reports-topic",
                "secure.reports",
            ])
            .args(["--metrics-listen", &metrics_addr.to_string()])
            .env("DRIFTWATCH_KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
            .env("DRIFTWATCH_KAFKA_CA_FILE", tls_fixture("ca.pem"))
            .env("DRIFTWATCH_KAFKA_CERT_FILE", tls_fixture("client.pem"))
            .env("DRIFTWATCH_KAFKA_KEY_FILE", tls_fixture("client.key"))
            .env("DRIFTWATCH_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
            .env("DRIFTWATCH_KAFKA_SASL_USERNAME", USER)
            .env("DRIFTWATCH_KAFKA_SASL_PASSWORD", PASSWORD),
    );

    agent.wait_ready().await;
    post_stream(agent.addr, system, 7, 4000, 3000, false)
        .await
        .expect("every batch acknowledged");
    let client = reqwest::Client::new();
    let series = format!("driftwatch_windows_total{{system=\"{system}\"}}");
    let windows = eventually(Duration::from_secs(90), || {
        let c = client.clone();
        let series = series.clone();
        async move {
            let page = c
                .get(format!("http://{metrics_addr}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            metric(&page, &series).filter(|n| *n >= 5.0)
        }
    })
    .await;
    assert_eq!(
        windows,
        Some(5.0),
        "every window evaluated through TLS + SCRAM"
    );
    let page = agent.metrics().await;
    assert_eq!(
        metric(&page, "driftwatch_agent_kafka_delivered_total"),
        Some(7000.0),
        "the agent delivered everything over TLS + SCRAM"
    );
    assert_eq!(metric(&page, "driftwatch_agent_kafka_up"), Some(1.0));
    let alerted = eventually(Duration::from_secs(60), || {
        let n = hook.alerts().len();
        async move { (n > 0).then_some(n) }
    })
    .await;
    assert!(alerted.is_some(), "the drift alerted");
    assert_eq!(agent.proc.terminate(), Some(0));
    assert_eq!(detector.terminate(), Some(0));

    // Refusals: each delivers nothing, loses nothing, and says why.
    refused(
        &dir,
        &brokers,
        events,
        ("not-the-password", true, true),
        "wrong password",
        "Kafka refused the connection (TLS or SASL)",
    )
    .await;
    refused(
        &dir,
        &brokers,
        events,
        (PASSWORD, false, true),
        "no client certificate",
        "certificate required",
    )
    .await;
    refused(
        &dir,
        &brokers,
        events,
        (PASSWORD, true, false),
        "untrusted broker certificate",
        "certificate verify failed",
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
