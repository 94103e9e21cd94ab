//! The ports: what the core needs from storage, as async traits adapters implement.

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use uuid::Uuid;

use crate::append::{AppendPlan, AppendSnapshot};
use crate::chain::{EntryHash, LedgerEntry, LedgerHead};
use crate::integrity::{StoredTransaction, VerificationRecord};
use crate::keys::{ApiKeyRecord, KeyEpoch, KeyHash, Owner};
use crate::ledgers::{LedgerInfo, LedgerName};
use crate::tiles::{Tile, TileCoord, TreeState};
use crate::timestamp::Timestamp;
use crate::transaction::TransactionId;
use crate::writer::{Fence, WriterState};

/// Any error an adapter's backend raises.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in an adapter.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached (connection refused, pool timed out, …).
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The database has no space left to write (disk full, or its size cap):
    /// nothing was written; writes work again once space is freed.
    #[error("the database has no space left to write: {0}")]
    OutOfSpace(#[source] BoxError),
    /// The backend refused or failed the operation.
    #[error("the database failed the operation: {0}")]
    Backend(#[source] BoxError),
    /// A stored row cannot be turned back into domain values.
    #[error("a stored row cannot be read: {0}")]
    Corrupt(String),
    /// No ledger of that name exists.
    #[error("no ledger named \"{0}\" exists (create it with `invario ledger create {0}`)")]
    UnknownLedger(LedgerName),
    /// A write that presumed its transaction ids new met one stored already
    /// (a unique key fired): nothing was written. The core then looks the ids
    /// up and plans again ([`LedgerStore::begin_append_presuming_new`]).
    #[error("a transaction id presumed new is stored already; nothing was written")]
    AlreadyStored,
    /// A write made from a writer's kept state found the head or the tree
    /// moved since (another writer appended): nothing was written. The core
    /// drops its state and appends on the locking path
    /// ([`LedgerStore::write_fenced`]).
    #[error("the ledger moved since this writer's last append (another writer); nothing was written")]
    Fenced,
    /// A write carrying a [`KeyEpoch`] found the key table moved since (or
    /// could not check it); nothing was written. Its requests are
    /// authenticated again from the table.
    #[error("the API keys changed since the request's key was read; nothing was written")]
    KeysChanged,
    /// The adapter was handed something the port forbids (a bug, not bad input).
    #[error("storage contract violated: {0}")]
    Contract(String),
}

/// Which part of the ledger a verification reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Every entry, then every transaction without an entry.
    Full,
    /// Only entries with a sequence number above this one.
    After(u64),
}

/// One consistent snapshot of a ledger, read for verification: plain reads
/// that the core's verifier drives in its own order (head, tree, the entries
/// after a position, then — on full sweeps — the transactions without an
/// entry). The adapter keeps them on one snapshot, so concurrent appends
/// cannot make a consistent ledger look broken, and streams rows without
/// loading the ledger into memory; the order and the rules live in the core.
#[async_trait]
pub trait VerificationSource: Send {
    /// The head, as of the snapshot.
    async fn head(&mut self) -> Result<LedgerHead, StoreError>;

    /// The stored Merkle tree state, as of the snapshot.
    async fn tree(&mut self) -> Result<TreeState, StoreError>;

    /// The entries with sequence numbers above `after`, ascending, each with
    /// the transaction stored for its id ([`VerificationRecord::Entry`]).
    fn entries_after(&mut self, after: u64) -> BoxStream<'_, Result<VerificationRecord, StoreError>>;

    /// The stored transactions that no entry records, in any order.
    fn orphan_transactions(&mut self) -> BoxStream<'_, Result<StoredTransaction, StoreError>>;
}

