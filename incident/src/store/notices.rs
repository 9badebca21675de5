//! Notices to parties: stored with the decision, delivered by the service's notifier
//! (claimed with a lease, so two replicas never send the same one twice at once), and
//! acknowledged by the party.

use super::*;
use crate::notify::{Channel, NewNotice, Notice};

/// A notice due for (another) delivery attempt.
#[derive(Debug, Clone)]
pub struct Due {
    /// Id.
    pub id: String,
    /// The incident.
    pub incident_id: String,
    /// E-mail or webhook.
    pub channel: Channel,
    /// Address or URL.
    pub destination: String,
    /// What is sent.
    pub payload: String,
    /// Its SHA-256.
    pub content_hash: String,
    /// Attempts so far.
    pub attempts: i64,
    /// The stored due time (the claim compares it).
    next_attempt_at: String,
}

/// What acknowledging did.
#[derive(Debug, Clone)]
pub struct Acknowledged {
    /// The notice, after.
    pub notice: Notice,
    /// It was acknowledged before (nothing changed).
    pub already: bool,
}

const COLUMNS: &str = "id, incident_id, party_kind, party_name, channel, destination, subject, content_hash, created_at, acknowledge_by, attempts, last_error, next_attempt_at, sent_at, reference, acked_at, acked_by";

/// The audit summary of composed notices.
pub(super) fn summary(notices: &[NewNotice]) -> Value {
    Value::Array(
        notices
            .iter()
            .map(|n| {
                json!({
                    "id": n.id,
                    "party": format!("{} {}", n.party_kind, n.party_name),
                    "channel": n.channel.as_str(),
                    "to": n.destination,
                    "content_hash": n.content_hash,
                    "acknowledge_by": audit::ts(n.acknowledge_by),
                })
            })
            .collect(),
    )
}

fn time(s: &str, what: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Damaged {
            id: what.to_owned(),
            message: format!("time \"{s}\": {e}"),
        })
}

fn notice(r: &AnyRow, now: DateTime<Utc>) -> Result<Notice, StoreError> {
    let id: String = r.try_get(0)?;
    let opt_time = |i: usize| -> Result<Option<DateTime<Utc>>, StoreError> {
        r.try_get::<Option<String>, _>(i)?
            .map(|s| time(&s, &id))
            .transpose()
    };
    let channel: String = r.try_get(4)?;
    let sent_at = opt_time(13)?;
    let mut n = Notice {
        incident_id: r.try_get(1)?,
        party_kind: r.try_get(2)?,
        party_name: r.try_get(3)?,
        channel: Channel::parse(&channel).ok_or_else(|| StoreError::Damaged {
            id: id.clone(),
            message: format!("channel \"{channel}\""),
        })?,
        destination: r.try_get(5)?,
        subject: r.try_get(6)?,
        content_hash: r.try_get(7)?,
        created_at: time(&r.try_get::<String, _>(8)?, &id)?,
        acknowledge_by: time(&r.try_get::<String, _>(9)?, &id)?,
        attempts: r.try_get(10)?,
        last_error: r.try_get(11)?,
        next_attempt_at: if sent_at.is_none() {
            opt_time(12)?
        } else {
            None
        },
        sent_at,
        reference: r.try_get(14)?,
        acknowledged_at: opt_time(15)?,
        acknowledged_by: r.try_get(16)?,
        status: String::new(),
        id,
    };
    n.status = n.status_at(now).to_owned();
    Ok(n)
}

