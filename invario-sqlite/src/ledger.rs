//! The ledger port on SQLite.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use futures_util::lock::{Mutex as AsyncMutex, OwnedMutexGuard};
use futures_util::stream::{BoxStream, StreamExt};
use invario_core::merkle::{hashes_from_bytes, hashes_to_bytes};
use invario_core::tiles::{stored_edge_tiles, unstored_leaves};
use invario_core::{
    AppendPlan, AppendSession, AppendSnapshot, ChainPosition, EntryHash, Fence, KeyEpoch, LedgerEntry,
    LedgerHead, LedgerName, LedgerStore, StoreError, StoredEntry, StoredTransaction, Tile, TileCoord,
    Timestamp, TransactionId, TreeHash, TreeHead, TreeState, VerificationRecord, VerificationSource,
    tree_snapshot,
};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Row, Sqlite, SqlitePool};

use crate::{hash, sequence, store_error, to_sequence, uuid};

/// The store of one ledger on a SQLite pool: every statement is about that
/// ledger's rows only.
#[derive(Debug, Clone)]
pub struct SqliteLedger {
    pool: SqlitePool,
    ledger: LedgerName,
    /// The database's one writer: shared by the stores of all its ledgers.
    writer: Writer,
}

/// The database's one writer: its lock, and the connection every append goes
/// through while it holds it (opened on first use, closed after a write that
/// did not commit). Kept out of the pool so its page cache stays valid: a
/// pooled connection's cache is stale whenever another connection wrote
/// since, and it read some 35 pages back from the file per group commit
/// (measured with strace, 16 clients); and no pool check runs per write.
pub(crate) type Writer = Arc<AsyncMutex<Option<SqliteConnection>>>;

/// The writer's connection, opened from `pool` (with its settings) when none is kept.
async fn writer_connection<'w>(
    slot: &'w mut Option<SqliteConnection>,
    pool: &SqlitePool,
) -> Result<&'w mut SqliteConnection, StoreError> {
    let connection = match slot.take() {
        Some(connection) => connection,
        None => pool.acquire().await.map_err(store_error)?.detach(),
    };
    Ok(slot.insert(connection))
}

impl SqliteLedger {
    /// The store of the default ledger on `pool` (migrated: see [`crate::migrate`]).
    pub fn new(pool: SqlitePool) -> Self {
        SqliteLedger::sharing_writer(pool, LedgerName::default_ledger(), Arc::default())
    }

    /// The store of ledger `ledger`, taking the database's write lock `writer`.
    pub(crate) fn sharing_writer(pool: SqlitePool, ledger: LedgerName, writer: Writer) -> Self {
        SqliteLedger { pool, ledger, writer }
    }

