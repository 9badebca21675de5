//! The reference store of the Kafka driver: frozen references kept on the state topic,
//! so every detector instance, and the one that takes a system over after a rebalance
//! or a crash, compares against the same reference, never one collected anew from
//! later (possibly drifted) data.
//!
//! A reference is a JSON [`ReferenceProfile`] kept under the key `system␞fingerprint`
//! (chunked like checkpoints, [`super::checkpoint::blob_records`]); compaction keeps the
//! last one of each system and fingerprint, so a plan change that changes the
//! fingerprint leaves the earlier reference readable. The store holds what the last
//! read of the state topic found ([`KafkaStore::refresh`]: at start and after each
//! rebalance) and what this instance saved since.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::FutureExt;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::checkpoint::{blob_records, reference_key, StateRead};
use crate::engine::ReferenceProfile;
use crate::reference_store::{ReferenceStore, StoreError};

/// How long a save waits for Kafka to confirm a reference.
const SAVE_TIMEOUT: Duration = Duration::from_secs(30);

/// References on the state topic.
pub struct KafkaStore {
    producer: FutureProducer,
    topic: String,
    kept: Mutex<HashMap<(String, String), ReferenceProfile>>,
}

impl KafkaStore {
    /// A store on `topic` written through `producer`, holding what `read` found.
    pub fn new(producer: FutureProducer, topic: impl Into<String>, read: &StateRead) -> Self {
        let store = KafkaStore {
            producer,
            topic: topic.into(),
            kept: Mutex::default(),
        };
        store.refresh(read);
        store
    }

    /// Take the references of a fresh read of the state topic; one that cannot be used
    /// is logged and left out (its system builds or collects a new one).
    pub fn refresh(&self, read: &StateRead) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        for ((system, fingerprint), blob) in &read.references {
            let parsed = blob.as_ref().map_err(ToString::to_string).and_then(|b| {
                serde_json::from_slice::<ReferenceProfile>(b).map_err(|e| e.to_string())
            });
            match parsed {
                Ok(r) if r.system_id == *system && r.fingerprint == *fingerprint => {
                    kept.insert((system.clone(), fingerprint.clone()), r);
                }
                Ok(_) => tracing::error!(
                    system,
                    fingerprint,
                    "a reference on the state topic under another key; not used"
                ),
                Err(e) => {
                    tracing::error!(system, fingerprint, error = %e, "a reference on the state topic is damaged; not used")
                }
            }
        }
    }
}

impl ReferenceStore for KafkaStore {
    fn load(
        &self,
        system: &str,
        fingerprint: &str,
    ) -> Result<Option<ReferenceProfile>, StoreError> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        Ok(kept
            .get(&(system.to_owned(), fingerprint.to_owned()))
            .cloned())
    }

    /// Write the reference and wait (blocking, up to 30 s) until Kafka confirms it.
    fn save(&self, r: &ReferenceProfile) -> Result<(), StoreError> {
        let failed = |what: String| StoreError::Kafka {
            topic: self.topic.clone(),
            what,
        };
        // A profile is strings, numbers and maps with string keys: serialising cannot
        // fail.
        let json = serde_json::to_vec(r).unwrap_or_default();
        // Generations only tell two writes of one key apart; the time does.
        let generation = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let mut sends = Vec::new();
        for (key, value) in blob_records(
            &reference_key(&r.system_id, &r.fingerprint),
            generation,
            &json,
        ) {
            let record = FutureRecord::to(&self.topic).key(&key).payload(&value);
            match self.producer.send_result(record) {
                Ok(f) => sends.push(f),
                Err((e, _)) => return Err(failed(e.to_string())),
            }
        }
        self.producer
            .flush(SAVE_TIMEOUT)
            .map_err(|e| failed(e.to_string()))?;
        for f in sends {
            match f.now_or_never() {
                Some(Ok(Ok(_))) => {}
                Some(Ok(Err((e, _)))) => return Err(failed(e.to_string())),
                Some(Err(_)) | None => return Err(failed("not confirmed".into())),
            }
        }
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((r.system_id.clone(), r.fingerprint.clone()), r.clone());
        tracing::info!(system = %r.system_id, version = %r.version, topic = %self.topic, bytes = json.len(), "reference kept on the state topic");
        Ok(())
    }
}
