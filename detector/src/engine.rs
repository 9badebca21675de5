//! The drift engine: pure code, no I/O. Events in, window reports out.
//!
//! Per AI system a [`Monitor`] goes through two phases:
//!
//! 1. **Reference.** A [`ReferenceProfile`] is given (built from the plan's reference file
//!    by [`ReferenceBuilder`]), or collected from the first N predictions of the stream.
//!    It is frozen once: sorted samples and quantile bins per numeric signal, category
//!    counts per categorical one, and a version hash every result quotes.
//! 2. **Windows.** Predictions fill a count-based tumbling window; when it holds
//!    `window.size` predictions every check of the plan runs against the reference and a
//!    [`WindowReport`] comes out.
//!
//! Identical input gives identical reports: nothing here reads a clock or a random source.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use driftwatch_schema::{Event, FeatureValue, Prediction};
use serde::{Deserialize, Serialize};

use crate::plan::{Check, FeatureType, Method, Plan, Severity, Signal, Source};
use crate::stats;

/// One value of a signal taken from a prediction.
#[derive(Debug, Clone, PartialEq)]
enum Observed<'a> {
    Num(f64),
    Cat(std::borrow::Cow<'a, str>),
    Missing,
    TypeError,
}

fn extract<'a>(signal: &Signal, p: &'a Prediction) -> Observed<'a> {
    use std::borrow::Cow;
    let raw: Option<Observed<'a>> = match &signal.source {
        Source::Feature(name) => p.features.get(name).map(|v| match v {
            FeatureValue::Null => Observed::Missing,
            FeatureValue::Number(x) => Observed::Num(*x),
            FeatureValue::Text(s) => Observed::Cat(Cow::Borrowed(s.as_str())),
            FeatureValue::Bool(b) => {
                Observed::Cat(Cow::Borrowed(if *b { "true" } else { "false" }))
            }
        }),
        Source::Score => p.prediction.score.map(Observed::Num),
        Source::Value => p.prediction.value.map(Observed::Num),
        Source::Label => p
            .prediction
            .label
            .as_deref()
            .map(|l| Observed::Cat(Cow::Borrowed(l))),
    };
    match (signal.kind, raw) {
        (_, None) | (_, Some(Observed::Missing)) => Observed::Missing,
        (FeatureType::Numeric, Some(Observed::Num(x))) => Observed::Num(x),
        (FeatureType::Categorical, Some(Observed::Cat(c))) => Observed::Cat(c),
        // Integer codes are common categorical values; anything else fractional is a type error.
        (FeatureType::Categorical, Some(Observed::Num(x)))
            if x.fract() == 0.0 && x.abs() < 1e15 =>
        {
            Observed::Cat(Cow::Owned(format!("{}", x as i64)))
        }
        _ => Observed::TypeError,
    }
}

/// The frozen reference of one signal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SignalReference {
    /// Numeric: every value sorted (exact KS), interior PSI bin edges, bin proportions.
    Numeric {
        /// Sorted reference values.
        sorted: Vec<f64>,
        /// Interior quantile edges.
        edges: Vec<f64>,
        /// Reference proportion per bin.
        proportions: Vec<f64>,
    },
    /// Categorical: count per category.
    Categorical {
        /// Count per category.
        counts: BTreeMap<String, u64>,
    },
}

impl SignalReference {
    fn samples(&self) -> usize {
        match self {
            SignalReference::Numeric { sorted, .. } => sorted.len(),
            SignalReference::Categorical { counts } => counts.values().sum::<u64>() as usize,
        }
    }
}

/// The frozen reference of one system: computed once, versioned, quoted by every result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReferenceProfile {
    /// The system.
    pub system_id: String,
    /// Content hash of the profile (`fnv1a64:...`).
    pub version: String,
    /// Predictions it was built from.
    pub events: usize,
    /// Where it came from (a file path or `first N events`).
    pub source: String,
    /// Per signal, by name.
    pub signals: BTreeMap<String, SignalReference>,
}

