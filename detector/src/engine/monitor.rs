//! The state of one AI system: collecting its reference, then windows; and the
//! [`Detector`] that routes events to their system.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use driftwatch_schema::{Event, Outcome};

use super::*;
use crate::input::batch::{id_hash, ColumnBatch, NO_ID};
use crate::perf::{PerformanceReport, Tracker};
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

/// One input to a system's [`Monitor`]: however a driver reads its events, they enter
/// the engine here.
pub enum Input<'a> {
    /// A wire event: a prediction (decoded on the way in) or an outcome.
    Event(&'a Event),
    /// One prediction already decoded into a row (see [`decode`]), with the outcome it
    /// carries, if any (counted in the windows the row falls in).
    Row {
        /// The prediction's timestamp.
        timestamp: DateTime<Utc>,
        /// One value per plan signal, in plan order.
        values: &'a [Observed<'a>],
        /// The outcome the row carries (a label, or a number as written).
        outcome: Option<&'a str>,
        /// The hash of its prediction id (`input::batch::id_hash`), or
        /// `input::batch::NO_ID`: what a later outcome event joins on.
        id: u64,
    },
    /// Rows `from..` of a column batch, each with the outcome it carries.
    Batch {
        /// The rows.
        batch: &'a ColumnBatch,
        /// The first row to take.
        from: usize,
    },
}

/// What one input produced.
#[derive(Debug, Default)]
pub struct Step {
    /// Windows evaluated, in order.
    pub reports: Vec<WindowReport>,
    /// The reference was frozen by this input (collected from the stream); persist it.
    pub reference_frozen: Option<Arc<ReferenceProfile>>,
    /// Predictions that arrived after all their windows had closed: not evaluated.
    pub late: usize,
    /// Predictions stamped further after the clock than the plan's `max_skew_s`: in no
    /// window.
    pub skewed_future: usize,
    /// Predictions stamped further before the latest timestamp seen than `max_skew_s`:
    /// in no window.
    pub skewed_past: usize,
    /// Performance reports (plans with `[performance]`): windows closed, judged as
    /// outcomes arrived, or final.
    pub performance: Vec<PerformanceReport>,
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
    /// Closed windows awaiting evaluation (see [`Monitor::set_evaluation`]).
    pub(crate) held: Vec<Closed>,
    together: usize,
    threads: usize,
    pub(crate) skew: SkewBound,
    /// Performance from outcomes, for a plan with `[performance]`.
    pub(crate) perf: Option<Tracker>,
}

/// Which way a timestamp is skewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skew {
    Future,
    Past,
}

/// The bound on timestamps (see `[window] max_skew_s`): the wall clock, read once per
/// 1,024 predictions, bounds the future; the latest accepted timestamp bounds the past.
#[derive(Debug, Clone)]
pub(crate) struct SkewBound {
    bound_ms: i64,
    pub(crate) latest_ms: i64,
    now_ms: i64,
    reads: u32,
}

impl SkewBound {
    /// Whether an outcome's timestamp is beyond the bound into the future: it is joined
    /// but does not move event time on.
    fn is_future(&mut self, ts_ms: i64) -> bool {
        if ts_ms > self.now_ms.saturating_add(self.bound_ms) {
            self.now_ms = Utc::now().timestamp_millis();
        }
        ts_ms > self.now_ms.saturating_add(self.bound_ms)
    }

    fn new(bound_ms: i64) -> Self {
        SkewBound {
            bound_ms,
            latest_ms: i64::MIN,
            now_ms: i64::MIN,
            reads: 0,
        }
    }

    /// Check one timestamp; an accepted one may become the latest.
    fn check(&mut self, ts_ms: i64) -> Option<Skew> {
        if ts_ms > self.latest_ms {
            if self.reads == 0 || ts_ms > self.now_ms.saturating_add(self.bound_ms) {
                self.now_ms = Utc::now().timestamp_millis();
            }
            self.reads = (self.reads + 1) % 1024;
            if ts_ms > self.now_ms.saturating_add(self.bound_ms) {
                return Some(Skew::Future);
            }
            self.latest_ms = ts_ms;
            None
        } else if ts_ms < self.latest_ms.saturating_sub(self.bound_ms) {
            Some(Skew::Past)
        } else {
            None
        }
    }
}