impl Store {
    pub(super) async fn insert_notice(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        n: &NewNotice,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO notices (id, incident_id, party_kind, party_name, channel, destination, subject, payload, content_hash, ack_token, created_at, acknowledge_by, attempts, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, $13)")
            .bind(&n.id)
            .bind(&n.incident_id)
            .bind(&n.party_kind)
            .bind(&n.party_name)
            .bind(n.channel.as_str())
            .bind(&n.destination)
            .bind(&n.subject)
            .bind(&n.payload)
            .bind(&n.content_hash)
            .bind(&n.ack_token)
            .bind(now_ts(n.created_at))
            .bind(now_ts(n.acknowledge_by))
            .bind(now_ts(n.created_at))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The notices of an incident, in order.
    pub async fn notices_of(
        &self,
        incident_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Notice>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notices WHERE incident_id = $1 ORDER BY created_at, id"
        ))
        .bind(incident_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| notice(r, now)).collect()
    }

    /// The notice an acknowledge link names.
    pub async fn notice_by_token(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Notice>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notices WHERE ack_token = $1"
        ))
        .bind(token)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| notice(&r, now))
        .transpose()
    }

    /// Notices not yet sent whose next attempt is due, oldest first.
    pub async fn notices_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Due>, StoreError> {
        let rows = sqlx::query("SELECT id, incident_id, channel, destination, payload, content_hash, attempts, next_attempt_at FROM notices WHERE sent_at IS NULL AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2")
            .bind(now_ts(now))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                let channel: String = r.try_get(2)?;
                Ok(Due {
                    incident_id: r.try_get(1)?,
                    channel: Channel::parse(&channel).ok_or_else(|| StoreError::Damaged {
                        id: id.clone(),
                        message: format!("channel \"{channel}\""),
                    })?,
                    destination: r.try_get(3)?,
                    payload: r.try_get(4)?,
                    content_hash: r.try_get(5)?,
                    attempts: r.try_get(6)?,
                    next_attempt_at: r.try_get(7)?,
                    id,
                })
            })
            .collect()
    }

    /// The earliest next attempt of an unsent notice.
    pub async fn next_notice_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let t: Option<String> =
            sqlx::query("SELECT MIN(next_attempt_at) FROM notices WHERE sent_at IS NULL")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?;
        t.map(|s| time(&s, "notices")).transpose()
    }

    /// Claim a due notice until `lease_until` (another replica that read it too then
    /// finds it claimed); true if this caller has it.
    pub async fn claim_notice(
        &self,
        due: &Due,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE notices SET next_attempt_at = $1 WHERE id = $2 AND sent_at IS NULL AND next_attempt_at = $3")
            .bind(now_ts(lease_until))
            .bind(&due.id)
            .bind(&due.next_attempt_at)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The receiver accepted a notice: recorded and audited.
    pub async fn notice_sent(
        &self,
        at: DateTime<Utc>,
        due: &Due,
        reference: &str,
    ) -> Result<(), StoreError> {
        let _g = self.write.lock().await;
        let mut tx = self.begin().await?;
        self.lock(&mut tx).await?;
        sqlx::query("UPDATE notices SET sent_at = $1, attempts = $2, reference = $3, last_error = NULL WHERE id = $4 AND sent_at IS NULL")
            .bind(now_ts(at))
            .bind(due.attempts + 1)
            .bind(reference)
            .bind(&due.id)
            .execute(&mut *tx)
            .await?;
        Self::append(
            &mut tx,
            at,
            "driftwatch",
            "party_notified",
            Some(&due.incident_id),
            &json!({
                "notice": due.id,
                "channel": due.channel.as_str(),
                "to": due.destination,
                "content_hash": due.content_hash,
                "attempts": due.attempts + 1,
                "reference": reference,
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A delivery attempt failed: the next is due at `next`. The first failure of a
    /// notice is audited (later ones are counted in the metrics and kept as
    /// `last_error`).
    pub async fn notice_failed(
        &self,
        at: DateTime<Utc>,
        due: &Due,
        error: &str,
        next: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let _g = self.write.lock().await;
        let mut tx = self.begin().await?;
        self.lock(&mut tx).await?;
        sqlx::query("UPDATE notices SET attempts = $1, last_error = $2, next_attempt_at = $3 WHERE id = $4 AND sent_at IS NULL")
            .bind(due.attempts + 1)
            .bind(error)
            .bind(now_ts(next))
            .bind(&due.id)
            .execute(&mut *tx)
            .await?;
        if due.attempts == 0 {
            Self::append(
                &mut tx,
                at,
                "driftwatch",
                "party_notice_failed",
                Some(&due.incident_id),
                &json!({"notice": due.id, "channel": due.channel.as_str(), "to": due.destination, "error": error, "retry_at": now_ts(next)}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Record an acknowledgement: through the link (`token`) or by a person for a
    /// notice of `incident` (`notice`). Acknowledging twice changes nothing.
    pub async fn acknowledge(
        &self,
        at: DateTime<Utc>,
        key: AckKey<'_>,
        by: &str,
        via: &str,
        note: Option<&str>,
    ) -> Result<Acknowledged, StoreError> {
        let _g = self.write.lock().await;
        let mut tx = self.begin().await?;
        self.lock(&mut tx).await?;
        let row = match key {
            AckKey::Token(t) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM notices WHERE ack_token = $1"
                ))
                .bind(t)
                .fetch_optional(&mut *tx)
                .await?
            }
            AckKey::Notice { incident, notice } => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM notices WHERE id = $1 AND incident_id = $2"
                ))
                .bind(notice)
                .bind(incident)
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        let Some(row) = row else {
            tx.rollback().await?;
            return Err(StoreError::Refused(Refusal {
                status: 404,
                code: "not_found".into(),
                field: None,
                message: match key {
                    AckKey::Token(_) => "no notice has this acknowledge link".into(),
                    AckKey::Notice { incident, notice } => {
                        format!("incident {incident} has no notice {notice}")
                    }
                },
                current_state: None,
            }));
        };
        let mut n = notice(&row, at)?;
        if n.acknowledged_at.is_some() {
            tx.rollback().await?;
            return Ok(Acknowledged {
                notice: n,
                already: true,
            });
        }
        let by: String = by.trim().chars().take(200).collect();
        let by = if by.is_empty() {
            n.party_name.clone()
        } else {
            by
        };
        sqlx::query("UPDATE notices SET acked_at = $1, acked_by = $2 WHERE id = $3")
            .bind(now_ts(at))
            .bind(&by)
            .bind(&n.id)
            .execute(&mut *tx)
            .await?;
        Self::append(
            &mut tx,
            at,
            &by,
            "party_acknowledged",
            Some(&n.incident_id),
            &json!({
                "notice": n.id,
                "party": format!("{} {}", n.party_kind, n.party_name),
                "via": via,
                "note": note,
                "content_hash": n.content_hash,
                "in_time": at <= n.acknowledge_by,
            }),
        )
        .await?;
        tx.commit().await?;
        n.acknowledged_at = Some(at);
        n.acknowledged_by = Some(by);
        n.status = n.status_at(at).to_owned();
        Ok(Acknowledged {
            notice: n,
            already: false,
        })
    }

    /// Notices not yet sent, and sent but not acknowledged (for the gauges).
    pub async fn notice_counts(&self) -> Result<(i64, i64), StoreError> {
        let r = sqlx::query("SELECT COALESCE(SUM(CASE WHEN sent_at IS NULL THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN sent_at IS NOT NULL AND acked_at IS NULL THEN 1 ELSE 0 END), 0) FROM notices")
            .fetch_one(&self.pool)
            .await?;
        Ok((r.try_get(0)?, r.try_get(1)?))
    }
}

/// Which notice an acknowledgement is for.
#[derive(Debug, Clone, Copy)]
pub enum AckKey<'a> {
    /// The secret of the acknowledge link.
    Token(&'a str),
    /// A notice of an incident, recorded by a person.
    Notice {
        /// The incident.
        incident: &'a str,
        /// The notice.
        notice: &'a str,
    },
}
