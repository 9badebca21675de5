//! Where frozen references live, for both drivers: load one that was frozen before, or
//! build it from the plan's reference file, and keep it.
//!
//! A reference is frozen once and quoted by every result (its `version`). It is reused
//! while what it was computed from is unchanged: its `fingerprint` names the plan's
//! reference-relevant parts and, for a file reference, the file's bytes. A reference
//! collected from the stream (first N predictions, a marked period) is saved when it
//! freezes, so a restart does not take a new reference from later, possibly drifted,
//! data.
//!
//! The detector service keeps them on its state topic
//! ([`crate::driver::kafka::references::KafkaStore`]), shared by every instance;
//! [`FileStore`] keeps one JSON file per system in a directory (a single process without
//! Kafka); [`MemoryStore`] keeps them in the process (a replay, a test).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::engine::{fnv1a64, plan_fingerprint, ReferenceBuilder, ReferenceProfile};
use crate::input::{self, fastcsv, Format, SourceError};
use crate::plan::Plan;

/// A reference could not be loaded, built or kept.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The reference file is unreadable or holds a bad record.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The reference file holds no prediction of the system.
    #[error("reference {0} holds no predictions of system \"{1}\"")]
    EmptyReference(String, String),
    /// The Kafka store could not write a reference.
    #[error("reference store on topic {topic}: {what}")]
    Kafka {
        /// The state topic.
        topic: String,
        /// Why.
        what: String,
    },
    /// The store itself failed (a directory or file of the file store).
    #[error("reference store {path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Keeps frozen references by system.
pub trait ReferenceStore: Send + Sync {
    /// The reference kept for `system`, if its fingerprint is `fingerprint`. A kept
    /// reference with another fingerprint is stale: `None` (logged).
    fn load(&self, system: &str, fingerprint: &str)
        -> Result<Option<ReferenceProfile>, StoreError>;

    /// Keep `reference`, replacing any earlier one of its system.
    fn save(&self, reference: &ReferenceProfile) -> Result<(), StoreError>;
}

/// The reference `plan` starts with: from `file` (or the plan's reference file), loaded
/// from `store` when its fingerprint matches, else built and saved; for a plan that
/// collects its reference from the stream, the one `store` kept, if any (`None`: collect
/// it).
pub fn resolve(
    plan: &Plan,
    file: Option<&Path>,
    store: &dyn ReferenceStore,
) -> Result<Option<ReferenceProfile>, StoreError> {
    let system = &plan.system.id;
    let path = file
        .map(Path::to_path_buf)
        .or_else(|| plan.reference_path());
    let Some(path) = path else {
        return store.load(system, &plan_fingerprint(plan));
    };
    let fingerprint = file_fingerprint(plan, &path)?;
    if let Some(r) = store.load(system, &fingerprint)? {
        return Ok(Some(r));
    }
    let r = build_from_file(plan, &path, fingerprint)?;
    store.save(&r)?;
    Ok(Some(r))
}

/// Build a frozen reference from a file of predictions of the plan's system; its
/// `fingerprint` ([`file_fingerprint`]) was computed by the caller.
pub fn build_from_file(
    plan: &Plan,
    path: &Path,
    fingerprint: String,
) -> Result<ReferenceProfile, StoreError> {
    let mut builder = ReferenceBuilder::new(plan);
    match input::format_of(path)? {
        Format::Csv => fastcsv::read_batches(path, plan, parsers(), |batch| {
            builder.add_columns(batch);
            Ok::<_, StoreError>(())
        })?,
        Format::Ndjson => {
            for event in input::open_ndjson(path)? {
                match event? {
                    driftwatch_schema::Event::Prediction(p) if p.system_id == plan.system.id => {
                        builder.add(&p)
                    }
                    driftwatch_schema::Event::Outcome(o) if o.system_id == plan.system.id => {
                        builder.add_outcome(&o)
                    }
                    _ => {}
                }
            }
        }
    }
    if builder.is_empty() {
        return Err(StoreError::EmptyReference(
            path.display().to_string(),
            plan.system.id.clone(),
        ));
    }
    Ok(builder.build(path.display().to_string(), fingerprint))
}

