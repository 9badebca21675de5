//! The agent's metric catalogue. Labels are bounded: route, status class, event kind and
//! a fixed set of reasons; never a prediction id or peer address. A system id appears
//! only in `driftwatch_agent_serving`, for at most `control::MAX_SYSTEMS` systems.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Handles to every agent metric, registered in an injected registry.
#[derive(Clone)]
pub struct AgentMetrics {
    /// `driftwatch_agent_http_requests_total{route,status}`.
    pub http_requests: IntCounterVec,
    /// `driftwatch_agent_events_accepted_total{kind}`: acknowledged with 202.
    pub events_accepted: IntCounterVec,
    /// `driftwatch_agent_events_rejected_total{kind,reason}`: refused (never acknowledged).
    pub events_rejected: IntCounterVec,
    /// `driftwatch_agent_kafka_delivered_total`: confirmed by Kafka.
    pub kafka_delivered: IntCounter,
    /// `driftwatch_agent_kafka_delivery_errors_total`.
    pub kafka_errors: IntCounter,
    /// `driftwatch_agent_request_duration_seconds{route}`.
    pub request_seconds: HistogramVec,
    /// `driftwatch_agent_ready`: 1 once the agent serves.
    pub ready: IntGauge,
    /// `driftwatch_agent_serving{system,state}`: 1 for each system's current state
    /// (allowed, restricted, disabled) from the control topic.
    pub serving: IntGaugeVec,
    /// `driftwatch_agent_fields_removed_total{reason}`: feature fields kept in the pod
    /// (`unlisted`: not on the allow-list; `suppressed`: law-enforcement mode).
    pub fields_removed: IntCounterVec,
    /// `driftwatch_agent_fields_pseudonymised_total`: ids and fields replaced by pseudonyms.
    pub fields_pseudonymised: IntCounter,
    /// `driftwatch_agent_kafka_up`: 1 while Kafka confirms sends or answers a probe.
    pub kafka_up: IntGauge,
    /// `driftwatch_agent_kafka_resent_total`: events sent again from the spool after a
    /// failed or timed-out delivery (each may reach Kafka twice).
    pub kafka_resent: IntCounter,
    /// `driftwatch_agent_spool_bytes`: bytes on disk in the spool.
    pub spool_bytes: IntGauge,
    /// `driftwatch_agent_spool_backlog_events`: acknowledged events not yet confirmed.
    pub spool_backlog: IntGauge,
    /// `driftwatch_agent_spool_budget_bytes`: `max_spool_bytes`.
    pub spool_budget: IntGauge,
    /// `driftwatch_agent_spool_lost_total{reason}`: acknowledged events lost to a damaged
    /// spool (`corruption`).
    pub spool_lost: IntCounterVec,
    /// `driftwatch_agent_spool_truncated_bytes_total`: torn tails cut at start-up.
    pub spool_truncated: IntCounter,
    /// `driftwatch_agent_dead_letter_total{reason}`: events Kafka refused for good, kept in
    /// the dead-letter spool (`too_large`, `unauthorized`, `invalid`).
    pub dead_letter: IntCounterVec,
    /// `driftwatch_agent_events_dropped_total{reason}`: events answered 202 but not kept
    /// (`spool_full` with `when_full = "drop_newest"`).
    pub events_dropped: IntCounterVec,
}

