//! Keeps the authentication key cache honest: follows the key store's change
//! feed and hands every change to the cache (the rules of what a change does
//! to the cache are the core's, [`KeyCache::apply`]).

use std::sync::Arc;
use std::time::Duration;

use invario_core::{KeyCache, KeyChange, KeyChanges};
use tokio::sync::watch;

use crate::ConfigError;
use crate::config::{Setting, check_range};

/// Most key records a cache may be set to hold.
pub const MAX_KEY_CACHE_CAPACITY: usize = 1_000_000;

/// How long to wait before asking a lost feed to reconnect.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Authentication's key cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCacheSettings {
    /// Most key records kept in memory; 0 turns the cache off (every request
    /// reads the key table). Only used on a store with a change feed
    /// (PostgreSQL); elsewhere every request reads the store anyway.
    pub capacity: usize,
}

impl Default for KeyCacheSettings {
    fn default() -> Self {
        KeyCacheSettings { capacity: invario_core::DEFAULT_KEY_CACHE_CAPACITY }
    }
}

impl KeyCacheSettings {
    /// Refuses a capacity above [`MAX_KEY_CACHE_CAPACITY`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range(Setting::KeyCacheCapacity, self.capacity, 0, MAX_KEY_CACHE_CAPACITY)
    }
}

/// Applies the feed's changes to `cache` until `stop` turns true, logging
/// each change of the cache's trust (not each change of a key).
pub(crate) async fn follow(
    mut feed: Box<dyn KeyChanges>,
    cache: Arc<KeyCache>,
    mut stop: watch::Receiver<bool>,
) {
    metrics::gauge!(crate::KEY_CACHE_LIVE).set(0.0);
    let mut was_lost = false;
    let mut listened_before = false;
    loop {
        let change = tokio::select! {
            change = feed.next_change() => change,
            _ = stop.changed() => return,
        };
        cache.apply(change);
        metrics::gauge!(crate::KEY_CACHE_LIVE).set(if cache.is_live() { 1.0 } else { 0.0 });
        match change {
            KeyChange::Changed => tracing::debug!(event = "key_cache_cleared"),
            KeyChange::Listening => {
                tracing::info!(event = "key_cache_live", reconnected = listened_before);
                was_lost = false;
                listened_before = true;
            }
            KeyChange::Lost => {
                if !was_lost {
                    tracing::warn!(
                        event = "key_cache_suspended",
                        reason =
                            "the key change feed is down: every request reads the key table until it is back"
                    );
                }
                was_lost = true;
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT_PAUSE) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}
