//! Appends on PostgreSQL: amounts keep their scale, a killed connection leaves nothing.

use super::*;

#[tokio::test]
async fn amounts_keep_their_scale_and_float_style_input_never_reaches_the_database() {
    let database = fresh_database().await;
    let ledger = Ledger::new(PgLedger::new(database.pool().clone()));
    let id = uuid::Uuid::from_u128(1).to_string();
    ledger
        .ingest_json(&[json!({"transaction_id": id, "amount": "100.50", "currency": "BRL"})], at(1))
        .await
        .unwrap();
    let stored: String =
        sqlx::query_scalar("SELECT amount::text FROM transactions").fetch_one(database.pool()).await.unwrap();
    assert_eq!(stored, "100.50");
    for bad in [json!("1e3"), json!(100.5), json!("1E-2"), json!("NaN"), json!("Infinity")] {
        let id = uuid::Uuid::from_u128(2).to_string();
        let item = json!({"transaction_id": id, "amount": bad, "currency": "BRL"});
        let refused = ledger.ingest_json(&[item], at(2)).await;
        assert!(matches!(refused, Err(IngestError::Rejected(_))), "{bad}");
    }
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM transactions").fetch_one(database.pool()).await.unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_batch_whose_connection_is_killed_mid_transaction_leaves_nothing() {
    let database = fresh_database().await;
    let pool = database.pool().clone();
    let ledger = Ledger::new(PgLedger::new(pool.clone()));
    ledger.ingest(vec![transaction(1, "1")], at(1)).await.unwrap();
    let head = ledger.head().await.unwrap();

    // Another session holds ledger_entries, so the append blocks half-way:
    // holding the head lock, before its rows are written.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE ledger_entries IN EXCLUSIVE MODE").execute(&mut *blocker).await.unwrap();
    let store = ledger.store().clone();
    let append = tokio::spawn(async move {
        let batch: Vec<_> = (2..=50).map(|n| transaction(n, "2")).collect();
        let ids: Vec<_> = batch.iter().map(|t| t.transaction_id).collect();
        let session = store.begin_append(&ids).await?;
        let plan = plan_append(session.snapshot(), batch, at(2)).expect("plan");
        session.commit(&plan).await
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let victim: i32 = loop {
        assert!(std::time::Instant::now() < deadline, "the append never blocked on ledger_entries");
        let waiting: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO ledger_entries%'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if let Some(pid) = waiting {
            break pid;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(victim).fetch_one(&pool).await.unwrap();
    assert!(killed);
    let lost = append.await.unwrap().expect_err("the append must report the lost connection");
    // Retryable: the HTTP layer answers 503 `unavailable`, never 500.
    assert!(matches!(lost, invario_core::StoreError::Unavailable(_)), "{lost:?}");
    blocker.rollback().await.unwrap();

    assert_eq!(ledger.head().await.unwrap(), head);
    let transactions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM transactions").fetch_one(&pool).await.unwrap();
    assert_eq!(transactions, 1, "the half-written batch left nothing behind");
    assert!(ledger.verify_full().await.unwrap().is_intact());
    ledger.ingest(vec![transaction(2, "2")], at(3)).await.expect("appends continue afterwards");
}
