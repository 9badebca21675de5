//! The disk spool: a write-ahead log of events not yet confirmed by Kafka.
//!
//! Not wired into the HTTP path yet (issue 3 continues): the next step acknowledges a
//! batch after [`Spool::append`] and lets a sender drain [`Spool::read`] into Kafka,
//! calling [`Spool::confirm`] as delivery reports arrive.
//!
//! ## On disk
//!
//! A directory of segment files named by the sequence number of their first record,
//! `00000000000000000042.seg`, and a `confirmed` file.
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
//! ## Recovery
//!
//! [`Spool::open`] scans every segment and never fails on bad data: it must not
//! crash-loop on a bad spool.
//! - A record that fails its length or CRC check in the **last** segment is a torn tail
//!   from a crash mid-write: the file is truncated there.
//! - In any **other** segment the damage is corruption. The segment is renamed to
//!   `*.corrupt` (quarantined, kept for inspection), and its unconfirmed records are
//!   reported in [`Recovery::lost`], which feeds `driftwatch_agent_spool_lost_total`.
//!
//! ## Durability
//!
//! [`Spool::append`] writes the records with one `write` call. With [`FsyncPolicy::Always`]
//! it calls `fdatasync` before returning; with `Interval` the owner calls [`Spool::sync`]
//! periodically. Either way, records survive a process crash (`kill -9`), because the
//! data is in the OS page cache. A power loss may lose the last interval under
//! `Interval`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

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
    /// Unconfirmed records known lost in quarantined segments (at least this many: the
    /// count of records after the damage is unknowable).
    pub lost: u64,
}

struct Segment {
    first: u64,
    path: PathBuf,
    /// Last sequence in the segment (`first - 1` when empty).
    last: u64,
    bytes: u64,
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

/// Decode the record at `buf[at..]`: `Some((seq, record, size))`, or `None` if it is
/// incomplete or fails its checks.
fn decode(buf: &[u8], at: usize) -> Option<(u64, SpoolRecord, usize)> {
    let head = buf.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(head[0..4].try_into().ok()?) as usize;
    if !(2..=MAX_BODY).contains(&len) {
        return None;
    }
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    let seq = u64::from_le_bytes(head[8..16].try_into().ok()?);
    let body = buf.get(at + HEADER..at + HEADER + len)?;
    if crc32c::crc32c(&buf[at + 8..at + HEADER + len]) != crc {
        return None;
    }
    let key_len = u16::from_le_bytes(body[0..2].try_into().ok()?) as usize;
    let key = std::str::from_utf8(body.get(2..2 + key_len)?)
        .ok()?
        .to_owned();
    let payload = body[2 + key_len..].to_vec();
    Some((seq, SpoolRecord { key, payload }, HEADER + len))
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

impl Spool {
    /// Open (or create) a spool directory and recover it.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        fsync: FsyncPolicy,
    ) -> io::Result<(Spool, Recovery)> {
        fs::create_dir_all(dir)?;
        let confirmed = read_confirmed(dir);
        let mut firsts: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse::<u64>().ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut recovery = Recovery::default();
        let mut segments = Vec::new();
        let mut expected: Option<u64> = None;
        let count = firsts.len();
        for (i, first) in firsts.into_iter().enumerate() {
            let path = dir.join(segment_name(first));
            let buf = fs::read(&path)?;
            let mut at = 0;
            let mut last = first.wrapping_sub(1);
            let mut damaged = false;
            while at < buf.len() {
                match decode(&buf, at) {
                    Some((seq, _, size)) if seq == last.wrapping_add(1) => {
                        last = seq;
                        at += size;
                    }
                    _ => {
                        damaged = true;
                        break;
                    }
                }
            }
            // A gap before this segment (a segment quarantined or missing): its
            // unconfirmed records are lost; this segment's records are still delivered.
            if let Some(e) = expected {
                if first > e {
                    recovery.lost += first.saturating_sub(e.max(confirmed + 1));
                }
            }
            if damaged && i + 1 == count {
                // Torn tail of the segment being written when the process died.
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(at as u64)?;
                f.sync_all()?;
                recovery.truncated_bytes += (buf.len() - at) as u64;
            } else if damaged {
                let bad = path.with_extension("seg.corrupt");
                fs::rename(&path, &bad)?;
                // The whole segment is quarantined; its unconfirmed records count as lost
                // once the next segment shows where it ended (the gap above), or here if
                // it was the last one before the open segment.
                if i + 1 == count {
                    recovery.lost += 1;
                }
                recovery.quarantined.push(bad);
                if expected.is_none() {
                    expected = Some(first);
                }
                continue;
            }
            expected = Some(last.wrapping_add(1));
            segments.push(Segment {
                first,
                path,
                last,
                bytes: at as u64,
            });
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
                first: next_seq,
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
        };
        spool.delete_confirmed()?;
        Ok((spool, recovery))
    }

    /// Append records; returns the sequence of the last one. Durable per the fsync policy
    /// when this returns.
    pub fn append(&mut self, records: &[SpoolRecord]) -> io::Result<u64> {
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
        self.writer.write_all(&buf)?;
        if self.fsync == FsyncPolicy::Always {
            self.writer.sync_data()?;
        }
        let last = self.next_seq + records.len() as u64 - 1;
        self.next_seq += records.len() as u64;
        if let Some(s) = self.segments.last_mut() {
            s.last = last;
            s.bytes += buf.len() as u64;
        }
        Ok(last)
    }

    fn roll(&mut self) -> io::Result<()> {
        self.writer.sync_data()?;
        let path = self.dir.join(segment_name(self.next_seq));
        self.writer = OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment {
            first: self.next_seq,
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

    /// Records from `from` on, at most `max`, in sequence order.
    pub fn read(&self, from: u64, max: usize) -> io::Result<Vec<(u64, SpoolRecord)>> {
        let mut out = Vec::new();
        for s in self
            .segments
            .iter()
            .filter(|s| s.last >= from && s.last >= s.first)
        {
            let buf = fs::read(&s.path)?;
            let mut at = 0;
            while at < buf.len() && out.len() < max {
                let Some((seq, r, size)) = decode(&buf, at) else {
                    break;
                };
                if seq >= from {
                    out.push((seq, r));
                }
                at += size;
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Kafka confirmed everything up to `seq`: persist that, then delete whole segments
    /// at or below it.
    pub fn confirm(&mut self, seq: u64) -> io::Result<()> {
        if seq <= self.confirmed {
            return Ok(());
        }
        let seq = seq.min(self.next_seq - 1);
        let mut buf = seq.to_le_bytes().to_vec();
        buf.extend_from_slice(&crc32c::crc32c(&seq.to_le_bytes()).to_le_bytes());
        let tmp = self.dir.join("confirmed.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join("confirmed"))?;
        sync_dir(&self.dir)?;
        self.confirmed = seq;
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
