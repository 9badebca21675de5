//! A synthetic credit-scoring model for the demo, the tests and the benchmarks:
//! deterministic (seeded SplitMix64), with an optional drift that shifts two inputs.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use driftwatch_schema::{FeatureValue, Prediction, PredictionValue, WIRE_VERSION};
use serde_json::{json, Value};
use uuid::Uuid;

/// SplitMix64: tiny, fast, and the same sequence on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Pick an index by weights.
    pub fn pick(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut u = self.uniform() * total;
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                return i;
            }
            u -= w;
        }
        weights.len() - 1
    }
}

/// How far the synthetic population has moved: 0 = as in training, 1 = fully drifted.
#[derive(Debug, Clone, Copy)]
pub struct Drift {
    /// Added to the applicants' mean age (years).
    pub age_shift: f64,
    /// Weight moved from "north" to "south" (0..1).
    pub region_shift: f64,
    /// Added to the mean log income: richer applicants, nearer the model's decision
    /// boundary, where it is right less often.
    pub income_shift: f64,
}

impl Drift {
    /// No drift.
    pub const NONE: Drift = Drift {
        age_shift: 0.0,
        region_shift: 0.0,
        income_shift: 0.0,
    };
    /// Applicants 8 years older, far more from the south.
    pub const DEMO: Drift = Drift {
        age_shift: 8.0,
        region_shift: 0.6,
        income_shift: 0.0,
    };
    /// The demo's drift: [`Drift::DEMO`] with higher incomes too, which moves
    /// applicants towards the model's decision boundary: its accuracy falls from about
    /// 0.74 to 0.68.
    pub const DEMO_WITH_INCOME: Drift = Drift {
        age_shift: 8.0,
        region_shift: 0.6,
        income_shift: 0.6,
    };
}

/// Names of the synthetic model's features.
pub const REGIONS: [&str; 4] = ["north", "south", "east", "west"];

/// A synthetic credit-scoring model.
pub struct CreditModel {
    rng: Rng,
    /// Draws outcomes, apart from `rng`, so asking for outcomes does not change the
    /// predictions.
    outcomes: Rng,
    system_id: String,
    start: DateTime<Utc>,
    seq: u64,
}

impl CreditModel {
    /// A model for `system_id` with a seed.
    pub fn new(system_id: &str, seed: u64) -> Self {
        CreditModel {
            rng: Rng::new(seed),
            outcomes: Rng::new(seed ^ 0x5DEE_CE66_D1CE_4E5B),
            system_id: system_id.into(),
            start: DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            seq: 0,
        }
    }

    /// The next prediction as the JSON a model server would post to the agent.
    pub fn next_json(&mut self, drift: Drift) -> Value {
        let seq = self.seq;
        self.seq += 1;
        let age = (41.0 + drift.age_shift + 11.0 * self.rng.normal())
            .clamp(18.0, 95.0)
            .round();
        let income = (10.4 + drift.income_shift + 0.5 * self.rng.normal())
            .exp()
            .round();
        let debt_ratio = (0.35 + 0.12 * self.rng.normal()).clamp(0.0, 1.5);
        let w = [
            0.4 - 0.3 * drift.region_shift,
            0.2 + 0.3 * drift.region_shift,
            0.2,
            0.2,
        ];
        let region = REGIONS[self.rng.pick(&w)];
        let employed = self.rng.uniform() < 0.82;
        let z = -2.0 + 0.03 * (age - 41.0) + 1.1 * (income.ln() - 10.4) - 3.0 * (debt_ratio - 0.35)
            + if employed { 1.2 } else { -0.8 };
        let score = 1.0 / (1.0 + (-z).exp());
        let ts = self.start + Duration::seconds(seq as i64);
        json!({
            "system_id": self.system_id,
            "model_version": "3.1.0",
            "prediction_id": format!("req-{seq}"),
            "timestamp": ts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "features": {
                "age": age,
                "income": income,
                "debt_ratio": (debt_ratio * 1000.0).round() / 1000.0,
                "region": region,
                "employed": employed,
            },
            "prediction": {"score": (score * 10000.0).round() / 10000.0,
                           "label": if score >= 0.5 { "approve" } else { "refer" }},
        })
    }

