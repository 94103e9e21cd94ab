//! Hash chain format v1: the public, stable encoding every entry hash commits to.
//!
//! ```text
//! entry_hash(n) = SHA-256( "invario.ledger.v1" 0x00
//!                          prev_hash        32 bytes (genesis: 32 × 0x00)
//!                          sequence_number  u64 big-endian
//!                          transaction_id   16 bytes (UUID bytes)
//!                          amount           u32 BE length + ASCII decimal, scale as stored
//!                          currency         3 ASCII bytes
//!                          occurred_at      i64 BE µs since the Unix epoch, or 0x8000000000000000 when absent
//!                          recorded_at      i64 BE µs since the Unix epoch
//!                          metadata         u32 BE count, then per key in byte order:
//!                                           u32 BE len + key bytes, u32 BE len + value bytes )
//! ```
//!
//! The encoding works on the stored representation ([`EntryContent`]) rather
//! than on validated types so the verifier can recompute the hash of a row
//! someone tampered into an invalid value.

use std::fmt;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::merkle::{TreeHash, leaf_hash};
use crate::timestamp::Timestamp;
use crate::transaction::{Transaction, TransactionId};

/// Domain separator opening every v1 entry encoding, NUL included.
pub const FORMAT_V1_DOMAIN: &[u8; 18] = b"invario.ledger.v1\0";
/// Name of this format as exported in digests.
pub const FORMAT_V1_NAME: &str = "invario.ledger.v1";
/// The eight bytes that stand for an absent `occurred_at`.
pub const ABSENT_OCCURRED_AT: [u8; 8] = i64::MIN.to_be_bytes();

/// A SHA-256 value in the chain: an entry's hash, or the `prev_hash` pointing at one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryHash(pub [u8; 32]);

/// Why a text is not a hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a hash must be 64 hexadecimal characters (got {0:?})")]
pub struct EntryHashError(pub String);

impl EntryHash {
    /// The genesis `prev_hash`: 32 zero bytes.
    pub const GENESIS: EntryHash = EntryHash([0; 32]);

    /// Parses 64 hex characters (either case).
    pub fn from_hex(text: &str) -> Result<Self, EntryHashError> {
        let mut bytes = [0; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| EntryHashError(text.to_owned()))?;
        Ok(EntryHash(bytes))
    }

    /// Takes exactly 32 bytes, as stored in a `bytea`/`blob` column.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, EntryHashError> {
        <[u8; 32]>::try_from(bytes).map(EntryHash).map_err(|_| EntryHashError(hex::encode(bytes)))
    }

    /// Lower-case hex, as the API and the CLI print it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// [`to_hex`](Self::to_hex) into `buffer`, without allocating (receipts
    /// print two hashes each, thousands to a batch).
    fn hex_in<'b>(&self, buffer: &'b mut [u8; 64]) -> &'b str {
        // 32 bytes fill 64 hex digits exactly, and hex digits are ASCII:
        // neither step can fail, and the fallback is never taken.
        match hex::encode_to_slice(self.0, buffer) {
            Ok(()) => std::str::from_utf8(buffer).unwrap_or_default(),
            Err(_) => "",
        }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex_in(&mut [0; 64]))
    }
}

impl fmt::Debug for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryHash({})", self.to_hex())
    }
}

impl serde::Serialize for EntryHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.hex_in(&mut [0; 64]))
    }
}

/// Everything an entry hash covers besides `prev_hash` and the sequence number,
/// in the form it is stored. Built from a [`Transaction`] on the way in, or from
/// a raw row by the verifier.
#[derive(Debug, Clone, Copy)]
pub struct EntryContent<'a> {
    /// UUID of the transaction.
    pub transaction_id: &'a Uuid,
    /// Decimal text, scale as stored.
    pub amount: &'a str,
    /// Currency code bytes.
    pub currency: &'a str,
    /// µs since the epoch, if the client gave a time.
    pub occurred_at_micros: Option<i64>,
    /// µs since the epoch, set by the server.
    pub recorded_at_micros: i64,
    /// Key/value pairs; must iterate in key byte order (a `BTreeMap` does).
    pub metadata: &'a std::collections::BTreeMap<String, String>,
}

/// Where the encoding goes: a hasher, or a buffer (for auditors and benchmarks).
trait EncodingSink {
    fn put(&mut self, bytes: &[u8]);
}

impl EncodingSink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl EncodingSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

