//! The detector's metric catalogue. Labels are bounded by the plans: `system`, `signal`
//! and `method` come from plan files, never from event data; events of unplanned systems
//! are counted without a system label.

use prometheus::{
    Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::engine::{CheckStatus, WindowReport};

/// Handles to every detector metric.
#[derive(Clone)]
pub struct DetectorMetrics {
    /// `driftwatch_events_total{system,kind}`.
    pub events: IntCounterVec,
    /// `driftwatch_events_unplanned_total`: events of systems without a plan.
    pub unplanned: IntCounter,
    /// `driftwatch_events_invalid_total`: payloads that are not v1 events.
    pub invalid: IntCounter,
    /// `driftwatch_events_late_total{system}`: predictions after their windows closed.
    pub late: IntCounterVec,
    /// `driftwatch_events_skewed_total{system,direction}`: predictions whose timestamp
    /// is beyond the plan's `max_skew_s` (`future` or `past`); in no window.
    pub skewed: IntCounterVec,
    /// `driftwatch_events_duplicate_total{system}`: repeated predictions, dropped.
    pub duplicates: IntCounterVec,
    /// `driftwatch_windows_total{system}`.
    pub windows: IntCounterVec,
    /// `driftwatch_drift_value{system,signal,method}`: the compared value of the last window.
    pub value: GaugeVec,
    /// `driftwatch_drift_statistic{system,signal,method}`.
    pub statistic: GaugeVec,
    /// `driftwatch_drift_severity{system,signal,method}`: 0 ok, 1 warning, 2 critical.
    pub severity: IntGaugeVec,
    /// `driftwatch_alerts_total{system,severity}`.
    pub alerts: IntCounterVec,
    /// `driftwatch_alert_notifications_total{system,status}`: episode notifications
    /// (`firing`, `escalated`, `ongoing`, `resolved`) and heartbeats.
    pub notifications: IntCounterVec,
    /// `driftwatch_alert_delivery_failures_total{sink}`: failed delivery attempts.
    pub alert_failures: IntCounterVec,
    /// `driftwatch_alert_repeats_total{sink}`: alerts a receiver already had (written
    /// again after a crash or a takeover evaluated their window again), not sent again.
    pub alert_repeats: IntCounterVec,
    /// `driftwatch_alerts_dropped_total{sink,reason}`: alerts given up (`expired`,
    /// `refused`, `queue_full`).
    pub alerts_dropped: IntCounterVec,
    /// `driftwatch_alert_queue_depth{sink}`: alerts waiting for a receiver.
    pub alert_queue_depth: IntGaugeVec,
    /// `driftwatch_reference_events{system}`: size of the frozen reference (0 while collecting).
    pub reference_events: IntGaugeVec,
    /// `driftwatch_events_replayed_total`: events read again after a restart or
    /// rebalance that a restored checkpoint already held (skipped).
    pub replayed: IntCounter,
    /// `driftwatch_partition_rewinds_total`: partitions read again from a restored
    /// checkpoint's offset because it was older than the committed offset.
    pub rewinds: IntCounter,
    /// `driftwatch_checkpoints_total{outcome}`: `written` per system, `failed` per
    /// attempt.
    pub checkpoints: IntCounterVec,
    /// `driftwatch_checkpoint_bytes{system}`: size of the last checkpoint.
    pub checkpoint_bytes: IntGaugeVec,
    /// `driftwatch_state_restores_total{outcome}`: `restored`, `discarded` (another
    /// plan or reference), `damaged`.
    pub restores: IntCounterVec,
    /// `driftwatch_last_checkpoint_timestamp_seconds`: when offsets last moved.
    pub last_checkpoint: Gauge,
    /// `driftwatch_consumer_lag{partition}`: events of the partition not yet processed
    /// (high watermark minus position), measured at each checkpoint.
    pub lag: IntGaugeVec,
    /// `driftwatch_partition_events_total{partition}`: events read from each partition
    /// (throughput per partition; bounded by the partition count).
    pub partition_events: IntCounterVec,
    /// `driftwatch_partitions_assigned`: events partitions this instance holds now.
    pub assigned: IntGauge,
    /// `driftwatch_rebalances_total{event}`: `assigned` and `revoked` callbacks of the
    /// consumer group.
    pub rebalances: IntCounterVec,
    /// `driftwatch_last_window_timestamp_seconds{system}`: when the system's last window
    /// was evaluated.
    pub last_window: GaugeVec,
    /// Performance from outcomes.
    pub perf: PerfMetrics,
}

/// The performance metrics (plans with `[performance]`); `metric` comes from the plan.
#[derive(Clone)]
pub struct PerfMetrics {
    /// `driftwatch_performance{system,metric,stage}`: the metric in the last reported
    /// window of that stage (`provisional`, `final`).
    pub value: GaugeVec,
    /// `driftwatch_performance_severity{system,metric}`: 0 ok, 1 warning, 2 critical,
    /// of the last judged report.
    pub severity: IntGaugeVec,
    /// `driftwatch_performance_declared{system,metric}`: the level declared in the
    /// instructions for use.
    pub declared: GaugeVec,
    /// `driftwatch_performance_coverage{system,stage}`: share of the last reported
    /// window's predictions with an outcome.
    pub coverage: GaugeVec,
    /// `driftwatch_outcomes_total{system,result}`: outcomes `joined`, `replaced` (a
    /// later outcome for the same prediction), `expired` (its prediction had left the
    /// join), `orphaned` (no such prediction), `invalid`; and predictions `evicted`
    /// unjoined at the memory budget.
    pub outcomes: IntCounterVec,
    /// `driftwatch_predictions_pending{system}`: predictions awaiting their outcome.
    pub pending: IntGaugeVec,
    /// `driftwatch_performance_gap{system,segment_key,metric}`: best-to-worst gap
    /// between the groups of a segment key in the last judged report.
    pub gap: GaugeVec,
    seen: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<String, crate::perf::JoinCounts>>,
    >,
}

impl PerfMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let value = GaugeVec::new(
            Opts::new(
                "driftwatch_performance",
                "Realized performance metric of the last reported window, by stage (provisional while outcomes may still arrive, final after the horizon).",
            ),
            &["system", "metric", "stage"],
        )?;
        let severity = IntGaugeVec::new(
            Opts::new(
                "driftwatch_performance_severity",
                "Severity of the last judged performance report per metric: 0 ok, 1 warning, 2 critical.",
            ),
            &["system", "metric"],
        )?;
        let declared = GaugeVec::new(
            Opts::new(
                "driftwatch_performance_declared",
                "The performance level declared in the instructions for use (the plan's [performance] declared).",
            ),
            &["system", "metric"],
        )?;
        let coverage = GaugeVec::new(
            Opts::new(
                "driftwatch_performance_coverage",
                "Share of the last reported window's predictions with an outcome.",
            ),
            &["system", "stage"],
        )?;
        let outcomes = IntCounterVec::new(
            Opts::new(
                "driftwatch_outcomes_total",
                "Outcomes by what became of them (joined, replaced, expired, orphaned, invalid), and predictions evicted unjoined at the memory budget.",
            ),
            &["system", "result"],
        )?;
        let pending = IntGaugeVec::new(
            Opts::new(
                "driftwatch_predictions_pending",
                "Predictions awaiting their outcome.",
            ),
            &["system"],
        )?;
        registry.register(Box::new(value.clone()))?;
        registry.register(Box::new(severity.clone()))?;
        registry.register(Box::new(declared.clone()))?;
        registry.register(Box::new(coverage.clone()))?;
        registry.register(Box::new(outcomes.clone()))?;
        let gap = GaugeVec::new(
            Opts::new(
                "driftwatch_performance_gap",
                "Gap between the best and the worst group of a segment key (plan segments), in the last judged report.",
            ),
            &["system", "segment_key", "metric"],
        )?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(gap.clone()))?;
        Ok(PerfMetrics {
            value,
            severity,
            declared,
            coverage,
            outcomes,
            pending,
            gap,
            seen: Default::default(),
        })
    }
}

