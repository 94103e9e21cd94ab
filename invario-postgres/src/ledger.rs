//! The ledger port on PostgreSQL.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::{BoxStream, StreamExt};
use invario_core::merkle::hashes_to_bytes;
use invario_core::tiles::{stored_edge_tiles, unstored_leaves};
use invario_core::writer::{Fence, WriterState};
use invario_core::{
    AppendPlan, AppendSession, AppendSnapshot, EntryHash, KeyEpoch, LedgerEntry, LedgerHead, LedgerName,
    LedgerStore, StoreError, StoredEntry, StoredTransaction, Tile, TileCoord, TransactionId, TreeSnapshot,
    TreeState, VerificationRecord, VerificationSource, tree_snapshot,
};
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::CitusProbe;
use crate::commit_lane::{CommitLane, FencedWrite, PgQuery, on_lane_connection};
use crate::copy_write::FenceAt;
use crate::rows::{
    ENTRY_COLUMNS, EntryRow, error_for_sqlstate, hash, metadata_json, micros, sequence, store_error,
    tile_from_row, timestamp, to_datetime, to_sequence, tree_state_from_row,
};

/// The store of one ledger on a PostgreSQL pool: every statement is about
/// that ledger's rows only.
#[derive(Debug, Clone)]
pub struct PgLedger {
    pool: PgPool,
    ledger: LedgerName,
    /// Whether the database is Citus, asked once: there a unique key firing
    /// inside a distributed INSERT … SELECT comes back as an internal error
    /// (SQLSTATE XX000, from its COPY into the shards), not as 23505, so an
    /// append cannot presume its ids new and always looks them up.
    citus: CitusProbe,
    /// The writers' own connection (see [`crate::commit_lane`]): this
    /// store's alone, or shared with the other ledgers of its catalog.
    lane: Arc<CommitLane>,
}

