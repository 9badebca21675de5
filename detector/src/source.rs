//! Event files: NDJSON in the wire format, or CSV with a header row whose columns the
//! plan names. Used for reference files and by `driftwatch replay`.
//!
//! Every error names the file, the line and the field or column at fault. Reading stops
//! at the first bad record: a backtest over silently skipped rows would not be a backtest.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use driftwatch_schema::{
    parse_event, Event, FeatureValue, Outcome, OutcomeValue, Prediction, PredictionValue,
    WIRE_VERSION,
};
use uuid::Uuid;

use crate::plan::{FeatureType, Plan};

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

/// A stream of events from a file.
pub type EventIter = Box<dyn Iterator<Item = Result<Event, SourceError>> + Send>;

/// Open an events file; the format follows the extension.
pub fn open(path: &Path, plan: &Plan) -> Result<EventIter, SourceError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let file = File::open(path).map_err(|source| SourceError::Io {
        path: path.into(),
        source,
    })?;
    match ext.as_str() {
        "csv" => Ok(Box::new(CsvEvents::new(path, file, plan)?)),
        "ndjson" | "jsonl" | "json" => Ok(Box::new(NdjsonEvents {
            path: path.into(),
            lines: BufReader::with_capacity(1 << 16, file),
            line: 0,
            buf: String::new(),
        })),
        _ => Err(SourceError::UnknownFormat { path: path.into() }),
    }
}

struct NdjsonEvents {
    path: PathBuf,
    lines: BufReader<File>,
    line: u64,
    buf: String,
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

/// Column positions resolved from the header.
struct Columns {
    features: Vec<(String, FeatureType, usize)>,
    prediction_id: Option<usize>,
    timestamp: Option<usize>,
    model_version: Option<usize>,
    score: Option<usize>,
    label: Option<usize>,
    value: Option<usize>,
    outcome: Option<usize>,
}

struct CsvEvents {
    path: PathBuf,
    reader: csv::Reader<File>,
    record: csv::StringRecord,
    cols: Columns,
    system_id: String,
    row: u64,
    pending_outcome: Option<Event>,
}

fn csv_reader(file: File) -> csv::Reader<File> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .buffer_capacity(1 << 16)
        .from_reader(file)
}

/// Resolve the plan's columns in a CSV header; every plan feature and monitored output
/// must have one.
fn resolve_columns(
    path: &Path,
    reader: &mut csv::Reader<File>,
    plan: &Plan,
) -> Result<Columns, SourceError> {
    {
        let headers = reader
            .headers()
            .map_err(|e| SourceError::Record {
                path: path.into(),
                line: 1,
                message: format!("cannot read the header row: {e}"),
            })?
            .clone();
        let find = |name: &str| headers.iter().position(|h| h.trim() == name);
        let mut features = Vec::new();
        for (name, spec) in &plan.features {
            match find(name) {
                Some(i) => features.push((name.clone(), spec.kind, i)),
                None => {
                    return Err(SourceError::Record {
                        path: path.into(),
                        line: 1,
                        message: format!(
                            "the plan's feature \"{name}\" has no column (header: {})",
                            headers.iter().collect::<Vec<_>>().join(",")
                        ),
                    })
                }
            }
        }
        let c = &plan.csv;
        let cols = Columns {
            features,
            prediction_id: find(&c.prediction_id),
            timestamp: find(&c.timestamp),
            model_version: find(&c.model_version),
            score: find(&c.score),
            label: find(&c.label),
            value: find(&c.value),
            outcome: find(&c.outcome),
        };
        for (output, col, name) in [
            (plan.prediction.score.is_some(), cols.score, &c.score),
            (plan.prediction.label.is_some(), cols.label, &c.label),
            (plan.prediction.value.is_some(), cols.value, &c.value),
        ] {
            if output && col.is_none() {
                return Err(SourceError::Record {
                    path: path.into(),
                    line: 1,
                    message: format!(
                        "the plan monitors a prediction output whose column \"{name}\" is missing (set [csv] in the plan)"
                    ),
                });
            }
        }
        Ok(cols)
    }
}

