//! Per-system checkpoints on a compacted Kafka topic (`driftwatch.state` by default):
//! everything a system's monitoring needs to continue exactly where it stopped, and the
//! input offset it covers.
//!
//! **Record.** A [`Checkpoint`] holds the system, its plan fingerprint and reference
//! version (a checkpoint of another plan or reference is not restored), the partition
//! and the next offset of that partition the state does not include, the generation,
//! the duplicate memory (prediction id hashes, oldest first) and the engine snapshot
//! ([`crate::engine::Monitor::snapshot`]).
//!
//! **On the topic.** A checkpoint can be larger than a Kafka message (an open window of
//! 5,000 predictions of 20 numeric signals is 800 KB), so it is cut into chunks of at
//! most [`CHUNK`] bytes under keys `system␟parity␟i`, written first, then a manifest
//! under the key `system` naming the generation, the chunk count, the length and a
//! CRC-32C. Generations alternate between two parities, so writing generation g+1 never
//! overwrites a chunk of the generation g its manifest still names: a crash halfway
//! leaves the previous checkpoint whole. Compaction keeps the last value of each key.
//!
//! **References** collected from the stream or built from a file live on the same topic
//! ([`super::references::KafkaStore`]), as JSON blobs chunked the same way under the
//! key `system␞fingerprint`: every instance that takes a system over finds the frozen
//! reference its checkpoint was computed against.
//!
//! **Reading.** [`Assembler`] takes every record of the topic in offset order and gives,
//! per system, the checkpoint of its last manifest, and each kept reference, or why one
//! cannot be used ([`StateRead`]).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::codec::{CodecError, Reader, Writer};

/// Largest chunk of a checkpoint in one Kafka message (under the default 1 MB limit).
pub const CHUNK: usize = 512 * 1024;
const MAGIC: &[u8; 4] = b"DWCK";
const FORMAT: u8 = 1;
const SEP: char = '\u{1f}';
/// Separates system and fingerprint in the key of a reference blob.
const REF: char = '\u{1e}';

/// The key of the reference of `system` under `fingerprint` on the state topic.
pub fn reference_key(system: &str, fingerprint: &str) -> String {
    format!("{system}{REF}{fingerprint}")
}

/// The records (key, value) that hold `payload` under `key`: chunks of at most
/// [`CHUNK`] bytes, then the manifest under `key` itself.
pub fn blob_records(key: &str, generation: u64, payload: &[u8]) -> Vec<(String, Vec<u8>)> {
    let parity = generation % 2;
    let mut out: Vec<(String, Vec<u8>)> = payload
        .chunks(CHUNK)
        .enumerate()
        .map(|(i, data)| {
            let mut w = Writer::default();
            w.u8(b'C');
            w.u64(generation);
            w.bytes(data);
            (format!("{key}{SEP}{parity}{SEP}{i}"), w.0)
        })
        .collect();
    let mut w = Writer::default();
    w.u8(b'M');
    w.u64(generation);
    w.len(out.len());
    w.len(payload.len());
    w.u64(u64::from(crc32c::crc32c(payload)));
    out.push((key.to_owned(), w.0));
    out
}

/// What the state topic holds: each system's last checkpoint and every kept reference
/// (JSON of a [`crate::engine::ReferenceProfile`]) by system and fingerprint, or why one
/// cannot be used.
#[derive(Debug, Default)]
pub struct StateRead {
    /// Last checkpoint by system.
    pub checkpoints: HashMap<String, Result<Checkpoint, CodecError>>,
    /// Reference JSON by (system, fingerprint).
    pub references: HashMap<(String, String), Result<Vec<u8>, CodecError>>,
}

/// One system's state and the input it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The system.
    pub system: String,
    /// The fingerprint of the plan the state was computed under.
    pub plan_fingerprint: String,
    /// The reference version its windows compare against.
    pub reference_version: String,
    /// The events partition of the system.
    pub partition: i32,
    /// The first offset of that partition the state does not include.
    pub next_offset: i64,
    /// Increases with every checkpoint of the system.
    pub generation: u64,
    /// Prediction id hashes remembered for duplicate detection, oldest first.
    pub dedup: Vec<u64>,
    /// The engine snapshot.
    pub engine: Vec<u8>,
    /// The last window report (JSON; empty before the first), whose gauges a restore
    /// sets again.
    pub last_report: Vec<u8>,
    /// The alert episodes ([`crate::alert::episode::Episodes`], JSON; empty: none). A
    /// checkpoint written before episodes existed ends before this field.
    pub episodes: Vec<u8>,
}

