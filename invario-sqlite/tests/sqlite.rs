//! invario-sqlite: the contract suite, agreement with PostgreSQL, durability and tamper detection.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use invario_core::{Ledger, LedgerEntry};
use invario_postgres::PgLedger;
use invario_sqlite::SqliteLedger;
use invario_testkit::contract::{at, transaction};
use invario_testkit::harness::fresh_database;
use invario_testkit::{
    TempSqliteFile, catalog_contract_tests, fresh_sqlite_catalog, fresh_sqlite_key_store,
    fresh_sqlite_ledger, key_store_contract_tests, ledger_store_contract_tests,
};

ledger_store_contract_tests!(fresh_sqlite_ledger(), cases = 32);
catalog_contract_tests!(fresh_sqlite_catalog());
key_store_contract_tests!(fresh_sqlite_key_store());

async fn all_entries<S: invario_core::LedgerStore>(ledger: &Ledger<S>) -> Vec<LedgerEntry> {
    ledger.entries_after(0, 1000).await.unwrap().entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_transactions_hash_identically_on_sqlite_and_postgres() {
    let file = TempSqliteFile::new().await;
    let sqlite = Ledger::new(SqliteLedger::new(file.pool().clone()));
    let database = fresh_database().await;
    let postgres = Ledger::new(PgLedger::new(database.pool().clone()));
    let batches = [
        vec![
            transaction(1, "100.50"),
            transaction(2, "-0.005"),
            transaction(3, "1234567890.123456789012345678"),
        ],
        vec![transaction(4, "7")],
        vec![transaction(5, "0.10"), transaction(1, "100.50")],
    ];
    for (step, batch) in (1..).zip(batches) {
        let on_sqlite = sqlite.ingest(batch.clone(), at(step)).await.unwrap();
        let on_postgres = postgres.ingest(batch, at(step)).await.unwrap();
        assert_eq!(on_sqlite, on_postgres);
    }
    let (from_sqlite, from_postgres) = (all_entries(&sqlite).await, all_entries(&postgres).await);
    assert_eq!(from_sqlite.len(), 5);
    assert_eq!(from_sqlite, from_postgres, "entries, hashes included, are identical");
    assert_eq!(from_sqlite[0].transaction.amount.to_string(), "100.50");
}

#[tokio::test]
async fn appends_survive_reopening_the_file() {
    let file = TempSqliteFile::new().await;
    let before = {
        let ledger = Ledger::new(SqliteLedger::new(file.pool().clone()));
        ledger.ingest((1..=3).map(|n| transaction(n, "1.50")).collect(), at(1)).await.unwrap();
        file.pool().close().await;
        ledger.head().await.err().map(|_| ())
    };
    assert!(before.is_some(), "the closed pool is really closed");
    let reopened = invario_sqlite::connect(&file.url()).await.unwrap();
    let ledger = Ledger::new(SqliteLedger::new(reopened));
    assert_eq!(ledger.head().await.unwrap().sequence_number, 3);
    assert!(ledger.verify_full().await.unwrap().is_intact());
}

#[tokio::test]
async fn plain_edits_are_refused_and_edits_behind_the_triggers_are_caught() {
    let file = TempSqliteFile::new().await;
    let ledger = Ledger::new(SqliteLedger::new(file.pool().clone()));
    ledger.ingest((1..=4).map(|n| transaction(n, "10.00")).collect(), at(1)).await.unwrap();
    for statement in [
        "UPDATE transactions SET amount = '1'",
        "DELETE FROM transactions",
        "UPDATE ledger_entries SET recorded_at = 0",
        "DELETE FROM ledger_entries",
        "DELETE FROM ledger_head",
        "UPDATE ledger_head SET sequence_number = 1",
    ] {
        let error = sqlx::query(statement).execute(file.pool()).await.expect_err(statement).to_string();
        assert!(error.contains("the ledger is append-only"), "{statement}: {error}");
    }
    // An attacker with the file drops the trigger, edits, and puts it back.
    let mut connection = file.pool().acquire().await.unwrap();
    sqlx::query("DROP TRIGGER transactions_no_update").execute(&mut *connection).await.unwrap();
    sqlx::query("UPDATE transactions SET amount = '10.01' WHERE transaction_id = $1")
        .bind(uuid::Uuid::from_u128(3).to_string())
        .execute(&mut *connection)
        .await
        .unwrap();
    drop(connection);
    let found = ledger.verify_full().await.unwrap().first_break.unwrap();
    assert_eq!((found.kind(), found.sequence()), ("hash_mismatch", Some(3)));
}
