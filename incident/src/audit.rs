//! The audit trail: append-only and hash-chained, with signed checkpoints of its head.
//!
//! Entry `n` stores `hash_n = SHA-256(hash_{n-1} || "\n" || canonical_json(entry_n))`,
//! where the canonical JSON is the object `{action, actor, at, incident_id, payload,
//! seq}` with keys sorted and no spaces (serde_json's `Value` keeps keys sorted). A changed
//! field changes that entry's hash; a deleted or reordered entry breaks the sequence or
//! the link to its predecessor. [`verify`] walks the chain and names the first bad entry.
//!
//! A rewritten *tail* (the last entries deleted, or recomputed with new hashes) leaves
//! a self-consistent chain. Checkpoints catch it: every so often the service signs the
//! chain's size and head hash with Ed25519 as a C2SP signed note
//! (<https://c2sp.org/signed-note>, body as in <https://c2sp.org/tlog-checkpoint> with
//! the chain head in place of a Merkle root), stores it, logs it and publishes it on a
//! Kafka topic. Anyone holding an older checkpoint can check that the chain still has
//! that entry with that hash, without access to the database.

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::AuditEntry;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SHA-256 in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Timestamps as stored and hashed: RFC 3339, milliseconds, `Z`.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The canonical JSON of a value: keys sorted, no spaces.
pub fn canonical(v: &serde_json::Value) -> String {
    // `Value`'s map is a BTreeMap (no `preserve_order` feature): keys come out sorted.
    v.to_string()
}

/// The hash of an entry with these fields after `prev_hash`.
pub fn entry_hash(
    prev_hash: &str,
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    incident_id: Option<&str>,
    payload: &serde_json::Value,
) -> String {
    let body = serde_json::json!({
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "incident_id": incident_id,
        "payload": payload,
    });
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical(&body).as_bytes());
    hex(&h.finalize())
}

/// An entry as read back from storage, before any check.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    /// The stored `seq`.
    pub seq: i64,
    /// The stored timestamp text.
    pub at: String,
    /// Actor.
    pub actor: String,
    /// Action.
    pub action: String,
    /// Incident.
    pub incident_id: Option<String>,
    /// The stored payload text.
    pub payload: String,
    /// The stored link.
    pub prev_hash: String,
    /// The stored hash.
    pub hash: String,
}

impl StoredEntry {
    /// As the API shows it.
    pub fn to_entry(&self) -> AuditEntry {
        AuditEntry {
            seq: self.seq,
            at: DateTime::parse_from_rfc3339(&self.at)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
            actor: self.actor.clone(),
            action: self.action.clone(),
            incident_id: self.incident_id.clone(),
            payload: serde_json::from_str(&self.payload).unwrap_or(serde_json::Value::Null),
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
        }
    }
}

