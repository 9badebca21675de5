//! Alert episodes: page once per episode of a condition, not once per window.
//!
//! A *condition* is one check of one signal (or of one group of people, or one
//! performance metric) of one system; its fingerprint is `system/kind/signal/method`.
//! Every window that evaluates it gives a [`Verdict`]: breaching (with the window's
//! alert) or clean. [`Episodes::observe`] keeps, per condition, the last N verdicts as
//! bits and the episode in progress, and turns verdicts into notifications:
//!
//! - **firing** when K of the last N windows breach and no episode is in progress;
//! - **escalated** when a breaching window is more severe than the episode so far
//!   (warning to critical); an episode never de-escalates;
//! - **ongoing** for every other breaching window of an episode: not a page, only a
//!   refresh for receivers that expire alerts (Alertmanager's `endsAt`);
//! - **resolved** after M clean windows in a row; the history starts afresh, so the
//!   next episode needs K new breaches.
//!
//! A window the condition was not evaluated in (too few values) counts for neither. A
//! verdict for a window at or before the last one seen is ignored, so a report seen
//! twice changes nothing. Notification ids are derived from the episode and the window
//! (`fingerprint@start/status/window`): a detector that re-evaluates windows after a
//! restart from a checkpoint writes the same notifications with the same ids, which
//! the receivers' delivery drops as repeats. The state is small (per condition: a
//! 64-bit history, the last window index and, during an episode, its last alert) and
//! is checkpointed with the system's windows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use driftwatch_schema::{Alert, EpisodeStatus, Lifecycle, Severity};
use serde::{Deserialize, Serialize};

pub use super::Verdict;
use crate::plan::{EpisodeSpec, Plan};

/// What a notification links to, from the plan.
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// `[actions.warning] runbook`.
    pub runbook_warning: Option<String>,
    /// `[actions.critical] runbook`.
    pub runbook_critical: Option<String>,
    /// `[alerts] incident_url`, `{system}` already replaced.
    pub incident_url: Option<String>,
}

impl Links {
    /// The links of a plan.
    pub fn of(plan: &Plan) -> Self {
        Links {
            runbook_warning: plan
                .actions
                .at(Severity::Warning)
                .and_then(|a| a.runbook.clone()),
            runbook_critical: plan
                .actions
                .at(Severity::Critical)
                .and_then(|a| a.runbook.clone()),
            incident_url: plan
                .alerts
                .incident_url
                .as_ref()
                .map(|u| u.replace("{system}", &plan.system.id)),
        }
    }

    fn runbook(&self, severity: Severity) -> Option<String> {
        match severity {
            Severity::Critical => self
                .runbook_critical
                .clone()
                .or_else(|| self.runbook_warning.clone()),
            _ => self
                .runbook_warning
                .clone()
                .or_else(|| self.runbook_critical.clone()),
        }
    }
}

/// One condition's memory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Condition {
    /// The last window index seen.
    last_window: i64,
    /// Bit i: the verdict i verdicts ago breached (bit 0 the last).
    history: u64,
    /// The episode in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    active: Option<Active>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Active {
    started_window: i64,
    started_at: DateTime<Utc>,
    severity: Severity,
    breaching: u32,
    clean: u32,
    /// The last breaching window's alert: what the resolve is about.
    last: Alert,
}

/// Every condition of one system.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Episodes {
    conditions: BTreeMap<String, Condition>,
}

impl Episodes {
    /// Episodes in progress.
    pub fn active(&self) -> usize {
        self.conditions
            .values()
            .filter(|c| c.active.is_some())
            .count()
    }

    /// The state as bytes for a checkpoint.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The state from a checkpoint's bytes (empty: none yet).
    pub fn from_bytes(b: &[u8]) -> Result<Self, serde_json::Error> {
        if b.is_empty() {
            return Ok(Episodes::default());
        }
        serde_json::from_slice(b)
    }

