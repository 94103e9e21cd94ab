//! The monitor: a tampered row turns /health, the gauge and writes to 503 within
//! one interval. A test binary of its own: Prometheus gauges are process-wide,
//! and another test's healthy server would set the integrity gauge back to 1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

#[allow(dead_code)] // this binary uses only part of the shared helpers
#[path = "api/helpers.rs"]
mod helpers;

use std::time::Duration;

use invario_testkit::tamper::{self, TransactionEdit};
use serde_json::Value;

use helpers::{error_code, fast_monitor, log_lines_with, spawn_app_with, transaction};

#[tokio::test]
async fn tampering_is_caught_within_one_monitor_interval_and_quarantines_writes() {
    let mut app = spawn_app_with(fast_monitor()).await;
    for n in 1..=3 {
        assert_eq!(app.post("/v1/transactions", &transaction(n, "10.00")).await.status(), 201);
    }
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);

    tamper::edit_transaction(app.database.pool(), 2, TransactionEdit::Amount("99999.00")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;

    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    // One Retry-After policy: a quarantine lasts until an operator acts, so no
    // answer about it — /health, /readyz or a refused write — says when to retry.
    assert_eq!(health.headers().get("retry-after"), None);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "corrupted");
    let error = health["error"].as_str().unwrap();
    assert!(error.starts_with("hash mismatch at sequence 2: stored "), "{error}");

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|line| line == "invario_ledger_integrity_status{ledger=\"default\"} 0"),
        "{metrics}"
    );
    // Not ready (take it out of rotation), but alive (do not restart it: the evidence is in the database).
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.headers().get("retry-after"), None);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["check"].as_str()),
        (Some("not_ready"), Some("integrity")),
        "{ready}"
    );
    assert!(ready["reason"].as_str().unwrap().contains("quarantined"), "{ready}");
    assert_eq!(app.client.get(app.url("/livez")).send().await.unwrap().status(), 200);

    let refused = app.post("/v1/transactions", &transaction(9, "1")).await;
    assert_eq!(refused.headers().get("retry-after"), None);
    let (status, code, _) = error_code(refused).await;
    assert_eq!((status, code.as_str()), (503, "ledger_quarantined"));
    let (status, code, _) = error_code(
        app.post("/v1/transactions/batch", &serde_json::json!({"transactions": [transaction(10, "1")]}))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (503, "ledger_quarantined"));

    let failures = log_lines_with("integrity_check_failed");
    assert!(
        failures
            .iter()
            .any(|line| line["level"] == "error"
                && line["error"].as_str().unwrap_or("").contains(&error[..40])),
        "{failures:?}"
    );
    app.stop().await;
}
