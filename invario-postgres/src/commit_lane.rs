//! The writers' own connection, shared by the ledgers of one database (issue
//! 27, levers L3 and L8).
//!
//! A fenced write is one call in autocommit on a long-lived connection (a
//! pooled one would cost a ping when taken and another when returned). The
//! ledgers of one [`PgCatalog`](crate::PgCatalog) share that connection: a
//! write that finds it busy queues, and whoever takes it next writes every
//! queued ledger's write in one call to `invario_append_many_v1` — one
//! transaction and one WAL flush for all of them, where each ledger's write
//! still lands or fails on its own (its fence, its key epoch, its ids). A lone
//! write calls `invario_append_v2` as before. Never used on Citus: there an
//! append never touches two ledgers' shards.

use chrono::{DateTime, Utc};
use invario_core::merkle::hashes_to_bytes;
use invario_core::writer::Fence;
use invario_core::{AppendPlan, KeyEpoch, LedgerName, MAX_BATCH_SIZE, StoreError};
use sqlx::{Connection, PgConnection, PgPool, Row};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{Semaphore, SemaphorePermit, oneshot};
use uuid::Uuid;

use crate::ledger::{PlanRows, TileColumns, tile_columns, write_error, write_error_for_sqlstate};
use crate::rows::{to_sequence, unreachable_database};

/// Most ledgers one shared commit writes: in the rare case one of their
/// writes fails, each is written again in a subtransaction of its own, and
/// PostgreSQL keeps at most 64 subtransactions per backend cheap to look up.
pub const MAX_LEDGERS_PER_COMMIT: usize = 32;
/// Most rows one shared commit writes (a single write larger than this goes alone).
pub const MAX_ROWS_PER_COMMIT: usize = MAX_BATCH_SIZE;

/// Runs `$work` (an expression using `$connection: &mut PgConnection`) on the
/// connection held in `$slot` (a `&mut Option<PgConnection>`), opening it with
/// `$lane` when needed. A lost connection (closed, or its backend terminated)
/// is replaced and the work tried once more: a fenced write cannot land twice
/// (the second try finds the head moved), and a read has nothing to undo. A
/// macro, not a function taking a closure: the work borrows the caller's
/// values across the await.
macro_rules! on_lane_connection {
    ($lane:expr, $slot:expr, |$connection:ident| $work:expr) => {{
        let slot: &mut Option<PgConnection> = $slot;
        let mut retried = false;
        loop {
            let $connection: &mut PgConnection = match slot.as_mut() {
                Some(connection) => connection,
                None => match $lane.connect().await {
                    Ok(connection) => slot.insert(connection),
                    Err(error) => break Err(error),
                },
            };
            match $work.await {
                Err(error) if crate::ledger::lost_connection(&error) => {
                    *slot = None;
                    if retried {
                        break Err(error);
                    }
                    retried = true;
                }
                answer => break answer,
            }
        }
    }};
}
pub(crate) use on_lane_connection;

/// Connections a lane's calls (lone and shared commits) go on. One: the
/// writes that queue while a call is in flight all go in the next call, so
/// sixteen ledgers' writes share half as many commits as they would over two
/// connections (measured: 64 clients over 16 ledgers ≈ 9 % more tx/s,
/// BENCHMARKS.md "One connection for calls, two for COPY"). Their writes never
/// touch the same ledger at once (a ledger's writes take turns in the core),
/// and each call locks its heads in name order.
pub const LANE_CONNECTIONS: usize = 1;

/// Connections COPY writes stream on, apart from the calls: a large write
/// does not hold up the other ledgers' commits, and a group sent behind
/// another (lever L5) streams while the one ahead commits — on either kind of
/// connection — so at most two COPY writes are in flight at once.
pub const STREAM_CONNECTIONS: usize = 2;

/// Connections a lane delegates Citus writes on (see [`CommitLane::write_delegated`]):
/// a ledger's writes take turns, so each connection carries one ledger's write
/// at a time, and writes of ledgers on different workers commit side by side.
pub const DELEGATED_CONNECTIONS: usize = 8;