impl PgLedger {
    /// Takes the head lock and reads the snapshot: the entries stored for
    /// `ids` when given (an append presuming its ids new reads none: the
    /// unique keys answer for them at commit).
    async fn begin(&self, ids: Option<&[TransactionId]>) -> Result<PgAppend, StoreError> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        // The head and the tree state in one round trip. Both rows are locked:
        // a row read beside a locked one without its own lock would be the
        // version from before the wait for the lock (the tree state of the
        // append that held it), not the one that append committed.
        let locked = sqlx::query(
            "SELECT h.sequence_number, h.entry_hash, h.recorded_at, s.tree_size, s.root_hash, s.frontier \
             FROM ledger_head h JOIN tree_state s ON s.ledger_id = h.ledger_id WHERE h.ledger_id = $1 FOR UPDATE",
        )
        .bind(self.ledger.as_str())
        .fetch_optional(&mut *transaction)
        .await
        .map_err(store_error)?
        .ok_or_else(|| self.unknown())?;
        let head = head_from_row(&locked)?;
        let tree = tree_state_from_row(&locked)?;
        let existing = match ids {
            Some(ids) => self.stored_entries(&mut transaction, ids).await?,
            None => Vec::new(),
        };
        let edge =
            edge_query(&self.ledger, &tree)?.fetch_all(&mut *transaction).await.map_err(store_error)?;
        let tree = edge_from_rows(tree, &edge)?;
        Ok(PgAppend {
            transaction,
            ledger: self.ledger.clone(),
            snapshot: AppendSnapshot { head, existing, tree },
        })
    }

    /// The entries stored for `ids`, read inside the append's transaction.
    async fn stored_entries(
        &self,
        transaction: &mut Transaction<'static, Postgres>,
        ids: &[TransactionId],
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let uuids: Vec<Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
        // One index probe per id, whatever the planner believes: for thousands
        // of ids `transaction_id = ANY($1)` costs out as a sequential scan of
        // the whole ledger (random_page_cost makes probes look dear), which made
        // every append O(ledger). OFFSET 0 keeps each lateral lookup a probe.
        // Prepared only for small appends (group commits of single requests),
        // where parsing and planning were a third of the statement time. A
        // cached plan does not outlive the ledger's growth: each ANALYZE
        // (autovacuum's, every 10 % of growth) invalidates it, and the growth
        // benchmark (scenario 9) watches for a cost that grows with the ledger.
        sqlx::query_as::<_, EntryRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} FROM unnest($1::uuid[]) AS wanted(id) \
             JOIN LATERAL (SELECT * FROM ledger_entries \
                           WHERE ledger_id = $2 AND transaction_id = wanted.id OFFSET 0) e ON true \
             JOIN LATERAL (SELECT * FROM transactions \
                           WHERE ledger_id = $2 AND transaction_id = e.transaction_id OFFSET 0) t ON true"
        )))
        .persistent(uuids.len() <= PREPARED_LOOKUP_MAX_IDS)
        .bind(&uuids)
        .bind(self.ledger.as_str())
        .fetch_all(&mut **transaction)
        .await
        .map_err(store_error)?
        .into_iter()
        .map(EntryRow::into_entry)
        .collect()
    }

    /// The store of the default ledger on `pool` (migrated: see [`crate::migrate`]).
    pub fn new(pool: PgPool) -> Self {
        PgLedger::for_ledger(pool, LedgerName::default_ledger())
    }

    /// The store of ledger `ledger` on `pool` (whether it exists is checked
    /// by each statement: see [`StoreError::UnknownLedger`]).
    pub fn for_ledger(pool: PgPool, ledger: LedgerName) -> Self {
        let lane = Arc::new(CommitLane::new(pool.clone()));
        PgLedger::in_lane(pool, ledger, lane)
    }

    /// The store of ledger `ledger`, writing through `lane` (shared by a catalog's ledgers).
    pub(crate) fn in_lane(pool: PgPool, ledger: LedgerName, lane: Arc<CommitLane>) -> Self {
        PgLedger { pool, ledger, citus: CitusProbe::default(), lane }
    }

    /// Whether the database has the Citus extension (asked once per store).
    async fn is_citus(&self) -> Result<bool, StoreError> {
        self.citus.is_citus(&self.pool).await
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The ledger this store writes and reads.
    pub fn ledger(&self) -> &LedgerName {
        &self.ledger
    }

    fn unknown(&self) -> StoreError {
        StoreError::UnknownLedger(self.ledger.clone())
    }
}

/// An append holding the head row lock inside an open database transaction.
/// Dropping it rolls back.
#[derive(Debug)]
pub struct PgAppend {
    transaction: Transaction<'static, Postgres>,
    ledger: LedgerName,
    snapshot: AppendSnapshot,
}

/// The most ids an idempotency lookup is sent as a prepared statement for.
const PREPARED_LOOKUP_MAX_IDS: usize = 64;

const SELECT_HEAD: &str =
    "SELECT sequence_number, entry_hash, recorded_at FROM ledger_head WHERE ledger_id = $1";
/// The stored tiles at the coordinates given as levels ($1) and indexes ($2) of ledger $3.
const SELECT_TILES: &str = "SELECT t.level, t.tile_index, t.hashes FROM UNNEST($1::smallint[], $2::bigint[]) AS wanted(level, tile_index) \
     JOIN tree_tiles t ON t.ledger_id = $3 AND t.level = wanted.level AND t.tile_index = wanted.tile_index";
const SELECT_TREE: &str = "SELECT tree_size, root_hash, frontier FROM tree_state WHERE ledger_id = $1";
/// The tree's edge in one statement: the stored edge tiles at the levels ($1)
/// and indexes ($2) of ledger $3, and, as rows of level -1 indexed by
/// sequence number, the entry hashes of entries $4 + 1 ..= $5, the leaves the
/// core rebuilds the (never stored) partial level-0 tile from.
const SELECT_EDGE: &str = "SELECT t.level, t.tile_index, t.hashes FROM UNNEST($1::smallint[], $2::bigint[]) AS wanted(level, tile_index) \
     JOIN tree_tiles t ON t.ledger_id = $3 AND t.level = wanted.level AND t.tile_index = wanted.tile_index \
     UNION ALL SELECT -1::smallint, e.sequence_number, e.entry_hash FROM ledger_entries e \
     WHERE e.ledger_id = $3 AND e.sequence_number > $4 AND e.sequence_number <= $5";

