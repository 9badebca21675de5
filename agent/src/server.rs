//! The HTTP API: `POST /v1/predictions`, `POST /v1/outcomes`, `GET /metrics`, `/live`,
//! `/ready`.
//!
//! Answers: 202 `{"accepted": n}` once the batch is in the disk spool (written, and
//! fsynced under `fsync = "always"`); 400 with the list of bad events and fields; 413 for
//! a body or batch over the limits; 503 with `Retry-After` while the spool is recovering,
//! full, or cannot be written (nothing of that batch is acknowledged). With
//! `when_full = "drop_newest"` a full spool answers 202 `{"accepted": 0, "dropped": n}`.
//!
//! The server listens before the spool is recovered: `/live` answers at once, `/ready`
//! answers 503 until recovery is done and 200 from then on (a latch: a Kafka outage does
//! not flip it; `driftwatch_agent_kafka_up` says whether Kafka is reachable).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use driftwatch_schema::EventKind;
use prometheus::Registry;
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::{AgentConfig, WhenFull};
use crate::ingest::{parse_batch_into, IngestError, Limits};
use crate::metrics::{render, AgentMetrics};
use crate::pipeline::{AppendError, Pipeline, PipelineError};
use crate::privacy::{Applied, Privacy};
use crate::spool::SpoolRecord;

