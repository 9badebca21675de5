//! The file driver: a plan, a reference and an events file through the same engine, the
//! same reference code and the same duplicate rule as the Kafka driver; one JSON window
//! report per line on the output.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use driftwatch_schema::{Event, EventKind};

use super::dedup::Dedup;
use crate::alert::alerts_for;
use crate::engine::{Input, Monitor, Step};
use crate::input::batch::NO_ID;
use crate::input::{self, fastcsv, Format, SourceError};
use crate::plan::{Plan, Severity};
use crate::reference_store::{self, parsers, MemoryStore, StoreError};

/// Closed windows evaluated in one go: each signal's reference is then read into the
/// cache once for all of them (a 50,000-value reference is 400 KB).
const EVALUATE_TOGETHER: usize = 8;

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReplaySummary {
    /// Predictions read (repeats included).
    pub predictions: u64,
    /// Outcomes read.
    pub outcomes: u64,
    /// Predictions dropped as repeats of an earlier prediction id.
    pub duplicates: u64,
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
    /// Predictions stamped too far in the future (the plan's `max_skew_s`): in no window.
    pub skewed_future: u64,
    /// Predictions stamped too far before the latest timestamp: in no window.
    pub skewed_past: u64,
    /// Performance reports written (plans with `[performance]`).
    pub performance_reports: u64,
    /// What became of the outcomes (plans with `[performance]`).
    pub join: Option<crate::perf::JoinCounts>,
}

/// A replay that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// An input file is unreadable or holds a bad record.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The reference could not be built.
    #[error(transparent)]
    Reference(StoreError),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl From<StoreError> for ReplayError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Source(s) => ReplayError::Source(s),
            other => ReplayError::Reference(other),
        }
    }
}

/// Replay `events` against `plan`. The reference is `reference` if given, else the
/// plan's reference file, else the first N predictions of `events` (plan `first_events`).
pub fn replay(
    plan: Arc<Plan>,
    reference: Option<&Path>,
    events: &Path,
    out: &mut impl Write,
) -> Result<ReplaySummary, ReplayError> {
    let profile = reference_store::resolve(&plan, reference, &MemoryStore::default())?;
    let min = (plan.alerts.min_severity, plan.performance_min_severity());
    let mut monitor = Monitor::new(plan.clone(), profile);
    let threads = parsers();
    monitor.set_evaluation(EVALUATE_TOGETHER, threads);
    let mut dedup = Dedup::for_plan(&plan);
    let mut summary = ReplaySummary::default();
    let read = match input::format_of(events)? {
        // CSV columns go straight into the engine (every row is the plan's system),
        // parsed on other threads.
        Format::Csv => fastcsv::read_batches(events, &plan, threads, |batch| {
            summary.predictions += batch.len() as u64;
            summary.outcomes += (0..batch.len()).filter(|&r| batch.has_outcome(r)).count() as u64;
            // Usually no row repeats: a mask is made only once one does.
            let mut keep: Vec<bool> = Vec::new();
            if !batch.ids.is_empty() {
                for (r, &h) in batch.ids.iter().enumerate() {
                    let first = h == NO_ID || dedup.first_time_hash(h);
                    if !first && keep.is_empty() {
                        keep = vec![true; batch.len()];
                    }
                    if !keep.is_empty() {
                        keep[r] = first;
                    }
                }
            }
            let step = if keep.is_empty() {
                monitor.observe(Input::Batch { batch, from: 0 })
            } else {
                // Rare: a retried prediction in the export. Only its first copy counts.
                let mut kept = batch.clone();
                kept.retain_rows(&keep);
                summary.duplicates += (batch.len() - kept.len()) as u64;
                monitor.observe(Input::Batch {
                    batch: &kept,
                    from: 0,
                })
            };
            record(step, min, out, &mut summary)?;
            Ok::<_, ReplayError>(())
        }),
        Format::Ndjson => (|| {
            for event in input::open_ndjson(events)? {
                let event = event?;
                if event.system_id() != plan.system.id {
                    summary.other_systems += 1;
                    continue;
                }
                match &event {
                    Event::Prediction(p) => {
                        summary.predictions += 1;
                        if !dedup.first_time(&p.prediction_id) {
                            summary.duplicates += 1;
                            continue;
                        }
                    }
                    Event::Outcome(_) => summary.outcomes += 1,
                }
                debug_assert!(matches!(
                    event.kind(),
                    EventKind::Prediction | EventKind::Outcome
                ));
                record(
                    monitor.observe(Input::Event(&event)),
                    min,
                    out,
                    &mut summary,
                )?;
            }
            Ok::<_, ReplayError>(())
        })(),
    };
    if let Err(e) = read {
        // The windows closed before a bad record are reported before the error.
        record(Step::of(monitor.flush()), min, out, &mut summary)?;
        out.flush()?;
        return Err(e);
    }
    record(Step::of(monitor.finish()), min, out, &mut summary)?;
    let performance = monitor.finish_performance();
    record(
        Step {
            performance,
            ..Step::default()
        },
        min,
        out,
        &mut summary,
    )?;
    summary.join = monitor.performance().map(|t| t.counts());
    out.flush()?;
    Ok(summary)
}

/// Write a step's window reports as NDJSON and count them.
fn record(
    step: Step,
    (min, perf_min): (Severity, Severity),
    out: &mut impl Write,
    summary: &mut ReplaySummary,
) -> std::io::Result<()> {
    summary.late += step.late as u64;
    summary.skewed_future += step.skewed_future as u64;
    summary.skewed_past += step.skewed_past as u64;
    for report in step.reports {
        summary.windows += 1;
        summary.alerts += alerts_for(&report, min).len() as u64;
        summary.max_severity = summary.max_severity.max(Some(report.severity));
        serde_json::to_writer(&mut *out, &report)?;
        out.write_all(b"\n")?;
    }
    for report in step.performance {
        summary.performance_reports += 1;
        summary.alerts += crate::alert::performance_alerts(&report, perf_min).len() as u64;
        summary.max_severity = summary.max_severity.max(Some(report.severity));
        serde_json::to_writer(&mut *out, &report)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
