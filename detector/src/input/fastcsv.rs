//! The parallel CSV path of `driftwatch replay`: the file is cut into blocks of whole
//! lines, worker threads parse blocks into [`ColumnBatch`]es, and the caller receives
//! them in file order.
//!
//! The block parser takes the common case only: unquoted fields, `\n` or `\r\n` line
//! ends, every record as wide as the header, every value valid. A block holding anything
//! else (a quote, a bad number, an empty line, a short record) is not guessed at: from
//! that block's first record on, the file is read by the `csv` crate through
//! [`CsvRows`], exactly as without this path, so its rows, errors, line and record
//! numbers are the same. Blocks are cut at line ends without regard to quotes, but the
//! first block holding a quote ends the block path, and every line end before it is a
//! record end: a quoted field spanning lines is never split.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use crate::input::batch::{id_hash, key_at, Column, ColumnBatch, Dict, MISSING, NO_ID};
use crate::input::csv::{
    is_missing, parse_f64, parse_f64_prefix, parse_timestamp, CsvLayout, CsvRows,
};
use crate::input::SourceError;
use crate::plan::{FeatureType, Plan};

/// Bytes per block (whole lines; a longer line makes a longer block).
const BLOCK: usize = 1 << 20;
/// Rows per batch on the `csv` crate path.
const SLOW_BATCH: usize = 4096;

/// Read `path` (a CSV file of the plan's system) as column batches, in file order, on
/// up to `workers` parsing threads; `consume` runs on the calling thread. On a bad
/// record, the rows before it are consumed and the error names the record.
pub fn read_batches<E: From<SourceError>>(
    path: &Path,
    plan: &Plan,
    workers: usize,
    consume: impl FnMut(&ColumnBatch) -> Result<(), E>,
) -> Result<(), E> {
    read_blocks_of(path, plan, workers, BLOCK, consume)
}