impl Step {
    fn skewed(&mut self, s: Skew) {
        match s {
            Skew::Future => self.skewed_future += 1,
            Skew::Past => self.skewed_past += 1,
        }
    }
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
        let mut perf = Tracker::for_plan(&plan, &signals);
        if let (Some(t), Phase::Monitoring { reference, .. }) = (&mut perf, &phase) {
            t.set_reference(reference);
        }
        Monitor {
            signals,
            phase,
            held: Vec::new(),
            together: 1,
            threads: 1,
            skew: SkewBound::new(plan.window.max_skew_ms()),
            perf,
            plan,
        }
    }

    /// The segment interner when drift is checked per group.
    fn segment_groups(&self) -> Option<&crate::perf::segments::Segments> {
        self.perf
            .as_ref()
            .filter(|t| t.spec.segment_drift)
            .map(|t| &t.segments)
    }

    /// The performance state, for a plan with `[performance]`.
    pub fn performance(&self) -> Option<&Tracker> {
        self.perf.as_ref()
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

    /// True while events are held that no report covers yet (an open window, a closed
    /// one awaiting evaluation, or a reference being collected): a Kafka driver must not
    /// commit past them.
    pub fn has_pending(&self) -> bool {
        if !self.held.is_empty() {
            return true;
        }
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
        if let Some(t) = &mut self.perf {
            t.set_reference(&profile);
        }
        self.phase = Phase::Monitoring {
            reference: profile,
            windows: Windows::new(self.plan.window.windowing()),
        };
    }

    /// Evaluate closed windows `together` at a time on up to `threads` threads: reports
    /// come out only once that many windows have closed (or at [`Monitor::flush`]), and
    /// each signal's reference is read into the cache once for all of them. The file
    /// driver sets 8; a stream keeps the default of 1, a report per closed window at
    /// once. Reports are the same either way.
    pub fn set_evaluation(&mut self, together: usize, threads: usize) {
        self.together = together.max(1);
        self.threads = threads.max(1);
    }

    /// Feed one input of this system: the engine's one entry point.
    pub fn observe(&mut self, input: Input<'_>) -> Step {
        let mut step = Step::default();
        match input {
            Input::Event(Event::Prediction(p)) => {
                let mut row = Vec::with_capacity(self.signals.len());
                decode(&self.signals, p, &mut row);
                let id = id_hash(p.prediction_id.as_bytes());
                self.row(p.timestamp, &row, (None, id, Some(&p.segment)), &mut step);
            }
            Input::Event(Event::Outcome(o)) => self.outcome_event(o, &mut step),
            Input::Row {
                timestamp,
                values,
                outcome,
                id,
            } => self.row(timestamp, values, (outcome, id, None), &mut step),
            Input::Batch { batch, from } => self.batch(batch, from, &mut step),
        }
        if self.held.len() >= self.together {
            step.reports.extend(self.flush());
        }
        step
    }

    /// Evaluate the closed windows held for evaluation together (see
    /// [`Monitor::set_evaluation`]).
    pub fn flush(&mut self) -> Vec<WindowReport> {
        let held = std::mem::take(&mut self.held);
        match &self.phase {
            Phase::Monitoring { reference, windows } => reports(
                &self.plan,
                &self.signals,
                reference,
                windows,
                held,
                (self.threads, self.segment_groups()),
            ),
            Phase::Collecting(..) => Vec::new(),
        }
    }

    /// An outcome event counts in every open window (it arrives on its own, after its
    /// prediction), and is joined to its prediction for performance.
    fn outcome_event(&mut self, o: &Outcome, step: &mut Step) {
        match &mut self.phase {
            Phase::Monitoring { windows, .. } => {
                for w in windows.open.values_mut() {
                    w.outcomes += 1;
                }
            }
            // The outcome of a reference prediction: the reference's performance.
            Phase::Collecting(builder, _) => {
                builder.add_outcome(o);
                return;
            }
        }
        if let Some(t) = &mut self.perf {
            let ts = o.timestamp.timestamp_millis();
            let ts = (!self.skew.is_future(ts)).then_some(ts);
            let actual = t.actual(&o.outcome);
            t.outcome(
                id_hash(o.prediction_id.as_bytes()),
                ts,
                actual,
                &mut step.performance,
            );
        }
    }

    /// End of input for performance: the windows still open to outcomes that changed
    /// since their last report, provisional.
    pub fn finish_performance(&mut self) -> Vec<PerformanceReport> {
        let mut out = Vec::new();
        if let Some(t) = &mut self.perf {
            t.finish(&mut out);
        }
        out
    }

    /// One decoded prediction; `outcome`: the outcome it carries, counted in the windows
    /// it falls in; `id`: its prediction id's hash; `tags`: its `segment` map (events).
    fn row(
        &mut self,
        timestamp: DateTime<Utc>,
        row: &[Observed<'_>],
        (outcome, id, tags): (
            Option<&str>,
            u64,
            Option<&std::collections::BTreeMap<String, String>>,
        ),
        step: &mut Step,
    ) {
        if let Some(s) = self.skew.check(timestamp.timestamp_millis()) {
            step.skewed(s);
            return;
        }
        if let Phase::Collecting(builder, how) = &mut self.phase {
            match *how {
                Collect::FirstN(n) => {
                    builder.add_row_tagged(timestamp, row, (outcome, Some(id), tags));
                    if builder.len() >= n {
                        self.freeze(step);
                    }
                    return;
                }
                Collect::Period(from, to) => {
                    if timestamp < from {
                        return;
                    }
                    if timestamp < to {
                        builder.add_row_tagged(timestamp, row, (outcome, Some(id), tags));
                        return;
                    }
                    // The first prediction past the period freezes it and is monitored.
                    self.freeze(step);
                }
            }
        }
        let Phase::Monitoring { windows, .. } = &mut self.phase else {
            return;
        };
        let cell = self
            .perf
            .as_mut()
            .map_or(0, |t| t.segments.cell_of(row, tags));
        let groups = match &self.perf {
            Some(t) if t.spec.segment_drift => t.segments.group_ids(cell),
            _ => Vec::new(),
        };
        let (closed, placed) =
            windows.add(&self.signals, timestamp, row, (outcome.is_some(), &groups));
        step.late += usize::from(placed.is_none());
        if let Some(t) = &mut self.perf {
            if let Some(ks) = placed {
                let ts = timestamp.timestamp_millis();
                let pos = match windows.spec.kind {
                    WindowKind::Count => windows.seq - 1,
                    WindowKind::Time => ts,
                };
                t.row(ks, (pos, ts, id, cell), row, outcome, &mut step.performance);
            }
            for (k, _) in &closed {
                t.closed(*k, &mut step.performance);
            }
        }
        self.held
            .extend(closed.into_iter().map(|(k, window)| Closed {
                k,
                window,
                complete: true,
            }));
    }

    /// Rows `from..` of a batch: row by row while the reference is collected or for time
    /// windows, then column by column (count windows), with the same windows and
    /// reports as row by row at a fraction of the cost.
    fn batch(&mut self, batch: &ColumnBatch, from: usize, step: &mut Step) {
        let mut i = from;
        let mut row = Vec::with_capacity(self.signals.len());
        while i < batch.len() && !self.takes_columns() {
            batch.row(i, &mut row);
            let id = batch.ids.get(i).copied().unwrap_or(NO_ID);
            self.row(batch.timestamp(i), &row, (batch.outcome(i), id, None), step);
            i += 1;
        }
        if i == batch.len() {
            return;
        }
        let Phase::Monitoring { windows, .. } = &mut self.phase else {
            return;
        };
        let held = &mut self.held;
        let perf = &mut self.perf;
        // Performance reads only its own columns of each row.
        let needed = perf.as_ref().map(Tracker::columns).unwrap_or_default();
        let mut closed_ks = Vec::new();
        // Runs of rows with sound timestamps go in column by column; a skewed row is
        // counted and left out.
        while i < batch.len() {
            let mut j = i;
            let mut skewed = None;
            while j < batch.len() {
                if let Some(s) = self.skew.check(batch.timestamp(j).timestamp_millis()) {
                    skewed = Some(s);
                    break;
                }
                j += 1;
            }
            if let Some(t) = perf.as_mut() {
                // A count window takes every prediction of its positions, so each row
                // is in all the windows of its position; the tracker sees the run's rows
                // before the windows they close.
                for (pos, r) in (windows.seq..).zip(i..j) {
                    row.clear();
                    row.resize(self.signals.len(), Observed::Missing);
                    for &c in &needed {
                        row[c] = batch.value(r, c);
                    }
                    let id = batch.ids.get(r).copied().unwrap_or(NO_ID);
                    let ts = batch.timestamp(r).timestamp_millis();
                    let cell = t.segments.cell_of(&row, None);
                    let ks = t.windows_of(pos);
                    t.row(
                        ks,
                        (pos, ts, id, cell),
                        &row,
                        batch.outcome(r),
                        &mut step.performance,
                    );
                }
            }
            windows.add_columns(&self.signals, batch, i..j, |k, window| {
                closed_ks.push(k);
                held.push(Closed {
                    k,
                    window,
                    complete: true,
                })
            });
            if let Some(t) = perf.as_mut() {
                for k in closed_ks.drain(..) {
                    t.closed(k, &mut step.performance);
                }
            }
            if let Some(s) = skewed {
                step.skewed(s);
            }
            i = j + 1;
        }
    }

    /// Whether the next rows of a batch can go in column by column: monitoring count
    /// windows, unless drift is checked per group of people (each row's groups).
    fn takes_columns(&self) -> bool {
        self.segment_groups().is_none()
            && matches!(&self.phase, Phase::Monitoring { windows, .. } if windows.spec.kind == WindowKind::Count)
    }

    /// The plan's signals, in row order.
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    /// End of input: evaluate the windows held, then those still open, marked
    /// incomplete.
    pub fn finish(&mut self) -> Vec<WindowReport> {
        let mut out = self.flush();
        let Phase::Monitoring { reference, windows } = &mut self.phase else {
            return out;
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
        out.extend(reports(
            &self.plan,
            &self.signals,
            reference,
            windows,
            closed,
            (
                self.threads,
                self.perf
                    .as_ref()
                    .filter(|t| t.spec.segment_drift)
                    .map(|t| &t.segments),
            ),
        ));
        out
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
            Some(m) => Ok(m.observe(Input::Event(event))),
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
