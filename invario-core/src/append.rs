//! Planning an append: the idempotency and conflict rules, and the new entries'
//! hashes, decided from the head and the rows already stored. Adapters only
//! lock, read and write around this.

use std::collections::HashMap;

use crate::MAX_SEQUENCE_NUMBER;
use crate::chain::{ChainPosition, EntryHash, LedgerEntry, LedgerHead, SequenceExhausted};
use crate::merkle::{TreeHash, entry_leaf_hash};
use crate::ports::StoreError;
use crate::tiles::{Tile, TreeError, TreeSnapshot, TreeState, TreeUpdate, extend_tree, leaf_edge_tile};
use crate::timestamp::Timestamp;
use crate::transaction::{Transaction, TransactionErrors, TransactionFieldError, TransactionId};

/// Most transactions one batch may hold.
pub const MAX_BATCH_SIZE: usize = 10_000;

/// What an adapter read while holding the append lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendSnapshot {
    /// The head, locked for this append.
    pub head: LedgerHead,
    /// Entries already stored whose transaction id appears in the batch.
    pub existing: Vec<LedgerEntry>,
    /// The Merkle tree's state and right-edge tiles, read under the same lock.
    pub tree: TreeSnapshot,
}

/// The tree as an adapter read it under the append lock: the stored `state`,
/// the `stored_edge` tiles ([`stored_edge_tiles`](crate::tiles::stored_edge_tiles)
/// of its size), and the entry hashes of the last
/// [`unstored_leaves`](crate::tiles::unstored_leaves) entries up to its size,
/// in order. The partial level-0 tile, never stored, is rebuilt from those
/// entries here (the core hashes, never the adapter) and checked against the
/// stored frontier: an altered entry or tree state is refused as
/// [`StoreError::Corrupt`].
pub fn tree_snapshot(
    state: TreeState,
    stored_edge: Vec<Tile>,
    last_entry_hashes: &[EntryHash],
) -> Result<TreeSnapshot, StoreError> {
    TreeSnapshot::from_stored(state, stored_edge, &leaves_of(last_entry_hashes)).map_err(corrupt_tree)
}

/// The partial level-0 tile of the tree in `state`, rebuilt from the entry
/// hashes of its last [`unstored_leaves`](crate::tiles::unstored_leaves)
/// entries and checked against its frontier, as [`tree_snapshot`] does.
pub(crate) fn leaf_edge_from_entries(
    state: &TreeState,
    last_entry_hashes: &[EntryHash],
) -> Result<Option<Tile>, StoreError> {
    leaf_edge_tile(state, &leaves_of(last_entry_hashes)).map_err(corrupt_tree)
}

fn leaves_of(entry_hashes: &[EntryHash]) -> Vec<TreeHash> {
    entry_hashes.iter().map(entry_leaf_hash).collect()
}

/// Stored rows that do not rebuild the stored tree.
fn corrupt_tree(error: TreeError) -> StoreError {
    StoreError::Corrupt(error.to_string())
}

/// Whether a receipt's entry was written by this request or an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// Appended now.
    Created,
    /// The same transaction was already recorded; nothing was added.
    Replayed,
}

/// The answer for one submitted transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The entry recording it.
    pub entry: LedgerEntry,
    /// New or replayed.
    pub status: ReceiptStatus,
}

/// One item's answer as planned. A new entry is held once, by the plan's new
/// entries, and answered from there after the write (new entries are
/// answered in the order they were planned); cloning each into its receipt
/// too, and dropping the copy, was a tenth of a 1,000-row append's client
/// time (BENCHMARKS.md, "allocation diet").
#[derive(Debug, Clone, PartialEq, Eq)]
enum PlannedReceipt {
    /// The next of the plan's new entries.
    Created,
    /// An entry recorded before (stored, or planned earlier in the same write).
    Replayed(LedgerEntry),
}

