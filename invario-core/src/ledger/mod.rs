//! The ledger service the shells call: ingest (with quarantine), reads, and — in
//! its submodules — verification, the tree and its proofs, signed checkpoints.

pub mod checkpoints;
pub mod pipeline;
pub mod tree;
pub mod verification;

pub use pipeline::{BatchGroup, GroupAnswer, MAX_WRITES_IN_FLIGHT, SingleAnswer, SingleGroup, SinglesAnswer};
pub use verification::{Expectations, IntegrityStatus};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::append::{
    AppendPlan, AppendRefusal, AppendSnapshot, BatchRejection, IndependentPlan, ItemProblem, JoinedPlan,
    MAX_BATCH_SIZE, MAX_JOINED_ROWS, Receipt, plan_append, plan_append_batches, plan_append_each,
};
use crate::chain::{LedgerEntry, LedgerHead, SequenceExhausted};
use crate::idempotency::{IdempotencyStrategy, ReplayTracker, can_presume_new};
use crate::integrity::IntegrityBreak;
use crate::keys::KeyEpoch;
use crate::ports::{AppendSession, LedgerStore, StoreError};
use crate::tiles::TreeError;
use crate::timestamp::Timestamp;
use crate::transaction::{SubmittedTransaction, Transaction, TransactionId};
use crate::writer::{FencePause, WriterState};
use futures_util::lock::Mutex as AsyncMutex;

/// Most entries one page of `entries_after` returns.
pub const MAX_PAGE_SIZE: usize = 1_000;

// A page is read in one query like a batch is written in one; keeping it no
// larger bounds both by the same limit.
const _: () = assert!(MAX_PAGE_SIZE <= MAX_BATCH_SIZE);

/// Why an ingest did not record anything.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A batch with no items.
    #[error("transactions must hold at least one item")]
    EmptyBatch,
    /// More than [`MAX_BATCH_SIZE`] items.
    #[error("transactions may hold at most {max} items (got {0})", max = MAX_BATCH_SIZE)]
    BatchTooLarge(usize),
    /// Batches joined in one write ([`Ledger::ingest_batches`]) holding more
    /// than [`MAX_JOINED_ROWS`] items together.
    #[error("batches joined in one write may hold at most {max} items together (got {0})", max = MAX_JOINED_ROWS)]
    TooManyJoined(usize),
    /// Some items are invalid or conflict; every one is listed.
    #[error(transparent)]
    Rejected(#[from] BatchRejection),
    /// No sequence number is left for the new entries.
    #[error(transparent)]
    Exhausted(#[from] SequenceExhausted),
    /// The Merkle tree cannot be extended (not built yet, or damaged).
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// The chain is known to be broken; nothing may be added on top of it.
    #[error(
        "the ledger is quarantined because verification found a break ({0}); writes are refused until the service is restarted on a healthy (restored) ledger"
    )]
    Quarantined(IntegrityBreak),
    /// Storage failed; nothing was recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AppendRefusal> for IngestError {
    fn from(refusal: AppendRefusal) -> Self {
        match refusal {
            AppendRefusal::Rejected(rejection) => IngestError::Rejected(rejection),
            AppendRefusal::Exhausted(exhausted) => IngestError::Exhausted(exhausted),
            AppendRefusal::Tree(tree) => IngestError::Tree(tree),
        }
    }
}

/// Why a page request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// `limit` outside 1..=[`MAX_PAGE_SIZE`].
    #[error("limit must be between 1 and {max} (got {0})", max = MAX_PAGE_SIZE)]
    LimitOutOfRange(usize),
    /// `after` beyond the largest sequence number a ledger can hold.
    #[error("after must be at most {max} (got {0})", max = crate::MAX_SEQUENCE_NUMBER)]
    AfterOutOfRange(u64),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One page of entries and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntriesPage {
    /// Entries in ascending sequence order.
    pub entries: Vec<LedgerEntry>,
    /// The `after` to ask for next, or `None` when this page reached the head.
    pub next_after: Option<u64>,
}

