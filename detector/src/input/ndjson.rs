//! NDJSON event files: one wire-format event per line, validated by the schema's
//! `parse_event` as the agent validates what it receives.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use driftwatch_schema::{parse_event, Event};

use super::SourceError;

/// Events of an NDJSON file, one per non-empty line.
pub struct NdjsonEvents {
    path: PathBuf,
    lines: BufReader<File>,
    line: u64,
    buf: String,
}

impl NdjsonEvents {
    /// Read `file`, opened from `path` (named in errors).
    pub fn new(path: &Path, file: File) -> Self {
        NdjsonEvents {
            path: path.into(),
            lines: BufReader::with_capacity(1 << 16, file),
            line: 0,
            buf: String::new(),
        }
    }
}

impl Iterator for NdjsonEvents {
    type Item = Result<Event, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            self.line += 1;
            match self.lines.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => {
                    return Some(Err(SourceError::Io {
                        path: self.path.clone(),
                        source,
                    }))
                }
            }
            let text = self.buf.trim();
            if text.is_empty() {
                continue;
            }
            let record = |message: String| SourceError::Record {
                path: self.path.clone(),
                line: self.line,
                message,
            };
            let value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => return Some(Err(record(format!("not JSON: {e}")))),
            };
            // Files carry their own timestamps; a missing one is the epoch, never "now",
            // so a replay is reproducible.
            return Some(
                parse_event(value, DateTime::<Utc>::UNIX_EPOCH).map_err(|e| record(e.to_string())),
            );
        }
    }
}