impl Checkpoint {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.0.extend_from_slice(MAGIC);
        w.u8(FORMAT);
        w.str(&self.system);
        w.str(&self.plan_fingerprint);
        w.str(&self.reference_version);
        w.i64(i64::from(self.partition));
        w.i64(self.next_offset);
        w.u64(self.generation);
        w.len(self.dedup.len());
        for h in &self.dedup {
            w.u64(*h);
        }
        w.bytes(&self.engine);
        w.bytes(&self.last_report);
        w.bytes(&self.episodes);
        w.0
    }

    /// Parse a record.
    pub fn decode(b: &[u8]) -> Result<Self, CodecError> {
        if b.len() < 5 || &b[..4] != MAGIC || b[4] != FORMAT {
            return Err(CodecError("not a driftwatch checkpoint of format 1".into()));
        }
        let mut r = Reader::new(&b[5..]);
        let c = Checkpoint {
            system: r.str()?,
            plan_fingerprint: r.str()?,
            reference_version: r.str()?,
            partition: i32::try_from(r.i64()?)
                .map_err(|_| CodecError("partition out of range".into()))?,
            next_offset: r.i64()?,
            generation: r.u64()?,
            dedup: {
                let n = r.len(8)?;
                (0..n).map(|_| r.u64()).collect::<Result<_, _>>()?
            },
            engine: r.bytes()?.to_vec(),
            last_report: r.bytes()?.to_vec(),
            episodes: Vec::new(),
        };
        let mut c = c;
        if !r.done() {
            c.episodes = r.bytes()?.to_vec();
        }
        if !r.done() {
            return Err(CodecError("trailing bytes".into()));
        }
        Ok(c)
    }

    /// The Kafka records (key, value) that hold this checkpoint: chunks, then the
    /// manifest.
    pub fn records(&self) -> Vec<(String, Vec<u8>)> {
        blob_records(&self.system, self.generation, &self.encode())
    }
}

struct Manifest {
    generation: u64,
    chunks: usize,
    len: usize,
    crc: u64,
}

/// Collects a state topic's records and assembles each system's last checkpoint.
#[derive(Default)]
pub struct Assembler {
    manifests: HashMap<String, Result<Manifest, CodecError>>,
    chunks: HashMap<String, (u64, Vec<u8>)>,
}

impl Assembler {
    /// Take one record (in offset order); a record without key or value (a tombstone)
    /// forgets the key.
    pub fn feed(&mut self, key: &str, value: Option<&[u8]>) {
        let Some(value) = value else {
            self.manifests.remove(key);
            self.chunks.remove(key);
            return;
        };
        if key.contains(SEP) {
            let mut r = Reader::new(value);
            let chunk = (|| -> Result<(u64, Vec<u8>), CodecError> {
                if r.u8()? != b'C' {
                    return Err(CodecError("not a chunk".into()));
                }
                Ok((r.u64()?, r.bytes()?.to_vec()))
            })();
            if let Ok(c) = chunk {
                self.chunks.insert(key.to_owned(), c);
            }
        } else {
            let mut r = Reader::new(value);
            let m = (|| -> Result<Manifest, CodecError> {
                if r.u8()? != b'M' {
                    return Err(CodecError("not a manifest".into()));
                }
                Ok(Manifest {
                    generation: r.u64()?,
                    chunks: r.u64()? as usize,
                    len: r.u64()? as usize,
                    crc: r.u64()?,
                })
            })();
            self.manifests.insert(key.to_owned(), m);
        }
    }

    /// Each system's last checkpoint and every reference, or why one cannot be used.
    pub fn finish(self) -> StateRead {
        let mut out = StateRead::default();
        for (key, m) in &self.manifests {
            let payload = match m {
                Err(e) => Err(CodecError(e.0.clone())),
                Ok(m) => self.payload(key, m).map(|p| (m.generation, p)),
            };
            if let Some((system, fingerprint)) = key.split_once(REF) {
                out.references.insert(
                    (system.to_owned(), fingerprint.to_owned()),
                    payload.map(|(_, p)| p),
                );
                continue;
            }
            let c = payload.and_then(|(generation, p)| {
                let c = Checkpoint::decode(&p)?;
                if c.system != *key || c.generation != generation {
                    return Err(CodecError("a checkpoint under another key".into()));
                }
                Ok(c)
            });
            out.checkpoints.insert(key.clone(), c);
        }
        out
    }

    /// The bytes `m` names under `key`, checked against its length and CRC.
    fn payload(&self, key: &str, m: &Manifest) -> Result<Vec<u8>, CodecError> {
        let parity = m.generation % 2;
        let mut payload = Vec::with_capacity(m.len.min(1 << 30));
        for i in 0..m.chunks {
            match self.chunks.get(&format!("{key}{SEP}{parity}{SEP}{i}")) {
                Some((g, data)) if *g == m.generation => payload.extend_from_slice(data),
                _ => {
                    return Err(CodecError(format!(
                        "chunk {i} of generation {} is missing",
                        m.generation
                    )))
                }
            }
        }
        if payload.len() != m.len || u64::from(crc32c::crc32c(&payload)) != m.crc {
            return Err(CodecError(format!(
                "generation {} does not match its manifest (length or CRC)",
                m.generation
            )));
        }
        Ok(payload)
    }
}

