//! The ledger port on SQLite.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::lock::{Mutex as AsyncMutex, OwnedMutexGuard};
use futures_util::stream::{BoxStream, StreamExt};
use invario_core::{
    AppendPlan, AppendSession, AppendSnapshot, LedgerEntry, LedgerHead, LedgerStore, StoreError, StoredEntry,
    StoredTransaction, Sweep, Timestamp, TransactionId, VerificationItem, VerificationRecord,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use crate::{hash, sequence, store_error, to_sequence, uuid};

/// The ledger store on a SQLite pool.
#[derive(Debug, Clone)]
pub struct SqliteLedger {
    pool: SqlitePool,
    writer: Arc<AsyncMutex<()>>,
}

impl SqliteLedger {
    /// A store on `pool` (migrated: see [`crate::migrate`]).
    pub fn new(pool: SqlitePool) -> Self {
        SqliteLedger { pool, writer: Arc::default() }
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// An append holding the single writer's lock inside an open `BEGIN IMMEDIATE`
/// transaction. Dropping it rolls back.
#[derive(Debug)]
pub struct SqliteAppend {
    transaction: Transaction<'static, Sqlite>,
    snapshot: AppendSnapshot,
    _writer: OwnedMutexGuard<()>,
}

const SELECT_HEAD: &str = "SELECT sequence_number, entry_hash, recorded_at FROM ledger_head";
const ENTRY_COLUMNS: &str = "e.sequence_number, e.transaction_id, e.prev_hash, e.entry_hash, e.recorded_at, \
     t.transaction_id AS joined_id, t.amount, t.currency, t.occurred_at, t.metadata";

fn head_from_row(row: &SqliteRow) -> Result<LedgerHead, StoreError> {
    let recorded_at: Option<i64> = row.try_get("recorded_at").map_err(store_error)?;
    Ok(LedgerHead {
        sequence_number: sequence(row.try_get("sequence_number").map_err(store_error)?)?,
        entry_hash: hash(&row.try_get::<Vec<u8>, _>("entry_hash").map_err(store_error)?)?,
        recorded_at: recorded_at
            .map(Timestamp::from_unix_micros)
            .transpose()
            .map_err(|error| StoreError::Corrupt(format!("head recorded_at {error}")))?,
    })
}

fn stored_transaction(row: &SqliteRow, id_column: &str) -> Result<StoredTransaction, StoreError> {
    let metadata: String = row.try_get("metadata").map_err(store_error)?;
    let metadata = StoredTransaction::metadata_from_json(&metadata)?;
    Ok(StoredTransaction {
        transaction_id: uuid(&row.try_get::<String, _>(id_column).map_err(store_error)?)?,
        amount: row.try_get("amount").map_err(store_error)?,
        currency: row.try_get("currency").map_err(store_error)?,
        occurred_at_micros: row.try_get("occurred_at").map_err(store_error)?,
        metadata,
    })
}

fn verification_record(row: &SqliteRow) -> Result<VerificationRecord, StoreError> {
    let entry = StoredEntry {
        sequence_number: sequence(row.try_get("sequence_number").map_err(store_error)?)?,
        transaction_id: uuid(&row.try_get::<String, _>("transaction_id").map_err(store_error)?)?,
        prev_hash: hash(&row.try_get::<Vec<u8>, _>("prev_hash").map_err(store_error)?)?,
        entry_hash: hash(&row.try_get::<Vec<u8>, _>("entry_hash").map_err(store_error)?)?,
        recorded_at_micros: row.try_get("recorded_at").map_err(store_error)?,
    };
    let joined: Option<String> = row.try_get("joined_id").map_err(store_error)?;
    let transaction = match joined {
        Some(_) => Some(stored_transaction(row, "joined_id")?),
        None => None,
    };
    Ok(VerificationRecord::Entry(entry, transaction))
}

fn entry_from_row(row: &SqliteRow) -> Result<LedgerEntry, StoreError> {
    match verification_record(row)? {
        VerificationRecord::Entry(entry, Some(transaction)) => entry.to_entry(&transaction),
        _ => Err(StoreError::Corrupt("an entry without its transaction".into())),
    }
}

#[async_trait]
impl LedgerStore for SqliteLedger {
    type Append = SqliteAppend;

    async fn begin_append(&self, ids: &[TransactionId]) -> Result<SqliteAppend, StoreError> {
        let writer = Arc::clone(&self.writer).lock_owned().await;
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(store_error)?;
        let head_row = sqlx::query(SELECT_HEAD).fetch_one(&mut *transaction).await.map_err(store_error)?;
        let head = head_from_row(&head_row)?;
        let ids_json = serde_json::to_string(&ids.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|error| StoreError::Contract(error.to_string()))?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger_entries e JOIN transactions t ON t.transaction_id = e.transaction_id \
             WHERE e.transaction_id IN (SELECT value FROM json_each($1))"
        )))
        .bind(ids_json)
        .fetch_all(&mut *transaction)
        .await
        .map_err(store_error)?;
        let existing = rows.iter().map(entry_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(SqliteAppend { transaction, snapshot: AppendSnapshot { head, existing }, _writer: writer })
    }

    async fn entry_by_id(&self, id: TransactionId) -> Result<Option<LedgerEntry>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger_entries e JOIN transactions t ON t.transaction_id = e.transaction_id \
             WHERE e.transaction_id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(entry_from_row)
        .transpose()
    }

    async fn head(&self) -> Result<LedgerHead, StoreError> {
        let row = sqlx::query(SELECT_HEAD).fetch_one(&self.pool).await.map_err(store_error)?;
        head_from_row(&row)
    }

    async fn entries_after(&self, after: u64, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger_entries e JOIN transactions t ON t.transaction_id = e.transaction_id \
             WHERE e.sequence_number > $1 ORDER BY e.sequence_number LIMIT $2"
        )))
        .bind(to_sequence(after)?)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(entry_from_row).collect()
    }

    fn verification_stream(&self, sweep: Sweep) -> BoxStream<'_, Result<VerificationItem, StoreError>> {
        let pool = self.pool.clone();
        async_stream::try_stream! {
            // A read transaction sees one snapshot (WAL) for the head and every row.
            let mut transaction = pool.begin().await.map_err(store_error)?;
            let head_row = sqlx::query(SELECT_HEAD).fetch_one(&mut *transaction).await.map_err(store_error)?;
            yield VerificationItem::Head(head_from_row(&head_row)?);
            let after = match sweep {
                Sweep::Full => 0,
                Sweep::After(sequence) => to_sequence(sequence)?,
            };
            {
                let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {ENTRY_COLUMNS} FROM ledger_entries e \
                     LEFT JOIN transactions t ON t.transaction_id = e.transaction_id \
                     WHERE e.sequence_number > $1 ORDER BY e.sequence_number"
                )))
                .bind(after)
                .fetch(&mut *transaction);
                while let Some(row) = rows.next().await {
                    let row = row.map_err(store_error)?;
                    yield VerificationItem::Record(verification_record(&row)?);
                }
            }
            if sweep == Sweep::Full {
                let mut orphans = sqlx::query(
                    "SELECT t.transaction_id, t.amount, t.currency, t.occurred_at, t.metadata FROM transactions t \
                     WHERE NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.transaction_id = t.transaction_id)",
                )
                .fetch(&mut *transaction);
                while let Some(row) = orphans.next().await {
                    let row = row.map_err(store_error)?;
                    let orphan = stored_transaction(&row, "transaction_id")?;
                    yield VerificationItem::Record(VerificationRecord::OrphanTransaction(orphan));
                }
            }
        }
        .boxed()
    }
}

