//! # invario-testkit
//!
//! Test support for Invario adapters and shells (a dev-dependency only):
//!
//! * [`contract`] — the adapter contract suite, including a model-based
//!   property test against the memory model; use [`ledger_store_contract_tests!`]
//!   and [`key_store_contract_tests!`];
//! * [`strategies`] — proptest strategies for valid and invalid transactions;
//! * [`harness`] — a fresh, migrated PostgreSQL database per test, found via
//!   `INVARIO_TEST_DATABASE_URL`, a throwaway local cluster, or testcontainers;
//! * [`faults`] — a load driver recording every answer, and the checker that
//!   holds the service to them after an injected fault;
//! * [`tamper`] — edits that bypass the append-only triggers, as an attacker would;
//! * the memory adapters, re-exported.

#![warn(missing_docs)]
// Test support: a failed expectation must panic loudly, as in a test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod contract;
pub mod faults;
pub mod harness;
pub mod tamper;

pub use invario_core::strategies;
pub use invario_core::{MemoryCatalog, MemoryKeyStore, MemoryLedger};

/// A fresh memory ledger, in the `(store, guard)` shape the contract suite takes.
pub async fn fresh_memory_ledger() -> (MemoryLedger, ()) {
    (MemoryLedger::new(), ())
}

/// A fresh memory catalog holding only `default`, in the catalog contract's shape.
pub async fn fresh_memory_catalog() -> (MemoryCatalog, ()) {
    (MemoryCatalog::new(contract::at(0)), ())
}

/// A PostgreSQL catalog on a fresh test database, in the catalog contract's shape.
pub async fn fresh_pg_catalog() -> (invario_postgres::PgCatalog, harness::TestDatabase) {
    let database = harness::fresh_database().await;
    (invario_postgres::PgCatalog::new(database.pool().clone()), database)
}

/// A SQLite catalog on a fresh temporary file, in the catalog contract's shape.
pub async fn fresh_sqlite_catalog() -> (invario_sqlite::SqliteCatalog, TempSqliteFile) {
    let file = TempSqliteFile::new().await;
    (invario_sqlite::SqliteCatalog::new(file.pool().clone()), file)
}

/// A fresh memory key store, in the `(store, guard)` shape the contract suite takes.
pub async fn fresh_memory_key_store() -> (MemoryKeyStore, ()) {
    (MemoryKeyStore::new(), ())
}

/// A PostgreSQL ledger on a fresh test database, in the contract suite's shape.
pub async fn fresh_pg_ledger() -> (invario_postgres::PgLedger, harness::TestDatabase) {
    let database = harness::fresh_database().await;
    (invario_postgres::PgLedger::new(database.pool().clone()), database)
}

/// A PostgreSQL key store on a fresh test database, in the contract suite's shape.
pub async fn fresh_pg_key_store() -> (invario_postgres::PgKeyStore, harness::TestDatabase) {
    let database = harness::fresh_database().await;
    (invario_postgres::PgKeyStore::new(database.pool().clone()), database)
}

/// A SQLite file in the temporary folder, removed (with its WAL files) when dropped.
#[derive(Debug)]
pub struct TempSqliteFile {
    path: std::path::PathBuf,
    pool: invario_sqlite::SqlitePool,
}

impl TempSqliteFile {
    /// A new, migrated file.
    pub async fn new() -> Self {
        let path = std::env::temp_dir().join(format!("invario-test-{}.db", uuid::Uuid::new_v4().simple()));
        let pool =
            invario_sqlite::connect(&format!("sqlite://{}", path.display())).await.expect("open SQLite");
        invario_sqlite::migrate(&pool).await.expect("migrate SQLite");
        TempSqliteFile { path, pool }
    }

    /// Its pool.
    pub fn pool(&self) -> &invario_sqlite::SqlitePool {
        &self.pool
    }

    /// Its `sqlite://` URL.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }
}

impl Drop for TempSqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

/// A SQLite ledger on a fresh temporary file, in the contract suite's shape.
pub async fn fresh_sqlite_ledger() -> (invario_sqlite::SqliteLedger, TempSqliteFile) {
    let file = TempSqliteFile::new().await;
    (invario_sqlite::SqliteLedger::new(file.pool().clone()), file)
}

/// A SQLite key store on a fresh temporary file, in the contract suite's shape.
pub async fn fresh_sqlite_key_store() -> (invario_sqlite::SqliteKeyStore, TempSqliteFile) {
    let file = TempSqliteFile::new().await;
    (invario_sqlite::SqliteKeyStore::new(file.pool().clone()), file)
}
