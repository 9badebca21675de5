//! The file driver: a plan, a reference and an events file through the same engine the
//! Kafka driver uses; one JSON window report per line on the output.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::alert::alerts_for;
use crate::engine::{fnv1a64, plan_fingerprint, Monitor, ReferenceBuilder, ReferenceProfile, Step};
use crate::input::{self, fastcsv, Format, SourceError};
use crate::plan::{Plan, Severity};

/// CSV parsing threads, and window evaluation threads: one per core, up to four.
fn parsers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Closed windows evaluated in one go: each signal's reference is then read into the
/// cache once for all of them (a 50,000-value reference is 400 KB).
const EVALUATE_TOGETHER: usize = 8;

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReplaySummary {
    /// Predictions read.
    pub predictions: u64,
    /// Outcomes read.
    pub outcomes: u64,
    /// Events of other systems, skipped.
    pub other_systems: u64,
    /// Window reports written.
    pub windows: u64,
    /// Alerts the plan would have raised.
    pub alerts: u64,
    /// Highest severity seen.
    pub max_severity: Option<Severity>,
    /// Predictions that arrived after their windows closed (time windows).
    pub late: u64,
}

/// A replay that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// An input file is unreadable or holds a bad record.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The reference holds no predictions for this system.
    #[error("reference {0} holds no predictions of system \"{1}\"")]
    EmptyReference(String, String),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Build a frozen reference from a file of predictions of the plan's system.
pub fn reference_from_file(plan: &Plan, path: &Path) -> Result<ReferenceProfile, ReplayError> {
    let mut builder = ReferenceBuilder::new(plan);
    let fingerprint = if input::format_of(path)? == Format::Csv {
        // The file's fingerprint is hashed on another thread while it is parsed.
        std::thread::scope(|scope| -> Result<String, ReplayError> {
            let hashing = scope.spawn(|| reference_file_fingerprint(plan, path));
            let read = fastcsv::read_batches(path, plan, parsers(), |batch| {
                builder.add_columns(batch);
                Ok::<_, ReplayError>(())
            });
            let hashed = hashing
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            read?;
            hashed
        })?
    } else {
        for event in input::open_ndjson(path)? {
            if let driftwatch_schema::Event::Prediction(p) = event? {
                if p.system_id == plan.system.id {
                    builder.add(&p);
                }
            }
        }
        reference_file_fingerprint(plan, path)?
    };
    if builder.is_empty() {
        return Err(ReplayError::EmptyReference(
            path.display().to_string(),
            plan.system.id.clone(),
        ));
    }
    Ok(builder.build(path.display().to_string(), fingerprint))
}

/// The fingerprint a reference built from `path` under `plan` will carry: the plan's
/// reference-relevant parts and the file's bytes. A persisted reference with the same
/// fingerprint can be reused instead of rebuilt.
pub fn reference_file_fingerprint(plan: &Plan, path: &Path) -> Result<String, ReplayError> {
    use std::io::Read;
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

/// Replay `events` against `plan`. The reference is `reference` if given, else the
/// plan's reference file, else the first N predictions of `events` (plan `first_events`).
pub fn replay(
    plan: Arc<Plan>,
    reference: Option<&Path>,
    events: &Path,
    out: &mut impl Write,
) -> Result<ReplaySummary, ReplayError> {
    let profile = match reference
        .map(Path::to_path_buf)
        .or_else(|| plan.reference_path())
    {
        Some(path) => Some(reference_from_file(&plan, &path)?),
        None => None,
    };
    let min = plan.alerts.min_severity;
    let mut monitor = Monitor::new(plan.clone(), profile);
    let mut summary = ReplaySummary::default();
    if input::format_of(events)? == Format::Csv {
        // CSV columns go straight into the engine (every row is the plan's system),
        // parsed on other threads; row by row only until the engine takes columns.
        let width = monitor.signals().len();
        let threads = parsers();
        let mut closed = Vec::new();
        let read = fastcsv::read_batches(events, &plan, threads, |batch| {
            let mut i = 0;
            let mut row = Vec::with_capacity(width);
            while i < batch.len() && !monitor.takes_columns() {
                batch.row(i, &mut row);
                summary.predictions += 1;
                let outcome = batch.has_outcome(i);
                summary.outcomes += u64::from(outcome);
                let step = monitor.observe_row(batch.timestamp(i), &row, outcome);
                record(step, min, out, &mut summary)?;
                i += 1;
            }
            if i < batch.len() {
                summary.predictions += (batch.len() - i) as u64;
                summary.outcomes +=
                    (i..batch.len()).filter(|&r| batch.has_outcome(r)).count() as u64;
                closed.extend(monitor.close_columns(batch, i));
                if closed.len() >= EVALUATE_TOGETHER {
                    let reports = monitor.evaluate(std::mem::take(&mut closed), threads);
                    record(Step::of(reports), min, out, &mut summary)?;
                }
            }
            Ok::<_, ReplayError>(())
        });
        // The rows before a bad record are reported before the error.
        let reports = monitor.evaluate(closed, threads);
        record(Step::of(reports), min, out, &mut summary)?;
        read?;
    } else {
        for event in input::open_ndjson(events)? {
            let event = event?;
            if event.system_id() != plan.system.id {
                summary.other_systems += 1;
                continue;
            }
            match event.kind() {
                driftwatch_schema::EventKind::Prediction => summary.predictions += 1,
                driftwatch_schema::EventKind::Outcome => summary.outcomes += 1,
            }
            record(monitor.observe(&event), min, out, &mut summary)?;
        }
    }
    record(Step::of(monitor.finish()), min, out, &mut summary)?;
    out.flush()?;
    Ok(summary)
}

/// Write a step's window reports as NDJSON and count them.
fn record(
    step: Step,
    min: Severity,
    out: &mut impl Write,
    summary: &mut ReplaySummary,
) -> std::io::Result<()> {
    summary.late += u64::from(step.late);
    for report in step.reports {
        summary.windows += 1;
        summary.alerts += alerts_for(&report, min).len() as u64;
        summary.max_severity = summary.max_severity.max(Some(report.severity));
        serde_json::to_writer(&mut *out, &report)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

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
            reference_file_fingerprint(&plan, &path).expect("fingerprint")
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