fn put_len_prefixed(sink: &mut impl EncodingSink, bytes: &[u8]) {
    // Every length is bounded far below 4 GiB by the domain rules (amount ≤ 30
    // bytes, metadata ≤ 4 KiB); saturating keeps tampered rows hashable anyway.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    sink.put(&len.to_be_bytes());
    sink.put(bytes);
}

fn encode_v1(
    sink: &mut impl EncodingSink,
    prev_hash: &EntryHash,
    sequence_number: u64,
    content: &EntryContent<'_>,
) {
    sink.put(FORMAT_V1_DOMAIN);
    sink.put(&prev_hash.0);
    sink.put(&sequence_number.to_be_bytes());
    sink.put(content.transaction_id.as_bytes());
    put_len_prefixed(sink, content.amount.as_bytes());
    sink.put(content.currency.as_bytes());
    match content.occurred_at_micros {
        Some(micros) => sink.put(&micros.to_be_bytes()),
        None => sink.put(&ABSENT_OCCURRED_AT),
    }
    sink.put(&content.recorded_at_micros.to_be_bytes());
    let count = u32::try_from(content.metadata.len()).unwrap_or(u32::MAX);
    sink.put(&count.to_be_bytes());
    for (key, value) in content.metadata {
        put_len_prefixed(sink, key.as_bytes());
        put_len_prefixed(sink, value.as_bytes());
    }
}

/// The exact bytes format v1 hashes, for auditors and for benchmarking plain SHA-256.
pub fn encode_entry_v1(prev_hash: &EntryHash, sequence_number: u64, content: &EntryContent<'_>) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(128);
    encode_v1(&mut buffer, prev_hash, sequence_number, content);
    buffer
}

/// The v1 entry hash of `content` at `sequence_number`, chained to `prev_hash`.
pub fn entry_hash_v1(prev_hash: &EntryHash, sequence_number: u64, content: &EntryContent<'_>) -> EntryHash {
    let mut hasher = Sha256::new();
    encode_v1(&mut hasher, prev_hash, sequence_number, content);
    EntryHash(hasher.finalize().into())
}

/// The last entry's position in the chain: what a new entry links to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ChainPosition {
    /// Sequence number of the entry (0 before the first).
    pub sequence_number: u64,
    /// That entry's hash ([`EntryHash::GENESIS`] before the first).
    pub entry_hash: EntryHash,
}

/// The old name of [`ChainPosition`], kept so embedders' code compiles:
/// "checkpoint" now means only the signed tree head
/// ([`crate::checkpoint::Checkpoint`]).
#[deprecated(since = "0.1.0", note = "renamed `ChainPosition`; a checkpoint is the signed tree head")]
pub type Checkpoint = ChainPosition;

impl ChainPosition {
    /// The position before the first entry.
    pub const GENESIS: ChainPosition = ChainPosition { sequence_number: 0, entry_hash: EntryHash::GENESIS };
}

/// The ledger head as stored: last sequence number, its hash and when it was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LedgerHead {
    /// Sequence number of the last entry (0 when empty).
    pub sequence_number: u64,
    /// Hash of the last entry (zeros when empty).
    pub entry_hash: EntryHash,
    /// When the last entry was recorded (`None` when empty).
    pub recorded_at: Option<Timestamp>,
}

impl LedgerHead {
    /// The head of an empty ledger.
    pub const EMPTY: LedgerHead =
        LedgerHead { sequence_number: 0, entry_hash: EntryHash::GENESIS, recorded_at: None };

    /// The head as a chain position.
    pub fn position(&self) -> ChainPosition {
        ChainPosition { sequence_number: self.sequence_number, entry_hash: self.entry_hash }
    }

    /// The old name of [`position`](Self::position).
    #[deprecated(since = "0.1.0", note = "renamed `position`; a checkpoint is the signed tree head")]
    pub fn checkpoint(&self) -> ChainPosition {
        self.position()
    }
}

/// A ledger entry's receipt, borrowed from it: see [`LedgerEntry::receipt`].
#[derive(Debug, serde::Serialize)]
pub struct EntryReceipt<'a> {
    /// The client's id.
    pub transaction_id: &'a TransactionId,
    /// Exact amount.
    pub amount: &'a crate::amount::Amount,
    /// ISO 4217 code.
    pub currency: &'a crate::currency::Currency,
    /// When the client says it happened.
    pub occurred_at: &'a Option<Timestamp>,
    /// The client's metadata.
    pub metadata: &'a crate::metadata::Metadata,
    /// When the server recorded it.
    pub recorded_at: &'a Timestamp,
    /// Its place in the chain.
    pub sequence_number: u64,
    /// The previous entry's hash.
    pub prev_hash: &'a EntryHash,
    /// Its own hash.
    pub entry_hash: &'a EntryHash,
}