/// The [`SELECT_EDGE`] statement for the tree in `state`.
fn edge_query<'q>(
    ledger: &'q LedgerName,
    state: &TreeState,
) -> Result<sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>, StoreError> {
    let coords = stored_edge_tiles(state.head.size);
    let levels: Vec<i16> = coords.iter().map(|coord| i16::from(coord.level)).collect();
    let indexes: Vec<i64> = coords.iter().map(|coord| to_sequence(coord.index)).collect::<Result<_, _>>()?;
    let size = to_sequence(state.head.size)?;
    // Planned on every call, as `read_tiles` explains.
    Ok(sqlx::query(SELECT_EDGE)
        .persistent(false)
        .bind(levels)
        .bind(indexes)
        .bind(ledger.as_str())
        .bind(size - unstored_leaves(state.head.size) as i64)
        .bind(size))
}

/// The tree snapshot from `state` and the rows of [`SELECT_EDGE`] (the core
/// rebuilds and checks the partial level-0 tile).
fn edge_from_rows(state: TreeState, rows: &[sqlx::postgres::PgRow]) -> Result<TreeSnapshot, StoreError> {
    let mut tiles = Vec::new();
    let mut leaves: Vec<(i64, EntryHash)> = Vec::new();
    for row in rows {
        if row.try_get::<i16, _>("level").map_err(store_error)? < 0 {
            let sequence_number: i64 = row.try_get("tile_index").map_err(store_error)?;
            leaves.push((sequence_number, hash(&row.try_get::<Vec<u8>, _>("hashes").map_err(store_error)?)?));
        } else {
            tiles.push(tile_from_row(row)?);
        }
    }
    leaves.sort_unstable_by_key(|(sequence_number, _)| *sequence_number);
    let last: Vec<EntryHash> = leaves.into_iter().map(|(_, entry_hash)| entry_hash).collect();
    tree_snapshot(state, tiles, &last)
}

async fn read_tree<'c, E: sqlx::PgExecutor<'c>>(
    executor: E,
    ledger: &LedgerName,
) -> Result<TreeState, StoreError> {
    let row = sqlx::query(SELECT_TREE)
        .bind(ledger.as_str())
        .fetch_optional(executor)
        .await
        .map_err(store_error)?
        .ok_or_else(|| StoreError::UnknownLedger(ledger.clone()))?;
    tree_state_from_row(&row)
}