/// Answers one planned item, taking a created item's entry from `created`.
/// Never `None` for a plan's own items: the planners push one new entry for
/// each `Created`, in order (the property tests compare every answer with
/// the model's).
fn receipt_of(planned: PlannedReceipt, created: &mut std::vec::IntoIter<LedgerEntry>) -> Option<Receipt> {
    match planned {
        PlannedReceipt::Created => {
            created.next().map(|entry| Receipt { entry, status: ReceiptStatus::Created })
        }
        PlannedReceipt::Replayed(entry) => Some(Receipt { entry, status: ReceiptStatus::Replayed }),
    }
}

/// Answers `planned`, in order, taking each created item's entry from `created`.
fn receipts_from(
    planned: Vec<PlannedReceipt>,
    created: &mut std::vec::IntoIter<LedgerEntry>,
) -> Vec<Receipt> {
    let count = planned.len();
    let receipts: Vec<Receipt> = planned.into_iter().filter_map(|item| receipt_of(item, created)).collect();
    debug_assert_eq!(receipts.len(), count, "one new entry per created item");
    receipts
}

/// The entries to write and the receipts to answer with.
///
/// Only the planners in this module build one (its fields are private), so
/// what an adapter's [`commit`](crate::AppendSession::commit) receives was
/// always decided and hashed by the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendPlan {
    receipts: Vec<PlannedReceipt>,
    new_entries: Vec<LedgerEntry>,
    new_head: LedgerHead,
    tree: Option<TreeUpdate>,
}

impl AppendPlan {
    /// The entries to insert, in sequence order (empty when every item was a replay).
    pub fn new_entries(&self) -> &[LedgerEntry] {
        &self.new_entries
    }

    /// The head once the entries are written.
    pub fn new_head(&self) -> LedgerHead {
        self.new_head
    }

    /// The head an adapter must write: `Some` only when the plan adds entries
    /// (a plan of replays alone leaves the head as it is). The one place this
    /// rule lives; adapters write what it says.
    pub fn head_move(&self) -> Option<LedgerHead> {
        (!self.new_entries.is_empty()).then_some(self.new_head)
    }

    /// One receipt per submitted transaction, in submission order (copies:
    /// the plan holds each new entry once; [`into_receipts`](Self::into_receipts) moves them).
    pub fn receipts(&self) -> Vec<Receipt> {
        receipts_from(self.receipts.clone(), &mut self.new_entries.clone().into_iter())
    }

    /// The tiles and tree state to write with the entries, in the same
    /// transaction (`None` when the plan adds nothing to the tree).
    pub fn tree_update(&self) -> Option<&TreeUpdate> {
        self.tree.as_ref()
    }

    /// The receipts, consuming the plan (once it is committed).
    pub fn into_receipts(self) -> Vec<Receipt> {
        receipts_from(self.receipts, &mut self.new_entries.into_iter())
    }

    /// Builds a plan from new entries chained on the snapshot's head, with the
    /// tree grown by their leaves, checking in debug builds that they really
    /// continue the head: a bug here would corrupt the chain.
    fn chained_on(
        snapshot: &AppendSnapshot,
        receipts: Vec<PlannedReceipt>,
        new_entries: Vec<LedgerEntry>,
    ) -> Result<AppendPlan, TreeError> {
        let head = snapshot.head;
        debug_assert_continues(head, &new_entries);
        let tree = if new_entries.is_empty() {
            None
        } else {
            let leaves = new_entries.iter().map(|entry| entry_leaf_hash(&entry.entry_hash));
            let update = extend_tree(&snapshot.tree, head.sequence_number, leaves)?;
            debug_assert_eq!(
                update.state.head.size,
                new_entries.last().map_or(0, |last| last.sequence_number)
            );
            Some(update)
        };
        let new_head = match new_entries.last() {
            Some(last) => LedgerHead {
                sequence_number: last.sequence_number,
                entry_hash: last.entry_hash,
                recorded_at: Some(last.recorded_at),
            },
            None => head,
        };
        Ok(AppendPlan { receipts, new_entries, new_head, tree })
    }
}