impl CsvEvents {
    fn new(path: &Path, file: File, plan: &Plan) -> Result<Self, SourceError> {
        let mut reader = csv_reader(file);
        let cols = resolve_columns(path, &mut reader, plan)?;
        Ok(CsvEvents {
            path: path.into(),
            reader,
            record: csv::StringRecord::new(),
            cols,
            system_id: plan.system.id.clone(),
            row: 0,
            pending_outcome: None,
        })
    }

    fn error(&self, message: String) -> SourceError {
        SourceError::Record {
            path: self.path.clone(),
            line: self.row + 1,
            message,
        }
    }

    fn number(&self, col: usize, name: &str) -> Result<Option<f64>, SourceError> {
        let s = self.record.get(col).unwrap_or("").trim();
        if s.is_empty() || s.eq_ignore_ascii_case("nan") || s.eq_ignore_ascii_case("null") {
            return Ok(None);
        }
        match s.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Some(x)),
            _ => Err(self.error(format!("column {name}: expected a number, found \"{s}\""))),
        }
    }

    fn text(&self, col: Option<usize>) -> Option<String> {
        col.and_then(|c| self.record.get(c))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    fn parse_row(&mut self) -> Result<Event, SourceError> {
        let mut features = std::collections::BTreeMap::new();
        for (name, kind, col) in &self.cols.features {
            let v = match kind {
                FeatureType::Numeric => match self.number(*col, name)? {
                    Some(x) => FeatureValue::Number(x),
                    None => FeatureValue::Null,
                },
                FeatureType::Categorical => match self.text(Some(*col)) {
                    Some(s) => FeatureValue::Text(s),
                    None => FeatureValue::Null,
                },
            };
            features.insert(name.clone(), v);
        }
        let timestamp = match self.text(self.cols.timestamp) {
            None => DateTime::<Utc>::UNIX_EPOCH,
            Some(s) => DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    self.error(format!(
                        "column timestamp: expected an RFC 3339 timestamp, found \"{s}\""
                    ))
                })?,
        };
        let prediction_id = self
            .text(self.cols.prediction_id)
            .unwrap_or_else(|| format!("row-{}", self.row));
        let prediction = PredictionValue {
            score: match self.cols.score {
                Some(c) => self.number(c, "score")?,
                None => None,
            },
            label: self.text(self.cols.label),
            value: match self.cols.value {
                Some(c) => self.number(c, "value")?,
                None => None,
            },
        };
        if let Some(o) = self.text(self.cols.outcome) {
            let outcome = match o.parse::<f64>() {
                Ok(x) if x.is_finite() && self.cols.value.is_some() => OutcomeValue {
                    label: None,
                    value: Some(x),
                },
                _ => OutcomeValue {
                    label: Some(o),
                    value: None,
                },
            };
            self.pending_outcome = Some(Event::Outcome(Outcome {
                v: WIRE_VERSION,
                event_id: Uuid::from_u64_pair(1, self.row),
                system_id: self.system_id.clone(),
                prediction_id: prediction_id.clone(),
                timestamp,
                outcome,
            }));
        }
        Ok(Event::Prediction(Prediction {
            v: WIRE_VERSION,
            // Deterministic ids: replaying a file twice gives identical output.
            event_id: Uuid::from_u64_pair(0, self.row),
            system_id: self.system_id.clone(),
            model_version: self
                .text(self.cols.model_version)
                .unwrap_or_else(|| "unknown".into()),
            prediction_id,
            timestamp,
            features,
            prediction,
            segment: Default::default(),
            suppressed: Vec::new(),
        }))
    }
}

impl Iterator for CsvEvents {
    type Item = Result<Event, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(o) = self.pending_outcome.take() {
            return Some(Ok(o));
        }
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                self.row += 1;
                Some(self.parse_row())
            }
            Err(e) => {
                self.row += 1;
                Some(Err(self.error(format!("malformed CSV: {e}"))))
            }
        }
    }
}

/// A CSV file decoded straight into engine rows (see [`crate::engine::decode`]): one
/// value per plan signal, taken by column index, with no per-row maps or allocations
/// beyond the row itself. The same checks and errors as the event reader.
pub struct CsvRows {
    path: PathBuf,
    reader: csv::Reader<File>,
    record: csv::ByteRecord,
    /// Per signal: its column and kind.
    columns: Vec<(Option<usize>, FeatureType)>,
    /// Per signal: its column's name, for errors.
    names: Vec<String>,
    timestamp: Option<usize>,
    outcome: Option<usize>,
    line: u64,
}