/// Collects reference predictions and freezes them into a [`ReferenceProfile`].
pub struct ReferenceBuilder {
    system_id: String,
    signals: Vec<Signal>,
    bins: usize,
    numeric: Vec<Vec<f64>>,
    categorical: Vec<BTreeMap<String, u64>>,
    events: usize,
}

impl ReferenceBuilder {
    /// An empty builder for a plan.
    pub fn new(plan: &Plan) -> Self {
        let signals = plan.signals();
        let n = signals.len();
        ReferenceBuilder {
            system_id: plan.system.id.clone(),
            signals,
            bins: plan.reference.bins,
            numeric: vec![Vec::new(); n],
            categorical: vec![BTreeMap::new(); n],
            events: 0,
        }
    }

    /// Add one reference prediction.
    pub fn add(&mut self, p: &Prediction) {
        self.events += 1;
        for (i, s) in self.signals.iter().enumerate() {
            match extract(s, p) {
                Observed::Num(x) => self.numeric[i].push(x),
                Observed::Cat(c) => *self.categorical[i].entry(c.into_owned()).or_insert(0) += 1,
                Observed::Missing | Observed::TypeError => {}
            }
        }
    }

    /// Predictions added so far.
    pub fn len(&self) -> usize {
        self.events
    }

    /// True before the first prediction.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Freeze: sort, bin, hash.
    pub fn build(mut self, source: String) -> ReferenceProfile {
        let mut signals = BTreeMap::new();
        for (i, s) in self.signals.iter().enumerate() {
            let r = match s.kind {
                FeatureType::Numeric => {
                    let mut sorted = std::mem::take(&mut self.numeric[i]);
                    sorted.sort_by(f64::total_cmp);
                    let edges = stats::quantile_edges(&sorted, self.bins);
                    let proportions = stats::bin_proportions(&edges, &sorted);
                    SignalReference::Numeric {
                        sorted,
                        edges,
                        proportions,
                    }
                }
                FeatureType::Categorical => SignalReference::Categorical {
                    counts: std::mem::take(&mut self.categorical[i]),
                },
            };
            signals.insert(s.name.clone(), r);
        }
        let mut profile = ReferenceProfile {
            system_id: self.system_id,
            version: String::new(),
            events: self.events,
            source,
            signals,
        };
        profile.version = profile_hash(&profile);
        profile
    }
}

/// FNV-1a over the canonical JSON of the profile's content: stable across runs and builds.
fn profile_hash(p: &ReferenceProfile) -> String {
    let bytes = serde_json::to_vec(&p.signals).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

/// Whether a check could be run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The test ran.
    Evaluated,
    /// Fewer usable values than `window.min_samples` in the window, or none in the
    /// reference: no verdict, never an alert.
    Insufficient,
}

/// One check of one signal in one window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckResult {
    /// Signal name (feature name or `prediction.score` ...).
    pub signal: String,
    /// The test.
    pub method: Method,
    /// Evaluated or insufficient.
    pub status: CheckStatus,
    /// The test statistic (KS D, chi-squared, PSI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    /// The p-value, for tests that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The value compared with the thresholds (the p-value for KS/chi2, the PSI itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Warning level.
    pub warning: Option<f64>,
    /// Critical level.
    pub critical: Option<f64>,
    /// Ok, warning or critical.
    pub severity: Severity,
    /// Usable values in the window.
    pub samples: usize,
    /// Missing values (null or absent) in the window.
    pub missing: usize,
    /// Values of the wrong type in the window.
    pub type_errors: usize,
}

/// Where a window sits in the stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WindowInfo {
    /// 0-based window number since the reference was frozen.
    pub index: u64,
    /// Predictions in the window.
    pub events: usize,
    /// Outcomes seen while the window was open.
    pub outcomes: usize,
    /// Timestamp of the first prediction.
    pub first_event_at: DateTime<Utc>,
    /// Timestamp of the last prediction.
    pub last_event_at: DateTime<Utc>,
    /// False for a partial window evaluated at the end of input.
    pub complete: bool,
}