/// The ledger service: ingest, read and verify, with quarantine.
///
/// Once a verification finds a break, every write is refused for the life of
/// this service value: recovery is an operator's decision (restore, then restart
/// on a healthy ledger), never something a later check decides on its own.
#[derive(Debug)]
pub struct Ledger<S> {
    store: S,
    integrity: Arc<Mutex<IntegrityStatus>>,
    idempotency: IdempotencyStrategy,
    replays: Mutex<ReplayTracker>,
    writer: AsyncMutex<Writer>,
    fenced_writes: AtomicU64,
}

/// The writer's kept state ([`crate::writer`]) and its pause after fences.
/// Behind an async lock that every write of this service holds from plan to
/// commit: its writes queue here rather than at the database's head lock, so
/// they never fence each other (a fence means another writer).
#[derive(Debug, Default)]
struct Writer {
    /// `None` until loaded, and after a fence or a failure.
    state: Option<WriterState>,
    pause: FencePause,
}

/// What the fast path did with a batch.
enum FastWrite<A: Planned> {
    /// Written (or answered without a write): the answer.
    Done(A::Answer),
    /// Nothing written; the batch goes on to the locking path, looking its ids
    /// up first when one was found stored. `keys_checked`: the store checked
    /// the write's key epoch and found it current (the locking path cannot).
    Locking { batch: A::Submission, look_up: bool, keys_checked: bool },
}

impl<S: LedgerStore> Ledger<S> {
    /// Wraps a store. Integrity is unknown (not healthy) until the first verification.
    pub fn new(store: S) -> Self {
        Ledger {
            store,
            integrity: Arc::default(),
            idempotency: IdempotencyStrategy::default(),
            replays: Mutex::default(),
            writer: AsyncMutex::default(),
            fenced_writes: AtomicU64::new(0),
        }
    }

    /// Writes made from this service's kept state that found the ledger moved
    /// by another writer, and were redone on the locking path (the
    /// `invario_append_fenced_total` metric).
    pub fn fenced_writes(&self) -> u64 {
        self.fenced_writes.load(Ordering::Relaxed)
    }

    /// The same service deciding stored ids by `strategy` (default:
    /// [`IdempotencyStrategy::Adaptive`]). Every strategy gives the same
    /// answers; they differ only in round trips.
    pub fn with_idempotency(mut self, strategy: IdempotencyStrategy) -> Self {
        self.idempotency = strategy;
        self
    }

    fn presume_new(&self) -> bool {
        self.replays.lock().unwrap_or_else(PoisonError::into_inner).presume_new(self.idempotency)
    }

    fn record_write(&self, held_a_stored_id: bool) {
        self.replays.lock().unwrap_or_else(PoisonError::into_inner).record(held_a_stored_id);
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Appends a batch atomically and returns one receipt per item, in order.
    ///
    /// While replays are rare the ids are presumed new (no lookup under the
    /// lock); if one is stored after all, nothing was written and the batch
    /// is planned again from an exact lookup with the same `now`, so every
    /// answer is what the lookup-first path gives ([`crate::idempotency`]).
    pub async fn ingest(&self, batch: Vec<Transaction>, now: Timestamp) -> Result<Vec<Receipt>, IngestError> {
        if batch.is_empty() {
            return Err(IngestError::EmptyBatch);
        }
        self.append_with(batch, now, None, plan_append).await
    }

    /// Appends unrelated transactions in one write (group commit): each item
    /// succeeds or fails on its own (see [`plan_append_each`]); the call as a
    /// whole fails only when nothing could be written. Ids are presumed new
    /// as in [`ingest`](Self::ingest), with the same fallback.
    pub async fn ingest_each(
        &self,
        batch: Vec<Transaction>,
        now: Timestamp,
    ) -> Result<Vec<Result<Receipt, ItemProblem>>, IngestError> {
        self.ingest_each_with_keys(batch, now, None).await
    }

    /// [`ingest_each`](Self::ingest_each) for requests authenticated from a
    /// cached key record read at key epoch `keys`
    /// ([`crate::KeyAdmin::authenticate_for_write`]): the write carries the
    /// epoch and the store writes nothing if any key changed since. Whenever
    /// the epoch cannot be checked in the write itself (the locking path, a
    /// store without epochs, nothing to write) or has moved, the answer is
    /// [`StoreError::KeysChanged`] with nothing written: authenticate the
    /// requests again from the store and call again without an epoch.
    pub async fn ingest_each_with_keys(
        &self,
        batch: Vec<Transaction>,
        now: Timestamp,
        keys: Option<KeyEpoch>,
    ) -> Result<Vec<Result<Receipt, ItemProblem>>, IngestError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.append_with(batch, now, keys, plan_append_each).await
    }

