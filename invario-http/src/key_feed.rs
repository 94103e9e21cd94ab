//! Keeps the authentication key cache honest: follows the key store's change
//! feed, hands every change to the cache (the rules of what a change does to
//! the cache are the core's, [`KeyCache::apply`]), and makes the feed catch
//! up before a cached key is trusted ([`CacheFence`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use invario_core::{CacheFence, KeyCache, KeyChange, KeyChanges};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::ConfigError;
use crate::config::{Setting, check_range};

/// Most key records a cache may be set to hold.
pub const MAX_KEY_CACHE_CAPACITY: usize = 1_000_000;

/// How long to wait before asking a lost feed to reconnect.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Longest a request waits for the feed to catch up before it reads the key
/// table instead.
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

/// How often an idle feed makes a round anyway, so a lost connection shows
/// (`invario_key_cache_live`) before a request needs it.
const IDLE_CHECK: Duration = Duration::from_secs(10);

/// Authentication's key cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCacheSettings {
    /// Most key records kept in memory; 0 turns the cache off (every request
    /// reads the key table). Only used on a store with a change feed
    /// (PostgreSQL's notifications, SQLite's key epoch); elsewhere every
    /// request reads the store anyway.
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

/// Serves [`CacheFence`] from the task that follows the feed: a caller needs
/// a catch-up round that starts after it asked, and concurrent callers share
/// rounds, so a burst of requests costs one round trip, not one each.
#[derive(Debug)]
pub(crate) struct FeedFence {
    /// The number the next round to start will carry.
    next_round: AtomicU64,
    wanted: Notify,
    /// The last round completed, or `u64::MAX` while the cache is not live
    /// (every caller passes then: its second lookup misses and reads the table).
    completed: watch::Receiver<u64>,
}

impl FeedFence {
    fn start_round(&self) -> u64 {
        self.next_round.fetch_add(1, Ordering::SeqCst)
    }
}

#[async_trait]
impl CacheFence for FeedFence {
    async fn catch_up(&self) -> bool {
        let needed = self.next_round.load(Ordering::SeqCst);
        self.wanted.notify_one();
        let mut completed = self.completed.clone();
        matches!(
            tokio::time::timeout(CATCH_UP_WAIT, completed.wait_for(|round| *round >= needed)).await,
            Ok(Ok(_))
        )
    }
}

/// Starts following `feed` for `cache` until `stop` turns true; returns the
/// fence requests wait on and the task.
pub(crate) fn start(
    feed: Box<dyn KeyChanges>,
    cache: Arc<KeyCache>,
    stop: watch::Receiver<bool>,
) -> (Arc<FeedFence>, JoinHandle<()>) {
    let (completed_sender, completed) = watch::channel(u64::MAX);
    let fence = Arc::new(FeedFence { next_round: AtomicU64::new(1), wanted: Notify::new(), completed });
    let task = tokio::spawn(follow(feed, cache, Arc::clone(&fence), completed_sender, stop));
    (fence, task)
}

/// Runs catch-up rounds as requests ask for them (and now and then when
/// idle, to notice a lost connection), applies what each reports to `cache`,
/// and logs each change of the cache's trust (not each change of a key).
async fn follow(
    mut feed: Box<dyn KeyChanges>,
    cache: Arc<KeyCache>,
    fence: Arc<FeedFence>,
    completed: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    metrics::gauge!(crate::KEY_CACHE_LIVE).set(0.0);
    let mut was_lost = false;
    let mut listened_before = false;
    loop {
        if cache.is_live() {
            tokio::select! {
                () = fence.wanted.notified() => {}
                () = tokio::time::sleep(IDLE_CHECK) => {}
                _ = stop.changed() => return,
            }
        } else if was_lost {
            tokio::select! {
                () = tokio::time::sleep(RECONNECT_PAUSE) => {}
                _ = stop.changed() => return,
            }
        }
        let round = fence.start_round();
        let change = tokio::select! {
            change = feed.catch_up() => change,
            _ = stop.changed() => return,
        };
        cache.apply(change);
        let live = cache.is_live();
        completed.send_replace(if live { round } else { u64::MAX });
        metrics::gauge!(crate::KEY_CACHE_LIVE).set(if live { 1.0 } else { 0.0 });
        match change {
            KeyChange::Changed => tracing::debug!(event = "key_cache_cleared"),
            KeyChange::Unchanged => {}
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
            }
        }
    }
}