/// Every check of one system in one window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WindowReport {
    /// The system.
    pub system_id: String,
    /// The plan version, if the plan names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_version: Option<String>,
    /// The reference version compared against.
    pub reference_version: String,
    /// The window.
    pub window: WindowInfo,
    /// Highest severity among the checks.
    pub severity: Severity,
    /// One result per signal and method, in plan order.
    pub checks: Vec<CheckResult>,
}

enum Accum {
    Num(Vec<f64>),
    Cat(HashMap<String, u64>),
}

struct SignalWindow {
    values: Accum,
    missing: usize,
    type_errors: usize,
}

struct Window {
    signals: Vec<SignalWindow>,
    events: usize,
    outcomes: usize,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

impl Window {
    fn new(signals: &[Signal], capacity: usize) -> Self {
        Window {
            signals: signals
                .iter()
                .map(|s| SignalWindow {
                    values: match s.kind {
                        FeatureType::Numeric => Accum::Num(Vec::with_capacity(capacity)),
                        FeatureType::Categorical => Accum::Cat(HashMap::new()),
                    },
                    missing: 0,
                    type_errors: 0,
                })
                .collect(),
            events: 0,
            outcomes: 0,
            first: None,
            last: None,
        }
    }

    fn add(&mut self, signals: &[Signal], p: &Prediction) {
        self.events += 1;
        self.first.get_or_insert(p.timestamp);
        self.last = Some(p.timestamp);
        for (s, w) in signals.iter().zip(self.signals.iter_mut()) {
            match (extract(s, p), &mut w.values) {
                (Observed::Num(x), Accum::Num(v)) => v.push(x),
                (Observed::Cat(c), Accum::Cat(m)) => {
                    if let Some(n) = m.get_mut(c.as_ref()) {
                        *n += 1;
                    } else {
                        m.insert(c.into_owned(), 1);
                    }
                }
                (Observed::Missing, _) => w.missing += 1,
                _ => w.type_errors += 1,
            }
        }
    }
}

fn severity(check: &Check, value: f64) -> Severity {
    let past = |level: Option<f64>| {
        level.is_some_and(|l| {
            if check.method.lower_is_worse() {
                value < l
            } else {
                value > l
            }
        })
    };
    if past(check.thresholds.critical) {
        Severity::Critical
    } else if past(check.thresholds.warning) {
        Severity::Warning
    } else {
        Severity::Ok
    }
}

/// Aligned (reference, window) counts over the union of categories, reference order first.
fn aligned_counts(
    reference: &BTreeMap<String, u64>,
    window: &HashMap<String, u64>,
) -> (Vec<u64>, Vec<u64>) {
    let mut r: Vec<u64> = Vec::with_capacity(reference.len() + 4);
    let mut w: Vec<u64> = Vec::with_capacity(reference.len() + 4);
    for (cat, &n) in reference {
        r.push(n);
        w.push(window.get(cat).copied().unwrap_or(0));
    }
    // Unseen categories, in sorted order so results are deterministic.
    let mut unseen: Vec<(&String, &u64)> = window
        .iter()
        .filter(|(c, _)| !reference.contains_key(*c))
        .collect();
    unseen.sort();
    for (_, &n) in unseen {
        r.push(0);
        w.push(n);
    }
    (r, w)
}

fn proportions(counts: &[u64]) -> Vec<f64> {
    let total = counts.iter().sum::<u64>().max(1) as f64;
    counts.iter().map(|&c| c as f64 / total).collect()
}

fn evaluate_signal(
    signal: &Signal,
    reference: &SignalReference,
    window: &mut SignalWindow,
    min_samples: usize,
    out: &mut Vec<CheckResult>,
) {
    let samples = match &window.values {
        Accum::Num(v) => v.len(),
        Accum::Cat(m) => m.values().sum::<u64>() as usize,
    };
    let sufficient = samples >= min_samples && reference.samples() > 0;
    // Work shared by the checks of this signal, computed once.
    let mut sorted_window: Option<Vec<f64>> = None;
    let mut cat_counts: Option<(Vec<u64>, Vec<u64>)> = None;
    for check in &signal.checks {
        let mut result = CheckResult {
            signal: signal.name.clone(),
            method: check.method,
            status: CheckStatus::Insufficient,
            statistic: None,
            p_value: None,
            value: None,
            warning: check.thresholds.warning,
            critical: check.thresholds.critical,
            severity: Severity::Ok,
            samples,
            missing: window.missing,
            type_errors: window.type_errors,
        };
        if sufficient {
            let (statistic, p_value, value) = match (check.method, reference, &window.values) {
                (Method::Ks, SignalReference::Numeric { sorted, .. }, Accum::Num(v)) => {
                    let w = sorted_window.get_or_insert_with(|| {
                        let mut w = v.clone();
                        w.sort_unstable_by(f64::total_cmp);
                        w
                    });
                    let r = stats::ks_2samp_sorted(sorted, w);
                    (r.statistic, Some(r.p_value), r.p_value)
                }
                (
                    Method::Psi,
                    SignalReference::Numeric {
                        edges, proportions, ..
                    },
                    Accum::Num(v),
                ) => {
                    let psi = stats::psi(proportions, &stats::bin_proportions(edges, v));
                    (psi, None, psi)
                }
                (Method::Chi2, SignalReference::Categorical { counts }, Accum::Cat(m)) => {
                    let (r, w) = cat_counts.get_or_insert_with(|| aligned_counts(counts, m));
                    let c = stats::chi2_contingency(r, w);
                    (c.statistic, Some(c.p_value), c.p_value)
                }
                (Method::Psi, SignalReference::Categorical { counts }, Accum::Cat(m)) => {
                    let (r, w) = cat_counts.get_or_insert_with(|| aligned_counts(counts, m));
                    let psi = stats::psi(&proportions(r), &proportions(w));
                    (psi, None, psi)
                }
                // The plan validator only pairs methods with the signal kinds they fit.
                _ => (f64::NAN, None, f64::NAN),
            };
            if value.is_finite() {
                result.status = CheckStatus::Evaluated;
                result.statistic = Some(statistic);
                result.p_value = p_value;
                result.value = Some(value);
                result.severity = severity(check, value);
            }
        }
        out.push(result);
    }
}

enum Phase {
    Collecting(ReferenceBuilder, usize),
    Monitoring {
        reference: Arc<ReferenceProfile>,
        window: Window,
    },
}

/// What one observed event produced.
#[derive(Debug, Default)]
pub struct Step {
    /// A window closed.
    pub report: Option<WindowReport>,
    /// The reference was frozen by this event (first-N references); persist it.
    pub reference_frozen: Option<Arc<ReferenceProfile>>,
}

/// The engine state of one AI system.
pub struct Monitor {
    plan: Arc<Plan>,
    signals: Vec<Signal>,
    phase: Phase,
    next_index: u64,
}

impl Monitor {
    /// A monitor for `plan`. With `reference`, monitoring starts at once; without, the
    /// plan must say `first_events` and the first N predictions become the reference.
    pub fn new(plan: Arc<Plan>, reference: Option<ReferenceProfile>) -> Self {
        let signals = plan.signals();
        let phase = match reference {
            Some(r) => Phase::Monitoring {
                reference: Arc::new(r),
                window: Window::new(&signals, plan.window.size),
            },
            None => Phase::Collecting(
                ReferenceBuilder::new(&plan),
                plan.reference.first_events.unwrap_or(plan.window.size),
            ),
        };
        Monitor {
            plan,
            signals,
            phase,
            next_index: 0,
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
            Phase::Monitoring { window, .. } => window.events > 0 || window.outcomes > 0,
        }
    }

