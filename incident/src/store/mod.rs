//! Storage: one schema with versioned migrations on SQLite (embedded, the default) or
//! PostgreSQL (shared by several replicas), through sqlx's `Any` driver so every query
//! is written once.
//!
//! Every change to an incident happens in one transaction with the audit entry that
//! records it; the entry carries the SHA-256 of the record as written (`doc_hash`), so
//! [`Store::verify`] also catches a record edited behind the service's back. Appends to
//! the chain are serialised: one connection on SQLite, a transaction-scoped advisory lock
//! on PostgreSQL (and a retry should two writers still collide on a `seq`).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::audit::{self, Checkpoint, StoredEntry, Verification, GENESIS};
use crate::model::{Incident, State};

mod chain;
mod notices;
mod outbox;
use driftwatch_schema::Control;

pub use notices::{AckKey, Acknowledged, Due};

/// What a change does besides the record: the control message for the agents and the
/// notices to the parties, written in the change's transaction.
#[derive(Debug, Default)]
pub struct Effects {
    /// For the control outbox.
    pub control: Option<Control>,
    /// For the notifier.
    pub notices: Vec<crate::notify::NewNotice>,
}

/// The schema, in order. A version is never edited once released: add one.
const MIGRATIONS: &[(i64, &str, &[&str])] = &[(
    1,
    "incident record, evidence, alerts, window reports, audit chain, checkpoints, reminders",
    &[
        "CREATE TABLE incidents (id TEXT PRIMARY KEY, system_id TEXT NOT NULL, state TEXT NOT NULL, condition_key TEXT NOT NULL, opened_at TEXT NOT NULL, updated_at TEXT NOT NULL, revision BIGINT NOT NULL, doc TEXT NOT NULL)",
        "CREATE UNIQUE INDEX incidents_one_open_per_condition ON incidents (condition_key) WHERE state <> 'closed'",
        "CREATE INDEX incidents_by_system ON incidents (system_id, opened_at)",
        "CREATE TABLE evidence (incident_id TEXT PRIMARY KEY, hash TEXT NOT NULL, doc TEXT NOT NULL)",
        "CREATE TABLE incident_alerts (alert_id TEXT PRIMARY KEY, incident_id TEXT, received_at TEXT NOT NULL, alert TEXT NOT NULL)",
        "CREATE INDEX incident_alerts_by_incident ON incident_alerts (incident_id, received_at)",
        "CREATE TABLE window_reports (system_id TEXT NOT NULL, kind TEXT NOT NULL, window_index BIGINT NOT NULL, received_at TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (system_id, kind, window_index))",
        "CREATE TABLE audit (seq BIGINT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, incident_id TEXT, payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)",
        "CREATE INDEX audit_by_incident ON audit (incident_id, seq)",
        "CREATE TABLE checkpoints (size BIGINT PRIMARY KEY, at TEXT NOT NULL, head TEXT NOT NULL, note TEXT NOT NULL)",
        "CREATE TABLE reminders (reminder_key TEXT PRIMARY KEY, sent_at TEXT NOT NULL)",
    ],
), (
    2,
    "control outbox: decisions to publish on the control topic",
    &[
        "CREATE TABLE control_outbox (seq BIGINT PRIMARY KEY, system_id TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL, sent_at TEXT)",
        "CREATE INDEX control_outbox_pending ON control_outbox (sent_at, seq)",
    ],
), (
    3,
    "notices of decisions to the plan's parties: what was sent, when, and when acknowledged",
    &[
        "CREATE TABLE notices (id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, party_kind TEXT NOT NULL, party_name TEXT NOT NULL, channel TEXT NOT NULL, destination TEXT NOT NULL, subject TEXT NOT NULL, payload TEXT NOT NULL, content_hash TEXT NOT NULL, ack_token TEXT NOT NULL, created_at TEXT NOT NULL, acknowledge_by TEXT NOT NULL, attempts BIGINT NOT NULL, next_attempt_at TEXT NOT NULL, last_error TEXT, sent_at TEXT, reference TEXT, acked_at TEXT, acked_by TEXT)",
        "CREATE UNIQUE INDEX notices_by_token ON notices (ack_token)",
        "CREATE INDEX notices_by_incident ON notices (incident_id, id)",
        "CREATE INDEX notices_due ON notices (sent_at, next_attempt_at)",
    ],
)];

