//! Key administration and request authentication over a [`KeyStore`]:
//! create, authenticate (through the cache while a change feed listens),
//! revoke, list.

use std::sync::Arc;

use rand_core::CryptoRng;

use crate::key_cache::{CacheLookup, CachedKey, KeyCache};
use crate::keys::{
    ApiKeyRecord, ApiKeySecret, AuthError, KeyEpoch, KeyHash, Owner, OwnerError, Scope, Scopes, ScopesError,
};
use crate::ledgers::LedgerName;
use crate::ports::{CacheFence, KeyStore, StoreError};
use crate::timestamp::Timestamp;

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
        let hash = Self::presented_hash(presented)?;
        self.authenticate_hash(&hash, scope, ledger, now).await
    }

    /// [`authenticate`](Self::authenticate) for a request whose one effect is
    /// a write that checks the key table itself
    /// ([`crate::ports::LedgerStore::write_fenced`]): a cached record that
    /// carries the [`KeyEpoch`] it was read at is trusted without catching the
    /// cache up first — one round trip less — and the epoch is returned for
    /// the write to carry. The store refuses that write if any key changed
    /// since ([`crate::ports::StoreError::KeysChanged`]); the caller then
    /// authenticates again with `authenticate`. Otherwise (no cache, a miss, a
    /// record without an epoch, or a refusal, which is checked afresh) the
    /// answer is `authenticate`'s, with no epoch.
    pub async fn authenticate_for_write(
        &self,
        presented: Option<&str>,
        scope: Scope,
        ledger: Option<&LedgerName>,
        now: Timestamp,
    ) -> Result<(ApiKeyRecord, Option<KeyEpoch>), AuthenticationError> {
        let hash = Self::presented_hash(presented)?;
        if let Some((cache, _)) = &self.cache
            && let CacheLookup::Hit(CachedKey { record, epoch: Some(epoch) }) = cache.lookup(&hash)
            && record.authorize(scope, ledger, now).is_ok()
        {
            self.note_use(&hash, &record, now).await?;
            return Ok((record, Some(epoch)));
        }
        Ok((self.authenticate_hash(&hash, scope, ledger, now).await?, None))
    }

    fn presented_hash(presented: Option<&str>) -> Result<KeyHash, AuthenticationError> {
        let secret = ApiKeySecret::parse(presented.ok_or(AuthError::Missing)?).map_err(AuthError::from)?;
        Ok(secret.hash())
    }

    async fn authenticate_hash(
        &self,
        hash: &KeyHash,
        scope: Scope,
        ledger: Option<&LedgerName>,
        now: Timestamp,
    ) -> Result<ApiKeyRecord, AuthenticationError> {
        let record = self.key_record(hash).await?;
        record.authorize(scope, ledger, now)?;
        self.note_use(hash, &record, now).await?;
        Ok(record)
    }

    /// Refreshes the key's `last_used_at` when it is due.
    async fn note_use(
        &self,
        hash: &KeyHash,
        record: &ApiKeyRecord,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let claimed = record.needs_last_used_touch(now)
            && self.cache.as_ref().is_none_or(|(cache, _)| cache.claim_last_used_touch(hash, now));
        if claimed {
            // A failed write leaves the claim in place: the column is advisory,
            // and the next refresh comes a minute later.
            self.store.touch_last_used(record.id, now).await?;
        }
        Ok(())
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
            CacheLookup::Hit(cached) => Ok(cached.record),
            CacheLookup::Miss(ticket) => {
                let (record, epoch) =
                    self.store.key_by_hash_with_epoch(hash).await?.ok_or(AuthError::Unknown)?;
                cache.fill_at(ticket, record.clone(), epoch);
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
