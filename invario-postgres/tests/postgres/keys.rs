//! The key table's epoch (issue 27, lever L7): a write authenticated from a
//! cached key carries the epoch the key was read at, and lands only while no
//! key changed since.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use invario_core::{
    CacheFence, KeyAdmin, KeyCache, KeyChange, KeyEpoch, KeyStore, ReceiptStatus, Scope, StoreError,
};
use invario_postgres::PgKeyStore;

use super::*;

fn rng() -> rand_core::UnwrapErr<rand_core::OsRng> {
    rand_core::UnwrapErr(rand_core::OsRng)
}

#[tokio::test]
async fn a_write_carrying_a_key_epoch_lands_only_while_no_key_changed() {
    let database = fresh_database().await;
    let keys = KeyAdmin::new(PgKeyStore::new(database.pool().clone()));
    let ledger = Ledger::new(PgLedger::new(database.pool().clone()));
    let (secret, _) = keys.create_key(&mut rng(), "svc", r#"{"write": true}"#, None, at(0)).await.unwrap();
    let (_, epoch) = keys.store().key_by_hash_with_epoch(&secret.hash()).await.unwrap().unwrap();
    let Some(read_at) = epoch else {
        // Citus writes go through the coordinator's locking path, which cannot
        // check an epoch: none is handed out, and a write carrying one is refused.
        assert!(
            invario_postgres::is_citus(database.pool()).await.unwrap(),
            "plain PostgreSQL hands out epochs"
        );
        let refused = ledger.ingest_each_with_keys(vec![transaction(1, "1")], at(1), Some(KeyEpoch(1))).await;
        assert!(matches!(refused, Err(IngestError::Store(StoreError::KeysChanged))), "{refused:?}");
        assert!(ledger.entry(transaction(1, "1").transaction_id).await.unwrap().is_none());
        return;
    };

    let written =
        ledger.ingest_each_with_keys(vec![transaction(1, "1")], at(1), Some(read_at)).await.unwrap();
    assert!(matches!(&written[0], Ok(receipt) if receipt.status == ReceiptStatus::Created), "{written:?}");

    // Any key change moves the epoch: here another key's creation and revocation.
    let (_, other) = keys.create_key(&mut rng(), "other", r#"{"read": true}"#, None, at(2)).await.unwrap();
    keys.revoke_prefix(&other.prefix, at(3)).await.unwrap();
    let (_, Some(now_at)) = keys.store().key_by_hash_with_epoch(&secret.hash()).await.unwrap().unwrap()
    else {
        panic!("PostgreSQL hands out key epochs");
    };
    assert!(now_at > read_at, "{now_at:?} after {read_at:?}");

    let head = ledger.head().await.unwrap();
    let refused = ledger.ingest_each_with_keys(vec![transaction(2, "2")], at(4), Some(read_at)).await;
    assert!(matches!(refused, Err(IngestError::Store(StoreError::KeysChanged))), "{refused:?}");
    assert_eq!(ledger.head().await.unwrap(), head, "nothing was written");
    assert!(ledger.entry(transaction(2, "2").transaction_id).await.unwrap().is_none());

    let written = ledger.ingest_each_with_keys(vec![transaction(2, "2")], at(5), Some(now_at)).await.unwrap();
    assert!(matches!(&written[0], Ok(receipt) if receipt.entry.sequence_number == 2), "{written:?}");
    // A replay meets the unique key after the epoch was checked, and is
    // answered from the locking path; with a stale epoch it is refused first.
    let stale = ledger.ingest_each_with_keys(vec![transaction(2, "2")], at(6), Some(read_at)).await;
    assert!(matches!(stale, Err(IngestError::Store(StoreError::KeysChanged))), "{stale:?}");
    let replay = ledger.ingest_each_with_keys(vec![transaction(2, "2")], at(6), Some(now_at)).await.unwrap();
    assert!(matches!(&replay[0], Ok(receipt) if receipt.status == ReceiptStatus::Replayed), "{replay:?}");
    // Replays now dominate the recent writes (lookup first): that path cannot
    // check an epoch, so the write is handed back rather than written unchecked.
    for _ in 0..4 {
        ledger.ingest_each(vec![transaction(2, "2")], at(7)).await.unwrap();
    }
    let handed_back = ledger.ingest_each_with_keys(vec![transaction(3, "3")], at(8), Some(now_at)).await;
    assert!(matches!(handed_back, Err(IngestError::Store(StoreError::KeysChanged))), "{handed_back:?}");
    assert!(ledger.entry(transaction(3, "3").transaction_id).await.unwrap().is_none());
    assert!(ledger.verify_full().await.unwrap().is_intact());
}

/// Counts the catch-ups a cache asks for.
#[derive(Debug, Default)]
struct CountingFence(AtomicUsize);

#[async_trait]
impl CacheFence for CountingFence {
    async fn catch_up(&self) -> bool {
        self.0.fetch_add(1, Ordering::SeqCst);
        true
    }
}

#[tokio::test]
async fn a_cached_key_is_trusted_for_a_write_at_its_epoch_without_a_catch_up() {
    let database = fresh_database().await;
    let store = PgKeyStore::new(database.pool().clone());
    let cache = Arc::new(KeyCache::new(8));
    cache.apply(KeyChange::Listening);
    let fence = Arc::new(CountingFence::default());
    let keys = KeyAdmin::with_cache(store, Arc::clone(&cache), Arc::clone(&fence) as Arc<dyn CacheFence>);
    let (secret, _) = keys.create_key(&mut rng(), "svc", r#"{"write": true}"#, None, at(0)).await.unwrap();

    let (_, first) =
        keys.authenticate_for_write(Some(secret.expose()), Scope::Write, None, at(1)).await.unwrap();
    assert_eq!(first, None, "read from the table: nothing for the write to check");
    let (_, cached) =
        keys.authenticate_for_write(Some(secret.expose()), Scope::Write, None, at(1)).await.unwrap();
    let Some(epoch) = cached else {
        assert!(
            invario_postgres::is_citus(database.pool()).await.unwrap(),
            "plain PostgreSQL hands out epochs"
        );
        assert_eq!(fence.0.load(Ordering::SeqCst), 1, "without an epoch a cached key waits for the catch-up");
        return;
    };
    assert_eq!(fence.0.load(Ordering::SeqCst), 0, "no catch-up for a write that checks the key");
    assert_eq!(keys.store().key_by_hash_with_epoch(&secret.hash()).await.unwrap().unwrap().1, Some(epoch));

    // A scope the cached record does not grant is checked afresh, caught up (and refused).
    assert!(keys.authenticate_for_write(Some(secret.expose()), Scope::Read, None, at(1)).await.is_err());
    assert_eq!(fence.0.load(Ordering::SeqCst), 1);
    // Other routes still catch the cache up first.
    keys.authenticate(Some(secret.expose()), Scope::Write, None, at(1)).await.unwrap();
    assert_eq!(fence.0.load(Ordering::SeqCst), 2);
    // Revoked behind the cache's back: the cached epoch no longer holds, so a
    // write carrying it is refused (the store side is tested above) and the
    // caller's strict authentication, once the cache hears of it, refuses the key.
    keys.revoke_owner("svc", at(2)).await.unwrap();
    let (_, stale) =
        keys.authenticate_for_write(Some(secret.expose()), Scope::Write, None, at(3)).await.unwrap();
    assert_eq!(stale, Some(epoch), "the cache has not heard yet");
    let moved = keys.store().key_by_hash_with_epoch(&secret.hash()).await.unwrap().unwrap().1;
    assert!(moved > Some(epoch), "the revocation moved the epoch");
    cache.apply(KeyChange::Changed);
    assert!(keys.authenticate(Some(secret.expose()), Scope::Write, None, at(3)).await.is_err());
    assert!(KeyEpoch(0) < epoch, "epochs start at 1");
}