/// Storage for the ledger.
///
/// Appends follow one shape so the rules stay in the core: the adapter locks
/// the head and reads the already stored entries for the batch's ids
/// ([`begin_append`](LedgerStore::begin_append)); the core plans the append
/// (idempotency, conflicts, hashes); the adapter writes the plan and commits
/// ([`AppendSession::commit`]), or rolls back when the session is dropped.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// An open, exclusive append.
    type Append: AppendSession;

    /// A snapshot read for verification.
    type Source: VerificationSource;

    /// Locks the head (other appends wait) and reads what the plan needs: the
    /// head, the entries stored for `ids`, the tree state and the tiles
    /// [`edge_tiles`](crate::tiles::edge_tiles) names for its size.
    async fn begin_append(&self, ids: &[TransactionId]) -> Result<Self::Append, StoreError>;

    /// Like [`begin_append`](Self::begin_append), but the core presumes the
    /// ids new, so the adapter may skip reading the stored entries for them
    /// (the snapshot's `existing` is then empty). Its commit must then answer
    /// [`StoreError::AlreadyStored`], writing nothing, when a unique key on a
    /// transaction id fires. The default reads them anyway.
    async fn begin_append_presuming_new(&self, ids: &[TransactionId]) -> Result<Self::Append, StoreError> {
        self.begin_append(ids).await
    }

    /// The head and the tree's right edge as they are now: where a writer
    /// that keeps its state ([`crate::writer`]) starts. Read once, then kept
    /// up to date by the core; the default takes the lock briefly, reads,
    /// and lets go.
    async fn writer_state(&self) -> Result<WriterState, StoreError> {
        let session = self.begin_append_presuming_new(&[]).await?;
        Ok(WriterState::from_snapshot(session.snapshot().clone()))
    }

    /// Writes `plan` — planned on a writer's kept state, its ids presumed new
    /// — if the stored head and tree are still what `fence` expects, in one
    /// database transaction; otherwise answers [`StoreError::Fenced`] and
    /// writes nothing. A unique key on a transaction id firing answers
    /// [`StoreError::AlreadyStored`], nothing written. Adapters override it to
    /// save round trips; the default locks, compares and commits
    /// ([`commit_if_fence_admits`]).
    ///
    /// With `keys`, the write first checks that the key table is still at that
    /// epoch and otherwise answers [`StoreError::KeysChanged`], writing
    /// nothing. The default cannot check it and always answers so (stores that
    /// hand out epochs override this).
    async fn write_fenced(
        &self,
        fence: &Fence,
        keys: Option<KeyEpoch>,
        plan: &AppendPlan,
    ) -> Result<(), StoreError> {
        write_fenced_under_lock(self, fence, keys, plan).await
    }

    /// Whether this store takes [`write_fenced_behind`](Self::write_fenced_behind)
    /// while the write before it is still in flight, so that the core may
    /// send one write's rows while the previous one commits. The default: no,
    /// the core then writes one group at a time.
    async fn pipelines_writes(&self) -> bool {
        false
    }

    /// Whether this store writes a ledger's fenced writes in the order they
    /// are issued, each compared with its fence only once the one issued
    /// before it has ended — so the core may issue a small write planned on
    /// the state a write still in flight leaves, with
    /// [`write_fenced`](Self::write_fenced) itself (a write behind one that
    /// failed is then [`StoreError::Fenced`], with nothing written). The
    /// default: no, the core then issues one at a time.
    async fn orders_fenced_writes(&self) -> bool {
        false
    }

    /// Whether other ledgers' writes share this ledger's commits at the
    /// moment, so that a write issued behind another (see
    /// [`orders_fenced_writes`](Self::orders_fenced_writes)) goes in the
    /// commit after that one's instead of waiting a turn. Asked for each group
    /// of single transactions: a ledger writing alone gains nothing from it
    /// (its groups only get smaller). The default: no.
    async fn shares_commits(&self) -> bool {
        false
    }

    /// [`write_fenced`](Self::write_fenced) without a key epoch, for a write
    /// planned on the state another fenced write of this writer — still in
    /// flight — leaves. Stores that [pipeline](Self::pipelines_writes) send
    /// the rows at once and wait for the previous write's commit before they
    /// compare the fence, which then holds only if that write committed. Any
    /// refusal because the ledger does not continue where `fence` says —
    /// the rows not extending the head included — is
    /// [`StoreError::Fenced`], with nothing written.
    async fn write_fenced_behind(&self, fence: &Fence, plan: &AppendPlan) -> Result<(), StoreError> {
        self.write_fenced(fence, None, plan).await
    }

    /// The entry recording transaction `id`, if any.
    async fn entry_by_id(&self, id: TransactionId) -> Result<Option<LedgerEntry>, StoreError>;

    /// The current head.
    async fn head(&self) -> Result<LedgerHead, StoreError>;

    /// Up to `limit` entries with sequence numbers above `after`, ascending.
    async fn entries_after(&self, after: u64, limit: usize) -> Result<Vec<LedgerEntry>, StoreError>;

    /// The entry hashes of the entries numbered `after + 1 ..= after +
    /// count`, in order (fewer when the ledger ends sooner): the leaves the
    /// core rebuilds the partial level-0 tile from, which is never stored.
    /// The default reads the whole entries; adapters read the hashes alone.
    async fn entry_hashes(&self, after: u64, count: usize) -> Result<Vec<EntryHash>, StoreError> {
        Ok(self.entries_after(after, count).await?.into_iter().map(|entry| entry.entry_hash).collect())
    }

    /// The stored Merkle tree state.
    async fn tree_state(&self) -> Result<TreeState, StoreError>;

    /// The stored tiles at `coords` (those not stored are left out), each as
    /// stored now: callers cut them to the size they read at.
    async fn tiles(&self, coords: &[TileCoord]) -> Result<Vec<Tile>, StoreError>;

    /// Keeps a copy of a signed checkpoint for serving. The same size again is
    /// ignored (the signer never signs two notes for one size) unless the new
    /// note extends the kept one: cosignatures gathered on a later round.
    async fn store_checkpoint(&self, tree_size: u64, note: &str) -> Result<(), StoreError>;

    /// The copy of the largest checkpoint kept, if any.
    async fn latest_checkpoint(&self) -> Result<Option<String>, StoreError>;

    /// Opens one consistent snapshot of the ledger for verification.
    async fn verification_source(&self) -> Result<Self::Source, StoreError>;
}