    /// Appends batches submitted separately (batch requests queued together)
    /// in one write, in the order given: each batch all or nothing, answered
    /// exactly as [`ingest`](Self::ingest) would answer it after the batches
    /// before it (an id recorded by an earlier batch is a replay or a
    /// conflict for a later one). One answer per batch, in order; the outer
    /// error is the shared write's failure, when nothing was written.
    ///
    /// Each batch must hold 1 to [`MAX_BATCH_SIZE`] items (see
    /// [`valid_batch`]) and together at most [`MAX_JOINED_ROWS`] unless there
    /// is only one ([`joins`]); otherwise nothing is written and the call is refused.
    ///
    /// Keys: the write checks the oldest epoch among the requests (it holds
    /// only if every cached key is current). When it has moved, the requests
    /// that carried an epoch are answered [`StoreError::KeysChanged`] with
    /// nothing of theirs written — authenticate them again from the store and
    /// send them again without one — and the others are written without it.
    pub async fn ingest_batches(&self, requests: Vec<BatchRequest>, now: Timestamp) -> GroupAnswer {
        let mut writer = self.writer.lock().await;
        self.batches_locked(&mut writer, requests, now).await
    }

    /// [`ingest_batches`](Self::ingest_batches) with the writer lock held.
    async fn batches_locked(
        &self,
        writer: &mut Writer,
        requests: Vec<BatchRequest>,
        now: Timestamp,
    ) -> GroupAnswer {
        if let Some(problem) = group_problem(&requests) {
            return Err(problem);
        }
        let (keys, unkeyed) =
            split_by_keys(requests.iter().map(|request| (&request.transactions, request.keys)));
        let count = requests.len();
        let batches: Vec<Vec<Transaction>> =
            requests.into_iter().map(|request| request.transactions).collect();
        self.check_writable(batches.rows())?;
        match self.append_locked(writer, batches, now, keys, plan_append_batches).await {
            Ok(outcomes) => Ok(answers(outcomes)),
            Err(IngestError::Store(StoreError::KeysChanged)) if keys.is_some() => {
                let (positions, batches): (Vec<usize>, Vec<_>) = unkeyed.into_iter().unzip();
                let written = match batches.is_empty() {
                    true => Vec::new(),
                    false => {
                        self.check_writable(batches.rows())?;
                        answers(self.append_locked(writer, batches, now, None, plan_append_batches).await?)
                    }
                };
                Ok(with_keys_changed(count, positions, written, || Err(StoreError::KeysChanged.into())))
            }
            Err(error) => Err(error),
        }
    }

    /// The one append sequence both planners share: checks; then — while
    /// ids may be presumed new — a write from the kept state under its fence
    /// (one round trip where the adapter allows), or a locked write without
    /// the lookup; on a stored id, the lookup-first write, planned with the
    /// same `now`. The service's writes take turns (the writer lock).
    async fn append_with<P: Planned>(
        &self,
        batch: P::Submission,
        now: Timestamp,
        keys: Option<KeyEpoch>,
        plan: Planner<P>,
    ) -> Result<P::Answer, IngestError> {
        self.check_writable(batch.rows())?;
        let mut writer = self.writer.lock().await;
        self.append_locked(&mut writer, batch, now, keys, plan).await
    }

