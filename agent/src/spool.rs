//! The disk spool: a write-ahead log of events not yet confirmed by Kafka.
//!
//! The HTTP path acknowledges a batch once [`Spool::append`] returned (see
//! [`crate::pipeline`]); the sender follows the log with a [`SpoolReader`] and reports
//! Kafka's confirmations back with [`persist_confirmed`] and [`Spool::mark_confirmed`].
//!
//! ## On disk
//!
//! A directory of segment files named by the sequence number of their first record,
//! `00000000000000000042.seg`, a `confirmed` file and a `lock` file.
//!
//! Each record is `len: u32 LE | crc: u32 LE | seq: u64 LE | body: len bytes`, where
//! `body = key_len: u16 LE | key | payload` and `crc` is CRC32C over `seq | body`.
//! Sequence numbers increase by one from record to record across segments. A segment
//! rolls once it exceeds `segment_bytes`.
//!
//! `confirmed` holds the highest sequence Kafka confirmed, as `seq: u64 LE | crc32c(seq)`.
//! It is written to a temporary file and renamed, and written *before* any segment is
//! deleted. A segment is deleted only once its last record is at or below the
//! confirmed sequence.
//!
//! `lock` is held with an exclusive advisory lock while a spool is open, so two agents
//! pointed at one directory fail at start instead of interleaving records.
//!
//! ## Recovery
//!
//! [`Spool::open`] scans every segment and never fails on bad data: it must not
//! crash-loop on a bad spool.
//! - A record that fails its length or CRC check in the **last** segment, with no valid
//!   record after it, is a torn tail from a crash mid-write (only the final record can
//!   be torn): the file is truncated there. Such a record was never acknowledged.
//! - Any **other** damage is corruption: a bad record with valid records after it (the
//!   scan resynchronises at the next whole record with a later sequence and a good CRC),
//!   or damage anywhere in a closed segment. The file is kept as `*.seg.corrupt` for
//!   inspection, every valid run of records in it is served from a segment of its own,
//!   and the unconfirmed records missing between them are reported in
//!   [`Recovery::lost`], which feeds `driftwatch_agent_spool_lost_total{reason="corruption"}`.
//!
//! ## Durability
//!
//! [`Spool::append`] writes the records with one `write` call. With [`FsyncPolicy::Always`]
//! it calls `fdatasync` before returning; with `Interval` the owner syncs periodically
//! through [`Spool::sync_handle`]. Either way, records survive a process crash
//! (`kill -9`), because the data is in the OS page cache. A power loss may lose the last
//! interval under `Interval`.
//!
//! A failed write (`ENOSPC`, `EFBIG`, `EIO`) is cut back off the segment before the error
//! is returned, so a half-written batch never sits in front of later records; until that
//! repair succeeds every append fails.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// `ENOSPC` on Linux: no space left on the device.
const ENOSPC: i32 = 28;

/// Bytes before the body: len, crc, seq.
const HEADER: usize = 4 + 4 + 8;
/// Largest body accepted (a record must fit in a Kafka message anyway).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// When appended records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` on every append: survives power loss.
    Always,
    /// The owner calls [`Spool::sync`] periodically: survives a process crash; a power
    /// loss may lose the last interval.
    Interval,
}

/// One event as it will be produced: the Kafka key and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Kafka key (the system id).
    pub key: String,
    /// Kafka payload.
    pub payload: Vec<u8>,
}

/// What start-up recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from a torn tail.
    pub truncated_bytes: u64,
    /// Segments quarantined as corrupt.
    pub quarantined: Vec<PathBuf>,
    /// Unconfirmed records lost to damage: the gaps in the sequence of the records
    /// recovered, above the confirmed position.
    pub lost: u64,
}

struct Segment {
    path: PathBuf,
    /// Last sequence in the segment (its first minus one when empty).
    last: u64,
    bytes: u64,
}

impl Segment {
    /// The sequence of its first record: the number in its name.
    fn first(&self) -> u64 {
        self.path
            .file_stem()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .unwrap_or(self.last.wrapping_add(1))
    }
}

/// A run of valid, consecutive records in a segment's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    /// Byte range.
    start: usize,
    end: usize,
    /// Sequences of its first and last record.
    first: u64,
    last: u64,
}