    /// Take one window's verdicts; the notifications they cause, in order.
    pub fn observe(
        &mut self,
        spec: &EpisodeSpec,
        links: &Links,
        verdicts: Vec<Verdict>,
    ) -> Vec<Alert> {
        let mask = if spec.of_last >= 64 {
            u64::MAX
        } else {
            (1u64 << spec.of_last) - 1
        };
        let mut out = Vec::new();
        for mut v in verdicts {
            let alert = v.alert.take();
            let c = self
                .conditions
                .entry(v.fingerprint.clone())
                .or_insert(Condition {
                    last_window: i64::MIN,
                    history: 0,
                    active: None,
                });
            if v.window.index <= c.last_window {
                continue;
            }
            c.last_window = v.window.index;
            let breach = alert.is_some();
            c.history = ((c.history << 1) | u64::from(breach)) & mask;
            let breaching = c.history.count_ones();
            match (&mut c.active, alert) {
                (Some(a), Some(alert)) => {
                    a.clean = 0;
                    let status = if alert.severity > a.severity {
                        a.severity = alert.severity;
                        EpisodeStatus::Escalated
                    } else {
                        EpisodeStatus::Ongoing
                    };
                    a.last = alert;
                    out.push(notification(&v.fingerprint, a, status, &v, spec, links));
                }
                (Some(a), None) => {
                    a.clean += 1;
                    if a.clean >= spec.resolve_after {
                        out.push(notification(
                            &v.fingerprint,
                            a,
                            EpisodeStatus::Resolved,
                            &v,
                            spec,
                            links,
                        ));
                        c.active = None;
                        c.history = 0;
                    }
                }
                (None, Some(alert)) if breaching >= spec.fire_after => {
                    let a = Active {
                        started_window: v.window.index,
                        started_at: v.window.last_event_at,
                        severity: alert.severity,
                        breaching,
                        clean: 0,
                        last: alert,
                    };
                    out.push(notification(
                        &v.fingerprint,
                        &a,
                        EpisodeStatus::Firing,
                        &v,
                        spec,
                        links,
                    ));
                    c.active = Some(a);
                }
                (None, _) => {}
            }
        }
        out
    }
}

/// A system's heartbeat: whether its telemetry has stopped for longer than the plan's
/// `heartbeat_s`. Wall-clock state of the running detector, not checkpointed: after a
/// restart the silence counts from the start.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    last_event: DateTime<Utc>,
    silent: bool,
}

impl Heartbeat {
    /// A system heard from (or started watching) at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Heartbeat {
            last_event: now,
            silent: false,
        }
    }

    /// An event of the system arrived at `now`: the resolve, if it was silent.
    pub fn event(&mut self, now: DateTime<Utc>, plan: &Plan, links: &Links) -> Option<Alert> {
        let was = self.silent;
        let since = self.last_event;
        self.last_event = now;
        self.silent = false;
        was.then(|| heartbeat_alert(plan, links, since, now, EpisodeStatus::Resolved))
    }

    /// The clock at `now`: the firing, the first time the silence passes the plan's
    /// `heartbeat_s`.
    pub fn check(&mut self, now: DateTime<Utc>, plan: &Plan, links: &Links) -> Option<Alert> {
        let limit = plan.alerts.heartbeat_s?;
        let silent_s = (now - self.last_event).num_seconds();
        if self.silent || silent_s < 0 || (silent_s as u64) <= limit {
            return None;
        }
        self.silent = true;
        Some(heartbeat_alert(
            plan,
            links,
            self.last_event,
            now,
            EpisodeStatus::Firing,
        ))
    }
}