/// The writers' connections and the writes waiting for one.
#[derive(Debug)]
pub(crate) struct CommitLane {
    pool: PgPool,
    /// The connections shared commits (and lone writes and the writer
    /// state's reads) go on, on plain PostgreSQL.
    shared: Slots,
    /// The connections Citus writes are delegated on: never shared by two
    /// ledgers' writes, since no Citus write touches two ledgers' shards.
    delegated: Slots,
    /// The connections COPY writes stream on, on plain PostgreSQL.
    streams: Slots,
    /// Writes not yet taken into a call, oldest first.
    waiting: Mutex<Vec<WaitingWrite>>,
    /// Whether a [`drain`](CommitLane::drain) task is writing them.
    draining: AtomicBool,
    /// The ledger of the last call's last write.
    last_ledger: Mutex<Option<LedgerName>>,
    /// Calls left for which the lane counts as shared (see [`CommitLane::is_shared`]).
    shared_for: AtomicU32,
}

/// How many calls after the last one that carried several ledgers' writes
/// (or another ledger's than the call before) the lane still counts as shared.
const SHARED_SPAN: u32 = 32;

/// Connection slots, each opened on first use, and one permit per slot.
#[derive(Debug)]
struct Slots {
    free: Semaphore,
    /// The slots not in use (`None`: not opened yet, or lost).
    idle: Mutex<Vec<Option<PgConnection>>>,
}

impl Slots {
    fn new(count: usize) -> Self {
        Slots { free: Semaphore::new(count), idle: Mutex::new((0..count).map(|_| None).collect()) }
    }

    /// Waits for a free slot.
    async fn take(&self) -> Result<LaneConnection<'_>, StoreError> {
        // The semaphore is never closed.
        let permit = self.free.acquire().await.map_err(|_| abandoned())?;
        // A permit is only held with a slot taken, so one is idle now.
        let slot = lock(&self.idle).pop().flatten();
        Ok(LaneConnection { slots: self, slot, _permit: permit })
    }
}

/// A connection slot taken from a lane; given back when dropped.
pub(crate) struct LaneConnection<'a> {
    slots: &'a Slots,
    /// The slot (`None` until opened by [`on_lane_connection`]).
    pub(crate) slot: Option<PgConnection>,
    _permit: SemaphorePermit<'a>,
}

