//! CSV files read by the `csv` crate: the header resolved against the plan, and the
//! exact row reader behind [`super::fastcsv`] (which hands it any file from the first
//! block it does not take). Number and timestamp parsing shared by both.

use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::batch::{id_hash, Column, ColumnBatch, MISSING, NO_ID};
use super::SourceError;
use crate::plan::{FeatureType, Plan};

/// Column positions resolved from the header.
struct Columns {
    features: Vec<(String, FeatureType, usize)>,
    prediction_id: Option<usize>,
    timestamp: Option<usize>,
    score: Option<usize>,
    label: Option<usize>,
    value: Option<usize>,
    outcome: Option<usize>,
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

/// A record boundary in a CSV file, past the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Byte offset in the file.
    pub byte: u64,
    /// 1-based physical line.
    pub line: u64,
    /// Data records before it.
    pub records: u64,
}

/// What a fast reader needs to know of a CSV file's columns.
#[derive(Debug, Clone)]
pub(crate) struct CsvLayout {
    /// Fields in every record (the header's count).
    pub width: usize,
    /// Per plan signal: its column and kind.
    pub signals: Vec<(Option<usize>, FeatureType)>,
    /// The timestamp column.
    pub timestamp: Option<usize>,
    /// The outcome column.
    pub outcome: Option<usize>,
    /// The prediction id column.
    pub prediction_id: Option<usize>,
}

/// An RFC 3339 timestamp, in UTC.
pub(crate) fn parse_timestamp(f: &[u8]) -> Option<DateTime<Utc>> {
    std::str::from_utf8(f)
        .ok()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Whether a trimmed CSV field is a missing value of a signal of `kind`.
pub(crate) fn is_missing(f: &[u8], kind: FeatureType) -> bool {
    f.is_empty()
        || f.eq_ignore_ascii_case(b"null")
        || (kind == FeatureType::Numeric && f.eq_ignore_ascii_case(b"nan"))
}

/// A CSV file read by the `csv` crate into column batches, one column per plan signal
/// taken by column index: the exact path behind [`crate::input::fastcsv`], which hands it any
/// file from the first block it does not take. The same checks and errors as the event
/// reader.
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
    prediction_id: Option<usize>,
    line: u64,
}

/// What a CSV row held besides its values.
#[derive(Debug, Clone, Copy)]
pub struct RowMeta {
    /// The prediction's timestamp (the Unix epoch without a timestamp column).
    pub timestamp: DateTime<Utc>,
    /// The row's prediction id, hashed ([`NO_ID`] for none).
    pub id: u64,
}

/// One parsed value of a CSV row, borrowing the record.
enum Cell<'a> {
    Num(f64),
    Cat(&'a str),
    Missing,
}

/// Parse a decimal number as `str::parse::<f64>` does, exactly: a plain decimal of at
/// most 15 digits (what CSV exports mostly hold) by `parse_f64_prefix`, anything else
/// by the standard parser.
pub fn parse_f64(f: &[u8]) -> Option<f64> {
    match parse_f64_prefix(f) {
        Some((x, len)) if len == f.len() => Some(x),
        _ => std::str::from_utf8(f).ok()?.parse::<f64>().ok(),
    }
}

/// The number of leading ASCII digits of `s`, up to 8, and their value.
#[inline(always)]
fn digits8(s: &[u8]) -> (usize, u64) {
    if s.len() >= 8 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&s[..8]);
        let x = u64::from_le_bytes(b);
        // A byte is a digit iff its high nibble is 3 and stays 3 after adding 6.
        const HI: u64 = 0xF0F0_F0F0_F0F0_F0F0;
        const THREES: u64 = 0x3030_3030_3030_3030;
        let bad = ((x & HI) ^ THREES) | ((x.wrapping_add(0x0606_0606_0606_0606) & HI) ^ THREES);
        let n = (bad.trailing_zeros() / 8) as usize;
        if n == 0 {
            return (0, 0);
        }
        // The n digits, as the low bytes, moved up so the rest reads as leading zeros.
        let mut v = x.wrapping_sub(THREES) << (8 * (8 - n));
        v = v.wrapping_mul(10).wrapping_add(v >> 8);
        const MASK: u64 = 0x0000_00FF_0000_00FF;
        const MUL1: u64 = 0x000F_4240_0000_0064;
        const MUL2: u64 = 0x0000_2710_0000_0001;
        v = ((v & MASK)
            .wrapping_mul(MUL1)
            .wrapping_add(((v >> 16) & MASK).wrapping_mul(MUL2)))
            >> 32;
        return (n, v);
    }
    let mut v = 0u64;
    let mut n = 0;
    while n < s.len() && n < 8 && s[n].is_ascii_digit() {
        v = v * 10 + u64::from(s[n] - b'0');
        n += 1;
    }
    (n, v)
}

/// A run of digits at the start of `s` (at most 15 in all): its length, value and count.
#[inline(always)]
fn digit_run(s: &[u8]) -> Option<(usize, u64)> {
    let (mut n, mut v) = digits8(s);
    if n == 8 {
        let (m, w) = digits8(&s[8..]);
        if m > 7 {
            return None;
        }
        v = v * [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000][m] + w;
        n += m;
    }
    Some((n, v))
}