/// The runs of valid records of a segment whose name says it starts at `first`. After a
/// damaged stretch the scan resynchronises at the next position that holds a whole
/// record with a sequence after the last good one (its CRC checked), so the records
/// after damage are found wherever it is.
fn scan_runs(buf: &[u8], first: u64) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut last = first.wrapping_sub(1);
    let mut at = 0;
    // At most this many records fit in the buffer: a bound on plausible sequences.
    let most = (buf.len() / (HEADER + 2)) as u64 + 1;
    let mut run: Option<Run> = None;
    while at < buf.len() {
        match decode_at(buf, at) {
            Decoded::Record(seq, _, size)
                if seq == last.wrapping_add(1)
                    || (run.is_none() && seq > last && seq <= last.saturating_add(most)) =>
            {
                match &mut run {
                    Some(r) => {
                        r.end = at + size;
                        r.last = seq;
                    }
                    None => {
                        run = Some(Run {
                            start: at,
                            end: at + size,
                            first: seq,
                            last: seq,
                        })
                    }
                }
                last = seq;
                at += size;
            }
            _ => {
                // Damage: close the run, then look for the next valid record.
                runs.extend(run.take());
                at += 1;
                while at + HEADER <= buf.len() && !plausible(buf, at, last, most) {
                    at += 1;
                }
                if at + HEADER > buf.len() {
                    break;
                }
            }
        }
    }
    runs.extend(run);
    runs
}

/// Whether a whole, checked record with a sequence in `(last, last + most]` starts at
/// `at` (the header is looked at before the CRC is computed).
fn plausible(buf: &[u8], at: usize, last: u64, most: u64) -> bool {
    let Some(head) = buf.get(at..at + HEADER) else {
        return false;
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&head[8..16]);
    let seq = u64::from_le_bytes(seq);
    (2..=MAX_BODY).contains(&len)
        && at + HEADER + len <= buf.len()
        && seq > last
        && seq <= last.saturating_add(most)
        && matches!(decode_at(buf, at), Decoded::Record(..))
}

/// The write-ahead spool.
pub struct Spool {
    dir: PathBuf,
    segments: Vec<Segment>,
    writer: File,
    next_seq: u64,
    confirmed: u64,
    segment_bytes: u64,
    fsync: FsyncPolicy,
    /// A failed write left bytes past `Segment::bytes` that are not cut off yet.
    broken: bool,
    /// Holds the directory's advisory lock while open.
    _lock: File,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

fn encode(seq: u64, r: &SpoolRecord, out: &mut Vec<u8>) {
    let key = &r.key.as_bytes()[..r.key.len().min(u16::MAX as usize)];
    let body_len = 2 + key.len() + r.payload.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&r.payload);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What lies at a position of a segment buffer.
enum Decoded {
    /// A record: sequence, record, bytes taken.
    Record(u64, SpoolRecord, usize),
    /// The buffer ends inside the record (a torn tail, or a read racing a write).
    Incomplete,
    /// Length or CRC check failed.
    Corrupt,
}

fn decode_at(buf: &[u8], at: usize) -> Decoded {
    let Some(head) = buf.get(at..at + HEADER) else {
        return Decoded::Incomplete;
    };
    let word = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b[..r.len()].copy_from_slice(&head[r]);
        u64::from_le_bytes(b)
    };
    let len = word(0..4) as usize;
    if !(2..=MAX_BODY).contains(&len) {
        return Decoded::Corrupt;
    }
    let crc = word(4..8) as u32;
    let seq = word(8..16);
    let Some(body) = buf.get(at + HEADER..at + HEADER + len) else {
        return Decoded::Incomplete;
    };
    if crc32c::crc32c(&buf[at + 8..at + HEADER + len]) != crc {
        return Decoded::Corrupt;
    }
    let key_len = u16::from_le_bytes([body[0], body[1]]) as usize;
    let Some(key) = body
        .get(2..2 + key_len)
        .and_then(|k| std::str::from_utf8(k).ok())
    else {
        return Decoded::Corrupt;
    };
    Decoded::Record(
        seq,
        SpoolRecord {
            key: key.to_owned(),
            payload: body[2 + key_len..].to_vec(),
        },
        HEADER + len,
    )
}