async fn read_head<'c, E: sqlx::PgExecutor<'c>>(
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

async fn read_tiles<'c, E: sqlx::PgExecutor<'c>>(
    executor: E,
    ledger: &LedgerName,
    coords: &[TileCoord],
) -> Result<Vec<Tile>, StoreError> {
    if coords.is_empty() {
        return Ok(Vec::new());
    }
    let levels: Vec<i16> = coords.iter().map(|coord| i16::from(coord.level)).collect();
    let indexes: Vec<i64> = coords.iter().map(|coord| to_sequence(coord.index)).collect::<Result<_, _>>()?;
    // Planned on every call, with the table's size at that moment: a plan
    // PostgreSQL caches for a prepared statement (generic after its fifth run)
    // is kept until the next ANALYZE, and one made while the tree was a few
    // pages hashes every tile of the ledger to find the two or three wanted —
    // 5–12 ms per append and per proof at 10M entries when autovacuum lagged
    // behind a fast fill (found by auto_explain during the growth benchmark).
    // Planning costs a few tens of microseconds; the parse rides in the same
    // round trip.
    sqlx::query(SELECT_TILES)
        .persistent(false)
        .bind(&levels)
        .bind(&indexes)
        .bind(ledger.as_str())
        .fetch_all(executor)
        .await
        .map_err(store_error)?
        .iter()
        .map(tile_from_row)
        .collect()
}

/// The head, the tree state and its edge tiles, read without a lock on
/// `connection` (a lost connection is the outer error, for a retry).
async fn read_writer_state(
    connection: &mut PgConnection,
    ledger: &LedgerName,
) -> Result<Result<WriterState, StoreError>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT h.sequence_number, h.entry_hash, h.recorded_at, s.tree_size, s.root_hash, s.frontier \
         FROM ledger_head h JOIN tree_state s ON s.ledger_id = h.ledger_id WHERE h.ledger_id = $1",
    )
    .bind(ledger.as_str())
    .fetch_optional(&mut *connection)
    .await?;
    let Some(row) = row else { return Ok(Err(StoreError::UnknownLedger(ledger.clone()))) };
    let (head, tree) = match (head_from_row(&row), tree_state_from_row(&row)) {
        (Ok(head), Ok(tree)) => (head, tree),
        (Err(error), _) | (_, Err(error)) => return Ok(Err(error)),
    };
    let query = match edge_query(ledger, &tree) {
        Ok(query) => query,
        Err(error) => return Ok(Err(error)),
    };
    let rows = query.fetch_all(&mut *connection).await?;
    Ok(edge_from_rows(tree, &rows).map(|tree| WriterState { head, tree }))
}

fn head_from_row(row: &sqlx::postgres::PgRow) -> Result<LedgerHead, StoreError> {
    let recorded_at: Option<DateTime<Utc>> = row.try_get("recorded_at").map_err(store_error)?;
    Ok(LedgerHead {
        sequence_number: sequence(row.try_get("sequence_number").map_err(store_error)?)?,
        entry_hash: hash(&row.try_get::<Vec<u8>, _>("entry_hash").map_err(store_error)?)?,
        recorded_at: recorded_at.map(timestamp).transpose()?,
    })
}

#[async_trait]
impl LedgerStore for PgLedger {
    type Append = PgAppend;
    type Source = PgSnapshot;

    async fn begin_append(&self, ids: &[TransactionId]) -> Result<PgAppend, StoreError> {
        self.begin(Some(ids)).await
    }

    async fn begin_append_presuming_new(&self, ids: &[TransactionId]) -> Result<PgAppend, StoreError> {
        if self.is_citus().await? { self.begin(Some(ids)).await } else { self.begin(None).await }
    }

    async fn write_fenced(
        &self,
        fence: &Fence,
        keys: Option<KeyEpoch>,
        plan: &AppendPlan,
    ) -> Result<(), StoreError> {
        if self.is_citus().await? {
            if keys.is_some() {
                // Never handed out on Citus (the key store keeps no epochs there).
                return Err(StoreError::KeysChanged);
            }
            // One call, handed by the coordinator to the ledger's worker: a
            // stored id fires the unique key there, reported with its SQLSTATE.
            return self.lane.write_delegated(&self.ledger, FencedWrite::new(fence, None, plan)?).await;
        }
        if plan.new_entries().len() >= crate::copy_write::COPY_WRITE_MIN_ROWS {
            // Large enough to stream: goes alone, by COPY.
            return crate::copy_write::write_by_copy(
                &self.lane,
                &self.ledger,
                fence,
                keys,
                plan,
                FenceAt::Start,
            )
            .await;
        }
        self.lane.write(&self.ledger, FencedWrite::new(fence, keys, plan)?).await
    }

    async fn pipelines_writes(&self) -> bool {
        // Never on Citus: a write there is one delegated call.
        matches!(self.is_citus().await, Ok(false))
    }

    async fn orders_fenced_writes(&self) -> bool {
        // The lane's one task takes a ledger's writes oldest first, one per
        // call, and makes its calls one after another. (A write of
        // `COPY_WRITE_MIN_ROWS` rows or more streams on a connection of its
        // own: one issued behind another is then refused as fenced, with
        // nothing written, unless the one before has committed.) Not on
        // Citus, where writes are delegated side by side.
        matches!(self.is_citus().await, Ok(false))
    }