fn heartbeat_alert(
    plan: &Plan,
    links: &Links,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    status: EpisodeStatus,
) -> Alert {
    let system = &plan.system.id;
    let limit = plan.alerts.heartbeat_s.unwrap_or(0);
    let fingerprint = format!("{system}/telemetry/telemetry/heartbeat");
    let start = since.timestamp_millis();
    let episode = format!("{fingerprint}@{start}");
    let silent = (now - since).num_seconds().max(0);
    let summary = match status {
        EpisodeStatus::Resolved => format!(
            "RESOLVED telemetry of {system} arrives again after {silent} s without an event (limit {limit} s)"
        ),
        _ => format!(
            "FIRING warning no telemetry from {system} for {silent} s (plan allows {limit} s; last event at {}): monitoring is not active",
            since.to_rfc3339()
        ),
    };
    Alert {
        alert_id: format!("{episode}/{}/{}", status.as_str(), now.timestamp_millis()),
        system_id: system.clone(),
        kind: driftwatch_schema::AlertKind::Telemetry,
        severity: Severity::Warning,
        signal: "telemetry".into(),
        method: "heartbeat".into(),
        statistic: None,
        p_value: None,
        value: silent as f64,
        threshold: limit as f64,
        samples: 0,
        window: driftwatch_schema::WindowInfo {
            index: -1,
            start: Some(since),
            end: Some(now),
            events: 0,
            outcomes: 0,
            first_event_at: since,
            last_event_at: now,
            complete: true,
        },
        reference_version: "none".into(),
        plan_version: plan.system.plan_version.clone(),
        plan_hash: Some(plan.hash.clone()).filter(|h| !h.is_empty()),
        summary,
        lifecycle: Some(Lifecycle {
            status,
            fingerprint,
            episode,
            started_window: -1,
            started_at: since,
            breaching: 1,
            of: 1,
            clean: u32::from(status == EpisodeStatus::Resolved),
            runbook_url: links.runbook(Severity::Warning),
            incident_url: links.incident_url.clone(),
        }),
    }
}

/// The notification of `status` for the episode `a`, in the window of `v`.
fn notification(
    fingerprint: &str,
    a: &Active,
    status: EpisodeStatus,
    v: &Verdict,
    spec: &EpisodeSpec,
    links: &Links,
) -> Alert {
    let episode = format!("{fingerprint}@{}", a.started_window);
    let mut n = a.last.clone();
    n.alert_id = format!("{episode}/{}/{}", status.as_str(), v.window.index);
    n.severity = a.severity;
    let what = a.last.summary.as_str();
    n.summary = match status {
        EpisodeStatus::Firing => format!(
            "FIRING {what} ({} of the last {} windows breached)",
            a.breaching, spec.of_last
        ),
        EpisodeStatus::Escalated => format!(
            "ESCALATED to {} since window {}: {what}",
            a.severity.as_str(),
            a.started_window
        ),
        EpisodeStatus::Ongoing => format!("ONGOING since window {}: {what}", a.started_window),
        EpisodeStatus::Resolved => {
            n.window = v.window.clone();
            if let Some(value) = v.value {
                n.value = value;
            }
            format!(
                "RESOLVED {} on {} of {} ({} since window {}): within its levels for {} windows in a row (window {}, value {})",
                a.last.kind.as_str().replace('_', " "),
                a.last.signal,
                a.last.system_id,
                a.severity.as_str(),
                a.started_window,
                spec.resolve_after,
                v.window.index,
                super::short(n.value),
            )
        }
    };
    n.lifecycle = Some(Lifecycle {
        status,
        fingerprint: fingerprint.to_owned(),
        episode,
        started_window: a.started_window,
        started_at: a.started_at,
        breaching: a.breaching,
        of: spec.of_last,
        clean: if status == EpisodeStatus::Resolved {
            spec.resolve_after
        } else {
            a.clean
        },
        runbook_url: links.runbook(a.severity),
        incident_url: links.incident_url.clone(),
    });
    n
}

#[cfg(test)]
mod tests {
    use driftwatch_schema::{AlertKind, WindowInfo};

    use super::*;

    fn window(index: i64) -> WindowInfo {
        let at = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(index * 60);
        WindowInfo {
            index,
            start: None,
            end: None,
            events: 100,
            outcomes: 0,
            first_event_at: at,
            last_event_at: at,
            complete: true,
        }
    }

