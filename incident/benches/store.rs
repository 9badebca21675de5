//! How fast the incident service records alerts and verifies its audit chain, per
//! backend: what bounds its catch-up after downtime. Prints one table.
//!
//! ```sh
//! cargo bench -p driftwatch-incident --bench store                      # SQLite
//! eval "$(tests/postgres.sh start)"; cargo bench -p driftwatch-incident --bench store   # and PostgreSQL
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use driftwatch_incident::desk::{Desk, Handled};
use driftwatch_incident::policy::Policy;
use driftwatch_incident::store::Store;
use driftwatch_schema::{Alert, AlertKind, Severity, WindowInfo};
use sqlx::Connection as _;

const ALERTS: i64 = 3000;

fn alert(k: i64) -> Alert {
    let t = Utc::now();
    Alert {
        alert_id: format!("bench/ref/{k}/age/ks"),
        system_id: "bench".into(),
        kind: AlertKind::Drift,
        severity: Severity::Critical,
        signal: "age".into(),
        method: "ks".into(),
        statistic: Some(0.3),
        p_value: Some(1e-12),
        value: 1e-12,
        threshold: 0.01,
        samples: 1000,
        window: WindowInfo {
            index: k,
            start: None,
            end: None,
            events: 1000,
            outcomes: 0,
            first_event_at: t,
            last_event_at: t,
            complete: true,
        },
        reference_version: "ref".into(),
        plan_version: None,
        plan_hash: Some("sha256:0000000000000000".into()),
        summary: "critical drift on age".into(),
        lifecycle: None,
    }
}

async fn run(label: &str, url: &str) -> (String, f64, f64, i64) {
    let store = Store::open(url).await.expect("store");
    let mut desk = Desk::new(Arc::new(store), vec![Policy::default_for("bench")]);
    desk.evidence_wait = Duration::ZERO;
    let started = Instant::now();
    for k in 0..ALERTS {
        let h = desk
            .handle_alert(Utc::now(), &alert(k))
            .await
            .expect("alert");
        assert!(matches!(h, Handled::Opened(_) | Handled::Attached(_)));
    }
    let rate = ALERTS as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let v = desk.store.verify(&[]).await.expect("verify");
    assert!(v.ok);
    (
        label.to_owned(),
        rate,
        started.elapsed().as_secs_f64() * 1000.0,
        v.entries,
    )
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let mut rows = vec![
        run(
            "SQLite (file, WAL)",
            &format!("sqlite:{}", dir.path().join("b.db").display()),
        )
        .await,
    ];
    if let Ok(admin) = std::env::var("DRIFTWATCH_TEST_POSTGRES") {
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&admin)
            .await
            .expect("postgres");
        let name = format!("dw_bench_{}", std::process::id());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .expect("create");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        rows.push(
            run(
                "PostgreSQL 15 (local, fsync off)",
                &format!("{base}/{name}"),
            )
            .await,
        );
    }
    println!("\n{ALERTS} critical alerts of one condition (1 opens, the rest attach), then `audit verify`:\n");
    println!("| backend | alerts recorded/s | verify (ms) | audit entries |");
    println!("|---|---:|---:|---:|");
    for (l, r, v, n) in rows {
        println!("| {l} | {r:.0} | {v:.0} | {n} |");
    }
}