    /// Feed one event of this system.
    pub fn observe(&mut self, event: &Event) -> Step {
        let mut step = Step::default();
        match (&mut self.phase, event) {
            (Phase::Collecting(builder, target), Event::Prediction(p)) => {
                builder.add(p);
                if builder.len() >= *target {
                    let n = builder.len();
                    let taken = std::mem::replace(builder, ReferenceBuilder::new(&self.plan));
                    let profile = Arc::new(taken.build(format!("first {n} events")));
                    step.reference_frozen = Some(profile.clone());
                    self.phase = Phase::Monitoring {
                        reference: profile,
                        window: Window::new(&self.signals, self.plan.window.size),
                    };
                }
            }
            (Phase::Collecting(..), Event::Outcome(_)) => {}
            (Phase::Monitoring { window, .. }, Event::Prediction(p)) => {
                window.add(&self.signals, p);
                if window.events >= self.plan.window.size {
                    step.report = self.close(true);
                }
            }
            (Phase::Monitoring { window, .. }, Event::Outcome(_)) => window.outcomes += 1,
        }
        step
    }

    /// End of input: evaluate a partial window if it has any predictions.
    pub fn finish(&mut self) -> Option<WindowReport> {
        match &self.phase {
            Phase::Monitoring { window, .. } if window.events > 0 => self.close(false),
            _ => None,
        }
    }

