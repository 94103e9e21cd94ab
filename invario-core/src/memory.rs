//! In-memory adapters: the reference model every adapter is tested against, and
//! a store embedders can use in their own tests. No I/O; safe to share across tasks.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use futures_util::lock::{Mutex as AsyncMutex, OwnedMutexGuard};
use futures_util::stream::{self, BoxStream, StreamExt};
use uuid::Uuid;

use crate::append::{AppendPlan, AppendSnapshot, tree_snapshot};
use crate::chain::{EntryHash, LedgerEntry, LedgerHead};
use crate::integrity::{StoredTransaction, VerificationRecord};
use crate::keys::KeyEpoch;
use crate::keys::{ApiKeyRecord, KeyHash, Owner};
use crate::ledgers::{LedgerInfo, LedgerName};
use crate::merkle::TreeHash;
use crate::ports::{
    AppendSession, KeyStore, LedgerCatalog, LedgerStore, StoreError, VerificationSource,
    write_fenced_under_lock,
};
use crate::tiles::{Tile, TileCoord, TreeState, stored_edge_tiles, unstored_leaves};
use crate::timestamp::Timestamp;
use crate::transaction::TransactionId;
use crate::writer::Fence;

#[derive(Debug, Default)]
struct LedgerState {
    entries: Vec<LedgerEntry>,
    position_of: HashMap<TransactionId, usize>,
    head: Option<LedgerHead>,
    tree: Option<TreeState>,
    tiles: BTreeMap<TileCoord, Vec<TreeHash>>,
    checkpoints: BTreeMap<u64, String>,
}

impl LedgerState {
    fn head(&self) -> LedgerHead {
        self.head.unwrap_or(LedgerHead::EMPTY)
    }

    fn tree(&self) -> TreeState {
        self.tree.clone().unwrap_or_else(TreeState::empty)
    }

    fn tiles(&self, coords: &[TileCoord]) -> Vec<Tile> {
        coords
            .iter()
            .filter_map(|coord| {
                self.tiles.get(coord).map(|hashes| Tile { coord: *coord, hashes: hashes.clone() })
            })
            .collect()
    }
}

/// A ledger held in memory. Clones share the same ledger.
#[derive(Debug, Clone, Default)]
pub struct MemoryLedger {
    state: Arc<Mutex<LedgerState>>,
    append_lock: Arc<AsyncMutex<()>>,
    /// For a store handed out by a [`MemoryCatalog`]: its name, and whether
    /// the ledger has been created yet.
    catalogued: Option<(LedgerName, Arc<AtomicBool>)>,
    /// Declares that it [pipelines writes](LedgerStore::pipelines_writes) (see [`MemoryLedger::pipelining`]).
    pipelining: bool,
}

impl MemoryLedger {
    /// The same ledger, declaring that it [pipelines
    /// writes](LedgerStore::pipelines_writes), with each fenced write
    /// yielding once before it lands: the core then sends a write while the
    /// one before it is still in flight, as it does on PostgreSQL. Writes
    /// still land in the order they are first polled after yielding, and a
    /// write behind one that failed is fenced. For tests of that path.
    pub fn pipelining(mut self) -> Self {
        self.pipelining = true;
        self
    }

    /// Takes the append lock and reads the snapshot; the entries stored for
    /// `ids` when given (an append that presumes its ids new reads none).
    async fn begin(&self, ids: Option<&[TransactionId]>) -> Result<MemoryAppend, StoreError> {
        self.exists()?;
        let lock = Arc::clone(&self.append_lock).lock_owned().await;
        let snapshot = {
            let state = self.state();
            let existing = ids
                .unwrap_or_default()
                .iter()
                .filter_map(|id| state.position_of.get(id).map(|&position| state.entries[position].clone()))
                .collect();
            let tree = state.tree();
            let size = tree.head.size as usize;
            let last: Vec<EntryHash> = state
                .entries
                .get(size - unstored_leaves(tree.head.size)..size)
                .unwrap_or_default()
                .iter()
                .map(|entry| entry.entry_hash)
                .collect();
            let edge = state.tiles(&stored_edge_tiles(tree.head.size));
            let tree = tree_snapshot(tree, edge, &last)?;
            AppendSnapshot { head: state.head(), existing, tree }
        };
        Ok(MemoryAppend { state: Arc::clone(&self.state), snapshot, _lock: lock })
    }

