//! Kafka client defaults shared by the agent's producer and the detector's clients.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;

/// A client configuration: `bootstrap.servers`, then the operator's librdkafka
/// properties (which win over any default a caller sets before them).
pub fn client_config(brokers: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}
