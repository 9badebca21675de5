//! The sender: follows the spool and produces its records to Kafka, in order, and reports
//! Kafka's confirmations back to the spool so confirmed segments can be deleted.
//!
//! One thread owns a [`BaseProducer`] (idempotent, `acks=all`, lz4) whose delivery
//! callbacks carry the spool sequence number. librdkafka's queue is bounded and is not the
//! buffer: the spool is. The sender keeps a window of at most [`MAX_WINDOW`] sequences
//! past the confirmed one, with a state per sequence:
//!
//! - a confirmed delivery marks it done; the confirmed watermark is the end of the run
//!   of done sequences, persisted at most every [`PERSIST_EVERY`];
//! - a failed delivery that may succeed later (timeout, purge, broker down: anything but
//!   the permanent errors below) is never dropped: once nothing is in flight, the reader
//!   rewinds to the watermark and every sequence not done is sent again, in order, after
//!   a backoff. `message.timeout.ms` therefore only bounds one attempt;
//! - a permanent refusal (message too large, not authorised, invalid record) goes to the
//!   dead-letter spool (`<data_dir>/dead-letter`, the same record format) and is counted
//!   in `driftwatch_agent_dead_letter_total{reason}`; then it is done.
//!
//! A fatal producer error (idempotence broken) recreates the producer and resends what
//! was in flight. `driftwatch_agent_kafka_up` is 1 after a confirmed delivery or a
//! successful metadata probe, and 0 after every broker went down, a send timed out, or
//! sends in flight got no answer for `stalled_after_ms` (a hung broker).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use crate::config::KafkaConfig;
use crate::metrics::AgentMetrics;
use crate::pipeline::{lock, Shared};
use crate::spool::{persist_confirmed, FsyncPolicy, ReadError, Spool, SpoolReader, SpoolRecord};
use driftwatch_common::kafka::SecurityError;

/// Most sequences past the confirmed watermark the sender reads ahead (bounds memory
/// during an outage: the rest waits on disk).
pub const MAX_WINDOW: u64 = 50_000;
/// How often the confirmed watermark is persisted (and confirmed segments deleted).
pub const PERSIST_EVERY: Duration = Duration::from_millis(100);
const READ_BATCH: usize = 1_000;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const PROBE_EVERY: Duration = Duration::from_secs(2);
const PROBE_IDLE_EVERY: Duration = Duration::from_secs(30);

/// The producer settings every driftwatch producer uses, then the security settings
/// (secrets read now, so a rotated password file is taken at the next reconnect);
/// `properties` come last and win.
pub fn producer_config(cfg: &KafkaConfig) -> Result<ClientConfig, SecurityError> {
    let security = cfg.security.resolve()?;
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
    security.apply(&mut c);
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    Ok(c)
}

/// Kafka refused an event for good: it goes to the dead-letter spool.
fn permanent_reason(e: &KafkaError) -> Option<&'static str> {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code()? {
        C::MessageSizeTooLarge | C::InvalidMessageSize => Some("too_large"),
        C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed => Some("unauthorized"),
        C::InvalidRecord | C::UnsupportedForMessageFormat => Some("invalid"),
        _ => None,
    }
}

enum Outcome {
    Delivered,
    Retry(KafkaError),
    Permanent(&'static str, KafkaError, SpoolRecord),
}

/// Collects delivery reports during `poll`, on the sender's own thread.
struct SendContext {
    reports: Mutex<Vec<(u64, Outcome)>>,
    kafka_up: IntGauge,
}

impl ClientContext for SendContext {
    fn error(&self, error: KafkaError, reason: &str) {
        use RDKafkaErrorCode as C;
        match error.rdkafka_error_code() {
            Some(C::AllBrokersDown) => {
                self.kafka_up.set(0);
                tracing::warn!(%reason, "all Kafka brokers are down; events wait in the spool");
            }
            // A wrong password or CA never heals by retrying: say so loudly.
            Some(C::Authentication | C::SaslAuthenticationFailed | C::SSL) => {
                self.kafka_up.set(0);
                tracing::error!(%reason, "Kafka refused the connection (TLS or SASL); check kafka.security; events wait in the spool");
            }
            _ => {
                tracing::debug!(%error, %reason, "Kafka client error");
            }
        }
    }
}

impl ProducerContext for SendContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let outcome = match result {
            Ok(_) => Outcome::Delivered,
            Err((e, msg)) => match permanent_reason(e) {
                Some(reason) => Outcome::Permanent(
                    reason,
                    e.clone(),
                    SpoolRecord {
                        key: String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned(),
                        payload: msg.payload().unwrap_or_default().to_vec(),
                    },
                ),
                None => Outcome::Retry(e.clone()),
            },
        };
        lock(&self.reports).push((seq as u64, outcome));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Read, never sent.
    Pending,
    InFlight,
    /// Sent, not confirmed: to be sent again.
    Failed,
    /// Confirmed, dead-lettered, or lost before the sender saw it.
    Done,
}