/// Plans building the tree for entries that have none yet (a ledger from
/// before the tree existed): `entries` must be the stored entries that follow
/// the tree's size, in order. Writes no entry and keeps the head.
pub fn plan_tree_backfill(
    snapshot: &AppendSnapshot,
    entries: &[LedgerEntry],
) -> Result<AppendPlan, TreeError> {
    let tree_size = snapshot.tree.state.head.size;
    let follows_the_tree =
        entries.iter().zip(tree_size + 1..).all(|(entry, expected)| entry.sequence_number == expected);
    let built = tree_size + entries.len() as u64;
    if !follows_the_tree || built > snapshot.head.sequence_number {
        return Err(TreeError::NotTheNextEntries { tree_size });
    }
    let leaves = entries.iter().map(|entry| entry_leaf_hash(&entry.entry_hash));
    let update = extend_tree(&snapshot.tree, tree_size, leaves)?;
    Ok(AppendPlan {
        receipts: Vec::new(),
        new_entries: Vec::new(),
        new_head: snapshot.head,
        tree: Some(update),
    })
}

/// Postcondition of every plan: entries numbered from the head on without a
/// gap, each linked to the one before, recorded times never decreasing.
fn debug_assert_continues(head: LedgerHead, new_entries: &[LedgerEntry]) {
    if cfg!(debug_assertions) {
        let mut previous = head.position();
        let mut previous_time = head.recorded_at;
        for entry in new_entries {
            debug_assert_eq!(Some(entry.sequence_number), previous.sequence_number.checked_add(1));
            debug_assert_eq!(entry.prev_hash, previous.entry_hash);
            debug_assert!(previous_time.is_none_or(|time| time <= entry.recorded_at));
            previous = entry.position();
            previous_time = Some(entry.recorded_at);
        }
    }
}

/// Why one item of a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemProblem {
    /// A field broke a validation rule.
    #[error(transparent)]
    Invalid(TransactionFieldError),
    /// The id is recorded already with other content.
    #[error(
        "transaction_id {transaction_id} is already recorded at sequence {existing_sequence} with different content"
    )]
    Conflict {
        /// The id.
        transaction_id: TransactionId,
        /// Where the recorded one sits.
        existing_sequence: u64,
    },
    /// The id appears earlier in the same batch.
    #[error("transaction_id {transaction_id} appears earlier in this batch, at index {first_index}")]
    DuplicateInBatch {
        /// The id.
        transaction_id: TransactionId,
        /// Index of its first appearance.
        first_index: usize,
    },
}

impl ItemProblem {
    /// The field to fix.
    pub fn field(&self) -> String {
        match self {
            ItemProblem::Invalid(error) => error.field(),
            ItemProblem::Conflict { .. } | ItemProblem::DuplicateInBatch { .. } => {
                "transaction_id".to_owned()
            }
        }
    }

    /// True for a conflict with a recorded transaction (HTTP 409 for a single item).
    pub fn is_conflict(&self) -> bool {
        matches!(self, ItemProblem::Conflict { .. })
    }
}

/// One refused item, by its index in the submitted batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedItem {
    /// Position in the batch, from 0.
    pub index: usize,
    /// What is wrong.
    pub problem: ItemProblem,
}

