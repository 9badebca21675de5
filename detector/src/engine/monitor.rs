//! The state of one AI system: collecting its reference, then windows; and the
//! [`Detector`] that routes events to their system.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use driftwatch_schema::Event;

use super::*;
use crate::input::batch::ColumnBatch;
use crate::plan::{Plan, Signal, WindowKind};

/// How the reference is being collected from the stream.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Collect {
    FirstN(usize),
    Period(DateTime<Utc>, DateTime<Utc>),
}

pub(crate) enum Phase {
    Collecting(Box<ReferenceBuilder>, Collect),
    Monitoring {
        reference: Arc<ReferenceProfile>,
        windows: Windows,
    },
}

/// What one observed event produced.
#[derive(Debug, Default)]
pub struct Step {
    /// Windows that closed, in order.
    pub reports: Vec<WindowReport>,
    /// The reference was frozen by this event (collected from the stream); persist it.
    pub reference_frozen: Option<Arc<ReferenceProfile>>,
    /// The prediction arrived after all its windows had closed; it was not evaluated.
    pub late: bool,
}

impl Step {
    /// A step that only reports these windows.
    pub fn of(reports: Vec<WindowReport>) -> Self {
        Step {
            reports,
            ..Step::default()
        }
    }
}

/// The engine state of one AI system.
pub struct Monitor {
    pub(crate) plan: Arc<Plan>,
    pub(crate) signals: Vec<Signal>,
    pub(crate) phase: Phase,
}

impl Monitor {
    /// A monitor for `plan`. With `reference`, monitoring starts at once; without, the
    /// plan's `first_events` or `from`/`to` period collects it from the stream.
    pub fn new(plan: Arc<Plan>, reference: Option<ReferenceProfile>) -> Self {
        let signals = plan.signals();
        let phase = match reference {
            Some(r) => Phase::Monitoring {
                reference: Arc::new(r),
                windows: Windows::new(plan.window.windowing()),
            },
            None => {
                let how = match (plan.reference.from, plan.reference.to) {
                    (Some(f), Some(t)) => Collect::Period(f, t),
                    _ => Collect::FirstN(plan.reference.first_events.unwrap_or(1)),
                };
                Phase::Collecting(Box::new(ReferenceBuilder::new(&plan)), how)
            }
        };
        Monitor {
            plan,
            signals,
            phase,
        }
    }

    /// The plan this monitor runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The frozen reference, once there is one.
    pub fn reference(&self) -> Option<&ReferenceProfile> {
        match &self.phase {
            Phase::Monitoring { reference, .. } => Some(reference),
            Phase::Collecting(..) => None,
        }
    }

    /// True while events are held that no report covers yet (an open window or a
    /// reference being collected): a Kafka driver must not commit past them.
    pub fn has_pending(&self) -> bool {
        match &self.phase {
            Phase::Collecting(b, _) => !b.is_empty(),
            Phase::Monitoring { windows, .. } => windows
                .open
                .values()
                .any(|w| w.events > 0 || w.outcomes > 0),
        }
    }

    pub(crate) fn freeze(&mut self, step: &mut Step) {
        let Phase::Collecting(builder, how) = &mut self.phase else {
            return;
        };
        let taken = std::mem::replace(builder.as_mut(), ReferenceBuilder::new(&self.plan));
        let source = match how {
            Collect::FirstN(_) => format!("first {} events", taken.len()),
            Collect::Period(f, t) => {
                format!("events from {} to {}", f.to_rfc3339(), t.to_rfc3339())
            }
        };
        let profile = Arc::new(taken.build(source, plan_fingerprint(&self.plan)));
        step.reference_frozen = Some(profile.clone());
        self.phase = Phase::Monitoring {
            reference: profile,
            windows: Windows::new(self.plan.window.windowing()),
        };
    }

    /// Feed one event of this system.
    pub fn observe(&mut self, event: &Event) -> Step {
        match event {
            Event::Prediction(p) => {
                let mut row = Vec::with_capacity(self.signals.len());
                decode(&self.signals, p, &mut row);
                self.observe_row(p.timestamp, &row, false)
            }
            Event::Outcome(_) => {
                self.observe_outcome();
                Step::default()
            }
        }
    }

    /// Count an outcome event in every open window (an outcome that arrives on its own,
    /// after its prediction).
    pub fn observe_outcome(&mut self) {
        if let Phase::Monitoring { windows, .. } = &mut self.phase {
            for w in windows.open.values_mut() {
                w.outcomes += 1;
            }
        }
    }