fn read_confirmed(dir: &Path) -> u64 {
    let mut buf = [0u8; 12];
    match File::open(dir.join("confirmed")).and_then(|mut f| f.read_exact(&mut buf)) {
        Ok(()) => {
            let seq = u64::from_le_bytes(buf[0..8].try_into().unwrap_or_default());
            let crc = u32::from_le_bytes(buf[8..12].try_into().unwrap_or_default());
            // A damaged file means "nothing confirmed": resending is safe, losing is not.
            if crc32c::crc32c(&buf[0..8]) == crc {
                seq
            } else {
                0
            }
        }
        Err(_) => 0,
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Durably record in `dir` that Kafka confirmed every record up to `seq` (temporary file,
/// fsync, rename, directory fsync).
///
/// On a full disk the temporary file cannot be created; then the existing file (created
/// at [`Spool::open`], so its block is allocated) is overwritten in place. Deleting
/// confirmed segments is what frees the disk, so this step must not need space. A crash
/// during the in-place write leaves a `confirmed` whose check fails, read as "nothing
/// confirmed": everything still on disk is sent again (duplicates, never a loss).
pub fn persist_confirmed(dir: &Path, seq: u64) -> io::Result<()> {
    let mut buf = seq.to_le_bytes().to_vec();
    buf.extend_from_slice(&crc32c::crc32c(&seq.to_le_bytes()).to_le_bytes());
    let tmp = dir.join("confirmed.tmp");
    let renamed = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join("confirmed"))
    })();
    match renamed {
        Ok(()) => sync_dir(dir),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            let mut f = OpenOptions::new()
                .write(true)
                .open(dir.join("confirmed"))
                .map_err(|_| e)?;
            f.write_all(&buf)?;
            f.sync_data()
        }
    }
}

/// The segment files of a spool directory, in sequence order (for inspection and tests).
pub fn segment_paths(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(segment_firsts(dir)?
        .into_iter()
        .map(|f| dir.join(segment_name(f)))
        .collect())
}

/// The first sequence numbers of the segments in `dir`, ascending.
fn segment_firsts(dir: &Path) -> io::Result<Vec<u64>> {
    let mut firsts: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".seg")?.parse::<u64>().ok()
        })
        .collect();
    firsts.sort_unstable();
    Ok(firsts)
}