    /// The ledger this store writes and reads.
    pub fn ledger(&self) -> &LedgerName {
        &self.ledger
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Takes the writer's lock and opens an append on its snapshot, reading
    /// the stored entries of `look_up` (`None`: ids presumed new).
    async fn begin(&self, look_up: Option<&[TransactionId]>) -> Result<SqliteAppend, StoreError> {
        let mut writer = Arc::clone(&self.writer).lock_owned().await;
        let connection = writer_connection(&mut writer, &self.pool).await?;
        match begin_and_read(connection, &self.ledger, look_up).await {
            Ok(snapshot) => Ok(SqliteAppend {
                writer,
                ledger: self.ledger.clone(),
                snapshot,
                presumed_new: look_up.is_none(),
                committed: false,
            }),
            Err(error) => {
                // The transaction may be open: the connection is closed, not reused.
                *writer = None;
                Err(error)
            }
        }
    }
}

/// An append holding the single writer's lock inside an open `BEGIN IMMEDIATE`
/// transaction. Dropping it uncommitted rolls back.
///
/// The transaction is run by hand (`BEGIN IMMEDIATE` … `COMMIT`) rather than
/// with sqlx's `Transaction`: when a statement or the `COMMIT` fails with
/// SQLITE_FULL, SQLite may already have rolled the transaction back, the
/// `ROLLBACK` sqlx then sends fails, and sqlx's transaction depth stays at one —
/// the connection refuses every later `BEGIN` ("non-zero transaction
/// depth"). Instead, a connection whose append did not commit is closed
/// (closing rolls back whatever is still open) and the next write opens another.
#[derive(Debug)]
pub struct SqliteAppend {
    /// The writer's lock, holding its connection (inside `BEGIN IMMEDIATE`).
    writer: OwnedMutexGuard<Option<SqliteConnection>>,
    ledger: LedgerName,
    snapshot: AppendSnapshot,
    /// Its ids were not looked up: a unique key firing on one means it is
    /// stored already ([`StoreError::AlreadyStored`]).
    presumed_new: bool,
    committed: bool,
}

impl Drop for SqliteAppend {
    fn drop(&mut self) {
        if !self.committed {
            *self.writer = None;
        }
    }
}

/// Rows per multi-row INSERT: 5 parameters each, far below SQLite's 32,766.
const ROWS_PER_INSERT: usize = 1_000;

const SELECT_HEAD: &str =
    "SELECT sequence_number, entry_hash, recorded_at FROM ledger_head WHERE ledger_id = $1";
const ENTRY_COLUMNS: &str = "e.sequence_number, e.transaction_id, e.prev_hash, e.entry_hash, e.recorded_at, \
     t.transaction_id AS joined_id, t.amount, t.currency, t.occurred_at, t.metadata";

/// The tiles at the coordinates in $1 (a JSON list of `[level, index]`) of
/// ledger $2. CROSS JOIN makes SQLite probe the primary key once per wanted
/// tile: a plain JOIN let it walk every tile of the ledger (its key's first
/// column, ledger_id) and look each up in the list — O(ledger) per append
/// and per proof.
const SELECT_TILES: &str = "SELECT t.level, t.tile_index, t.hashes FROM json_each($1) AS w \
     CROSS JOIN tree_tiles t ON t.ledger_id = $2 AND t.level = json_extract(w.value, '$[0]') \
                            AND t.tile_index = json_extract(w.value, '$[1]')";

/// The entries (with their transactions) of ledger $2 recording the ids in
/// $1 (a JSON list): one probe of the (ledger_id, transaction_id) index per
/// id, the list driving (CROSS JOIN fixes SQLite's join order). With `IN
/// (SELECT … FROM json_each)` SQLite walked every entry of the ledger by its
/// primary key's first column — O(ledger) per append: 0.10 × the raw inserts
/// at 400,000 entries (scenario 8). Built once: every append runs it.
static SELECT_EXISTING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {ENTRY_COLUMNS} FROM json_each($1) AS wanted \
         CROSS JOIN ledger_entries e ON e.ledger_id = $2 AND e.transaction_id = wanted.value \
         CROSS JOIN transactions t ON t.ledger_id = e.ledger_id AND t.transaction_id = e.transaction_id"
    )
});

async fn read_head<'c, E: sqlx::SqliteExecutor<'c>>(
    executor: E,
    ledger: &LedgerName,
) -> Result<LedgerHead, StoreError> {
    let row = sqlx::query(SELECT_HEAD)
        .bind(ledger.as_str())
        .fetch_optional(executor)
        .await
        .map_err(store_error)?
        .ok_or_else(|| StoreError::UnknownLedger(ledger.clone()))?;
    head_from_row(&row)
}

async fn read_tree<'c, E: sqlx::SqliteExecutor<'c>>(
    executor: E,
    ledger: &LedgerName,
) -> Result<TreeState, StoreError> {
    let row = sqlx::query("SELECT tree_size, root_hash, frontier FROM tree_state WHERE ledger_id = $1")
        .bind(ledger.as_str())
        .fetch_optional(executor)
        .await
        .map_err(store_error)?
        .ok_or_else(|| StoreError::UnknownLedger(ledger.clone()))?;
    let corrupt = |what: &str, error: String| StoreError::Corrupt(format!("{what}: {error}"));
    let size = sequence(row.try_get("tree_size").map_err(store_error)?)?;
    let root = TreeHash::from_slice(&row.try_get::<Vec<u8>, _>("root_hash").map_err(store_error)?)
        .map_err(|error| corrupt("tree root", error.to_string()))?;
    let frontier = hashes_from_bytes(&row.try_get::<Vec<u8>, _>("frontier").map_err(store_error)?)
        .map_err(|error| corrupt("the frontier", error.to_string()))?;
    TreeState::from_stored(size, root, frontier).map_err(|error| corrupt("tree state", error.to_string()))
}

