//! # invario-sqlite
//!
//! The embedded default: both `invario-core` ports on one local SQLite file
//! (bundled SQLite, WAL journal, `synchronous=FULL` so an acknowledged append
//! survives a crash). Same rules as PostgreSQL — the hashes are the core's —
//! with appends serialized by a single writer lock.

mod catalog;
mod keys;
mod ledger;

use std::str::FromStr;
use std::time::Duration;

use invario_core::{EntryHash, StoreError};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use catalog::SqliteCatalog;
pub use keys::SqliteKeyStore;
pub use ledger::{SqliteAppend, SqliteLedger};
pub use sqlx::SqlitePool;

/// The schema migrations in this crate's `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How long a connection waits for the writer lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections a pool opens at most (one writes at a time; the rest read).
pub const MAX_CONNECTIONS: u32 = 8;

/// Why opening or migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum SqliteSetupError {
    /// The URL is not a SQLite URL.
    #[error("the database URL is malformed ({0}); expected sqlite://path/to/invario.db")]
    MalformedUrl(String),
    /// The file could not be opened or created.
    #[error("cannot open the SQLite database: {0}")]
    Open(String),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(String),
}

/// A migration, as reported to the operator.
pub use invario_core::MigrationInfo;

/// The URL schemes this adapter opens (`sqlite://path`, or `sqlite:path`).
pub const URL_SCHEMES: [&str; 2] = ["sqlite://", "sqlite:"];

/// Whether `url` names a SQLite file (one of [`URL_SCHEMES`]).
pub fn handles_url(url: &str) -> bool {
    URL_SCHEMES.iter().any(|scheme| url.starts_with(scheme))
}

/// The file path `url` names, without the scheme and query (`None` when it
/// is not a SQLite URL).
pub fn file_path(url: &str) -> Option<&str> {
    let path = URL_SCHEMES.iter().find_map(|scheme| url.strip_prefix(scheme))?;
    Some(path.split('?').next().unwrap_or(path))
}

/// Opens (creating if missing) the file named by `url` (`sqlite://path`).
pub async fn connect(url: &str) -> Result<SqlitePool, SqliteSetupError> {
    if !handles_url(url) {
        return Err(SqliteSetupError::MalformedUrl("it must start with sqlite://".into()));
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|error| SqliteSetupError::MalformedUrl(error.to_string()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT);
    SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        // A ping is a round trip to the connection's worker thread on every
        // acquire, and a local file's connection does not go stale: one that
        // failed mid-write is closed, never returned (see `SqliteAppend`).
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|error| SqliteSetupError::Open(error.to_string()))
}

/// Applies pending migrations; returns those applied now.
pub async fn migrate(pool: &SqlitePool) -> Result<Vec<MigrationInfo>, SqliteSetupError> {
    let pending = pending_migrations(pool).await?;
    MIGRATOR.run(pool).await.map_err(|error| SqliteSetupError::Migrate(error.to_string()))?;
    Ok(pending)
}

/// Migrations embedded in this build that the file has not applied yet.
pub async fn pending_migrations(pool: &SqlitePool) -> Result<Vec<MigrationInfo>, SqliteSetupError> {
    let query_error = |error: sqlx::Error| SqliteSetupError::Open(error.to_string());
    let table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(pool)
    .await
    .map_err(query_error)?;
    let applied: Vec<i64> = match table {
        Some(_) => sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await
            .map_err(query_error)?,
        None => Vec::new(),
    };
    let embedded = MIGRATOR
        .iter()
        .filter(|migration| migration.migration_type.is_up_migration())
        .map(|migration| (migration.version, &*migration.description));
    Ok(invario_core::schema::pending_migrations(embedded, &applied))
}

/// SQLite's result code for "database or disk is full".
const SQLITE_FULL: &str = "13";

pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(error)),
        // SQLITE_FULL: the disk (or max_page_count) is full; the transaction was rolled back.
        sqlx::Error::Database(ref database) if database.code().as_deref() == Some(SQLITE_FULL) => {
            StoreError::OutOfSpace(Box::new(error))
        }
        other => StoreError::Backend(Box::new(other)),
    }
}

pub(crate) fn hash(bytes: &[u8]) -> Result<EntryHash, StoreError> {
    EntryHash::from_slice(bytes).map_err(|error| StoreError::Corrupt(error.to_string()))
}

pub(crate) fn sequence(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative sequence number {value}")))
}

pub(crate) fn to_sequence(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Contract(format!("sequence number {value} exceeds INTEGER")))
}

pub(crate) fn uuid(text: &str) -> Result<uuid::Uuid, StoreError> {
    uuid::Uuid::parse_str(text).map_err(|error| StoreError::Corrupt(format!("id {text:?}: {error}")))
}
