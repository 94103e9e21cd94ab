//! The verifier: walks stored rows in sequence order and reports the first break.
//!
//! It consumes one record at a time and keeps only the previous position, so
//! memory stays constant whatever the ledger's size.

use std::collections::BTreeMap;
use std::fmt;

use uuid::Uuid;

use crate::chain::{ChainPosition, EntryContent, EntryHash, LedgerEntry, LedgerHead, entry_hash_v1};
use crate::merkle::{Frontier, TreeHash, TreeHead, entry_leaf_hash};
use crate::ports::StoreError;
use crate::tiles::TreeState;

/// A `ledger_entries` row as stored, before any check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The row's sequence number.
    pub sequence_number: u64,
    /// The transaction the row points at.
    pub transaction_id: Uuid,
    /// Stored link to the previous entry.
    pub prev_hash: EntryHash,
    /// Stored hash of this entry.
    pub entry_hash: EntryHash,
    /// Stored recording time, µs since the epoch.
    pub recorded_at_micros: i64,
}

/// A `transactions` row as stored, before any check; its values may be ones the
/// API would refuse if someone edited the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTransaction {
    /// The row's id.
    pub transaction_id: Uuid,
    /// Decimal text as the database renders it.
    pub amount: String,
    /// Currency text.
    pub currency: String,
    /// µs since the epoch, if present.
    pub occurred_at_micros: Option<i64>,
    /// Metadata as stored.
    pub metadata: BTreeMap<String, String>,
}

impl StoredTransaction {
    /// The stored form of a valid transaction.
    pub fn of(entry: &LedgerEntry) -> (StoredEntry, StoredTransaction) {
        let transaction = &entry.transaction;
        (
            StoredEntry {
                sequence_number: entry.sequence_number,
                transaction_id: *transaction.transaction_id.as_uuid(),
                prev_hash: entry.prev_hash,
                entry_hash: entry.entry_hash,
                recorded_at_micros: entry.recorded_at.unix_micros(),
            },
            StoredTransaction {
                transaction_id: *transaction.transaction_id.as_uuid(),
                amount: transaction.amount.to_canonical_string(),
                currency: transaction.currency.code().to_owned(),
                occurred_at_micros: transaction.occurred_at.map(|time| time.unix_micros()),
                metadata: transaction.metadata.as_map().clone(),
            },
        )
    }

    /// Reads metadata stored as a JSON object. A value someone tampered into a
    /// non-string is kept as its JSON text, so the verifier still hashes the row
    /// and reports the mismatch instead of failing to read it.
    pub fn metadata_from_json(text: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|error| StoreError::Corrupt(format!("metadata {text}: {error}")))?;
        Ok(object
            .into_iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => (key, text),
                other => (key, other.to_string()),
            })
            .collect())
    }

    /// Parses the stored values back into a valid transaction, or names the
    /// value someone edited into something the API would refuse.
    fn to_transaction(&self) -> Result<crate::transaction::Transaction, String> {
        use crate::{Amount, Currency, Metadata, Timestamp, TransactionId};
        let occurred_at = self
            .occurred_at_micros
            .map(Timestamp::from_unix_micros)
            .transpose()
            .map_err(|error| format!("occurred_at {error}"))?;
        Ok(crate::transaction::Transaction {
            transaction_id: TransactionId::from_uuid(self.transaction_id).map_err(|e| e.to_string())?,
            amount: Amount::parse(&self.amount).map_err(|e| e.to_string())?,
            currency: Currency::parse(&self.currency).map_err(|e| e.to_string())?,
            occurred_at,
            metadata: Metadata::from_map(self.metadata.clone()).map_err(|e| e.to_string())?,
        })
    }
}

impl StoredEntry {
    /// What this row's v1 hash covers besides `prev_hash` and the sequence
    /// number, read from the row and its transaction row as stored.
    pub fn content<'a>(&'a self, transaction: &'a StoredTransaction) -> EntryContent<'a> {
        EntryContent {
            transaction_id: &self.transaction_id,
            amount: &transaction.amount,
            currency: &transaction.currency,
            occurred_at_micros: transaction.occurred_at_micros,
            recorded_at_micros: self.recorded_at_micros,
            metadata: &transaction.metadata,
        }
    }