    /// [`append_with`](Self::append_with) once its checks passed, with the writer lock held.
    async fn append_locked<P: Planned>(
        &self,
        writer: &mut Writer,
        mut batch: P::Submission,
        now: Timestamp,
        keys: Option<KeyEpoch>,
        plan: Planner<P>,
    ) -> Result<P::Answer, IngestError> {
        let ids = batch.ids();
        let mut look_up = !self.presume_new();
        let fast = !look_up && writer.pause.allows_fast_write();
        if keys.is_some() && !fast {
            return Err(StoreError::KeysChanged.into());
        }
        if fast {
            match self.write_from_state(writer, batch, &ids, now, keys, plan).await? {
                FastWrite::Done(answer) => return Ok(answer),
                FastWrite::Locking { keys_checked: false, .. } if keys.is_some() => {
                    return Err(StoreError::KeysChanged.into());
                }
                FastWrite::Locking { batch: back, look_up: stored, .. } => {
                    batch = back;
                    look_up = stored;
                }
            }
        }
        self.append_locking(writer, batch, &ids, look_up, now, plan).await
    }

    /// The locking path: the head locked and read (with the stored entries
    /// for `ids` when `look_up`, or while ids may no longer be presumed new).
    async fn append_locking<P: Planned>(
        &self,
        writer: &mut Writer,
        mut batch: P::Submission,
        ids: &[TransactionId],
        look_up: bool,
        now: Timestamp,
        plan: Planner<P>,
    ) -> Result<P::Answer, IngestError> {
        // The locking path's commit, if its outcome were unknown, would leave
        // a kept state behind the ledger: it is set again only on success.
        writer.state = None;
        if !look_up {
            let session = self.store.begin_append_presuming_new(ids).await?;
            if can_presume_new(&session.snapshot().head, ids) {
                let snapshot_had_stored = !session.snapshot().existing.is_empty();
                let planned = plan(session.snapshot(), batch, now)?;
                let snapshot = session.snapshot().clone();
                match write(session, planned.write()).await {
                    Ok(()) => {
                        self.record_write(snapshot_had_stored);
                        writer.state = Some(WriterState::after(snapshot, planned.write()));
                        return Ok(planned.answer());
                    }
                    Err(StoreError::AlreadyStored) => self.record_write(true),
                    Err(error) => return Err(error.into()),
                }
                // Presumed new, every item was created: take the transactions back.
                batch = planned.into_transactions().ok_or(StoreError::AlreadyStored)?;
            }
        }
        let session = self.store.begin_append(ids).await?;
        self.record_write(!session.snapshot().existing.is_empty());
        let planned = plan(session.snapshot(), batch, now)?;
        let snapshot = session.snapshot().clone();
        write(session, planned.write()).await?;
        writer.state = Some(WriterState::after(snapshot, planned.write()));
        Ok(planned.answer())
    }

