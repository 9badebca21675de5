//! The HTTP API (JSON under `/v1`). Every request is authenticated by a bearer token;
//! what a role may do is the table in [`allowed`]. Errors are
//! `{"error": {"code", "message", "field", "current_state"}}` with the HTTP status.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{AuthError, Principal, Role, Tokens};
use crate::desk::Desk;
use crate::model::{State as IncState, Step};
use crate::store::StoreError;

/// What the routes share.
pub struct Api {
    /// The desk.
    pub desk: Arc<Desk>,
    /// The tokens.
    pub tokens: Tokens,
    /// The checkpoint verifier key, shown at `/v1/audit/checkpoint`.
    pub verifier_key: Option<String>,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    field: Option<String>,
    current_state: Option<IncState>,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            field: None,
            current_state: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(f) = self.field {
            e["field"] = json!(f);
        }
        if let Some(s) = self.current_state {
            e["current_state"] = json!(s.as_str());
        }
        (self.status, Json(json!({ "error": e }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no incident {id}"),
            ),
            StoreError::Refused(r) => ApiError {
                status: StatusCode::from_u16(r.status).unwrap_or(StatusCode::CONFLICT),
                code: r.code,
                message: r.message,
                field: r.field,
                current_state: r.current_state,
            },
            e => {
                tracing::error!(error = %e, "incident store failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    e.to_string(),
                )
            }
        }
    }
}

/// What each route needs: the roles allowed (admin always is).
pub fn allowed(route: &str) -> &'static [Role] {
    use Role::*;
    match route {
        "read" => &[Viewer, Operator, Approver],
        "open" => &[Operator, Approver, Deployer],
        "assess" | "inform" | "verify" | "note" | "classify" | "task" => &[Operator, Approver],
        "decide" | "close" | "reopen" | "authority_report" | "enable" => &[Approver],
        _ => &[],
    }
}

fn authorize<'a>(
    api: &'a Api,
    headers: &HeaderMap,
    route: &str,
) -> Result<&'a Principal, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let p = api.tokens.authenticate(header, Utc::now()).map_err(|e| {
        let code = match e {
            AuthError::Missing => "unauthenticated",
            AuthError::Unknown => "invalid_token",
            AuthError::Expired(..) => "token_expired",
        };
        ApiError::new(StatusCode::UNAUTHORIZED, code, e.to_string())
    })?;
    if p.role == Role::Admin || allowed(route).contains(&p.role) {
        Ok(p)
    } else {
        let roles: Vec<&str> = allowed(route)
            .iter()
            .map(|r| r.as_str())
            .chain(["admin"])
            .collect();
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} is a {}; this needs one of: {}",
                p.name,
                p.role.as_str(),
                roles.join(", ")
            ),
        ))
    }
}

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let text = if bytes.is_empty() {
        &b"{}"[..]
    } else {
        &bytes[..]
    };
    serde_json::from_slice(text).map_err(|e| {
        let msg = e.to_string();
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field"))
            .map(str::to_owned);
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_body".into(),
            message: format!("request body: {msg}"),
            field,
            current_state: None,
        }
    })
}

/// The routes.
pub fn router(api: Arc<Api>) -> Router {
    let ack = crate::notify::ack::router(api.clone());
    Router::new()
        .route("/v1/systems", get(systems))
        .route("/v1/incidents", get(list).post(open))
        .route("/v1/incidents/{id}", get(show))
        .route("/v1/incidents/{id}/timeline", get(timeline))
        .route("/v1/incidents/{id}/evidence", get(evidence))
        .route("/v1/incidents/{id}/export", get(export))
        .route("/v1/incidents/{id}/notes", post(note))
        .route("/v1/incidents/{id}/classify", post(classify))
        .route("/v1/incidents/{id}/tasks", post(add_task))
        .route("/v1/incidents/{id}/tasks/{n}", post(update_task))
        .route(
            "/v1/incidents/{id}/authority-reports",
            post(authority_report),
        )
        .route("/v1/incidents/{id}/notices", get(notices))
        .route(
            "/v1/incidents/{id}/notices/{notice}/acknowledge",
            post(acknowledge_notice),
        )
        .route("/v1/incidents/{id}/{step}", post(step))
        .route("/v1/systems/{system}/enable", post(enable_system))
        .route("/v1/audit", get(audit_entries))
        .route("/v1/audit/verify", get(audit_verify))
        .route("/v1/audit/checkpoint", get(checkpoint))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_route",
                "no such route; see the README's API table",
            )
        })
        .with_state(api)
        .merge(ack)
}

type R = Result<Response, ApiError>;