/// Why a whole batch was refused by the planner; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendRefusal {
    /// Items are invalid or conflict.
    #[error(transparent)]
    Rejected(#[from] BatchRejection),
    /// The ledger has no sequence numbers left for the new entries.
    #[error(transparent)]
    Exhausted(#[from] SequenceExhausted),
    /// The stored tree cannot be extended (behind the chain, or an edge tile missing).
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// A refused batch: nothing was written; every bad item is listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch rejected: {} item(s) refused; nothing was written", .items.len())]
pub struct BatchRejection {
    /// Every problem, ordered by index.
    pub items: Vec<RejectedItem>,
}

impl BatchRejection {
    /// Collects per-item validation failures.
    pub fn from_invalid(failures: impl IntoIterator<Item = (usize, TransactionErrors)>) -> Self {
        let items = failures
            .into_iter()
            .flat_map(|(index, errors)| {
                errors
                    .0
                    .into_iter()
                    .map(move |error| RejectedItem { index, problem: ItemProblem::Invalid(error) })
            })
            .collect();
        BatchRejection { items }
    }
}

/// Decides the outcome of appending `batch` on top of `snapshot`, all or nothing.
///
/// * the same id with the same content as a stored entry → that entry, replayed;
/// * the same id with other content → a conflict;
/// * an id twice in the batch → refused;
/// * anything else → a new entry chained after the head, recorded at
///   `now`, or at the head's time if the clock went backwards, so recorded
///   times never decrease along the chain.
pub fn plan_append(
    snapshot: &AppendSnapshot,
    batch: Vec<Transaction>,
    now: Timestamp,
) -> Result<AppendPlan, AppendRefusal> {
    let known = Known::stored_in(snapshot);
    let mut growth = Growth::on(&snapshot.head, now);
    let receipts = growth.plan_batch(&known, batch).map_err(|(refusal, _)| refusal)?;
    Ok(AppendPlan::chained_on(snapshot, receipts, growth.new_entries)?)
}

/// Most rows that batches joined into one write hold together
/// ([`plan_append_batches`]); a batch larger than this is written alone.
/// Past it the write gains little and the batches behind it wait longer.
pub const MAX_JOINED_ROWS: usize = 8_000;

/// Batches planned to go out in one write ([`plan_append_batches`]): each one
/// accepted whole or refused whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedPlan {
    outcomes: Vec<JoinedOutcome>,
    write: AppendPlan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum JoinedOutcome {
    Accepted(Vec<PlannedReceipt>),
    /// Refused; the batch is kept to be handed back if the write is redone.
    Refused(AppendRefusal, Vec<Transaction>),
}

impl JoinedPlan {
    /// What to write: the accepted batches' new entries and the head after them.
    pub fn write(&self) -> &AppendPlan {
        &self.write
    }

    /// One answer per batch, in the order given: its receipts, or why it was refused.
    pub fn into_outcomes(self) -> Vec<Result<Vec<Receipt>, AppendRefusal>> {
        // The accepted batches' new entries, in the order they were planned.
        let mut created = self.write.new_entries.into_iter();
        self.outcomes
            .into_iter()
            .map(|outcome| match outcome {
                JoinedOutcome::Accepted(receipts) => Ok(receipts_from(receipts, &mut created)),
                JoinedOutcome::Refused(refusal, _) => Err(refusal),
            })
            .collect()
    }

    /// The submitted batches back, in order (each receipt holds its item's content).
    pub fn into_batches(self) -> Vec<Vec<Transaction>> {
        let mut created = self.write.new_entries.into_iter();
        self.outcomes
            .into_iter()
            .map(|outcome| match outcome {
                JoinedOutcome::Accepted(receipts) => receipts_from(receipts, &mut created)
                    .into_iter()
                    .map(|receipt| receipt.entry.transaction)
                    .collect(),
                JoinedOutcome::Refused(_, batch) => batch,
            })
            .collect()
    }
}

/// Plans several batches for one write, in the order given, each all or
/// nothing exactly as [`plan_append`] would plan it alone after the batches
/// before it were written: their new entries count as stored for the batches
/// after (a later batch replays or conflicts with them), and a refused batch
/// leaves no trace. Only a tree that cannot be extended refuses the whole.
pub fn plan_append_batches(
    snapshot: &AppendSnapshot,
    batches: Vec<Vec<Transaction>>,
    now: Timestamp,
) -> Result<JoinedPlan, AppendRefusal> {
    let mut known = Known::stored_in(snapshot);
    let mut growth = Growth::on(&snapshot.head, now);
    let count = batches.len();
    let mut outcomes = Vec::with_capacity(count);
    for (index, batch) in batches.into_iter().enumerate() {
        let first_new = growth.new_entries.len();
        outcomes.push(match growth.plan_batch(&known, batch) {
            Ok(receipts) => {
                if index + 1 < count {
                    for (offset, entry) in growth.new_entries[first_new..].iter().enumerate() {
                        known.planned.insert(entry.transaction_id(), first_new + offset);
                    }
                }
                JoinedOutcome::Accepted(receipts)
            }
            Err((refusal, batch)) => JoinedOutcome::Refused(refusal, batch),
        });
    }
    let write = AppendPlan::chained_on(snapshot, Vec::new(), growth.new_entries)?;
    Ok(JoinedPlan { outcomes, write })
}

/// The ids a batch is planned against: the stored entries read with the
/// snapshot, and the new entries of batches planned before it in the same
/// write (by their index among the new entries).
struct Known<'s> {
    stored: HashMap<TransactionId, &'s LedgerEntry>,
    planned: HashMap<TransactionId, usize>,
}

impl<'s> Known<'s> {
    fn stored_in(snapshot: &'s AppendSnapshot) -> Self {
        Known {
            stored: snapshot.existing.iter().map(|entry| (entry.transaction_id(), entry)).collect(),
            planned: HashMap::new(),
        }
    }

    fn get<'a>(&'a self, id: &TransactionId, new_entries: &'a [LedgerEntry]) -> Option<&'a LedgerEntry> {
        match self.stored.get(id) {
            Some(entry) => Some(entry),
            None => self.planned.get(id).and_then(|&index| new_entries.get(index)),
        }
    }
}

/// The chain as batches are planned onto it: the new entries so far, and
/// where the next one goes.
struct Growth {
    position: ChainPosition,
    recorded_at: Timestamp,
    new_entries: Vec<LedgerEntry>,
}

impl Growth {
    fn on(head: &LedgerHead, now: Timestamp) -> Self {
        Growth { position: head.position(), recorded_at: recording_time(head, now), new_entries: Vec::new() }
    }

    /// Plans one batch all or nothing onto the chain so far; when refused,
    /// nothing is added and the batch is handed back.
    fn plan_batch(
        &mut self,
        known: &Known<'_>,
        batch: Vec<Transaction>,
    ) -> Result<Vec<PlannedReceipt>, (AppendRefusal, Vec<Transaction>)> {
        let submitted = batch.len();
        let mut first_index: HashMap<TransactionId, usize> = HashMap::with_capacity(batch.len());
        let mut problems = Vec::new();
        let mut replays = 0_u64;
        for (index, transaction) in batch.iter().enumerate() {
            let transaction_id = transaction.transaction_id;
            if let Some(&first) = first_index.get(&transaction_id) {
                problems.push(RejectedItem {
                    index,
                    problem: ItemProblem::DuplicateInBatch { transaction_id, first_index: first },
                });
                continue;
            }
            first_index.insert(transaction_id, index);
            if let Some(entry) = known.get(&transaction_id, &self.new_entries) {
                replays += 1;
                if entry.transaction != *transaction {
                    problems.push(RejectedItem {
                        index,
                        problem: ItemProblem::Conflict {
                            transaction_id,
                            existing_sequence: entry.sequence_number,
                        },
                    });
                }
            }
        }
        if !problems.is_empty() {
            return Err((BatchRejection { items: problems }.into(), batch));
        }
        // Checked before any entry is built, so a refusal adds nothing: the
        // entry that would follow the last sequence number is the one refused.
        let new_items = submitted as u64 - replays;
        if self.position.sequence_number.checked_add(new_items).is_none_or(|last| last > MAX_SEQUENCE_NUMBER)
        {
            let after = MAX_SEQUENCE_NUMBER.max(self.position.sequence_number);
            return Err((SequenceExhausted { after }.into(), batch));
        }

        let mut receipts = Vec::with_capacity(submitted);
        for transaction in batch {
            if let Some(entry) = known.get(&transaction.transaction_id, &self.new_entries) {
                receipts.push(PlannedReceipt::Replayed(entry.clone()));
                continue;
            }
            // Cannot fail: the sequence numbers were counted above.
            let entry = LedgerEntry::next(self.position, transaction, self.recorded_at)
                .map_err(|exhausted| (exhausted.into(), Vec::new()))?;
            self.position = entry.position();
            receipts.push(PlannedReceipt::Created);
            self.new_entries.push(entry);
        }
        debug_assert_eq!(receipts.len(), submitted, "one receipt per submitted item");
        Ok(receipts)
    }
}

/// The outcome of planning items that do not depend on each other (group
/// commit): each succeeds or fails on its own; the successes share one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndependentPlan {
    /// One outcome per item, in submission order.
    outcomes: Vec<Result<PlannedReceipt, ItemProblem>>,
    write: AppendPlan,
}