/// A plain decimal `[+-]digits[.digits]` at the start of `s`, with at most 15 digits: its
/// value, exactly as `str::parse::<f64>` reads those bytes, and its length. `None` when
/// the number is longer or of another form (the caller falls back to [`parse_f64`]);
/// the caller checks what follows the number.
#[inline(always)]
pub(crate) fn parse_f64_prefix(s: &[u8]) -> Option<(f64, usize)> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (neg, sign) = match s.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let (int_len, int) = digit_run(&s[sign..])?;
    let mut len = sign + int_len;
    let (mut frac_len, mut frac) = (0, 0);
    if s.get(len) == Some(&b'.') {
        (frac_len, frac) = digit_run(&s[len + 1..])?;
        len += 1 + frac_len;
    }
    if int_len + frac_len == 0 || int_len + frac_len > 15 {
        return None;
    }
    // Below 10^15 < 2^53 and divided by an exact power of ten: one correctly rounded
    // IEEE division (Clinger's fast path).
    const TEN_TO: [u64; 16] = [
        1,
        10,
        100,
        1_000,
        10_000,
        100_000,
        1_000_000,
        10_000_000,
        100_000_000,
        1_000_000_000,
        10_000_000_000,
        100_000_000_000,
        1_000_000_000_000,
        10_000_000_000_000,
        100_000_000_000_000,
        1_000_000_000_000_000,
    ];
    let mantissa = int * TEN_TO[frac_len] + frac;
    // Through i64: one conversion instruction (u64 needs several without AVX-512).
    let x = mantissa as i64 as f64 / POW10[frac_len];
    Some((if neg { -x } else { x }, len))
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
            prediction_id: cols.prediction_id,
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

    /// Read the next record; `false` at the end of the file.
    fn advance(&mut self) -> Result<bool, SourceError> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => Ok(false),
            Ok(true) => {
                self.line += 1;
                Ok(true)
            }
            Err(e) => {
                self.line += 1;
                Err(self.error(format!("malformed CSV: {e}")))
            }
        }
    }

    /// The current record's timestamp and prediction id.
    fn meta(&self) -> Result<RowMeta, SourceError> {
        let timestamp = match self
            .timestamp
            .map(|c| self.field(c))
            .filter(|f| !f.is_empty())
        {
            None => DateTime::<Utc>::UNIX_EPOCH,
            Some(f) => parse_timestamp(f).ok_or_else(|| {
                self.error(format!(
                    "column timestamp: expected an RFC 3339 timestamp, found \"{}\"",
                    String::from_utf8_lossy(f)
                ))
            })?,
        };
        let id = match self.prediction_id.map(|c| self.field(c)) {
            Some(f) if !f.is_empty() => id_hash(f),
            _ => NO_ID,
        };
        Ok(RowMeta { timestamp, id })
    }

    /// Signal `i` of the current record.
    fn cell(&self, i: usize) -> Result<Cell<'_>, SourceError> {
        let (col, kind) = self.columns[i];
        let f = match col {
            Some(c) => self.field(c),
            None => &[][..],
        };
        if is_missing(f, kind) {
            return Ok(Cell::Missing);
        }
        match kind {
            FeatureType::Numeric => match parse_f64(f) {
                Some(x) if x.is_finite() => Ok(Cell::Num(x)),
                _ => Err(self.error(format!(
                    "column {}: expected a number, found \"{}\"",
                    self.header_name(i),
                    String::from_utf8_lossy(f)
                ))),
            },
            FeatureType::Categorical => std::str::from_utf8(f)
                .map(Cell::Cat)
                .map_err(|_| self.error(format!("column {}: not UTF-8", self.header_name(i)))),
        }
    }

    /// Append up to `max` rows to `batch` (made for this plan's signals); `false` once
    /// the file is exhausted. On a bad record the rows before it are in `batch` and the
    /// error names the record.
    pub fn next_batch(&mut self, batch: &mut ColumnBatch, max: usize) -> Result<bool, SourceError> {
        for _ in 0..max {
            if !self.advance()? {
                return Ok(false);
            }
            let meta = self.meta()?;
            let start = batch.len();
            for i in 0..self.columns.len() {
                let cell = match self.cell(i) {
                    Ok(c) => c,
                    Err(e) => {
                        batch.truncate(start);
                        return Err(e);
                    }
                };
                match (&mut batch.columns[i], cell) {
                    (Column::Num(v), Cell::Num(x)) => v.push(x),
                    (Column::Num(v), _) => v.push(f64::NAN),
                    (Column::Cat { ids, dict }, Cell::Cat(t)) => ids.push(dict.intern(t)),
                    (Column::Cat { ids, .. }, _) => ids.push(MISSING),
                }
            }
            if self.timestamp.is_some() {
                batch.timestamps.push(meta.timestamp);
            }
            if let Some(c) = self.outcome {
                let f = self.field(c);
                batch
                    .outcomes
                    .push(if is_missing(f, FeatureType::Categorical) {
                        MISSING
                    } else {
                        match std::str::from_utf8(f) {
                            Ok(t) => batch.outcome_names.intern(t),
                            Err(_) => {
                                batch.truncate(start);
                                return Err(self.error("column outcome: not UTF-8".into()));
                            }
                        }
                    });
            }
            if self.prediction_id.is_some() {
                batch.ids.push(meta.id);
            }
            batch.push_row();
        }
        Ok(true)
    }

    /// Where the data rows start: the position after the header row.
    pub fn data_start(&self) -> Resume {
        let p = self.reader.position();
        Resume {
            byte: p.byte(),
            line: p.line(),
            records: 0,
        }
    }

    /// Continue reading at `at` (a record boundary after the header, as counted by the
    /// block reader of [`crate::input::fastcsv`]): errors name the same lines and records as a
    /// read from the start would.
    pub fn resume(&mut self, at: Resume) -> Result<(), SourceError> {
        let mut pos = self.reader.position().clone();
        pos.set_byte(at.byte);
        pos.set_line(at.line);
        pos.set_record(pos.record() + at.records);
        if at.byte != self.reader.position().byte() {
            self.reader.seek(pos).map_err(|e| SourceError::Io {
                path: self.path.clone(),
                source: e.into(),
            })?;
        }
        self.line = 1 + at.records;
        Ok(())
    }

    /// The file's column count (every record must have it), and per plan signal its
    /// column; the timestamp and outcome columns.
    pub(crate) fn layout(&mut self) -> CsvLayout {
        CsvLayout {
            width: self.reader.byte_headers().map_or(0, |h| h.len()),
            signals: self.columns.clone(),
            timestamp: self.timestamp,
            outcome: self.outcome,
            prediction_id: self.prediction_id,
        }
    }

    fn header_name(&self, signal: usize) -> &str {
        &self.names[signal]
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_f64, parse_f64_prefix};

    /// The fast path must give exactly what the standard parser gives.
    #[test]
    fn parse_f64_is_the_standard_parser_bit_for_bit() {
        let mut fixed = vec![
            "0",
            "-0",
            "0.0",
            "-0.0",
            "5.",
            ".5",
            "+5",
            "1",
            "-1",
            "0.1",
            "0.2",
            "0.3",
            "123456789012345",
            "1234567890123456",
            "12345678901234567890",
            "0.000000000000001",
            "0.0000000000000001",
            "9007199254740993",
            "1.7976931348623157",
            "2.2250738585072014",
            "1e5",
            "1E-7",
            "-3.5e+2",
            "inf",
            "-inf",
            "NaN",
            "nan",
            "1.2.3",
            "-",
            ".",
            "",
            "1_0",
            "0x10",
            " 1",
            "1 ",
            "00012.500",
            "-000.000123",
            "999999999999999.9",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        // Decimals as CSV exporters write them: up to 17 digits, varied scales.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let digits = (state % 18) as usize + 1;
            let int = (state >> 8) % 10u64.pow(digits.min(19) as u32);
            let scale = ((state >> 40) % 17) as usize;
            let mut s = int.to_string();
            if scale > 0 {
                if s.len() <= scale {
                    s = "0".repeat(scale - s.len() + 1) + &s;
                }
                s.insert(s.len() - scale, '.');
            }
            if state & 1 == 1 {
                s.insert(0, '-');
            }
            fixed.push(s);
        }
        for s in &fixed {
            let fast = parse_f64(s.as_bytes()).map(f64::to_bits);
            let std = s.parse::<f64>().ok().map(f64::to_bits);
            assert_eq!(fast, std, "{s:?}");
            // The prefix parser, followed by what ends a CSV field, short and long.
            for tail in [",", "\n", "", ",1.5,abc,2\n3,4"] {
                let text = format!("{s}{tail}");
                match parse_f64_prefix(text.as_bytes()) {
                    Some((x, len)) if len == s.len() => {
                        assert_eq!(Some(x.to_bits()), std, "{text:?}")
                    }
                    // Stopped inside the field: the caller sees no field end there and
                    // falls back to `parse_f64`.
                    Some((_, len)) => {
                        assert!(!matches!(text.as_bytes()[len], b',' | b'\n'), "{text:?}")
                    }
                    None => {}
                }
            }
        }
        // It takes the common plain decimals itself.
        for s in [
            "0",
            "-0",
            "12.5",
            "-000.000123",
            "123456789012345",
            "99999999.9999999",
        ] {
            assert!(parse_f64_prefix(s.as_bytes()).is_some(), "{s}");
        }
        for s in ["1234567890123456", "1e5", ".", "-", "inf", ""] {
            let text = format!("{s},");
            if let Some((x, len)) = parse_f64_prefix(text.as_bytes()) {
                // Only a prefix that std reads the same way.
                assert_eq!(
                    Some(x.to_bits()),
                    text[..len].parse::<f64>().ok().map(f64::to_bits)
                );
                assert_ne!(len, s.len(), "{s}");
            }
        }
    }
}