/// [`LedgerStore::write_fenced`] for a store without epochs, by its append
/// lock: refuses any key epoch ([`StoreError::KeysChanged`]), then locks,
/// compares the fence and commits ([`commit_if_fence_admits`]). The trait's
/// default; stores that override `write_fenced` for another reason call it.
pub async fn write_fenced_under_lock<S: LedgerStore + ?Sized>(
    store: &S,
    fence: &Fence,
    keys: Option<KeyEpoch>,
    plan: &AppendPlan,
) -> Result<(), StoreError> {
    if keys.is_some() {
        return Err(StoreError::KeysChanged);
    }
    let ids: Vec<TransactionId> = plan.new_entries().iter().map(LedgerEntry::transaction_id).collect();
    commit_if_fence_admits(store.begin_append_presuming_new(&ids).await?, fence, plan).await
}

/// Commits `plan` on `session` if the locked snapshot is what `fence`
/// expects; answers [`StoreError::Fenced`] (the session rolls back) if not,
/// and [`StoreError::AlreadyStored`] if the snapshot lists a stored id (an
/// adapter that reads them anyway).
pub async fn commit_if_fence_admits<A: AppendSession>(
    session: A,
    fence: &Fence,
    plan: &AppendPlan,
) -> Result<(), StoreError> {
    if !fence.admits(session.snapshot()) {
        return Err(StoreError::Fenced);
    }
    if !session.snapshot().existing.is_empty() {
        return Err(StoreError::AlreadyStored);
    }
    session.commit(plan).await
}

/// The ledgers one database holds, and the store of each.
///
/// The rule that a name is valid lives in [`LedgerName`]; the catalog only
/// records ledgers and hands out their stores.
#[async_trait]
pub trait LedgerCatalog: Send + Sync {
    /// The store of one ledger.
    type Store: LedgerStore + Clone + 'static;