    async fn shares_commits(&self) -> bool {
        self.lane.is_shared()
    }

    async fn write_fenced_behind(&self, fence: &Fence, plan: &AppendPlan) -> Result<(), StoreError> {
        if self.is_citus().await? {
            return self.write_fenced(fence, None, plan).await;
        }
        crate::copy_write::write_by_copy(&self.lane, &self.ledger, fence, None, plan, FenceAt::End).await
    }

    async fn writer_state(&self) -> Result<WriterState, StoreError> {
        if self.is_citus().await? {
            let session = self.begin(None).await?;
            return Ok(WriterState::from_snapshot(session.snapshot.clone()));
        }
        // Read without a lock, on the writer's own connection (a refused
        // connection fails at once while the database is down, where the pool
        // would wait out its acquire timeout). Head and tree come from one
        // statement; the edge tiles, read after, can only be as new or newer,
        // and a write planned on a state that moved meanwhile is fenced.
        let mut connection = self.lane.take_connection().await?;
        let state: Result<Result<WriterState, StoreError>, sqlx::Error> = on_lane_connection!(
            self.lane,
            &mut connection.slot,
            |lane_connection| read_writer_state(lane_connection, &self.ledger)
        );
        state.map_err(store_error)?
    }

    async fn entry_by_id(&self, id: TransactionId) -> Result<Option<LedgerEntry>, StoreError> {
        sqlx::query_as::<_, EntryRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger_entries e JOIN transactions t USING (ledger_id, transaction_id) \
             WHERE e.ledger_id = $2 AND e.transaction_id = $1"
        )))
        .bind(id.as_uuid())
        .bind(self.ledger.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .map(EntryRow::into_entry)
        .transpose()
    }

    async fn head(&self) -> Result<LedgerHead, StoreError> {
        read_head(&self.pool, &self.ledger).await
    }

    async fn entries_after(&self, after: u64, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        sqlx::query_as::<_, EntryRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger_entries e JOIN transactions t USING (ledger_id, transaction_id) \
             WHERE e.ledger_id = $3 AND e.sequence_number > $1 ORDER BY e.sequence_number LIMIT $2"
        )))
        .bind(to_sequence(after)?)
        .bind(limit)
        .bind(self.ledger.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?
        .into_iter()
        .map(EntryRow::into_entry)
        .collect()
    }

    async fn entry_hashes(&self, after: u64, count: usize) -> Result<Vec<EntryHash>, StoreError> {
        let last = after.saturating_add(count as u64);
        sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT entry_hash FROM ledger_entries \
             WHERE ledger_id = $1 AND sequence_number > $2 AND sequence_number <= $3 ORDER BY sequence_number",
        )
        .bind(self.ledger.as_str())
        .bind(to_sequence(after)?)
        .bind(to_sequence(last)?)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?
        .iter()
        .map(|bytes| hash(bytes))
        .collect()
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
             ON CONFLICT (ledger_id, tree_size) DO UPDATE SET note = EXCLUDED.note \
             WHERE length(EXCLUDED.note) > length(checkpoints.note) \
             AND left(EXCLUDED.note, length(checkpoints.note)) = checkpoints.note",
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

    async fn verification_source(&self) -> Result<PgSnapshot, StoreError> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        // One snapshot for the head and every row, so concurrent appends
        // cannot make a consistent ledger look broken.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        Ok(PgSnapshot { transaction, ledger: self.ledger.clone() })
    }
}

/// One read snapshot of a ledger, for verification: the reads the core drives.
#[derive(Debug)]
pub struct PgSnapshot {
    transaction: sqlx::Transaction<'static, Postgres>,
    ledger: LedgerName,
}