/// What the sender needs to run.
pub struct SenderSetup {
    /// Producer settings.
    pub kafka: KafkaConfig,
    /// The spool (for marking confirmations).
    pub spool: Arc<Mutex<Spool>>,
    /// The spool directory (read by the sender's own reader).
    pub spool_dir: PathBuf,
    /// Where dead letters go.
    pub dead_letter_dir: PathBuf,
    /// Publication watermark and stop signal shared with the writer.
    pub shared: Arc<Shared>,
    /// Woken when the writer published records.
    pub wake: Receiver<()>,
    /// Metrics.
    pub metrics: AgentMetrics,
}

struct Sender {
    setup: SenderSetup,
    producer: BaseProducer<SendContext>,
    topic: String,
    reader: SpoolReader,
    dead: Option<Spool>,
    /// `states[i]` is the state of sequence `base + i`.
    states: VecDeque<State>,
    base: u64,
    queue: VecDeque<(u64, SpoolRecord)>,
    inflight: usize,
    rewind: bool,
    /// A delivery report said the broker refuses this producer's id or epoch.
    fenced: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    persisted: u64,
    last_persist: Instant,
    last_probe: Option<Instant>,
    /// When Kafka last answered a send, or sending started after an idle spell.
    last_progress: Instant,
}

fn create_producer(setup: &SenderSetup) -> Result<BaseProducer<SendContext>, KafkaError> {
    producer_config(&setup.kafka)
        .map_err(|e| KafkaError::ClientCreation(e.to_string()))?
        .create_with_context(SendContext {
            reports: Mutex::new(Vec::new()),
            kafka_up: setup.metrics.kafka_up.clone(),
        })
}

/// Create the producer; fails only on an unusable producer configuration.
pub fn start(setup: SenderSetup) -> Result<std::thread::JoinHandle<()>, KafkaError> {
    let producer = create_producer(&setup)?;
    let confirmed = lock(&setup.spool).confirmed();
    let sender = Sender {
        topic: setup.kafka.topic.clone(),
        reader: SpoolReader::new(&setup.spool_dir, confirmed + 1),
        producer,
        dead: None,
        states: VecDeque::new(),
        base: confirmed + 1,
        queue: VecDeque::new(),
        inflight: 0,
        rewind: false,
        fenced: false,
        retry_at: None,
        backoff: Duration::from_millis(200),
        persisted: confirmed,
        last_persist: Instant::now(),
        last_probe: None,
        last_progress: Instant::now(),
        setup,
    };
    std::thread::Builder::new()
        .name("spool-sender".into())
        .spawn(move || sender.run())
        .map_err(|e| {
            tracing::error!(error = %e, "cannot start the sender thread");
            KafkaError::ClientCreation(e.to_string())
        })
}