impl Spool {
    /// Open (or create) a spool directory and recover it.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        fsync: FsyncPolicy,
    ) -> io::Result<(Spool, Recovery)> {
        fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "spool {} is in use by another process (its lock file is held)",
                        dir.display()
                    ),
                ))
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        let confirmed = read_confirmed(dir);
        if !dir.join("confirmed").exists() {
            // Allocated now, while there is room: a full disk must not keep the sender
            // from recording confirmations (see `persist_confirmed`).
            persist_confirmed(dir, confirmed)?;
        }
        let firsts = segment_firsts(dir)?;
        let mut recovery = Recovery::default();
        let mut segments = Vec::new();
        let count = firsts.len();
        // The sequence ranges of the files found damaged now: a gap there is counted
        // lost once, not again at every later start.
        let mut damaged: Vec<(u64, u64)> = Vec::new();
        for (i, &first) in firsts.iter().enumerate() {
            let path = dir.join(segment_name(first));
            let buf = fs::read(&path)?;
            let runs = scan_runs(&buf, first);
            let whole = match runs.as_slice() {
                [] => buf.is_empty(),
                [r] => r.start == 0 && r.end == buf.len(),
                _ => false,
            };
            let is_last = i + 1 == count;
            if whole {
                segments.push(Segment {
                    path,
                    last: runs.first().map_or(first.wrapping_sub(1), |r| r.last),
                    bytes: buf.len() as u64,
                });
            } else if is_last && runs.len() <= 1 && runs.first().is_none_or(|r| r.start == 0) {
                // Damage only after every valid record of the segment being written: a
                // torn tail from a crash mid-write, never acknowledged. Cut it off.
                let end = runs.first().map_or(0, |r| r.end);
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(end as u64)?;
                f.sync_all()?;
                recovery.truncated_bytes += (buf.len() - end) as u64;
                segments.push(Segment {
                    path,
                    last: runs.first().map_or(first.wrapping_sub(1), |r| r.last),
                    bytes: end as u64,
                });
            } else {
                // Damage with valid records after it, or anywhere in a closed segment:
                // corruption, not a torn write. The file is kept for inspection as
                // `*.seg.corrupt`; every valid run of records in it is served from a
                // segment of its own, and the records between them count as lost below.
                let bad = path.with_extension("seg.corrupt");
                fs::copy(&path, &bad)?;
                fs::remove_file(&path)?;
                for r in &runs {
                    let run_path = dir.join(segment_name(r.first));
                    let tmp = run_path.with_extension("seg.tmp");
                    let mut f = File::create(&tmp)?;
                    f.write_all(&buf[r.start..r.end])?;
                    f.sync_all()?;
                    fs::rename(&tmp, &run_path)?;
                    segments.push(Segment {
                        path: run_path,
                        last: r.last,
                        bytes: (r.end - r.start) as u64,
                    });
                }
                sync_dir(dir)?;
                recovery.quarantined.push(bad);
                damaged.push((first, firsts.get(i + 1).copied().unwrap_or(u64::MAX)));
                if is_last {
                    // Bytes after the last valid run of the last segment may be a torn
                    // write on top of the damage: not counted, as any torn tail.
                    let tail = buf.len() - runs.last().map_or(0, |r| r.end);
                    recovery.truncated_bytes += tail as u64;
                }
            }
        }
        // A gap in the sequence where a damaged file was found, above the confirmed
        // position, is acknowledged data that can no longer be delivered: counted.
        let mut expected = confirmed.wrapping_add(1);
        for s in segments.iter().filter(|s| s.bytes > 0) {
            let first = s.first();
            if first > expected && damaged.iter().any(|&(a, b)| a < first && expected < b) {
                recovery.lost += first - expected;
            }
            expected = expected.max(s.last.wrapping_add(1));
        }
        let next_seq = match segments.last() {
            Some(s) => s.last.wrapping_add(1).max(confirmed + 1),
            None => confirmed + 1,
        };
        if segments
            .last()
            .is_none_or(|s| s.last.wrapping_add(1) != next_seq)
        {
            let path = dir.join(segment_name(next_seq));
            File::create(&path)?;
            sync_dir(dir)?;
            segments.push(Segment {
                path,
                last: next_seq - 1,
                bytes: 0,
            });
        }
        let writer = OpenOptions::new()
            .append(true)
            .open(&segments[segments.len() - 1].path)?;
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            segments,
            writer,
            next_seq,
            confirmed,
            segment_bytes: segment_bytes.max(1),
            fsync,
            broken: false,
            _lock: lock,
        };
        // A last segment whose records are all confirmed is not written to again: start a
        // new one, so it can be deleted now (on a disk smaller than a segment it holds
        // the space every append needs).
        spool.reclaim_open_segment()?;
        spool.delete_confirmed()?;
        Ok((spool, recovery))
    }

    /// Append records; returns the sequence of the last one. Durable per the fsync policy
    /// when this returns.
    pub fn append(&mut self, records: &[SpoolRecord]) -> io::Result<u64> {
        if records.is_empty() {
            return Ok(self.next_seq - 1);
        }
        if self.broken {
            self.repair()?;
        }
        if self
            .segments
            .last()
            .is_some_and(|s| s.bytes >= self.segment_bytes)
        {
            self.roll()?;
        }
        let mut buf = Vec::with_capacity(
            records
                .iter()
                .map(|r| HEADER + 2 + r.key.len() + r.payload.len())
                .sum(),
        );
        for (i, r) in records.iter().enumerate() {
            if 2 + r.key.len() + r.payload.len() > MAX_BODY {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("record {i} is larger than {MAX_BODY} bytes"),
                ));
            }
            encode(self.next_seq + i as u64, r, &mut buf);
        }
        if let Err(e) = self.writer.write_all(&buf) {
            // Part of the batch may be in the file: cut it off so the next batch does not
            // land behind a torn record, which recovery would truncate away.
            self.broken = true;
            let _ = self.repair();
            // A full disk while the open segment holds only confirmed records (a volume
            // smaller than one segment): roll and delete it, then try once more. The
            // open segment is never deleted otherwise, so this was 503 for good.
            if e.raw_os_error() == Some(ENOSPC) && !self.broken && self.reclaim_open_segment()? {
                return self.append(records);
            }
            return Err(e);
        }
        if self.fsync == FsyncPolicy::Always {
            if let Err(e) = self.writer.sync_data() {
                // The data may or may not be on disk: treat the batch as not written.
                self.broken = true;
                let _ = self.repair();
                return Err(e);
            }
        }
        let last = self.next_seq + records.len() as u64 - 1;
        self.next_seq += records.len() as u64;
        if let Some(s) = self.segments.last_mut() {
            s.last = last;
            s.bytes += buf.len() as u64;
        }
        Ok(last)
    }

    /// When the open segment is not empty and every record in it is confirmed, roll to a
    /// new one and delete it; whether it did.
    fn reclaim_open_segment(&mut self) -> io::Result<bool> {
        match self.segments.last() {
            Some(s) if s.bytes > 0 && s.last <= self.confirmed => {
                self.roll()?;
                self.delete_confirmed()?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Cut the open segment back to its last whole record.
    fn repair(&mut self) -> io::Result<()> {
        let good = self.segments.last().map_or(0, |s| s.bytes);
        self.writer.set_len(good)?;
        self.broken = false;
        Ok(())
    }

    /// Whether appending `bytes` more would stay within `budget`. When it would not and
    /// every record of the open segment is confirmed, the segment is rolled so it can be
    /// deleted (the open segment is never deleted), and the check is repeated.
    pub fn has_room(&mut self, bytes: u64, budget: u64) -> io::Result<bool> {
        if self.bytes() + bytes <= budget {
            return Ok(true);
        }
        if let Some(s) = self.segments.last() {
            if s.bytes > 0 && s.last <= self.confirmed {
                self.roll()?;
                self.delete_confirmed()?;
            }
        }
        Ok(self.bytes() + bytes <= budget)
    }

    /// The encoded size of records, as [`Spool::bytes`] will count them.
    pub fn encoded_len(records: &[SpoolRecord]) -> u64 {
        records
            .iter()
            .map(|r| (HEADER + 2 + r.key.len() + r.payload.len()) as u64)
            .sum()
    }

    /// A second handle on the open segment, to `fdatasync` it without holding the spool
    /// (the `Interval` policy's tick). Segments already rolled were synced when they rolled.
    pub fn sync_handle(&self) -> io::Result<File> {
        self.writer.try_clone()
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn roll(&mut self) -> io::Result<()> {
        self.writer.sync_data()?;
        let path = self.dir.join(segment_name(self.next_seq));
        self.writer = OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment {
            path,
            last: self.next_seq - 1,
            bytes: 0,
        });
        Ok(())
    }

    /// Flush appended records to the disk (the `Interval` policy's tick).
    pub fn sync(&mut self) -> io::Result<()> {
        self.writer.sync_data()
    }

    /// Kafka confirmed everything up to `seq`: persist that, then delete whole segments
    /// at or below it.
    pub fn confirm(&mut self, seq: u64) -> io::Result<()> {
        if seq <= self.confirmed {
            return Ok(());
        }
        let seq = seq.min(self.next_seq - 1);
        persist_confirmed(&self.dir, seq)?;
        self.mark_confirmed(seq)
    }

    /// Record that `seq` is confirmed and delete the segments that are wholly confirmed.
    /// The caller must have persisted `seq` with [`persist_confirmed`] first; splitting the
    /// two keeps the slow fsync of the `confirmed` file outside the spool's lock.
    pub fn mark_confirmed(&mut self, seq: u64) -> io::Result<()> {
        if seq <= self.confirmed {
            return Ok(());
        }
        self.confirmed = seq.min(self.next_seq - 1);
        self.delete_confirmed()
    }

    fn delete_confirmed(&mut self) -> io::Result<()> {
        // Never the segment being written.
        while self.segments.len() > 1 && self.segments[0].last <= self.confirmed {
            let s = self.segments.remove(0);
            fs::remove_file(&s.path)?;
        }
        Ok(())
    }

    /// The highest confirmed sequence.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// The sequence the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Bytes held on disk (the `max_spool_bytes` budget counts these).
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }
}

/// Follows a spool directory from a sequence number on, reading only records the writer
/// has published (below the `upto` bound given to [`SpoolReader::read`]), so it never
/// sees a batch that is still being written or is cut back after a failed write.
///
/// It holds the open segment's file, so a segment deleted after confirmation can still be
/// read to its end. A gap in the sequence (a segment quarantined at start-up) is skipped:
/// the next record returned has a higher sequence than asked for.
pub struct SpoolReader {
    dir: PathBuf,
    file: Option<File>,
    /// First sequence of the segment `file` is.
    seg_first: u64,
    /// Bytes read from `file`; `buf[0]` is at file offset `base`.
    buf: Vec<u8>,
    base: u64,
    pos: usize,
    next: u64,
    /// When [`SpoolReader::release_if_rolled`] last looked.
    released_check: Option<std::time::Instant>,
    /// Offset last re-read from the file after a failed check (stale bytes are re-read
    /// once before damage is believed).
    fresh_at: Option<u64>,
    /// The buffered bytes were read when only sequences below this were published;
    /// anything at or above it may be a failed write's leftovers and is read again.
    trusted: u64,
}

/// The reader found a record that fails its checks in published data (the disk changed
/// under the agent): the rest of that segment is skipped.
#[derive(Debug, thiserror::Error)]
#[error("spool segment damaged at sequence {at}; skipped {skipped} records")]
pub struct Skipped {
    /// The first sequence that could not be read.
    pub at: u64,
    /// How many sequences were skipped.
    pub skipped: u64,
}

impl SpoolReader {
    /// A reader whose first record will be `from` (or the next one present).
    pub fn new(dir: &Path, from: u64) -> SpoolReader {
        SpoolReader {
            dir: dir.to_path_buf(),
            file: None,
            seg_first: 0,
            buf: Vec::new(),
            base: 0,
            pos: 0,
            next: from,
            fresh_at: None,
            trusted: 0,
            released_check: None,
        }
    }

    /// Start again at `from` (a resend after failed deliveries).
    pub fn seek(&mut self, from: u64) {
        self.file = None;
        self.buf.clear();
        self.base = 0;
        self.pos = 0;
        self.next = from;
        self.fresh_at = None;
    }

    /// The sequence the next record read will have, at least.
    pub fn position(&self) -> u64 {
        self.next
    }

    fn open_segment(&mut self) -> io::Result<bool> {
        let firsts = segment_firsts(&self.dir)?;
        let first = match firsts.iter().rev().find(|&&f| f <= self.next) {
            Some(&f) => f,
            None => match firsts.first() {
                Some(&f) => f,
                None => return Ok(false),
            },
        };
        let path = self.dir.join(segment_name(first));
        let file = match File::open(&path) {
            Ok(f) => f,
            // Deleted between listing and opening: it was confirmed; list again next time.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        self.file = Some(file);
        self.seg_first = first;
        self.buf.clear();
        self.base = 0;
        self.pos = 0;
        if first > self.next {
            self.next = first;
        }
        Ok(true)
    }

    /// Caught up, with every byte read, while the writer has rolled to the segment
    /// named `next`: close the file read so far. The writer deletes that segment once it
    /// is confirmed, and its disk space is only freed when no handle is open on it: on a
    /// disk smaller than a segment, the reader holding it would keep every append
    /// failing with "No space left" (nothing new is published to move the reader on).
    /// Looked at no more than every 100 ms.
    fn release_if_rolled(&mut self, upto: u64) {
        if self.file.is_none()
            || self.next < upto
            || self.pos < self.buf.len()
            || self
                .released_check
                .is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(100))
        {
            return;
        }
        self.released_check = Some(std::time::Instant::now());
        if self.seg_first != self.next && self.dir.join(segment_name(self.next)).exists() {
            self.file = None;
            self.buf.clear();
            self.base = 0;
            self.pos = 0;
        }
    }

    /// Drop buffered bytes from the current position on and read them again from the
    /// file next time: they may be a cut-back write's leftovers, since overwritten.
    fn reread_from_here(&mut self) -> io::Result<()> {
        let at = self.base + self.pos as u64;
        if let Some(f) = self.file.as_mut() {
            f.seek(io::SeekFrom::Start(at))?;
        }
        self.buf.clear();
        self.base = at;
        self.pos = 0;
        Ok(())
    }

    /// Up to `max` records with sequences in `[position, upto)`, appended to `out` in
    /// order.
    pub fn read(
        &mut self,
        upto: u64,
        max: usize,
        out: &mut Vec<(u64, SpoolRecord)>,
    ) -> Result<(), ReadError> {
        let wanted = out.len().saturating_add(max);
        let mut at_end = false;
        self.release_if_rolled(upto);
        while self.next < upto && out.len() < wanted {
            if self.file.is_none() && !self.open_segment()? {
                return Ok(());
            }
            match decode_at(&self.buf, self.pos) {
                Decoded::Record(seq, r, size) => {
                    if seq >= self.trusted {
                        // Read before it was published: perhaps a failed write's leftover.
                        self.reread_from_here()?;
                        if seq >= upto {
                            return Ok(());
                        }
                        continue;
                    }
                    self.pos += size;
                    self.fresh_at = None;
                    if seq < self.next {
                        continue;
                    }
                    self.next = seq + 1;
                    out.push((seq, r));
                }
                Decoded::Incomplete => {
                    if self.pos > 0 {
                        self.buf.drain(..self.pos);
                        self.base += self.pos as u64;
                        self.pos = 0;
                    }
                    let mut chunk = [0u8; 64 * 1024];
                    let n = match self.file.as_mut() {
                        Some(f) => f.read(&mut chunk)?,
                        None => 0,
                    };
                    if n > 0 {
                        self.trusted = if self.buf.is_empty() {
                            upto
                        } else {
                            self.trusted.min(upto)
                        };
                        self.buf.extend_from_slice(&chunk[..n]);
                        at_end = false;
                        continue;
                    }
                    if !self.buf.is_empty() {
                        // A partial record at the end: not ours to read yet.
                        self.reread_from_here()?;
                        return Ok(());
                    }
                    if at_end {
                        return Ok(());
                    }
                    // End of this segment: the writer rolled to the segment named `next`,
                    // or, when that one was quarantined at start-up, the records resume
                    // in the next segment after a gap.
                    if self.dir.join(segment_name(self.next)).exists() {
                        self.file = None;
                    } else if let Some(f) = segment_firsts(&self.dir)?
                        .into_iter()
                        .find(|&f| f > self.seg_first)
                    {
                        if f > self.next {
                            self.next = f;
                            self.file = None;
                        }
                    }
                    at_end = true;
                }
                Decoded::Corrupt => {
                    let off = self.base + self.pos as u64;
                    if self.fresh_at != Some(off) {
                        self.fresh_at = Some(off);
                        self.reread_from_here()?;
                        continue;
                    }
                    let at = self.next;
                    // Skip to the next segment, whatever it starts with.
                    let after = segment_firsts(&self.dir)?
                        .into_iter()
                        .find(|&f| f > at)
                        .unwrap_or(upto);
                    self.seek(after);
                    return Err(ReadError::Skipped(Skipped {
                        at,
                        skipped: after - at,
                    }));
                }
            }
        }
        Ok(())
    }
}

/// Write every record of a spool directory to `out`, one payload per line, without
/// taking the spool's lock (read-only; for the `dead-letters` command). A directory that
/// does not exist holds no records.
pub fn dump(dir: &Path, out: &mut impl Write) -> io::Result<u64> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut reader = SpoolReader::new(dir, 0);
    let mut n = 0;
    loop {
        let mut batch = Vec::new();
        match reader.read(u64::MAX, 1000, &mut batch) {
            Ok(()) => {}
            Err(ReadError::Io(e)) => return Err(e),
            Err(ReadError::Skipped(s)) => {
                eprintln!("{s}");
                continue;
            }
        }
        if batch.is_empty() {
            break;
        }
        for (_, r) in batch {
            out.write_all(&r.payload)?;
            out.write_all(b"\n")?;
            n += 1;
        }
    }
    out.flush()?;
    Ok(n)
}

/// Why [`SpoolReader::read`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file system failed.
    #[error("cannot read the spool: {0}")]
    Io(#[from] io::Error),
    /// Damaged records were skipped.
    #[error(transparent)]
    Skipped(Skipped),
}

#[cfg(test)]
mod tests;
