//! The catalog port on SQLite: the `ledgers` table, and a [`SqliteLedger`]
//! for each ledger, all sharing the database's one writer lock.

use std::sync::Arc;

use async_trait::async_trait;
use invario_core::{LedgerCatalog, LedgerHead, LedgerInfo, LedgerName, StoreError, Timestamp, TreeState};
use sqlx::SqlitePool;

use crate::ledger::SqliteLedger;
use crate::store_error;

/// The ledgers of one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    pool: SqlitePool,
    writer: crate::ledger::Writer,
}

impl SqliteCatalog {
    /// The catalog on `pool` (migrated: see [`crate::migrate`]).
    pub fn new(pool: SqlitePool) -> Self {
        SqliteCatalog { pool, writer: Arc::default() }
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn ledger_info((name, created_at): (String, i64)) -> Result<LedgerInfo, StoreError> {
    let name = LedgerName::parse(&name).map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let created_at = Timestamp::from_unix_micros(created_at)
        .map_err(|error| StoreError::Corrupt(format!("ledger {name} created_at: {error}")))?;
    Ok(LedgerInfo { name, created_at })
}

#[async_trait]
impl LedgerCatalog for SqliteCatalog {
    type Store = SqliteLedger;

    fn store(&self, name: &LedgerName) -> SqliteLedger {
        SqliteLedger::sharing_writer(self.pool.clone(), name.clone(), Arc::clone(&self.writer))
    }

    async fn create_ledger(&self, name: &LedgerName, at: Timestamp) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().await;
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        let created =
            sqlx::query("INSERT INTO ledgers (ledger_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(name.as_str())
                .bind(at.unix_micros())
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?
                .rows_affected()
                == 1;
        if !created {
            return Ok(false);
        }
        // The genesis head and the empty tree are the core's values, not the database's.
        sqlx::query("INSERT INTO ledger_head (ledger_id, sequence_number, entry_hash, recorded_at) VALUES ($1, 0, $2, NULL)")
            .bind(name.as_str())
            .bind(LedgerHead::EMPTY.entry_hash.as_bytes().as_slice())
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        sqlx::query(
            "INSERT INTO tree_state (ledger_id, tree_size, root_hash, frontier) VALUES ($1, 0, $2, X'')",
        )
        .bind(name.as_str())
        .bind(TreeState::empty().head.root.0.as_slice())
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        transaction.commit().await.map_err(store_error)?;
        Ok(true)
    }

    async fn list_ledgers(&self) -> Result<Vec<LedgerInfo>, StoreError> {
        sqlx::query_as::<_, (String, i64)>("SELECT ledger_id, created_at FROM ledgers ORDER BY ledger_id")
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(ledger_info)
            .collect()
    }

    async fn find_ledger(&self, name: &LedgerName) -> Result<Option<LedgerInfo>, StoreError> {
        sqlx::query_as::<_, (String, i64)>("SELECT ledger_id, created_at FROM ledgers WHERE ledger_id = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?
            .map(ledger_info)
            .transpose()
    }
}