/// Bodies above this size are parsed off the async workers.
const INLINE_PARSE_BYTES: usize = 64 * 1024;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The spool or the producer could not start.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Metric registration failed (a name registered twice).
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
    /// The privacy section cannot be used.
    #[error(transparent)]
    Privacy(#[from] crate::privacy::PrivacyError),
    /// The Kafka security settings (for the control topic's consumer) cannot be used.
    #[error(transparent)]
    Security(#[from] driftwatch_common::kafka::SecurityError),
}

struct AppState {
    /// Set once the spool is recovered.
    pipeline: OnceLock<Pipeline>,
    privacy: Option<Arc<Privacy>>,
    metrics: AgentMetrics,
    registry: Registry,
    limits: Limits,
    /// One per ingest request in flight (`max_concurrent_requests`).
    ingest_permits: Arc<tokio::sync::Semaphore>,
    /// Time an ingest request's body may take to arrive.
    body_read_timeout: Duration,
    /// Largest Kafka message the producer may send (`message.max.bytes`).
    max_message_bytes: usize,
    when_full: WhenFull,
    ready: AtomicBool,
    /// The serving state per system, from the control topic.
    control: Arc<crate::control::ControlState>,
}

/// Serve on `listener` until `shutdown` resolves, then stop accepting, finish in-flight
/// requests, and send the spool to Kafka for up to `shutdown_grace_ms`; the rest stays in
/// the spool for the next start.
pub async fn run(
    listener: TcpListener,
    config: AgentConfig,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let admin = match config.admin_listen {
        Some(addr) => Some(TcpListener::bind(addr).await?),
        None => None,
    };
    serve(listener, admin, config, registry, shutdown).await
}

/// [`run`] with the admin listener (`/metrics`, `/live`, `/ready` only) already bound.
pub async fn serve(
    listener: TcpListener,
    admin: Option<TcpListener>,
    config: AgentConfig,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let metrics = AgentMetrics::new(&registry)?;
    let privacy = match &config.privacy {
        Some(p) => Some(Arc::new(Privacy::load(
            p,
            std::env::var("DRIFTWATCH_HMAC_KEY").ok(),
        )?)),
        None => None,
    };
    // The last known decisions, before the first request is answered (a data directory
    // that cannot be used is reported by the spool, with its path).
    let control = Arc::new(crate::control::ControlState::load(
        &config.data_dir,
        Some(metrics.serving.clone()),
    ));
    let (control_stop, control_stopped) = tokio::sync::watch::channel(false);
    let control_task = if config.kafka.control_topic.is_empty() {
        None
    } else {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &config.kafka.brokers)
            .set("client.id", &config.kafka.client_id);
        config.kafka.security.resolve()?.apply(&mut c);
        Some(tokio::spawn(crate::control::follow(
            c,
            config.kafka.control_topic.clone(),
            control.clone(),
            control_stopped,
        )))
    };
    let state = Arc::new(AppState {
        control,
        pipeline: OnceLock::new(),
        privacy,
        metrics: metrics.clone(),
        registry,
        limits: Limits::of(&config),
        ingest_permits: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_requests)),
        body_read_timeout: Duration::from_millis(config.body_read_timeout_ms),
        max_message_bytes: config
            .kafka
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES),
        when_full: config.spool.when_full,
        ready: AtomicBool::new(false),
    });
    tracing::info!(
        listen = %listener.local_addr()?,
        topic = %config.kafka.topic,
        brokers = %config.kafka.brokers,
        data_dir = %config.data_dir.display(),
        "driftwatch-agent serving; recovering the spool"
    );
    if let Some(w) = crate::spool::capacity_warning(
        config.spool.max_spool_bytes,
        crate::spool::filesystem_bytes(&config.data_dir),
    ) {
        tracing::warn!("{w}");
    }
    // Recovery runs while /live already answers; a spool that cannot be opened at all
    // (permissions, another agent holding it) stops the agent.
    let failed: Arc<Mutex<Option<PipelineError>>> = Arc::default();
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<()>();
    {
        let (state, failed, config) = (state.clone(), failed.clone(), config.clone());
        tokio::task::spawn_blocking(move || match Pipeline::start(&config, metrics) {
            Ok((pipeline, recovery)) => {
                let m = &state.metrics;
                m.spool_lost
                    .with_label_values(&["corruption"])
                    .inc_by(recovery.lost);
                m.spool_truncated.inc_by(recovery.truncated_bytes);
                if recovery.lost > 0 || !recovery.quarantined.is_empty() {
                    tracing::error!(
                        lost = recovery.lost,
                        quarantined = ?recovery.quarantined,
                        "damaged spool segments quarantined; their events are lost"
                    );
                }
                if recovery.truncated_bytes > 0 {
                    tracing::warn!(
                        bytes = recovery.truncated_bytes,
                        "truncated a torn write at the spool's tail (never acknowledged)"
                    );
                }
                let backlog = pipeline.backlog();
                let _ = state.pipeline.set(pipeline);
                // Readiness is a latch: once recovered, a Kafka outage does not flip it.
                state.ready.store(true, Ordering::SeqCst);
                m.ready.set(1);
                tracing::info!(backlog, "spool recovered; accepting events");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start the spool");
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                let _ = failed_tx.send(());
            }
        });
    }
    let app = router(state.clone(), config.max_body_bytes);
    let stopping = tokio_util::sync::CancellationToken::new();
    let limits = crate::http::ConnLimits {
        max_connections: config.max_connections,
        header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
    };
    let admin_task = admin.map(|admin| {
        let stopping = stopping.clone();
        let app = health_router(state.clone());
        tokio::spawn(async move {
            crate::http::serve(
                admin,
                app,
                limits,
                async move { stopping.cancelled().await },
            )
            .await
        })
    });
    let stop = async move {
        tokio::select! {
        _ = shutdown => {},
        Ok(()) = failed_rx => {}}
    };
    let served = crate::http::serve(listener, app, limits, stop).await;
    stopping.cancel();
    if let Some(t) = admin_task {
        if let Ok(Err(e)) = t.await {
            tracing::warn!(error = %e, "admin listener failed");
        }
    }
    let _ = control_stop.send(true);
    if let Some(t) = control_task {
        let _ = t.await;
    }
    served?;
    if let Some(e) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e.into());
    }
    if let Some(pipeline) = state.pipeline.get() {
        let grace = Duration::from_millis(config.shutdown_grace_ms);
        tracing::info!(
            grace_ms = config.shutdown_grace_ms,
            "sending the spool to Kafka before exit"
        );
        let left = pipeline.shutdown(grace).await;
        if left == 0 {
            tracing::info!("driftwatch-agent stopped cleanly; the spool is empty");
        } else {
            tracing::warn!(
                events = left,
                "driftwatch-agent stopped; events not yet confirmed stay in the spool"
            );
        }
    }
    Ok(())
}

fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    // Requests in flight on the ingest routes are capped (the rest wait for a permit
    // before their body is read), so the agent's memory is bounded by the cap times one
    // request's worst case, whatever clients do.
    // With a permit, the body must arrive within body_read_timeout_ms: a client that
    // trickles it in holds a permit no longer than that.
    let permits = state.ingest_permits.clone();
    let body_timeout = state.body_read_timeout;
    let ingest = Router::new()
        .route("/v1/predictions", post(post_predictions))
        .route("/v1/outcomes", post(post_outcomes))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let permits = permits.clone();
                async move {
                    let Ok(_permit) = permits.acquire_owned().await else {
                        // Closed only at shutdown.
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    };
                    let (parts, body) = req.into_parts();
                    let read = axum::body::to_bytes(body, max_body_bytes);
                    match tokio::time::timeout(body_timeout, read).await {
                        Ok(Ok(bytes)) => {
                            next.run(axum::extract::Request::from_parts(
                                parts,
                                axum::body::Body::from(bytes),
                            ))
                            .await
                        }
                        Ok(Err(_)) => error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            &format!("request body over max_body_bytes = {max_body_bytes}, or broken off"),
                            json!({ "accepted": 0 }),
                        ),
                        Err(_) => error(
                            StatusCode::REQUEST_TIMEOUT,
                            &format!(
                                "request body not received within body_read_timeout_ms = {}",
                                body_timeout.as_millis()
                            ),
                            json!({ "accepted": 0 }),
                        ),
                    }
                }
            },
        ));
    Router::new()
        .merge(ingest)
        .route("/v1/status", get(get_status))
        .route("/metrics", get(get_metrics))
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(get_ready))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// The routes of the admin listener: health and metrics, no ingest.
fn health_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(get_metrics))
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(get_ready))
        .with_state(state)
}

/// `GET /v1/status?system_id=ID`: may the system serve (allowed, restricted, disabled;
/// `unknown` only after a damaged state file, until the control topic is read).
async fn get_status(State(state): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Response {
    let system = q
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("system_id="))
        .unwrap_or("");
    if !driftwatch_schema::valid_system_id(system) {
        return error(
            StatusCode::BAD_REQUEST,
            "give ?system_id= with 1 to 128 of A-Z a-z 0-9 . _ -",
            json!({}),
        );
    }
    axum::Json(state.control.get(system)).into_response()
}

async fn post_predictions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    ingest(state, EventKind::Prediction, body).await
}

async fn post_outcomes(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    ingest(state, EventKind::Outcome, body).await
}

fn route_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Prediction => "/v1/predictions",
        EventKind::Outcome => "/v1/outcomes",
    }
}

