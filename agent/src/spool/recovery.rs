//! Start-up recovery: every segment scanned into runs of valid records, a torn tail cut
//! off, damage elsewhere kept for inspection and counted (see the module docs of
//! [`super`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::record::{decode_at, Decoded, HEADER, MAX_BODY};
use super::{segment_firsts, segment_name, sync_dir, Segment};

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

/// Scan every segment of `dir` (records above `confirmed` are unconfirmed) into the
/// segments to serve, repairing as described in the module docs: a torn tail cut off,
/// damaged files kept as `*.seg.corrupt` with each valid run served from a segment of
/// its own, and the sequences lost to damage counted.
pub(super) fn recover(dir: &Path, confirmed: u64) -> io::Result<(Vec<Segment>, Recovery)> {
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
        if whole || (is_last && runs.len() <= 1 && runs.first().is_none_or(|r| r.start == 0)) {
            // Whole, or damaged only after every valid record of the segment being
            // written: a torn tail from a crash mid-write, never acknowledged. Cut it off.
            let end = runs.first().map_or(0, |r| r.end);
            if end < buf.len() {
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(end as u64)?;
                f.sync_all()?;
                recovery.truncated_bytes += (buf.len() - end) as u64;
            }
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
    Ok((segments, recovery))
}