async fn systems(State(api): State<Arc<Api>>, headers: HeaderMap) -> R {
    authorize(&api, &headers, "read")?;
    let mut list: Vec<&crate::policy::Policy> = api.desk.policies().values().collect();
    list.sort_by(|a, b| a.system_id.cmp(&b.system_id));
    Ok(Json(json!({ "systems": list })).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    system_id: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

async fn list(State(api): State<Arc<Api>>, headers: HeaderMap, Query(q): Query<ListQuery>) -> R {
    authorize(&api, &headers, "read")?;
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(IncState::parse(s).ok_or_else(|| ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_field".into(),
            message: format!("state \"{s}\": use open, assessed, action_decided, parties_informed, effectiveness_verified or closed"),
            field: Some("state".into()),
            current_state: None,
        })?),
    };
    let list = api
        .desk
        .store
        .list(
            q.system_id.as_deref(),
            state,
            q.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?;
    Ok(Json(json!({ "incidents": list })).into_response())
}

async fn open(State(api): State<Arc<Api>>, headers: HeaderMap, bytes: Bytes) -> R {
    let p = authorize(&api, &headers, "open")?;
    let req = body(&bytes)?;
    let inc = api
        .desk
        .open_manual(Utc::now(), &p.name, p.role == Role::Deployer, req)
        .await?;
    if p.role == Role::Deployer {
        // A deployer learns its report was filed, not the provider's record.
        return Ok((
            StatusCode::CREATED,
            Json(json!({"id": inc.id, "state": inc.state, "aware_at": inc.aware_at})),
        )
            .into_response());
    }
    Ok((StatusCode::CREATED, Json(inc)).into_response())
}

async fn show(State(api): State<Arc<Api>>, headers: HeaderMap, Path(id): Path<String>) -> R {
    authorize(&api, &headers, "read")?;
    let inc = api
        .desk
        .store
        .get(&id)
        .await?
        .ok_or(StoreError::NotFound(id))?;
    let clock = inc.clock();
    let notices = api.desk.store.notices_of(&inc.id, Utc::now()).await?;
    let mut v = serde_json::to_value(&inc).unwrap_or(Value::Null);
    v["art73"] = serde_json::to_value(clock).unwrap_or(Value::Null);
    v["notices"] = serde_json::to_value(notices).unwrap_or(Value::Null);
    Ok(Json(v).into_response())
}

async fn notices(State(api): State<Arc<Api>>, headers: HeaderMap, Path(id): Path<String>) -> R {
    authorize(&api, &headers, "read")?;
    api.desk
        .store
        .get(&id)
        .await?
        .ok_or_else(|| StoreError::NotFound(id.clone()))?;
    let list = api.desk.store.notices_of(&id, Utc::now()).await?;
    Ok(Json(json!({ "notices": list })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckByPerson {
    /// Who at the party acknowledged (on the phone, by letter).
    by: Option<String>,
    reason: Option<String>,
}

/// A person records an acknowledgement received otherwise than through the link.
async fn acknowledge_notice(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((id, notice)): Path<(String, String)>,
    bytes: Bytes,
) -> R {
    let p = authorize(&api, &headers, "inform")?;
    let b: AckByPerson = body(&bytes)?;
    let reason = b
        .reason
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "missing_field".into(),
            message: "`reason` is required: how the acknowledgement came in".into(),
            field: Some("reason".into()),
            current_state: None,
        })?;
    let by = match b.by.filter(|b| !b.trim().is_empty()) {
        Some(who) => format!("{who} (recorded by {})", p.name),
        None => format!("recorded by {}", p.name),
    };
    let a = api
        .desk
        .store
        .acknowledge(
            Utc::now(),
            crate::store::AckKey::Notice {
                incident: &id,
                notice: &notice,
            },
            &by,
            "person",
            Some(&reason),
        )
        .await?;
    Ok(Json(json!({"notice": a.notice, "already": a.already})).into_response())
}

async fn timeline(State(api): State<Arc<Api>>, headers: HeaderMap, Path(id): Path<String>) -> R {
    authorize(&api, &headers, "read")?;
    api.desk
        .store
        .get(&id)
        .await?
        .ok_or_else(|| StoreError::NotFound(id.clone()))?;
    let entries: Vec<_> = api
        .desk
        .store
        .timeline(&id)
        .await?
        .iter()
        .map(|e| e.to_entry())
        .collect();
    Ok(Json(json!({ "timeline": entries })).into_response())
}

async fn evidence(State(api): State<Arc<Api>>, headers: HeaderMap, Path(id): Path<String>) -> R {
    authorize(&api, &headers, "read")?;
    let (hash, v) = api
        .desk
        .store
        .evidence(&id)
        .await?
        .ok_or(StoreError::NotFound(id))?;
    Ok(Json(json!({"hash": hash, "snapshot": v})).into_response())
}

#[derive(Deserialize)]
struct ExportQuery {
    format: Option<String>,
}

async fn export(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> R {
    authorize(&api, &headers, "read")?;
    let store = &api.desk.store;
    let inc = store
        .get(&id)
        .await?
        .ok_or_else(|| StoreError::NotFound(id.clone()))?;
    let ev = store.evidence(&id).await?;
    let alerts = store.alerts_of(&id).await?;
    let tl = store.timeline(&id).await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(crate::export::to_json(&inc, ev.as_ref(), &alerts, &tl)).into_response()),
        "markdown" | "md" => Ok((
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            crate::export::to_markdown(&inc, ev.as_ref(), &alerts, &tl),
        )
            .into_response()),
        f => Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_field".into(),
            message: format!("format \"{f}\": use json or markdown"),
            field: Some("format".into()),
            current_state: None,
        }),
    }
}