    /// The domain entry for this row and its transaction row (as stored, not
    /// verified); a row edited into values the API would refuse is
    /// [`StoreError::Corrupt`] naming the entry and the value.
    pub fn to_entry(&self, transaction: &StoredTransaction) -> Result<LedgerEntry, StoreError> {
        let corrupt =
            |detail: String| StoreError::Corrupt(format!("entry {}: {detail}", self.sequence_number));
        let recorded_at = crate::Timestamp::from_unix_micros(self.recorded_at_micros)
            .map_err(|error| corrupt(format!("recorded_at {error}")))?;
        Ok(LedgerEntry {
            sequence_number: self.sequence_number,
            transaction: transaction.to_transaction().map_err(corrupt)?,
            prev_hash: self.prev_hash,
            entry_hash: self.entry_hash,
            recorded_at,
        })
    }
}

/// What a store streams to the verifier after the head, in this order: every
/// entry past the starting point in ascending sequence order with its
/// transaction (if any), then — on a full sweep — every transaction no entry
/// points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerificationRecord {
    /// An entry row joined to its transaction row.
    Entry(StoredEntry, Option<StoredTransaction>),
    /// A transaction row no entry points at.
    OrphanTransaction(StoredTransaction),
}

/// The first thing wrong with the ledger, located as precisely as the rows allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IntegrityBreak {
    /// The stored hash is not the hash of the stored content.
    #[error("hash mismatch at sequence {sequence}: stored {stored}, recomputed {recomputed}")]
    HashMismatch {
        /// Where.
        sequence: u64,
        /// The row's `entry_hash`.
        stored: EntryHash,
        /// The hash of the row's content.
        recomputed: EntryHash,
    },
    /// `prev_hash` does not point at the previous entry's hash.
    #[error(
        "broken link at sequence {sequence}: prev_hash {stored_prev_hash}, previous entry's hash {expected_prev_hash}"
    )]
    BrokenLink {
        /// Where.
        sequence: u64,
        /// The row's `prev_hash`.
        stored_prev_hash: EntryHash,
        /// The previous entry's hash.
        expected_prev_hash: EntryHash,
    },
    /// A sequence number is missing.
    #[error("sequence gap at sequence {expected}: the next entry found is {found}")]
    SequenceGap {
        /// The missing sequence number.
        expected: u64,
        /// The sequence number found instead.
        found: u64,
    },
    /// An entry recorded earlier than the entry before it: the service never
    /// records so (it keeps the head's time when the clock goes back), so the
    /// rows were rewritten.
    #[error(
        "recorded_at decreases at sequence {sequence}: {} is earlier than {} at sequence {previous_sequence}",
        crate::Timestamp::describe_micros(*recorded_at_micros),
        crate::Timestamp::describe_micros(*previous_recorded_at_micros)
    )]
    RecordedAtDecreased {
        /// Where.
        sequence: u64,
        /// Its `recorded_at`, µs since the epoch.
        recorded_at_micros: i64,
        /// The entry before it.
        previous_sequence: u64,
        /// That entry's `recorded_at`, µs since the epoch.
        previous_recorded_at_micros: i64,
    },
    /// A sequence number appears twice or goes backwards.
    #[error("duplicate sequence {sequence}: it follows entry {previous}")]
    SequenceDuplicate {
        /// The repeated sequence number.
        sequence: u64,
        /// The sequence number of the entry before it.
        previous: u64,
    },
    /// An entry whose transaction row is missing.
    #[error("entry without transaction at sequence {sequence}: transaction {transaction_id} not found")]
    EntryWithoutTransaction {
        /// Where.
        sequence: u64,
        /// The id the entry points at.
        transaction_id: Uuid,
    },
    /// A transaction row no entry points at.
    #[error("transaction without entry: transaction {transaction_id} is not in the chain")]
    TransactionWithoutEntry {
        /// The orphan's id.
        transaction_id: Uuid,
    },
    /// The head row does not match the last entry.
    #[error(
        "head mismatch at sequence {head_sequence}: head says {head_sequence}/{head_hash}, the chain ends at {last_sequence}/{last_hash}"
    )]
    HeadMismatch {
        /// The head's sequence number.
        head_sequence: u64,
        /// The head's hash.
        head_hash: EntryHash,
        /// Sequence number of the last entry found.
        last_sequence: u64,
        /// Hash of the last entry found.
        last_hash: EntryHash,
    },
    /// The stored Merkle tree is not the tree of the entries: its size, root or
    /// compact range differs from the one rebuilt while walking them.
    #[error(
        "tree mismatch: the stored tree has {stored_size} leaves and root {stored_root}, the entries give {rebuilt_size} leaves and root {rebuilt_root}{}",
        if stored_size < rebuilt_size { " (the tree is behind the chain: run `invario migrate` to build it)" } else { "" }
    )]
    TreeMismatch {
        /// Leaves in the stored tree.
        stored_size: u64,
        /// Its stored root.
        stored_root: TreeHash,
        /// Entries walked.
        rebuilt_size: u64,
        /// The root rebuilt from them.
        rebuilt_root: TreeHash,
    },
    /// The tree is not consistent with a checkpoint signed earlier (read from
    /// outside the database): history was rewritten, truncated or forked.
    #[error(
        "checkpoint inconsistent: the signed checkpoint at size {checkpoint_size} (root {checkpoint_root}) is not a prefix of the tree now at size {tree_size} (root {tree_root})"
    )]
    CheckpointInconsistent {
        /// The signed checkpoint's size.
        checkpoint_size: u64,
        /// Its root.
        checkpoint_root: TreeHash,
        /// The tree's size now.
        tree_size: u64,
        /// The tree's root now.
        tree_root: TreeHash,
    },
    /// The ledger no longer passes through a digest saved earlier.
    #[error(
        "digest mismatch at sequence {sequence}: the saved digest says {expected}, the ledger holds {found}"
    )]
    DigestMismatch {
        /// The digest's sequence number.
        sequence: u64,
        /// The digest's hash.
        expected: EntryHash,
        /// The hash found there (zeros when the ledger is shorter).
        found: EntryHash,
    },
}