async fn read_tiles<'c, E: sqlx::SqliteExecutor<'c>>(
    executor: E,
    ledger: &LedgerName,
    coords: &[TileCoord],
) -> Result<Vec<Tile>, StoreError> {
    if coords.is_empty() {
        return Ok(Vec::new());
    }
    let wanted =
        serde_json::to_string(&coords.iter().map(|coord| (coord.level, coord.index)).collect::<Vec<_>>())
            .map_err(|error| StoreError::Contract(error.to_string()))?;
    let rows = sqlx::query(SELECT_TILES)
        .bind(wanted)
        .bind(ledger.as_str())
        .fetch_all(executor)
        .await
        .map_err(store_error)?;
    rows.iter()
        .map(|row| {
            let level: i64 = row.try_get("level").map_err(store_error)?;
            let index: i64 = row.try_get("tile_index").map_err(store_error)?;
            let coord = TileCoord {
                level: u8::try_from(level).map_err(|_| StoreError::Corrupt(format!("tile level {level}")))?,
                index: u64::try_from(index)
                    .map_err(|_| StoreError::Corrupt(format!("tile index {index}")))?,
            };
            let hashes = hashes_from_bytes(&row.try_get::<Vec<u8>, _>("hashes").map_err(store_error)?)
                .map_err(|error| StoreError::Corrupt(format!("tile {level}/{index}: {error}")))?;
            Ok(Tile { coord, hashes })
        })
        .collect()
}

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

/// Opens the append's `BEGIN IMMEDIATE` transaction on `connection` and reads
/// what the core plans from.
/// Opens the append transaction and reads its snapshot; `look_up`: the ids
/// whose stored entries it must hold (`None`: presumed new, none read).
async fn begin_and_read(
    transaction: &mut SqliteConnection,
    ledger: &LedgerName,
    look_up: Option<&[TransactionId]>,
) -> Result<AppendSnapshot, StoreError> {
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *transaction).await.map_err(store_error)?;
    let head = read_head(&mut *transaction, ledger).await?;
    let existing = match look_up {
        Some(ids) if !ids.is_empty() => {
            let ids_json = serde_json::to_string(&ids.iter().map(ToString::to_string).collect::<Vec<_>>())
                .map_err(|error| StoreError::Contract(error.to_string()))?;
            let rows = sqlx::query(sqlx::AssertSqlSafe(SELECT_EXISTING.as_str()))
                .bind(ids_json)
                .bind(ledger.as_str())
                .fetch_all(&mut *transaction)
                .await
                .map_err(store_error)?;
            rows.iter().map(entry_from_row).collect::<Result<Vec<_>, _>>()?
        }
        _ => Vec::new(),
    };
    let tree = read_tree(&mut *transaction, ledger).await?;
    let edge = read_tiles(&mut *transaction, ledger, &stored_edge_tiles(tree.head.size)).await?;
    let leaves = unstored_leaves(tree.head.size);
    let last = read_entry_hashes(&mut *transaction, ledger, tree.head.size - leaves as u64, leaves).await?;
    let tree = tree_snapshot(tree, edge, &last)?;
    Ok(AppendSnapshot { head, existing, tree })
}

/// The entry hashes of entries `after + 1 ..= after + count`, in order.
async fn read_entry_hashes<'c, E: sqlx::SqliteExecutor<'c>>(
    executor: E,
    ledger: &LedgerName,
    after: u64,
    count: usize,
) -> Result<Vec<EntryHash>, StoreError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    sqlx::query_scalar::<_, Vec<u8>>(
        "SELECT entry_hash FROM ledger_entries \
         WHERE ledger_id = $1 AND sequence_number > $2 AND sequence_number <= $3 ORDER BY sequence_number",
    )
    .bind(ledger.as_str())
    .bind(to_sequence(after)?)
    .bind(to_sequence(after.saturating_add(count as u64))?)
    .fetch_all(executor)
    .await
    .map_err(store_error)?
    .iter()
    .map(|bytes| hash(bytes))
    .collect()
}