/// Window reports kept per system and kind (older ones are pruned).
pub const REPORTS_KEPT: i64 = 2000;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A URL that is neither `sqlite:` nor `postgres:`.
    #[error("database URL \"{0}\": use sqlite:PATH or postgres://USER@HOST/DB")]
    Url(String),
    /// A stored document that does not parse (edited by hand?).
    #[error("stored record {id} is damaged: {message}")]
    Damaged {
        /// The record.
        id: String,
        /// Why.
        message: String,
    },
    /// No such incident.
    #[error("no incident {0}")]
    NotFound(String),
    /// The change is refused (the message says why).
    #[error("{0}")]
    Refused(Refusal),
}

/// A change refused by the workflow or validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// HTTP status: 409 for a wrong state, 422 for a bad field.
    pub status: u16,
    /// Machine code (`illegal_transition`, `missing_field`, ...).
    pub code: String,
    /// The field at fault, if one.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// The incident's state, for 409.
    pub current_state: Option<State>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded file.
    Sqlite,
    /// Shared server.
    Postgres,
}

/// What an alert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertOutcome {
    /// Seen before (a redelivery): nothing changed.
    Duplicate,
    /// Attached to an open incident.
    Attached(String),
    /// Recorded; no incident (below the plan's level, none open).
    Recorded,
}

/// The incident store.
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    write: tokio::sync::Mutex<()>,
    /// Woken when a decision enters the control outbox (the publisher waits on it).
    pub control_added: tokio::sync::Notify,
    /// Woken when notices are composed (the notifier waits on it).
    pub notice_added: tokio::sync::Notify,
}

fn now_ts(t: DateTime<Utc>) -> String {
    audit::ts(t)
}