impl AgentMetrics {
    /// Create and register every metric.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let http_requests = IntCounterVec::new(
            Opts::new(
                "driftwatch_agent_http_requests_total",
                "HTTP requests by route and status code.",
            ),
            &["route", "status"],
        )?;
        let events_accepted = IntCounterVec::new(
            Opts::new(
                "driftwatch_agent_events_accepted_total",
                "Events acknowledged to the model server.",
            ),
            &["kind"],
        )?;
        let events_rejected = IntCounterVec::new(
            Opts::new(
                "driftwatch_agent_events_rejected_total",
                "Events refused, by reason (invalid, too_large, spool_full, disk_error, unavailable).",
            ),
            &["kind", "reason"],
        )?;
        let kafka_delivered = IntCounter::new(
            "driftwatch_agent_kafka_delivered_total",
            "Events confirmed by Kafka.",
        )?;
        let kafka_errors = IntCounter::new(
            "driftwatch_agent_kafka_delivery_errors_total",
            "Events Kafka did not confirm.",
        )?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "driftwatch_agent_request_duration_seconds",
                "Ingest request latency, the spool write (and fsync under fsync = always) included.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            &["route"],
        )?;
        let ready = IntGauge::new("driftwatch_agent_ready", "1 once the agent serves.")?;
        let serving = IntGaugeVec::new(
            Opts::new(
                "driftwatch_agent_serving",
                "1 for each system's serving state from the control topic (allowed, restricted, disabled).",
            ),
            &["system", "state"],
        )?;
        let fields_removed = IntCounterVec::new(
            Opts::new(
                "driftwatch_agent_fields_removed_total",
                "Feature fields that did not leave the pod, by reason (unlisted, suppressed).",
            ),
            &["reason"],
        )?;
        let fields_pseudonymised = IntCounter::new(
            "driftwatch_agent_fields_pseudonymised_total",
            "Identifiers and fields replaced by keyed pseudonyms.",
        )?;
        let kafka_up = IntGauge::new(
            "driftwatch_agent_kafka_up",
            "1 while Kafka confirms sends or answers a metadata probe, 0 when it does not.",
        )?;
        let kafka_resent = IntCounter::new(
            "driftwatch_agent_kafka_resent_total",
            "Events sent again from the spool after a failed or timed-out delivery.",
        )?;
        let spool_bytes = IntGauge::new(
            "driftwatch_agent_spool_bytes",
            "Bytes on disk in the spool (counted against max_spool_bytes).",
        )?;
        let spool_backlog = IntGauge::new(
            "driftwatch_agent_spool_backlog_events",
            "Acknowledged events in the spool not yet confirmed by Kafka.",
        )?;
        let spool_budget = IntGauge::new(
            "driftwatch_agent_spool_budget_bytes",
            "The spool's disk budget (max_spool_bytes); new events are refused beyond it.",
        )?;
        let spool_lost = IntCounterVec::new(
            Opts::new(
                "driftwatch_agent_spool_lost_total",
                "Acknowledged events lost to a damaged spool, by reason (corruption).",
            ),
            &["reason"],
        )?;
        let spool_truncated = IntCounter::new(
            "driftwatch_agent_spool_truncated_bytes_total",
            "Bytes of torn tail (a write cut by a crash) truncated at start-up.",
        )?;
        let dead_letter = IntCounterVec::new(
            Opts::new(
                "driftwatch_agent_dead_letter_total",
                "Events Kafka refused for good, kept in the dead-letter spool, by reason.",
            ),
            &["reason"],
        )?;
        let events_dropped = IntCounterVec::new(
            Opts::new(
                "driftwatch_agent_events_dropped_total",
                "Events answered 202 but not kept, by reason (spool_full in drop_newest mode).",
            ),
            &["reason"],
        )?;
        // Every fixed label value exists from the start, so a rate() sees its first increase.
        spool_lost.with_label_values(&["corruption"]);
        for reason in ["too_large", "unauthorized", "invalid"] {
            dead_letter.with_label_values(&[reason]);
        }
        events_dropped.with_label_values(&["spool_full"]);
        for m in [&kafka_up, &spool_bytes, &spool_backlog, &spool_budget] {
            registry.register(Box::new(m.clone()))?;
        }
        for m in [&spool_lost, &dead_letter, &events_dropped] {
            registry.register(Box::new(m.clone()))?;
        }
        registry.register(Box::new(kafka_resent.clone()))?;
        registry.register(Box::new(spool_truncated.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(events_accepted.clone()))?;
        registry.register(Box::new(events_rejected.clone()))?;
        registry.register(Box::new(kafka_delivered.clone()))?;
        registry.register(Box::new(kafka_errors.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(serving.clone()))?;
        registry.register(Box::new(fields_removed.clone()))?;
        registry.register(Box::new(fields_pseudonymised.clone()))?;
        Ok(AgentMetrics {
            http_requests,
            events_accepted,
            events_rejected,
            kafka_delivered,
            kafka_errors,
            request_seconds,
            ready,
            serving,
            fields_removed,
            fields_pseudonymised,
            kafka_up,
            kafka_resent,
            spool_bytes,
            spool_backlog,
            spool_budget,
            spool_lost,
            spool_truncated,
            dead_letter,
            events_dropped,
        })
    }
}

/// Render a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    driftwatch_common::health::render(registry)
}