impl IntegrityBreak {
    /// The sequence number the break is reported at, if it has one.
    pub fn sequence(&self) -> Option<u64> {
        match self {
            IntegrityBreak::HashMismatch { sequence, .. }
            | IntegrityBreak::BrokenLink { sequence, .. }
            | IntegrityBreak::RecordedAtDecreased { sequence, .. }
            | IntegrityBreak::SequenceDuplicate { sequence, .. }
            | IntegrityBreak::EntryWithoutTransaction { sequence, .. }
            | IntegrityBreak::DigestMismatch { sequence, .. } => Some(*sequence),
            IntegrityBreak::SequenceGap { expected, .. } => Some(*expected),
            IntegrityBreak::HeadMismatch { head_sequence, .. } => Some(*head_sequence),
            IntegrityBreak::TreeMismatch { stored_size, rebuilt_size, .. } => {
                Some(*stored_size.min(rebuilt_size))
            }
            IntegrityBreak::CheckpointInconsistent { checkpoint_size, .. } => Some(*checkpoint_size),
            IntegrityBreak::TransactionWithoutEntry { .. } => None,
        }
    }

    /// A stable machine name for the kind, as logged and exported.
    pub fn kind(&self) -> &'static str {
        match self {
            IntegrityBreak::HashMismatch { .. } => "hash_mismatch",
            IntegrityBreak::BrokenLink { .. } => "broken_link",
            IntegrityBreak::RecordedAtDecreased { .. } => "recorded_at_decreased",
            IntegrityBreak::SequenceGap { .. } => "sequence_gap",
            IntegrityBreak::SequenceDuplicate { .. } => "sequence_duplicate",
            IntegrityBreak::EntryWithoutTransaction { .. } => "entry_without_transaction",
            IntegrityBreak::TransactionWithoutEntry { .. } => "transaction_without_entry",
            IntegrityBreak::HeadMismatch { .. } => "head_mismatch",
            IntegrityBreak::TreeMismatch { .. } => "tree_mismatch",
            IntegrityBreak::CheckpointInconsistent { .. } => "checkpoint_inconsistent",
            IntegrityBreak::DigestMismatch { .. } => "digest_mismatch",
        }
    }
}