/// [`read_batches`] with blocks of about `block` bytes (tests cut small files into many).
fn read_blocks_of<E: From<SourceError>>(
    path: &Path,
    plan: &Plan,
    workers: usize,
    block: usize,
    mut consume: impl FnMut(&ColumnBatch) -> Result<(), E>,
) -> Result<(), E> {
    let signals = plan.signals();
    let mut rows = CsvRows::open(path, plan)?;
    let start = rows.data_start();
    let layout = Targets::new(&rows.layout());
    let io = |source| SourceError::Io {
        path: path.into(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(start.byte)).map_err(io)?;
    let blocks = Mutex::new(Blocks {
        file,
        block: block.max(1),
        carry: Vec::new(),
        done: false,
        seq: 0,
    });
    let workers = workers.max(1);
    let stop = AtomicBool::new(false);
    let (free_tx, free_rx) = mpsc::channel::<Chunk>();
    for _ in 0..workers + 4 {
        let _ = free_tx.send(Chunk {
            batch: ColumnBatch::new(&signals),
            raw: Vec::new(),
            status: Status::Clean,
        });
    }
    let free_rx = Mutex::new(free_rx);
    let (done_tx, done_rx) = mpsc::channel::<(u64, Chunk)>();

    // Where the file stands after the blocks consumed so far.
    let mut at = start;
    let mut slow = false;
    let mut result: Result<(), E> = Ok(());
    std::thread::scope(|scope| {
        let mut started = 0;
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let (blocks, free_rx, stop, layout) = (&blocks, &free_rx, &stop, &layout);
            let worker = std::thread::Builder::new().name("csv-parse".into());
            let spawned = worker.spawn_scoped(scope, move || loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(mut chunk) = lock(free_rx).recv() else {
                    return;
                };
                let seq = match lock(blocks).next(&mut chunk.raw) {
                    Ok(Some(seq)) => seq,
                    Ok(None) => return,
                    Err((seq, e)) => {
                        chunk.status = Status::Failed(e);
                        let _ = done_tx.send((seq, chunk));
                        return;
                    }
                };
                chunk.batch.clear();
                chunk.status = if parse_block(&chunk.raw, layout, &mut chunk.batch) {
                    Status::Clean
                } else {
                    Status::Unusual
                };
                if done_tx.send((seq, chunk)).is_err() {
                    return;
                }
            });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::warn!("cannot start a CSV parsing thread: {e}"),
            }
        }
        drop(done_tx);
        // Without a parsing thread, the `csv` crate path reads the whole file here.
        slow = started == 0;
        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        'receive: for (seq, chunk) in done_rx.iter() {
            pending.insert(seq, chunk);
            while let Some(mut chunk) = pending.remove(&next) {
                match std::mem::replace(&mut chunk.status, Status::Clean) {
                    Status::Clean => {
                        if let Err(e) = consume(&chunk.batch) {
                            result = Err(e);
                            break 'receive;
                        }
                        // A clean block is whole lines, one record each.
                        let n = chunk.batch.len() as u64;
                        at.byte += chunk.raw.len() as u64;
                        at.line += n;
                        at.records += n;
                    }
                    Status::Unusual => {
                        slow = true;
                        break 'receive;
                    }
                    Status::Failed(e) => {
                        result = Err(io(e).into());
                        break 'receive;
                    }
                }
                next += 1;
                let _ = free_tx.send(chunk);
            }
        }
        stop.store(true, Ordering::Relaxed);
        drop(free_tx);
        drop(done_rx);
    });
    result?;
    if slow {
        rows.resume(at)?;
        let mut batch = ColumnBatch::new(&signals);
        loop {
            batch.clear();
            let more = rows.next_batch(&mut batch, SLOW_BATCH);
            if !batch.is_empty() {
                consume(&batch)?;
            }
            if !more? {
                break;
            }
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Chunk {
    batch: ColumnBatch,
    raw: Vec<u8>,
    status: Status,
}

enum Status {
    Clean,
    /// Something the block parser does not take: read from here with the `csv` crate.
    Unusual,
    Failed(std::io::Error),
}

/// The file cut into blocks of whole lines, numbered in order.
struct Blocks {
    file: File,
    /// Bytes to read for a block.
    block: usize,
    /// Bytes read past the last block's final line end.
    carry: Vec<u8>,
    done: bool,
    seq: u64,
}

impl Blocks {
    /// The next block into `out`: its number, `None` at the end of the file. After a
    /// read error (returned with the number it takes), no more blocks.
    fn next(&mut self, out: &mut Vec<u8>) -> Result<Option<u64>, (u64, std::io::Error)> {
        out.clear();
        // Room for a block past the carried bytes: read_to_end would otherwise grow a
        // new buffer by doubling, copying it each time.
        out.reserve(self.carry.len() + self.block + 1);
        out.append(&mut self.carry);
        while !self.done {
            // Read into spare capacity: no zero-filling of the buffer first.
            let n = match (&mut self.file).take(self.block as u64).read_to_end(out) {
                Ok(n) => n,
                Err(e) => {
                    self.done = true;
                    out.clear();
                    let seq = self.seq;
                    self.seq += 1;
                    return Err((seq, e));
                }
            };
            if n == 0 {
                self.done = true;
            } else if out.len() >= self.block {
                if let Some(nl) = memchr::memrchr(b'\n', out) {
                    self.carry.extend_from_slice(&out[nl + 1..]);
                    out.truncate(nl + 1);
                    break;
                }
            }
        }
        if out.is_empty() {
            return Ok(None);
        }
        let seq = self.seq;
        self.seq += 1;
        Ok(Some(seq))
    }
}

/// What the block parser does with one column of the file.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Signal `i`, numeric.
    Num(usize),
    /// Signal `i`, categorical.
    Cat(usize),
    Timestamp,
    Outcome,
    Id,
}

/// Per file column (as many as the header has), what to do with its field; the signals
/// without a column (always missing).
#[derive(Debug)]
struct Targets {
    columns: Vec<Vec<Target>>,
    absent: Vec<usize>,
}

impl Targets {
    fn new(layout: &CsvLayout) -> Self {
        let mut columns = vec![Vec::new(); layout.width];
        let mut absent = Vec::new();
        for (i, &(col, kind)) in layout.signals.iter().enumerate() {
            match col.filter(|&c| c < layout.width) {
                Some(c) => columns[c].push(match kind {
                    FeatureType::Numeric => Target::Num(i),
                    FeatureType::Categorical => Target::Cat(i),
                }),
                None => absent.push(i),
            }
        }
        if let Some(c) = layout.timestamp.filter(|&c| c < layout.width) {
            columns[c].push(Target::Timestamp);
        }
        if let Some(c) = layout.outcome.filter(|&c| c < layout.width) {
            columns[c].push(Target::Outcome);
        }
        if let Some(c) = layout.prediction_id.filter(|&c| c < layout.width) {
            columns[c].push(Target::Id);
        }
        Targets { columns, absent }
    }
}

/// Where a field's value goes: one sink per target of its file column.
enum Sink<'a> {
    Num(&'a mut Vec<f64>),
    Cat(&'a mut Vec<u32>, &'a mut Dict),
    Time(&'a mut Vec<DateTime<Utc>>),
    Outcome(&'a mut Vec<u32>, &'a mut Dict),
    Id(&'a mut Vec<u64>),
}

/// Parse a block of whole lines into `batch` (cleared); `false` if it holds anything
/// but plain records with valid values (then `batch` holds some prefix of the values).
fn parse_block(block: &[u8], t: &Targets, batch: &mut ColumnBatch) -> bool {
    if memchr::memchr(b'"', block).is_some() {
        return false;
    }
    // `\r` only as part of `\r\n` (so a `\r` ends a line); the csv crate ends a record
    // at a lone `\r`.
    if memchr::memchr_iter(b'\r', block).any(|i| block.get(i + 1) != Some(&b'\n')) {
        return false;
    }
    let width = t.columns.len();
    let rows = {
        let mut slots: Vec<Option<&mut Column>> = batch.columns.iter_mut().map(Some).collect();
        let mut times = Some(&mut batch.timestamps);
        let mut outcomes = Some((&mut batch.outcomes, &mut batch.outcome_names));
        let mut ids = Some(&mut batch.ids);
        let mut sinks: Vec<Vec<Sink>> = Vec::with_capacity(width);
        for targets in &t.columns {
            let mut column = Vec::with_capacity(targets.len());
            for &target in targets {
                column.push(match target {
                    Target::Num(i) | Target::Cat(i) => match slots[i].take() {
                        Some(Column::Num(v)) => Sink::Num(v),
                        Some(Column::Cat { ids, dict }) => Sink::Cat(ids, dict),
                        None => return false,
                    },
                    Target::Timestamp => match times.take() {
                        Some(v) => Sink::Time(v),
                        None => return false,
                    },
                    Target::Outcome => match outcomes.take() {
                        Some((v, names)) => Sink::Outcome(v, names),
                        None => return false,
                    },
                    Target::Id => match ids.take() {
                        Some(v) => Sink::Id(v),
                        None => return false,
                    },
                });
            }
            sinks.push(column);
        }
        match parse_records(block, &mut sinks) {
            Some(rows) => rows,
            None => return false,
        }
    };
    for &i in &t.absent {
        match &mut batch.columns[i] {
            Column::Num(v) => v.resize(rows, f64::NAN),
            Column::Cat { ids, .. } => ids.resize(rows, MISSING),
        }
    }
    batch.add_rows(rows);
    true
}

/// The records of a block into the sinks of their columns: how many, or `None` at
/// anything [`parse_block`] does not take.
///
/// The separators (commas and line ends) of each 64 bytes are found first, as one
/// 64-bit mask, and the fields between them parsed in turn: no field's parse waits for
/// the one before it to find its end, so the processor works on several at once.
fn parse_records(block: &[u8], sinks: &mut [Vec<Sink>]) -> Option<usize> {
    let width = sinks.len();
    let n = block.len();
    let mut rows = 0;
    let mut col = 0;
    // Where the current field starts.
    let mut from = 0;
    let mut chunk = 0;
    while chunk < n {
        let mut seps = separators(block, chunk);
        while seps != 0 {
            let p = chunk + seps.trailing_zeros() as usize;
            seps &= seps - 1;
            let line_end = block[p] == b'\n';
            if line_end != (col + 1 == width) {
                return None; // a record too short or too long
            }
            let mut e = p;
            if line_end && e > from && block[e - 1] == b'\r' {
                e -= 1; // every `\r` here comes before `\n`
            }
            if line_end && col == 0 && e == from {
                return None; // an empty line: the csv crate skips it
            }
            field(block, from, e, &mut sinks[col])?;
            if line_end {
                rows += 1;
                col = 0;
            } else {
                col += 1;
            }
            from = p + 1;
        }
        chunk += 64;
    }
    // A last line without a line end.
    if col > 0 || from < n {
        if col + 1 != width {
            return None;
        }
        field(block, from, n, &mut sinks[col])?;
        rows += 1;
    }
    Some(rows)
}

/// The field `from..e` into the sinks of its column.
#[inline(always)]
fn field(block: &[u8], from: usize, e: usize, column: &mut [Sink]) -> Option<()> {
    let taken = match column {
        [Sink::Num(v)] => match parse_f64_prefix(&block[from..]) {
            Some((x, len)) if from + len == e => {
                v.push(x);
                true
            }
            _ => false,
        },
        [Sink::Cat(ids, dict)] => {
            match short_key(block, from, e).and_then(|k| dict.find_short(k)) {
                Some(id) => {
                    ids.push(id);
                    true
                }
                None => false,
            }
        }
        _ => false,
    };
    (taken || take(block, from..e, column)).then_some(())
}

/// The commas and line ends among the 64 bytes of `block` from `at` (fewer at its end):
/// bit i set when byte `at + i` is one.
#[inline(always)]
fn separators(block: &[u8], at: usize) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // One bit per byte of `x` equal to `,` or `\n`: the high bits, exact (no carries
    // between bytes), then gathered into the low 8 bits by one multiplication.
    let word = |x: u64| {
        let comma = x ^ (0x0101_0101_0101_0101 * u64::from(b','));
        let newline = x ^ (0x0101_0101_0101_0101 * u64::from(b'\n'));
        let hit =
            (!(((comma & LOW7) + LOW7) | comma) | !(((newline & LOW7) + LOW7) | newline)) & HIGHS;
        (hit >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
    };
    let mut tail = [0u8; 64];
    let bytes = match block.get(at..at + 64) {
        Some(b) => b,
        None => {
            tail[..block.len() - at].copy_from_slice(&block[at..]);
            &tail
        }
    };
    let mut mask = 0;
    for (i, w) in bytes.chunks_exact(8).enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        mask |= word(u64::from_le_bytes(b)) << (8 * i);
    }
    mask
}

/// The [`Dict`] key of the field `from..e` when it is a plain category of 1 to 8 bytes
/// with 8 bytes of the block from `from` (one load); `None` otherwise (empty, longer,
/// or padded with white space, which the slow path trims).
#[inline(always)]
fn short_key(block: &[u8], from: usize, e: usize) -> Option<u128> {
    let len = e - from;
    if len == 0 || block[from].is_ascii_whitespace() || block[e - 1].is_ascii_whitespace() {
        return None;
    }
    key_at(block, from, len)
}

/// One field into the sinks of its column; `false` if it is not a valid value for one
/// of them.
fn take(block: &[u8], field: std::ops::Range<usize>, sinks: &mut [Sink]) -> bool {
    let untrimmed = &block[field.clone()];
    let f = untrimmed.trim_ascii();
    // Where the trimmed field starts in the block.
    let at = field.start + (untrimmed.len() - untrimmed.trim_ascii_start().len());
    for sink in sinks {
        match sink {
            Sink::Num(v) => {
                if is_missing(f, FeatureType::Numeric) {
                    v.push(f64::NAN);
                } else {
                    match parse_f64(f) {
                        Some(x) if x.is_finite() => v.push(x),
                        _ => return false,
                    }
                }
            }
            Sink::Cat(ids, dict) => {
                if is_missing(f, FeatureType::Categorical) {
                    ids.push(MISSING);
                } else {
                    match dict.intern_at(block, at, f.len()) {
                        Some(id) => ids.push(id),
                        None => return false,
                    }
                }
            }
            Sink::Time(v) => {
                if f.is_empty() {
                    v.push(DateTime::UNIX_EPOCH);
                } else {
                    match parse_timestamp(f) {
                        Some(ts) => v.push(ts),
                        None => return false,
                    }
                }
            }
            Sink::Outcome(v, names) => {
                if is_missing(f, FeatureType::Categorical) {
                    v.push(MISSING);
                } else {
                    match names.intern_at(block, at, f.len()) {
                        Some(id) => v.push(id),
                        None => return false,
                    }
                }
            }
            Sink::Id(v) => v.push(if f.is_empty() { NO_ID } else { id_hash(f) }),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::input::csv::CsvRows;

    const PLAN: &str = r#"
[system]
id = "s"
[reference]
first_events = 1
[window]
size = 3
[features.x]
type = "numeric"
[features.c]
type = "categorical"
"#;

    fn plan() -> Plan {
        Plan::from_toml(PLAN, "test", PathBuf::new()).expect("plan")
    }

    /// Every row as text (values, timestamp, outcome flag), then the error if any.
    fn rows(batches: &[ColumnBatch]) -> Vec<String> {
        let mut out = Vec::new();
        for b in batches {
            let mut row = Vec::new();
            for i in 0..b.len() {
                b.row(i, &mut row);
                out.push(format!(
                    "{row:?} {} {:?} {:?}",
                    b.timestamp(i),
                    b.outcome(i),
                    b.id(i)
                ));
            }
        }
        out
    }

    fn slow(path: &Path, plan: &Plan) -> (Vec<String>, Option<String>) {
        let mut rows_in = CsvRows::open(path, plan).expect("open");
        let mut batches = Vec::new();
        let error = loop {
            let mut b = ColumnBatch::new(&plan.signals());
            let more = rows_in.next_batch(&mut b, 2);
            batches.push(b);
            match more {
                Ok(true) => {}
                Ok(false) => break None,
                Err(e) => break Some(e.to_string()),
            }
        };
        (rows(&batches), error)
    }

    /// Rows, error, and how many batches: one per block on the block path.
    fn fast(path: &Path, plan: &Plan, block: usize) -> (Vec<String>, Option<String>, usize) {
        let mut batches = Vec::new();
        let result = read_blocks_of(path, plan, 2, block, |b: &ColumnBatch| {
            batches.push(b.clone());
            Ok::<_, SourceError>(())
        });
        (
            rows(&batches),
            result.err().map(|e| e.to_string()),
            batches.len(),
        )
    }

    #[test]
    fn any_input_reads_as_the_csv_crate_reads_it() {
        let header = "timestamp,x,skip,c,outcome\n";
        let plain = "2024-01-01T00:00:00Z,1.5,zz,a,\n\
                     2024-01-01T00:00:01Z,-2,zz,b,1\n\
                     2024-01-01T00:00:02Z,,zz,null,\n\
                     2024-01-01T00:00:03Z,NaN,zz,, yes \n\
                     2024-01-01T00:00:04Z, 3.25 ,zz, a ,\n\
                     ,1e3,zz,ünï,\n\
                     2024-01-01T00:00:06Z,0.1234567890123456789,zz,a-long-category-name,0\n";
        let cases: Vec<(&str, String)> = vec![
            ("plain", plain.to_owned()),
            ("no final line end", plain.trim_end().to_owned()),
            ("crlf", plain.replace('\n', "\r\n")),
            (
                "quoted later",
                format!("{plain}2024-01-01T00:00:07Z,4,\"a,\nb\",\"q\"\"x\",\n{plain}"),
            ),
            ("empty line", format!("{plain}\n{plain}")),
            (
                "lone cr",
                format!("{plain}2024-01-01T00:00:07Z,4,zz,a\r,\n{plain}"),
            ),
            (
                "bad number later",
                format!("{plain}{plain}2024-01-01T00:00:09Z,4x,zz,a,\n{plain}"),
            ),
            (
                "infinite",
                format!("{plain}2024-01-01T00:00:09Z,1e400,zz,a,\n"),
            ),
            (
                "short record",
                format!("{plain}2024-01-01T00:00:09Z,4,zz\n{plain}"),
            ),
            (
                "long record",
                format!("{plain}2024-01-01T00:00:09Z,4,zz,a,,extra\n"),
            ),
            ("bad timestamp", format!("{plain}yesterday,4,zz,a,\n")),
            (
                "empty last field, no final line end",
                format!("{plain}2024-01-01T00:00:09Z,4,zz,a,"),
            ),
            (
                "fields across many words",
                format!(
                    "{plain}2024-01-01T00:00:09Z,4,{},{},\n{plain}",
                    "z".repeat(150),
                    "c".repeat(70)
                ),
            ),
            (
                "not utf-8",
                format!("{plain}2024-01-01T00:00:09Z,4,zz,\u{1}X,\n").replace('\u{1}', "\u{fffd}"),
            ),
            ("header only", String::new()),
        ];
        let dir = std::env::temp_dir().join(format!("dw-fastcsv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let plan = plan();
        for (name, body) in cases {
            let path = dir.join(format!("{}.csv", name.replace(' ', "-")));
            let mut bytes = format!("{header}{body}").into_bytes();
            if name == "not utf-8" {
                // A category byte that is not UTF-8.
                let at = bytes
                    .windows(3)
                    .rposition(|w| w == "\u{fffd}".as_bytes())
                    .expect("marker");
                bytes.splice(at..at + 3, [0xff]);
            }
            std::fs::write(&path, &bytes).expect("write");
            let want = slow(&path, &plan);
            for block in [1, 7, 64, 1 << 20] {
                let (rows, error, batches) = fast(&path, &plan, block);
                assert_eq!((rows, error), want, "{name}, blocks of {block}");
                // Plain files take the block path: a batch per line with tiny blocks.
                if block == 1 && ["plain", "no final line end", "crlf"].contains(&name) {
                    assert_eq!(batches, 7, "{name}");
                }
            }
            if name == "plain" {
                assert_eq!((want.0.len(), &want.1), (7, &None));
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn many_blocks_arrive_in_file_order() {
        let plan = plan();
        let path =
            std::env::temp_dir().join(format!("dw-fastcsv-order-{}.csv", std::process::id()));
        let mut text = String::from("x,c\n");
        for i in 0..20_000 {
            text.push_str(&format!("{i},k{}\n", i % 7));
        }
        std::fs::write(&path, text).expect("write");
        let want = slow(&path, &plan);
        assert_eq!(want.0.len(), 20_000);
        for workers in [1, 2, 4] {
            let mut batches = Vec::new();
            read_blocks_of(&path, &plan, workers, 4096, |b: &ColumnBatch| {
                batches.push(b.clone());
                Ok::<_, SourceError>(())
            })
            .expect("read");
            assert!(batches.len() > 10, "{} blocks", batches.len());
            assert_eq!((rows(&batches), None), want, "{workers} workers");
        }
        std::fs::remove_file(&path).ok();
    }
}