#[async_trait]
impl LedgerStore for SqliteLedger {
    type Append = SqliteAppend;
    type Source = SqliteSnapshot;

    async fn begin_append(&self, ids: &[TransactionId]) -> Result<SqliteAppend, StoreError> {
        self.begin(Some(ids)).await
    }

    async fn begin_append_presuming_new(&self, _ids: &[TransactionId]) -> Result<SqliteAppend, StoreError> {
        self.begin(None).await
    }

    /// The kept state's write: one read under the lock (the fence), not the
    /// head, tree, tiles and edge leaves the locking path reads.
    async fn write_fenced(
        &self,
        fence: &Fence,
        keys: Option<KeyEpoch>,
        plan: &AppendPlan,
    ) -> Result<(), StoreError> {
        let mut writer = self.writer.lock().await;
        let connection = writer_connection(&mut writer, &self.pool).await?;
        let written = write_if_fence_admits(connection, &self.ledger, fence, keys, plan).await;
        if written.is_err() {
            // As with an append that did not commit: the transaction may be
            // open or half rolled back, so the connection is closed, not reused.
            *writer = None;
        }
        written
    }

    async fn entry_by_id(&self, id: TransactionId) -> Result<Option<LedgerEntry>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger_entries e \
             JOIN transactions t ON t.ledger_id = e.ledger_id AND t.transaction_id = e.transaction_id \
             WHERE e.ledger_id = $2 AND e.transaction_id = $1"
        )))
        .bind(id.to_string())
        .bind(self.ledger.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(entry_from_row)
        .transpose()
    }

    async fn head(&self) -> Result<LedgerHead, StoreError> {
        read_head(&self.pool, &self.ledger).await
    }

    async fn entries_after(&self, after: u64, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger_entries e \
             JOIN transactions t ON t.ledger_id = e.ledger_id AND t.transaction_id = e.transaction_id \
             WHERE e.ledger_id = $3 AND e.sequence_number > $1 ORDER BY e.sequence_number LIMIT $2"
        )))
        .bind(to_sequence(after)?)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(self.ledger.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn entry_hashes(&self, after: u64, count: usize) -> Result<Vec<EntryHash>, StoreError> {
        read_entry_hashes(&self.pool, &self.ledger, after, count).await
    }

    async fn tree_state(&self) -> Result<TreeState, StoreError> {
        read_tree(&self.pool, &self.ledger).await
    }

    async fn tiles(&self, coords: &[TileCoord]) -> Result<Vec<Tile>, StoreError> {
        read_tiles(&self.pool, &self.ledger, coords).await
    }

    async fn store_checkpoint(&self, tree_size: u64, note: &str) -> Result<(), StoreError> {
        sqlx::query(
            // A copy of a size is only ever extended (cosignatures gathered later), never replaced.
            "INSERT INTO checkpoints (ledger_id, tree_size, note) VALUES ($3, $1, $2) \
             ON CONFLICT (ledger_id, tree_size) DO UPDATE SET note = excluded.note \
             WHERE length(excluded.note) > length(checkpoints.note) \
             AND substr(excluded.note, 1, length(checkpoints.note)) = checkpoints.note",
        )
        .bind(to_sequence(tree_size)?)
        .bind(note)
        .bind(self.ledger.as_str())
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn latest_checkpoint(&self) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT note FROM checkpoints WHERE ledger_id = $1 ORDER BY tree_size DESC LIMIT 1",
        )
        .bind(self.ledger.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)
    }

    async fn verification_source(&self) -> Result<SqliteSnapshot, StoreError> {
        // A read transaction sees one snapshot (WAL) for the head and every row.
        let transaction = self.pool.begin().await.map_err(store_error)?;
        Ok(SqliteSnapshot { transaction, ledger: self.ledger.clone() })
    }
}

/// One read snapshot of a ledger, for verification: the reads the core drives.
#[derive(Debug)]
pub struct SqliteSnapshot {
    transaction: sqlx::Transaction<'static, Sqlite>,
    ledger: LedgerName,
}

