//! Key records kept in memory between requests, trusted only while the store
//! says it will tell us about every change.
//!
//! Authentication costs a store query per request; a cache removes it, but a
//! cached record must never outlive its revocation. So the cache is *live*
//! only while a change feed ([`crate::ports::KeyChanges`]) is connected: any
//! change empties it, losing the feed suspends it (every request reads the
//! store again) until the feed is back. A hit is trusted only after the feed
//! has caught up with every change committed before it
//! ([`crate::ports::CacheFence`]), so a revocation bites on the first request
//! that starts after it, not when its notice happens to arrive. A lookup that raced with a change is
//! not cached: fills carry the generation they were read in and are dropped
//! when it has moved on. Unknown keys are never cached, so a flood of bad keys
//! cannot grow it, and it holds at most its capacity.
//!
//! Each record keeps the key table's [`KeyEpoch`] it was read at, when the
//! store has one: a write may then skip the catch-up and carry the epoch
//! instead, and the store refuses it if any key changed since.
//!
//! The cache keeps whole records; the rule ([`ApiKeyRecord::authorize`]) is
//! applied to a cached record exactly as to a stored one, so expiry still
//! bites at its instant.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::keys::{ApiKeyRecord, KeyEpoch, KeyHash};
use crate::ports::KeyChange;
use crate::timestamp::Timestamp;

/// How many key records a cache holds by default.
pub const DEFAULT_KEY_CACHE_CAPACITY: usize = 4096;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLookup {
    /// The record, current as of the last change the feed reported.
    Hit(CachedKey),
    /// Read the store, then hand the record to [`KeyCache::fill`] with this ticket.
    Miss(FillTicket),
}

/// A cached key record and the key table's epoch it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedKey {
    /// The record as read from the store.
    pub record: ApiKeyRecord,
    /// The key table's epoch at that read, when the store keeps one.
    pub epoch: Option<KeyEpoch>,
}

/// Proof of when a miss happened: a fill is kept only if no change came since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillTicket {
    generation: u64,
}

/// A bounded, change-invalidated map of key hash → key record.
#[derive(Debug)]
pub struct KeyCache {
    capacity: usize,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    live: bool,
    generation: u64,
    records: HashMap<KeyHash, CachedKey>,
}

impl CacheState {
    fn reset(&mut self, live: bool) {
        self.live = live;
        self.generation = self.generation.wrapping_add(1);
        self.records.clear();
    }
}

impl KeyCache {
    /// An empty cache holding at most `capacity` records; suspended until
    /// its feed reports [`KeyChange::Listening`].
    pub fn new(capacity: usize) -> Self {
        KeyCache { capacity, state: Mutex::new(CacheState::default()) }
    }

    fn state(&self) -> MutexGuard<'_, CacheState> {
        // Every critical section leaves the state consistent (plain field
        // writes and map operations), so a panic elsewhere cannot poison it
        // into a wrong answer.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached record for `hash`, or a ticket to fill it after reading the store.
    pub fn lookup(&self, hash: &KeyHash) -> CacheLookup {
        let state = self.state();
        match state.records.get(hash) {
            Some(cached) if state.live => CacheLookup::Hit(cached.clone()),
            _ => CacheLookup::Miss(FillTicket { generation: state.generation }),
        }
    }

    /// Keeps `record`, read from the store after the miss that gave `ticket`,
    /// unless a change came in between, the feed is down, or the cache is full.
    pub fn fill(&self, ticket: FillTicket, record: ApiKeyRecord) {
        self.fill_at(ticket, record, None);
    }

    /// [`fill`](Self::fill) with the key table's epoch the record was read at.
    pub fn fill_at(&self, ticket: FillTicket, record: ApiKeyRecord, epoch: Option<KeyEpoch>) {
        let mut state = self.state();
        if state.live && state.generation == ticket.generation && state.records.len() < self.capacity {
            state.records.insert(record.key_hash, CachedKey { record, epoch });
        }
    }

    /// Claims the refresh of a key's `last_used_at` at `at`: true when the
    /// caller is to write it (the key is not cached, or cached and due — its
    /// cached record now says it was used at `at`), false when a request before
    /// it already claimed this refresh. Claiming before writing lets requests
    /// that arrive together write the column once, not once each: on Citus
    /// every such write is a two-phase commit over all nodes (≈ 100 ms), and a
    /// burst of them queues on the key's row.
    pub fn claim_last_used_touch(&self, hash: &KeyHash, at: Timestamp) -> bool {
        match self.state().records.get_mut(hash) {
            Some(cached) if !cached.record.needs_last_used_touch(at) => false,
            Some(cached) => {
                cached.record.last_used_at = Some(at);
                true
            }
            None => true,
        }
    }

    /// Applies what the change feed reported: a change empties the cache, a
    /// lost feed suspends it, a (re)established feed empties and resumes it
    /// (changes made while it was down are unknown); no change keeps it.
    pub fn apply(&self, change: KeyChange) {
        let mut state = self.state();
        match change {
            KeyChange::Changed => {
                let live = state.live;
                state.reset(live);
            }
            KeyChange::Unchanged => {}
            KeyChange::Lost => state.reset(false),
            KeyChange::Listening => state.reset(true),
        }
    }

    /// Whether cached records are being served (the feed is connected).
    pub fn is_live(&self) -> bool {
        self.state().live
    }