#[async_trait]
impl VerificationSource for PgSnapshot {
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
            let mut rows = sqlx::query(
                "SELECT e.sequence_number, e.transaction_id, e.prev_hash, e.entry_hash, e.recorded_at, \
                        t.transaction_id AS joined_id, t.amount::text AS amount, t.currency, t.occurred_at, \
                        t.metadata::text AS metadata \
                 FROM ledger_entries e \
                 LEFT JOIN transactions t ON t.ledger_id = e.ledger_id AND t.transaction_id = e.transaction_id \
                 WHERE e.ledger_id = $2 AND e.sequence_number > $1 ORDER BY e.sequence_number",
            )
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
                "SELECT t.transaction_id, t.amount::text AS amount, t.currency, t.occurred_at, \
                        t.metadata::text AS metadata \
                 FROM transactions t \
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

fn stored_transaction(row: &sqlx::postgres::PgRow, id_column: &str) -> Result<StoredTransaction, StoreError> {
    let occurred_at: Option<DateTime<Utc>> = row.try_get("occurred_at").map_err(store_error)?;
    let metadata: String = row.try_get("metadata").map_err(store_error)?;
    Ok(StoredTransaction {
        transaction_id: row.try_get(id_column).map_err(store_error)?,
        amount: row.try_get("amount").map_err(store_error)?,
        currency: row.try_get("currency").map_err(store_error)?,
        occurred_at_micros: occurred_at.map(micros),
        metadata: StoredTransaction::metadata_from_json(&metadata)?,
    })
}

fn verification_record(row: &sqlx::postgres::PgRow) -> Result<VerificationRecord, StoreError> {
    let entry = StoredEntry {
        sequence_number: sequence(row.try_get("sequence_number").map_err(store_error)?)?,
        transaction_id: row.try_get("transaction_id").map_err(store_error)?,
        prev_hash: hash(&row.try_get::<Vec<u8>, _>("prev_hash").map_err(store_error)?)?,
        entry_hash: hash(&row.try_get::<Vec<u8>, _>("entry_hash").map_err(store_error)?)?,
        recorded_at_micros: micros(row.try_get("recorded_at").map_err(store_error)?),
    };
    let joined: Option<Uuid> = row.try_get("joined_id").map_err(store_error)?;
    let transaction = match joined {
        Some(_) => Some(stored_transaction(row, "joined_id")?),
        None => None,
    };
    Ok(VerificationRecord::Entry(entry, transaction))
}

#[async_trait]
impl AppendSession for PgAppend {
    fn snapshot(&self) -> &AppendSnapshot {
        &self.snapshot
    }

