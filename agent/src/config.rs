//! Typed agent configuration: a TOML file, overridden by flags and `DRIFTWATCH_*`
//! environment variables, validated before any port is bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use driftwatch_common::kafka::{check_properties, KafkaSecurity, SecurityError};
use serde::Deserialize;

/// Everything the agent needs to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Address of the HTTP ingest API. Loopback by default: the model server is in the same pod.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// A second address serving only `/metrics`, `/live` and `/ready` (no ingest), for
    /// the kubelet's probes and Prometheus, which reach the pod's IP, not its loopback:
    /// `admin_listen = "0.0.0.0:8687"` beside `listen = "127.0.0.1:8686"`. Absent: those
    /// routes are on `listen` only.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// Largest accepted request body; larger bodies get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest number of events in one request; more gets 413.
    #[serde(default = "default_max_batch_events")]
    pub max_batch_events: usize,
    /// Ingest requests processed at once (default 4); more wait, unread, for a turn.
    /// Memory is bounded by this times one request's worst case: its body
    /// (`max_body_bytes`), its events encoded (about 1.3 times the body) and one event's
    /// parsed value: about 20 MiB at the defaults, 107 MiB peak measured with 4 maximal
    /// requests of each kind (README, BENCHMARKS.md).
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Connections served at once on each listener (default 256); more wait in the
    /// listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time a client has to send a request's headers, also between keep-alive requests
    /// (default 10,000 ms); then the connection is closed. A model server's HTTP client
    /// that pools connections sees an idle one closed after this; common clients notice
    /// before reusing it.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// Time a client has to send an ingest request's body (default 30,000 ms); then 408.
    #[serde(default = "default_body_read_timeout_ms")]
    pub body_read_timeout_ms: u64,
    /// How far before the agent's clock an event's timestamp may lie (default 30 days);
    /// an older one is refused with 400 (a year-0000 stamp is a bug, not a backfill).
    #[serde(default = "default_max_timestamp_age_s")]
    pub max_timestamp_age_s: u64,
    /// How far after the agent's clock an event's timestamp may lie (default 300 s of
    /// clock skew); a later one is refused with 400, since one far-future event would
    /// move the detector's event-time watermark.
    #[serde(default = "default_max_timestamp_ahead_s")]
    pub max_timestamp_ahead_s: u64,
    /// How long a graceful shutdown may spend sending the spool to Kafka; what is left
    /// stays in the spool for the next start.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// The agent's own directory: the spool (`spool/`) and dead letters (`dead-letter/`).
    /// In Kubernetes, a volume that outlives the container (an `emptyDir` survives
    /// container restarts; a PVC survives the pod).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The disk spool every acknowledged event is written to before the 202.
    #[serde(default)]
    pub spool: SpoolConfig,
    /// Where events go.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// What may leave the pod (see [`crate::privacy`]); absent: everything valid passes.
    #[serde(default)]
    pub privacy: Option<crate::privacy::PrivacyConfig>,
}

/// When an acknowledged event reaches the disk, and how much disk the spool may use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// `interval` (default): acknowledge after the write, `fdatasync` every
    /// `fsync_interval_ms`; survives a process crash, a power loss may lose the last
    /// interval. `always`: acknowledge after `fdatasync` (group commit across concurrent
    /// requests); survives power loss.
    #[serde(default)]
    pub fsync: Fsync,
    /// The `interval` policy's period.
    #[serde(default = "default_fsync_interval_ms")]
    pub fsync_interval_ms: u64,
    /// Disk budget for events not yet confirmed by Kafka. When full, new events get 503
    /// with `Retry-After` (or are dropped and counted with `when_full = "drop_newest"`).
    #[serde(default = "default_max_spool_bytes")]
    pub max_spool_bytes: u64,
    /// Segment file size; a segment is deleted once Kafka confirmed all of it.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// What a full spool does to new events: `reject` (503, default) or `drop_newest`
    /// (202 with `"dropped"`, counted in `driftwatch_agent_events_dropped_total`).
    #[serde(default)]
    pub when_full: WhenFull,
}

/// The spool's fsync policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// `fdatasync` before every acknowledgement (group commit).
    Always,
    /// `fdatasync` periodically.
    #[default]
    Interval,
}

