//! The drift tests and data-quality checks a plan can name.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{FeatureType, Thresholds};

/// A drift test or data-quality check. The value compared with the thresholds is given
/// for each; the documented default levels are (warning, critical).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Two-sample Kolmogorov-Smirnov, numeric. Value: p-value (asymptotic, as scipy).
    /// Alerts below (0.05, 0.01).
    Ks,
    /// Population stability index over reference-quantile bins (numeric) or categories;
    /// empty bins smoothed to 1e-4. Alerts above (0.1, 0.25).
    Psi,
    /// Chi-squared test of the reference-vs-window table, categorical. Value: p-value.
    /// Alerts below (0.05, 0.01).
    Chi2,
    /// Jensen-Shannon distance, base 2, over reference-quantile bins or categories.
    /// Alerts above (0.1, 0.2).
    Js,
    /// Hellinger distance over reference-quantile bins or categories. Above (0.1, 0.2).
    Hellinger,
    /// Wasserstein-1 distance divided by the reference's standard deviation (floored at
    /// 1e-3); the raw distance is the statistic. Numeric. Above (0.1, 0.2).
    Wasserstein,
    /// L-infinity distance between category proportions, categorical. Above (0.1, 0.2).
    Linf,
    /// Share of the window's values in categories the reference never saw, categorical.
    /// Above (0.01, 0.05).
    Unseen,
    /// Share of predictions where the signal is null or absent. Above (0.05, 0.2).
    Missing,
    /// Share of numeric values outside the reference's [min, max]. Above (0.02, 0.1).
    OutOfRange,
    /// Share of predictions where the value has the wrong type. Above (0, 0.01): any
    /// type error is a warning.
    TypeErrors,
}

/// Every method, for documentation and tests.
pub const ALL_METHODS: [Method; 11] = [
    Method::Ks,
    Method::Psi,
    Method::Chi2,
    Method::Js,
    Method::Hellinger,
    Method::Wasserstein,
    Method::Linf,
    Method::Unseen,
    Method::Missing,
    Method::OutOfRange,
    Method::TypeErrors,
];

impl Method {
    /// Name in results, metrics and plans.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Ks => "ks",
            Method::Psi => "psi",
            Method::Chi2 => "chi2",
            Method::Js => "js",
            Method::Hellinger => "hellinger",
            Method::Wasserstein => "wasserstein",
            Method::Linf => "linf",
            Method::Unseen => "unseen",
            Method::Missing => "missing",
            Method::OutOfRange => "out_of_range",
            Method::TypeErrors => "type_errors",
        }
    }

    /// True when the statistic alerts by being small (p-values), false when large.
    pub fn lower_is_worse(self) -> bool {
        self.has_p_value()
    }

    /// True for hypothesis tests whose value is a p-value.
    pub fn has_p_value(self) -> bool {
        matches!(self, Method::Ks | Method::Chi2)
    }

    /// Default thresholds (documented on each variant).
    pub fn default_thresholds(self) -> Thresholds {
        let (warning, critical) = match self {
            Method::Ks | Method::Chi2 => (0.05, 0.01),
            Method::Psi => (0.1, 0.25),
            Method::Js | Method::Hellinger | Method::Wasserstein | Method::Linf => (0.1, 0.2),
            Method::Unseen => (0.01, 0.05),
            Method::Missing => (0.05, 0.2),
            Method::OutOfRange => (0.02, 0.1),
            Method::TypeErrors => (0.0, 0.01),
        };
        Thresholds {
            warning: Some(warning),
            critical: Some(critical),
            ..Thresholds::default()
        }
    }

    pub(super) fn applies_to(self, t: FeatureType) -> bool {
        match self {
            Method::Ks | Method::Wasserstein | Method::OutOfRange => t == FeatureType::Numeric,
            Method::Chi2 | Method::Linf | Method::Unseen => t == FeatureType::Categorical,
            Method::Psi | Method::Js | Method::Hellinger | Method::Missing | Method::TypeErrors => {
                true
            }
        }
    }

    /// Whether the value is a share or distance bounded by 1.
    pub(super) fn bounded_by_one(self) -> bool {
        !matches!(self, Method::Psi | Method::Wasserstein)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