impl Store {
    /// Connect and bring the schema up to date.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            if path.is_empty() {
                return Err(StoreError::Url(url.into()));
            }
            let url = if path == ":memory:" || path.contains("mode=") {
                format!("sqlite:{path}")
            } else if path.contains('?') {
                format!("sqlite:{path}&mode=rwc")
            } else {
                format!("sqlite:{path}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::Url(url.into()));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 1 } else { 8 })
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect(&url)
            .await?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
        }
        let store = Store {
            pool,
            backend,
            write: tokio::sync::Mutex::new(()),
            control_added: tokio::sync::Notify::new(),
            notice_added: tokio::sync::Notify::new(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for tools and tests that must reach the tables directly.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let _g = self.write.lock().await;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
            .execute(&self.pool)
            .await?;
        for (version, name, statements) in MIGRATIONS {
            let mut tx = self.begin().await?;
            if self.backend == Backend::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock(7201)")
                    .execute(&mut *tx)
                    .await?;
            }
            let done: Option<i64> =
                sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r: AnyRow| r.try_get(0))
                    .transpose()?;
            if done.is_some() {
                tx.rollback().await?;
                continue;
            }
            for s in *statements {
                sqlx::query(s).execute(&mut *tx).await?;
            }
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(*version)
            .bind(*name)
            .bind(now_ts(Utc::now()))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!(version, name, "database migrated");
        }
        Ok(())
    }

    /// The schema version in the database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let v: Option<i64> = sqlx::query("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(v.unwrap_or(0))
    }

    /// A write transaction: `BEGIN IMMEDIATE` on SQLite, so a second process on the
    /// same file waits for the lock instead of failing on the upgrade from read to write.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    async fn lock(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7202)")
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Append an audit entry inside `tx`.
    async fn append(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        at: DateTime<Utc>,
        actor: &str,
        action: &str,
        incident_id: Option<&str>,
        payload: &Value,
    ) -> Result<(), StoreError> {
        let last = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
        let (seq, prev) = match last {
            Some(r) => (r.try_get::<i64, _>(0)? + 1, r.try_get::<String, _>(1)?),
            None => (1, GENESIS.to_owned()),
        };
        let at = now_ts(at);
        let hash = audit::entry_hash(&prev, seq, &at, actor, action, incident_id, payload);
        sqlx::query("INSERT INTO audit (seq, at, actor, action, incident_id, payload, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(seq)
            .bind(at)
            .bind(actor)
            .bind(action)
            .bind(incident_id)
            .bind(audit::canonical(payload))
            .bind(prev)
            .bind(hash)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Record an audit entry on its own (plan versions seen, checkpoints, reminders).
    pub async fn audit(
        &self,
        at: DateTime<Utc>,
        actor: &str,
        action: &str,
        incident_id: Option<&str>,
        payload: Value,
    ) -> Result<(), StoreError> {
        let _g = self.write.lock().await;
        let mut tx = self.begin().await?;
        self.lock(&mut tx).await?;
        Self::append(&mut tx, at, actor, action, incident_id, &payload).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Record a plan version the first time it is seen; true if it was new.
    pub async fn plan_seen(
        &self,
        at: DateTime<Utc>,
        system_id: &str,
        hash: &str,
        label: Option<&str>,
    ) -> Result<bool, StoreError> {
        let key = format!("plan/{system_id}/{hash}");
        if !self.mark(&key, at).await? {
            return Ok(false);
        }
        self.audit(
            at,
            "driftwatch",
            "plan_version_seen",
            None,
            json!({"system_id": system_id, "plan_hash": hash, "plan_version": label}),
        )
        .await?;
        Ok(true)
    }

    /// Mark a one-time key (a reminder sent); true if it was not marked before.
    pub async fn mark(&self, key: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO reminders (reminder_key, sent_at) VALUES ($1, $2) ON CONFLICT (reminder_key) DO NOTHING",
        )
        .bind(key)
        .bind(now_ts(at))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Alerts recorded so far.
    pub async fn alert_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM incident_alerts")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// Whether an alert id was recorded before.
    pub async fn alert_seen(&self, alert_id: &str) -> Result<bool, StoreError> {
        seen_in(&mut *self.pool.acquire().await?, alert_id).await
    }

    /// The open incident for a condition.
    pub async fn open_for(&self, condition: &str) -> Result<Option<Incident>, StoreError> {
        open_in(&mut *self.pool.acquire().await?, condition).await
    }

    /// Record an alert: attach it to the open incident of its condition, if any.
    pub async fn record_alert(
        &self,
        at: DateTime<Utc>,
        alert: &driftwatch_schema::Alert,
        condition: &str,
    ) -> Result<AlertOutcome, StoreError> {
        let _g = self.write.lock().await;
        let mut tx = self.begin().await?;
        self.lock(&mut tx).await?;
        if seen_in(&mut tx, &alert.alert_id).await? {
            tx.rollback().await?;
            return Ok(AlertOutcome::Duplicate);
        }
        let outcome = match open_in(&mut tx, condition).await? {
            Some(mut inc) => {
                Self::attach_in(&mut tx, &mut inc, alert, at).await?;
                AlertOutcome::Attached(inc.id)
            }
            None => {
                let alert_json = insert_alert(&mut tx, alert, None, at).await?;
                Self::append(
                    &mut tx,
                    at,
                    "driftwatch",
                    "alert_received",
                    None,
                    &json!({"alert": alert_json}),
                )
                .await?;
                AlertOutcome::Recorded
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Attach an alert to an open incident inside `tx`: the record, the alert and the
    /// audit entry with the record's new hash.
    async fn attach_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        inc: &mut Incident,
        alert: &driftwatch_schema::Alert,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        attach(inc, alert, at);
        let doc = write_doc(tx, inc, at, None).await?;
        let alert_json = insert_alert(tx, alert, Some(&inc.id), at).await?;
        Self::append(
            tx,
            at,
            "driftwatch",
            "alert_attached",
            Some(&inc.id),
            &json!({"alert": alert_json, "doc_hash": audit::sha256_hex(doc.as_bytes())}),
        )
        .await
    }

    /// Open an incident with its evidence snapshot (frozen here, before anyone acts).
    /// When another writer opened one for the same condition first, the alert (if any)
    /// attaches to that one instead and its id is returned.
    pub async fn open_incident(
        &self,
        at: DateTime<Utc>,
        inc: Incident,
        evidence: &Value,
        alert: Option<&driftwatch_schema::Alert>,
    ) -> Result<Incident, StoreError> {
        let _g = self.write.lock().await;
        let mut inc = inc;
        let evidence_text = audit::canonical(evidence);
        inc.evidence_hash = audit::sha256_hex(evidence_text.as_bytes());
        let mut tx = self.begin().await?;
        self.lock(&mut tx).await?;
        if let Some(a) = alert {
            if seen_in(&mut tx, &a.alert_id).await? {
                tx.rollback().await?;
                return Err(StoreError::Refused(Refusal {
                    status: 409,
                    code: "duplicate_alert".into(),
                    field: None,
                    message: format!("alert {} was recorded before", a.alert_id),
                    current_state: None,
                }));
            }
        }
        if let Some(mut open) = open_in(&mut tx, &inc.condition).await? {
            // Someone else opened it between our look and now: attach.
            if let Some(a) = alert {
                Self::attach_in(&mut tx, &mut open, a, at).await?;
            }
            tx.commit().await?;
            return Ok(open);
        }
        let doc = audit::canonical(&serde_json::to_value(&inc).unwrap_or(Value::Null));
        sqlx::query("INSERT INTO incidents (id, system_id, state, condition_key, opened_at, updated_at, revision, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(&inc.id)
            .bind(&inc.system_id)
            .bind(inc.state.as_str())
            .bind(&inc.condition)
            .bind(now_ts(inc.aware_at))
            .bind(now_ts(at))
            .bind(inc.revision)
            .bind(&doc)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO evidence (incident_id, hash, doc) VALUES ($1, $2, $3)")
            .bind(&inc.id)
            .bind(&inc.evidence_hash)
            .bind(&evidence_text)
            .execute(&mut *tx)
            .await?;
        if let Some(a) = alert {
            insert_alert(&mut tx, a, Some(&inc.id), at).await?;
        }
        Self::append(
            &mut tx,
            at,
            &inc.opened_by,
            "incident_opened",
            Some(&inc.id),
            &json!({
                "trigger": inc.trigger,
                "severity": inc.severity,
                "condition": inc.condition,
                "plan_hash": inc.plan_hash,
                "aware_at": audit::ts(inc.aware_at),
                "evidence_hash": inc.evidence_hash,
                "doc_hash": audit::sha256_hex(doc.as_bytes()),
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(inc)
    }

    /// Change an incident in one transaction with its audit entry. `f` validates and
    /// applies the change (refusing with a [`Refusal`]); `payload` describes it.
    pub async fn change<F>(
        &self,
        at: DateTime<Utc>,
        id: &str,
        actor: &str,
        action: &str,
        payload: Value,
        mut f: F,
    ) -> Result<Incident, StoreError>
    where
        F: FnMut(&mut Incident) -> Result<(), Refusal>,
    {
        self.change_with(at, id, actor, action, payload, |inc| {
            f(inc).map(|()| Effects::default())
        })
        .await
    }

    /// [`Store::change`] where the change may also decide what the system's agents must
    /// do: the control message goes into the outbox in the same transaction, so a
    /// recorded decision is always published (by [`crate::service`]) and never one that
    /// was not recorded.
    pub async fn change_with<F>(
        &self,
        at: DateTime<Utc>,
        id: &str,
        actor: &str,
        action: &str,
        payload: Value,
        mut f: F,
    ) -> Result<Incident, StoreError>
    where
        F: FnMut(&mut Incident) -> Result<Effects, Refusal>,
    {
        let _g = self.write.lock().await;
        let mut tx = self.begin().await?;
        self.lock(&mut tx).await?;
        let mut inc = sqlx::query("SELECT id, doc FROM incidents WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| parse_doc(&r))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        let before = inc.revision;
        let Effects { control, notices } = f(&mut inc).map_err(StoreError::Refused)?;
        let doc = write_doc(&mut tx, &inc, at, Some(before)).await?;
        let mut payload = payload;
        if let Value::Object(m) = &mut payload {
            m.insert(
                "doc_hash".into(),
                Value::String(audit::sha256_hex(doc.as_bytes())),
            );
            m.insert("state".into(), Value::String(inc.state.as_str().into()));
            if let Some(c) = &control {
                m.insert("control".into(), control_summary(c));
            }
            if !notices.is_empty() {
                m.insert("notices".into(), notices::summary(&notices));
            }
        }
        if let Some(c) = &control {
            Self::enqueue(&mut tx, at, c).await?;
        }
        for n in &notices {
            Self::insert_notice(&mut tx, n).await?;
        }
        Self::append(&mut tx, at, actor, action, Some(id), &payload).await?;
        tx.commit().await?;
        if control.is_some() {
            self.control_added.notify_one();
        }
        if !notices.is_empty() {
            self.notice_added.notify_one();
        }
        inc.revision += 1;
        inc.updated_at = at;
        Ok(inc)
    }

    /// One incident.
    pub async fn get(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        sqlx::query("SELECT id, doc FROM incidents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| parse_doc(&r))
            .transpose()
    }

    /// Incidents, newest first, optionally of one system and state.
    pub async fn list(
        &self,
        system: Option<&str>,
        state: Option<State>,
        limit: i64,
    ) -> Result<Vec<Incident>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, doc FROM incidents WHERE ($1 = '' OR system_id = $1) AND ($2 = '' OR state = $2) ORDER BY opened_at DESC, id DESC LIMIT $3",
        )
        .bind(system.unwrap_or(""))
        .bind(state.map_or("", State::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(parse_doc).collect()
    }

    /// The evidence snapshot and its stored hash.
    pub async fn evidence(&self, id: &str) -> Result<Option<(String, Value)>, StoreError> {
        let row = sqlx::query("SELECT hash, doc FROM evidence WHERE incident_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let hash: String = r.try_get(0)?;
                let doc: String = r.try_get(1)?;
                let v = serde_json::from_str(&doc).map_err(|e| StoreError::Damaged {
                    id: format!("evidence of {id}"),
                    message: e.to_string(),
                })?;
                Ok(Some((hash, v)))
            }
        }
    }

    /// Alerts attached to an incident, in arrival order.
    pub async fn alerts_of(&self, id: &str) -> Result<Vec<Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT alert FROM incident_alerts WHERE incident_id = $1 ORDER BY received_at, alert_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let s: String = r.try_get(0)?;
                Ok(serde_json::from_str(&s).unwrap_or(Value::Null))
            })
            .collect()
    }

    /// Store a window or performance report (the latest per window wins).
    pub async fn store_report(
        &self,
        at: DateTime<Utc>,
        system_id: &str,
        kind: &str,
        window_index: i64,
        doc: &Value,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO window_reports (system_id, kind, window_index, received_at, doc) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (system_id, kind, window_index) DO UPDATE SET received_at = excluded.received_at, doc = excluded.doc")
            .bind(system_id)
            .bind(kind)
            .bind(window_index)
            .bind(now_ts(at))
            .bind(audit::canonical(doc))
            .execute(&self.pool)
            .await?;
        if window_index % 100 == 0 {
            sqlx::query(
                "DELETE FROM window_reports WHERE system_id = $1 AND kind = $2 AND window_index < $3",
            )
            .bind(system_id)
            .bind(kind)
            .bind(window_index - REPORTS_KEPT)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Up to `n` stored reports of a system and kind with index at most `upto`, newest first.
    pub async fn reports_before(
        &self,
        system_id: &str,
        kind: &str,
        upto: i64,
        n: i64,
    ) -> Result<Vec<(i64, Value)>, StoreError> {
        let rows = sqlx::query("SELECT window_index, doc FROM window_reports WHERE system_id = $1 AND kind = $2 AND window_index <= $3 ORDER BY window_index DESC LIMIT $4")
            .bind(system_id)
            .bind(kind)
            .bind(upto)
            .bind(n)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let k: i64 = r.try_get(0)?;
                let s: String = r.try_get(1)?;
                Ok((k, serde_json::from_str(&s).unwrap_or(Value::Null)))
            })
            .collect()
    }
}

/// Update the stored record (revision check against `expect`, if given); returns the
/// canonical document written.
async fn write_doc(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    inc: &Incident,
    at: DateTime<Utc>,
    expect: Option<i64>,
) -> Result<String, StoreError> {
    let mut next = inc.clone();
    next.revision = inc.revision + 1;
    next.updated_at = at;
    let doc = audit::canonical(&serde_json::to_value(&next).unwrap_or(Value::Null));
    let r = sqlx::query("UPDATE incidents SET state = $1, updated_at = $2, revision = $3, doc = $4 WHERE id = $5 AND revision = $6")
        .bind(next.state.as_str())
        .bind(now_ts(at))
        .bind(next.revision)
        .bind(&doc)
        .bind(&inc.id)
        .bind(expect.unwrap_or(inc.revision))
        .execute(&mut **tx)
        .await?;
    if r.rows_affected() != 1 {
        return Err(StoreError::Refused(Refusal {
            status: 409,
            code: "concurrent_change".into(),
            field: None,
            message: format!("incident {} changed meanwhile; retry", inc.id),
            current_state: Some(inc.state),
        }));
    }
    Ok(doc)
}

/// Whether an alert id was recorded before.
async fn seen_in(conn: &mut sqlx::AnyConnection, alert_id: &str) -> Result<bool, StoreError> {
    Ok(
        sqlx::query("SELECT alert_id FROM incident_alerts WHERE alert_id = $1")
            .bind(alert_id)
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

/// The incident open for a condition (at most one: a partial unique index).
async fn open_in(
    conn: &mut sqlx::AnyConnection,
    condition: &str,
) -> Result<Option<Incident>, StoreError> {
    sqlx::query("SELECT id, doc FROM incidents WHERE condition_key = $1 AND state <> 'closed'")
        .bind(condition)
        .fetch_optional(conn)
        .await?
        .map(|r| parse_doc(&r))
        .transpose()
}

/// Store an alert (with its incident, if it has one); returns it as JSON.
async fn insert_alert(
    conn: &mut sqlx::AnyConnection,
    alert: &driftwatch_schema::Alert,
    incident: Option<&str>,
    at: DateTime<Utc>,
) -> Result<Value, StoreError> {
    let alert_json = serde_json::to_value(alert).unwrap_or(Value::Null);
    sqlx::query("INSERT INTO incident_alerts (alert_id, incident_id, received_at, alert) VALUES ($1, $2, $3, $4)")
        .bind(&alert.alert_id)
        .bind(incident)
        .bind(now_ts(at))
        .bind(audit::canonical(&alert_json))
        .execute(conn)
        .await?;
    Ok(alert_json)
}

fn control_summary(c: &Control) -> Value {
    json!({
        "command_id": c.command_id.to_string(),
        "action": c.action.as_str(),
        "restriction": c.restriction,
        "system_id": c.system_id,
    })
}

fn attach(inc: &mut Incident, alert: &driftwatch_schema::Alert, at: DateTime<Utc>) {
    inc.alerts.count += 1;
    inc.alerts.first_at.get_or_insert(at);
    inc.alerts.last_at = Some(at);
    inc.alerts.last_window = Some(alert.window.index);
    if alert.severity > inc.severity {
        inc.severity = alert.severity;
    }
}

fn parse_doc(r: &AnyRow) -> Result<Incident, StoreError> {
    let id: String = r.try_get(0)?;
    let doc: String = r.try_get(1)?;
    serde_json::from_str(&doc).map_err(|e| StoreError::Damaged {
        id,
        message: e.to_string(),
    })
}

fn stored_entry(r: &AnyRow) -> Result<StoredEntry, StoreError> {
    Ok(StoredEntry {
        seq: r.try_get(0)?,
        at: r.try_get(1)?,
        actor: r.try_get(2)?,
        action: r.try_get(3)?,
        incident_id: r.try_get(4)?,
        payload: r.try_get(5)?,
        prev_hash: r.try_get(6)?,
        hash: r.try_get(7)?,
    })
}