    async fn commit(mut self, plan: &AppendPlan) -> Result<(), StoreError> {
        let entries = plan.new_entries();
        let PlanRows {
            ids,
            amounts,
            currencies,
            occurred,
            metadata,
            sequences,
            prev_hashes,
            entry_hashes,
            recorded,
        } = PlanRows::of(plan)?;
        let connection = &mut *self.transaction;
        if !entries.is_empty() {
            // Both tables in one round trip (a data-modifying CTE always runs
            // to completion). The entries' statement trigger still checks
            // them against the head, which moves only in the next statement.
            sqlx::query(
                "WITH new_transactions AS ( \
                     INSERT INTO transactions (ledger_id, transaction_id, amount, currency, occurred_at, metadata) \
                     SELECT $10, id, amount::numeric, currency, occurred_at, metadata::jsonb \
                     FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[]) \
                          AS batch(id, amount, currency, occurred_at, metadata)) \
                 INSERT INTO ledger_entries (ledger_id, sequence_number, transaction_id, prev_hash, entry_hash, recorded_at) \
                 SELECT $10, * FROM UNNEST($6::bigint[], $1::uuid[], $7::bytea[], $8::bytea[], $9::timestamptz[])",
            )
            .bind(&ids)
            .bind(&amounts)
            .bind(&currencies)
            .bind(&occurred)
            .bind(&metadata)
            .bind(&sequences)
            .bind(&prev_hashes)
            .bind(&entry_hashes)
            .bind(&recorded)
            .bind(self.ledger.as_str())
            .execute(&mut *connection)
            .await
            .map_err(write_error)?;
        }
        let head = plan.head_move();
        if let Some(tree) = plan.tree_update() {
            let (levels, indexes, hashes) = tile_columns(tree)?;
            // One round trip for the tiles, the tree state and the head.
            let mut query = sqlx::query(if head.is_some() { TREE_AND_HEAD_UPDATE } else { TREE_UPDATE })
                .bind(levels)
                .bind(indexes)
                .bind(hashes)
                .bind(to_sequence(tree.state.head.size)?)
                .bind(tree.state.head.root.0.as_slice())
                .bind(hashes_to_bytes(tree.state.frontier.hashes()))
                .bind(self.ledger.as_str());
            if let Some(head) = head {
                query = query
                    .bind(to_sequence(head.sequence_number)?)
                    .bind(head.entry_hash.as_bytes().as_slice())
                    .bind(head.recorded_at.map(to_datetime));
            }
            query.execute(&mut *connection).await.map_err(write_error)?;
        } else if let Some(head) = head {
            sqlx::query(
                "UPDATE ledger_head SET sequence_number = $1, entry_hash = $2, recorded_at = $3 WHERE ledger_id = $4",
            )
            .bind(to_sequence(head.sequence_number)?)
            .bind(head.entry_hash.as_bytes().as_slice())
            .bind(head.recorded_at.map(to_datetime))
            .bind(self.ledger.as_str())
                .execute(&mut *connection)
                .await
                .map_err(write_error)?;
        }
        self.transaction.commit().await.map_err(write_error)
    }
}

/// A plan's new rows as the column arrays `UNNEST` takes.
#[derive(Debug)]
pub(crate) struct PlanRows {
    pub(crate) ids: Vec<Uuid>,
    pub(crate) amounts: Vec<String>,
    pub(crate) currencies: Vec<&'static str>,
    pub(crate) occurred: Vec<Option<DateTime<Utc>>>,
    pub(crate) metadata: Vec<String>,
    pub(crate) sequences: Vec<i64>,
    pub(crate) prev_hashes: Vec<Vec<u8>>,
    pub(crate) entry_hashes: Vec<Vec<u8>>,
    pub(crate) recorded: Vec<DateTime<Utc>>,
}

impl PlanRows {
    pub(crate) fn of(plan: &AppendPlan) -> Result<PlanRows, StoreError> {
        let entries = plan.new_entries();
        let mut rows = PlanRows {
            ids: Vec::with_capacity(entries.len()),
            amounts: Vec::with_capacity(entries.len()),
            currencies: Vec::with_capacity(entries.len()),
            occurred: Vec::with_capacity(entries.len()),
            metadata: Vec::with_capacity(entries.len()),
            sequences: Vec::with_capacity(entries.len()),
            prev_hashes: Vec::with_capacity(entries.len()),
            entry_hashes: Vec::with_capacity(entries.len()),
            recorded: Vec::with_capacity(entries.len()),
        };
        for entry in entries {
            let transaction = &entry.transaction;
            rows.ids.push(*transaction.transaction_id.as_uuid());
            rows.amounts.push(transaction.amount.to_canonical_string());
            rows.currencies.push(transaction.currency.code());
            rows.occurred.push(transaction.occurred_at.map(to_datetime));
            rows.metadata.push(metadata_json(&transaction.metadata));
            rows.sequences.push(to_sequence(entry.sequence_number)?);
            rows.prev_hashes.push(entry.prev_hash.as_bytes().to_vec());
            rows.entry_hashes.push(entry.entry_hash.as_bytes().to_vec());
            rows.recorded.push(to_datetime(entry.recorded_at));
        }
        Ok(rows)
    }

    /// Binds the rows, in the order the append functions take them.
    pub(crate) fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.ids)
            .bind(&self.amounts)
            .bind(&self.currencies)
            .bind(&self.occurred)
            .bind(&self.metadata)
            .bind(&self.sequences)
            .bind(&self.prev_hashes)
            .bind(&self.entry_hashes)
            .bind(&self.recorded)
    }
}

