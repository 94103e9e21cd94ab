//! Property tests of the core: chains verify, every tamper is pinpointed,
//! replays add nothing, rejected batches change nothing, texts round-trip.
//! Helpers here; the tests by concern in the submodules.

mod appends;
mod pipeline;
mod tampering;

use futures_executor::block_on;
use proptest::prelude::*;

use crate::amount::Amount;
use crate::append::{AppendSnapshot, ItemProblem, ReceiptStatus, plan_append};
use crate::chain::{ChainPosition, EntryHash, LedgerEntry, LedgerHead};
use crate::integrity::{IntegrityBreak, StoredTransaction, VerificationRecord, Verifier};
use crate::ledger::{BatchRequest, IngestError, Ledger};
use crate::memory::MemoryLedger;
use crate::merkle::{entry_leaf_hash, root_of_leaves};
use crate::metadata::Metadata;
use crate::strategies;
use crate::tiles::{TreeSnapshot, TreeState, edge_tiles, extend_tree};
use crate::timestamp::Timestamp;
use crate::transaction::Transaction;

fn at(micros: i64) -> Timestamp {
    Timestamp::from_unix_micros(1_700_000_000_000_000 + micros).unwrap()
}

/// Chains `transactions` from genesis, one entry per second.
fn chain(transactions: Vec<Transaction>) -> Vec<LedgerEntry> {
    let mut position = ChainPosition::GENESIS;
    (0..)
        .zip(transactions)
        .map(|(second, transaction)| {
            let entry = LedgerEntry::next(position, transaction, at(second * 1_000_000)).unwrap();
            position = entry.position();
            entry
        })
        .collect()
}

fn head_of(entries: &[LedgerEntry]) -> LedgerHead {
    entries.last().map_or(LedgerHead::EMPTY, |last| LedgerHead {
        sequence_number: last.sequence_number,
        entry_hash: last.entry_hash,
        recorded_at: Some(last.recorded_at),
    })
}

/// The tree an adapter would hold for `entries`: state and right-edge tiles.
fn tree_of(entries: &[LedgerEntry]) -> TreeSnapshot {
    let leaves = entries.iter().map(|entry| entry_leaf_hash(&entry.entry_hash));
    let update = extend_tree(&TreeSnapshot::empty(), 0, leaves).unwrap();
    let edge = edge_tiles(update.state.head.size);
    TreeSnapshot {
        edge: update
            .tiles
            .into_iter()
            .chain(update.leaf_edge)
            .filter(|tile| edge.contains(&tile.coord))
            .collect(),
        state: update.state,
    }
}

/// A stored tree of `size` leaves with made-up hashes, for plans far along the range.
fn fake_tree(size: u64) -> TreeSnapshot {
    let hash = crate::merkle::TreeHash([9; 32]);
    let edge = edge_tiles(size)
        .into_iter()
        .map(|coord| crate::tiles::Tile { coord, hashes: vec![hash; coord.width_at(size)] })
        .collect();
    let frontier = crate::merkle::Frontier::from_parts(size, vec![hash; size.count_ones() as usize]).unwrap();
    TreeSnapshot { state: TreeState { head: crate::merkle::TreeHead { size, root: hash }, frontier }, edge }
}

fn records(entries: &[LedgerEntry]) -> Vec<VerificationRecord> {
    entries
        .iter()
        .map(|entry| {
            let (stored_entry, stored_transaction) = StoredTransaction::of(entry);
            VerificationRecord::Entry(stored_entry, Some(stored_transaction))
        })
        .collect()
}

fn verify(head: LedgerHead, records: &[VerificationRecord]) -> Option<IntegrityBreak> {
    let mut verifier = Verifier::full(head);
    for record in records {
        if !verifier.feed(record) {
            break;
        }
    }
    verifier.finish().first_break
}