impl Sender {
    fn run(mut self) {
        loop {
            let written = self.setup.shared.written.load(Ordering::Acquire);
            let read_from = self.reader.position();
            self.fill(written);
            // Nothing new could be read (an I/O error, a segment not there yet): wait
            // rather than spin.
            let stalled = self.queue.is_empty() && self.reader.position() == read_from;
            self.send_queued();
            let busy = self.inflight > 0;
            self.producer.poll(if busy {
                Duration::from_millis(2)
            } else {
                Duration::ZERO
            });
            self.take_reports();
            self.check_fatal();
            self.advance();
            self.maybe_rewind();
            self.maybe_persist(false);
            self.maybe_probe();
            let drained = self.base >= written && self.inflight == 0;
            if let Some(deadline) = self.setup.shared.stop_deadline() {
                let written = self.setup.shared.written.load(Ordering::Acquire);
                if (self.base >= written && self.inflight == 0) || Instant::now() >= deadline {
                    break;
                }
            }
            let idle = !busy
                && self.queue.is_empty()
                && (drained || stalled || self.rewind || self.window_full());
            if idle {
                let wait = match self.retry_at {
                    Some(t) => t.saturating_duration_since(Instant::now()),
                    None => Duration::from_millis(100),
                }
                .min(Duration::from_millis(100));
                match self.setup.wake.recv_timeout(wait) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
        self.maybe_persist(true);
        let left = self
            .setup
            .shared
            .written
            .load(Ordering::Acquire)
            .saturating_sub(self.base);
        if left > 0 {
            tracing::info!(
                events = left,
                "sender stopped; unconfirmed events stay in the spool for the next start"
            );
        }
        // Dropping the producer purges what is still queued; those events are not
        // confirmed, so they stay in the spool.
    }

    fn window_full(&self) -> bool {
        self.reader.position().saturating_sub(self.base) >= MAX_WINDOW
    }

    /// Read the next records from the spool into the queue.
    fn fill(&mut self, written: u64) {
        if !self.queue.is_empty() || self.rewind || self.window_full() {
            return;
        }
        let mut batch = Vec::new();
        let max = READ_BATCH.min((MAX_WINDOW - (self.reader.position() - self.base)) as usize);
        match self.reader.read(written, max, &mut batch) {
            Ok(()) => {}
            Err(ReadError::Skipped(s)) => {
                tracing::error!(error = %s, "spool damaged while running; events lost");
                self.setup
                    .metrics
                    .spool_lost
                    .with_label_values(&["corruption"])
                    .inc_by(s.skipped);
            }
            Err(ReadError::Io(e)) => {
                tracing::error!(error = %e, "cannot read the spool; retrying");
            }
        }
        for (seq, record) in batch {
            if seq < self.base {
                continue;
            }
            // Sequences the reader skipped (a quarantined segment) are done: their loss
            // was counted where it was found.
            while self.base + (self.states.len() as u64) < seq {
                self.states.push_back(State::Done);
            }
            let i = (seq - self.base) as usize;
            if i == self.states.len() {
                self.states.push_back(State::Pending);
            }
            if self.states[i] != State::Done {
                self.queue.push_back((seq, record));
            }
        }
        let reached = self.reader.position();
        while self.base + (self.states.len() as u64) < reached {
            self.states.push_back(State::Done);
        }
    }

    fn send_queued(&mut self) {
        while !self.rewind {
            let Some((seq, record)) = self.queue.pop_front() else {
                return;
            };
            let i = (seq - self.base) as usize;
            let sent = self.producer.send(
                BaseRecord::with_opaque_to(&self.topic, seq as usize)
                    .key(record.key.as_bytes())
                    .payload(record.payload.as_slice()),
            );
            match sent {
                Ok(()) => {
                    if self.states[i] == State::Failed {
                        self.setup.metrics.kafka_resent.inc();
                    }
                    self.states[i] = State::InFlight;
                    if self.inflight == 0 {
                        self.last_progress = Instant::now();
                    }
                    self.inflight += 1;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.queue.push_front((seq, record));
                    return;
                }
                Err((e, _)) => match permanent_reason(&e) {
                    Some(reason) => {
                        self.dead_letter(seq, reason, &e, record);
                    }
                    None => {
                        tracing::warn!(error = %e, "cannot enqueue for Kafka; resending from the spool");
                        self.states[i] = State::Failed;
                        self.rewind = true;
                    }
                },
            }
        }
    }

    fn dead_letter(&mut self, seq: u64, reason: &'static str, e: &KafkaError, r: SpoolRecord) {
        let i = (seq - self.base) as usize;
        if self.dead.is_none() {
            match Spool::open(
                &self.setup.dead_letter_dir,
                64 * 1024 * 1024,
                FsyncPolicy::Always,
            ) {
                Ok((spool, _)) => self.dead = Some(spool),
                Err(err) => {
                    tracing::error!(error = %err, "cannot open the dead-letter spool; keeping the event");
                    self.states[i] = State::Failed;
                    self.rewind = true;
                    return;
                }
            }
        }
        let kept = self
            .dead
            .as_mut()
            .map(|d| d.append(std::slice::from_ref(&r)));
        match kept {
            Some(Ok(_)) => {
                tracing::warn!(seq, reason, error = %e, "Kafka refused an event for good; kept in the dead-letter spool");
                self.setup
                    .metrics
                    .dead_letter
                    .with_label_values(&[reason])
                    .inc();
                self.states[i] = State::Done;
            }
            _ => {
                tracing::error!(seq, "cannot write the dead-letter spool; keeping the event");
                self.states[i] = State::Failed;
                self.rewind = true;
            }
        }
    }

    fn take_reports(&mut self) {
        let reports = std::mem::take(&mut *lock(&self.producer.context().reports));
        for (seq, outcome) in reports {
            if seq < self.base {
                continue;
            }
            let i = (seq - self.base) as usize;
            if self.states.get(i) != Some(&State::InFlight) {
                continue;
            }
            self.inflight -= 1;
            self.last_progress = Instant::now();
            match outcome {
                Outcome::Delivered => {
                    self.states[i] = State::Done;
                    self.setup.metrics.kafka_delivered.inc();
                    self.setup.metrics.kafka_up.set(1);
                    self.backoff = Duration::from_millis(200);
                }
                Outcome::Retry(e) => {
                    match e.rdkafka_error_code() {
                        Some(RDKafkaErrorCode::MessageTimedOut) => {
                            self.setup.metrics.kafka_up.set(0)
                        }
                        // After an outage a broker may refuse the producer's id or epoch
                        // for good; only a new producer (a new id) gets through.
                        Some(
                            RDKafkaErrorCode::ProducerFenced
                            | RDKafkaErrorCode::InvalidProducerEpoch
                            | RDKafkaErrorCode::UnknownProducerId
                            | RDKafkaErrorCode::InvalidProducerIdMapping
                            | RDKafkaErrorCode::OutOfOrderSequenceNumber,
                        ) => self.fenced = true,
                        _ => {}
                    }
                    if !self.rewind {
                        tracing::warn!(error = %e, "Kafka did not confirm; the spool resends");
                    }
                    self.setup.metrics.kafka_errors.inc();
                    self.states[i] = State::Failed;
                    self.rewind = true;
                }
                Outcome::Permanent(reason, e, record) => {
                    self.states[i] = State::InFlight;
                    self.dead_letter(seq, reason, &e, record);
                }
            }
        }
    }

    fn check_fatal(&mut self) {
        let (code, reason) = match self.producer.client().fatal_error() {
            Some(fatal) => fatal,
            None if self.fenced => (
                RDKafkaErrorCode::ProducerFenced,
                "the broker no longer accepts this producer id or epoch".to_owned(),
            ),
            None => return,
        };
        self.fenced = false;
        tracing::error!(?code, %reason, "Kafka producer failed fatally; recreating it and resending");
        match create_producer(&self.setup) {
            Ok(p) => {
                // Dropping the old producer purges its queue; its reports are discarded.
                self.producer = p;
                for s in self.states.iter_mut().filter(|s| **s == State::InFlight) {
                    *s = State::Failed;
                }
                self.inflight = 0;
                self.rewind = true;
            }
            Err(e) => tracing::error!(error = %e, "cannot recreate the producer"),
        }
    }

    fn advance(&mut self) {
        while self.states.front() == Some(&State::Done) {
            self.states.pop_front();
            self.base += 1;
        }
    }

    /// Once nothing is in flight after a failure, start again at the watermark.
    fn maybe_rewind(&mut self) {
        if !self.rewind || self.inflight > 0 {
            return;
        }
        let now = Instant::now();
        let at = *self.retry_at.get_or_insert_with(|| {
            let at = now + self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            at
        });
        if now < at {
            return;
        }
        self.retry_at = None;
        self.rewind = false;
        self.queue.clear();
        self.reader.seek(self.base);
    }

    fn maybe_persist(&mut self, force: bool) {
        let confirmed = self.base - 1;
        if confirmed <= self.persisted || (!force && self.last_persist.elapsed() < PERSIST_EVERY) {
            return;
        }
        self.last_persist = Instant::now();
        if let Err(e) = persist_confirmed(&self.setup.spool_dir, confirmed) {
            tracing::warn!(error = %e, "cannot persist the confirmed position; retrying");
            return;
        }
        let bytes = {
            let mut spool = lock(&self.setup.spool);
            if let Err(e) = spool.mark_confirmed(confirmed) {
                tracing::warn!(error = %e, "cannot delete confirmed segments; retrying");
            }
            spool.bytes()
        };
        self.persisted = confirmed;
        self.setup
            .shared
            .confirmed
            .store(confirmed, Ordering::Release);
        self.setup.metrics.spool_bytes.set(bytes as i64);
        self.setup
            .metrics
            .spool_backlog
            .set(self.setup.shared.backlog() as i64);
    }

    /// When nothing is in flight, ask Kafka for metadata now and then: every
    /// [`PROBE_EVERY`] while it is marked down (so the gauge recovers and a resend need
    /// not wait out its backoff), every [`PROBE_IDLE_EVERY`] while it is up and idle (so
    /// an outage with no traffic still shows).
    fn maybe_probe(&mut self) {
        let up = self.setup.metrics.kafka_up.get() == 1;
        // With sends in flight there is no probe: a broker that stops answering them
        // (hung, partitioned) is down once nothing was confirmed for `stalled_after_ms`.
        if up
            && self.inflight > 0
            && self.last_progress.elapsed()
                >= Duration::from_millis(self.setup.kafka.stalled_after_ms)
        {
            self.setup.metrics.kafka_up.set(0);
            tracing::warn!(
                in_flight = self.inflight,
                "Kafka has confirmed nothing for {} ms; events wait in the spool",
                self.setup.kafka.stalled_after_ms
            );
            return;
        }
        let every = if up { PROBE_IDLE_EVERY } else { PROBE_EVERY };
        if self.inflight > 0 || self.last_probe.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last_probe = Some(Instant::now());
        let answered = self
            .producer
            .client()
            .fetch_metadata(None, Duration::from_secs(2))
            .is_ok();
        self.setup.metrics.kafka_up.set(i64::from(answered));
        if answered && self.rewind {
            self.retry_at = Some(Instant::now());
        }
    }
}
