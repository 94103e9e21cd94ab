//! Graceful shutdown. (Tamper detection lives in tests/quarantine.rs: the
//! integrity gauge is process-wide, so that test needs a process to itself.)

use std::time::Duration;

use crate::helpers::{fast_monitor, spawn_app_with, transaction};

#[tokio::test]
async fn shutdown_answers_in_flight_requests_and_loses_nothing() {
    let mut app = spawn_app_with(fast_monitor()).await;
    let requests: Vec<_> = (1..=50u128)
        .map(|n| {
            let client = app.client.clone();
            let url = app.url("/v1/transactions");
            let key = app.write_key.clone();
            tokio::spawn(
                async move { client.post(url).bearer_auth(key).json(&transaction(n, "1")).send().await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    app.stop().await;
    let mut acknowledged = Vec::new();
    for (n, request) in (1..=50u128).zip(requests) {
        if let Ok(response) = request.await.unwrap()
            && response.status() == 201
        {
            acknowledged.push(n);
        }
    }
    for n in acknowledged {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT sequence_number FROM ledger_entries WHERE transaction_id = $1")
                .bind(uuid::Uuid::from_u128(n))
                .fetch_optional(app.database.pool())
                .await
                .unwrap();
        assert!(found.is_some(), "transaction {n} was answered 201 but is not stored");
    }
}
