//! Row ↔ domain translation, and sqlx errors → port errors.
use chrono::{DateTime, Utc};
use invario_core::{
    EntryHash, LedgerEntry, Metadata, StoreError, StoredEntry, StoredTransaction, Tile, TileCoord, Timestamp,
    TreeHash, TreeState,
};
use uuid::Uuid;

/// Columns of an entry joined to its transaction, in this order, for `entry_from_row`.
pub(crate) const ENTRY_COLUMNS: &str = "e.sequence_number, e.prev_hash, e.entry_hash, e.recorded_at, \
     t.transaction_id, t.amount::text AS amount, t.currency, t.occurred_at, t.metadata::text AS metadata";

pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    let code = match &error {
        sqlx::Error::Database(database) => database.code().map(|code| code.into_owned()),
        _ => None,
    };
    match code {
        Some(code) => error_for_sqlstate(&code, Box::new(error)),
        None if unreachable_database(&error) => StoreError::Unavailable(Box::new(error)),
        None => StoreError::Backend(Box::new(error)),
    }
}

/// Whether `error` (not one the database answered) says the database cannot
/// be reached: the operation did not happen, or its outcome is unknown.
pub(crate) fn unreachable_database(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
    )
}

/// What a failure the database answered with SQLSTATE `code` means to the
/// core; `source` is kept as its cause.
pub(crate) fn error_for_sqlstate(code: &str, source: invario_core::ports::BoxError) -> StoreError {
    match code {
        // disk_full: nothing was written; writes work again once space is freed.
        "53100" => StoreError::OutOfSpace(source),
        code if is_transient_sqlstate(code) => StoreError::Unavailable(source),
        _ => StoreError::Backend(source),
    }
}

/// SQLSTATEs that say "the server or the connection went away, or cannot take
/// this now": the transaction was rolled back and the same request, retried,
/// can succeed. A backend terminated by `pg_terminate_backend` (a failover, an
/// administrator) answers 57P01 before it closes the connection; a standby
/// that is not promoted yet answers 25006. Matched by code, never by message.
pub(crate) fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources: too many connections, disk full, out of memory
        || matches!(
            code,
            "57P01" // admin_shutdown
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now (starting up, shutting down, in recovery)
                | "25006" // read_only_sql_transaction (a standby)
                | "40001" // serialization_failure
                | "40P01" // deadlock_detected
        )
}

#[cfg(test)]
mod tests {
    use super::is_transient_sqlstate;

    #[test]
    fn connection_loss_and_overload_are_transient_and_bad_statements_are_not() {
        for code in ["08006", "08001", "57P01", "57P02", "57P03", "53300", "53100", "25006", "40001", "40P01"]
        {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        // unique_violation, syntax error, the append-only trigger's raise_exception, undefined table.
        for code in ["23505", "42601", "P0001", "42P01", "57014"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }
}

pub(crate) fn to_datetime(time: Timestamp) -> DateTime<Utc> {
    time.to_datetime()
}

pub(crate) fn timestamp(time: DateTime<Utc>) -> Result<Timestamp, StoreError> {
    Timestamp::from_datetime(time).map_err(|error| StoreError::Corrupt(format!("timestamp {time}: {error}")))
}

pub(crate) fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

pub(crate) fn hash(bytes: &[u8]) -> Result<EntryHash, StoreError> {
    EntryHash::from_slice(bytes).map_err(|error| StoreError::Corrupt(error.to_string()))
}

pub(crate) fn sequence(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative sequence number {value}")))
}

pub(crate) fn to_sequence(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Contract(format!("sequence number {value} exceeds bigint")))
}

pub(crate) fn metadata_json(metadata: &Metadata) -> String {
    // A map of strings always serialises.
    serde_json::to_string(metadata.as_map()).unwrap_or_else(|_| "{}".to_owned())
}

#[derive(sqlx::FromRow)]
pub(crate) struct EntryRow {
    pub(crate) sequence_number: i64,
    pub(crate) prev_hash: Vec<u8>,
    pub(crate) entry_hash: Vec<u8>,
    pub(crate) recorded_at: DateTime<Utc>,
    pub(crate) transaction_id: Uuid,
    pub(crate) amount: String,
    pub(crate) currency: String,
    pub(crate) occurred_at: Option<DateTime<Utc>>,
    pub(crate) metadata: String,
}

impl EntryRow {
    /// The domain entry; rows someone edited into invalid values are `Corrupt`.
    pub(crate) fn into_entry(self) -> Result<LedgerEntry, StoreError> {
        let entry = StoredEntry {
            sequence_number: sequence(self.sequence_number)?,
            transaction_id: self.transaction_id,
            prev_hash: hash(&self.prev_hash)?,
            entry_hash: hash(&self.entry_hash)?,
            recorded_at_micros: micros(self.recorded_at),
        };
        let transaction = StoredTransaction {
            transaction_id: self.transaction_id,
            amount: self.amount,
            currency: self.currency,
            occurred_at_micros: self.occurred_at.map(micros),
            metadata: StoredTransaction::metadata_from_json(&self.metadata)?,
        };
        entry.to_entry(&transaction)
    }
}

/// Hashes stored back to back; a length that is not whole hashes is corrupt.
pub(crate) fn hashes_from_bytes(bytes: &[u8], what: &str) -> Result<Vec<TreeHash>, StoreError> {
    invario_core::merkle::hashes_from_bytes(bytes)
        .map_err(|error| StoreError::Corrupt(format!("{what}: {error}")))
}

/// The tree state row (`tree_size`, `root_hash`, `frontier`).
pub(crate) fn tree_state_from_row(row: &sqlx::postgres::PgRow) -> Result<TreeState, StoreError> {
    use sqlx::Row;
    let size = sequence(row.try_get("tree_size").map_err(store_error)?)?;
    let root = TreeHash::from_slice(&row.try_get::<Vec<u8>, _>("root_hash").map_err(store_error)?)
        .map_err(|error| StoreError::Corrupt(format!("tree root: {error}")))?;
    let frontier =
        hashes_from_bytes(&row.try_get::<Vec<u8>, _>("frontier").map_err(store_error)?, "the frontier")?;
    TreeState::from_stored(size, root, frontier).map_err(|error| StoreError::Corrupt(error.to_string()))
}

/// A `tree_tiles` row.
pub(crate) fn tile_from_row(row: &sqlx::postgres::PgRow) -> Result<Tile, StoreError> {
    use sqlx::Row;
    let level: i16 = row.try_get("level").map_err(store_error)?;
    let index: i64 = row.try_get("tile_index").map_err(store_error)?;
    let coord = TileCoord {
        level: u8::try_from(level).map_err(|_| StoreError::Corrupt(format!("tile level {level}")))?,
        index: u64::try_from(index).map_err(|_| StoreError::Corrupt(format!("tile index {index}")))?,
    };
    let hashes = hashes_from_bytes(
        &row.try_get::<Vec<u8>, _>("hashes").map_err(store_error)?,
        &format!("tile {level}/{index}"),
    )?;
    Ok(Tile { coord, hashes })
}