/// The first problem found in a chain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    /// The entry at fault (its position in the chain, from 1).
    pub seq: i64,
    /// `missing`, `out_of_order`, `altered`, `broken_link`, `truncated`, `rewritten`,
    /// `record_altered`, `bad_signature`.
    pub kind: String,
    /// What was found.
    pub message: String,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verification {
    /// No problem found.
    pub ok: bool,
    /// Entries in the chain.
    pub entries: i64,
    /// The head hash (of the last entry that checked out, if any).
    pub head: String,
    /// Checkpoints compared.
    pub checkpoints: usize,
    /// The first problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

/// Check a chain read in `seq` order against itself and against checkpoints.
pub fn verify(entries: &[StoredEntry], checkpoints: &[Checkpoint]) -> Verification {
    let mut prev = GENESIS.to_owned();
    let mut hashes: Vec<String> = Vec::with_capacity(entries.len());
    let fail = |prob: Problem, n: usize, head: String, cps: usize| Verification {
        ok: false,
        entries: n as i64,
        head,
        checkpoints: cps,
        problem: Some(prob),
    };
    for (i, e) in entries.iter().enumerate() {
        let expected = i as i64 + 1;
        if e.seq != expected {
            let (kind, message) = if e.seq > expected {
                (
                    "missing",
                    format!(
                        "entry {expected} is missing: the entry after {} has seq {}",
                        expected - 1,
                        e.seq
                    ),
                )
            } else {
                (
                    "out_of_order",
                    format!("entry at position {expected} has seq {}", e.seq),
                )
            };
            return fail(
                Problem {
                    seq: expected,
                    kind: kind.into(),
                    message,
                },
                entries.len(),
                prev,
                0,
            );
        }
        let payload: serde_json::Value = match serde_json::from_str(&e.payload) {
            Ok(v) => v,
            Err(err) => {
                return fail(
                    Problem {
                        seq: e.seq,
                        kind: "altered".into(),
                        message: format!("entry {}: its payload is not JSON: {err}", e.seq),
                    },
                    entries.len(),
                    prev,
                    0,
                )
            }
        };
        if e.prev_hash != prev {
            return fail(
                Problem {
                    seq: e.seq,
                    kind: "broken_link".into(),
                    message: format!(
                        "entry {} links to {}, but entry {} hashes to {}",
                        e.seq,
                        short(&e.prev_hash),
                        e.seq - 1,
                        short(&prev)
                    ),
                },
                entries.len(),
                prev,
                0,
            );
        }
        let h = entry_hash(
            &prev,
            e.seq,
            &e.at,
            &e.actor,
            &e.action,
            e.incident_id.as_deref(),
            &payload,
        );
        if h != e.hash {
            return fail(
                Problem {
                    seq: e.seq,
                    kind: "altered".into(),
                    message: format!(
                        "entry {} ({} by {} at {}) was altered: its content hashes to {}, the chain says {}",
                        e.seq,
                        e.action,
                        e.actor,
                        e.at,
                        short(&h),
                        short(&e.hash)
                    ),
                },
                entries.len(),
                prev,
                0,
            );
        }
        hashes.push(h.clone());
        prev = h;
    }
    let mut sorted: Vec<&Checkpoint> = checkpoints.iter().collect();
    sorted.sort_by_key(|c| c.size);
    for c in &sorted {
        if c.size as usize > hashes.len() {
            return fail(
                Problem {
                    seq: hashes.len() as i64 + 1,
                    kind: "truncated".into(),
                    message: format!(
                        "the chain has {} entries, but a checkpoint signed at size {} (head {}) shows entries {} to {} existed: they were deleted",
                        hashes.len(),
                        c.size,
                        short(&c.head),
                        hashes.len() + 1,
                        c.size
                    ),
                },
                entries.len(),
                prev,
                sorted.len(),
            );
        }
        if c.size > 0 && hashes[c.size as usize - 1] != c.head {
            return fail(
                Problem {
                    seq: c.size as i64,
                    kind: "rewritten".into(),
                    message: format!(
                        "entry {} hashes to {}, but a checkpoint signed it as {}: the chain up to it was rewritten",
                        c.size,
                        short(&hashes[c.size as usize - 1]),
                        short(&c.head)
                    ),
                },
                entries.len(),
                prev,
                sorted.len(),
            );
        }
    }
    Verification {
        ok: true,
        entries: entries.len() as i64,
        head: prev,
        checkpoints: sorted.len(),
        problem: None,
    }
}

fn short(h: &str) -> String {
    h.chars().take(16).collect()
}

/// A checkpoint of the chain: its size and head hash, signed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// The log's origin line (the key name too).
    pub origin: String,
    /// Entries covered.
    pub size: u64,
    /// The hash of entry `size`, hex.
    pub head: String,
    /// The signed note text.
    pub note: String,
}

/// A checkpoint that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Not a signed note of the expected shape.
    #[error("not a checkpoint note: {0}")]
    Format(String),
    /// No signature by the given key, or a bad one.
    #[error("checkpoint signature does not verify with key {0}")]
    Signature(String),
    /// A verifier key that cannot be parsed.
    #[error("verifier key: {0}")]
    Key(String),
}

