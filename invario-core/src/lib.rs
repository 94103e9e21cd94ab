//! # invario-core
//!
//! The domain of Invario, a tamper-evident ledger: validated transaction types,
//! the hash-chain format v1, the streaming integrity verifier, API keys, the
//! storage **ports** adapters implement, the application services shells call,
//! and in-memory adapters. The verifiable log's standards (RFC 9162 tree, C2SP
//! tiles, notes, checkpoints, witnesses) come from [`invario_tlog`] and are
//! re-exported under their old paths ([`merkle`], [`tiles`], [`note`],
//! [`checkpoint`], [`witness`]); this crate adds what ties them to a ledger.
//!
//! This crate performs no I/O: no sockets, no files, no clock and no randomness
//! it was not handed. Times come in as [`Timestamp`] arguments and randomness as
//! a [`rand_core::CryptoRng`].
//!
//! ```
//! use invario_core::{Ledger, MemoryLedger, Timestamp, Transaction};
//! # futures_executor::block_on(async {
//! let ledger = Ledger::new(MemoryLedger::new());
//! let transaction = Transaction::from_json(&serde_json::json!({
//!     "transaction_id": "0b6a5e0c-3f39-4c55-9c55-7e4c3f3d2a10",
//!     "amount": "100.50",
//!     "currency": "BRL",
//! }))?;
//! let now = Timestamp::parse_rfc3339("2023-10-27T10:00:00Z")?;
//! let receipts = ledger.ingest(vec![transaction], now).await?;
//! assert_eq!(receipts[0].entry.sequence_number, 1);
//! assert!(ledger.verify_full().await?.is_intact());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

#![warn(missing_docs)]

// The crate README's examples run as doctests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

pub mod amount;
pub mod append;
pub mod audit;
// The verifiable log's standards live in `invario-tlog`, which knows nothing of
// ledgers; they stay reachable under their old paths here.
pub use invario_tlog::{checkpoint, note, policy, proof, tiled, tiles, witness};
pub mod chain;
pub mod currency;
pub mod idempotency;
pub mod integrity;
pub mod key_admin;
pub mod key_cache;
pub mod keys;
pub mod ledger;
pub mod ledgers;
pub mod memory;
/// The RFC 9162 Merkle tree ([`invario_tlog::merkle`]), plus the one line that
/// ties it to the ledger: an entry's leaf is its `entry_hash`.
pub mod merkle {
    pub use crate::chain::entry_leaf_hash;
    pub use invario_tlog::merkle::*;
}
pub mod metadata;
/// The old path of the proofs and the tree backfill ([`ledger::tree`]).
pub mod proofs {
    pub use crate::ledger::tree::*;
}
/// The old path of the ledger and key services ([`ledger`], [`Ledger`], [`KeyAdmin`]).
pub mod service {
    pub use crate::key_admin::*;
    pub use crate::ledger::*;
}
/// The old path of the checkpoint signer and its guard ([`ledger::checkpoints`]).
pub mod signer {
    pub use crate::ledger::checkpoints::*;
}
pub mod ports;
pub mod schema;
#[cfg(any(test, feature = "proptest"))]
pub mod strategies;
pub mod timestamp;
pub mod transaction;
pub mod writer;

#[cfg(test)]
mod properties;

pub use amount::{Amount, AmountError};
pub use append::{
    AppendPlan, AppendRefusal, AppendSnapshot, BatchRejection, IndependentPlan, ItemProblem, JoinedPlan,
    MAX_BATCH_SIZE, MAX_JOINED_ROWS, Receipt, ReceiptStatus, RejectedItem, plan_append, plan_append_batches,
    plan_append_each, plan_tree_backfill, tree_snapshot,
};
#[allow(deprecated)]
pub use chain::Checkpoint;
pub use chain::{
    ChainPosition, EntryContent, EntryHash, EntryReceipt, LedgerEntry, LedgerHead, MAX_SEQUENCE_NUMBER,
    SequenceExhausted, encode_entry_v1, entry_hash_v1,
};
pub use currency::{Currency, CurrencyError};
pub use idempotency::IdempotencyStrategy;
pub use integrity::{
    IntegrityBreak, StoredEntry, StoredTransaction, VerificationRecord, VerificationReport, Verifier,
};
pub use key_admin::{AuthenticationError, KeyAdmin, KeyAdminError};
pub use key_cache::{CacheLookup, CachedKey, DEFAULT_KEY_CACHE_CAPACITY, FillTicket, KeyCache};
pub use keys::{ApiKeyRecord, ApiKeySecret, AuthError, KeyEpoch, KeyHash, Owner, Scope, Scopes};
pub use ledger::tree::{
    BuildTreeError, ConsistencyProof, InclusionProof, ProofRequestError, TREE_BACKFILL_CHUNK, TreeHead,
    tlog_proof_extra,
};
pub use ledger::{
    BatchGroup, BatchRequest, EntriesPage, Expectations, GroupAnswer, IngestError, IntegrityStatus, Ledger,
    MAX_PAGE_SIZE, MAX_WRITES_IN_FLIGHT, PageError, SingleAnswer, SingleGroup, SinglesAnswer, joins,
    valid_batch,
};
pub use ledgers::{DEFAULT_LEDGER, LedgerInfo, LedgerName, LedgerNameError, MAX_LEDGER_NAME_CHARS};
pub use memory::{MemoryCatalog, MemoryKeyStore, MemoryLedger, MemorySnapshot};
pub use merkle::{Frontier, ProofError, TreeHash, verify_consistency, verify_inclusion};
pub use metadata::{Metadata, MetadataError};
pub use ports::{
    AppendSession, CacheFence, KeyChange, KeyChanges, KeyStore, LedgerCatalog, LedgerStore, StoreError,
    Sweep, VerificationSource, commit_if_fence_admits,
};
pub use schema::MigrationInfo;
pub use tiles::{Tile, TileCoord, TreeError, TreeSnapshot, TreeState, TreeUpdate};
pub use timestamp::{Timestamp, TimestampError};
pub use transaction::{
    SubmittedTransaction, Transaction, TransactionErrors, TransactionFieldError, TransactionId,
    TransactionIdError,
};
pub use writer::{Fence, WriterState};
