//! The file driver: a plan, a reference and an events file through the same engine the
//! Kafka driver uses; one JSON window report per line on the output.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::alert::alerts_for;
use crate::engine::{fnv1a64, plan_fingerprint, Monitor, ReferenceBuilder, ReferenceProfile, Step};
use crate::plan::{Plan, Severity};
use crate::source::{self, RowBatch, SourceError};

/// Rows per batch handed from the CSV parser thread to the engine.
const BATCH_ROWS: usize = 4096;

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReplaySummary {
    /// Predictions read.
    pub predictions: u64,
    /// Outcomes read.
    pub outcomes: u64,
    /// Events of other systems, skipped.
    pub other_systems: u64,
    /// Window reports written.
    pub windows: u64,
    /// Alerts the plan would have raised.
    pub alerts: u64,
    /// Highest severity seen.
    pub max_severity: Option<Severity>,
    /// Predictions that arrived after their windows closed (time windows).
    pub late: u64,
}

/// A replay that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// An input file is unreadable or holds a bad record.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The reference holds no predictions for this system.
    #[error("reference {0} holds no predictions of system \"{1}\"")]
    EmptyReference(String, String),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Build a frozen reference from a file of predictions of the plan's system.
pub fn reference_from_file(plan: &Plan, path: &Path) -> Result<ReferenceProfile, ReplayError> {
    let mut builder = ReferenceBuilder::new(plan);
    if is_csv(path) {
        let mut rows = source::CsvRows::open(path, plan)?;
        loop {
            let mut row = Vec::new();
            match rows.next_row(&mut row)? {
                Some(meta) => builder.add_row(meta.timestamp, &row),
                None => break,
            }
        }
    } else {
        for event in source::open(path, plan)? {
            if let driftwatch_schema::Event::Prediction(p) = event? {
                if p.system_id == plan.system.id {
                    builder.add(&p);
                }
            }
        }
    }
    if builder.is_empty() {
        return Err(ReplayError::EmptyReference(
            path.display().to_string(),
            plan.system.id.clone(),
        ));
    }
    let fingerprint = reference_file_fingerprint(plan, path)?;
    Ok(builder.build(path.display().to_string(), fingerprint))
}

/// The fingerprint a reference built from `path` under `plan` will carry: the plan's
/// reference-relevant parts and the file's bytes. A persisted reference with the same
/// fingerprint can be reused instead of rebuilt.
pub fn reference_file_fingerprint(plan: &Plan, path: &Path) -> Result<String, ReplayError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|source| SourceError::Io {
        path: path.into(),
        source,
    })?;
    let mut h = fnv1a64(plan_fingerprint(plan).as_bytes(), 0);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|source| SourceError::Io {
            path: path.into(),
            source,
        })?;
        if n == 0 {
            break;
        }
        h = fnv1a64(&buf[..n], h);
    }
    Ok(format!("file:{h:016x}"))
}

fn is_csv(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Replay `events` against `plan`. The reference is `reference` if given, else the
/// plan's reference file, else the first N predictions of `events` (plan `first_events`).
pub fn replay(
    plan: Arc<Plan>,
    reference: Option<&Path>,
    events: &Path,
    out: &mut impl Write,
) -> Result<ReplaySummary, ReplayError> {
    let profile = match reference
        .map(Path::to_path_buf)
        .or_else(|| plan.reference_path())
    {
        Some(path) => Some(reference_from_file(&plan, &path)?),
        None => None,
    };
    let min = plan.alerts.min_severity;
    let mut monitor = Monitor::new(plan.clone(), profile);
    let mut summary = ReplaySummary::default();
    if is_csv(events) {
        // CSV rows go straight into engine rows (every row is the plan's system). One
        // thread parses batches of rows while this one runs the engine on the previous
        // batch; the batches come back to be reused.
        let mut rows = source::CsvRows::open(events, &plan)?;
        let width = monitor.signals().len();
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<RowBatch>(2);
        let (empty_tx, empty_rx) = std::sync::mpsc::channel::<RowBatch>();
        for _ in 0..3 {
            let _ = empty_tx.send(RowBatch::default());
        }
        let parsed = std::thread::scope(|scope| {
            let parser = scope.spawn(move || -> Result<(), SourceError> {
                while let Ok(mut batch) = empty_rx.recv() {
                    batch.clear();
                    let more = rows.next_batch(&mut batch, BATCH_ROWS);
                    let last = !matches!(more, Ok(true));
                    if full_tx.send(batch).is_err() {
                        return Ok(());
                    }
                    more?;
                    if last {
                        return Ok(());
                    }
                }
                Ok(())
            });
            let mut engine = Ok(());
            'batches: for batch in full_rx.iter() {
                let mut row = Vec::with_capacity(width);
                for i in 0..batch.len() {
                    let meta = batch.row(i, width, &mut row);
                    summary.predictions += 1;
                    let step = monitor.observe_row(meta.timestamp, &row);
                    if meta.has_outcome {
                        summary.outcomes += 1;
                        monitor.observe_outcome();
                    }
                    if let Err(e) = record(step, min, out, &mut summary) {
                        engine = Err(ReplayError::from(e));
                        break 'batches;
                    }
                }
                drop(row);
                let _ = empty_tx.send(batch);
            }
            // After an output error, closing both channels stops the parser wherever
            // it waits.
            drop(full_rx);
            drop(empty_tx);
            let parser = parser
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            engine.and(parser.map_err(ReplayError::from))
        });
        parsed?;
    } else {
        for event in source::open(events, &plan)? {
            let event = event?;
            if event.system_id() != plan.system.id {
                summary.other_systems += 1;
                continue;
            }
            match event.kind() {
                driftwatch_schema::EventKind::Prediction => summary.predictions += 1,
                driftwatch_schema::EventKind::Outcome => summary.outcomes += 1,
            }
            record(monitor.observe(&event), min, out, &mut summary)?;
        }
    }
    let rest = Step {
        reports: monitor.finish(),
        ..Step::default()
    };
    record(rest, min, out, &mut summary)?;
    out.flush()?;
    Ok(summary)
}

/// Write a step's window reports as NDJSON and count them.
fn record(
    step: Step,
    min: Severity,
    out: &mut impl Write,
    summary: &mut ReplaySummary,
) -> std::io::Result<()> {
    summary.late += u64::from(step.late);
    for report in step.reports {
        summary.windows += 1;
        summary.alerts += alerts_for(&report, min).len() as u64;
        summary.max_severity = summary.max_severity.max(Some(report.severity));
        serde_json::to_writer(&mut *out, &report)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
