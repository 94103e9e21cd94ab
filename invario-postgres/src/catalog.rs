//! The catalog port on PostgreSQL: the `ledgers` table, and a [`PgLedger`]
//! for each ledger sharing one pool.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use invario_core::{LedgerCatalog, LedgerHead, LedgerInfo, LedgerName, StoreError, Timestamp, TreeState};
use sqlx::PgPool;

use crate::commit_lane::CommitLane;
use crate::ledger::PgLedger;
use crate::rows::{store_error, timestamp, to_datetime};
use std::sync::Arc;

/// The ledgers of one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgCatalog {
    pool: PgPool,
    /// The writers' connection its ledgers share, so writes ready at the
    /// same moment share a commit (see [`crate::commit_lane`]).
    lane: Arc<CommitLane>,
}

impl PgCatalog {
    /// The catalog on `pool` (migrated: see [`crate::migrate`]).
    pub fn new(pool: PgPool) -> Self {
        let lane = Arc::new(CommitLane::new(pool.clone()));
        PgCatalog { pool, lane }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn ledger_info(name: String, created_at: DateTime<Utc>) -> Result<LedgerInfo, StoreError> {
    let name = LedgerName::parse(&name).map_err(|error| StoreError::Corrupt(error.to_string()))?;
    Ok(LedgerInfo { name, created_at: timestamp(created_at)? })
}

#[async_trait]
impl LedgerCatalog for PgCatalog {
    type Store = PgLedger;

    fn store(&self, name: &LedgerName) -> PgLedger {
        PgLedger::in_lane(self.pool.clone(), name.clone(), self.lane.clone())
    }

    async fn create_ledger(&self, name: &LedgerName, at: Timestamp) -> Result<bool, StoreError> {
        // The ledger, its empty head and its empty tree in one transaction; a
        // name taken already (even by a concurrent create) changes nothing.
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        let created = sqlx::query(
            "INSERT INTO ledgers (ledger_id, created_at) VALUES ($1, $2) ON CONFLICT (ledger_id) DO NOTHING",
        )
        .bind(name.as_str())
        .bind(to_datetime(at))
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?
        .rows_affected()
            == 1;
        if !created {
            return Ok(false);
        }
        // The genesis head and the empty tree are the core's values, not the database's.
        sqlx::query(
            "INSERT INTO ledger_head (ledger_id, sequence_number, entry_hash, recorded_at) VALUES ($1, 0, $2, NULL)",
        )
        .bind(name.as_str())
        .bind(LedgerHead::EMPTY.entry_hash.as_bytes().as_slice())
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        sqlx::query(
            "INSERT INTO tree_state (ledger_id, tree_size, root_hash, frontier) VALUES ($1, 0, $2, ''::bytea)",
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
        sqlx::query_as::<_, (String, DateTime<Utc>)>(
            "SELECT ledger_id, created_at FROM ledgers ORDER BY ledger_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|(name, created_at)| ledger_info(name, created_at))
        .collect()
    }

    async fn find_ledger(&self, name: &LedgerName) -> Result<Option<LedgerInfo>, StoreError> {
        sqlx::query_as::<_, (String, DateTime<Utc>)>(
            "SELECT ledger_id, created_at FROM ledgers WHERE ledger_id = $1",
        )
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .map(|(name, created_at)| ledger_info(name, created_at))
        .transpose()
    }
}
