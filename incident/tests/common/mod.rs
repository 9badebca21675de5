//! Shared by the incident tests: a fresh store on each backend, alerts and reports.
//!
//! Every test runs on SQLite (a temporary file) and, when `DRIFTWATCH_TEST_POSTGRES`
//! names a server (`postgres://USER@HOST:PORT/DB` of a role that may create databases),
//! on PostgreSQL too, in a database of its own. `.ci/run` starts a real PostgreSQL and
//! sets the variable.

#![allow(dead_code)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use driftwatch_incident::policy::{PartyRef, PlannedAction, Policy};
use driftwatch_incident::store::Store;
use driftwatch_schema::{Alert, AlertKind, Severity, WindowInfo};
use serde_json::{json, Value};
use sqlx::Connection as _;

/// A store on each backend under test, with a label.
pub async fn stores() -> Vec<(String, Store, tempfile::TempDir)> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("incidents.db").display());
    out.push((
        "sqlite".to_owned(),
        Store::open(&url).await.expect("sqlite store"),
        dir,
    ));
    if let Some(url) = postgres_url().await {
        let dir = tempfile::tempdir().expect("temp dir");
        out.push((
            "postgres".to_owned(),
            Store::open(&url).await.expect("postgres store"),
            dir,
        ));
    }
    out
}

/// A fresh PostgreSQL database, when the suite has a server.
pub async fn postgres_url() -> Option<String> {
    let admin = std::env::var("DRIFTWATCH_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())?;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&admin)
        .await
        .expect("DRIFTWATCH_TEST_POSTGRES is set but the server does not answer");
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).expect("randomness");
    let name = format!("dw_test_{}", driftwatch_incident::audit::hex(&b));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Some(format!("{base}/{name}"))
}

/// 2026-11-28 09:00 plus `minutes`.
pub fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0)
        .single()
        .expect("valid")
        + Duration::minutes(minutes)
}

/// A plan's policy for system `credit`: critical opens, a human decides `disable`.
pub fn policy() -> Policy {
    Policy {
        system_id: "credit".into(),
        name: Some("Credit scoring".into()),
        plan_hash: "sha256:00112233aabbccdd".into(),
        plan_version: Some("2026-11".into()),
        model_versions: vec!["1.4.2".into()],
        group_by_system: false,
        warning_opens: false,
        critical_opens: true,
        warning: Some(PlannedAction {
            action: "continue".into(),
            automatic: false,
            runbook: None,
        }),
        critical: Some(PlannedAction {
            action: "disable".into(),
            automatic: false,
            runbook: Some("https://runbooks.example/credit".into()),
        }),
        parties: vec![
            PartyRef {
                kind: "deployer".into(),
                name: "Bank A".into(),
                contact: Some("mailto:ops@bank-a.example".into()),
                inform_on: vec![],
                email: Some("ops@bank-a.example".into()),
                webhook: None,
                acknowledge_within_h: 24,
            },
            PartyRef {
                kind: "market_surveillance_authority".into(),
                name: "AP".into(),
                contact: Some("mailto:ai@ap.example".into()),
                inform_on: vec!["disable".into(), "recall".into()],
                email: Some("ai@ap.example".into()),
                webhook: None,
                acknowledge_within_h: 72,
            },
        ],
        owners: vec!["plan owner: J. Jansen".into()],
    }
}

/// A drift alert on `signal` in window `k`.
pub fn alert(k: i64, signal: &str, severity: Severity) -> Alert {
    Alert {
        alert_id: format!("credit/ref1/{k}/{signal}/ks"),
        system_id: "credit".into(),
        kind: AlertKind::Drift,
        severity,
        signal: signal.into(),
        method: "ks".into(),
        statistic: Some(0.2),
        p_value: Some(1e-9),
        value: 1e-9,
        threshold: 0.01,
        samples: 1000,
        window: window(k),
        reference_version: "ref1".into(),
        plan_version: Some("2026-11".into()),
        plan_hash: Some("sha256:00112233aabbccdd".into()),
        summary: format!(
            "{} drift on {signal} of credit in window {k}",
            severity.as_str()
        ),
        lifecycle: None,
    }
}

/// Window `k` of 1000 predictions a second apart.
pub fn window(k: i64) -> WindowInfo {
    let start = at(0) + Duration::seconds(k * 1000);
    WindowInfo {
        index: k,
        start: None,
        end: None,
        events: 1000,
        outcomes: 0,
        first_event_at: start,
        last_event_at: start + Duration::seconds(999),
        complete: true,
    }
}

/// A window report with one check on `signal` at `severity`.
pub fn report(k: i64, signal: &str, severity: &str) -> Value {
    json!({
        "system_id": "credit",
        "reference_version": "ref1",
        "window": serde_json::to_value(window(k)).expect("json"),
        "severity": severity,
        "checks": [{"signal": signal, "method": "ks", "status": "evaluated", "severity": severity, "samples": 1000}],
    })
}