    /// The store of ledger `name`. Whether it exists is not checked here: its
    /// statements answer [`StoreError::UnknownLedger`] if it does not.
    fn store(&self, name: &LedgerName) -> Self::Store;

    /// Creates ledger `name` with an empty chain and tree, recorded as created
    /// at `at`. Returns `false`, changing nothing, when it already exists.
    async fn create_ledger(&self, name: &LedgerName, at: Timestamp) -> Result<bool, StoreError>;

    /// Every ledger, ordered by name.
    async fn list_ledgers(&self) -> Result<Vec<LedgerInfo>, StoreError>;

    /// Ledger `name`, if it exists.
    async fn find_ledger(&self, name: &LedgerName) -> Result<Option<LedgerInfo>, StoreError>;
}

/// An append holding the head lock.
#[async_trait]
pub trait AppendSession: Send {
    /// The head and existing entries read under the lock.
    fn snapshot(&self) -> &AppendSnapshot;

    /// Writes the plan's new entries, moves the head, writes the plan's tree
    /// update (tiles inserted or grown, the new state), and makes it all
    /// durable in one transaction. Dropping the session instead rolls
    /// everything back.
    async fn commit(self, plan: &AppendPlan) -> Result<(), StoreError>;
}

/// Storage for API keys. Only hashes are ever handed to it.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a new key.
    async fn insert_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError>;

    /// The key with this hash, if any.
    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// The key with this hash, if any, with the key table's [`KeyEpoch`] it
    /// was read at when the store keeps one and its writes can check it
    /// ([`LedgerStore::write_fenced`]); the default keeps none.
    async fn key_by_hash_with_epoch(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<(ApiKeyRecord, Option<KeyEpoch>)>, StoreError> {
        Ok(self.key_by_hash(hash).await?.map(|record| (record, None)))
    }

    /// Revokes every key of `owner` not yet revoked; returns how many.
    async fn revoke_owner(&self, owner: &Owner, at: Timestamp) -> Result<u64, StoreError>;

    /// Revokes the key with this display prefix if not yet revoked; returns how many.
    async fn revoke_prefix(&self, prefix: &str, at: Timestamp) -> Result<u64, StoreError>;

    /// Every key, or those of one owner, oldest first.
    async fn list_keys(&self, owner: Option<&Owner>) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Records that key `id` was used at `at`.
    async fn touch_last_used(&self, id: Uuid, at: Timestamp) -> Result<(), StoreError>;

    /// A feed that reports every change to the stored keys, when the store
    /// can push them (PostgreSQL's `LISTEN`/`NOTIFY`). Without one (the
    /// default), every request reads the store: no key record is cached.
    fn change_feed(&self) -> Option<Box<dyn KeyChanges>> {
        None
    }
}

/// What a key change feed reports when asked to catch up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    /// The feed is (again) connected: from now on every change is reported,
    /// but changes made before may have gone unseen.
    Listening,
    /// A key was created, revoked, or otherwise changed since the last report.
    Changed,
    /// Nothing changed since the last report.
    Unchanged,
    /// The feed is down: changes may go unreported until it listens again.
    Lost,
}

/// A feed of changes to the stored keys.
#[async_trait]
pub trait KeyChanges: Send {
    /// Reports what changed since the last call, having seen every change
    /// committed before this call began: that is what lets a cached key be
    /// trusted after it. The first report is [`KeyChange::Listening`] once
    /// connected; after [`KeyChange::Lost`] the caller waits a moment before
    /// asking again (the feed tries to reconnect on that call).
    async fn catch_up(&mut self) -> KeyChange;
}

/// Makes a key cache current before one of its records is trusted: whoever
/// follows the store's [`KeyChanges`] for the cache implements it.
#[async_trait]
pub trait CacheFence: Send + Sync + std::fmt::Debug {
    /// Returns `true` once every key change committed before this call has
    /// been applied to the cache; `false` if that could not be established
    /// in time (then the store must be read).
    async fn catch_up(&self) -> bool;
}
