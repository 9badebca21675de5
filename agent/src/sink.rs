//! The Kafka sink: ships a validated batch and answers once Kafka has confirmed every
//! event (idempotent producer, `acks=all`, lz4).
//!
//! The HTTP layer acknowledges a batch only when [`KafkaSink::submit`] returns `Ok`, so
//! an acknowledged event is in Kafka. A failed batch is answered with 503 and may be
//! retried by the client; events of it that did reach Kafka then arrive twice
//! (at-least-once, deduplicated downstream by `event_id`).

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::config::KafkaConfig;
use crate::metrics::AgentMetrics;

/// One event ready for Kafka: the key (`system_id`) and the wire payload.
#[derive(Debug, Clone)]
pub struct Record {
    /// Kafka key: the system id.
    pub key: String,
    /// Wire payload (JSON, see `driftwatch_schema::Event::to_wire`).
    pub payload: Vec<u8>,
}

/// Kafka did not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The producer could not be created from the configuration.
    #[error("cannot create Kafka producer: {0}")]
    Create(#[source] KafkaError),
    /// Kafka did not confirm every event in time.
    #[error("Kafka did not confirm {failed} of {total} events: {first}")]
    Delivery {
        /// Events not confirmed.
        failed: usize,
        /// Events in the batch.
        total: usize,
        /// The first error seen.
        first: String,
    },
}

/// Ships records to the events topic.
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
    metrics: AgentMetrics,
}

/// The producer settings every driftwatch producer uses; `extra` comes last and wins.
pub fn producer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", &cfg.client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", cfg.linger_ms.to_string())
        .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
        .set(
            "queue.buffering.max.kbytes",
            cfg.queue_max_kbytes.to_string(),
        );
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

impl KafkaSink {
    /// Create the producer. Does not contact the brokers yet.
    pub fn new(cfg: &KafkaConfig, metrics: AgentMetrics) -> Result<Self, SinkError> {
        let producer: FutureProducer = producer_config(cfg).create().map_err(SinkError::Create)?;
        Ok(KafkaSink {
            producer,
            topic: cfg.topic.clone(),
            timeout: Duration::from_millis(cfg.message_timeout_ms),
            metrics,
        })
    }

    /// Send a batch and wait until Kafka confirmed all of it.
    pub async fn submit(&self, records: &[Record]) -> Result<(), SinkError> {
        let deadline = Instant::now() + self.timeout;
        let total = records.len();
        let mut pending = Vec::with_capacity(total);
        let mut failed = 0;
        let mut first: Option<String> = None;
        'records: for r in records {
            let mut record = FutureRecord::to(&self.topic)
                .key(r.key.as_str())
                .payload(r.payload.as_slice());
            loop {
                // send_result enqueues now; awaiting the futures later does not delay sending.
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < deadline =>
                    {
                        // librdkafka's queue is bounded on purpose: wait for room.
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => {
                        failed += 1;
                        first.get_or_insert_with(|| e.to_string());
                        continue 'records;
                    }
                }
            }
        }
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) => self.metrics.kafka_delivered.inc(),
                Ok(Err((e, _))) => {
                    failed += 1;
                    first.get_or_insert_with(|| e.to_string());
                }
                Err(_) => {
                    failed += 1;
                    first.get_or_insert_with(|| "producer shut down".into());
                }
            }
        }
        if failed > 0 {
            self.metrics.kafka_errors.inc_by(failed as u64);
            return Err(SinkError::Delivery {
                failed,
                total,
                first: first.unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Wait up to `grace` for everything in flight; a producer must never be left to `Drop`,
    /// which purges what is queued.
    pub fn flush(&self, grace: Duration) -> Result<(), KafkaError> {
        self.producer.flush(Timeout::After(grace))
    }
}
