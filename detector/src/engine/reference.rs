//! The frozen reference of a system: per-signal profiles, learned levels, the content
//! hash every result quotes, and the plan fingerprint a persisted reference is checked
//! against.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::{FeatureType, Method, Plan};
use crate::stats;

/// The frozen reference of one signal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SignalReference {
    /// Numeric: every value sorted (exact KS and Wasserstein), interior quantile bin
    /// edges, bin proportions, population standard deviation.
    Numeric {
        /// Sorted reference values.
        sorted: Vec<f64>,
        /// Interior quantile edges.
        edges: Vec<f64>,
        /// Reference proportion per bin.
        proportions: Vec<f64>,
        /// Population standard deviation (ddof = 0).
        std: f64,
        /// For KS without sorting the window: derived from `sorted` on first use,
        /// neither stored nor compared.
        #[serde(skip)]
        ks: KsCache,
    },
    /// Categorical: count per category.
    Categorical {
        /// Count per category.
        counts: BTreeMap<String, u64>,
    },
}

/// A numeric reference's [`stats::KsIndex`], built on first use. Derived data: a clone
/// starts empty and any two compare equal.
#[derive(Default)]
pub struct KsCache(std::sync::OnceLock<Option<stats::KsIndex>>);

impl Clone for KsCache {
    fn clone(&self) -> Self {
        KsCache::default()
    }
}

impl PartialEq for KsCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for KsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KsCache")
    }
}

impl SignalReference {
    /// The KS index of a numeric reference (`None` for an empty one).
    pub(crate) fn ks_index(&self) -> Option<&stats::KsIndex> {
        match self {
            SignalReference::Numeric { sorted, ks, .. } => {
                ks.0.get_or_init(|| stats::KsIndex::new(sorted)).as_ref()
            }
            SignalReference::Categorical { .. } => None,
        }
    }

    pub(crate) fn samples(&self) -> usize {
        match self {
            SignalReference::Numeric { sorted, .. } => sorted.len(),
            SignalReference::Categorical { counts } => counts.values().sum::<u64>() as usize,
        }
    }

    pub(crate) fn empty(kind: FeatureType) -> Self {
        match kind {
            FeatureType::Numeric => SignalReference::Numeric {
                sorted: vec![],
                edges: vec![],
                proportions: vec![1.0],
                std: 0.0,
                ks: KsCache::default(),
            },
            FeatureType::Categorical => SignalReference::Categorical {
                counts: BTreeMap::new(),
            },
        }
    }
}

/// Thresholds learned from the reference for one check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LearnedLevels {
    /// Reference windows the levels were learned from.
    pub windows: usize,
    /// Mean of the check's value over those windows.
    pub mean: f64,
    /// Their standard deviation (ddof = 0).
    pub std: f64,
    /// Warning level (`None` with fewer than two windows: nothing could be learned).
    pub warning: Option<f64>,
    /// Critical level.
    pub critical: Option<f64>,
}