impl Drop for LaneConnection<'_> {
    fn drop(&mut self) {
        // Given back before the permit (a field) is released.
        lock(&self.slots.idle).push(self.slot.take());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each list is only pushed to and drained: a panic elsewhere cannot leave it half-changed.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
struct WaitingWrite {
    ledger: LedgerName,
    write: FencedWrite,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

impl CommitLane {
    /// A lane on `pool`'s database; its connections are opened on first use.
    pub(crate) fn new(pool: PgPool) -> Self {
        CommitLane {
            pool,
            shared: Slots::new(LANE_CONNECTIONS),
            delegated: Slots::new(DELEGATED_CONNECTIONS),
            streams: Slots::new(STREAM_CONNECTIONS),
            waiting: Mutex::default(),
            draining: AtomicBool::new(false),
            last_ledger: Mutex::new(None),
            shared_for: AtomicU32::new(0),
        }
    }

    /// Waits for a free shared connection slot.
    pub(crate) async fn take_connection(&self) -> Result<LaneConnection<'_>, StoreError> {
        self.shared.take().await
    }

    /// Waits for a free connection slot for a COPY write.
    pub(crate) async fn take_stream_connection(&self) -> Result<LaneConnection<'_>, StoreError> {
        self.streams.take().await
    }

    /// Opens the lane's connection, bounded like taking one from the pool.
    pub(crate) async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        let options = self.pool.connect_options();
        tokio::time::timeout(crate::ACQUIRE_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    /// Writes `write` for `ledger`, together with whatever other ledgers'
    /// writes are waiting, and answers once it is durable (or refused).
    ///
    /// The calls are made by a task of the lane's own ([`drain`](Self::drain)),
    /// started when a write finds none running: it keeps the connection while
    /// writes wait and starts the next call as soon as one answers. When the
    /// writer whose write was in a call made the next one itself, the
    /// connection sat idle until that writer's task was scheduled again,
    /// behind the requests the call had just answered (measured: 64 clients
    /// over 16 ledgers, ≈ 0.4 ms idle per call with writes waiting, 30 % of
    /// the connection's time). A writer that stops waiting leaves its write
    /// queued: it is written all the same.
    pub(crate) async fn write(
        self: &Arc<Self>,
        ledger: &LedgerName,
        write: FencedWrite,
    ) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        lock(&self.waiting).push(WaitingWrite { ledger: ledger.clone(), write, reply });
        if !self.draining.swap(true, Ordering::AcqRel) {
            tokio::spawn(Arc::clone(self).drain());
        }
        answer.await.unwrap_or_else(|_| Err(abandoned()))
    }

    /// Writes the waiting writes, a group per call, until none waits; then
    /// gives the connection back (the writer state's reads use it too).
    async fn drain(self: Arc<Self>) {
        let mut running = DrainRunning(&self.draining);
        let Ok(mut connection) = self.take_connection().await else {
            // Never: the lane's semaphore is never closed. Their writers hear
            // the outcome is unknown rather than waiting for ever.
            for write in std::mem::take(&mut *lock(&self.waiting)) {
                let _ = write.reply.send(Err(abandoned()));
            }
            return;
        };
        loop {
            let group = self.take_group();
            if group.is_empty() {
                running.stop();
                // A write queued after the group was taken and before the flag
                // fell saw a drain running and started none: this one goes on
                // unless another drain has started since.
                if lock(&self.waiting).is_empty() || self.draining.swap(true, Ordering::AcqRel) {
                    return;
                }
                running = DrainRunning(&self.draining);
                continue;
            }
            self.note_ledgers(&group);
            self.commit(&mut connection.slot, group).await;
        }
    }

    /// Whether several ledgers' writes have shared the lane's calls lately
    /// (within the last [`SHARED_SPAN`] calls).
    pub(crate) fn is_shared(&self) -> bool {
        self.shared_for.load(Ordering::Relaxed) > 0
    }

    /// Counts a call of `group` toward [`is_shared`](Self::is_shared).
    fn note_ledgers(&self, group: &[WaitingWrite]) {
        let mut last = lock(&self.last_ledger);
        let several = group.iter().any(|write| last.as_ref().is_some_and(|ledger| *ledger != write.ledger))
            || group.windows(2).any(|pair| pair[0].ledger != pair[1].ledger);
        if several {
            self.shared_for.store(SHARED_SPAN, Ordering::Relaxed);
        } else {
            // Only the lane's one drain task writes it.
            let left = self.shared_for.load(Ordering::Relaxed);
            self.shared_for.store(left.saturating_sub(1), Ordering::Relaxed);
        }
        if let Some(write) = group.last() {
            *last = Some(write.ledger.clone());
        }
    }

    /// Writes `write` for `ledger` on Citus: one call of `invario_append_delegated_v1`
    /// in autocommit, which the coordinator hands whole to the worker holding
    /// the ledger (`distribute_on_citus` distributed the function by its
    /// ledger), so the append is one hop and a one-phase commit there.
    pub(crate) async fn write_delegated(
        &self,
        ledger: &LedgerName,
        write: FencedWrite,
    ) -> Result<(), StoreError> {
        let mut connection = self.delegated.take().await?;
        let outcome = on_lane_connection!(self, &mut connection.slot, |lane_connection| write
            .call_delegated(lane_connection, ledger));
        outcome.map_err(write_error)
    }

    /// The oldest waiting writes that fit one commit: at most one per ledger
    /// (a ledger's second write is planned on its first), within the caps;
    /// the first always fits.
    fn take_group(&self) -> Vec<WaitingWrite> {
        let mut waiting = lock(&self.waiting);
        let mut group: Vec<WaitingWrite> = Vec::new();
        let mut rows = 0;
        let mut left = Vec::new();
        for write in waiting.drain(..) {
            let fits = group.is_empty()
                || (group.len() < MAX_LEDGERS_PER_COMMIT
                    && rows + write.write.rows.ids.len() <= MAX_ROWS_PER_COMMIT
                    && group.iter().all(|taken| taken.ledger != write.ledger));
            if fits {
                rows += write.write.rows.ids.len();
                group.push(write);
            } else {
                left.push(write);
            }
        }
        *waiting = left;
        group
    }

    /// Writes `group` in one call and answers each of its writers.
    async fn commit(&self, connection: &mut Option<PgConnection>, mut group: Vec<WaitingWrite>) {
        if group.len() == 1 {
            let Some(WaitingWrite { ledger, write, reply }) = group.pop() else { return };
            let outcome = on_lane_connection!(self, &mut *connection, |lane_connection| write
                .call(lane_connection, &ledger));
            let _ = reply.send(outcome.map_err(write_error));
            return;
        }
        let (shared, replies) = SharedWrite::of(group);
        match on_lane_connection!(self, &mut *connection, |lane_connection| shared.call(lane_connection)) {
            Ok(outcomes) if outcomes.len() == replies.len() => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(match outcome {
                        None => Ok(()),
                        Some((code, message)) => Err(ledger_error(&code, message)),
                    });
                }
            }
            Ok(outcomes) => {
                let message = format!(
                    "invario_append_many_v1 answered {} outcomes for {} ledgers",
                    outcomes.len(),
                    replies.len()
                );
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Contract(message.clone())));
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(shared_error(&error)));
                }
            }
        }
    }
}

