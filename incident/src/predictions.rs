//! The decisions to re-review (owk-02): the pseudonymous ids of every prediction a system
//! made since the degradation onset, read back from the events topic. The agent
//! pseudonymised the ids (keyed HMAC) before they left the pod, so the list is what a
//! deployer matches against its own records, and nothing more.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use driftwatch_schema::Event;

/// What an export found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exported {
    /// Prediction ids written.
    pub predictions: u64,
    /// Events of other systems or kinds skipped.
    pub skipped: u64,
    /// Payloads that were not events.
    pub unreadable: u64,
    /// Partitions whose retained data starts after `from` (the oldest predictions are
    /// gone from the topic).
    pub truncated_partitions: Vec<i32>,
}

/// An export that failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Kafka.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The topic is not there.
    #[error("topic {0} does not exist")]
    NoTopic(String),
    /// Writing the output.
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
    /// The partitions were not read to their end in time.
    #[error("timed out after {0:?} before reaching the end of every partition")]
    Timeout(Duration),
}

/// Write one JSON line per prediction of `system` with `from <= timestamp < until`
/// (`prediction_id`, `timestamp`, `model_version`), reading each partition of `topic`
/// from the offset of `from` to its end as of the start.
pub fn export_since(
    config: &ClientConfig,
    topic: &str,
    system: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    timeout: Duration,
    out: &mut impl Write,
) -> Result<Exported, ExportError> {
    let mut c = config.clone();
    c.set(
        "group.id",
        format!("driftwatch-export-{}", std::process::id()),
    )
    .set("enable.auto.commit", "false")
    .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = c.create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(ExportError::NoTopic(topic.to_owned()));
    }
    let mut want = TopicPartitionList::new();
    for p in &partitions {
        want.add_partition_offset(topic, *p, Offset::Offset(from.timestamp_millis()))?;
    }
    let starts = consumer.offsets_for_times(want, Duration::from_secs(10))?;
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut result = Exported::default();
    let mut assign = TopicPartitionList::new();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10))?;
        // Message timestamps are the agent's send times, never before the prediction's
        // own: the offset of `from` is a safe start. A broker that cannot answer the
        // lookup (End, Invalid) is read from its low watermark; the filter on the event
        // time below is what decides.
        let start = starts
            .find_partition(topic, *p)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) if o >= low && o <= high => Some(o),
                _ => None,
            })
            .unwrap_or(low);
        if start == low && low > 0 {
            // Retention may have removed predictions made after the onset.
            result.truncated_partitions.push(*p);
        }
        if start < high {
            ends.insert(*p, high);
        }
        // Every partition is read, even one whose watermark says it is empty: the quiet
        // period below ends those.
        assign.add_partition_offset(topic, *p, Offset::Offset(start))?;
    }
    consumer.assign(&assign)?;
    let deadline = Instant::now() + timeout;
    // Past every partition's watermark, read on until the topic is quiet for a moment:
    // a broker may report the watermark at the start of its last batch (tansu 0.6 does),
    // and the time filter below drops anything newer than `until` anyway.
    let quiet = Duration::from_secs(2);
    let mut last_message = Instant::now();
    while !ends.is_empty() || last_message.elapsed() < quiet {
        if Instant::now() > deadline {
            return Err(ExportError::Timeout(timeout));
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m?;
        last_message = Instant::now();
        let p = m.partition();
        if let Some(end) = ends.get(&p) {
            if m.offset() + 1 >= *end {
                ends.remove(&p);
            }
        }
        match Event::from_wire(m.payload().unwrap_or_default()) {
            Ok(Event::Prediction(pr)) if pr.system_id == system => {
                if pr.timestamp >= from && pr.timestamp < until {
                    serde_json::to_writer(
                        &mut *out,
                        &serde_json::json!({
                            "prediction_id": pr.prediction_id,
                            "timestamp": crate::audit::ts(pr.timestamp),
                            "model_version": pr.model_version,
                        }),
                    )
                    .map_err(std::io::Error::other)?;
                    out.write_all(b"\n")?;
                    result.predictions += 1;
                } else {
                    result.skipped += 1;
                }
            }
            Ok(_) => result.skipped += 1,
            Err(_) => result.unreadable += 1,
        }
    }
    out.flush()?;
    Ok(result)
}