    fn close(&mut self, complete: bool) -> Option<WindowReport> {
        let Phase::Monitoring { reference, window } = &mut self.phase else {
            return None;
        };
        let mut closed =
            std::mem::replace(window, Window::new(&self.signals, self.plan.window.size));
        let mut checks = Vec::new();
        for (signal, sw) in self.signals.iter().zip(closed.signals.iter_mut()) {
            match reference.signals.get(&signal.name) {
                Some(r) => {
                    evaluate_signal(signal, r, sw, self.plan.window.min_samples(), &mut checks)
                }
                None => {
                    // A reference persisted under an older plan lacks this signal.
                    let empty = match signal.kind {
                        FeatureType::Numeric => SignalReference::Numeric {
                            sorted: vec![],
                            edges: vec![],
                            proportions: vec![1.0],
                        },
                        FeatureType::Categorical => SignalReference::Categorical {
                            counts: BTreeMap::new(),
                        },
                    };
                    evaluate_signal(
                        signal,
                        &empty,
                        sw,
                        self.plan.window.min_samples(),
                        &mut checks,
                    )
                }
            }
        }
        let severity = checks
            .iter()
            .map(|c| c.severity)
            .max()
            .unwrap_or(Severity::Ok);
        let index = self.next_index;
        self.next_index += 1;
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        Some(WindowReport {
            system_id: self.plan.system.id.clone(),
            plan_version: self.plan.system.plan_version.clone(),
            reference_version: reference.version.clone(),
            window: WindowInfo {
                index,
                events: closed.events,
                outcomes: closed.outcomes,
                first_event_at: closed.first.unwrap_or(epoch),
                last_event_at: closed.last.unwrap_or(epoch),
                complete,
            },
            severity,
            checks,
        })
    }
}

/// An event for a system no plan covers.
#[derive(Debug, thiserror::Error)]
#[error("no monitoring plan for system \"{0}\"")]
pub struct Unplanned(pub String);

/// All monitored systems, routed by `system_id`.
pub struct Detector {
    monitors: HashMap<String, Monitor>,
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

    /// End of input: partial windows of every system, in system id order.
    pub fn finish(&mut self) -> Vec<WindowReport> {
        let mut ids: Vec<String> = self.monitors.keys().cloned().collect();
        ids.sort();
        ids.iter()
            .filter_map(|id| self.monitors.get_mut(id).and_then(Monitor::finish))
            .collect()
    }
}

#[cfg(test)]
mod tests;
