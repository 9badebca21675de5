//! Reading the spool back: the sender follows the log with a [`SpoolReader`]; the
//! `dead-letters` command prints a spool with [`dump`].

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::record::{decode_at, Decoded, SpoolRecord};
use super::{segment_firsts, segment_name};

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