#[async_trait]
impl VerificationSource for SqliteSnapshot {
    async fn head(&mut self) -> Result<LedgerHead, StoreError> {
        read_head(&mut *self.transaction, &self.ledger).await
    }

    async fn tree(&mut self) -> Result<TreeState, StoreError> {
        read_tree(&mut *self.transaction, &self.ledger).await
    }

    fn entries_after(&mut self, after: u64) -> BoxStream<'_, Result<VerificationRecord, StoreError>> {
        let transaction = &mut *self.transaction;
        let ledger = &self.ledger;
        async_stream::try_stream! {
            let after = to_sequence(after)?;
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {ENTRY_COLUMNS} FROM ledger_entries e \
                 LEFT JOIN transactions t ON t.ledger_id = e.ledger_id AND t.transaction_id = e.transaction_id \
                 WHERE e.ledger_id = $2 AND e.sequence_number > $1 ORDER BY e.sequence_number"
            )))
            .bind(after)
            .bind(ledger.as_str())
            .fetch(&mut *transaction);
            while let Some(row) = rows.next().await {
                yield verification_record(&row.map_err(store_error)?)?;
            }
        }
        .boxed()
    }

    fn orphan_transactions(&mut self) -> BoxStream<'_, Result<StoredTransaction, StoreError>> {
        let transaction = &mut *self.transaction;
        let ledger = &self.ledger;
        async_stream::try_stream! {
            let mut orphans = sqlx::query(
                "SELECT t.transaction_id, t.amount, t.currency, t.occurred_at, t.metadata FROM transactions t \
                 WHERE t.ledger_id = $1 AND NOT EXISTS (SELECT 1 FROM ledger_entries e \
                     WHERE e.ledger_id = t.ledger_id AND e.transaction_id = t.transaction_id)",
            )
            .bind(ledger.as_str())
            .fetch(&mut *transaction);
            while let Some(row) = orphans.next().await {
                yield stored_transaction(&row.map_err(store_error)?, "transaction_id")?;
            }
        }
        .boxed()
    }
}

/// What an insert of new rows failing with `error` means: a unique key
/// firing on ids `presumed_new` is a stored id (the transaction is rolled back
/// when the append is dropped); anything else is the store's.
fn insert_error(presumed_new: bool, error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(database)
            if presumed_new && database.kind() == sqlx::error::ErrorKind::UniqueViolation =>
        {
            StoreError::AlreadyStored
        }
        _ => store_error(error),
    }
}

#[async_trait]
impl AppendSession for SqliteAppend {
    fn snapshot(&self) -> &AppendSnapshot {
        &self.snapshot
    }

    async fn commit(mut self, plan: &AppendPlan) -> Result<(), StoreError> {
        // begin() left the connection in the slot; only a failed write empties it.
        let connection = self
            .writer
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("the writer's connection was closed".into()))?;
        write_plan_and_commit(connection, &self.ledger, self.presumed_new, plan).await?;
        self.committed = true;
        Ok(())
    }
}