impl DetectorMetrics {
    /// Create and register every metric.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let events = IntCounterVec::new(
            Opts::new(
                "driftwatch_events_total",
                "Events consumed, by system and kind.",
            ),
            &["system", "kind"],
        )?;
        let unplanned = IntCounter::new(
            "driftwatch_events_unplanned_total",
            "Events of systems no loaded plan covers.",
        )?;
        let invalid = IntCounter::new(
            "driftwatch_events_invalid_total",
            "Payloads on the events topic that are not v1 events.",
        )?;
        let late = IntCounterVec::new(
            Opts::new(
                "driftwatch_events_late_total",
                "Predictions that arrived after all their windows had closed (not evaluated).",
            ),
            &["system"],
        )?;
        let skewed = IntCounterVec::new(
            Opts::new(
                "driftwatch_events_skewed_total",
                "Predictions whose timestamp lies beyond the plan's max_skew_s (after the clock, or before the latest timestamp); left out of every window.",
            ),
            &["system", "direction"],
        )?;
        let duplicates = IntCounterVec::new(
            Opts::new(
                "driftwatch_events_duplicate_total",
                "Predictions whose prediction_id was already seen recently (retries, redelivery); dropped.",
            ),
            &["system"],
        )?;
        let windows = IntCounterVec::new(
            Opts::new("driftwatch_windows_total", "Windows evaluated."),
            &["system"],
        )?;
        let labels = ["system", "signal", "method"];
        let value = GaugeVec::new(
            Opts::new(
                "driftwatch_drift_value",
                "Value compared with the thresholds in the last window (p-value for ks/chi2, PSI).",
            ),
            &labels,
        )?;
        let statistic = GaugeVec::new(
            Opts::new(
                "driftwatch_drift_statistic",
                "Test statistic in the last window (KS D, chi-squared, PSI).",
            ),
            &labels,
        )?;
        let severity = IntGaugeVec::new(
            Opts::new(
                "driftwatch_drift_severity",
                "Verdict of the last window: 0 ok, 1 warning, 2 critical.",
            ),
            &labels,
        )?;
        let alerts = IntCounterVec::new(
            Opts::new("driftwatch_alerts_total", "Alerts raised."),
            &["system", "severity"],
        )?;
        let notifications = IntCounterVec::new(
            Opts::new(
                "driftwatch_alert_notifications_total",
                "Episode notifications: firing, escalated and resolved page; ongoing refreshes Alertmanager.",
            ),
            &["system", "status"],
        )?;
        let alert_failures = IntCounterVec::new(
            Opts::new(
                "driftwatch_alert_delivery_failures_total",
                "Failed alert delivery attempts (each is retried until the alert expires).",
            ),
            &["sink"],
        )?;
        let alert_repeats = IntCounterVec::new(
            Opts::new(
                "driftwatch_alert_repeats_total",
                "Alerts a receiver already had (evaluated again after a crash or takeover), not sent again.",
            ),
            &["sink"],
        )?;
        let alerts_dropped = IntCounterVec::new(
            Opts::new(
                "driftwatch_alerts_dropped_total",
                "Alerts given up for a receiver: expired, refused (4xx) or queue_full.",
            ),
            &["sink", "reason"],
        )?;
        let alert_queue_depth = IntGaugeVec::new(
            Opts::new(
                "driftwatch_alert_queue_depth",
                "Alerts queued for a receiver, not yet delivered.",
            ),
            &["sink"],
        )?;
        let reference_events = IntGaugeVec::new(
            Opts::new(
                "driftwatch_reference_events",
                "Predictions in the frozen reference (0 while it is being collected).",
            ),
            &["system"],
        )?;
        let replayed = IntCounter::new(
            "driftwatch_events_replayed_total",
            "Events read again after a restart or rebalance that a restored checkpoint already held (skipped).",
        )?;
        let rewinds = IntCounter::new(
            "driftwatch_partition_rewinds_total",
            "Partitions read again from a restored checkpoint's offset because it was older than the committed offset (the state topic read back short of its newest checkpoint): no event skipped.",
        )?;
        let checkpoints = IntCounterVec::new(
            Opts::new(
                "driftwatch_checkpoints_total",
                "System checkpoints written to the state topic (written, per system) and failed attempts.",
            ),
            &["outcome"],
        )?;
        let checkpoint_bytes = IntGaugeVec::new(
            Opts::new(
                "driftwatch_checkpoint_bytes",
                "Size of the system's last checkpoint.",
            ),
            &["system"],
        )?;
        let restores = IntCounterVec::new(
            Opts::new(
                "driftwatch_state_restores_total",
                "Checkpoints met at start or after a rebalance: restored, discarded (another plan or reference) or damaged.",
            ),
            &["outcome"],
        )?;
        let last_checkpoint = Gauge::new(
            "driftwatch_last_checkpoint_timestamp_seconds",
            "When the last checkpoint was written and offsets moved (Unix time).",
        )?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "driftwatch_consumer_lag",
                "Events of an assigned partition not yet processed (high watermark minus position), at the last checkpoint.",
            ),
            &["partition"],
        )?;
        let assigned = IntGauge::new(
            "driftwatch_partitions_assigned",
            "Events partitions this instance holds (0 before it joins its group and while it holds none).",
        )?;
        let partition_events = IntCounterVec::new(
            Opts::new(
                "driftwatch_partition_events_total",
                "Events read from each events partition this instance held.",
            ),
            &["partition"],
        )?;
        let rebalances = IntCounterVec::new(
            Opts::new(
                "driftwatch_rebalances_total",
                "Consumer group rebalances seen by this instance, by event (assigned, revoked).",
            ),
            &["event"],
        )?;
        for event in ["assigned", "revoked"] {
            rebalances.with_label_values(&[event]);
        }
        let last_window = GaugeVec::new(
            Opts::new(
                "driftwatch_last_window_timestamp_seconds",
                "When the system's last window was evaluated (Unix time).",
            ),
            &["system"],
        )?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(assigned.clone()))?;
        registry.register(Box::new(rebalances.clone()))?;
        registry.register(Box::new(partition_events.clone()))?;
        registry.register(Box::new(last_window.clone()))?;
        registry.register(Box::new(replayed.clone()))?;
        registry.register(Box::new(rewinds.clone()))?;
        registry.register(Box::new(checkpoints.clone()))?;
        registry.register(Box::new(checkpoint_bytes.clone()))?;
        registry.register(Box::new(restores.clone()))?;
        registry.register(Box::new(last_checkpoint.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(unplanned.clone()))?;
        registry.register(Box::new(invalid.clone()))?;
        registry.register(Box::new(late.clone()))?;
        registry.register(Box::new(skewed.clone()))?;
        registry.register(Box::new(duplicates.clone()))?;
        registry.register(Box::new(windows.clone()))?;
        registry.register(Box::new(value.clone()))?;
        registry.register(Box::new(statistic.clone()))?;
        registry.register(Box::new(severity.clone()))?;
        registry.register(Box::new(alerts.clone()))?;
        registry.register(Box::new(notifications.clone()))?;
        registry.register(Box::new(alert_failures.clone()))?;
        registry.register(Box::new(alerts_dropped.clone()))?;
        registry.register(Box::new(alert_repeats.clone()))?;
        registry.register(Box::new(alert_queue_depth.clone()))?;
        registry.register(Box::new(reference_events.clone()))?;
        Ok(DetectorMetrics {
            events,
            unplanned,
            invalid,
            late,
            skewed,
            duplicates,
            windows,
            value,
            statistic,
            severity,
            alerts,
            notifications,
            alert_failures,
            alert_repeats,
            alerts_dropped,
            alert_queue_depth,
            reference_events,
            replayed,
            rewinds,
            checkpoints,
            checkpoint_bytes,
            restores,
            last_checkpoint,
            lag,
            assigned,
            rebalances,
            partition_events,
            last_window,
            perf: PerfMetrics::new(registry)?,
        })
    }

    /// Export a window report.
    pub fn record(&self, report: &WindowReport) {
        let system = report.system_id.as_str();
        self.windows.with_label_values(&[system]).inc();
        self.last_window
            .with_label_values(&[system])
            .set(chrono::Utc::now().timestamp() as f64);
        self.record_gauges(report);
    }

    /// Export a performance report.
    pub fn record_performance(&self, r: &crate::perf::PerformanceReport) {
        use crate::perf::MetricStatus;
        let system = r.system_id.as_str();
        let stage = r.stage.as_str();
        let p = &self.perf;
        p.coverage
            .with_label_values(&[system, stage])
            .set(r.coverage);
        for m in &r.metrics {
            let metric = m.metric.as_str();
            if let Some(v) = m.value {
                p.value.with_label_values(&[system, metric, stage]).set(v);
            }
            if let Some(d) = m.declared {
                p.declared.with_label_values(&[system, metric]).set(d);
            }
            if m.status == MetricStatus::Evaluated {
                p.severity
                    .with_label_values(&[system, metric])
                    .set(m.severity as i64);
            }
        }
        for g in &r.gaps {
            if let (MetricStatus::Evaluated, Some(v)) = (g.status, g.gap) {
                p.gap
                    .with_label_values(&[system, g.key.as_str(), g.metric.as_str()])
                    .set(v);
            }
        }
        let j = r.join;
        p.pending.with_label_values(&[system]).set(j.pending as i64);
        let mut seen = p.seen.lock().unwrap_or_else(|e| e.into_inner());
        let last = seen.entry(system.to_owned()).or_default();
        for (result, now, before) in [
            ("joined", j.joined, last.joined),
            ("replaced", j.replaced, last.replaced),
            ("expired", j.expired, last.expired),
            ("orphaned", j.orphaned, last.orphaned),
            ("invalid", j.invalid, last.invalid),
            ("evicted", j.evicted, last.evicted),
        ] {
            // Counts restart with the process (or a restore): only growth is added.
            if now > before {
                p.outcomes
                    .with_label_values(&[system, result])
                    .inc_by(now - before);
            }
        }
        *last = j;
    }

    /// Set the per-check gauges (value, statistic, severity) from a report, counting
    /// nothing: what a restart restores from the last window of a checkpoint, so the
    /// rules built on the gauges do not resolve because the process restarted.
    pub fn record_gauges(&self, report: &WindowReport) {
        let system = report.system_id.as_str();
        for c in &report.checks {
            let labels = [system, c.signal.as_str(), c.method.as_str()];
            if c.status == CheckStatus::Evaluated {
                if let Some(v) = c.value {
                    self.value.with_label_values(&labels).set(v);
                }
                if let Some(s) = c.statistic {
                    self.statistic.with_label_values(&labels).set(s);
                }
            }
            self.severity
                .with_label_values(&labels)
                .set(c.severity as i64);
        }
    }
}