    /// The outcome of a prediction made by [`CreditModel::next_json`]: `repaid` with the
    /// probability the model's score says (the model is calibrated; what changes is who
    /// applies), else `defaulted`; stamped `delay_s` seconds after the prediction.
    pub fn outcome_json(&mut self, prediction: &Value, delay_s: i64) -> Value {
        let score = prediction["prediction"]["score"].as_f64().unwrap_or(0.5);
        let at = prediction["timestamp"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(self.start)
            + Duration::seconds(delay_s);
        let repaid = self.outcomes.uniform() < score;
        json!({
            "system_id": prediction["system_id"],
            "prediction_id": prediction["prediction_id"],
            "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "outcome": {"label": if repaid { "repaid" } else { "defaulted" }},
        })
    }

    /// The next prediction as a typed event (what the agent would put on the wire).
    pub fn next_prediction(&mut self, drift: Drift) -> Prediction {
        let v = self.next_json(drift);
        let seq = self.seq;
        let mut features = BTreeMap::new();
        if let Some(obj) = v["features"].as_object() {
            for (k, x) in obj {
                let fv = match x {
                    Value::Number(n) => FeatureValue::Number(n.as_f64().unwrap_or(0.0)),
                    Value::String(s) => FeatureValue::Text(s.clone()),
                    Value::Bool(b) => FeatureValue::Bool(*b),
                    _ => FeatureValue::Null,
                };
                features.insert(k.clone(), fv);
            }
        }
        Prediction {
            v: WIRE_VERSION,
            event_id: Uuid::from_u64_pair(0, seq),
            system_id: self.system_id.clone(),
            model_version: "3.1.0".into(),
            prediction_id: format!("req-{}", seq - 1),
            timestamp: self.start + Duration::seconds(seq as i64 - 1),
            features,
            prediction: PredictionValue {
                score: v["prediction"]["score"].as_f64(),
                label: v["prediction"]["label"].as_str().map(str::to_owned),
                value: None,
            },
            segment: BTreeMap::new(),
            suppressed: Vec::new(),
        }
    }
}

/// A monitoring plan for the synthetic model (used by the demo and the tests).
pub fn demo_plan_toml(system_id: &str, first_events: usize, window: usize) -> String {
    format!(
        r#"[system]
id = "{system_id}"
name = "Synthetic consumer credit scoring"
intended_purpose = "Creditworthiness assessment (demo)"
risk_class = "high"
plan_version = "2026-11-demo"

[reference]
first_events = {first_events}

[window]
size = {window}

[features.age]
type = "numeric"

[features.income]
type = "numeric"

[features.debt_ratio]
type = "numeric"

[features.region]
type = "categorical"

[features.employed]
type = "categorical"

[prediction.score]

[alerts]
min_severity = "critical"
"#
    )
}

/// A wide synthetic model for benchmarks: `x0..x9` numeric, `c0..c4` categorical.
/// With `drift`, x0-x2 shift by half a standard deviation and c0 moves weight.
pub struct WideModel {
    rng: Rng,
    seq: u64,
}

impl WideModel {
    /// A model with a seed.
    pub fn new(seed: u64) -> Self {
        WideModel {
            rng: Rng::new(seed),
            seq: 0,
        }
    }

    /// The next prediction of system `wide`.
    pub fn next_prediction(&mut self, drift: bool) -> Prediction {
        const CATS: [&[&str]; 5] = [
            &["a", "b", "c", "d", "e"],
            &["north", "south", "east", "west"],
            &["x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8"],
            &["yes", "no"],
            &["p", "q", "r", "s", "t", "u", "v", "w", "y", "z", "aa", "bb"],
        ];
        let seq = self.seq;
        self.seq += 1;
        let mut features = BTreeMap::new();
        for i in 0..10 {
            let shift = if drift && i < 3 { 0.5 } else { 0.0 };
            let x = 10.0 * i as f64 + (1.0 + i as f64 / 10.0) * (self.rng.normal() + shift);
            features.insert(format!("x{i}"), FeatureValue::Number(x));
        }
        for (i, cats) in CATS.iter().enumerate() {
            let mut w: Vec<f64> = (0..cats.len()).map(|k| 1.0 / (k + 1) as f64).collect();
            if drift && i == 0 {
                w.reverse();
            }
            let c = cats[self.rng.pick(&w)];
            features.insert(format!("c{i}"), FeatureValue::Text(c.to_owned()));
        }
        Prediction {
            v: WIRE_VERSION,
            event_id: Uuid::from_u64_pair(2, seq),
            system_id: "wide".into(),
            model_version: "1".into(),
            prediction_id: format!("w{seq}"),
            timestamp: self.start_time() + Duration::milliseconds(seq as i64),
            features,
            prediction: PredictionValue {
                score: Some(self.rng.uniform()),
                label: None,
                value: None,
            },
            segment: BTreeMap::new(),
            suppressed: Vec::new(),
        }
    }

    fn start_time(&self) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH
    }
}

/// The benchmark plan: 10 numeric and 5 categorical features, every default check.
pub fn wide_plan_toml(reference: &str, window: usize) -> String {
    let mut s = format!(
        "[system]\nid = \"wide\"\n\n[reference]\n{reference}\n\n[window]\nsize = {window}\n"
    );
    for i in 0..10 {
        s.push_str(&format!("\n[features.x{i}]\ntype = \"numeric\"\n"));
    }
    for i in 0..5 {
        s.push_str(&format!("\n[features.c{i}]\ntype = \"categorical\"\n"));
    }
    s
}