    /// The fast path: plans on the kept state (loading it when unknown), ids
    /// presumed new, and writes under its fence. The state is advanced after
    /// a commit, kept when nothing was written for a known reason, and
    /// dropped after a fence or a failure.
    async fn write_from_state<P: Planned>(
        &self,
        writer: &mut Writer,
        batch: P::Submission,
        ids: &[TransactionId],
        now: Timestamp,
        keys: Option<KeyEpoch>,
        plan: Planner<P>,
    ) -> Result<FastWrite<P>, IngestError> {
        let state = match writer.state.take() {
            Some(state) => state,
            None => self.store.writer_state().await?,
        };
        if !can_presume_new(&state.head, ids) {
            writer.state = Some(state);
            return Ok(FastWrite::Locking { batch, look_up: true, keys_checked: false });
        }
        let fence = state.fence();
        let snapshot = state.into_snapshot();
        let planned = match plan(&snapshot, batch, now) {
            Ok(planned) => planned,
            Err(refusal) => {
                writer.state = Some(WriterState::from_snapshot(snapshot));
                // A key not yet confirmed hears of its own refusal, not the batch's.
                return Err(if keys.is_some() { StoreError::KeysChanged.into() } else { refusal.into() });
            }
        };
        if planned.write().new_entries().is_empty() {
            writer.state = Some(WriterState::from_snapshot(snapshot));
            if keys.is_some() {
                return Err(StoreError::KeysChanged.into());
            }
            return Ok(FastWrite::Done(planned.answer()));
        }
        match self.store.write_fenced(&fence, keys, planned.write()).await {
            Ok(()) => {
                writer.state = Some(WriterState::after(snapshot, planned.write()));
                writer.pause.succeeded();
                self.record_write(false);
                Ok(FastWrite::Done(planned.answer()))
            }
            Err(StoreError::AlreadyStored) => {
                // The fence held (it is compared first), so the state is still exact.
                writer.state = Some(WriterState::from_snapshot(snapshot));
                self.record_write(true);
                let batch = planned.into_transactions().ok_or(StoreError::AlreadyStored)?;
                // The key epoch is checked before anything else.
                Ok(FastWrite::Locking { batch, look_up: true, keys_checked: true })
            }
            Err(StoreError::Fenced) => {
                self.fenced_writes.fetch_add(1, Ordering::Relaxed);
                writer.pause.fenced();
                let batch = planned.into_transactions().ok_or(StoreError::Fenced)?;
                Ok(FastWrite::Locking { batch, look_up: false, keys_checked: true })
            }
            Err(StoreError::KeysChanged) => {
                // Refused before the fence was compared or anything written:
                // the kept state is as exact as it was.
                writer.state = Some(WriterState::from_snapshot(snapshot));
                Err(StoreError::KeysChanged.into())
            }
            // The outcome may be unknown (a connection lost at commit): the
            // state stays dropped, and the next write reads it again.
            Err(error) => Err(error.into()),
        }
    }

    /// The checks every write passes before it takes the append lock: the
    /// batch size and quarantine.
    fn check_writable(&self, size: usize) -> Result<(), IngestError> {
        if size > MAX_BATCH_SIZE {
            return Err(IngestError::BatchTooLarge(size));
        }
        if let Some(found) = self.integrity().broken {
            return Err(IngestError::Quarantined(found));
        }
        Ok(())
    }

    /// Parses client JSON items, then ingests them; any invalid item rejects the batch.
    pub async fn ingest_json(
        &self,
        items: &[serde_json::Value],
        now: Timestamp,
    ) -> Result<Vec<Receipt>, IngestError> {
        if items.len() > MAX_BATCH_SIZE {
            return Err(IngestError::BatchTooLarge(items.len()));
        }
        let submitted = items.iter().map(|item| SubmittedTransaction(Transaction::from_json(item))).collect();
        self.ingest_submitted(submitted, now).await
    }

    /// Records a batch as it was submitted (see [`SubmittedTransaction`]): all appended, or
    /// none, with every refused item listed by index.
    pub async fn ingest_submitted(
        &self,
        items: Vec<SubmittedTransaction>,
        now: Timestamp,
    ) -> Result<Vec<Receipt>, IngestError> {
        self.ingest(valid_batch(items)?, now).await
    }

    /// The entry recording transaction `id`.
    pub async fn entry(&self, id: TransactionId) -> Result<Option<LedgerEntry>, StoreError> {
        self.store.entry_by_id(id).await
    }

    /// The current head.
    pub async fn head(&self) -> Result<LedgerHead, StoreError> {
        self.store.head().await
    }