async fn step(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((id, step)): Path<(String, String)>,
    bytes: Bytes,
) -> R {
    let s = match step.as_str() {
        "assess" => Step::Assess,
        "decide" => Step::Decide,
        "inform" => Step::Inform,
        "verify" => Step::Verify,
        "close" => Step::Close,
        "reopen" => Step::Reopen,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_route",
                format!("no step \"{step}\": use assess, decide, inform, verify, close or reopen"),
            ))
        }
    };
    let p = authorize(&api, &headers, s.as_str())?;
    let req = body(&bytes)?;
    let inc = api.desk.step(Utc::now(), &id, s, &p.name, req).await?;
    Ok(Json(inc).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    text: Option<String>,
}

async fn note(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> R {
    let p = authorize(&api, &headers, "note")?;
    let b: NoteBody = body(&bytes)?;
    Ok(Json(api.desk.note(Utc::now(), &id, &p.name, b.text).await?).into_response())
}

async fn classify(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> R {
    let p = authorize(&api, &headers, "classify")?;
    Ok(Json(
        api.desk
            .classify(Utc::now(), &id, &p.name, body(&bytes)?)
            .await?,
    )
    .into_response())
}

async fn add_task(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> R {
    let p = authorize(&api, &headers, "task")?;
    Ok((
        StatusCode::CREATED,
        Json(
            api.desk
                .add_task(Utc::now(), &id, &p.name, body(&bytes)?)
                .await?,
        ),
    )
        .into_response())
}

async fn update_task(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((id, n)): Path<(String, u32)>,
    bytes: Bytes,
) -> R {
    let p = authorize(&api, &headers, "task")?;
    Ok(Json(
        api.desk
            .update_task(Utc::now(), &id, n, &p.name, body(&bytes)?)
            .await?,
    )
    .into_response())
}

async fn authority_report(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> R {
    let p = authorize(&api, &headers, "authority_report")?;
    Ok(Json(
        api.desk
            .authority_report(Utc::now(), &id, &p.name, body(&bytes)?)
            .await?,
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowBody {
    reason: Option<String>,
    incident_id: Option<String>,
}

/// Lift a restriction or disablement: published for the system's agents.
async fn enable_system(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(system): Path<String>,
    bytes: Bytes,
) -> R {
    let p = authorize(&api, &headers, "enable")?;
    if !api.desk.control {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_control_topic",
            "this service publishes no decisions (no --control-topic or no Kafka)",
        ));
    }
    let b: AllowBody = body(&bytes)?;
    let c = api
        .desk
        .enable(Utc::now(), &p.name, &system, b.reason, b.incident_id)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(c)).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    from: Option<i64>,
    limit: Option<i64>,
}

async fn audit_entries(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> R {
    authorize(&api, &headers, "read")?;
    let entries: Vec<_> = api
        .desk
        .store
        .audit_entries(
            q.from.unwrap_or(1),
            q.limit.unwrap_or(1000).clamp(1, 10_000),
        )
        .await?
        .iter()
        .map(|e| e.to_entry())
        .collect();
    Ok(Json(json!({ "entries": entries })).into_response())
}

async fn audit_verify(State(api): State<Arc<Api>>, headers: HeaderMap) -> R {
    authorize(&api, &headers, "read")?;
    let v = api.desk.store.verify(&[]).await?;
    Ok(Json(v).into_response())
}

async fn checkpoint(State(api): State<Arc<Api>>, headers: HeaderMap) -> R {
    authorize(&api, &headers, "read")?;
    let cps = api.desk.store.checkpoints().await?;
    Ok(Json(json!({"verifier_key": api.verifier_key, "latest": cps.last()})).into_response())
}