/// Says a drain is running; clears the lane's flag when dropped, so that a
/// drain ended early (its task cancelled as the runtime shuts down) does not
/// keep later writes from starting another.
struct DrainRunning<'a>(&'a AtomicBool);

impl DrainRunning<'_> {
    /// Clears the flag now.
    fn stop(self) {}
}

impl Drop for DrainRunning<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A write's call ended without an answer (the lane's task was cancelled as
/// the runtime shut down): whether it committed is unknown.
fn abandoned() -> StoreError {
    StoreError::Unavailable(Box::new(SharedCommitError(
        "the shared commit was abandoned; its outcome is unknown".into(),
    )))
}

/// A failure reported by the database for one ledger of a shared commit.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SharedCommitError(String);

/// One ledger's failure in a shared commit, from its SQLSTATE, classified as
/// a lone write's is.
fn ledger_error(code: &str, message: Option<String>) -> StoreError {
    let source = Box::new(SharedCommitError(format!("{} (SQLSTATE {code})", message.unwrap_or_default())));
    write_error_for_sqlstate(code, source)
}

/// The failure of a whole shared commit, told to each of its writers.
fn shared_error(error: &sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Database(database) => {
            ledger_error(database.code().as_deref().unwrap_or(""), Some(database.message().to_owned()))
        }
        other if unreachable_database(other) => {
            StoreError::Unavailable(Box::new(SharedCommitError(other.to_string())))
        }
        other => StoreError::Backend(Box::new(SharedCommitError(other.to_string()))),
    }
}

/// What a fenced write sends besides its rows: the key epoch, the fence,
/// and the tiles, tree state and head it moves the ledger to.
#[derive(Debug)]
pub(crate) struct WriteFrame {
    pub(crate) key_epoch: Option<i64>,
    pub(crate) fence: (i64, Vec<u8>, i64, Vec<u8>),
    pub(crate) tiles: TileColumns,
    pub(crate) tree: (i64, Vec<u8>, Vec<u8>),
    pub(crate) head: (i64, Vec<u8>, Option<DateTime<Utc>>),
}

/// A statement whose arguments are being bound.
pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