/// The outcome of a verification run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationReport {
    /// Entries checked in this run.
    pub entries_checked: u64,
    /// The last position verified (the checkpoint to resume from).
    pub verified: ChainPosition,
    /// The head the run verified against.
    pub head: LedgerHead,
    /// The first break found, if any.
    pub first_break: Option<IntegrityBreak>,
    /// The row at which the break was found, for forensics (absent for breaks
    /// found at the end, such as a head mismatch).
    pub broken_record: Option<VerificationRecord>,
    /// The Merkle tree's compact range rebuilt up to `verified`, when the run
    /// rebuilt it (a full run, or one resumed with a known range).
    pub rebuilt_tree: Option<Frontier>,
}

impl VerificationReport {
    /// True when no break was found.
    pub fn is_intact(&self) -> bool {
        self.first_break.is_none()
    }
}

impl fmt::Display for VerificationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.first_break {
            None => write!(
                f,
                "ledger intact: {} entries checked, head {} {}",
                self.entries_checked, self.verified.sequence_number, self.verified.entry_hash
            ),
            Some(found) => write!(f, "ledger broken after {} entries checked: {found}", self.entries_checked),
        }
    }
}

/// Streaming verifier. Feed it the records of [`VerificationRecord`] in order,
/// then [`finish`](Verifier::finish). It stops at the first break.
#[derive(Debug, Clone)]
pub struct Verifier {
    head: LedgerHead,
    last: ChainPosition,
    /// The last entry's recording time; unknown at a resumed start, so the
    /// first entry after it is not compared (the full sweep covers that pair).
    last_recorded_at_micros: Option<i64>,
    digest: Option<ChainPosition>,
    entries_checked: u64,
    first_break: Option<IntegrityBreak>,
    broken_record: Option<VerificationRecord>,
    /// The tree rebuilt from the entries walked, when the start's is known.
    rebuilt_tree: Option<Frontier>,
    /// The stored tree to compare it with at the end.
    stored_tree: Option<TreeState>,
    /// Signed tree heads the rebuilt tree must pass through, largest size first
    /// (the next one to meet is last).
    signed_roots: Vec<TreeHead>,
}

impl Verifier {
    /// Verifies the whole ledger against `head` (read in the same snapshot as the rows).
    pub fn full(head: LedgerHead) -> Self {
        let mut verifier = Self::resume(head, ChainPosition::GENESIS);
        verifier.rebuilt_tree = Some(Frontier::EMPTY);
        verifier
    }

    /// Verifies the entries after `checkpoint`, a position verified earlier.
    pub fn resume(head: LedgerHead, checkpoint: ChainPosition) -> Self {
        let mut verifier = Verifier {
            head,
            last: checkpoint,
            last_recorded_at_micros: None,
            digest: None,
            entries_checked: 0,
            first_break: None,
            broken_record: None,
            rebuilt_tree: None,
            stored_tree: None,
            signed_roots: Vec::new(),
        };
        if head.sequence_number < checkpoint.sequence_number
            || (head.sequence_number == checkpoint.sequence_number
                && head.entry_hash != checkpoint.entry_hash)
        {
            verifier.first_break = Some(verifier.head_mismatch());
        }
        verifier
    }

    /// Continues rebuilding the Merkle tree from `frontier`, the compact range
    /// at the starting checkpoint (ignored unless it has that size).
    pub fn resume_tree(mut self, frontier: Frontier) -> Self {
        if frontier.size() == self.last.sequence_number {
            self.rebuilt_tree = Some(frontier);
        }
        self
    }

    /// Also requires the stored tree to be the tree of the entries: same size,
    /// root and compact range as the one rebuilt (checked at the end, when the
    /// tree was rebuilt from the start).
    pub fn expect_tree(mut self, stored: TreeState) -> Self {
        self.stored_tree = Some(stored);
        self
    }

    /// Also requires the tree rebuilt from the entries to have each of these
    /// roots at its size (checkpoints signed earlier, verified by the caller):
    /// a rewritten or truncated history fails as `checkpoint_inconsistent`.
    /// Only meaningful for a run that rebuilds the tree from the start.
    pub fn expect_signed_roots(mut self, mut roots: Vec<TreeHead>) -> Self {
        roots.sort_unstable_by(|a, b| b.cmp(a));
        roots.dedup();
        if let Some(&TreeHead { size: 0, root }) = roots.last() {
            roots.pop();
            if root != crate::merkle::empty_root() {
                self.record_break(IntegrityBreak::CheckpointInconsistent {
                    checkpoint_size: 0,
                    checkpoint_root: root,
                    tree_size: 0,
                    tree_root: crate::merkle::empty_root(),
                });
            }
        }
        self.signed_roots = roots;
        self
    }

