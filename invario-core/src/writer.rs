//! The writer's state (issue 27, lever L1): the one appender of a ledger
//! already knows the head and the tree's right edge after each of its own
//! commits, so it keeps them instead of reading them again under the lock.
//! Every write made from that state carries a [`Fence`]: the store writes only
//! if its head and tree are still exactly the ones the state was taken from,
//! and otherwise answers [`StoreError::Fenced`](crate::StoreError::Fenced)
//! with nothing written (another instance, the CLI, or direct SQL moved the
//! ledger). The core then drops the state and takes the locking path; while
//! fences repeat, the fast path pauses ([`FencePause`]).

use crate::append::{AppendPlan, AppendSnapshot};
use crate::chain::{ChainPosition, LedgerHead};
use crate::merkle::TreeHead;
use crate::tiles::TreeSnapshot;

/// What a writer knows of its ledger between appends: the head and the
/// tree's state and right-edge tiles, as its last commit left them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterState {
    /// The head.
    pub head: LedgerHead,
    /// The tree's state and the tiles at its right edge.
    pub tree: TreeSnapshot,
}

/// What a write made from a [`WriterState`] expects the store to hold: the
/// head's position and the tree's head. The store compares both under its
/// lock before writing anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    /// The head's sequence number and entry hash.
    pub head: ChainPosition,
    /// The tree's size and root.
    pub tree: TreeHead,
}

impl Fence {
    /// Whether `snapshot` (read under the store's lock) is what this fence expects.
    pub fn admits(&self, snapshot: &AppendSnapshot) -> bool {
        self.admits_stored(snapshot.head.position(), snapshot.tree.state.head)
    }

    /// Whether the stored head and tree (read under the store's lock, by a
    /// store that reads nothing else for a fenced write) are what this fence
    /// expects: both must match, or the write was planned on another state.
    pub fn admits_stored(&self, head: ChainPosition, tree: TreeHead) -> bool {
        head == self.head && tree == self.tree
    }
}

impl WriterState {
    /// The state a locked read gave (its `existing` entries are not part of it).
    pub fn from_snapshot(snapshot: AppendSnapshot) -> Self {
        WriterState { head: snapshot.head, tree: snapshot.tree }
    }

    /// The fence a write planned on this state carries.
    pub fn fence(&self) -> Fence {
        Fence { head: self.head.position(), tree: self.tree.state.head }
    }

    /// The snapshot to plan on: this state, with ids presumed new (no stored entries).
    pub fn into_snapshot(self) -> AppendSnapshot {
        AppendSnapshot { head: self.head, existing: Vec::new(), tree: self.tree }
    }

    /// The state once `plan`, planned on `snapshot`, is committed: the plan's
    /// head, and the tree advanced by its update. The one place the state
    /// moves; a mistake here is caught by the next write's fence.
    pub fn after(snapshot: AppendSnapshot, plan: &AppendPlan) -> WriterState {
        let tree = match plan.tree_update() {
            Some(update) => snapshot.tree.after(update),
            None => snapshot.tree,
        };
        WriterState { head: plan.head_move().unwrap_or(snapshot.head), tree }
    }
}

/// Writes that skip the fast path after a fence: the first fence pauses it
/// for this many, each fence in a row doubles the pause up to [`MAX_PAUSE`].
pub const FIRST_PAUSE: u32 = 64;
/// The longest pause, in writes.
pub const MAX_PAUSE: u32 = 4_096;

/// When the fast path pauses: several writers on one ledger fence each
/// other, and each fence costs the fenced write a second attempt, so after a
/// fence the writer takes the locking path for a while (counted in writes:
/// the core has no clock), longer while fences keep coming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FencePause {
    remaining: u32,
    next: u32,
}

impl FencePause {
    /// Whether the next write may use the fast path; counts the write.
    pub fn allows_fast_write(&mut self) -> bool {
        if self.remaining == 0 {
            return true;
        }
        self.remaining -= 1;
        false
    }

    /// Whether the fast path is paused now (nothing is counted).
    pub fn is_paused(&self) -> bool {
        self.remaining > 0
    }

    /// A fast write was fenced: pause, twice as long as last time in a row.
    pub fn fenced(&mut self) {
        let pause = if self.next == 0 { FIRST_PAUSE } else { self.next };
        self.remaining = pause;
        self.next = pause.saturating_mul(2).min(MAX_PAUSE);
    }

    /// A fast write went through: the next fence pauses for the shortest time again.
    pub fn succeeded(&mut self) {
        self.next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::EntryHash;
    use crate::keys::KeyEpoch;
    use crate::merkle::TreeHash;
    use proptest::prelude::*;

    proptest! {
        /// A fenced write lands on exactly the state it was planned on: any
        /// moved head sequence, head hash, tree size or root refuses it.
        #[test]
        fn a_fence_admits_only_its_own_stored_state(
            sequence in 0u64..1_000_000,
            head_hash in any::<[u8; 32]>(),
            size in 0u64..1_000_000,
            root in any::<[u8; 32]>(),
            which in 0usize..4,
            flip in 0usize..32,
        ) {
            let fence = Fence {
                head: ChainPosition { sequence_number: sequence, entry_hash: EntryHash(head_hash) },
                tree: TreeHead { size, root: TreeHash(root) },
            };
            prop_assert!(fence.admits_stored(fence.head, fence.tree));
            let (mut head, mut tree) = (fence.head, fence.tree);
            match which {
                0 => head.sequence_number += 1,
                1 => head.entry_hash.0[flip] ^= 1,
                2 => tree.size = tree.size.wrapping_sub(1),
                _ => tree.root.0[flip] ^= 0x80,
            }
            prop_assert!(!fence.admits_stored(head, tree));
        }

        /// A cached key's write holds only while the key table has not moved.
        #[test]
        fn a_key_epoch_holds_only_at_the_same_epoch(cached in 1u64..u64::MAX, moved in 1u64..1_000) {
            prop_assert!(KeyEpoch(cached).still_holds(KeyEpoch(cached)));
            prop_assert!(!KeyEpoch(cached).still_holds(KeyEpoch(cached.saturating_add(moved))));
        }
    }

    #[test]
    fn a_fence_pauses_the_fast_path_and_repeated_fences_pause_longer() {
        let mut pause = FencePause::default();
        assert!(pause.allows_fast_write());
        pause.fenced();
        assert_eq!((0..FIRST_PAUSE).filter(|_| pause.allows_fast_write()).count(), 0);
        assert!(pause.allows_fast_write());
        pause.fenced();
        assert_eq!((0..2 * FIRST_PAUSE).filter(|_| pause.allows_fast_write()).count(), 0);
        assert!(pause.allows_fast_write());
        for _ in 0..20 {
            pause.fenced();
        }
        assert_eq!((0..MAX_PAUSE).filter(|_| pause.allows_fast_write()).count(), 0);
        assert!(pause.allows_fast_write());
        pause.succeeded();
        pause.fenced();
        assert_eq!((0..FIRST_PAUSE + 1).filter(|_| pause.allows_fast_write()).count(), 1);
    }
}