    /// A page of entries after `after`, for auditors re-verifying from outside.
    pub async fn entries_after(&self, after: u64, limit: usize) -> Result<EntriesPage, PageError> {
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(PageError::LimitOutOfRange(limit));
        }
        if after > crate::MAX_SEQUENCE_NUMBER {
            return Err(PageError::AfterOutOfRange(after));
        }
        let entries = self.store.entries_after(after, limit).await?;
        let next_after = match entries.last() {
            Some(last) if entries.len() == limit => Some(last.sequence_number),
            _ => None,
        };
        Ok(EntriesPage { entries, next_after })
    }
}

/// One batch request for [`Ledger::ingest_batches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRequest {
    /// The batch, valid items only ([`valid_batch`]).
    pub transactions: Vec<Transaction>,
    /// The key epoch the request was authenticated at from a cached key
    /// record, for the write to check; `None` when its key was read from the store.
    pub keys: Option<KeyEpoch>,
}

/// The transactions of a batch as it was submitted, when it may be written:
/// 1 to [`MAX_BATCH_SIZE`] items, every one valid. Otherwise the refusal,
/// listing every invalid item by index.
pub fn valid_batch(items: Vec<SubmittedTransaction>) -> Result<Vec<Transaction>, IngestError> {
    if let Some(problem) = batch_size_problem(items.len()) {
        return Err(problem);
    }
    let mut batch = Vec::with_capacity(items.len());
    let mut failures = Vec::new();
    for (index, SubmittedTransaction(item)) in items.into_iter().enumerate() {
        match item {
            Ok(transaction) => batch.push(transaction),
            Err(errors) => failures.push((index, errors)),
        }
    }
    if !failures.is_empty() {
        return Err(BatchRejection::from_invalid(failures).into());
    }
    Ok(batch)
}

/// Why a batch of `size` items may not be written, if it may not: empty, or
/// over [`MAX_BATCH_SIZE`].
fn batch_size_problem(size: usize) -> Option<IngestError> {
    match size {
        0 => Some(IngestError::EmptyBatch),
        size if size > MAX_BATCH_SIZE => Some(IngestError::BatchTooLarge(size)),
        _ => None,
    }
}

/// Why a group of batch requests may not be written at all, if it may not:
/// a batch empty or too large, or too many rows joined ([`joins`]).
fn group_problem(requests: &[BatchRequest]) -> Option<IngestError> {
    let sizes = || requests.iter().map(|request| request.transactions.len());
    if let Some(problem) = sizes().find_map(batch_size_problem) {
        return Some(problem);
    }
    let mut joined = 0;
    for size in sizes() {
        if !joins(joined, size) {
            return Some(IngestError::TooManyJoined(sizes().sum()));
        }
        joined += size;
    }
    None
}

/// Whether a batch of `rows` items may join a write that already holds
/// `joined` rows of other batches ([`Ledger::ingest_batches`]): the first
/// batch always starts one; the rest join up to [`MAX_JOINED_ROWS`] in all.
pub fn joins(joined: usize, rows: usize) -> bool {
    joined == 0 || joined.saturating_add(rows) <= MAX_JOINED_ROWS
}

