//! Resolving a plan into signals: each monitored feature or prediction output with its
//! checks and their thresholds (defaults merged with the plan's overrides).

use std::collections::BTreeMap;

use super::{default_checks, FeatureType, Method, OutputSpec, Plan, Thresholds};

/// Where a monitored value comes from in a prediction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// `features.<name>`.
    Feature(String),
    /// `prediction.score`.
    Score,
    /// `prediction.label`.
    Label,
    /// `prediction.value`.
    Value,
}

/// One resolved check of one signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The test.
    pub method: Method,
    /// Resolved thresholds (defaults merged with overrides).
    pub thresholds: Thresholds,
}

/// A monitored signal with its resolved checks, in plan order.
#[derive(Debug, Clone)]
pub struct Signal {
    /// Name in results and metrics: the feature name, or `prediction.score` etc.
    pub name: String,
    /// Where its values come from.
    pub source: Source,
    /// Numeric or categorical.
    pub kind: FeatureType,
    /// Checks to run.
    pub checks: Vec<Check>,
}

impl Plan {
    pub(super) fn outputs(&self) -> [(&'static str, FeatureType, Option<&OutputSpec>); 3] {
        [
            (
                "score",
                FeatureType::Numeric,
                self.prediction.score.as_ref(),
            ),
            (
                "label",
                FeatureType::Categorical,
                self.prediction.label.as_ref(),
            ),
            (
                "value",
                FeatureType::Numeric,
                self.prediction.value.as_ref(),
            ),
        ]
    }

    /// Every monitored signal with resolved checks: features by name, then outputs.
    pub fn signals(&self) -> Vec<Signal> {
        let mut out = Vec::new();
        for (name, spec) in &self.features {
            out.push(Signal {
                name: name.clone(),
                source: Source::Feature(name.clone()),
                kind: spec.kind,
                checks: resolve(spec.kind, spec.checks.as_deref(), &spec.thresholds),
            });
        }
        for (oname, kind, spec) in self.outputs() {
            if let Some(spec) = spec {
                out.push(Signal {
                    name: format!("prediction.{oname}"),
                    source: match oname {
                        "score" => Source::Score,
                        "label" => Source::Label,
                        _ => Source::Value,
                    },
                    kind,
                    checks: resolve(kind, spec.checks.as_deref(), &spec.thresholds),
                });
            }
        }
        out
    }
}

fn resolve(
    kind: FeatureType,
    checks: Option<&[Method]>,
    overrides: &BTreeMap<Method, Thresholds>,
) -> Vec<Check> {
    let methods = checks
        .map(<[Method]>::to_vec)
        .unwrap_or_else(|| default_checks(kind));
    methods
        .into_iter()
        .map(|method| {
            let mut t = method.default_thresholds();
            if let Some(o) = overrides.get(&method) {
                // An override replaces the pair: a plan that sets only `critical` means
                // "no warning level" rather than inheriting the default warning.
                t = *o;
            }
            Check {
                method,
                thresholds: t,
            }
        })
        .collect()
}