/// Read the whole state topic (to its end as of now) with a consumer of no group.
pub fn read_topic(
    config: ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Result<StateRead, KafkaError> {
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", "driftwatch-state-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, timeout)?;
        if high > low {
            ends.insert(*p, high);
            tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
        }
    }
    let mut assembler = Assembler::default();
    if ends.is_empty() {
        return Ok(assembler.finish());
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + timeout;
    // Read to the high watermarks, then on until the topic is quiet for QUIET: a broker
    // may report a high watermark short of its last records (tansu 0.6 reports the
    // last batch's base offset + 1), and a checkpoint missed here would be an older
    // one.
    const QUIET: Duration = Duration::from_millis(500);
    let mut quiet_since: Option<std::time::Instant> = None;
    loop {
        if std::time::Instant::now() > deadline {
            return Err(KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        if quiet_since.is_some_and(|t| t.elapsed() >= QUIET) {
            break;
        }
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                if let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                    assembler.feed(key, m.payload());
                }
                if ends
                    .get(&m.partition())
                    .is_some_and(|e| m.offset() + 1 >= *e)
                {
                    ends.remove(&m.partition());
                }
                if ends.is_empty() {
                    quiet_since = Some(std::time::Instant::now());
                }
            }
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    Ok(assembler.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(generation: u64, engine_len: usize) -> Checkpoint {
        Checkpoint {
            system: "credit".into(),
            plan_fingerprint: "fnv1a64:1".into(),
            reference_version: "fnv1a64:2".into(),
            partition: 2,
            next_offset: 1234,
            generation,
            dedup: (0..1000).collect(),
            engine: (0..engine_len).map(|i| (i * 31 % 251) as u8).collect(),
            last_report: b"{}".to_vec(),
            episodes: b"{}".to_vec(),
        }
    }

    fn assemble(records: &[(String, Vec<u8>)]) -> HashMap<String, Result<Checkpoint, CodecError>> {
        let mut a = Assembler::default();
        for (k, v) in records {
            a.feed(k, Some(v));
        }
        a.finish().checkpoints
    }

    #[test]
    fn a_large_checkpoint_is_chunked_and_reassembled() {
        let c = sample(7, 3 * CHUNK + 17);
        let records = c.records();
        assert_eq!(records.len(), 5, "four chunks and a manifest");
        assert!(records.iter().all(|(_, v)| v.len() <= CHUNK + 32));
        let got = assemble(&records);
        assert_eq!(got["credit"].as_ref().expect("whole"), &c);
    }

    #[test]
    fn a_crash_halfway_through_a_checkpoint_leaves_the_previous_one() {
        let old = sample(7, 2 * CHUNK);
        let new = sample(8, 2 * CHUNK + 5);
        let mut records = old.records();
        // Generation 8's chunks are written, its manifest never is.
        let new_records = new.records();
        records.extend_from_slice(&new_records[..new_records.len() - 1]);
        let got = assemble(&records);
        assert_eq!(got["credit"].as_ref().expect("old one"), &old);
        // Then generation 9 (parity of 7) half-written: 7 is damaged, and said so.
        let newer = sample(9, 2 * CHUNK);
        records.push(newer.records()[0].clone());
        let got = assemble(&records);
        let e = got["credit"].as_ref().expect_err("damaged").to_string();
        assert!(e.contains("generation 7"), "{e}");
    }

    #[test]
    fn references_share_the_topic_without_touching_checkpoints() {
        let c = sample(4, 10);
        let reference: Vec<u8> = (0..CHUNK + 100).map(|i| (i % 97) as u8).collect();
        let mut records = c.records();
        records.extend(blob_records(
            &reference_key("credit", "fnv1a64:2"),
            11,
            &reference,
        ));
        records.extend(blob_records(
            &reference_key("credit", "fnv1a64:3"),
            12,
            b"{}",
        ));
        let mut a = Assembler::default();
        for (k, v) in &records {
            a.feed(k, Some(v));
        }
        let read = a.finish();
        assert_eq!(read.checkpoints.len(), 1);
        assert_eq!(read.checkpoints["credit"].as_ref().expect("whole"), &c);
        let key = ("credit".to_owned(), "fnv1a64:2".to_owned());
        assert_eq!(read.references[&key].as_ref().expect("whole"), &reference);
        assert_eq!(read.references.len(), 2, "one per fingerprint");
    }

    #[test]
    fn damage_is_named_never_a_panic() {
        let c = sample(3, 1000);
        let mut records = c.records();
        let n = records[0].1.len();
        records[0].1[n / 2] ^= 0x40;
        let e = assemble(&records)["credit"]
            .as_ref()
            .expect_err("crc")
            .to_string();
        assert!(e.contains("length or CRC"), "{e}");
        assert!(Checkpoint::decode(b"DWCK\x01\x00").is_err());
        assert!(Checkpoint::decode(b"garbage").is_err());
    }
}