    /// The verdict of window `index`: `.` clean, `w` warning, `c` critical.
    fn verdict(index: i64, mark: char) -> Verdict {
        let severity = match mark {
            'w' => Some(Severity::Warning),
            'c' => Some(Severity::Critical),
            _ => None,
        };
        Verdict {
            fingerprint: "s/drift/age/ks".into(),
            window: window(index),
            value: Some(if severity.is_some() { 1e-6 } else { 0.4 }),
            alert: severity.map(|severity| Alert {
                alert_id: format!("s/r/{index}/age/ks"),
                severity,
                statistic: Some(0.3),
                p_value: Some(1e-6),
                value: 1e-6,
                window: window(index),
                summary: format!("{} drift on age of s in window {index}", severity.as_str()),
                ..crate::alert::sample_alert(index)
            }),
        }
    }

    /// The notifications a sequence of windows causes, as `status@window`.
    fn run(spec: EpisodeSpec, marks: &str) -> Vec<String> {
        let mut e = Episodes::default();
        let mut out = Vec::new();
        for (i, m) in marks.chars().enumerate() {
            for n in e.observe(&spec, &Links::default(), vec![verdict(i as i64, m)]) {
                let l = n.lifecycle.expect("a notification");
                out.push(format!(
                    "{}@{}:{}",
                    l.status.as_str(),
                    n.window.index,
                    n.severity.as_str()
                ));
            }
        }
        out
    }

    fn spec(fire_after: u32, of_last: u32, resolve_after: u32) -> EpisodeSpec {
        EpisodeSpec {
            fire_after,
            of_last,
            resolve_after,
        }
    }

    #[test]
    fn fires_after_k_of_n_and_resolves_after_m_clean() {
        // One breach in three: no page. Two in three: fire at the second.
        assert_eq!(run(spec(2, 3, 3), "w..w..w.."), Vec::<String>::new());
        assert_eq!(
            run(spec(2, 3, 3), "w.w...."),
            ["firing@2:warning", "resolved@5:warning"]
        );
        // A flapping condition is one episode while the gaps are shorter than M.
        assert_eq!(
            run(spec(2, 3, 3), "ww.w..w.ww...."),
            [
                "firing@1:warning",
                "ongoing@3:warning",
                "ongoing@6:warning",
                "ongoing@8:warning",
                "ongoing@9:warning",
                "resolved@12:warning"
            ]
        );
        // K = N = 1: every first breach fires.
        assert_eq!(
            run(spec(1, 1, 1), "c.c"),
            [
                "firing@0:critical",
                "resolved@1:critical",
                "firing@2:critical"
            ]
        );
    }

    #[test]
    fn escalates_within_an_episode_and_never_back() {
        assert_eq!(
            run(spec(2, 3, 2), "wwcw.."),
            [
                "firing@1:warning",
                "escalated@2:critical",
                "ongoing@3:critical",
                "resolved@5:critical"
            ]
        );
    }

    #[test]
    fn after_a_resolve_the_next_episode_needs_k_new_breaches() {
        // The breach at 4 resolves nothing and the history before the resolve at 3 is
        // forgotten: window 4 alone does not fire.
        assert_eq!(
            run(spec(2, 3, 1), "ww.w.w"),
            ["firing@1:warning", "resolved@2:warning", "firing@5:warning"]
        );
    }

    #[test]
    fn silence_past_the_heartbeat_fires_once_and_the_next_event_resolves() {
        let plan = Plan::from_toml(
            "[system]\nid = \"s\"\n[reference]\nfirst_events = 10\n[window]\nsize = 10\n[features.age]\ntype = \"numeric\"\n[alerts]\nheartbeat_s = 60\n",
            "plan",
            std::path::PathBuf::new(),
        )
        .expect("plan");
        let links = Links::of(&plan);
        let t0 = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(20_000);
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let mut h = Heartbeat::new(t0);
        assert!(
            h.check(at(60), &plan, &links).is_none(),
            "at the limit: not yet"
        );
        let fired = h.check(at(61), &plan, &links).expect("past the limit");
        assert_eq!(fired.kind, AlertKind::Telemetry);
        let l = fired.lifecycle.as_ref().expect("lifecycle");
        assert_eq!(l.status, EpisodeStatus::Firing);
        assert!(
            fired
                .summary
                .contains("no telemetry from s for 61 s (plan allows 60 s"),
            "{}",
            fired.summary
        );
        assert!(
            h.check(at(600), &plan, &links).is_none(),
            "fires once per silence"
        );
        let resolved = h.event(at(700), &plan, &links).expect("resolve");
        let r = resolved.lifecycle.as_ref().expect("lifecycle");
        assert_eq!(r.status, EpisodeStatus::Resolved);
        assert_eq!(r.episode, l.episode, "the same episode");
        assert!(h.event(at(701), &plan, &links).is_none());
        // Without heartbeat_s, never.
        let quiet = Plan::from_toml(
            "[system]\nid = \"s\"\n[reference]\nfirst_events = 10\n[window]\nsize = 10\n[features.age]\ntype = \"numeric\"\n",
            "plan",
            std::path::PathBuf::new(),
        )
        .expect("plan");
        assert!(Heartbeat::new(t0)
            .check(at(1_000_000), &quiet, &links)
            .is_none());
    }

