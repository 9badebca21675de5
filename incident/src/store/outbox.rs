//! The control outbox: decisions for the agents, written in the transaction that records
//! them and published in order by the service.

use super::*;

impl Store {
    pub(super) async fn enqueue(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        at: DateTime<Utc>,
        c: &Control,
    ) -> Result<(), StoreError> {
        let next: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 FROM control_outbox")
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
        sqlx::query("INSERT INTO control_outbox (seq, system_id, payload, created_at, sent_at) VALUES ($1, $2, $3, $4, NULL)")
            .bind(next)
            .bind(&c.system_id)
            .bind(String::from_utf8_lossy(&c.to_wire()).into_owned())
            .bind(now_ts(at))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// A decision about a system outside any incident's workflow (lifting one): audited
    /// and put in the outbox in one transaction.
    pub async fn control(
        &self,
        at: DateTime<Utc>,
        actor: &str,
        c: &Control,
        reason: &str,
    ) -> Result<(), StoreError> {
        let _g = self.write.lock().await;
        let mut tx = self.begin().await?;
        self.lock(&mut tx).await?;
        Self::enqueue(&mut tx, at, c).await?;
        Self::append(
            &mut tx,
            at,
            actor,
            "control",
            c.incident_id.as_deref(),
            &json!({"system_id": c.system_id, "reason": reason, "control": control_summary(c)}),
        )
        .await?;
        tx.commit().await?;
        self.control_added.notify_one();
        Ok(())
    }

    /// Control messages not yet published, oldest first.
    pub async fn control_pending(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        let rows = sqlx::query("SELECT seq, system_id, payload FROM control_outbox WHERE sent_at IS NULL ORDER BY seq LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Mark a control message published (the broker acknowledged it).
    pub async fn control_sent(&self, seq: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE control_outbox SET sent_at = $1 WHERE seq = $2")
            .bind(now_ts(at))
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
