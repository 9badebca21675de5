//! The kill switch: the agent follows the control topic (compacted, key = `system_id`)
//! and keeps, per system, the last decision about whether it may serve (Art. 20:
//! allowed, restricted, disabled). The model server reads it at
//! `GET /v1/status?system_id=...` or from the `driftwatch-serving` header of every ingest
//! response, and falls back to its human process without an extra call.
//!
//! The state is persisted in the data directory (`control-state.json`, written to a
//! temporary file, fsynced and renamed), so an agent restarted while Kafka is away still
//! reports the decision. A damaged state file is moved aside and reported: the status
//! then says the state is unknown until the topic has been read, rather than claiming
//! "allowed".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use driftwatch_schema::{Control, ControlAction};
use prometheus::IntGaugeVec;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

/// Systems whose state is exported as a metric (the label set stays bounded).
pub const MAX_SYSTEMS: usize = 256;

const FILE: &str = "control-state.json";

/// One system's serving state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Serving {
    /// The system.
    pub system_id: String,
    /// `allowed`, `restricted` or `disabled`.
    pub serving: String,
    /// When the decision was issued.
    pub since: Option<DateTime<Utc>>,
    /// The incident it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What a restriction allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restriction: Option<String>,
    /// Who decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The decision's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The model versions it applies to (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_versions: Vec<String>,
}

fn serving_name(a: ControlAction) -> &'static str {
    match a {
        ControlAction::Allow => "allowed",
        ControlAction::Restrict => "restricted",
        ControlAction::Disable => "disabled",
    }
}

fn rank(s: &str) -> u8 {
    match s {
        "disabled" => 3,
        "unknown" => 2,
        "restricted" => 1,
        _ => 0,
    }
}

/// The serving state of every system the control topic named.
pub struct ControlState {
    systems: RwLock<BTreeMap<String, Serving>>,
    path: PathBuf,
    /// The state file was damaged and the topic not yet read: states are unknown.
    unknown: std::sync::atomic::AtomicBool,
    gauge: Option<IntGaugeVec>,
}