    /// How many records are cached.
    pub fn len(&self) -> usize {
        self.state().records.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{ApiKeySecret, Owner, Scopes};

    fn record(byte: u8) -> ApiKeyRecord {
        let secret = ApiKeySecret::parse(&format!("inv_live_{}", "a".repeat(31) + &(byte % 10).to_string()))
            .unwrap_or_else(|error| panic!("test key: {error}"));
        ApiKeyRecord::new(
            uuid::Uuid::from_bytes([byte; 16]),
            &secret,
            Owner::parse("svc").unwrap_or_else(|error| panic!("{error}")),
            Scopes::parse_json(r#"{"write": true}"#).unwrap_or_else(|error| panic!("{error}")),
            Timestamp::UNIX_EPOCH,
            None,
        )
    }

    fn miss(lookup: CacheLookup) -> FillTicket {
        match lookup {
            CacheLookup::Miss(ticket) => ticket,
            CacheLookup::Hit(cached) => panic!("expected a miss, got {}", cached.record.prefix),
        }
    }

    #[test]
    fn nothing_is_served_before_the_feed_listens() {
        let cache = KeyCache::new(8);
        let key = record(1);
        let ticket = miss(cache.lookup(&key.key_hash));
        cache.fill(ticket, key.clone());
        assert!(cache.is_empty(), "a suspended cache keeps nothing");
        cache.apply(KeyChange::Listening);
        let ticket = miss(cache.lookup(&key.key_hash));
        cache.fill(ticket, key.clone());
        assert_eq!(cache.lookup(&key.key_hash), CacheLookup::Hit(CachedKey { record: key, epoch: None }));
    }

    #[test]
    fn a_change_empties_it_and_a_lost_feed_suspends_it() {
        let cache = KeyCache::new(8);
        cache.apply(KeyChange::Listening);
        let key = record(1);
        cache.fill(miss(cache.lookup(&key.key_hash)), key.clone());
        cache.apply(KeyChange::Changed);
        assert!(cache.is_empty());
        assert!(cache.is_live());
        cache.fill(miss(cache.lookup(&key.key_hash)), key.clone());
        cache.apply(KeyChange::Lost);
        assert!(!cache.is_live());
        miss(cache.lookup(&key.key_hash));
        cache.fill(miss(cache.lookup(&key.key_hash)), key.clone());
        assert!(cache.is_empty(), "nothing is kept while the feed is down");
    }

    #[test]
    fn a_fill_that_raced_with_a_change_is_dropped() {
        let cache = KeyCache::new(8);
        cache.apply(KeyChange::Listening);
        let key = record(1);
        let ticket = miss(cache.lookup(&key.key_hash));
        // The store was read (the key still active), then the revocation's
        // notification arrived before the fill: the read may be stale.
        cache.apply(KeyChange::Changed);
        cache.fill(ticket, key.clone());
        assert!(cache.is_empty());
        // A ticket from before a lost-and-regained feed is stale too.
        let ticket = miss(cache.lookup(&key.key_hash));
        cache.apply(KeyChange::Lost);
        cache.apply(KeyChange::Listening);
        cache.fill(ticket, key);
        assert!(cache.is_empty());
    }

    #[test]
    fn it_holds_at_most_its_capacity() {
        let cache = KeyCache::new(2);
        cache.apply(KeyChange::Listening);
        for byte in 1..=5 {
            let key = record(byte);
            cache.fill(miss(cache.lookup(&key.key_hash)), key);
        }
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_record_keeps_the_epoch_it_was_read_at() {
        let cache = KeyCache::new(2);
        cache.apply(KeyChange::Listening);
        let key = record(1);
        cache.fill_at(miss(cache.lookup(&key.key_hash)), key.clone(), Some(KeyEpoch(7)));
        assert_eq!(
            cache.lookup(&key.key_hash),
            CacheLookup::Hit(CachedKey { record: key, epoch: Some(KeyEpoch(7)) })
        );
    }

    #[test]
    fn a_due_refresh_of_last_used_is_claimed_once() {
        let cache = KeyCache::new(2);
        cache.apply(KeyChange::Listening);
        let key = record(1);
        let other = record(2);
        cache.fill(miss(cache.lookup(&key.key_hash)), key.clone());
        let micros = |seconds: i64| {
            Timestamp::from_unix_micros(seconds * 1_000_000).unwrap_or_else(|error| panic!("{error}"))
        };
        assert!(cache.claim_last_used_touch(&key.key_hash, micros(5)), "never used: due");
        match cache.lookup(&key.key_hash) {
            CacheLookup::Hit(cached) => assert_eq!(cached.record.last_used_at, Some(micros(5))),
            CacheLookup::Miss(_) => panic!("expected a hit"),
        }
        // Requests of the same burst, and of the same minute, find it claimed.
        assert!(!cache.claim_last_used_touch(&key.key_hash, micros(5)));
        assert!(!cache.claim_last_used_touch(&key.key_hash, micros(64)));
        assert!(cache.claim_last_used_touch(&key.key_hash, micros(65)), "a minute later: due again");
        assert!(!cache.claim_last_used_touch(&key.key_hash, micros(65)));
        // A key the cache does not hold is always the caller's to write.
        assert!(cache.claim_last_used_touch(&other.key_hash, micros(65)));
        assert!(cache.claim_last_used_touch(&other.key_hash, micros(65)));
    }
}