async fn ingest(state: Arc<AppState>, kind: EventKind, body: Bytes) -> Response {
    let started = Instant::now();
    let route = route_name(kind);
    let response = ingest_inner(&state, kind, body).await;
    let status = response.status();
    state
        .metrics
        .http_requests
        .with_label_values(&[route, status.as_str()])
        .inc();
    state
        .metrics
        .request_seconds
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Parse a body straight into spool records: each event is encoded as soon as it is
/// checked and its parsed value dropped, so a request holds its body and the encoded
/// events, never all of its events' parsed values. An event Kafka would refuse (larger
/// than `message.max.bytes` with its key and librdkafka's per-message overhead) refuses
/// the batch, so nothing is acknowledged that could only end in the dead-letter spool.
fn parse_records(
    body: &[u8],
    kind: EventKind,
    limits: &Limits,
    now: chrono::DateTime<Utc>,
    privacy: Option<&Privacy>,
    max_message: usize,
) -> Result<(Vec<SpoolRecord>, Applied), IngestError> {
    // Record batch and message headers librdkafka adds around key and payload.
    const OVERHEAD: usize = 512;
    let mut records = Vec::new();
    let applied = parse_batch_into(body, kind, limits, now, privacy, &mut |index, e| {
        let r = SpoolRecord {
            key: e.system_id().to_owned(),
            payload: e.to_wire(),
        };
        let bytes = r.key.len() + r.payload.len();
        if bytes + OVERHEAD > max_message {
            return Err(IngestError::EventTooLarge {
                index,
                bytes,
                max: max_message.saturating_sub(OVERHEAD),
            });
        }
        records.push(r);
        Ok(())
    })?;
    Ok((records, applied))
}

async fn ingest_inner(state: &AppState, kind: EventKind, body: Bytes) -> Response {
    let Some(pipeline) = state.pipeline.get() else {
        return unavailable(
            state,
            kind,
            None,
            "the spool is being recovered",
            "recovering",
        );
    };
    let limits = state.limits;
    let max_message = state.max_message_bytes;
    let now = Utc::now();
    let privacy = state.privacy.clone();
    let parsed = if body.len() <= INLINE_PARSE_BYTES {
        parse_records(&body, kind, &limits, now, privacy.as_deref(), max_message)
    } else {
        match tokio::task::spawn_blocking(move || {
            parse_records(&body, kind, &limits, now, privacy.as_deref(), max_message)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "parser task failed");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error",
                    json!({}),
                );
            }
        }
    };
    let records = match parsed {
        Ok((r, applied)) => {
            let m = &state.metrics;
            m.fields_removed
                .with_label_values(&["unlisted"])
                .inc_by(applied.dropped);
            m.fields_removed
                .with_label_values(&["suppressed"])
                .inc_by(applied.suppressed);
            m.fields_pseudonymised.inc_by(applied.pseudonymised);
            r
        }
        Err(e) => return refuse(state, kind, e),
    };
    let n = records.len();
    // The systems of the batch, for the serving header (batches are usually of one).
    let mut systems: Vec<String> = Vec::new();
    for r in &records {
        if !systems.contains(&r.key) && systems.len() < 16 {
            systems.push(r.key.clone());
        }
    }
    match pipeline.append(records).await {
        Ok(()) => {
            state
                .metrics
                .events_accepted
                .with_label_values(&[kind.as_str()])
                .inc_by(n as u64);
            let mut resp =
                (StatusCode::ACCEPTED, axum::Json(json!({ "accepted": n }))).into_response();
            if let Some(h) = state
                .control
                .header(systems.iter().map(String::as_str))
                .and_then(|h| HeaderValue::from_str(&h).ok())
            {
                resp.headers_mut().insert("driftwatch-serving", h);
            }
            resp
        }
        Err(AppendError::Full { .. }) if state.when_full == WhenFull::DropNewest => {
            state
                .metrics
                .events_dropped
                .with_label_values(&["spool_full"])
                .inc_by(n as u64);
            tracing::debug!(events = n, "spool full; dropped the batch (drop_newest)");
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({ "accepted": 0, "dropped": n })),
            )
                .into_response()
        }
        Err(e) => {
            let reason = match e {
                AppendError::Full { .. } => "spool_full",
                AppendError::Disk(_) => "disk_error",
                AppendError::Stopping | AppendError::Slow(_) => "unavailable",
            };
            unavailable(state, kind, Some(n), &e.to_string(), reason)
        }
    }
}

/// 503 with `Retry-After`: nothing of the batch was acknowledged; the client keeps it.
fn unavailable(
    state: &AppState,
    kind: EventKind,
    events: Option<usize>,
    why: &str,
    reason: &'static str,
) -> Response {
    if let Some(n) = events {
        state
            .metrics
            .events_rejected
            .with_label_values(&[kind.as_str(), reason])
            .inc_by(n as u64);
        tracing::warn!(reason, events = n, "{why}; answered 503");
    }
    let mut resp = error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("{why}; nothing of this batch was acknowledged, retry it"),
        json!({ "accepted": 0 }),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

fn refuse(state: &AppState, kind: EventKind, e: IngestError) -> Response {
    let (status, reason, count, extra) = match &e {
        IngestError::Syntax(_) | IngestError::Empty | IngestError::Stopped => (
            StatusCode::BAD_REQUEST,
            "invalid",
            0,
            json!({ "accepted": 0 }),
        ),
        IngestError::TooMany { count, .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            *count,
            json!({ "accepted": 0 }),
        ),
        IngestError::EventTooLarge { index, bytes, max } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            1,
            json!({ "accepted": 0, "index": index, "bytes": bytes, "max_bytes": max }),
        ),
        IngestError::Invalid {
            total,
            invalid,
            errors,
        } => (
            StatusCode::BAD_REQUEST,
            "invalid",
            *total,
            json!({ "accepted": 0, "invalid": invalid, "errors": errors }),
        ),
    };
    state
        .metrics
        .events_rejected
        .with_label_values(&[kind.as_str(), reason])
        .inc_by(count as u64);
    tracing::debug!(error = %e, "refused a batch");
    error(status, &e.to_string(), extra)
}

fn error(status: StatusCode, message: &str, mut extra: serde_json::Value) -> Response {
    extra["error"] = json!(message);
    (status, axum::Json(extra)).into_response()
}

async fn get_metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        render(&state.registry),
    )
        .into_response()
}

async fn get_ready(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}