impl ControlState {
    /// Load the persisted state from `data_dir` (empty if none).
    pub fn load(data_dir: &Path, gauge: Option<IntGaugeVec>) -> ControlState {
        let path = data_dir.join(FILE);
        let mut unknown = false;
        let systems = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<BTreeMap<String, Serving>>(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    let aside = data_dir.join(format!("{FILE}.damaged"));
                    let _ = std::fs::rename(&path, &aside);
                    tracing::error!(error = %e, moved_to = %aside.display(), "the control state file is damaged; serving states are unknown until the control topic is read");
                    unknown = true;
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::error!(error = %e, path = %path.display(), "cannot read the control state file; serving states are unknown until the control topic is read");
                unknown = true;
                BTreeMap::new()
            }
        };
        let s = ControlState {
            systems: RwLock::new(systems),
            path,
            unknown: std::sync::atomic::AtomicBool::new(unknown),
            gauge,
        };
        s.export();
        s
    }

    /// The state of one system: `allowed` if no decision was ever seen (or `unknown`
    /// after a damaged state file, until the topic is read).
    pub fn get(&self, system: &str) -> Serving {
        let map = self.systems.read().unwrap_or_else(|p| p.into_inner());
        map.get(system).cloned().unwrap_or_else(|| Serving {
            system_id: system.to_owned(),
            serving: if self.unknown.load(std::sync::atomic::Ordering::SeqCst) {
                "unknown".into()
            } else {
                "allowed".into()
            },
            since: None,
            incident_id: None,
            reason: None,
            restriction: None,
            decided_by: None,
            command_id: None,
            model_versions: Vec::new(),
        })
    }

    /// The most restrictive state among `systems`, for a response header.
    pub fn header<'a>(&self, systems: impl Iterator<Item = &'a str>) -> Option<String> {
        let worst = systems
            .map(|s| self.get(s))
            .max_by_key(|s| rank(&s.serving))?;
        let mut h = format!("{}; system={}", worst.serving, worst.system_id);
        if let Some(i) = &worst.incident_id {
            h.push_str(&format!("; incident={i}"));
        }
        Some(h)
    }

    /// The topic has been read to its end: no state is unknown any more.
    pub fn caught_up(&self) {
        self.unknown
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Apply a decision; persist and return true if it changed anything.
    pub fn apply(&self, c: &Control) -> std::io::Result<bool> {
        let next = Serving {
            system_id: c.system_id.clone(),
            serving: serving_name(c.action).into(),
            since: Some(c.issued_at),
            incident_id: c.incident_id.clone(),
            reason: Some(c.reason.clone()),
            restriction: c.restriction.clone(),
            decided_by: Some(c.decided_by.clone()),
            command_id: Some(c.command_id.to_string()),
            model_versions: c.model_versions.clone(),
        };
        let snapshot = {
            let mut map = self.systems.write().unwrap_or_else(|p| p.into_inner());
            if map.get(&c.system_id) == Some(&next) {
                return Ok(false);
            }
            map.insert(c.system_id.clone(), next);
            map.clone()
        };
        write_atomic(
            &self.path,
            &serde_json::to_vec_pretty(&snapshot).unwrap_or_default(),
        )?;
        self.export();
        Ok(true)
    }

    fn export(&self) {
        let Some(g) = &self.gauge else { return };
        let map = self.systems.read().unwrap_or_else(|p| p.into_inner());
        for (system, s) in map.iter().take(MAX_SYSTEMS) {
            for state in ["allowed", "restricted", "disabled"] {
                g.with_label_values(&[system.as_str(), state])
                    .set(i64::from(s.serving == state));
            }
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Follow the control topic from its beginning (it is compacted: the last decision per
/// system is what counts) until `stop` resolves. Retries while Kafka or the topic is away.
pub async fn follow(
    config: ClientConfig,
    topic: String,
    state: Arc<ControlState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut failures = 0u64;
    loop {
        let mut inner_stop = stop.clone();
        let r = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = follow_once(&config, &topic, &state, &mut inner_stop) => r,
        };
        match r {
            Ok(()) => return,
            Err(e) => {
                // Once, then every five minutes: an outage does not flood the log.
                if failures.is_multiple_of(60) {
                    tracing::warn!(error = %e, topic, failures, "cannot follow the control topic; retrying every 5 s (the last known states stay in force)");
                } else {
                    tracing::debug!(error = %e, topic, "cannot follow the control topic");
                }
                failures += 1;
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    }
}

async fn follow_once(
    config: &ClientConfig,
    topic: &str,
    state: &ControlState,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut c = config.clone();
    // No group: every agent reads the whole (compacted) topic for itself.
    c.set(
        "group.id",
        format!("driftwatch-agent-control-{}", std::process::id()),
    )
    .set("enable.auto.commit", "false")
    .set("enable.partition.eof", "true")
    // A decision should reach the sidecar within a second: long-poll for at most 100 ms
    // (the topic is small and quiet).
    .set("fetch.wait.max.ms", "100");
    let consumer: Arc<StreamConsumer> = Arc::new(c.create()?);
    // The metadata call blocks (up to its timeout while Kafka is away): off the runtime's
    // threads, so the agent's HTTP answers never wait for it.
    let (md, ends) = {
        let t = topic.to_owned();
        let c = consumer.clone();
        let parts = tokio::task::spawn_blocking(move || {
            let md = c.fetch_metadata(Some(&t), Duration::from_secs(3))?;
            Ok::<Vec<i32>, rdkafka::error::KafkaError>(
                md.topics()
                    .iter()
                    .filter(|x| x.name() == t && x.error().is_none())
                    .flat_map(|x| x.partitions().iter().map(|p| p.id()))
                    .collect(),
            )
        })
        .await
        .map_err(|_| rdkafka::error::KafkaError::Canceled)??;
        if parts.is_empty() {
            return Err(rdkafka::error::KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
            ));
        }
        let n = parts.len();
        (parts, n)
    };
    let mut tpl = TopicPartitionList::new();
    for p in &md {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut at_end = std::collections::HashSet::new();
    loop {
        let msg = tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            m = consumer.recv() => m,
        };
        match msg {
            Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                at_end.insert(p);
                if at_end.len() >= ends {
                    state.caught_up();
                }
            }
            Err(e) => return Err(e),
            Ok(m) => match Control::from_wire(m.payload().unwrap_or_default()) {
                Ok(c) => match state.apply(&c) {
                    Ok(true) => {
                        tracing::warn!(system = %c.system_id, action = c.action.as_str(), incident = ?c.incident_id, decided_by = %c.decided_by, "serving state changed: {}", c.reason)
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, system = %c.system_id, "cannot persist the serving state (it is in force in memory)")
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, offset = m.offset(), "skipping a control message that must not be enforced")
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(system: &str, action: ControlAction) -> Control {
        Control {
            v: driftwatch_schema::WIRE_VERSION,
            command_id: uuid::Uuid::new_v4(),
            system_id: system.into(),
            action,
            restriction: (action == ControlAction::Restrict).then(|| "human review".into()),
            reason: "critical drift".into(),
            decided_by: "carol".into(),
            incident_id: Some("INC-1".into()),
            model_versions: Vec::new(),
            issued_at: Utc::now(),
        }
    }

    #[test]
    fn a_decision_survives_a_restart_and_a_damaged_file_is_not_taken_for_allowed() {
        let dir = std::env::temp_dir().join(format!("dw-control-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let s = ControlState::load(&dir, None);
        assert_eq!(s.get("credit").serving, "allowed");
        assert!(s
            .apply(&control("credit", ControlAction::Disable))
            .expect("persist"));
        assert_eq!(
            s.header(["other", "credit"].into_iter()).as_deref(),
            Some("disabled; system=credit; incident=INC-1")
        );
        drop(s);
        let s = ControlState::load(&dir, None);
        let got = s.get("credit");
        assert_eq!(
            (got.serving.as_str(), got.incident_id.as_deref()),
            ("disabled", Some("INC-1"))
        );
        assert!(s
            .apply(&control("credit", ControlAction::Allow))
            .expect("persist"));
        assert_eq!(s.get("credit").serving, "allowed");
        drop(s);
        std::fs::write(dir.join(FILE), b"{ damaged").expect("damage");
        let s = ControlState::load(&dir, None);
        assert_eq!(
            s.get("credit").serving,
            "unknown",
            "never claims allowed after losing its state"
        );
        assert!(
            dir.join(format!("{FILE}.damaged")).exists(),
            "the damaged file is kept aside"
        );
        s.caught_up();
        assert_eq!(s.get("credit").serving, "allowed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