/// Writes `plan`'s rows, head, tiles and tree state inside the open
/// transaction on `connection`, and commits it. A unique key firing on ids
/// `presumed_new` answers [`StoreError::AlreadyStored`]; on any error the
/// transaction is left open for the caller to close.
///
/// Every call is a round trip to sqlx's SQLite worker thread (a channel
/// send and two thread wake-ups), so statements are sent together: each
/// chunk's two multi-row INSERTs are one call, and the last chunk's call
/// also carries the head, tiles, tree state and `COMMIT` (positional
/// parameters run on across the statements of one call).
async fn write_plan_and_commit(
    connection: &mut SqliteConnection,
    ledger: &LedgerName,
    presumed_new: bool,
    plan: &AppendPlan,
) -> Result<(), StoreError> {
    let ledger = ledger.as_str();
    let mut chunks = plan.new_entries().chunks(ROWS_PER_INSERT).peekable();
    loop {
        let chunk = chunks.next().unwrap_or_default();
        let mut encoded = Vec::with_capacity(chunk.len());
        for entry in chunk {
            let metadata = serde_json::to_string(entry.transaction.metadata.as_map())
                .map_err(|error| StoreError::Contract(error.to_string()))?;
            encoded.push((entry, metadata, to_sequence(entry.sequence_number)?));
        }
        let mut statements = sqlx::QueryBuilder::<Sqlite>::new("");
        if !encoded.is_empty() {
            statements.push(
                "INSERT INTO transactions (ledger_id, transaction_id, amount, currency, occurred_at, metadata) ",
            );
            statements.push_values(&encoded, |mut row, (entry, metadata, _)| {
                let transaction = &entry.transaction;
                row.push_bind(ledger)
                    .push_bind(transaction.transaction_id.to_string())
                    .push_bind(transaction.amount.to_canonical_string())
                    .push_bind(transaction.currency.code())
                    .push_bind(transaction.occurred_at.map(|time| time.unix_micros()))
                    .push_bind(metadata.as_str());
            });
            statements.push(
                "; INSERT INTO ledger_entries \
                 (ledger_id, sequence_number, transaction_id, prev_hash, entry_hash, recorded_at) ",
            );
            statements.push_values(&encoded, |mut row, (entry, _, sequence)| {
                row.push_bind(ledger)
                    .push_bind(*sequence)
                    .push_bind(entry.transaction.transaction_id.to_string())
                    .push_bind(entry.prev_hash.as_bytes().as_slice())
                    .push_bind(entry.entry_hash.as_bytes().as_slice())
                    .push_bind(entry.recorded_at.unix_micros());
            });
            statements.push("; ");
        }
        let last = chunks.peek().is_none();
        if last {
            push_head_tree_and_commit(&mut statements, ledger, plan)?;
        }
        statements
            .build()
            .execute(&mut *connection)
            .await
            .map_err(|error| insert_error(presumed_new, error))?;
        if last {
            return Ok(());
        }
    }
}

/// Adds to `statements` the plan's head move, tiles and tree state, then `COMMIT`.
fn push_head_tree_and_commit(
    statements: &mut sqlx::QueryBuilder<Sqlite>,
    ledger: &str,
    plan: &AppendPlan,
) -> Result<(), StoreError> {
    if let Some(head) = plan.head_move() {
        statements
            .push("UPDATE ledger_head SET sequence_number = ")
            .push_bind(to_sequence(head.sequence_number)?)
            .push(", entry_hash = ")
            .push_bind(head.entry_hash.as_bytes().as_slice())
            .push(", recorded_at = ")
            .push_bind(head.recorded_at.map(|time| time.unix_micros()))
            .push(" WHERE ledger_id = ")
            .push_bind(ledger)
            .push("; ");
    }
    if let Some(tree) = plan.tree_update() {
        for tile in &tree.tiles {
            statements
                .push("INSERT INTO tree_tiles (ledger_id, level, tile_index, hashes) VALUES (")
                .push_bind(ledger)
                .push(", ")
                .push_bind(i64::from(tile.coord.level))
                .push(", ")
                .push_bind(to_sequence(tile.coord.index)?)
                .push(", ")
                .push_bind(hashes_to_bytes(&tile.hashes))
                .push(
                    ") ON CONFLICT (ledger_id, level, tile_index) DO UPDATE SET hashes = excluded.hashes; ",
                );
        }
        statements
            .push("UPDATE tree_state SET tree_size = ")
            .push_bind(to_sequence(tree.state.head.size)?)
            .push(", root_hash = ")
            .push_bind(tree.state.head.root.0.as_slice())
            .push(", frontier = ")
            .push_bind(hashes_to_bytes(tree.state.frontier.hashes()))
            .push(" WHERE ledger_id = ")
            .push_bind(ledger)
            .push("; ");
    }
    statements.push("COMMIT");
    Ok(())
}

/// The fenced write's read under the lock: the head's position and the tree's head.
const FENCE: &str = "BEGIN IMMEDIATE; SELECT h.sequence_number, h.entry_hash, s.tree_size, s.root_hash \
     FROM ledger_head h JOIN tree_state s ON s.ledger_id = h.ledger_id WHERE h.ledger_id = $1";