/// The signer of checkpoints.
pub struct Signer {
    key: SigningKey,
    origin: String,
}

impl Signer {
    /// From a 32-byte Ed25519 seed.
    pub fn new(origin: &str, seed: [u8; 32]) -> Signer {
        Signer {
            key: SigningKey::from_bytes(&seed),
            origin: origin.to_owned(),
        }
    }

    /// The origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key in C2SP note format: `name+keyhash+base64(0x01 || public key)`.
    pub fn verifier_key(&self) -> String {
        let public = self.key.verifying_key().to_bytes();
        let mut body = vec![0x01u8];
        body.extend_from_slice(&public);
        format!(
            "{}+{}+{}",
            self.origin,
            hex(&key_hash(&self.origin, &public)),
            B64.encode(body)
        )
    }

    /// Sign a checkpoint of `size` entries ending in `head` (hex).
    pub fn sign(&self, size: u64, head: &str) -> Checkpoint {
        let head_b64 = B64.encode(unhex(head).unwrap_or_default());
        let body = format!("{}\n{size}\n{head_b64}\n", self.origin);
        let sig: Signature = self.key.sign(body.as_bytes());
        let public = self.key.verifying_key().to_bytes();
        let mut blob = key_hash(&self.origin, &public).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        let note = format!("{body}\n\u{2014} {} {}\n", self.origin, B64.encode(blob));
        Checkpoint {
            origin: self.origin.clone(),
            size,
            head: head.to_owned(),
            note,
        }
    }
}

