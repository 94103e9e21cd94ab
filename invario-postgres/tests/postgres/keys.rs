//! The key table's epoch (issue 27, lever L7): a write authenticated from a
//! cached key carries the epoch the key was read at, and lands only while no
//! key changed since.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use invario_core::{CacheFence, KeyAdmin, KeyCache, KeyChange, KeyEpoch, KeyStore, Scope};
use invario_postgres::PgKeyStore;

use super::*;

fn rng() -> rand_core::UnwrapErr<rand_core::OsRng> {
    rand_core::UnwrapErr(rand_core::OsRng)
}

#[tokio::test]
async fn a_write_carrying_a_key_epoch_lands_only_while_no_key_changed() {
    let database = fresh_database().await;
    let pool = database.pool().clone();
    let citus = invario_postgres::is_citus(&pool).await.unwrap();
    let stores = async { (PgLedger::new(pool.clone()), PgKeyStore::new(pool.clone()), database) };
    let epochs_handed_out =
        invario_testkit::contract::a_write_carrying_a_key_epoch_lands_only_while_no_key_changed(stores).await;
    // A Citus write runs on the ledger's worker, where the key epoch (on the
    // coordinator) is not: none is handed out there.
    assert_eq!(epochs_handed_out, !citus, "plain PostgreSQL hands out epochs, Citus does not");
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