    /// Also requires that the ledger still passes through `digest`, a head
    /// exported earlier. Only meaningful when the digest lies after the starting point.
    pub fn expect_digest(mut self, digest: ChainPosition) -> Self {
        if digest.sequence_number == self.last.sequence_number && digest.entry_hash != self.last.entry_hash {
            self.record_break(IntegrityBreak::DigestMismatch {
                sequence: digest.sequence_number,
                expected: digest.entry_hash,
                found: self.last.entry_hash,
            });
        }
        self.digest = Some(digest);
        self
    }

    /// The first break so far, if any; once set, further records are ignored.
    pub fn first_break(&self) -> Option<&IntegrityBreak> {
        self.first_break.as_ref()
    }

    /// Checks one record. Returns `false` once a break is known (stop feeding).
    pub fn feed(&mut self, record: &VerificationRecord) -> bool {
        if self.first_break.is_some() {
            return false;
        }
        let outcome = match record {
            VerificationRecord::Entry(entry, transaction) => self.check_entry(entry, transaction.as_ref()),
            // Orphans come after every entry: the chain must have reached the head first.
            VerificationRecord::OrphanTransaction(transaction) => {
                self.check_end_of_entries().and(Err(IntegrityBreak::TransactionWithoutEntry {
                    transaction_id: transaction.transaction_id,
                }))
            }
        };
        match outcome {
            Ok(()) => true,
            Err(found) => {
                self.record_break(found);
                self.broken_record = Some(record.clone());
                false
            }
        }
    }

    /// Ends the run: checks the chain reached the head (and the digest).
    pub fn finish(mut self) -> VerificationReport {
        if self.first_break.is_none()
            && let Err(found) = self
                .check_end_of_entries()
                .and_then(|()| self.check_tree())
                .and_then(|()| self.check_signed_roots_met())
        {
            self.first_break = Some(found);
        }
        // Postcondition: an intact run ends exactly at the head it was given.
        debug_assert!(self.first_break.is_some() || self.last == self.head.position());
        VerificationReport {
            entries_checked: self.entries_checked,
            verified: self.last,
            head: self.head,
            rebuilt_tree: self.rebuilt_tree.filter(|_| self.first_break.is_none()),
            first_break: self.first_break,
            broken_record: self.broken_record,
        }
    }

    /// Once every entry was seen: no signed tree head may lie beyond the ledger (a truncation).
    fn check_signed_roots_met(&self) -> Result<(), IntegrityBreak> {
        match (self.signed_roots.last(), &self.rebuilt_tree) {
            (Some(&TreeHead { size, root }), Some(rebuilt)) => Err(IntegrityBreak::CheckpointInconsistent {
                checkpoint_size: size,
                checkpoint_root: root,
                tree_size: rebuilt.size(),
                tree_root: rebuilt.root(),
            }),
            _ => Ok(()),
        }
    }

    /// Once every entry was seen: the stored tree must be the rebuilt one.
    fn check_tree(&self) -> Result<(), IntegrityBreak> {
        let (Some(stored), Some(rebuilt)) = (&self.stored_tree, &self.rebuilt_tree) else { return Ok(()) };
        if stored.head.size != rebuilt.size()
            || stored.head.root != rebuilt.root()
            || stored.frontier != *rebuilt
        {
            return Err(IntegrityBreak::TreeMismatch {
                stored_size: stored.head.size,
                stored_root: stored.head.root,
                rebuilt_size: rebuilt.size(),
                rebuilt_root: rebuilt.root(),
            });
        }
        Ok(())
    }