    /// Feed one decoded prediction (see [`decode`]): the engine's core, for drivers that
    /// decode rows themselves (the CSV reader decodes columns straight into rows).
    /// `outcome`: the row carries its outcome (a CSV export's outcome column), counted
    /// in the windows the row falls in.
    pub fn observe_row(
        &mut self,
        timestamp: DateTime<Utc>,
        row: &[Observed<'_>],
        outcome: bool,
    ) -> Step {
        let mut step = Step::default();
        if let Phase::Collecting(builder, how) = &mut self.phase {
            match *how {
                Collect::FirstN(n) => {
                    builder.add_row(timestamp, row);
                    if builder.len() >= n {
                        self.freeze(&mut step);
                    }
                    return step;
                }
                Collect::Period(from, to) => {
                    if timestamp < from {
                        return step;
                    }
                    if timestamp < to {
                        builder.add_row(timestamp, row);
                        return step;
                    }
                    // The first prediction past the period freezes it and is monitored.
                    self.freeze(&mut step);
                }
            }
        }
        let Phase::Monitoring { reference, windows } = &mut self.phase else {
            return step;
        };
        let (closed, late) = windows.add(&self.signals, timestamp, row, outcome);
        step.late = late;
        let closed = closed
            .into_iter()
            .map(|(k, window)| Closed {
                k,
                window,
                complete: true,
            })
            .collect();
        step.reports = reports(&self.plan, &self.signals, reference, windows, closed, 1);
        step
    }

    /// Whether [`Monitor::observe_columns`] takes the next rows: monitoring count
    /// windows. Otherwise feed rows one at a time with [`Monitor::observe_row`].
    pub fn takes_columns(&self) -> bool {
        matches!(&self.phase, Phase::Monitoring { windows, .. } if windows.spec.kind == WindowKind::Count)
    }

    /// Feed rows `from..` of `batch` column by column, each row's outcome included (see
    /// [`ColumnBatch::has_outcome`]): the windows that closed, to evaluate with
    /// [`Monitor::evaluate`]. The same windows and reports as [`Monitor::observe_row`]
    /// row by row, at a fraction of the cost. Call only
    /// while [`Monitor::takes_columns`].
    pub fn close_columns(&mut self, batch: &ColumnBatch, from: usize) -> Vec<Closed> {
        let mut closed = Vec::new();
        let Phase::Monitoring { windows, .. } = &mut self.phase else {
            debug_assert!(false, "close_columns while collecting the reference");
            return closed;
        };
        windows.add_columns(&self.signals, batch, from..batch.len(), |k, window| {
            closed.push(Closed {
                k,
                window,
                complete: true,
            })
        });
        closed
    }

    /// Evaluate windows from [`Monitor::close_columns`], in order, on up to `threads`
    /// threads. Evaluating several windows in one call reads each signal's reference once
    /// for all of them.
    pub fn evaluate(&self, closed: Vec<Closed>, threads: usize) -> Vec<WindowReport> {
        match &self.phase {
            Phase::Monitoring { reference, windows } => reports(
                &self.plan,
                &self.signals,
                reference,
                windows,
                closed,
                threads,
            ),
            Phase::Collecting(..) => Vec::new(),
        }
    }

    /// The plan's signals, in row order.
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    /// End of input: evaluate the windows still open, marked incomplete.
    pub fn finish(&mut self) -> Vec<WindowReport> {
        let Phase::Monitoring { reference, windows } = &mut self.phase else {
            return Vec::new();
        };
        let open = std::mem::take(&mut windows.open);
        let closed = open
            .into_iter()
            .filter(|(_, w)| w.events > 0)
            .map(|(k, window)| Closed {
                k,
                window,
                complete: false,
            })
            .collect();
        reports(&self.plan, &self.signals, reference, windows, closed, 1)
    }
}

/// An event for a system no plan covers.
#[derive(Debug, thiserror::Error)]
#[error("no monitoring plan for system \"{0}\"")]
pub struct Unplanned(pub String);

/// All monitored systems, routed by `system_id`.
pub struct Detector {
    pub(crate) monitors: HashMap<String, Monitor>,
}

impl Detector {
    /// A detector over monitors keyed by their plan's system id.
    pub fn new(monitors: impl IntoIterator<Item = Monitor>) -> Self {
        Detector {
            monitors: monitors
                .into_iter()
                .map(|m| (m.plan.system.id.clone(), m))
                .collect(),
        }
    }

    /// Route one event to its system's monitor.
    pub fn observe(&mut self, event: &Event) -> Result<Step, Unplanned> {
        match self.monitors.get_mut(event.system_id()) {
            Some(m) => Ok(m.observe(event)),
            None => Err(Unplanned(event.system_id().to_owned())),
        }
    }

    /// The monitor of one system.
    pub fn monitor(&self, system_id: &str) -> Option<&Monitor> {
        self.monitors.get(system_id)
    }

    /// Every monitor, in system id order.
    pub fn monitors(&self) -> Vec<&Monitor> {
        let mut v: Vec<&Monitor> = self.monitors.values().collect();
        v.sort_by(|a, b| a.plan.system.id.cmp(&b.plan.system.id));
        v
    }

    /// End of input: open windows of every system, in system id order.
    pub fn finish(&mut self) -> Vec<WindowReport> {
        let mut ids: Vec<String> = self.monitors.keys().cloned().collect();
        ids.sort();
        ids.iter()
            .flat_map(|id| {
                self.monitors
                    .get_mut(id)
                    .map(Monitor::finish)
                    .unwrap_or_default()
            })
            .collect()
    }
}
