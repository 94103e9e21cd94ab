//! Application services generic over the ports: what the HTTP and CLI shells call.

pub mod checkpoints;
pub mod tree;

use std::sync::{Arc, Mutex, PoisonError};

use futures_util::StreamExt;
use rand_core::CryptoRng;

use crate::append::{
    AppendRefusal, BatchRejection, ItemProblem, MAX_BATCH_SIZE, Receipt, plan_append, plan_append_each,
};
use crate::chain::{ChainPosition, LedgerEntry, LedgerHead, SequenceExhausted};
use crate::integrity::{IntegrityBreak, VerificationRecord, VerificationReport, Verifier};
use crate::key_cache::{CacheLookup, KeyCache};
use crate::keys::{
    ApiKeyRecord, ApiKeySecret, AuthError, KeyHash, Owner, OwnerError, Scope, Scopes, ScopesError,
};
use crate::ledgers::LedgerName;
use crate::merkle::Frontier;
use crate::ports::{AppendSession, CacheFence, KeyStore, LedgerStore, StoreError, Sweep, VerificationSource};
use crate::tiles::TreeError;
use crate::timestamp::Timestamp;
use crate::transaction::{SubmittedTransaction, Transaction, TransactionId};

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

/// What a full verification must find besides an intact chain and tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// A head exported earlier (`invario digest`): the chain must still pass through it.
    pub digest: Option<ChainPosition>,
    /// Signed tree heads from checkpoints verified by the caller: the tree
    /// rebuilt from the entries must have each root at its size.
    pub signed_roots: Vec<crate::merkle::TreeHead>,
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

/// What the service knows about the chain's integrity right now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IntegrityStatus {
    /// The last position verified intact (where incremental runs resume).
    pub verified: Option<ChainPosition>,
    /// The break found by the latest run, if it found one.
    pub broken: Option<IntegrityBreak>,
    /// The Merkle tree's compact range rebuilt up to `verified` (where
    /// incremental runs resume rebuilding it).
    pub verified_tree: Option<Frontier>,
}

impl IntegrityStatus {
    /// Healthy means verified at least once and no break found since this service started.
    pub fn is_healthy(&self) -> bool {
        self.verified.is_some() && self.broken.is_none()
    }
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
}

impl<S: LedgerStore> Ledger<S> {
    /// Wraps a store. Integrity is unknown (not healthy) until the first verification.
    pub fn new(store: S) -> Self {
        Ledger { store, integrity: Arc::default() }
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Appends a batch atomically and returns one receipt per item, in order.
    pub async fn ingest(&self, batch: Vec<Transaction>, now: Timestamp) -> Result<Vec<Receipt>, IngestError> {
        if batch.is_empty() {
            return Err(IngestError::EmptyBatch);
        }
        let session = self.begin_write(&batch).await?;
        let plan = plan_append(session.snapshot(), batch, now)?;
        if !plan.new_entries().is_empty() {
            session.commit(&plan).await?;
        }
        Ok(plan.into_receipts())
    }

    /// Appends unrelated transactions in one write (group commit): each item
    /// succeeds or fails on its own (see [`plan_append_each`]); the call as a
    /// whole fails only when nothing could be written.
    pub async fn ingest_each(
        &self,
        batch: Vec<Transaction>,
        now: Timestamp,
    ) -> Result<Vec<Result<Receipt, ItemProblem>>, IngestError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let session = self.begin_write(&batch).await?;
        let plan = plan_append_each(session.snapshot(), batch, now)?;
        if !plan.write().new_entries().is_empty() {
            session.commit(plan.write()).await?;
        }
        Ok(plan.outcomes)
    }