    /// Once every entry was seen: the chain must end at the head and reach the digest.
    fn check_end_of_entries(&self) -> Result<(), IntegrityBreak> {
        if self.last != self.head.position() {
            return Err(self.head_mismatch());
        }
        match self.digest {
            Some(digest) if digest.sequence_number > self.last.sequence_number => {
                Err(IntegrityBreak::DigestMismatch {
                    sequence: digest.sequence_number,
                    expected: digest.entry_hash,
                    found: EntryHash::GENESIS,
                })
            }
            _ => Ok(()),
        }
    }

    fn record_break(&mut self, found: IntegrityBreak) {
        if self.first_break.is_none() {
            self.first_break = Some(found);
        }
    }

    fn head_mismatch(&self) -> IntegrityBreak {
        IntegrityBreak::HeadMismatch {
            head_sequence: self.head.sequence_number,
            head_hash: self.head.entry_hash,
            last_sequence: self.last.sequence_number,
            last_hash: self.last.entry_hash,
        }
    }

    fn check_entry(
        &mut self,
        entry: &StoredEntry,
        transaction: Option<&StoredTransaction>,
    ) -> Result<(), IntegrityBreak> {
        let sequence = entry.sequence_number;
        // Past the largest u64 nothing can follow: any entry there repeats one.
        let Some(expected) = self.last.sequence_number.checked_add(1) else {
            return Err(IntegrityBreak::SequenceDuplicate { sequence, previous: self.last.sequence_number });
        };
        if sequence < expected {
            return Err(IntegrityBreak::SequenceDuplicate { sequence, previous: self.last.sequence_number });
        }
        if sequence > expected {
            return Err(IntegrityBreak::SequenceGap { expected, found: sequence });
        }
        if sequence > self.head.sequence_number {
            return Err(IntegrityBreak::HeadMismatch {
                head_sequence: self.head.sequence_number,
                head_hash: self.head.entry_hash,
                last_sequence: sequence,
                last_hash: entry.entry_hash,
            });
        }
        let Some(transaction) = transaction else {
            return Err(IntegrityBreak::EntryWithoutTransaction {
                sequence,
                transaction_id: entry.transaction_id,
            });
        };
        if entry.prev_hash != self.last.entry_hash {
            return Err(IntegrityBreak::BrokenLink {
                sequence,
                stored_prev_hash: entry.prev_hash,
                expected_prev_hash: self.last.entry_hash,
            });
        }
        let recomputed = recompute_hash(entry, transaction);
        if recomputed != entry.entry_hash {
            return Err(IntegrityBreak::HashMismatch { sequence, stored: entry.entry_hash, recomputed });
        }
        if let Some(previous) = self.last_recorded_at_micros
            && entry.recorded_at_micros < previous
        {
            return Err(IntegrityBreak::RecordedAtDecreased {
                sequence,
                recorded_at_micros: entry.recorded_at_micros,
                previous_sequence: self.last.sequence_number,
                previous_recorded_at_micros: previous,
            });
        }
        self.entries_checked += 1;
        self.last = ChainPosition { sequence_number: sequence, entry_hash: entry.entry_hash };
        self.last_recorded_at_micros = Some(entry.recorded_at_micros);
        if let Some(tree) = &mut self.rebuilt_tree {
            tree.push(entry_leaf_hash(&entry.entry_hash), |_| {});
            while let Some(&TreeHead { size, root }) = self.signed_roots.last()
                && size == tree.size()
            {
                if root != tree.root() {
                    return Err(IntegrityBreak::CheckpointInconsistent {
                        checkpoint_size: size,
                        checkpoint_root: root,
                        tree_size: size,
                        tree_root: tree.root(),
                    });
                }
                self.signed_roots.pop();
            }
        }
        if sequence == self.head.sequence_number && entry.entry_hash != self.head.entry_hash {
            return Err(self.head_mismatch());
        }
        if let Some(digest) = self.digest
            && digest.sequence_number == sequence
            && digest.entry_hash != entry.entry_hash
        {
            return Err(IntegrityBreak::DigestMismatch {
                sequence,
                expected: digest.entry_hash,
                found: entry.entry_hash,
            });
        }
        Ok(())
    }
}

/// The v1 hash of a stored row, whatever values it holds.
pub fn recompute_hash(entry: &StoredEntry, transaction: &StoredTransaction) -> EntryHash {
    entry_hash_v1(&entry.prev_hash, entry.sequence_number, &entry.content(transaction))
}
