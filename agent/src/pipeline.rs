//! The durable path from an accepted batch to Kafka: the spool writer, the fsync ticker
//! and the sender, and the order in which they stop.
//!
//! ```text
//! HTTP handler ──append()──▶ writer thread ──▶ spool (disk) ──▶ sender thread ──▶ Kafka
//!      ▲  202 once written (interval)  │ group commit                 │ confirmations
//!      └───── or fsynced (always) ─────┘                              ▼
//!                                               `confirmed` persisted, segments deleted
//! ```
//!
//! - The **writer** thread takes every batch waiting in its channel, checks each against
//!   the disk budget (`max_spool_bytes`), appends the accepted ones with one `write` (and
//!   one `fdatasync` under `fsync = "always"`: group commit), then publishes the new end
//!   of the log to the sender and answers each request.
//! - Under `fsync = "interval"` a **ticker** thread `fdatasync`s the open segment every
//!   `fsync_interval_ms` through its own file handle, so the writer never waits for it.
//! - The **sender** ([`crate::sink`]) follows the log up to the published end.
//!
//! Shutdown: the HTTP server stops accepting and finishes its requests; then the writer
//! takes what is queued, syncs and stops; then the sender sends for up to the grace period
//! and persists the confirmed position. What is not confirmed stays in the spool.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::config::{AgentConfig, Fsync};
use crate::metrics::AgentMetrics;
use crate::sink::{self, SenderSetup};
use crate::spool::{FsyncPolicy, Recovery, Spool, SpoolRecord};

/// State shared by writer, ticker and sender.
pub struct Shared {
    /// One past the last sequence written and published: the sender reads below it.
    pub written: AtomicU64,
    /// The highest sequence Kafka confirmed and the spool persisted.
    pub confirmed: AtomicU64,
    stop: Mutex<Option<Instant>>,
    ticker_stop: AtomicBool,
}

impl Shared {
    /// When the sender must stop, once shutdown began.
    pub fn stop_deadline(&self) -> Option<Instant> {
        *lock(&self.stop)
    }

    /// Events acknowledged and not yet confirmed by Kafka.
    pub fn backlog(&self) -> u64 {
        self.written
            .load(Ordering::Acquire)
            .saturating_sub(self.confirmed.load(Ordering::Acquire) + 1)
    }
}

/// Lock a mutex shared by the spool threads. A thread that panicked holding it left
/// plain data (the spool's state is on disk), so the guard is taken over, not refused.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a batch was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The disk budget is used up by events Kafka has not confirmed.
    #[error("the spool is full ({budget} bytes of events not yet confirmed by Kafka)")]
    Full {
        /// `max_spool_bytes`.
        budget: u64,
    },
    /// The write failed (disk full, I/O error); nothing of the batch is kept.
    #[error("cannot write the spool: {0}")]
    Disk(String),
    /// The agent is shutting down.
    #[error("the agent is shutting down")]
    Stopping,
    /// The write took longer than the request may wait.
    #[error("the spool did not answer within {0:?}")]
    Slow(Duration),
}

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The spool directory cannot be used.
    #[error("cannot open the spool in {dir}: {source}")]
    Spool {
        /// The directory.
        dir: String,
        /// Why.
        source: io::Error,
    },
    /// The producer configuration is unusable.
    #[error("cannot create Kafka producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
}

enum Request {
    Append {
        records: Vec<SpoolRecord>,
        reply: oneshot::Sender<Result<(), AppendError>>,
    },
    Close,
}

/// Requests wait at most this long for the spool before answering 503.
const APPEND_TIMEOUT: Duration = Duration::from_secs(5);
/// A group commit takes at most this many bytes of requests.
const GROUP_BYTES: u64 = 8 * 1024 * 1024;

