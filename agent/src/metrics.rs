//! The agent's metric catalogue. Labels are bounded: route, status class, event kind and
//! a fixed set of reasons; never a system id, prediction id or peer address.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
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
    /// `driftwatch_agent_fields_removed_total{reason}`: feature fields kept in the pod
    /// (`unlisted`: not on the allow-list; `suppressed`: law-enforcement mode).
    pub fields_removed: IntCounterVec,
    /// `driftwatch_agent_fields_pseudonymised_total`: ids and fields replaced by pseudonyms.
    pub fields_pseudonymised: IntCounter,
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
                "Events refused, by reason (invalid, too_large, unavailable).",
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
                "Ingest request latency, acknowledgement included.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            &["route"],
        )?;
        let ready = IntGauge::new("driftwatch_agent_ready", "1 once the agent serves.")?;
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
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(events_accepted.clone()))?;
        registry.register(Box::new(events_rejected.clone()))?;
        registry.register(Box::new(kafka_delivered.clone()))?;
        registry.register(Box::new(kafka_errors.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(ready.clone()))?;
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
            fields_removed,
            fields_pseudonymised,
        })
    }
}

/// Render a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metric families.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
