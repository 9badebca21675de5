//! `/metrics`, `/live` and `/ready`: the routes every driftwatch service serves.
//!
//! Readiness is a latch: [`Readiness::set`] turns it true once recovery or start-up has
//! finished (the agent's spool recovered, the detector's references loaded or built),
//! and nothing turns it back: an outage of Kafka or a receiver is buffered, not a
//! reason for Kubernetes to take the pod out of service.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};

/// A readiness latch shared by the task that gets ready and the `/ready` route.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// A latch that is not ready yet.
    pub fn new() -> Self {
        Readiness::default()
    }

    /// Ready from now on.
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Readiness::set`] has been called.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Prometheus text exposition of a registry.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metric families.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// The `/metrics` response for a registry.
pub fn metrics_response(registry: &Registry) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        render(registry),
    )
        .into_response()
}

/// `/ready`: 200 once the latch is set, 503 before, with a one-line reason.
pub fn ready_response(ready: &Readiness, not_yet: &'static str) -> Response {
    if ready.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, not_yet).into_response()
    }
}

/// A router serving `/metrics` from `registry`, `/live`, and `/ready` from `ready`
/// (`not_yet` is the 503 body before it is set).
pub fn router(registry: Registry, ready: Readiness, not_yet: &'static str) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { metrics_response(&registry) }
            }),
        )
        .route("/live", get(|| async { "live\n" }))
        .route(
            "/ready",
            get(move || {
                let ready = ready.clone();
                async move { ready_response(&ready, not_yet) }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_is_a_latch() {
        let r = Readiness::new();
        let seen_by_route = r.clone();
        assert!(!seen_by_route.is_ready());
        assert_eq!(
            ready_response(&seen_by_route, "starting\n").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        r.set();
        r.set();
        assert!(seen_by_route.is_ready());
        assert_eq!(ready_response(&seen_by_route, "x").status(), StatusCode::OK);
    }

    #[test]
    fn render_exposes_registered_metrics() {
        let registry = Registry::new();
        let c = prometheus::IntCounter::new("dw_test_total", "A test counter.").expect("metric");
        registry.register(Box::new(c.clone())).expect("register");
        c.inc();
        assert!(render(&registry).contains("dw_test_total 1\n"));
    }
}
