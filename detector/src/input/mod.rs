//! Event files: NDJSON in the wire format ([`ndjson`]), or CSV with a header row whose
//! columns the plan names, read in parallel into [`batch::ColumnBatch`]es by
//! [`fastcsv`] (with [`csv`] as its exact fallback). Used for reference files and by the
//! file driver (`driftwatch replay`).
//!
//! Every error names the file, the line and the field or column at fault. Reading stops
//! at the first bad record: a backtest over silently skipped rows would not be a backtest.

use std::fs::File;
use std::path::{Path, PathBuf};

use driftwatch_schema::Event;

pub mod batch;
pub mod csv;
pub mod fastcsv;
pub mod ndjson;

/// A file that cannot be read as events.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Opening or reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The extension says neither CSV nor NDJSON.
    #[error("{path}: unknown file type (expected .csv, .ndjson, .jsonl or .json)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A record is not a valid event.
    #[error("{path}:{line}: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// The two kinds of event file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header row: read with [`fastcsv::read_batches`].
    Csv,
    /// One wire-format event per line: read with [`open_ndjson`].
    Ndjson,
}

/// The format of an events file, by its extension.
pub fn format_of(path: &Path) -> Result<Format, SourceError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "csv" => Ok(Format::Csv),
        "ndjson" | "jsonl" | "json" => Ok(Format::Ndjson),
        _ => Err(SourceError::UnknownFormat { path: path.into() }),
    }
}

/// A stream of events from a file.
pub type EventIter = Box<dyn Iterator<Item = Result<Event, SourceError>> + Send>;

/// Open an NDJSON events file.
pub fn open_ndjson(path: &Path) -> Result<EventIter, SourceError> {
    let file = File::open(path).map_err(|source| SourceError::Io {
        path: path.into(),
        source,
    })?;
    Ok(Box::new(ndjson::NdjsonEvents::new(path, file)))
}