/// [`FENCE`] and the key table's epoch (migration `key_epoch`), for a write
/// authenticated from a cached key record.
const FENCE_AND_KEY_EPOCH: &str = "BEGIN IMMEDIATE; \
     SELECT h.sequence_number, h.entry_hash, s.tree_size, s.root_hash, e.epoch AS key_epoch \
     FROM ledger_head h JOIN tree_state s ON s.ledger_id = h.ledger_id CROSS JOIN api_key_epoch e \
     WHERE h.ledger_id = $1";

/// The fenced write on an open connection: `BEGIN IMMEDIATE` and one read of
/// the head's position and the tree's head to compare with `fence` (one
/// call), then `plan`'s writes and `COMMIT` (one call for up to 1,000 rows). Nothing else is read: the plan was made on
/// the writer's kept state, so the tiles and the edge leaves the locking
/// path reads would only be compared, never used.
async fn write_if_fence_admits(
    connection: &mut SqliteConnection,
    ledger: &LedgerName,
    fence: &Fence,
    keys: Option<KeyEpoch>,
    plan: &AppendPlan,
) -> Result<(), StoreError> {
    // One call: the lock, then the one read the fence (and the key epoch) needs.
    let read = if keys.is_some() { FENCE_AND_KEY_EPOCH } else { FENCE };
    let row = sqlx::query(read)
        .bind(ledger.as_str())
        .fetch_optional(&mut *connection)
        .await
        .map_err(store_error)?
        .ok_or_else(|| StoreError::UnknownLedger(ledger.clone()))?;
    let stored_head = ChainPosition {
        sequence_number: sequence(row.try_get("sequence_number").map_err(store_error)?)?,
        entry_hash: hash(&row.try_get::<Vec<u8>, _>("entry_hash").map_err(store_error)?)?,
    };
    let stored_tree = TreeHead {
        size: sequence(row.try_get("tree_size").map_err(store_error)?)?,
        root: TreeHash::from_slice(&row.try_get::<Vec<u8>, _>("root_hash").map_err(store_error)?)
            .map_err(|error| StoreError::Corrupt(format!("tree root: {error}")))?,
    };
    if let Some(expected) = keys {
        // Checked first, as the PostgreSQL function does: a key changed since
        // the request's record was cached refuses the write whatever the fence.
        let stored = crate::keys::key_epoch(row.try_get("key_epoch").map_err(store_error)?)?;
        if !expected.still_holds(stored) {
            return Err(StoreError::KeysChanged);
        }
    }
    if !fence.admits_stored(stored_head, stored_tree) {
        return Err(StoreError::Fenced);
    }
    write_plan_and_commit(connection, ledger, true, plan).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

    use super::{SELECT_EXISTING, SELECT_TILES};

    /// What SQLite plans for `sql`, one line per step.
    async fn plan(pool: &sqlx::SqlitePool, sql: &str) -> Vec<String> {
        use sqlx::Row;
        sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .bind("[]")
            .bind("default")
            .fetch_all(pool)
            .await
            .unwrap_or_else(|error| panic!("planning {sql}: {error}"))
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect()
    }

    /// The lookups every append (and every proof) makes probe an index with
    /// all its key columns for each wanted row; none walks a ledger's rows by
    /// `ledger_id` alone, a cost that would grow with the ledger.
    #[tokio::test]
    async fn the_appends_lookups_probe_keys_and_never_walk_a_ledger() {
        let folder = std::env::temp_dir().join(format!("invario-sqlite-plans-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let pool = crate::connect(&format!("sqlite://{}", folder.join("plans.db").display())).await.unwrap();
        crate::migrate(&pool).await.unwrap();
        for sql in [SELECT_TILES, SELECT_EXISTING.as_str()] {
            let steps = plan(&pool, sql).await;
            assert!(!steps.is_empty(), "no plan for {sql}");
            for step in &steps {
                let probes_a_key = step.starts_with("SEARCH") && !step.ends_with("(ledger_id=?)");
                let reads_the_list = step.starts_with("SCAN") && step.contains("VIRTUAL TABLE");
                assert!(probes_a_key || reads_the_list, "{step:?} in the plan of {sql}: {steps:?}");
            }
        }
        pool.close().await;
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