impl WriteFrame {
    /// Binds the key epoch, the ledger and the fence: the leading arguments of
    /// `invario_append_v2` and of `invario_fence_v1`.
    pub(crate) fn bind_fence<'q>(&'q self, query: PgQuery<'q>, ledger: &'q LedgerName) -> PgQuery<'q> {
        self.bind_ledger_fence(query.bind(self.key_epoch), ledger)
    }

    /// Binds the ledger and the fence: the leading arguments of `invario_append_v1` and `invario_append_delegated_v1`.
    fn bind_ledger_fence<'q>(&'q self, query: PgQuery<'q>, ledger: &'q LedgerName) -> PgQuery<'q> {
        query
            .bind(ledger.as_str())
            .bind(self.fence.0)
            .bind(&self.fence.1)
            .bind(self.fence.2)
            .bind(&self.fence.3)
    }

    /// Binds the tiles, the tree state and the head: the trailing arguments of
    /// `invario_append_v2` and of `invario_advance_v1` (after its ledger).
    pub(crate) fn bind_advance<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.tiles.0)
            .bind(&self.tiles.1)
            .bind(&self.tiles.2)
            .bind(self.tree.0)
            .bind(&self.tree.1)
            .bind(&self.tree.2)
            .bind(self.head.0)
            .bind(&self.head.1)
            .bind(self.head.2)
    }

    pub(crate) fn new(
        fence: &Fence,
        keys: Option<KeyEpoch>,
        plan: &AppendPlan,
    ) -> Result<WriteFrame, StoreError> {
        let (Some(tree), Some(head)) = (plan.tree_update(), plan.head_move()) else {
            return Err(StoreError::Contract("a fenced write needs a plan that adds entries".into()));
        };
        // An epoch beyond bigint was never read from the table: it cannot match.
        let key_epoch =
            keys.map(|epoch| i64::try_from(epoch.0).map_err(|_| StoreError::KeysChanged)).transpose()?;
        Ok(WriteFrame {
            key_epoch,
            fence: (
                to_sequence(fence.head.sequence_number)?,
                fence.head.entry_hash.as_bytes().to_vec(),
                to_sequence(fence.tree.size)?,
                fence.tree.root.0.to_vec(),
            ),
            tiles: tile_columns(tree)?,
            tree: (
                to_sequence(tree.state.head.size)?,
                tree.state.head.root.0.to_vec(),
                hashes_to_bytes(tree.state.frontier.hashes()),
            ),
            head: (
                to_sequence(head.sequence_number)?,
                head.entry_hash.as_bytes().to_vec(),
                head.recorded_at.map(crate::rows::to_datetime),
            ),
        })
    }
}

/// A fenced write's arguments for `invario_append_v2` (the migrations
/// `append_function` and `key_epoch`), built once and sent again if the
/// connection is lost.
#[derive(Debug)]
pub(crate) struct FencedWrite {
    frame: WriteFrame,
    rows: PlanRows,
}

impl FencedWrite {
    pub(crate) fn new(
        fence: &Fence,
        keys: Option<KeyEpoch>,
        plan: &AppendPlan,
    ) -> Result<FencedWrite, StoreError> {
        Ok(FencedWrite { frame: WriteFrame::new(fence, keys, plan)?, rows: PlanRows::of(plan)? })
    }

    /// One call in autocommit on `connection`: one round trip, the commit included.
    async fn call(&self, connection: &mut PgConnection, ledger: &LedgerName) -> Result<(), sqlx::Error> {
        let (rows, frame) = (&self.rows, &self.frame);
        let query = sqlx::query(
            "SELECT invario_append_v2($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                                      $17, $18, $19, $20, $21, $22, $23, $24)",
        );
        let query = rows.bind(frame.bind_fence(query, ledger));
        frame.bind_advance(query).execute(connection).await.map(drop)
    }

    /// The same write without the key epoch, as one call of
    /// `invario_append_delegated_v1`: on Citus, delegated to the ledger's worker.
    async fn call_delegated(
        &self,
        connection: &mut PgConnection,
        ledger: &LedgerName,
    ) -> Result<(), sqlx::Error> {
        let (rows, frame) = (&self.rows, &self.frame);
        let query = sqlx::query(
            "SELECT invario_append_delegated_v1($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                                      $17, $18, $19, $20, $21, $22, $23)",
        );
        let query = rows.bind(frame.bind_ledger_fence(query, ledger));
        frame.bind_advance(query).execute(connection).await.map(drop)
    }
}

/// Several ledgers' fenced writes laid end to end, as
/// `invario_append_many_v1` (the migration `shared_commit`) takes them.
#[derive(Debug, Default)]
struct SharedWrite {
    key_epochs: Vec<Option<i64>>,
    ledgers: Vec<String>,
    fence_sequences: Vec<i64>,
    fence_hashes: Vec<Vec<u8>>,
    fence_tree_sizes: Vec<i64>,
    fence_roots: Vec<Vec<u8>>,
    row_ledgers: Vec<i32>,
    ids: Vec<Uuid>,
    amounts: Vec<String>,
    currencies: Vec<&'static str>,
    occurred: Vec<Option<DateTime<Utc>>>,
    metadata: Vec<String>,
    sequences: Vec<i64>,
    prev_hashes: Vec<Vec<u8>>,
    entry_hashes: Vec<Vec<u8>>,
    recorded: Vec<DateTime<Utc>>,
    tile_ledgers: Vec<i32>,
    tile_levels: Vec<i16>,
    tile_indexes: Vec<i64>,
    tile_hashes: Vec<Vec<u8>>,
    tree_sizes: Vec<i64>,
    roots: Vec<Vec<u8>>,
    frontiers: Vec<Vec<u8>>,
    head_sequences: Vec<i64>,
    head_hashes: Vec<Vec<u8>>,
    head_recorded: Vec<Option<DateTime<Utc>>>,
}

