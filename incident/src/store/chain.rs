//! Reading the audit chain back: entries, timelines, the head, checkpoints, and the
//! verification of the chain and of every record against it.

use super::*;

impl Store {
    /// The audit entries, in `seq` order, from `from` on.
    pub async fn audit_entries(
        &self,
        from: i64,
        limit: i64,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let rows = sqlx::query("SELECT seq, at, actor, action, incident_id, payload, prev_hash, hash FROM audit WHERE seq >= $1 ORDER BY seq LIMIT $2")
            .bind(from)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_entry).collect()
    }

    /// The audit entries of one incident: its timeline.
    pub async fn timeline(&self, id: &str) -> Result<Vec<StoredEntry>, StoreError> {
        let rows = sqlx::query("SELECT seq, at, actor, action, incident_id, payload, prev_hash, hash FROM audit WHERE incident_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_entry).collect()
    }

    /// The chain's size and head hash.
    pub async fn head(&self) -> Result<(u64, String), StoreError> {
        let r = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match r {
            Some(r) => (r.try_get::<i64, _>(0)? as u64, r.try_get(1)?),
            None => (0, GENESIS.to_owned()),
        })
    }

    /// Keep a signed checkpoint.
    pub async fn add_checkpoint(
        &self,
        at: DateTime<Utc>,
        c: &Checkpoint,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO checkpoints (size, at, head, note) VALUES ($1, $2, $3, $4) ON CONFLICT (size) DO NOTHING")
            .bind(c.size as i64)
            .bind(now_ts(at))
            .bind(&c.head)
            .bind(&c.note)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The checkpoints kept, oldest first.
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query("SELECT note FROM checkpoints ORDER BY size")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let note: String = r.try_get(0)?;
            if let Ok(c) = audit::parse_checkpoint(&note, None) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Verify the chain, the checkpoints (kept ones and `extra`), and that every
    /// incident record and evidence snapshot is the one its last audit entry hashed.
    pub async fn verify(&self, extra: &[Checkpoint]) -> Result<Verification, StoreError> {
        self.verify_with(extra, None).await
    }

    /// [`Store::verify`], and with a verifier key, every checkpoint kept in the store
    /// must carry its signature (a checkpoint forged to match a rewritten chain fails).
    pub async fn verify_with(
        &self,
        extra: &[Checkpoint],
        verifier: Option<&str>,
    ) -> Result<Verification, StoreError> {
        let entries = self.audit_entries(1, i64::MAX).await?;
        let mut cps = self.checkpoints().await?;
        if let Some(key) = verifier {
            for c in &cps {
                if let Err(e) = audit::parse_checkpoint(&c.note, Some(key)) {
                    return Ok(Verification {
                        ok: false,
                        entries: entries.len() as i64,
                        head: String::new(),
                        checkpoints: cps.len(),
                        problem: Some(audit::Problem {
                            seq: c.size as i64,
                            kind: "bad_signature".into(),
                            message: format!(
                                "the checkpoint kept in the store at size {} does not verify ({e}): it was not signed by this service",
                                c.size
                            ),
                        }),
                    });
                }
            }
        }
        cps.extend(extra.iter().cloned());
        let mut v = audit::verify(&entries, &cps);
        if !v.ok {
            return Ok(v);
        }
        // The last doc_hash per incident, from the verified chain.
        let mut last: std::collections::HashMap<String, (i64, String)> = Default::default();
        let mut evidence_hash: std::collections::HashMap<String, String> = Default::default();
        for e in &entries {
            let Some(id) = &e.incident_id else { continue };
            let p: Value = serde_json::from_str(&e.payload).unwrap_or(Value::Null);
            if let Some(h) = p.get("doc_hash").and_then(Value::as_str) {
                last.insert(id.clone(), (e.seq, h.to_owned()));
            }
            if let Some(h) = p.get("evidence_hash").and_then(Value::as_str) {
                evidence_hash.insert(id.clone(), h.to_owned());
            }
        }
        let rows = sqlx::query("SELECT id, state, doc FROM incidents ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let mut problems = Vec::new();
        for r in &rows {
            let id: String = r.try_get(0)?;
            let state: String = r.try_get(1)?;
            let doc: String = r.try_get(2)?;
            let h = audit::sha256_hex(doc.as_bytes());
            match last.get(&id) {
                None => problems.push((
                    0,
                    format!("incident {id} has no audit entry: it was inserted behind the service's back"),
                )),
                Some((seq, want)) if *want != h => problems.push((
                    *seq,
                    format!("incident {id} was edited outside the service: the record hashes to {}, audit entry {seq} recorded {}", &h[..16], &want[..16.min(want.len())]),
                )),
                Some((seq, _)) => {
                    let doc_state = serde_json::from_str::<Value>(&doc)
                        .ok()
                        .and_then(|d| d.get("state").and_then(Value::as_str).map(str::to_owned));
                    if doc_state.as_deref() != Some(state.as_str()) {
                        problems.push((
                            *seq,
                            format!("incident {id}: its state column says {state}, the record says {}", doc_state.unwrap_or_default()),
                        ));
                    }
                }
            }
        }
        let ev = sqlx::query("SELECT incident_id, hash, doc FROM evidence ORDER BY incident_id")
            .fetch_all(&self.pool)
            .await?;
        for r in &ev {
            let id: String = r.try_get(0)?;
            let hash: String = r.try_get(1)?;
            let doc: String = r.try_get(2)?;
            let h = audit::sha256_hex(doc.as_bytes());
            if evidence_hash.get(&id) != Some(&h) || hash != h {
                problems.push((
                    0,
                    format!("the evidence snapshot of {id} was altered: it hashes to {}, the audit trail recorded {}", &h[..16], evidence_hash.get(&id).map_or("nothing", |s| &s[..16.min(s.len())])),
                ));
            }
        }
        if let Some((seq, message)) = problems.into_iter().next() {
            v.ok = false;
            v.problem = Some(audit::Problem {
                seq,
                kind: "record_altered".into(),
                message,
            });
        }
        Ok(v)
    }
}
