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
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// `ENOSPC` on Linux: no space left on the device.
const ENOSPC: i32 = 28;

mod reader;
mod record;
mod recovery;

pub use reader::{dump, ReadError, Skipped, SpoolReader};
use record::{encode, HEADER};
pub use record::{SpoolRecord, MAX_BODY};
pub use recovery::Recovery;

/// When appended records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` on every append: survives power loss.
    Always,
    /// The owner calls [`Spool::sync`] periodically: survives a process crash; a power
    /// loss may lose the last interval.
    Interval,
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

/// Total bytes of the filesystem that holds `path` (or its nearest existing ancestor),
/// if the system says.
pub fn filesystem_bytes(path: &Path) -> Option<u64> {
    let mut p = path;
    while !p.exists() {
        p = p.parent()?;
    }
    let p = if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    };
    let s = rustix::fs::statvfs(p).ok()?;
    Some(s.f_blocks.saturating_mul(s.f_frsize))
}

/// The start-up warning when the spool budget cannot fit on its filesystem: the disk,
/// not `max_spool_bytes`, will stop ingest first (with 503s once the confirmed events
/// are reclaimed and it is still full).
pub fn capacity_warning(max_spool_bytes: u64, filesystem: Option<u64>) -> Option<String> {
    let fs = filesystem?;
    (max_spool_bytes > fs).then(|| {
        format!(
            "spool.max_spool_bytes ({max_spool_bytes} bytes) is larger than the filesystem of data_dir ({fs} bytes): the disk will fill before the budget does; set max_spool_bytes below the volume size"
        )
    })
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
        let (mut segments, recovery) = recovery::recover(dir, confirmed)?;
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

#[cfg(test)]
mod tests;