#[async_trait]
impl AppendSession for SqliteAppend {
    fn snapshot(&self) -> &AppendSnapshot {
        &self.snapshot
    }

    async fn commit(mut self, plan: &AppendPlan) -> Result<(), StoreError> {
        let connection = &mut *self.transaction;
        for entry in plan.new_entries() {
            let transaction = &entry.transaction;
            let metadata = serde_json::to_string(transaction.metadata.as_map())
                .map_err(|error| StoreError::Contract(error.to_string()))?;
            sqlx::query(
                "INSERT INTO transactions (transaction_id, amount, currency, occurred_at, metadata) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(transaction.transaction_id.to_string())
            .bind(transaction.amount.to_canonical_string())
            .bind(transaction.currency.code())
            .bind(transaction.occurred_at.map(|time| time.unix_micros()))
            .bind(metadata)
            .execute(&mut *connection)
            .await
            .map_err(store_error)?;
            sqlx::query(
                "INSERT INTO ledger_entries (sequence_number, transaction_id, prev_hash, entry_hash, recorded_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(to_sequence(entry.sequence_number)?)
            .bind(transaction.transaction_id.to_string())
            .bind(entry.prev_hash.as_bytes().as_slice())
            .bind(entry.entry_hash.as_bytes().as_slice())
            .bind(entry.recorded_at.unix_micros())
            .execute(&mut *connection)
            .await
            .map_err(store_error)?;
        }
        let head = plan.new_head();
        sqlx::query("UPDATE ledger_head SET sequence_number = $1, entry_hash = $2, recorded_at = $3")
            .bind(to_sequence(head.sequence_number)?)
            .bind(head.entry_hash.as_bytes().as_slice())
            .bind(head.recorded_at.map(|time| time.unix_micros()))
            .execute(&mut *connection)
            .await
            .map_err(store_error)?;
        self.transaction.commit().await.map_err(store_error)
    }
}