/// What a CSV row held besides its values.
#[derive(Debug, Clone, Copy)]
pub struct RowMeta {
    /// The prediction's timestamp (the Unix epoch without a timestamp column).
    pub timestamp: DateTime<Utc>,
    /// The row also carries an outcome.
    pub has_outcome: bool,
}

impl CsvRows {
    /// Open a CSV file for `plan`; its rows follow `plan.signals()` order.
    pub fn open(path: &Path, plan: &Plan) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|source| SourceError::Io {
            path: path.into(),
            source,
        })?;
        let mut reader = csv_reader(file);
        let cols = resolve_columns(path, &mut reader, plan)?;
        let headers = reader.byte_headers().cloned().unwrap_or_default();
        let columns: Vec<(Option<usize>, FeatureType)> = plan
            .signals()
            .iter()
            .map(|s| {
                let col = match &s.source {
                    crate::plan::Source::Feature(name) => cols
                        .features
                        .iter()
                        .find(|(n, _, _)| n == name)
                        .map(|(_, _, i)| *i),
                    crate::plan::Source::Score => cols.score,
                    crate::plan::Source::Label => cols.label,
                    crate::plan::Source::Value => cols.value,
                };
                (col, s.kind)
            })
            .collect();
        let names = columns
            .iter()
            .map(|(c, _)| {
                c.and_then(|c| headers.get(c))
                    .map(|h| String::from_utf8_lossy(h).trim().to_owned())
                    .unwrap_or_default()
            })
            .collect();
        Ok(CsvRows {
            path: path.into(),
            reader,
            record: csv::ByteRecord::new(),
            columns,
            names,
            timestamp: cols.timestamp,
            outcome: cols.outcome,
            line: 1,
        })
    }

    fn error(&self, message: String) -> SourceError {
        SourceError::Record {
            path: self.path.clone(),
            line: self.line,
            message,
        }
    }

    fn field(&self, col: usize) -> &[u8] {
        self.record.get(col).unwrap_or_default().trim_ascii()
    }

    /// Read the next row into `out` (cleared first); `None` at the end of the file.
    pub fn next_row<'a>(
        &'a mut self,
        out: &mut Vec<crate::engine::Observed<'a>>,
    ) -> Result<Option<RowMeta>, SourceError> {
        use crate::engine::Observed;
        out.clear();
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => return Ok(None),
            Ok(true) => self.line += 1,
            Err(e) => {
                self.line += 1;
                return Err(self.error(format!("malformed CSV: {e}")));
            }
        }
        let timestamp = match self
            .timestamp
            .map(|c| self.field(c))
            .filter(|f| !f.is_empty())
        {
            None => DateTime::<Utc>::UNIX_EPOCH,
            Some(f) => std::str::from_utf8(f)
                .ok()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| {
                    self.error(format!(
                        "column timestamp: expected an RFC 3339 timestamp, found \"{}\"",
                        String::from_utf8_lossy(f)
                    ))
                })?,
        };
        let has_outcome = self.outcome.is_some_and(|c| !self.field(c).is_empty());
        for (i, &(col, kind)) in self.columns.iter().enumerate() {
            let f = match col {
                Some(c) => self.field(c),
                None => &[][..],
            };
            let missing = f.is_empty()
                || f.eq_ignore_ascii_case(b"null")
                || (kind == FeatureType::Numeric && f.eq_ignore_ascii_case(b"nan"));
            let value = if missing {
                Observed::Missing
            } else {
                let text = std::str::from_utf8(f).map_err(|_| {
                    self.error(format!("column {}: not UTF-8", self.header_name(i)))
                })?;
                match kind {
                    FeatureType::Numeric => match text.parse::<f64>() {
                        Ok(x) if x.is_finite() => Observed::Num(x),
                        _ => {
                            return Err(self.error(format!(
                                "column {}: expected a number, found \"{text}\"",
                                self.header_name(i)
                            )))
                        }
                    },
                    FeatureType::Categorical => Observed::Cat(std::borrow::Cow::Borrowed(text)),
                }
            };
            out.push(value);
        }
        Ok(Some(RowMeta {
            timestamp,
            has_outcome,
        }))
    }

    fn header_name(&self, signal: usize) -> &str {
        &self.names[signal]
    }
}
