//! Kafka helpers the end-to-end tests share: producing wire events, a one-node mock
//! cluster with the detector's topics, reading a topic back.

use std::time::{Duration, Instant};

use driftwatch_schema::Event;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::Message;

/// The topics the detector uses by default.
pub const TOPICS: [&str; 4] = [
    "driftwatch.events",
    "driftwatch.alerts",
    "driftwatch.reports",
    "driftwatch.state",
];

/// Produce events to `topic` with key = system id, in order, and wait for them.
pub fn produce(brokers: &str, topic: &str, events: &[Event]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for e in events {
        let payload = e.to_wire();
        let mut record = BaseRecord::to(topic).key(e.system_id()).payload(&payload);
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
    }
    p.flush(Duration::from_secs(60)).expect("flush");
}

/// A one-node mock cluster with the detector's four topics, one partition each; its
/// brokers.
pub fn mock_cluster() -> (MockCluster<'static, DefaultProducerContext>, String) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for t in TOPICS {
        cluster.create_topic(t, 1, 1).expect("topic");
    }
    let brokers = cluster.bootstrap_servers();
    (cluster, brokers)
}

/// Every payload of partition 0 of `topic`, from its start until `quiet` passes
/// without one.
pub fn read_quiet(brokers: &str, topic: &str, quiet: Duration) -> Vec<serde_json::Value> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON"));
            last = Instant::now();
        }
    }
    out
}