impl SharedWrite {
    /// The group's writes as one call's arguments, and the replies in the same order.
    fn of(group: Vec<WaitingWrite>) -> (SharedWrite, Vec<oneshot::Sender<Result<(), StoreError>>>) {
        let mut shared = SharedWrite::default();
        let mut replies = Vec::with_capacity(group.len());
        for (index, WaitingWrite { ledger, write, reply }) in (1_i32..).zip(group) {
            replies.push(reply);
            let FencedWrite { frame: WriteFrame { key_epoch, fence, tiles, tree, head }, rows } = write;
            shared.key_epochs.push(key_epoch);
            shared.ledgers.push(ledger.as_str().to_owned());
            let (fence_sequence, fence_hash, fence_tree_size, fence_root) = fence;
            shared.fence_sequences.push(fence_sequence);
            shared.fence_hashes.push(fence_hash);
            shared.fence_tree_sizes.push(fence_tree_size);
            shared.fence_roots.push(fence_root);
            shared.row_ledgers.extend(std::iter::repeat_n(index, rows.ids.len()));
            shared.ids.extend(rows.ids);
            shared.amounts.extend(rows.amounts);
            shared.currencies.extend(rows.currencies);
            shared.occurred.extend(rows.occurred);
            shared.metadata.extend(rows.metadata);
            shared.sequences.extend(rows.sequences);
            shared.prev_hashes.extend(rows.prev_hashes);
            shared.entry_hashes.extend(rows.entry_hashes);
            shared.recorded.extend(rows.recorded);
            let (levels, indexes, hashes) = tiles;
            shared.tile_ledgers.extend(std::iter::repeat_n(index, levels.len()));
            shared.tile_levels.extend(levels);
            shared.tile_indexes.extend(indexes);
            shared.tile_hashes.extend(hashes);
            let (tree_size, root, frontier) = tree;
            shared.tree_sizes.push(tree_size);
            shared.roots.push(root);
            shared.frontiers.push(frontier);
            let (head_sequence, head_hash, head_recorded) = head;
            shared.head_sequences.push(head_sequence);
            shared.head_hashes.push(head_hash);
            shared.head_recorded.push(head_recorded);
        }
        (shared, replies)
    }

    /// One call in autocommit on `connection`: each ledger's outcome in
    /// order, `None` when written, else its SQLSTATE and message.
    async fn call(
        &self,
        connection: &mut PgConnection,
    ) -> Result<Vec<Option<(String, Option<String>)>>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT code, message FROM invario_append_many_v1($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                                      $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)",
        )
        .bind(&self.key_epochs)
        .bind(&self.ledgers)
        .bind(&self.fence_sequences)
        .bind(&self.fence_hashes)
        .bind(&self.fence_tree_sizes)
        .bind(&self.fence_roots)
        .bind(&self.row_ledgers)
        .bind(&self.ids)
        .bind(&self.amounts)
        .bind(&self.currencies)
        .bind(&self.occurred)
        .bind(&self.metadata)
        .bind(&self.sequences)
        .bind(&self.prev_hashes)
        .bind(&self.entry_hashes)
        .bind(&self.recorded)
        .bind(&self.tile_ledgers)
        .bind(&self.tile_levels)
        .bind(&self.tile_indexes)
        .bind(&self.tile_hashes)
        .bind(&self.tree_sizes)
        .bind(&self.roots)
        .bind(&self.frontiers)
        .bind(&self.head_sequences)
        .bind(&self.head_hashes)
        .bind(&self.head_recorded)
        .fetch_all(connection)
        .await?;
        rows.iter()
            .map(|row| {
                let code: Option<String> = row.try_get("code")?;
                let message: Option<String> = row.try_get("message")?;
                Ok(code.map(|code| (code, message)))
            })
            .collect()
    }
}