/// CSV parsing threads: one per core, up to four.
pub(crate) fn parsers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// The fingerprint a reference built from `path` under `plan` will carry: the plan's
/// reference-relevant parts and the file's bytes. A kept reference with the same
/// fingerprint is reused instead of rebuilt.
pub fn file_fingerprint(plan: &Plan, path: &Path) -> Result<String, StoreError> {
    let io = |source| SourceError::Io {
        path: path.into(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut h = WordHash(fnv1a64(plan_fingerprint(plan).as_bytes(), 0));
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // Whole buffers until the end, so words fall at the same offsets however the
        // reads come.
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e).into()),
            }
        }
        h.add(&buf[..filled]);
        if filled < buf.len() {
            break;
        }
    }
    Ok(format!("file:{:016x}", h.finish()))
}

/// A fast 64-bit content hash, eight bytes at a time (a byte-at-a-time FNV of a large
/// reference file took longer than parsing it): multiply and fold per word, the length
/// and the last bytes at the end.
struct WordHash(u64);

impl WordHash {
    fn mix(&mut self, word: u64) {
        let h = (self.0 ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }

    /// Bytes at a multiple of 8 from the start, except for the last call.
    fn add(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.mix(u64::from_le_bytes(b));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(b));
            self.mix(rest.len() as u64);
        }
    }

    fn finish(mut self) -> u64 {
        self.mix(0);
        self.0
    }
}

/// One JSON file per system, `<dir>/<system>.reference.json`, written then renamed so a
/// crash never leaves half a reference behind.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// A store in `dir` (created on the first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileStore { dir: dir.into() }
    }

    fn path(&self, system: &str) -> PathBuf {
        self.dir.join(format!("{system}.reference.json"))
    }
}

impl ReferenceStore for FileStore {
    fn load(
        &self,
        system: &str,
        fingerprint: &str,
    ) -> Result<Option<ReferenceProfile>, StoreError> {
        let path = self.path(system);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<ReferenceProfile>(&bytes) {
                Ok(r) if r.system_id == system && r.fingerprint == fingerprint => Ok(Some(r)),
                Ok(r) if r.system_id == system => {
                    tracing::warn!(path = %path.display(), "kept reference was built under another plan or file; building a new one");
                    Ok(None)
                }
                Ok(_) | Err(_) => {
                    // Never start from a reference we cannot trust; build or collect a new
                    // one and say so.
                    tracing::error!(path = %path.display(), "kept reference unreadable; building or collecting a new one");
                    Ok(None)
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    fn save(&self, r: &ReferenceProfile) -> Result<(), StoreError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| StoreError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let path = self.path(&r.system_id);
        let tmp = path.with_extension("json.tmp");
        // A profile is strings, numbers and maps with string keys: serialising cannot
        // fail.
        let bytes = serde_json::to_vec(r).unwrap_or_default();
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| StoreError::Io { path, source })
    }
}

/// References kept in the process: a replay builds its reference afresh, as a backtest
/// should, through the same code as the service.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    kept: Arc<Mutex<HashMap<String, ReferenceProfile>>>,
}

impl ReferenceStore for MemoryStore {
    fn load(
        &self,
        system: &str,
        fingerprint: &str,
    ) -> Result<Option<ReferenceProfile>, StoreError> {
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(kept
            .get(system)
            .filter(|r| r.fingerprint == fingerprint)
            .cloned())
    }

    fn save(&self, r: &ReferenceProfile) -> Result<(), StoreError> {
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(r.system_id.clone(), r.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_fingerprint_sees_every_byte_and_the_length() {
        let dir = std::env::temp_dir().join(format!("dw-fingerprint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let plan = Plan::from_toml(
            "[system]\nid = \"s\"\n[reference]\nfirst_events = 1\n[window]\nsize = 3\n[features.x]\ntype = \"numeric\"\n",
            "plan",
            PathBuf::new(),
        )
        .expect("plan");
        let base: Vec<u8> = (0..200_003u32).map(|i| (i * 7 % 251) as u8).collect();
        let print = |bytes: &[u8]| {
            let path = dir.join("f.csv");
            std::fs::write(&path, bytes).expect("write");
            file_fingerprint(&plan, &path).expect("fingerprint")
        };
        let want = print(&base);
        assert_eq!(print(&base), want, "the same bytes, the same fingerprint");
        let mut seen = std::collections::HashSet::from([want.clone()]);
        for at in [0, 7, 8, 65_535, 65_536, 131_071, 200_000, 200_002] {
            let mut changed = base.clone();
            changed[at] ^= 1;
            assert!(seen.insert(print(&changed)), "a flipped byte at {at}");
        }
        for len in [200_002, 200_004, 200_000, 199_999, 0] {
            let mut other = base.clone();
            other.resize(len, 0);
            assert!(seen.insert(print(&other)), "length {len}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
