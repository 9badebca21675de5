//! The acknowledge link in a notice: `GET /v1/acknowledge/{token}` shows the notice and
//! a button (a GET changes nothing, so mail scanners that follow links acknowledge
//! nothing); `POST` records the acknowledgement. The token is the credential: 128 random
//! bits, one per notice. A form post gets a page back, anything else JSON.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use crate::api::Api;
use crate::notify::Notice;
use crate::store::{AckKey, StoreError};

/// The acknowledge routes (no bearer token: the link's secret is the credential).
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/acknowledge/{token}", get(show).post(acknowledge))
        .with_state(api)
}

/// Text safe inside HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title><style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}dt{{font-weight:600}}button{{font-size:1rem;padding:.5rem 1.25rem}}label{{display:block;margin:.5rem 0}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
            ),
        ],
        Html(html),
    )
        .into_response()
}

fn details(n: &Notice) -> String {
    format!(
        "<dl><dt>Notice</dt><dd>{id}</dd><dt>To</dt><dd>{party} ({kind})</dd><dt>Subject</dt><dd>{subject}</dd><dt>Acknowledge by</dt><dd>{by}</dd><dt>Content SHA-256</dt><dd><code>{hash}</code></dd></dl>",
        id = escape(&n.id),
        party = escape(&n.party_name),
        kind = escape(&n.party_kind.replace('_', " ")),
        subject = escape(&n.subject),
        by = n.acknowledge_by.format("%Y-%m-%d %H:%M UTC"),
        hash = escape(&n.content_hash),
    )
}

fn unknown() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Unknown link",
        "<p>No notice has this acknowledge link. Check that the whole address was copied.</p>",
    )
}

async fn show(State(api): State<Arc<Api>>, Path(token): Path<String>) -> Response {
    match api.desk.store.notice_by_token(&token, Utc::now()).await {
        Ok(Some(n)) if n.acknowledged_at.is_some() => page(
            StatusCode::OK,
            "Already acknowledged",
            &format!(
                "<p>Acknowledged on {} by {}. Thank you.</p>{}",
                n.acknowledged_at
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default(),
                escape(n.acknowledged_by.as_deref().unwrap_or("")),
                details(&n)
            ),
        ),
        Ok(Some(n)) => page(
            StatusCode::OK,
            "Acknowledge a corrective-action notice",
            &format!(
                "<p>Confirm that your organisation received this notice and will act on it.</p>{}<form method=\"post\"><label>Your name <input name=\"by\" autocomplete=\"name\" maxlength=\"200\"></label><button type=\"submit\">Acknowledge</button></form>",
                details(&n)
            ),
        ),
        Ok(None) => unknown(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a notice");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "<p>The service cannot read its records just now. Nothing was recorded; please try again in a minute.</p>",
            )
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AckBody {
    by: Option<String>,
    note: Option<String>,
}

async fn acknowledge(
    State(api): State<Arc<Api>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let parsed: Result<AckBody, String> = if bytes.is_empty() {
        Ok(AckBody::default())
    } else if form {
        serde_urlencoded::from_bytes(&bytes).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    let b = match parsed {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"error": {"code": "invalid_body", "message": format!("request body: {e}; send {{\"by\": NAME, \"note\": TEXT}} or nothing")}})),
            )
                .into_response()
        }
    };
    let via = if form { "link" } else { "api" };
    let r = api
        .desk
        .store
        .acknowledge(
            Utc::now(),
            AckKey::Token(&token),
            b.by.as_deref().unwrap_or(""),
            via,
            b.note.as_deref(),
        )
        .await;
    match (r, form) {
        (Ok(a), true) => page(
            StatusCode::OK,
            if a.already {
                "Already acknowledged"
            } else {
                "Acknowledged"
            },
            &format!(
                "<p>Recorded on {} for {}. Thank you.</p>{}",
                a.notice
                    .acknowledged_at
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default(),
                escape(a.notice.acknowledged_by.as_deref().unwrap_or("")),
                details(&a.notice)
            ),
        ),
        (Ok(a), false) => Json(json!({"notice": a.notice, "already": a.already})).into_response(),
        (Err(StoreError::Refused(r)), true) if r.status == 404 => unknown(),
        (Err(StoreError::Refused(r)), false) if r.status == 404 => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "not_found", "message": r.message}})),
        )
            .into_response(),
        (Err(e), _) => {
            tracing::error!(error = %e, "cannot record an acknowledgement");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": {"code": "store_unavailable", "message": "cannot record the acknowledgement now; nothing was recorded, try again"}})),
            )
                .into_response()
        }
    }
}
