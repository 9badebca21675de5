//! Helpers of `bench/detect-vs-consumer.sh`:
//!
//! - `kafka_bench produce BROKERS TOPIC N`: N wire-v1 predictions of the wide synthetic
//!   model (15 features, system `wide`; drift in the second half), keyed by system;
//! - `kafka_bench consume BROKERS TOPIC N`: a bare librdkafka consumer (a consumer group
//!   of its own, the detector's fetch settings) reading N messages; prints seconds.
//! - `kafka_bench plan WINDOW`: the plan the detector runs (`wide_plan_toml`).

use std::time::{Duration, Instant};

use driftwatch_detector::synth::{wide_plan_toml, WideModel};
use driftwatch_schema::Event;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["produce", brokers, topic, n] => {
            let n: usize = n.parse()?;
            let p: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", *brokers)
                .set("linger.ms", "20")
                .set("compression.type", "lz4")
                .set("queue.buffering.max.messages", "1000000")
                .create()?;
            let mut model = WideModel::new(7);
            for i in 0..n {
                let payload = Event::Prediction(model.next_prediction(i >= n / 2)).to_wire();
                let mut record = BaseRecord::to(topic).key("wide").payload(&payload);
                loop {
                    match p.send(record) {
                        Ok(()) => break,
                        Err((_, r)) => {
                            record = r;
                            p.poll(Duration::from_millis(5));
                        }
                    }
                }
            }
            p.flush(Duration::from_secs(300))?;
        }
        ["consume", brokers, topic, n] => {
            let n: usize = n.parse()?;
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", *brokers)
                .set("group.id", format!("bare-{}", std::process::id()))
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .set("partition.assignment.strategy", "range")
                .create()?;
            c.subscribe(&[topic])?;
            let mut got = 0usize;
            let mut bytes = 0usize;
            let mut start = None;
            while got < n {
                if let Some(m) = c.poll(Duration::from_millis(100)) {
                    let m = m?;
                    start.get_or_insert_with(Instant::now);
                    bytes += m.payload_len();
                    got += 1;
                }
            }
            let s = start.map_or(0.0, |t| t.elapsed().as_secs_f64());
            println!("{s:.3} {bytes}");
        }
        ["plan", window] => print!(
            "{}",
            wide_plan_toml("first_events = 50000", window.parse()?)
        ),
        _ => anyhow::bail!("usage: kafka_bench produce|consume BROKERS TOPIC N | plan WINDOW"),
    }
    Ok(())
}
