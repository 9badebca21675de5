//! Rules a plan must satisfy beyond its types; each error names the key at fault.

use std::collections::BTreeMap;

use super::{
    default_checks, FeatureType, Method, PerfMetric, PerformanceSpec, Plan, PlanError, Task,
    Thresholds, WindowKind,
};

impl Plan {
    pub(super) fn validate(&self, name: &str) -> Result<(), PlanError> {
        let invalid = |key: &str, message: String| PlanError::Invalid {
            path: name.into(),
            key: key.into(),
            message,
        };
        let id = &self.system.id;
        if id.is_empty()
            || id.len() > 128
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(invalid(
                "system.id",
                format!("\"{id}\" must be 1 to 128 characters of [A-Za-z0-9._-]"),
            ));
        }
        let r = &self.reference;
        let sources = usize::from(r.file.is_some())
            + usize::from(r.first_events.is_some())
            + usize::from(r.from.is_some() || r.to.is_some());
        if sources != 1 {
            return Err(invalid(
                "reference",
                "give exactly one of `file` (a CSV or NDJSON file), `first_events` (a count) or `from` and `to` (a period of the stream)".into(),
            ));
        }
        if r.first_events == Some(0) {
            return Err(invalid(
                "reference.first_events",
                "must be at least 1".into(),
            ));
        }
        match (r.from, r.to) {
            (Some(_), None) => return Err(invalid("reference.to", "`from` needs `to`".into())),
            (None, Some(_)) => return Err(invalid("reference.from", "`to` needs `from`".into())),
            (Some(f), Some(t)) if f >= t => {
                return Err(invalid(
                    "reference.to",
                    format!("{t} is not after `from` ({f})"),
                ))
            }
            _ => {}
        }
        if !(2..=1000).contains(&self.reference.bins) {
            return Err(invalid(
                "reference.bins",
                format!("{} is outside 2..=1000", self.reference.bins),
            ));
        }
        let w = &self.window;
        match w.kind {
            WindowKind::Count => {
                for (key, set) in [
                    ("window.duration_s", w.duration_s.is_some()),
                    ("window.slide_s", w.slide_s.is_some()),
                    ("window.allowed_lateness_s", w.allowed_lateness_s > 0),
                ] {
                    if set {
                        return Err(invalid(
                            key,
                            "applies to kind = \"time\" windows only".into(),
                        ));
                    }
                }
                let size = match w.size {
                    None | Some(0) => {
                        return Err(invalid(
                            "window.size",
                            "count windows need a size of at least 1 prediction".into(),
                        ))
                    }
                    Some(s) => s,
                };
                if let Some(slide) = w.slide {
                    if slide == 0 || slide > size {
                        return Err(invalid(
                            "window.slide",
                            format!("{slide} must be between 1 and window.size ({size})"),
                        ));
                    }
                }
                let min = w.min_samples();
                if min == 0 || min > size {
                    return Err(invalid(
                        "window.min_samples",
                        format!("{min} must be between 1 and window.size ({size})"),
                    ));
                }
            }
            WindowKind::Time => {
                for (key, set) in [
                    ("window.size", w.size.is_some()),
                    ("window.slide", w.slide.is_some()),
                ] {
                    if set {
                        return Err(invalid(
                            key,
                            "applies to count windows; time windows use duration_s and slide_s"
                                .into(),
                        ));
                    }
                }
                let duration = match w.duration_s {
                    None | Some(0) => {
                        return Err(invalid(
                            "window.duration_s",
                            "time windows need a duration of at least 1 second".into(),
                        ))
                    }
                    Some(d) => d,
                };
                if let Some(slide) = w.slide_s {
                    if slide == 0 || slide > duration {
                        return Err(invalid(
                            "window.slide_s",
                            format!("{slide} must be between 1 and window.duration_s ({duration})"),
                        ));
                    }
                }
                if w.min_samples() == 0 {
                    return Err(invalid("window.min_samples", "must be at least 1".into()));
                }
            }
        }
        if self.features.is_empty()
            && self.prediction.score.is_none()
            && self.prediction.label.is_none()
            && self.prediction.value.is_none()
        {
            return Err(invalid(
                "features",
                "the plan monitors nothing: add [features.NAME] or [prediction.score]".into(),
            ));
        }
        for (fname, spec) in &self.features {
            if fname.is_empty() || fname.len() > driftwatch_schema::MAX_ID_LEN {
                return Err(invalid("features", format!("bad feature name \"{fname}\"")));
            }
            check_methods(
                &format!("features.{fname}"),
                spec.kind,
                spec.checks.as_deref(),
                &spec.thresholds,
            )
            .map_err(|(k, m)| invalid(&k, m))?;
        }
        for (oname, kind, spec) in self.outputs() {
            if let Some(spec) = spec {
                check_methods(
                    &format!("prediction.{oname}"),
                    kind,
                    spec.checks.as_deref(),
                    &spec.thresholds,
                )
                .map_err(|(k, m)| invalid(&k, m))?;
            }
        }
        if let Some(perf) = &self.performance {
            self.check_performance(perf)
                .map_err(|(k, m)| invalid(&k, m))?;
        }
        let e = &self.alerts.episodes;
        if e.of_last == 0 || e.of_last > 64 {
            return Err(invalid(
                "alerts.episodes.of_last",
                format!("{} must be from 1 to 64 windows", e.of_last),
            ));
        }
        if e.fire_after == 0 || e.fire_after > e.of_last {
            return Err(invalid(
                "alerts.episodes.fire_after",
                format!(
                    "{} must be from 1 to of_last ({}) windows",
                    e.fire_after, e.of_last
                ),
            ));
        }
        if e.resolve_after == 0 || e.resolve_after > 10_000 {
            return Err(invalid(
                "alerts.episodes.resolve_after",
                format!("{} must be from 1 to 10000 windows", e.resolve_after),
            ));
        }
        if self.alerts.heartbeat_s == Some(0) {
            return Err(invalid(
                "alerts.heartbeat_s",
                "must be at least 1 second".into(),
            ));
        }
        if let Some(key) = &self.alerts.pagerduty_routing_key {
            if key.trim().is_empty() || key.len() > 256 {
                return Err(invalid(
                    "alerts.pagerduty_routing_key",
                    "must be a PagerDuty integration key (1 to 256 characters)".into(),
                ));
            }
        }
        let pagerduty_url = Some(self.alerts.pagerduty_url.clone());
        for (key, url) in [
            ("alerts.webhook_url", &self.alerts.webhook_url),
            ("alerts.alertmanager_url", &self.alerts.alertmanager_url),
            ("alerts.slack_webhook_url", &self.alerts.slack_webhook_url),
            ("alerts.pagerduty_url", &pagerduty_url),
            ("alerts.incident_url", &self.alerts.incident_url),
        ] {
            if let Some(url) = url {
                // Refused here rather than at the first alert.
                let host = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"));
                if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
                    return Err(invalid(
                        key,
                        format!("\"{url}\" must be an http:// or https:// URL with a host"),
                    ));
                }
            }
        }
        const DECISIONS: [&str; 6] = [
            "bring_into_conformity",
            "restrict_use",
            "disable",
            "withdraw",
            "recall",
            "continue_use",
        ];
        for (i, party) in self.parties.iter().enumerate() {
            if party.name.trim().is_empty() {
                return Err(invalid(
                    &format!("parties[{i}].name"),
                    "may not be empty".into(),
                ));
            }
            if let Some(a) = party.email() {
                let (user, host) = a.split_once('@').unwrap_or(("", ""));
                if user.is_empty() || !host.contains('.') || a.contains(char::is_whitespace) {
                    return Err(invalid(
                        &format!("parties[{i}].contact"),
                        format!(
                            "\"mailto:{a}\" is not an e-mail address (mailto:name@example.com)"
                        ),
                    ));
                }
            }
            if let Some(w) = &party.webhook {
                let ok = (w.starts_with("https://") || w.starts_with("http://"))
                    && w.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
                if !ok {
                    return Err(invalid(
                        &format!("parties[{i}].webhook"),
                        format!("\"{w}\" is not an http(s) URL"),
                    ));
                }
            }
            if let Some(h) = party.acknowledge_within_h {
                if !(1..=720).contains(&h) {
                    return Err(invalid(
                        &format!("parties[{i}].acknowledge_within_h"),
                        format!("{h} hours: use 1 to 720"),
                    ));
                }
            }
            for d in &party.inform_on {
                if !DECISIONS.contains(&d.as_str()) {
                    return Err(invalid(
                        &format!("parties[{i}].inform_on"),
                        format!("\"{d}\" is not a decision; use {}", DECISIONS.join(", ")),
                    ));
                }
            }
        }
        for (i, owner) in self.owners.iter().enumerate() {
            if owner.name.trim().is_empty() {
                return Err(invalid(
                    &format!("owners[{i}].name"),
                    "may not be empty".into(),
                ));
            }
        }
        for (sev, a) in [
            ("warning", &self.actions.warning),
            ("critical", &self.actions.critical),
        ] {
            if let Some(url) = a.as_ref().and_then(|a| a.runbook.as_ref()) {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid(
                        &format!("actions.{sev}.runbook"),
                        format!("\"{url}\" must be an http:// or https:// URL"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Plan {
    fn check_performance(&self, perf: &PerformanceSpec) -> Result<(), (String, String)> {
        let p = &self.prediction;
        let err = |k: &str, m: String| Err((format!("performance.{k}"), m));
        match perf.task {
            Task::Binary if p.score.is_none() && p.label.is_none() => {
                return err(
                    "task",
                    "\"binary\" reads the prediction: add [prediction.score] or [prediction.label]"
                        .into(),
                )
            }
            Task::Multiclass if p.label.is_none() => {
                return err(
                    "task",
                    "\"multiclass\" reads the predicted label: add [prediction.label]".into(),
                )
            }
            Task::Regression if p.value.is_none() => {
                return err(
                    "task",
                    "\"regression\" reads the predicted value: add [prediction.value]".into(),
                )
            }
            _ => {}
        }
        if perf.positive_label.is_empty() || perf.positive_label == perf.negative_label {
            return err(
                "negative_label",
                format!(
                    "positive_label (\"{}\") and negative_label (\"{}\") must be two different, non-empty labels",
                    perf.positive_label, perf.negative_label
                ),
            );
        }
        if !(0.0..=1.0).contains(&perf.score_threshold) {
            return err(
                "score_threshold",
                format!("{} is outside 0..=1", perf.score_threshold),
            );
        }
        if !(perf.min_coverage > 0.0 && perf.min_coverage <= 1.0) {
            return err(
                "min_coverage",
                format!("{} must be above 0 and at most 1", perf.min_coverage),
            );
        }
        if perf.memory_budget_mib == 0 {
            return err("memory_budget_mib", "must be at least 1".into());
        }
        if !(2..=1000).contains(&perf.max_classes) {
            return err(
                "max_classes",
                format!("{} is outside 2..=1000", perf.max_classes),
            );
        }
        if perf.metrics.as_ref().is_some_and(Vec::is_empty) {
            return err("metrics", "must name at least one metric".into());
        }
        let score = p.score.is_some();
        for m in perf.metrics.iter().flatten() {
            if !m.applies_to(perf.task) {
                return err(
                    "metrics",
                    format!("\"{m}\" does not apply to a {:?} task", perf.task).to_lowercase(),
                );
            }
            if m.needs_score() && !score {
                return err(
                    "metrics",
                    format!("\"{m}\" is computed from the score: add [prediction.score]"),
                );
            }
        }
        let active = perf.active_metrics(score);
        for (m, t) in &perf.thresholds {
            let key = format!("performance.thresholds.{m}");
            if !active.contains(m) {
                return Err((key, format!("\"{m}\" is not among the metrics")));
            }
            if !check_thresholds(t).map_err(|e| (key.clone(), e))? {
                continue;
            }
            for v in [t.warning, t.critical].into_iter().flatten() {
                check_level(*m, v).map_err(|e| (key.clone(), e))?;
            }
            if let (Some(w), Some(c)) = (t.warning, t.critical) {
                let ordered = if m.higher_is_better() { c <= w } else { c >= w };
                if !ordered {
                    return Err((
                        key,
                        format!(
                            "critical ({c}) must be {} than warning ({w}): {} is better",
                            if m.higher_is_better() {
                                "no larger"
                            } else {
                                "no smaller"
                            },
                            if m.higher_is_better() {
                                "higher"
                            } else {
                                "lower"
                            }
                        ),
                    ));
                }
            }
        }
        if perf.segments.len() > 8 {
            return err(
                "segments",
                format!("{} keys; at most 8", perf.segments.len()),
            );
        }
        for (i, key) in perf.segments.iter().enumerate() {
            if let Some(f) = key.strip_prefix("features.") {
                match self.features.get(f) {
                    Some(spec) if spec.kind == FeatureType::Categorical => {}
                    Some(_) => {
                        return err(
                            "segments",
                            format!(
                                "\"{key}\" is a numeric feature; a segment key must be categorical"
                            ),
                        )
                    }
                    None => {
                        return err(
                            "segments",
                            format!("\"{key}\": no [features.{f}] in the plan"),
                        )
                    }
                }
            } else if let Some(t) = key.strip_prefix("segment.") {
                if t.is_empty() || t.len() > driftwatch_schema::MAX_QUOTED_NAME {
                    return err(
                        "segments",
                        format!("\"{key}\": a tag name of 1 to 64 bytes"),
                    );
                }
            } else {
                return err(
                    "segments",
                    format!("\"{key}\" must name features.NAME or segment.NAME"),
                );
            }
            if perf.segments[..i].contains(key) {
                return err("segments", format!("\"{key}\" is named twice"));
            }
        }
        if perf.segment_drift && perf.segments.is_empty() {
            return err(
                "segment_drift",
                "needs segments to split the drift checks by".into(),
            );
        }
        if perf.min_cell == 0 {
            return err("min_cell", "must be at least 1".into());
        }
        if !(1..=1000).contains(&perf.max_segment_values) {
            return err(
                "max_segment_values",
                format!("{} is outside 1..=1000", perf.max_segment_values),
            );
        }
        for (m, t) in &perf.gap {
            let key = format!("performance.gap.{m}");
            if perf.segments.is_empty() {
                return Err((key, "a gap needs segments to compare".into()));
            }
            if !active.contains(m) {
                return Err((key, format!("\"{m}\" is not among the metrics")));
            }
            if t.learned || t.warning_k.is_some() || t.critical_k.is_some() {
                return Err((key, "a gap takes constant warning/critical levels".into()));
            }
            if t.warning.is_none() && t.critical.is_none() {
                return Err((key, "give warning and/or critical".into()));
            }
            for v in [t.warning, t.critical].into_iter().flatten() {
                if !(v.is_finite() && v >= 0.0) {
                    return Err((key, format!("{v} is not a valid gap")));
                }
            }
            if let (Some(w), Some(c)) = (t.warning, t.critical) {
                if c < w {
                    return Err((
                        key,
                        format!("critical ({c}) must be no smaller than warning ({w})"),
                    ));
                }
            }
        }
        for (m, v) in &perf.declared {
            let key = format!("performance.declared.{m}");
            if !active.contains(m) {
                return Err((key, format!("\"{m}\" is not among the metrics")));
            }
            check_level(*m, *v).map_err(|e| (key, e))?;
        }
        Ok(())
    }
}

fn check_level(m: PerfMetric, v: f64) -> Result<(), String> {
    let ok = v.is_finite()
        && match m {
            PerfMetric::R2 => v <= 1.0,
            _ if m.bounded_by_one() => (0.0..=1.0).contains(&v),
            _ => v >= 0.0,
        };
    if ok {
        Ok(())
    } else {
        Err(format!("{v} is not a valid level for {m}"))
    }
}

fn check_methods(
    key: &str,
    kind: FeatureType,
    checks: Option<&[Method]>,
    overrides: &BTreeMap<Method, Thresholds>,
) -> Result<(), (String, String)> {
    let kind_name = match kind {
        FeatureType::Numeric => "numeric",
        FeatureType::Categorical => "categorical",
    };
    if let Some(checks) = checks {
        if checks.is_empty() {
            return Err((
                format!("{key}.checks"),
                "must name at least one method".into(),
            ));
        }
        for m in checks {
            if !m.applies_to(kind) {
                return Err((
                    format!("{key}.checks"),
                    format!("method \"{m}\" does not apply to a {kind_name} signal"),
                ));
            }
        }
    }
    let active = checks
        .map(<[Method]>::to_vec)
        .unwrap_or_else(|| default_checks(kind));
    for (m, t) in overrides {
        let tkey = format!("{key}.thresholds.{m}");
        if !active.contains(m) {
            return Err((tkey, format!("method \"{m}\" is not among the checks")));
        }
        if !check_thresholds(t).map_err(|e| (tkey.clone(), e))? {
            continue;
        }
        for v in [t.warning, t.critical].into_iter().flatten() {
            if !v.is_finite() || v < 0.0 || (m.bounded_by_one() && v > 1.0) {
                return Err((tkey, format!("{v} is not a valid level for {m}")));
            }
        }
        if let (Some(w), Some(c)) = (t.warning, t.critical) {
            let ordered = if m.lower_is_worse() { c <= w } else { c >= w };
            if !ordered {
                return Err((
                    tkey,
                    format!(
                        "critical ({c}) must be {} than warning ({w})",
                        if m.lower_is_worse() {
                            "no larger"
                        } else {
                            "no smaller"
                        }
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The rules every `thresholds` entry follows: learned levels take `warning_k` and
/// `critical_k` (positive, warning no larger), constant ones take `warning` and/or
/// `critical`. `Ok(true)`: constant levels, to be checked against the method or metric.
fn check_thresholds(t: &Thresholds) -> Result<bool, String> {
    if t.learned {
        if t.warning.is_some() || t.critical.is_some() {
            return Err(
                "learned thresholds take warning_k/critical_k, not warning/critical".into(),
            );
        }
        let (wk, ck) = t.ks();
        if !(wk > 0.0 && ck > 0.0 && wk.is_finite() && ck.is_finite()) || wk > ck {
            return Err(format!(
                "warning_k ({wk}) and critical_k ({ck}) must be positive, warning_k <= critical_k"
            ));
        }
        return Ok(false);
    }
    if t.warning_k.is_some() || t.critical_k.is_some() {
        return Err("warning_k/critical_k need learned = true".into());
    }
    if t.warning.is_none() && t.critical.is_none() {
        return Err("give warning and/or critical, or learned = true".into());
    }
    Ok(true)
}