    /// An empty ledger.
    pub fn new() -> Self {
        MemoryLedger::default()
    }

    fn state(&self) -> MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses, as a database would, to touch a ledger not created yet.
    fn exists(&self) -> Result<(), StoreError> {
        match &self.catalogued {
            Some((name, created)) if !created.load(Ordering::SeqCst) => {
                Err(StoreError::UnknownLedger(name.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Drops the Merkle tree, as a ledger from before the tree existed: for
    /// tests of the backfill only.
    pub fn forget_tree(&self) {
        let mut state = self.state();
        state.tree = None;
        state.tiles.clear();
    }

    /// Edits stored entries behind the ledger's back, as an attacker with
    /// database access would: for tests of verification and quarantine only.
    /// The head is left as it was.
    pub fn tamper_entries(&self, edit: impl FnOnce(&mut Vec<LedgerEntry>)) {
        let mut state = self.state();
        edit(&mut state.entries);
        let positions =
            state.entries.iter().enumerate().map(|(position, entry)| (entry.transaction_id(), position));
        state.position_of = positions.collect();
    }
}

/// Many ledgers held in memory, the model of a database's catalog: the
/// ledger `default` exists from the start. Clones share the same ledgers.
#[derive(Debug, Clone)]
pub struct MemoryCatalog {
    ledgers: Arc<Mutex<CatalogEntries>>,
}

/// Each ledger a store was handed out for, with its creation time once created.
type CatalogEntries = BTreeMap<LedgerName, (MemoryLedger, Option<Timestamp>)>;

impl MemoryCatalog {
    /// A catalog holding only the empty ledger `default`, created at `at`.
    pub fn new(at: Timestamp) -> Self {
        let catalog = MemoryCatalog { ledgers: Arc::default() };
        let default = catalog.store(&LedgerName::default_ledger());
        if let Some((_, created)) = &default.catalogued {
            created.store(true, Ordering::SeqCst);
        }
        catalog.entries().insert(LedgerName::default_ledger(), (default, Some(at)));
        catalog
    }

    fn entries(&self) -> MutexGuard<'_, CatalogEntries> {
        self.ledgers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl LedgerCatalog for MemoryCatalog {
    type Store = MemoryLedger;

    fn store(&self, name: &LedgerName) -> MemoryLedger {
        let mut entries = self.entries();
        let (ledger, _) = entries.entry(name.clone()).or_insert_with(|| {
            let catalogued = Some((name.clone(), Arc::new(AtomicBool::new(false))));
            (MemoryLedger { catalogued, ..MemoryLedger::default() }, None)
        });
        ledger.clone()
    }

    async fn create_ledger(&self, name: &LedgerName, at: Timestamp) -> Result<bool, StoreError> {
        let ledger = self.store(name);
        let mut entries = self.entries();
        let created_at = entries.get_mut(name).map(|(_, created_at)| created_at);
        match created_at {
            Some(created_at) if created_at.is_none() => {
                *created_at = Some(at);
                if let Some((_, created)) = &ledger.catalogued {
                    created.store(true, Ordering::SeqCst);
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn list_ledgers(&self) -> Result<Vec<LedgerInfo>, StoreError> {
        Ok(self
            .entries()
            .iter()
            .filter_map(|(name, (_, created_at))| {
                created_at.map(|created_at| LedgerInfo { name: name.clone(), created_at })
            })
            .collect())
    }

    async fn find_ledger(&self, name: &LedgerName) -> Result<Option<LedgerInfo>, StoreError> {
        Ok(self.list_ledgers().await?.into_iter().find(|info| &info.name == name))
    }
}

/// An append in progress on a [`MemoryLedger`]; holds the append lock.
#[derive(Debug)]
pub struct MemoryAppend {
    state: Arc<Mutex<LedgerState>>,
    snapshot: AppendSnapshot,
    _lock: OwnedMutexGuard<()>,
}

#[async_trait]
impl LedgerStore for MemoryLedger {
    type Append = MemoryAppend;
    type Source = MemorySnapshot;

    async fn begin_append(&self, ids: &[TransactionId]) -> Result<MemoryAppend, StoreError> {
        self.begin(Some(ids)).await
    }

    async fn begin_append_presuming_new(&self, _ids: &[TransactionId]) -> Result<MemoryAppend, StoreError> {
        self.begin(None).await
    }

    async fn pipelines_writes(&self) -> bool {
        self.pipelining
    }

    async fn orders_fenced_writes(&self) -> bool {
        // Each write yields once, then takes the append lock in turn.
        self.pipelining
    }

    async fn shares_commits(&self) -> bool {
        // So that tests of pipelined writes take that path.
        self.pipelining
    }

    async fn write_fenced(
        &self,
        fence: &Fence,
        keys: Option<KeyEpoch>,
        plan: &AppendPlan,
    ) -> Result<(), StoreError> {
        if self.pipelining {
            yield_once().await;
        }
        write_fenced_under_lock(self, fence, keys, plan).await
    }

    async fn entry_by_id(&self, id: TransactionId) -> Result<Option<LedgerEntry>, StoreError> {
        self.exists()?;
        let state = self.state();
        Ok(state.position_of.get(&id).map(|&position| state.entries[position].clone()))
    }

    async fn head(&self) -> Result<LedgerHead, StoreError> {
        self.exists()?;
        Ok(self.state().head())
    }

    async fn entries_after(&self, after: u64, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        self.exists()?;
        let state = self.state();
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(state.entries.len());
        Ok(state.entries[start..].iter().take(limit).cloned().collect())
    }

    async fn tree_state(&self) -> Result<TreeState, StoreError> {
        self.exists()?;
        Ok(self.state().tree())
    }

    async fn tiles(&self, coords: &[TileCoord]) -> Result<Vec<Tile>, StoreError> {
        self.exists()?;
        Ok(self.state().tiles(coords))
    }

    async fn store_checkpoint(&self, tree_size: u64, note: &str) -> Result<(), StoreError> {
        self.exists()?;
        let mut state = self.state();
        let kept = state.checkpoints.entry(tree_size).or_insert_with(|| note.to_owned());
        if note.len() > kept.len() && note.starts_with(kept.as_str()) {
            *kept = note.to_owned();
        }
        Ok(())
    }

    async fn latest_checkpoint(&self) -> Result<Option<String>, StoreError> {
        self.exists()?;
        Ok(self.state().checkpoints.values().next_back().cloned())
    }

    async fn verification_source(&self) -> Result<MemorySnapshot, StoreError> {
        self.exists()?;
        // The model copies its snapshot; real adapters read one from the database.
        let state = self.state();
        Ok(MemorySnapshot { head: state.head(), tree: state.tree(), entries: state.entries.clone() })
    }
}

/// A copy of a [`MemoryLedger`] taken for verification.
#[derive(Debug)]
pub struct MemorySnapshot {
    head: LedgerHead,
    tree: TreeState,
    entries: Vec<LedgerEntry>,
}

#[async_trait]
impl VerificationSource for MemorySnapshot {
    async fn head(&mut self) -> Result<LedgerHead, StoreError> {
        Ok(self.head)
    }

    async fn tree(&mut self) -> Result<TreeState, StoreError> {
        Ok(self.tree.clone())
    }

    fn entries_after(&mut self, after: u64) -> BoxStream<'_, Result<VerificationRecord, StoreError>> {
        let skip = usize::try_from(after).unwrap_or(usize::MAX);
        stream::iter(self.entries.iter().skip(skip).map(|entry| {
            let (stored_entry, stored_transaction) = StoredTransaction::of(entry);
            Ok(VerificationRecord::Entry(stored_entry, Some(stored_transaction)))
        }))
        .boxed()
    }

    fn orphan_transactions(&mut self) -> BoxStream<'_, Result<StoredTransaction, StoreError>> {
        // The model stores a transaction only with its entry.
        stream::empty().boxed()
    }
}

#[async_trait]
impl AppendSession for MemoryAppend {
    fn snapshot(&self) -> &AppendSnapshot {
        &self.snapshot
    }

    async fn commit(self, plan: &AppendPlan) -> Result<(), StoreError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut position = state.head().position();
        for entry in plan.new_entries() {
            if entry.sequence_number != position.sequence_number + 1 || entry.prev_hash != position.entry_hash
            {
                return Err(StoreError::Contract(format!(
                    "entry {} does not extend the locked head {}",
                    entry.sequence_number, position.sequence_number
                )));
            }
            if state.position_of.contains_key(&entry.transaction_id()) {
                // What a database's unique key answers: the append presumed the id new.
                return Err(StoreError::AlreadyStored);
            }
            position = entry.position();
        }
        if let Some(update) = plan.tree_update() {
            // The same guards the database triggers keep: a tile only grows, a full one never changes.
            for tile in &update.tiles {
                if let Some(stored) = state.tiles.get(&tile.coord)
                    && (!tile.hashes.starts_with(stored) || tile.hashes.len() <= stored.len())
                {
                    return Err(StoreError::Contract(format!(
                        "tile {}/{} may only grow",
                        tile.coord.level, tile.coord.index
                    )));
                }
            }
            for tile in &update.tiles {
                state.tiles.insert(tile.coord, tile.hashes.clone());
            }
            state.tree = Some(update.state.clone());
        }
        for entry in plan.new_entries() {
            let position = state.entries.len();
            state.position_of.insert(entry.transaction_id(), position);
            state.entries.push(entry.clone());
        }
        if let Some(head) = plan.head_move() {
            state.head = Some(head);
        }
        Ok(())
    }
}

/// API keys held in memory. Clones share the same keys.
#[derive(Debug, Clone, Default)]
pub struct MemoryKeyStore {
    keys: Arc<Mutex<Vec<ApiKeyRecord>>>,
}

impl MemoryKeyStore {
    /// No keys.
    pub fn new() -> Self {
        MemoryKeyStore::default()
    }

    fn keys(&self) -> MutexGuard<'_, Vec<ApiKeyRecord>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn revoke_where(&self, at: Timestamp, matches: impl Fn(&ApiKeyRecord) -> bool) -> u64 {
        let mut revoked = 0;
        for record in self.keys().iter_mut().filter(|record| record.revoked_at.is_none() && matches(record)) {
            record.revoked_at = Some(at);
            revoked += 1;
        }
        revoked
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn insert_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut keys = self.keys();
        if keys.iter().any(|existing| existing.id == record.id || existing.key_hash == record.key_hash) {
            return Err(StoreError::Contract("a key with this id or hash exists already".into()));
        }
        keys.push(record.clone());
        Ok(())
    }

    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.keys().iter().find(|record| record.key_hash == *hash).cloned())
    }

    async fn revoke_owner(&self, owner: &Owner, at: Timestamp) -> Result<u64, StoreError> {
        Ok(self.revoke_where(at, |record| record.owner == *owner))
    }

    async fn revoke_prefix(&self, prefix: &str, at: Timestamp) -> Result<u64, StoreError> {
        Ok(self.revoke_where(at, |record| record.prefix == prefix))
    }

    async fn list_keys(&self, owner: Option<&Owner>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        Ok(self
            .keys()
            .iter()
            .filter(|record| owner.is_none_or(|owner| record.owner == *owner))
            .cloned()
            .collect())
    }

    async fn touch_last_used(&self, id: Uuid, at: Timestamp) -> Result<(), StoreError> {
        if let Some(record) = self.keys().iter_mut().find(|record| record.id == id) {
            record.last_used_at = Some(at);
        }
        Ok(())
    }
}

/// Returns pending once (asking to be polled again), then ready.
async fn yield_once() {
    let mut yielded = false;
    futures_util::future::poll_fn(|context| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        context.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}