/// One entry of the ledger with the transaction it records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// 1, 2, 3, … without gaps.
    pub sequence_number: u64,
    /// The recorded transaction.
    pub transaction: Transaction,
    /// Hash of the previous entry ([`EntryHash::GENESIS`] for the first).
    pub prev_hash: EntryHash,
    /// This entry's v1 hash.
    pub entry_hash: EntryHash,
    /// When the server recorded it.
    pub recorded_at: Timestamp,
}

/// The largest sequence number a ledger can hold: both stores keep it in a
/// signed 64-bit column.
pub const MAX_SEQUENCE_NUMBER: u64 = i64::MAX as u64;

/// The ledger cannot take another entry: its sequence numbers are used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the ledger is full: no sequence number follows {after} (the largest is {max})",
    max = MAX_SEQUENCE_NUMBER
)]
pub struct SequenceExhausted {
    /// The sequence number no successor can follow.
    pub after: u64,
}

impl LedgerEntry {
    /// Builds the entry that follows `previous`, computing its hash; refuses
    /// when no sequence number is left (an overflow must never wrap or repeat).
    pub fn next(
        previous: ChainPosition,
        transaction: Transaction,
        recorded_at: Timestamp,
    ) -> Result<LedgerEntry, SequenceExhausted> {
        let sequence_number = previous
            .sequence_number
            .checked_add(1)
            .filter(|next| *next <= MAX_SEQUENCE_NUMBER)
            .ok_or(SequenceExhausted { after: previous.sequence_number })?;
        let amount = transaction.amount.to_canonical_string();
        let content = EntryContent {
            transaction_id: transaction.transaction_id.as_uuid(),
            amount: &amount,
            currency: transaction.currency.code(),
            occurred_at_micros: transaction.occurred_at.map(|time| time.unix_micros()),
            recorded_at_micros: recorded_at.unix_micros(),
            metadata: transaction.metadata.as_map(),
        };
        let entry_hash = entry_hash_v1(&previous.entry_hash, sequence_number, &content);
        Ok(LedgerEntry {
            sequence_number,
            transaction,
            prev_hash: previous.entry_hash,
            entry_hash,
            recorded_at,
        })
    }

    /// The receipt clients get (an API boundary): the transaction as recorded
    /// plus its place in the chain — everything needed to recompute its hash.
    pub fn receipt_json(&self) -> serde_json::Value {
        // Serialising borrowed fields cannot fail (no map has non-string keys).
        serde_json::to_value(self.receipt()).unwrap_or_default()
    }

    /// The receipt as a value to serialise straight to bytes (the same
    /// fields, in the same order, as [`LedgerEntry::receipt_json`]), so a
    /// response of many receipts builds no JSON tree.
    pub fn receipt(&self) -> EntryReceipt<'_> {
        let transaction = &self.transaction;
        EntryReceipt {
            transaction_id: &transaction.transaction_id,
            amount: &transaction.amount,
            currency: &transaction.currency,
            occurred_at: &transaction.occurred_at,
            metadata: &transaction.metadata,
            recorded_at: &self.recorded_at,
            sequence_number: self.sequence_number,
            prev_hash: &self.prev_hash,
            entry_hash: &self.entry_hash,
        }
    }

    /// This entry as a chain position.
    pub fn position(&self) -> ChainPosition {
        ChainPosition { sequence_number: self.sequence_number, entry_hash: self.entry_hash }
    }

    /// The old name of [`position`](Self::position).
    #[deprecated(since = "0.1.0", note = "renamed `position`; a checkpoint is the signed tree head")]
    pub fn checkpoint(&self) -> ChainPosition {
        self.position()
    }

    /// The transaction's id.
    pub fn transaction_id(&self) -> TransactionId {
        self.transaction.transaction_id
    }
}

/// The Merkle leaf hash of a ledger entry: its 32-byte `entry_hash` is the
/// leaf input (leaf `i` is the entry with sequence number `i + 1`).
pub fn entry_leaf_hash(entry_hash: &EntryHash) -> TreeHash {
    leaf_hash(entry_hash.as_bytes())
}