/// What a full spool does to new events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Answer 503 with `Retry-After`; the model server keeps the events.
    #[default]
    Reject,
    /// Answer 202 with `"accepted": 0, "dropped": n` and count the events.
    DropNewest,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/driftwatch-agent")
}
fn default_fsync_interval_ms() -> u64 {
    100
}
fn default_max_spool_bytes() -> u64 {
    1024 * 1024 * 1024
}
fn default_segment_bytes() -> u64 {
    16 * 1024 * 1024
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            fsync: Fsync::default(),
            fsync_interval_ms: default_fsync_interval_ms(),
            max_spool_bytes: default_max_spool_bytes(),
            segment_bytes: default_segment_bytes(),
            when_full: WhenFull::default(),
        }
    }
}

/// The Kafka producer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Topic for prediction and outcome events.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// `client.id`.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// `message.timeout.ms`: how long librdkafka tries one send. An event that times out
    /// is not lost: the sender sends it again from the spool.
    #[serde(default = "default_message_timeout_ms")]
    pub message_timeout_ms: u64,
    /// With sends in flight and no confirmation for this long,
    /// `driftwatch_agent_kafka_up` drops to 0 (a hung broker), well before a send times
    /// out (`message_timeout_ms`). Default 5,000.
    #[serde(default = "default_stalled_after_ms")]
    pub stalled_after_ms: u64,
    /// `linger.ms`: batching delay.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// `queue.buffering.max.kbytes`: bounds librdkafka's in-memory queue (the spool is
    /// the buffer; this only bounds what is in flight).
    #[serde(default = "default_queue_max_kbytes")]
    pub queue_max_kbytes: u64,
    /// TLS and SASL (`[kafka.security]`): protocol, CA, client certificate, SASL
    /// mechanism and credentials; the password from a file or an environment variable.
    #[serde(default)]
    pub security: KafkaSecurity,
    /// Extra librdkafka properties, passed through verbatim. Secrets and the
    /// security settings are refused here: they belong in `[kafka.security]`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// The control topic the agent follows for decisions to restrict or disable a
    /// system (the kill switch); "" to follow none.
    #[serde(default = "default_control_topic")]
    pub control_topic: String,
}

fn default_control_topic() -> String {
    driftwatch_schema::DEFAULT_CONTROL_TOPIC.into()
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8686))
}
fn default_max_body_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_max_timestamp_age_s() -> u64 {
    30 * 24 * 3600
}
fn default_max_timestamp_ahead_s() -> u64 {
    300
}
fn default_max_connections() -> usize {
    256
}
fn default_header_read_timeout_ms() -> u64 {
    10_000
}
fn default_body_read_timeout_ms() -> u64 {
    30_000
}
fn default_max_concurrent_requests() -> usize {
    4
}
fn default_max_batch_events() -> usize {
    10_000
}
fn default_shutdown_grace_ms() -> u64 {
    10_000
}
fn default_brokers() -> String {
    "127.0.0.1:9092".into()
}
fn default_topic() -> String {
    driftwatch_schema::DEFAULT_EVENTS_TOPIC.into()
}
fn default_client_id() -> String {
    "driftwatch-agent".into()
}
fn default_stalled_after_ms() -> u64 {
    5_000
}
fn default_message_timeout_ms() -> u64 {
    30_000
}
fn default_linger_ms() -> u64 {
    5
}
fn default_queue_max_kbytes() -> u64 {
    16 * 1024
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers(),
            topic: default_topic(),
            client_id: default_client_id(),
            message_timeout_ms: default_message_timeout_ms(),
            stalled_after_ms: default_stalled_after_ms(),
            linger_ms: default_linger_ms(),
            queue_max_kbytes: default_queue_max_kbytes(),
            security: KafkaSecurity::default(),
            properties: BTreeMap::new(),
            control_topic: default_control_topic(),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            listen: default_listen(),
            admin_listen: None,
            max_body_bytes: default_max_body_bytes(),
            max_batch_events: default_max_batch_events(),
            max_concurrent_requests: default_max_concurrent_requests(),
            max_connections: default_max_connections(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
            body_read_timeout_ms: default_body_read_timeout_ms(),
            max_timestamp_age_s: default_max_timestamp_age_s(),
            max_timestamp_ahead_s: default_max_timestamp_ahead_s(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
            data_dir: default_data_dir(),
            spool: SpoolConfig::default(),
            kafka: KafkaConfig::default(),
            privacy: None,
        }
    }
}

