//! # invario-postgres
//!
//! The production adapter: both `invario-core` ports on a PostgreSQL pool.
//! It translates rows and holds no rule: appends lock the head row, read the
//! already stored ids, let the core plan, then insert with multi-row `UNNEST`
//! statements and move the head — one database transaction.

mod catalog;
mod commit_lane;
mod copy_write;
mod keys;
mod ledger;
mod rows;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, postgres::PgConnection};
use std::str::FromStr;
use std::time::Duration;

pub use catalog::PgCatalog;
pub use commit_lane::{
    DELEGATED_CONNECTIONS, LANE_CONNECTIONS, MAX_LEDGERS_PER_COMMIT, MAX_ROWS_PER_COMMIT, STREAM_CONNECTIONS,
};
pub use copy_write::COPY_WRITE_MIN_ROWS;
pub use keys::{KEY_CHANGES_CHANNEL, KEY_FEED_APPLICATION_NAME, PgKeyStore};
pub use ledger::{PgAppend, PgLedger};
pub use sqlx::PgPool;

/// The schema migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Connections a pool opens at most, unless the caller says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
/// How long a caller waits for a pooled connection before the database counts as unavailable.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why connecting or migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum PgSetupError {
    /// The URL is not a PostgreSQL URL.
    #[error("the database URL is malformed ({0}); expected postgres://user:password@host:5432/database")]
    MalformedUrl(String),
    /// The server could not be reached or refused the login.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(String),
    /// A query about the schema failed.
    #[error("cannot read the schema version: {0}")]
    Query(String),
}

fn connect_error(error: sqlx::Error) -> PgSetupError {
    // sqlx repeats a database error's text in its source chain; keep the innermost message.
    let message = match &error {
        sqlx::Error::Database(database) => database.message().to_owned(),
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    };
    PgSetupError::Connect(message)
}

/// A migration, as reported to the operator.
pub use invario_core::MigrationInfo;

/// The URL schemes this adapter opens.
pub const URL_SCHEMES: [&str; 2] = ["postgres://", "postgresql://"];

/// Whether `url` names a PostgreSQL database (one of [`URL_SCHEMES`]).
pub fn handles_url(url: &str) -> bool {
    URL_SCHEMES.iter().any(|scheme| url.starts_with(scheme))
}

/// Opens a pool on `url` (`postgres://…`), checking the server answers.
pub async fn connect(url: &str) -> Result<PgPool, PgSetupError> {
    connect_with(url, DEFAULT_MAX_CONNECTIONS).await
}

/// Like [`connect`] with a chosen pool size.
pub async fn connect_with(url: &str, max_connections: u32) -> Result<PgPool, PgSetupError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(PgSetupError::MalformedUrl("it must start with postgres:// or postgresql://".into()));
    }
    let options =
        PgConnectOptions::from_str(url).map_err(|error| PgSetupError::MalformedUrl(error.to_string()))?;
    // One direct connection first: a pool would report "timed out" instead of
    // the real reason (refused, unknown host, bad password, missing database).
    let probe = PgConnection::connect_with(&options).await.map_err(connect_error)?;
    let _ = probe.close().await;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(connect_error)
}

/// Applies every pending migration; returns the ones applied now (empty when up to date).
///
/// On Citus (the `citus` extension is installed in the database) it then
/// distributes the ledger tables by `ledger_id`, colocated, and makes the
/// ledger list and the API keys reference tables: see [`distribute_on_citus`].
pub async fn migrate(pool: &PgPool) -> Result<Vec<MigrationInfo>, PgSetupError> {
    let pending = pending_migrations(pool).await?;
    MIGRATOR.run(pool).await.map_err(|error| PgSetupError::Migrate(error.to_string()))?;
    distribute_on_citus(pool).await?;
    Ok(pending)
}

/// The ledger tables, colocated by `ledger_id` (the first is the one the others colocate with).
const DISTRIBUTED_TABLES: [&str; 6] =
    ["ledger_head", "tree_state", "ledger_entries", "transactions", "tree_tiles", "checkpoints"];
/// The write function a Citus writer calls, distributed by its ledger
/// argument and colocated with the ledger tables, so the coordinator hands a
/// call whole to the worker holding the ledger (issue 27, lever L9).
const DELEGATED_WRITE_FUNCTION: &str = "invario_append_delegated_v1(text, bigint, bytea, bigint, bytea, uuid[], text[], \
     text[], timestamptz[], text[], bigint[], bytea[], bytea[], timestamptz[], smallint[], bigint[], bytea[], \
     bigint, bytea, bytea, bigint, bytea, timestamptz)";
/// Small tables every node reads.
const REFERENCE_TABLES: [&str; 2] = ["ledgers", "api_keys"];
/// The insert guards of the migrations (table, trigger, function): a new
/// ledger's head and tree start empty.
const INSERT_GUARDS: [(&str, &str, &str); 2] = [
    ("ledger_head", "ledger_head_starts_empty", "invario_check_genesis_head"),
    ("tree_state", "tree_state_starts_empty", "invario_check_empty_tree"),
];

/// Whether the database runs Citus (its extension is installed).
pub async fn is_citus(pool: &PgPool) -> Result<bool, PgSetupError> {
    citus_installed(pool).await.map_err(|error| PgSetupError::Query(error.to_string()))
}

/// Whether a pool's database runs Citus, asked once and remembered (a
/// database does not change engine under a running store); clones share it.
#[derive(Debug, Clone, Default)]
pub(crate) struct CitusProbe(std::sync::Arc<std::sync::OnceLock<bool>>);

