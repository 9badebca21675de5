//! Consumer lag per partition, sampled off the consume loop.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::KafkaOptions;
use crate::metrics::DetectorMetrics;

/// Every 10 s, the lag of each partition this instance holds: the broker's high
/// watermark (a query that can take a second or more) minus the position, on a thread
/// and a client of its own so the consume loop never waits on it.
pub(super) fn lag_sampler(
    opts: &KafkaOptions,
    positions: Arc<Mutex<HashMap<i32, i64>>>,
    metrics: DetectorMetrics,
    stop: Arc<AtomicBool>,
) {
    let client: BaseConsumer = match opts
        .client_config()
        .set("group.id", format!("{}.lag", opts.group_id))
        .set("enable.auto.commit", "false")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no lag metric: cannot create its client");
            return;
        }
    };
    let topic = opts.events_topic.clone();
    std::thread::spawn(move || {
        let mut seen: HashSet<i32> = HashSet::new();
        while !stop.load(Ordering::SeqCst) {
            let now: HashMap<i32, i64> =
                positions.lock().unwrap_or_else(|p| p.into_inner()).clone();
            for gone in seen.difference(&now.keys().copied().collect()) {
                let _ = metrics.lag.remove_label_values(&[&gone.to_string()]);
            }
            seen = now.keys().copied().collect();
            for (partition, position) in now {
                if let Ok((_, high)) =
                    client.fetch_watermarks(&topic, partition, Duration::from_secs(5))
                {
                    metrics
                        .lag
                        .with_label_values(&[&partition.to_string()])
                        .set((high - position).max(0));
                }
            }
            for _ in 0..100 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
}
