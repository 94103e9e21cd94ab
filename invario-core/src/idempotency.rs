//! Optimistic idempotency (issue 27, lever L2): most batches hold only new
//! transaction ids, so an append first plans with no lookup of stored ids and
//! lets the database's unique keys catch the rare stored one; then the write
//! is rolled back and the append is planned again from an exact lookup, with
//! the same time, so a replay and a conflict are answered exactly as if the
//! lookup had come first. Storms of replays would pay twice; the tracker
//! here switches to lookup-first while they last.

/// How an append decides which of its ids are stored already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdempotencyStrategy {
    /// Presume new while replays are rare (fewer than
    /// [`FALLBACK_LIMIT`] of the last [`TRACKED_WRITES`] writes held a stored
    /// id); look up first while they are not.
    #[default]
    Adaptive,
    /// Always presume new, falling back on a unique-key violation.
    Optimistic,
    /// Always look the ids up under the lock first (the path before issue 27).
    LookupFirst,
}

use std::collections::HashSet;

use crate::chain::{LedgerHead, MAX_SEQUENCE_NUMBER};
use crate::transaction::TransactionId;

/// Whether an append of `ids` on top of `head` may presume them new: planning
/// with no stored ids then answers exactly as planning from a lookup would,
/// except for stored ids, which a unique key catches at the write. It may not
/// when an id appears twice (the lookup path lists conflicts with stored
/// entries beside the duplicate) or when the sequence range could run out (a
/// replay takes no sequence number, so the lookup path might still fit).
pub fn can_presume_new(head: &LedgerHead, ids: &[TransactionId]) -> bool {
    let mut seen = HashSet::with_capacity(ids.len());
    new_entries_fit(head, ids.len()) && ids.iter().all(|id| seen.insert(*id))
}

/// Whether `count` new entries fit after `head` in the sequence range: the
/// half of [`can_presume_new`] for a caller that already holds the ids as
/// a set (distinct when the set is as large as the list).
pub fn new_entries_fit(head: &LedgerHead, count: usize) -> bool {
    u64::try_from(count)
        .ok()
        .and_then(|count| head.sequence_number.checked_add(count))
        .is_some_and(|last| last <= MAX_SEQUENCE_NUMBER)
}

/// Writes the tracker remembers.
pub const TRACKED_WRITES: u32 = 64;
/// Writes among the tracked ones that held a stored id, at which the
/// adaptive strategy stops presuming new.
pub const FALLBACK_LIMIT: u32 = 4;

const _: () = assert!(TRACKED_WRITES == u64::BITS && FALLBACK_LIMIT < TRACKED_WRITES);

/// Which of the last [`TRACKED_WRITES`] writes held an id that was stored
/// already (one bit each, newest lowest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayTracker {
    recent: u64,
}

impl ReplayTracker {
    /// Whether the next write should skip the lookup under `strategy`.
    pub fn presume_new(&self, strategy: IdempotencyStrategy) -> bool {
        match strategy {
            IdempotencyStrategy::Optimistic => true,
            IdempotencyStrategy::LookupFirst => false,
            IdempotencyStrategy::Adaptive => self.recent.count_ones() < FALLBACK_LIMIT,
        }
    }

    /// Records one write: whether its batch held an id stored already
    /// (found by the lookup, or by a unique key after presuming new).
    pub fn record(&mut self, held_a_stored_id: bool) {
        self.recent = (self.recent << 1) | u64::from(held_a_stored_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_batches_without_repeated_ids_and_with_room_may_presume_new() {
        let ids: Vec<TransactionId> =
            (1..=3).map(|n| TransactionId::parse(&uuid::Uuid::from_u128(n).to_string()).unwrap()).collect();
        assert!(can_presume_new(&LedgerHead::EMPTY, &ids));
        let repeated = [ids[0], ids[1], ids[0]];
        assert!(!can_presume_new(&LedgerHead::EMPTY, &repeated));
        let near_the_end = LedgerHead { sequence_number: MAX_SEQUENCE_NUMBER - 2, ..LedgerHead::EMPTY };
        assert!(!can_presume_new(&near_the_end, &ids));
        assert!(can_presume_new(&near_the_end, &ids[..2]));
    }

    #[test]
    fn adaptive_looks_up_first_while_replays_are_frequent_and_presumes_new_once_they_pass() {
        let mut tracker = ReplayTracker::default();
        assert!(tracker.presume_new(IdempotencyStrategy::Adaptive));
        for _ in 0..FALLBACK_LIMIT {
            tracker.record(true);
        }
        assert!(!tracker.presume_new(IdempotencyStrategy::Adaptive));
        assert!(tracker.presume_new(IdempotencyStrategy::Optimistic));
        // Clean writes push the replays out of the window.
        for _ in 0..TRACKED_WRITES - FALLBACK_LIMIT {
            tracker.record(false);
        }
        assert!(!tracker.presume_new(IdempotencyStrategy::Adaptive), "still in the window");
        tracker.record(false);
        assert!(tracker.presume_new(IdempotencyStrategy::Adaptive));
        assert!(!tracker.presume_new(IdempotencyStrategy::LookupFirst));
    }
}