/// The oldest key epoch among a group's requests — the one its write checks,
/// which holds only if every cached key is current — and, when there is one,
/// the requests whose keys were read from the store, by position: should that
/// epoch have moved, they are written again at once, without it.
fn split_by_keys<'a, R: Clone + 'a>(
    requests: impl Iterator<Item = (&'a R, Option<KeyEpoch>)> + Clone,
) -> (Option<KeyEpoch>, Vec<(usize, R)>) {
    let keys = requests.clone().filter_map(|(_, keys)| keys).min();
    let unkeyed = match keys {
        Some(_) => requests
            .enumerate()
            .filter(|(_, (_, keys))| keys.is_none())
            .map(|(position, (request, _))| (position, request.clone()))
            .collect(),
        None => Vec::new(),
    };
    (keys, unkeyed)
}

/// The answers of a group of `count` requests whose key epoch had moved:
/// those written again at `positions` (in order, as [`split_by_keys`] kept
/// them), and `keys_changed` for every request that carried an epoch.
fn with_keys_changed<A>(
    count: usize,
    positions: Vec<usize>,
    written: Vec<A>,
    keys_changed: impl Fn() -> A,
) -> Vec<A> {
    let mut written = positions.into_iter().zip(written).peekable();
    (0..count)
        .map(|index| match written.next_if(|(position, _)| *position == index) {
            Some((_, answer)) => answer,
            None => keys_changed(),
        })
        .collect()
}

/// Each batch's answer as [`IngestError`]s.
fn answers(outcomes: Vec<Result<Vec<Receipt>, AppendRefusal>>) -> Vec<Result<Vec<Receipt>, IngestError>> {
    outcomes.into_iter().map(|outcome| outcome.map_err(IngestError::from)).collect()
}

/// Commits `plan` on `session`, or lets the session roll back when the plan
/// adds nothing (every item a replay).
async fn write<A: AppendSession>(session: A, plan: &AppendPlan) -> Result<(), StoreError> {
    if plan.new_entries().is_empty() { Ok(()) } else { session.commit(plan).await }
}

/// A planner: [`plan_append`], [`plan_append_each`] or [`plan_append_batches`].
type Planner<P> = fn(&AppendSnapshot, <P as Planned>::Submission, Timestamp) -> Result<P, AppendRefusal>;

/// What one write is asked to record: a batch, or batches joined.
trait Submission {
    /// Every transaction id, in order.
    fn ids(&self) -> Vec<TransactionId>;
    /// How many transactions.
    fn rows(&self) -> usize;
}

impl Submission for Vec<Transaction> {
    fn ids(&self) -> Vec<TransactionId> {
        self.iter().map(|transaction| transaction.transaction_id).collect()
    }

    fn rows(&self) -> usize {
        self.len()
    }
}

impl Submission for Vec<Vec<Transaction>> {
    fn ids(&self) -> Vec<TransactionId> {
        self.iter().flatten().map(|transaction| transaction.transaction_id).collect()
    }

    fn rows(&self) -> usize {
        self.iter().map(Vec::len).sum()
    }
}

/// What a planner returns, as the append sequence needs it.
trait Planned {
    /// What the planner is handed.
    type Submission: Submission;
    /// What the caller is answered.
    type Answer;
    /// What to write.
    fn write(&self) -> &AppendPlan;
    /// The answer, once written.
    fn answer(self) -> Self::Answer;
    /// The submitted transactions back, when every item was created.
    fn into_transactions(self) -> Option<Self::Submission>;
}

impl Planned for AppendPlan {
    type Submission = Vec<Transaction>;
    type Answer = Vec<Receipt>;

    fn write(&self) -> &AppendPlan {
        self
    }

    fn answer(self) -> Vec<Receipt> {
        self.into_receipts()
    }

    fn into_transactions(self) -> Option<Vec<Transaction>> {
        // Refused plans never reach here; a plan lists every item in order.
        Some(self.into_receipts().into_iter().map(|receipt| receipt.entry.transaction).collect())
    }
}

impl Planned for IndependentPlan {
    type Submission = Vec<Transaction>;
    type Answer = Vec<Result<Receipt, ItemProblem>>;

    fn write(&self) -> &AppendPlan {
        IndependentPlan::write(self)
    }

    fn answer(self) -> Self::Answer {
        self.into_outcomes()
    }

    fn into_transactions(self) -> Option<Vec<Transaction>> {
        IndependentPlan::into_transactions(self)
    }
}

impl Planned for JoinedPlan {
    type Submission = Vec<Vec<Transaction>>;
    type Answer = Vec<Result<Vec<Receipt>, AppendRefusal>>;

    fn write(&self) -> &AppendPlan {
        JoinedPlan::write(self)
    }

    fn answer(self) -> Self::Answer {
        self.into_outcomes()
    }

    fn into_transactions(self) -> Option<Vec<Vec<Transaction>>> {
        Some(self.into_batches())
    }
}