/// Whether the writer's connection is gone (closed, or its backend
/// terminated): the call rolled back or its outcome is unknown, and a new
/// connection may try again — the fence refuses a second write if the
/// first one committed.
pub(crate) fn lost_connection(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(database) => database
            .code()
            .is_some_and(|code| code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// The ledger's ($7) grown tiles ($1–$3) and new state ($4–$6) as
/// data-modifying CTEs: they always run to completion, and each table's
/// trigger checks only its own rows, so they share a statement with the head move.
macro_rules! tree_update_ctes {
    () => {
        "WITH tiles AS ( \
             INSERT INTO tree_tiles (ledger_id, level, tile_index, hashes) \
             SELECT $7, * FROM UNNEST($1::smallint[], $2::bigint[], $3::bytea[]) \
             ON CONFLICT (ledger_id, level, tile_index) DO UPDATE SET hashes = EXCLUDED.hashes RETURNING 1), \
         state AS (UPDATE tree_state SET tree_size = $4, root_hash = $5, frontier = $6 \
                   WHERE ledger_id = $7 RETURNING 1) "
    };
}
/// The tree update alone (a backfill).
const TREE_UPDATE: &str = concat!(tree_update_ctes!(), "SELECT 1");
/// The tree update and the head move ($8–$10).
const TREE_AND_HEAD_UPDATE: &str = concat!(
    tree_update_ctes!(),
    "UPDATE ledger_head SET sequence_number = $8, entry_hash = $9, recorded_at = $10 WHERE ledger_id = $7"
);

/// Tile levels, indexes and hash bytes: the three arrays `UNNEST` takes.
pub(crate) type TileColumns = (Vec<i16>, Vec<i64>, Vec<Vec<u8>>);

/// The tiles of a tree update as [`TileColumns`].
pub(crate) fn tile_columns(tree: &invario_core::TreeUpdate) -> Result<TileColumns, StoreError> {
    let levels = tree.tiles.iter().map(|tile| i16::from(tile.coord.level)).collect();
    let indexes = tree.tiles.iter().map(|tile| to_sequence(tile.coord.index)).collect::<Result<_, _>>()?;
    let hashes = tree.tiles.iter().map(|tile| hashes_to_bytes(&tile.hashes)).collect();
    Ok((levels, indexes, hashes))
}

/// The SQLSTATE `invario_append_v1` raises when the writer's fence does not hold.
pub(crate) const FENCED_SQLSTATE: &str = "IVF01";
/// The SQLSTATE `invario_append_v2` raises when the key table's epoch moved.
pub(crate) const KEYS_CHANGED_SQLSTATE: &str = "IVK01";

/// A write's error: a unique key on a transaction id firing (SQLSTATE 23505,
/// matched by code: Citus suffixes constraint names with the shard) means an
/// id presumed new was stored already, and the transaction rolled back.
/// Under the head lock no other unique key can fire.
pub(crate) fn write_error(error: sqlx::Error) -> StoreError {
    let code = match &error {
        sqlx::Error::Database(database) => database.code().map(|code| code.into_owned()),
        _ => None,
    };
    match code {
        Some(code) => write_error_for_sqlstate(&code, Box::new(error)),
        None => store_error(error),
    }
}

/// What a write failing with SQLSTATE `code` means to the core: the three
/// refusals that leave nothing written and send the core another way, else
/// what any statement's failure means ([`error_for_sqlstate`]). Shared by a
/// lone write and each ledger of a shared commit.
pub(crate) fn write_error_for_sqlstate(code: &str, source: invario_core::ports::BoxError) -> StoreError {
    match code {
        "23505" => StoreError::AlreadyStored,
        // Raised by `invario_append_v1` (and `_many_v1`) when the fence does not hold.
        FENCED_SQLSTATE => StoreError::Fenced,
        // Raised by `invario_append_v2` (and `_many_v1`) when the key epoch moved.
        KEYS_CHANGED_SQLSTATE => StoreError::KeysChanged,
        _ => error_for_sqlstate(code, source),
    }
}