/// A configuration that cannot be used, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The TOML error, which names key and line.
        message: String,
    },
    /// The Kafka security settings cannot work (a missing file, an unset variable).
    #[error("invalid config: {0}")]
    Security(#[from] SecurityError),
    /// A value is out of range.
    #[error("invalid config: {key}: {message}")]
    Invalid {
        /// Dotted key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl AgentConfig {
    /// Read a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parse TOML text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().replace('\n', " "))
    }

    /// Cross-field checks; run after overrides are applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        if self.max_body_bytes < 1024 {
            return invalid("max_body_bytes", "must be at least 1024");
        }
        if self.max_batch_events == 0 {
            return invalid("max_batch_events", "must be at least 1");
        }
        if self.max_concurrent_requests == 0 {
            return invalid("max_concurrent_requests", "must be at least 1");
        }
        if self.max_connections < self.max_concurrent_requests {
            return invalid(
                "max_connections",
                "must be at least max_concurrent_requests",
            );
        }
        if self.header_read_timeout_ms == 0 || self.body_read_timeout_ms == 0 {
            return invalid(
                "header_read_timeout_ms",
                "header_read_timeout_ms and body_read_timeout_ms must be above 0",
            );
        }
        if self.kafka.brokers.trim().is_empty() {
            return invalid("kafka.brokers", "must name at least one broker host:port");
        }
        if self.kafka.topic.is_empty()
            || self.kafka.topic.len() > 249
            || !self
                .kafka
                .topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return invalid(
                "kafka.topic",
                "must be 1 to 249 characters of [A-Za-z0-9._-]",
            );
        }
        check_properties("kafka.properties", &self.kafka.properties)?;
        self.kafka.security.resolve()?;
        if self.kafka.message_timeout_ms == 0 {
            return invalid("kafka.message_timeout_ms", "must be positive");
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must name a directory");
        }
        if self.spool.fsync_interval_ms == 0 {
            return invalid("spool.fsync_interval_ms", "must be positive");
        }
        if self.spool.segment_bytes < 4096 {
            return invalid("spool.segment_bytes", "must be at least 4096");
        }
        if self.spool.max_spool_bytes < 2 * self.spool.segment_bytes {
            return invalid(
                "spool.max_spool_bytes",
                "must be at least twice spool.segment_bytes",
            );
        }
        if (self.max_body_bytes as u64) * 2 > self.spool.max_spool_bytes {
            return invalid(
                "spool.max_spool_bytes",
                "must be at least twice max_body_bytes, or no full request could ever fit",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = AgentConfig::from_toml("").expect("empty config");
        c.validate().expect("defaults validate");
        assert_eq!(c.kafka.topic, "driftwatch.events");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = AgentConfig::from_toml("[kafka]\nbroker = \"x:1\"\n").expect_err("typo");
        assert!(e.contains("unknown field `broker`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut c = AgentConfig::default();
        c.kafka.topic = "bad topic".into();
        let e = c.validate().expect_err("bad topic");
        assert!(
            e.to_string().starts_with("invalid config: kafka.topic:"),
            "{e}"
        );
    }

    #[test]
    fn kafka_security_is_checked_at_start_and_secrets_stay_out_of_properties() {
        let c = AgentConfig::from_toml(
            "[kafka.security]\nprotocol = \"sasl_ssl\"\nca_file = \"/nonexistent/ca.pem\"\n\
             [kafka.security.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"a\"\npassword_env = \"X\"\n",
        )
        .expect("parses");
        let e = c.validate().expect_err("missing CA file").to_string();
        assert!(
            e.contains("kafka.security.ca_file \"/nonexistent/ca.pem\""),
            "{e}"
        );
        let e = AgentConfig::from_toml("[kafka.security]\nprotocol = \"tls\"\n")
            .expect_err("unknown protocol");
        assert!(e.contains("unknown variant `tls`"), "{e}");
        let c = AgentConfig::from_toml("[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n")
            .expect("parses");
        let e = c.validate().expect_err("inline secret").to_string();
        assert!(
            e.contains("kafka.properties: \"sasl.password\" carries a secret"),
            "{e}"
        );
    }
}