    /// The checks every write passes (size, quarantine), then the append lock.
    async fn begin_write(&self, batch: &[Transaction]) -> Result<S::Append, IngestError> {
        if batch.len() > MAX_BATCH_SIZE {
            return Err(IngestError::BatchTooLarge(batch.len()));
        }
        if let Some(found) = self.integrity().broken {
            return Err(IngestError::Quarantined(found));
        }
        let ids: Vec<TransactionId> = batch.iter().map(|transaction| transaction.transaction_id).collect();
        Ok(self.store.begin_append(&ids).await?)
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
        if items.len() > MAX_BATCH_SIZE {
            return Err(IngestError::BatchTooLarge(items.len()));
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
        self.ingest(batch, now).await
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

    /// What the latest verifications found.
    pub fn integrity(&self) -> IntegrityStatus {
        self.integrity.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Verifies every entry and every transaction.
    pub async fn verify_full(&self) -> Result<VerificationReport, StoreError> {
        self.verify_full_with(&Expectations::default(), &mut |_| {}).await
    }

    /// Verifies every entry and every transaction, and that the ledger meets
    /// `expect` (a saved digest, signed tree heads). `progress` is called with
    /// the running count.
    pub async fn verify_full_with(
        &self,
        expect: &Expectations,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<VerificationReport, StoreError> {
        let report = self.run_verification(Sweep::Full, None, None, expect, progress).await?;
        self.record(&report);
        Ok(report)
    }

    /// Verifies only the entries added since the last intact verification
    /// (everything, if there was none).
    pub async fn verify_incremental(&self) -> Result<VerificationReport, StoreError> {
        let status = self.integrity();
        let resume_from = status.verified;
        let sweep = match resume_from {
            Some(checkpoint) => Sweep::After(checkpoint.sequence_number),
            None => Sweep::Full,
        };
        let report = self
            .run_verification(sweep, resume_from, status.verified_tree, &Expectations::default(), &mut |_| {})
            .await?;
        self.record(&report);
        Ok(report)
    }

    /// Quarantines the ledger for a break found outside a verification run
    /// (the first break found is kept for good).
    pub(crate) fn record_break(&self, found: IntegrityBreak) {
        let mut status = self.integrity.lock().unwrap_or_else(PoisonError::into_inner);
        if status.broken.is_none() {
            status.broken = Some(found);
        }
    }

    /// Notes a run's outcome: the first break found is kept for good.
    fn record(&self, report: &VerificationReport) {
        let mut status = self.integrity.lock().unwrap_or_else(PoisonError::into_inner);
        match &report.first_break {
            Some(found) if status.broken.is_none() => status.broken = Some(found.clone()),
            Some(_) => {}
            None if status.broken.is_none() => {
                status.verified = Some(report.verified);
                status.verified_tree.clone_from(&report.rebuilt_tree);
            }
            None => {}
        }
    }

    async fn run_verification(
        &self,
        sweep: Sweep,
        resume_from: Option<ChainPosition>,
        resume_tree: Option<Frontier>,
        expect: &Expectations,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<VerificationReport, StoreError> {
        const PROGRESS_EVERY: u64 = 10_000;
        let mut source = self.store.verification_source().await?;
        let head = source.head().await?;
        let stored_tree = source.tree().await?;
        let mut verifier = match (resume_from, resume_tree) {
            (None, _) => Verifier::full(head),
            (Some(position), None) => Verifier::resume(head, position),
            (Some(position), Some(tree)) => Verifier::resume(head, position).resume_tree(tree),
        }
        .expect_tree(stored_tree)
        .expect_signed_roots(expect.signed_roots.clone());
        if let Some(digest) = expect.digest {
            verifier = verifier.expect_digest(digest);
        }
        let after = match sweep {
            Sweep::Full => 0,
            Sweep::After(sequence) => sequence,
        };
        let mut seen: u64 = 0;
        let mut intact = true;
        {
            let mut entries = source.entries_after(after);
            while let Some(record) = entries.next().await {
                seen += 1;
                if seen % PROGRESS_EVERY == 0 {
                    progress(seen);
                }
                if !verifier.feed(&record?) {
                    intact = false;
                    break;
                }
            }
        }
        if intact && sweep == Sweep::Full {
            let mut orphans = source.orphan_transactions();
            while let Some(orphan) = orphans.next().await {
                if !verifier.feed(&VerificationRecord::OrphanTransaction(orphan?)) {
                    break;
                }
            }
        }
        let report = verifier.finish();
        progress(report.entries_checked);
        Ok(report)
    }
}

/// Why a key administration command failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyAdminError {
    /// Bad owner.
    #[error(transparent)]
    Owner(#[from] OwnerError),
    /// Bad scopes JSON.
    #[error(transparent)]
    Scopes(#[from] ScopesError),
    /// An expiry not after the creation time.
    #[error("expires_at must be in the future")]
    ExpiryInThePast,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a request could not be authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticationError {
    /// The key is missing, malformed, unknown, revoked, expired or lacks the scope.
    #[error(transparent)]
    Refused(#[from] AuthError),
    /// Storage failed, so no decision could be made.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Key administration and request authentication over a [`KeyStore`].
#[derive(Debug)]
pub struct KeyAdmin<K> {
    store: K,
    cache: Option<(Arc<KeyCache>, Arc<dyn CacheFence>)>,
}

impl<K: KeyStore> KeyAdmin<K> {
    /// Wraps a store; every authentication reads it.
    pub fn new(store: K) -> Self {
        KeyAdmin { store, cache: None }
    }

    /// Wraps a store, authenticating from `cache` while it is live, each hit
    /// only once `fence` has caught the cache up. Whoever holds the store's
    /// [`KeyStore::change_feed`] must hand every change to
    /// [`KeyCache::apply`] and serve `fence` from it, or a revoked key would
    /// keep working.
    pub fn with_cache(store: K, cache: Arc<KeyCache>, fence: Arc<dyn CacheFence>) -> Self {
        KeyAdmin { store, cache: Some((cache, fence)) }
    }

    /// The underlying store.
    pub fn store(&self) -> &K {
        &self.store
    }

    /// Creates a key; the returned secret is the only time it exists in full.
    pub async fn create_key<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        owner: &str,
        scopes_json: &str,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(ApiKeySecret, ApiKeyRecord), KeyAdminError> {
        let owner = Owner::parse(owner)?;
        let scopes = Scopes::parse_json(scopes_json)?;
        if expires_at.is_some_and(|expiry| expiry <= now) {
            return Err(KeyAdminError::ExpiryInThePast);
        }
        let secret = ApiKeySecret::generate(rng);
        let mut id_bytes = [0u8; 16];
        rng.fill_bytes(&mut id_bytes);
        let id = uuid::Builder::from_random_bytes(id_bytes).into_uuid();
        let record = ApiKeyRecord::new(id, &secret, owner, scopes, now, expires_at);
        self.store.insert_key(&record).await?;
        Ok((secret, record))
    }

    /// Decides whether the presented key may perform `scope` now — on `ledger`
    /// when the request is about one — and notes its use.
    pub async fn authenticate(
        &self,
        presented: Option<&str>,
        scope: Scope,
        ledger: Option<&LedgerName>,
        now: Timestamp,
    ) -> Result<ApiKeyRecord, AuthenticationError> {
        let secret = ApiKeySecret::parse(presented.ok_or(AuthError::Missing)?).map_err(AuthError::from)?;
        let hash = secret.hash();
        let record = self.key_record(&hash).await?;
        record.authorize(scope, ledger, now)?;
        if record.needs_last_used_touch(now) {
            self.store.touch_last_used(record.id, now).await?;
            if let Some((cache, _)) = &self.cache {
                cache.note_used(&hash, now);
            }
        }
        Ok(record)
    }

    /// The key's record: from the cache once it has caught up with every
    /// change committed before this call, else from the store.
    async fn key_record(&self, hash: &KeyHash) -> Result<ApiKeyRecord, AuthenticationError> {
        let Some((cache, fence)) = &self.cache else {
            return self.stored_key(hash).await;
        };
        let lookup = match cache.lookup(hash) {
            // Looked up again after the catch-up: a change it brought in has
            // emptied the cache by then.
            CacheLookup::Hit(_) if fence.catch_up().await => cache.lookup(hash),
            CacheLookup::Hit(_) => return self.stored_key(hash).await,
            miss @ CacheLookup::Miss(_) => miss,
        };
        match lookup {
            CacheLookup::Hit(record) => Ok(record),
            CacheLookup::Miss(ticket) => {
                let record = self.stored_key(hash).await?;
                cache.fill(ticket, record.clone());
                Ok(record)
            }
        }
    }

    async fn stored_key(&self, hash: &KeyHash) -> Result<ApiKeyRecord, AuthenticationError> {
        Ok(self.store.key_by_hash(hash).await?.ok_or(AuthError::Unknown)?)
    }

    /// Revokes every unrevoked key of `owner`; returns how many.
    pub async fn revoke_owner(&self, owner: &str, now: Timestamp) -> Result<u64, KeyAdminError> {
        let owner = Owner::parse(owner)?;
        Ok(self.store.revoke_owner(&owner, now).await?)
    }

    /// Revokes one key by its display prefix; returns how many (0 or 1).
    pub async fn revoke_prefix(&self, prefix: &str, now: Timestamp) -> Result<u64, KeyAdminError> {
        Ok(self.store.revoke_prefix(prefix.trim(), now).await?)
    }

    /// Lists keys (never secrets), optionally of one owner.
    pub async fn list(&self, owner: Option<&str>) -> Result<Vec<ApiKeyRecord>, KeyAdminError> {
        let owner = owner.map(Owner::parse).transpose()?;
        Ok(self.store.list_keys(owner.as_ref()).await?)
    }
}
