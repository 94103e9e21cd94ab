//! A key admin that authenticates from a cache must answer exactly as one
//! that reads the store every time, whatever keys are created, revoked, and
//! however the change feed comes and goes — given a feed that delivers, at
//! each catch-up, every change made before it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_executor::block_on;
use invario_core::{
    AuthenticationError, CacheFence, KeyAdmin, KeyCache, KeyChange, MemoryKeyStore, Scope, Timestamp,
};
use proptest::prelude::*;
use rand_core::{OsRng, TryRngCore};

/// Changes made to the store since the feed last caught up, delivered at the
/// next catch-up (if that catch-up succeeds).
#[derive(Debug)]
struct ModelFeed {
    cache: Arc<KeyCache>,
    unheard: Mutex<bool>,
    catches_up: AtomicBool,
}

impl ModelFeed {
    fn store_changed(&self) {
        *self.unheard.lock().unwrap() = true;
    }
}

#[async_trait]
impl CacheFence for ModelFeed {
    async fn catch_up(&self) -> bool {
        if !self.catches_up.load(Ordering::SeqCst) {
            return false;
        }
        if std::mem::take(&mut *self.unheard.lock().unwrap()) {
            self.cache.apply(KeyChange::Changed);
        }
        true
    }
}

#[derive(Debug, Clone)]
enum Step {
    Authenticate { key: usize, read: bool },
    Create { owner: usize, read: bool, write: bool, expires_in: Option<i64> },
    RevokeOwner { owner: usize },
    FeedLost,
    FeedListening,
    CatchUpFails(bool),
    Wait { seconds: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0usize..6, any::<bool>()).prop_map(|(key, read)| Step::Authenticate { key, read }),
        2 => (0usize..3, any::<bool>(), any::<bool>(), proptest::option::of(1i64..20))
            .prop_filter("a key has a scope", |(_, read, write, _)| *read || *write)
            .prop_map(|(owner, read, write, expires_in)| Step::Create { owner, read, write, expires_in }),
        1 => (0usize..3).prop_map(|owner| Step::RevokeOwner { owner }),
        1 => Just(Step::FeedLost),
        1 => Just(Step::FeedListening),
        1 => any::<bool>().prop_map(Step::CatchUpFails),
        1 => (1i64..10).prop_map(|seconds| Step::Wait { seconds }),
    ]
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_micros(1_700_000_000_000_000 + seconds * 1_000_000).unwrap()
}

/// What a caller can tell apart: who was let in, or why not.
fn outcome(result: Result<invario_core::ApiKeyRecord, AuthenticationError>) -> String {
    match result {
        Ok(record) => format!("ok {}", record.id),
        Err(error) => format!("refused: {error}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_cached_admin_answers_as_the_store_does(steps in proptest::collection::vec(step(), 1..60)) {
        block_on(async {
            let store = MemoryKeyStore::new();
            let cache = Arc::new(KeyCache::new(4));
            let feed = Arc::new(ModelFeed {
                cache: Arc::clone(&cache),
                unheard: Mutex::new(false),
                catches_up: AtomicBool::new(true),
            });
            cache.apply(KeyChange::Listening);
            let cached = KeyAdmin::with_cache(store.clone(), Arc::clone(&cache), feed.clone());
            let uncached = KeyAdmin::new(store);
            let mut rng = OsRng.unwrap_err();
            let mut secrets: Vec<String> = Vec::new();
            let mut now = 0;
            for step in steps {
                match step {
                    Step::Authenticate { key, read } => {
                        let Some(secret) = secrets.get(key % secrets.len().max(1)) else { continue };
                        let scope = if read { Scope::Read } else { Scope::Write };
                        let from_cache = outcome(cached.authenticate(Some(secret.as_str()), scope, None, at(now)).await);
                        let from_store = outcome(uncached.authenticate(Some(secret.as_str()), scope, None, at(now)).await);
                        prop_assert_eq!(from_cache, from_store);
                    }
                    Step::Create { owner, read, write, expires_in } => {
                        let scopes = format!(r#"{{"read": {read}, "write": {write}}}"#);
                        let expiry = expires_in.map(|seconds| at(now + seconds));
                        let (secret, _) = uncached
                            .create_key(&mut rng, &format!("owner-{owner}"), &scopes, expiry, at(now))
                            .await
                            .unwrap();
                        secrets.push(secret.expose().to_owned());
                        feed.store_changed();
                    }
                    Step::RevokeOwner { owner } => {
                        if uncached.revoke_owner(&format!("owner-{owner}"), at(now)).await.unwrap() > 0 {
                            feed.store_changed();
                        }
                    }
                    // The follow task's rules: a lost feed suspends the cache, a
                    // feed back empties it (what changed meanwhile was unheard).
                    Step::FeedLost => cache.apply(KeyChange::Lost),
                    Step::FeedListening => {
                        *feed.unheard.lock().unwrap() = false;
                        cache.apply(KeyChange::Listening);
                    }
                    Step::CatchUpFails(fails) => feed.catches_up.store(!fails, Ordering::SeqCst),
                    Step::Wait { seconds } => now += seconds,
                }
            }
            Ok(())
        })?;
    }
}