impl LearnedLevels {
    /// Levels `k` standard deviations (ddof 0) from the mean of `values`, on the worse
    /// side (`larger_is_worse`, else below the mean), for (warning, critical); none with
    /// fewer than two values. Without values the mean and deviation are 0, not NaN, so
    /// the levels survive JSON (the reference stores keep it).
    pub(crate) fn from_values(values: &[f64], (wk, ck): (f64, f64), larger_is_worse: bool) -> Self {
        let n = values.len();
        let (mean, std) = if n == 0 {
            (0.0, 0.0)
        } else {
            (
                values.iter().sum::<f64>() / n as f64,
                crate::stats::std_dev(values),
            )
        };
        let sign = if larger_is_worse { 1.0 } else { -1.0 };
        let level = |k: f64| (n >= 2).then_some(mean + sign * k * std);
        LearnedLevels {
            windows: n,
            mean,
            std,
            warning: level(wk),
            critical: level(ck),
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
    /// What it was computed from (plan and source); a driver rebuilds when this changes.
    #[serde(default)]
    pub fingerprint: String,
    /// Predictions it was built from.
    pub events: usize,
    /// Where it came from (a file path, `first N events`, a period).
    pub source: String,
    /// Per signal, by name.
    pub signals: BTreeMap<String, SignalReference>,
    /// Learned thresholds by `signal/method`.
    #[serde(default)]
    pub learned: BTreeMap<String, LearnedLevels>,
    /// Performance on the reference (plans with `[performance]` and a reference with
    /// outcomes): realized metrics, learned levels, the score calibration for CBPE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<crate::perf::reference::ReferencePerformance>,
    /// Per group of people (`key=value`), the group's own reference (plans with
    /// `segment_drift`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub segments: BTreeMap<String, ReferenceProfile>,
}

pub(crate) fn learned_key(signal: &str, method: Method) -> String {
    format!("{signal}/{method}")
}

/// FNV-1a over a reference's content: each signal's name as bytes, its numbers as
/// 64-bit words (their IEEE bits, so every bit counts; one step per number, eight times
/// fewer than per byte), then the learned levels as JSON bytes.
pub(crate) fn content_hash(
    signals: &BTreeMap<String, SignalReference>,
    learned: &BTreeMap<String, LearnedLevels>,
    performance: Option<&crate::perf::reference::ReferencePerformance>,
) -> u64 {
    let numbers = |h: u64, xs: &[f64]| {
        std::iter::once(xs.len() as u64)
            .chain(xs.iter().map(|x| x.to_bits()))
            .fold(h, |h, word| (h ^ word).wrapping_mul(0x0100_0000_01b3))
    };
    let mut h = fnv1a64(&[], 0);
    for (name, r) in signals {
        h = fnv1a64(name.as_bytes(), h);
        h = fnv1a64(&[0], h);
        match r {
            SignalReference::Numeric {
                sorted,
                edges,
                proportions,
                std,
                ..
            } => {
                h = fnv1a64(b"numeric", h);
                for xs in [sorted, edges, proportions] {
                    h = numbers(h, xs);
                }
                h = numbers(h, &[*std]);
            }
            SignalReference::Categorical { counts } => {
                h = fnv1a64(b"categorical", h);
                for (category, n) in counts {
                    h = fnv1a64(category.as_bytes(), h);
                    h = fnv1a64(&[0], h);
                    h = fnv1a64(&n.to_le_bytes(), h);
                }
            }
        }
    }
    let h = fnv1a64(&serde_json::to_vec(learned).unwrap_or_default(), h);
    // A reference without performance hashes as it did before performance existed.
    match performance {
        Some(p) => fnv1a64(&serde_json::to_vec(p).unwrap_or_default(), h),
        None => h,
    }
}

/// FNV-1a, 64 bit: a stable content hash for versions and fingerprints.
pub fn fnv1a64(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = if seed == 0 {
        0xcbf2_9ce4_8422_2325
    } else {
        seed
    };
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What of a plan a reference depends on (signals, bins, windowing, thresholds): a
/// persisted reference with another plan fingerprint is stale.
pub fn plan_fingerprint(plan: &Plan) -> String {
    let mut parts = String::new();
    for s in plan.signals() {
        parts.push_str(&format!("{}:{:?}:{:?};", s.name, s.kind, s.checks));
    }
    parts.push_str(&format!(
        "bins={};window={:?};min={}",
        plan.reference.bins,
        plan.window.windowing(),
        plan.window.min_samples()
    ));
    // What of [performance] shapes the reference; absent, the fingerprint is as before.
    if let Some(p) = &plan.performance {
        parts.push_str(&format!(
            ";perf={:?}:{:?}:{}:{}:{}:{:?}:{:?}",
            p.task,
            p.calibration,
            p.positive_label,
            p.negative_label,
            p.score_threshold,
            p.active_metrics(plan.prediction.score.is_some()),
            p.thresholds
        ));
    }
    format!("{:016x}", fnv1a64(parts.as_bytes(), 0))
}
