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

use crate::batch::{Column, ColumnBatch, MISSING};
use crate::plan::{FeatureType, Plan};
use crate::source::{
    is_missing, parse_f64, parse_f64_prefix, parse_timestamp, CsvLayout, CsvRows, SourceError,
};

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
        Targets { columns, absent }
    }
}

/// Parse a block of whole lines into `batch` (cleared); `false` if it holds anything
/// but plain records with valid values (then `batch` holds some prefix of the rows).
fn parse_block(block: &[u8], t: &Targets, batch: &mut ColumnBatch) -> bool {
    if memchr::memchr(b'"', block).is_some() {
        return false;
    }
    // `\r` only as part of `\r\n`; the csv crate ends a record at a lone `\r`.
    let mut crlf = false;
    for i in memchr::memchr_iter(b'\r', block) {
        if block.get(i + 1) != Some(&b'\n') {
            return false;
        }
        crlf = true;
    }
    let width = t.columns.len();
    let mut start = 0;
    while start < block.len() {
        let mut end = memchr::memchr(b'\n', &block[start..]).map_or(block.len(), |i| start + i);
        let next = end + 1;
        if crlf && end > start && block[end - 1] == b'\r' {
            end -= 1;
        }
        if end == start {
            return false;
        }
        // Fields of this line: `from..` up to the next comma before `end`.
        let mut col = 0;
        let mut from = start;
        loop {
            let Some(targets) = t.columns.get(col) else {
                return false;
            };
            // A lone numeric column: the number's own end is the field's end, so the
            // bytes are read once (the rest of the block backs 8-byte reads).
            let mut field_end = None;
            if let [Target::Num(i)] = targets[..] {
                if let Some((x, len)) = parse_f64_prefix(&block[from..]) {
                    let e = from + len;
                    if e == end || (e < end && block[e] == b',') {
                        if let Column::Num(v) = &mut batch.columns[i] {
                            v.push(x);
                        }
                        field_end = Some(e);
                    }
                }
            }
            let field_end = match field_end {
                Some(e) => e,
                None => {
                    // Fields are short: a plain scan beats a memchr call.
                    let e = block[from..end]
                        .iter()
                        .position(|&b| b == b',')
                        .map_or(end, |i| from + i);
                    if !targets.is_empty() && !take(block, from..e, targets, batch) {
                        return false;
                    }
                    e
                }
            };
            col += 1;
            if field_end == end {
                break;
            }
            from = field_end + 1;
        }
        if col != width {
            return false;
        }
        for &i in &t.absent {
            match &mut batch.columns[i] {
                Column::Num(v) => v.push(f64::NAN),
                Column::Cat { ids, .. } => ids.push(MISSING),
            }
        }
        batch.push_row();
        start = next;
    }
    true
}

/// One field into its targets; `false` if it is not a valid value for one of them.
fn take(
    block: &[u8],
    field: std::ops::Range<usize>,
    targets: &[Target],
    batch: &mut ColumnBatch,
) -> bool {
    let untrimmed = &block[field.clone()];
    let f = untrimmed.trim_ascii();
    // Where the trimmed field starts in the block.
    let at = field.start + (untrimmed.len() - untrimmed.trim_ascii_start().len());
    for &target in targets {
        match target {
            Target::Num(i) => {
                let Column::Num(v) = &mut batch.columns[i] else {
                    return false;
                };
                if is_missing(f, FeatureType::Numeric) {
                    v.push(f64::NAN);
                } else {
                    match parse_f64(f) {
                        Some(x) if x.is_finite() => v.push(x),
                        _ => return false,
                    }
                }
            }
            Target::Cat(i) => {
                let Column::Cat { ids, dict } = &mut batch.columns[i] else {
                    return false;
                };
                if is_missing(f, FeatureType::Categorical) {
                    ids.push(MISSING);
                } else {
                    match dict.intern_at(block, at, f.len()) {
                        Some(id) => ids.push(id),
                        None => return false,
                    }
                }
            }
            Target::Timestamp => {
                if f.is_empty() {
                    batch.timestamps.push(chrono::DateTime::UNIX_EPOCH);
                } else {
                    match parse_timestamp(f) {
                        Some(ts) => batch.timestamps.push(ts),
                        None => return false,
                    }
                }
            }
            Target::Outcome => batch.outcomes.push(!f.is_empty()),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::source::CsvRows;

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
                out.push(format!("{row:?} {} {}", b.timestamp(i), b.has_outcome(i)));
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