/// The running writer, ticker and sender.
pub struct Pipeline {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pipeline {
    /// Open and recover the spool, then start the threads. Blocking: call it off the
    /// async workers.
    pub fn start(
        config: &AgentConfig,
        metrics: AgentMetrics,
    ) -> Result<(Pipeline, Recovery), PipelineError> {
        let spool_dir = spool_dir(&config.data_dir);
        let policy = match config.spool.fsync {
            Fsync::Always => FsyncPolicy::Always,
            Fsync::Interval => FsyncPolicy::Interval,
        };
        let (spool, recovery) = Spool::open(&spool_dir, config.spool.segment_bytes, policy)
            .map_err(|source| PipelineError::Spool {
                dir: spool_dir.display().to_string(),
                source,
            })?;
        let shared = Arc::new(Shared {
            written: AtomicU64::new(spool.next_seq()),
            confirmed: AtomicU64::new(spool.confirmed()),
            stop: Mutex::new(None),
            ticker_stop: AtomicBool::new(false),
        });
        metrics.spool_bytes.set(spool.bytes() as i64);
        metrics
            .spool_budget
            .set(config.spool.max_spool_bytes as i64);
        metrics.spool_backlog.set(shared.backlog() as i64);
        let spool = Arc::new(Mutex::new(spool));
        let (wake_tx, wake_rx) = std::sync::mpsc::sync_channel(1);
        let sender = sink::start(SenderSetup {
            kafka: config.kafka.clone(),
            spool: spool.clone(),
            spool_dir,
            dead_letter_dir: config.data_dir.join("dead-letter"),
            shared: shared.clone(),
            wake: wake_rx,
            metrics: metrics.clone(),
        })?;
        let mut threads = vec![sender];
        let (tx, rx) = mpsc::channel(1024);
        let writer = Writer {
            spool: spool.clone(),
            shared: shared.clone(),
            wake: wake_tx,
            budget: config.spool.max_spool_bytes,
            metrics,
        };
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|source| PipelineError::Spool {
                    dir: config.data_dir.display().to_string(),
                    source,
                })
        };
        threads.push(spawn("spool-writer", Box::new(move || writer.run(rx)))?);
        if policy == FsyncPolicy::Interval {
            let every = Duration::from_millis(config.spool.fsync_interval_ms);
            let (spool, shared) = (spool.clone(), shared.clone());
            threads.push(spawn(
                "spool-fsync",
                Box::new(move || ticker(spool, shared, every)),
            )?);
        }
        Ok((
            Pipeline {
                tx,
                shared,
                threads: Mutex::new(threads),
            },
            recovery,
        ))
    }

    /// Append a batch to the spool; `Ok` means it is written (and fsynced under
    /// `always`), so it may be acknowledged.
    pub async fn append(&self, records: Vec<SpoolRecord>) -> Result<(), AppendError> {
        let (reply, answer) = oneshot::channel();
        let request = Request::Append { records, reply };
        let wait = async {
            self.tx
                .send(request)
                .await
                .map_err(|_| AppendError::Stopping)?;
            answer.await.map_err(|_| AppendError::Stopping)?
        };
        match tokio::time::timeout(APPEND_TIMEOUT, wait).await {
            Ok(r) => r,
            Err(_) => Err(AppendError::Slow(APPEND_TIMEOUT)),
        }
    }

    /// Events acknowledged and not yet confirmed by Kafka.
    pub fn backlog(&self) -> u64 {
        self.shared.backlog()
    }

    /// Stop: the writer finishes what is queued and syncs, the sender sends for up to
    /// `grace`. Blocking. Returns the events left in the spool.
    pub async fn shutdown(&self, grace: Duration) -> u64 {
        let _ = self.tx.send(Request::Close).await;
        *lock(&self.shared.stop) = Some(Instant::now() + grace);
        self.shared.ticker_stop.store(true, Ordering::Release);
        let threads = std::mem::take(&mut *lock(&self.threads));
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        if joined.is_err() {
            tracing::warn!("a spool thread panicked during shutdown");
        }
        self.backlog()
    }
}

struct Writer {
    spool: Arc<Mutex<Spool>>,
    shared: Arc<Shared>,
    wake: SyncSender<()>,
    budget: u64,
    metrics: AgentMetrics,
}

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<Request>) {
        let mut closing = false;
        while !closing {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let mut group = Vec::new();
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Close => {
                        closing = true;
                        break;
                    }
                    Request::Append { records, reply } => {
                        bytes += Spool::encoded_len(&records);
                        group.push((records, reply));
                    }
                }
                if bytes < GROUP_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(group);
        }
        // Anything still queued was sent after Close: refuse it.
        rx.close();
        while let Ok(r) = rx.try_recv() {
            if let Request::Append { reply, .. } = r {
                let _ = reply.send(Err(AppendError::Stopping));
            }
        }
        let mut spool = lock(&self.spool);
        if let Err(e) = spool.sync() {
            tracing::warn!(error = %e, "final spool fsync failed");
        }
    }

    /// Check each request against the budget, write the accepted ones together, answer.
    #[allow(clippy::type_complexity)]
    fn commit(&self, group: Vec<(Vec<SpoolRecord>, oneshot::Sender<Result<(), AppendError>>)>) {
        let mut spool = lock(&self.spool);
        let mut accepted = Vec::new();
        let mut replies = Vec::new();
        let mut bytes = 0;
        for (records, reply) in group {
            let n = Spool::encoded_len(&records);
            match spool.has_room(bytes + n, self.budget) {
                Ok(true) => {
                    bytes += n;
                    accepted.extend(records);
                    replies.push(reply);
                }
                Ok(false) => {
                    let _ = reply.send(Err(AppendError::Full {
                        budget: self.budget,
                    }));
                }
                Err(e) => {
                    let _ = reply.send(Err(AppendError::Disk(e.to_string())));
                }
            }
        }
        let result = spool.append(&accepted);
        let on_disk = spool.bytes();
        drop(spool);
        match result {
            Ok(last) => {
                self.shared.written.store(last + 1, Ordering::Release);
                let _ = self.wake.try_send(());
                for reply in replies {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = accepted.len(), "spool write failed; batches refused");
                for reply in replies {
                    let _ = reply.send(Err(AppendError::Disk(e.to_string())));
                }
            }
        }
        self.metrics.spool_bytes.set(on_disk as i64);
        self.metrics.spool_backlog.set(self.shared.backlog() as i64);
    }
}

/// The `interval` policy: `fdatasync` the open segment when something was written since
/// the last tick, through a second handle so appends do not wait for it.
fn ticker(spool: Arc<Mutex<Spool>>, shared: Arc<Shared>, every: Duration) {
    let mut synced = shared.written.load(Ordering::Acquire);
    while !shared.ticker_stop.load(Ordering::Acquire) {
        std::thread::sleep(every);
        let written = shared.written.load(Ordering::Acquire);
        if written == synced {
            continue;
        }
        let handle = lock(&spool).sync_handle();
        match handle.and_then(|f| f.sync_data()) {
            Ok(()) => synced = written,
            Err(e) => tracing::warn!(error = %e, "spool fsync failed; retrying next tick"),
        }
    }
}

/// The spool directory under a data directory.
pub fn spool_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("spool")
}