impl IndependentPlan {
    /// What to write: the successes' new entries and the head after them.
    pub fn write(&self) -> &AppendPlan {
        &self.write
    }

    /// One outcome per item, in submission order, consuming the plan (once
    /// it is committed).
    pub fn into_outcomes(self) -> Vec<Result<Receipt, ItemProblem>> {
        let count = self.outcomes.len();
        let mut created = self.write.new_entries.into_iter();
        let outcomes: Vec<Result<Receipt, ItemProblem>> = self
            .outcomes
            .into_iter()
            .filter_map(|outcome| match outcome {
                Ok(planned) => receipt_of(planned, &mut created).map(Ok),
                Err(problem) => Some(Err(problem)),
            })
            .collect();
        debug_assert_eq!(outcomes.len(), count, "one new entry per created item");
        outcomes
    }

    /// The submitted transactions back, in order, when every item was
    /// created or replayed (each receipt holds its item's content); `None`
    /// when an item failed (its content is not kept).
    pub fn into_transactions(self) -> Option<Vec<Transaction>> {
        self.into_outcomes()
            .into_iter()
            .map(|outcome| outcome.ok().map(|receipt| receipt.entry.transaction))
            .collect()
    }
}

/// Plans unrelated single-item requests together: a conflict fails only its own
/// item; the same id sent twice with the same content is one entry (the later
/// request gets it as a replay), with other content the later one conflicts.
pub fn plan_append_each(
    snapshot: &AppendSnapshot,
    batch: Vec<Transaction>,
    now: Timestamp,
) -> Result<IndependentPlan, AppendRefusal> {
    let submitted = batch.len();
    let mut known = Known::stored_in(snapshot);
    let recorded_at = recording_time(&snapshot.head, now);
    let mut position = snapshot.head.position();
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut new_entries: Vec<LedgerEntry> = Vec::new();
    for transaction in batch {
        let transaction_id = transaction.transaction_id;
        let outcome = match known.get(&transaction_id, &new_entries) {
            Some(entry) if entry.transaction == transaction => Ok(PlannedReceipt::Replayed(entry.clone())),
            Some(entry) => {
                Err(ItemProblem::Conflict { transaction_id, existing_sequence: entry.sequence_number })
            }
            None => {
                let entry = LedgerEntry::next(position, transaction, recorded_at)?;
                position = entry.position();
                known.planned.insert(transaction_id, new_entries.len());
                new_entries.push(entry);
                Ok(PlannedReceipt::Created)
            }
        };
        outcomes.push(outcome);
    }
    debug_assert_eq!(outcomes.len(), submitted, "one outcome per submitted item");
    Ok(IndependentPlan { outcomes, write: AppendPlan::chained_on(snapshot, Vec::new(), new_entries)? })
}

/// `now`, or the head's time if the clock went backwards: recorded times never decrease.
fn recording_time(head: &LedgerHead, now: Timestamp) -> Timestamp {
    head.recorded_at.map_or(now, |head_time| head_time.max(now))
}