impl CitusProbe {
    pub(crate) async fn is_citus(&self, pool: &PgPool) -> Result<bool, invario_core::StoreError> {
        if let Some(&citus) = self.0.get() {
            return Ok(citus);
        }
        let citus = citus_installed(pool).await.map_err(rows::store_error)?;
        Ok(*self.0.get_or_init(|| citus))
    }
}

/// The query behind [`is_citus`], for callers with their own error type.
pub(crate) async fn citus_installed(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
        .fetch_one(pool)
        .await
}

/// On Citus, distributes each ledger table by `ledger_id` (colocated: every
/// append is a single-shard transaction on one worker) and makes `ledgers`
/// and `api_keys` reference tables, and distributes the write function a
/// Citus writer calls by its ledger argument (so the coordinator hands each
/// append to the worker holding the ledger); tables and the function already
/// distributed are left as they are, so it is safe to repeat. On plain
/// PostgreSQL it does nothing.
///
/// Two schema guards change on Citus: the statement trigger that checks
/// appended sequence numbers are contiguous is dropped (Citus cannot hand a
/// statement's transition table to the shards; verification still finds any
/// gap, and the row triggers — append-only, head moves forward onto an
/// existing entry, tiles only grow — stay), and the key-change notification
/// is sent by the coordinator's copy of `api_keys` only, since a worker
/// cannot `NOTIFY` inside a two-phase commit and the server listens on the
/// coordinator.
pub async fn distribute_on_citus(pool: &PgPool) -> Result<(), PgSetupError> {
    if !is_citus(pool).await? {
        return Ok(());
    }
    let failed =
        |error: sqlx::Error| PgSetupError::Migrate(format!("distributing the tables on Citus: {error}"));
    let mut connection = pool.acquire().await.map_err(failed)?;
    let distributed: Vec<String> =
        sqlx::query_scalar("SELECT logicalrelid::regclass::text FROM pg_dist_partition")
            .fetch_all(&mut *connection)
            .await
            .map_err(failed)?;
    let function_distributed: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_dist_object \
         WHERE classid = 'pg_proc'::regclass AND objid = $1::regprocedure AND distribution_argument_index IS NOT NULL)",
    )
    .bind(DELEGATED_WRITE_FUNCTION)
    .fetch_one(&mut *connection)
    .await
    .map_err(failed)?;
    if function_distributed
        && DISTRIBUTED_TABLES
            .iter()
            .chain(&REFERENCE_TABLES)
            .all(|table| distributed.iter().any(|done| done == table))
    {
        return Ok(());
    }
    for statement in [
        // Triggers on distributed tables are Citus's "unsafe" kind: ours only read
        // rows of the same ledger, which live on the same worker.
        "SET citus.enable_unsafe_triggers = on",
        "DROP TRIGGER IF EXISTS ledger_entries_contiguous ON ledger_entries",
        "CREATE OR REPLACE FUNCTION invario_notify_key_change() RETURNS trigger LANGUAGE plpgsql AS $$          BEGIN              IF citus_is_coordinator() THEN PERFORM pg_notify('invario_api_keys', TG_OP); END IF;              RETURN NULL;          END $$",
    ] {
        sqlx::query(statement).execute(&mut *connection).await.map_err(failed)?;
    }
    for table in REFERENCE_TABLES.iter().filter(|table| !distributed.iter().any(|done| done == *table)) {
        sqlx::query("SELECT create_reference_table($1)")
            .bind(table)
            .execute(&mut *connection)
            .await
            .map_err(failed)?;
    }
    let [first, ..] = DISTRIBUTED_TABLES;
    for table in DISTRIBUTED_TABLES.iter().filter(|table| !distributed.iter().any(|done| done == *table)) {
        // Distributing copies the rows already there into the shards, as
        // inserts: a head or tree row past genesis would trip its insert guard,
        // so the guard is set aside for the copy and put back on the shards.
        let guard = INSERT_GUARDS.iter().find(|(guarded, ..)| guarded == table);
        if let Some((table, trigger, _)) = guard {
            let drop = format!("DROP TRIGGER IF EXISTS {trigger} ON {table}");
            sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut *connection).await.map_err(failed)?;
        }
        sqlx::query("SELECT create_distributed_table($1, 'ledger_id', colocate_with => $2)")
            .bind(table)
            .bind(if *table == first { "default" } else { first })
            .execute(&mut *connection)
            .await
            .map_err(failed)?;
        if let Some((table, trigger, function)) = guard {
            let create = format!(
                "CREATE TRIGGER {trigger} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()"
            );
            sqlx::query(sqlx::AssertSqlSafe(create)).execute(&mut *connection).await.map_err(failed)?;
        }
    }
    if !function_distributed {
        sqlx::query("SELECT create_distributed_function($1::regprocedure, 'p_ledger', colocate_with => $2)")
            .bind(DELEGATED_WRITE_FUNCTION)
            .bind(first)
            .execute(&mut *connection)
            .await
            .map_err(failed)?;
    }
    sqlx::query("RESET citus.enable_unsafe_triggers").execute(&mut *connection).await.map_err(failed)?;
    Ok(())
}

/// Migrations embedded in this build that the database has not applied yet.
pub async fn pending_migrations(pool: &PgPool) -> Result<Vec<MigrationInfo>, PgSetupError> {
    let table_exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(|error| PgSetupError::Query(error.to_string()))?;
    let applied: Vec<i64> = if table_exists {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await
            .map_err(|error| PgSetupError::Query(error.to_string()))?
    } else {
        Vec::new()
    };
    let embedded = MIGRATOR
        .iter()
        .filter(|migration| migration.migration_type.is_up_migration())
        .map(|migration| (migration.version, &*migration.description));
    Ok(invario_core::schema::pending_migrations(embedded, &applied))
}