    #[test]
    fn a_window_seen_twice_or_out_of_order_changes_nothing() {
        let s = spec(2, 3, 3);
        let mut e = Episodes::default();
        let l = Links::default();
        assert!(e.observe(&s, &l, vec![verdict(5, 'c')]).is_empty());
        assert!(e.observe(&s, &l, vec![verdict(5, 'c')]).is_empty());
        assert!(e.observe(&s, &l, vec![verdict(4, 'c')]).is_empty());
        let n = e.observe(&s, &l, vec![verdict(6, 'c')]);
        assert_eq!(n.len(), 1);
        let before = e.clone();
        assert!(e.observe(&s, &l, vec![verdict(6, 'c')]).is_empty());
        assert_eq!(e, before);
    }

    #[test]
    fn notifications_carry_stable_ids_links_and_a_line_for_people() {
        let links = Links {
            runbook_warning: Some("https://wiki/w".into()),
            runbook_critical: Some("https://wiki/c".into()),
            incident_url: Some("https://dw/incidents?system=s".into()),
        };
        let s = spec(2, 3, 2);
        let mut e = Episodes::default();
        let mut all = Vec::new();
        for (i, m) in "wc..".chars().enumerate() {
            all.extend(e.observe(&s, &links, vec![verdict(i as i64, m)]));
        }
        let ids: Vec<&str> = all.iter().map(|n| n.alert_id.as_str()).collect();
        assert_eq!(
            ids,
            ["s/drift/age/ks@1/firing/1", "s/drift/age/ks@1/resolved/3"]
        );
        let fired = all[0].lifecycle.as_ref().expect("lifecycle");
        assert_eq!(fired.episode, "s/drift/age/ks@1");
        assert_eq!(fired.runbook_url.as_deref(), Some("https://wiki/c"));
        assert_eq!(
            fired.incident_url.as_deref(),
            Some("https://dw/incidents?system=s")
        );
        assert_eq!(
            all[0].summary,
            "FIRING critical drift on age of s in window 1 (2 of the last 3 windows breached)"
        );
        assert_eq!(
            all[1].summary,
            "RESOLVED drift on age of s (critical since window 1): within its levels for 2 windows in a row (window 3, value 0.4000)"
        );
        assert_eq!(all[1].value, 0.4);

        // The same windows again from a restored state give the same ids.
        let mut restored = Episodes::from_bytes(&Episodes::default().to_bytes()).expect("state");
        let mut again = Vec::new();
        for (i, m) in "wc..".chars().enumerate() {
            again.extend(restored.observe(&s, &links, vec![verdict(i as i64, m)]));
        }
        assert_eq!(again, all);
        // Mid-episode state survives its bytes.
        let mut mid = Episodes::default();
        mid.observe(&s, &links, vec![verdict(0, 'w')]);
        mid.observe(&s, &links, vec![verdict(1, 'c')]);
        let mut back = Episodes::from_bytes(&mid.to_bytes()).expect("state");
        assert_eq!(back.active(), 1);
        let n = back.observe(&s, &links, vec![verdict(2, '.')]);
        assert!(n.is_empty());
        let n = back.observe(&s, &links, vec![verdict(3, '.')]);
        assert_eq!(n[0].alert_id, "s/drift/age/ks@1/resolved/3");
    }
}