/// The 4-byte key id of the signed-note format: SHA-256(name || "\n" || 0x01 || key)[..4].
fn key_hash(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([0x01u8]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Parse a checkpoint note; with a verifier key, check its signature too.
pub fn parse_checkpoint(note: &str, verifier: Option<&str>) -> Result<Checkpoint, CheckpointError> {
    let (body, sigs) = note.split_once("\n\n").ok_or_else(|| {
        CheckpointError::Format("no blank line between text and signatures".into())
    })?;
    let body = format!("{body}\n");
    let mut lines = body.lines();
    let origin = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| CheckpointError::Format("no origin line".into()))?
        .to_owned();
    let size: u64 = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| CheckpointError::Format("second line is not a size".into()))?;
    let head = lines
        .next()
        .and_then(|l| B64.decode(l).ok())
        .filter(|h| h.len() == 32)
        .map(|h| hex(&h))
        .ok_or_else(|| CheckpointError::Format("third line is not a base64 SHA-256 hash".into()))?;
    if let Some(vkey) = verifier {
        let mut parts = vkey.trim().splitn(3, '+');
        let (name, id, key) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(k)) => (n, i, k),
            _ => {
                return Err(CheckpointError::Key(
                    "expected name+keyhash+base64key".into(),
                ))
            }
        };
        let key = B64
            .decode(key)
            .map_err(|e| CheckpointError::Key(e.to_string()))?;
        if key.len() != 33 || key[0] != 0x01 {
            return Err(CheckpointError::Key(
                "not an Ed25519 key (type 0x01, 32 bytes)".into(),
            ));
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&key[1..]);
        let verifying =
            VerifyingKey::from_bytes(&public).map_err(|e| CheckpointError::Key(e.to_string()))?;
        let want_id = key_hash(name, &public);
        if hex(&want_id) != id {
            return Err(CheckpointError::Key(
                "key hash does not match the key".into(),
            ));
        }
        let ok = sigs.lines().any(|line| {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return false;
            };
            let Some((signer, blob)) = rest.split_once(' ') else {
                return false;
            };
            let Ok(blob) = B64.decode(blob) else {
                return false;
            };
            if signer != name || blob.len() != 68 || blob[..4] != want_id {
                return false;
            }
            let Ok(sig) = Signature::from_slice(&blob[4..]) else {
                return false;
            };
            verifying.verify(body.as_bytes(), &sig).is_ok()
        });
        if !ok {
            return Err(CheckpointError::Signature(name.to_owned()));
        }
    }
    Ok(Checkpoint {
        origin,
        size,
        head,
        note: note.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<StoredEntry> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let payload = serde_json::json!({"n": seq});
                let at = format!("2026-11-28T00:00:{:02}.000Z", seq);
                let hash = entry_hash(&prev, seq, &at, "alice", "note", Some("INC-1"), &payload);
                let e = StoredEntry {
                    seq,
                    at,
                    actor: "alice".into(),
                    action: "note".into(),
                    incident_id: Some("INC-1".into()),
                    payload: payload.to_string(),
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                e
            })
            .collect()
    }

    #[test]
    fn a_sound_chain_verifies_and_each_tampering_is_located() {
        let good = chain(10);
        assert!(verify(&good, &[]).ok);

        let mut edited = good.clone();
        edited[4].actor = "mallory".into();
        let v = verify(&edited, &[]);
        assert_eq!(
            v.problem.as_ref().map(|p| (p.seq, p.kind.as_str())),
            Some((5, "altered"))
        );

        let mut deleted = good.clone();
        deleted.remove(6);
        let v = verify(&deleted, &[]);
        assert_eq!(
            v.problem.as_ref().map(|p| (p.seq, p.kind.as_str())),
            Some((7, "missing"))
        );

        let mut swapped = good.clone();
        swapped.swap(2, 3);
        let v = verify(&swapped, &[]);
        assert_eq!(v.problem.as_ref().map(|p| p.seq), Some(3), "{v:?}");
    }

    #[test]
    fn a_checkpoint_catches_a_truncated_or_rewritten_tail() {
        let signer = Signer::new("driftwatch.test/audit", [7u8; 32]);
        let good = chain(10);
        let cp = signer.sign(10, &good[9].hash);
        let parsed = parse_checkpoint(&cp.note, Some(&signer.verifier_key()))
            .expect("own checkpoint verifies");
        assert_eq!(
            (parsed.size, parsed.head.as_str()),
            (10, good[9].hash.as_str())
        );
        assert!(verify(&good, std::slice::from_ref(&parsed)).ok);

        let truncated = &good[..8];
        assert!(
            verify(truncated, &[]).ok,
            "a truncated chain is self-consistent"
        );
        let v = verify(truncated, std::slice::from_ref(&parsed));
        assert_eq!(
            v.problem.as_ref().map(|p| (p.seq, p.kind.as_str())),
            Some((9, "truncated"))
        );

        let mut rewritten = chain(10);
        rewritten.truncate(7);
        let mut prev = rewritten[6].hash.clone();
        for seq in 8..=10 {
            let payload = serde_json::json!({"n": -seq});
            let at = "2026-11-28T01:00:00.000Z".to_owned();
            let hash = entry_hash(&prev, seq, &at, "mallory", "note", None, &payload);
            rewritten.push(StoredEntry {
                seq,
                at,
                actor: "mallory".into(),
                action: "note".into(),
                incident_id: None,
                payload: payload.to_string(),
                prev_hash: prev.clone(),
                hash: hash.clone(),
            });
            prev = hash;
        }
        let v = verify(&rewritten, &[parsed]);
        assert_eq!(
            v.problem.as_ref().map(|p| (p.seq, p.kind.as_str())),
            Some((10, "rewritten"))
        );
    }

    #[test]
    fn a_forged_or_foreign_checkpoint_is_refused() {
        let signer = Signer::new("driftwatch.test/audit", [7u8; 32]);
        let other = Signer::new("driftwatch.test/audit", [8u8; 32]);
        let cp = signer.sign(3, &GENESIS.replace('0', "a"));
        assert!(matches!(
            parse_checkpoint(&cp.note, Some(&other.verifier_key())),
            Err(CheckpointError::Signature(_))
        ));
        let forged = cp.note.replace("\n3\n", "\n2\n");
        assert!(matches!(
            parse_checkpoint(&forged, Some(&signer.verifier_key())),
            Err(CheckpointError::Signature(_))
        ));
        assert!(parse_checkpoint("garbage", None).is_err());
    }
}
