//! Property tests of the core: chains verify, every tamper is pinpointed,
//! replays add nothing, rejected batches change nothing, texts round-trip.

use futures_executor::block_on;
use proptest::prelude::*;

use crate::amount::Amount;
use crate::append::{AppendSnapshot, ItemProblem, ReceiptStatus, plan_append};
use crate::chain::{ChainPosition, EntryHash, LedgerEntry, LedgerHead};
use crate::integrity::{IntegrityBreak, StoredTransaction, VerificationRecord, Verifier};
use crate::ledger::{IngestError, Ledger};
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
            position = entry.checkpoint();
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
        edge: update.tiles.into_iter().filter(|tile| edge.contains(&tile.coord)).collect(),
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

/// One change an attacker with database access could make to one row.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    Amount,
    Currency,
    OccurredAt,
    MetadataValue,
    MetadataKeyAdded,
    RecordedAt,
    EntryHash,
    PrevHash,
    SequenceNumber,
    EntryTransactionId,
    TransactionRowDeleted,
    EntryRowDeleted,
    EntryRowDuplicated,
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        Just(Tamper::Amount),
        Just(Tamper::Currency),
        Just(Tamper::OccurredAt),
        Just(Tamper::MetadataValue),
        Just(Tamper::MetadataKeyAdded),
        Just(Tamper::RecordedAt),
        Just(Tamper::EntryHash),
        Just(Tamper::PrevHash),
        Just(Tamper::SequenceNumber),
        Just(Tamper::EntryTransactionId),
        Just(Tamper::TransactionRowDeleted),
        Just(Tamper::EntryRowDeleted),
        Just(Tamper::EntryRowDuplicated),
    ]
}

/// Applies `tamper` to row `index` and returns the kind the verifier must report.
fn apply(records: &mut Vec<VerificationRecord>, index: usize, tamper: Tamper) -> &'static str {
    let is_last = index + 1 == records.len();
    let VerificationRecord::Entry(entry, Some(transaction)) = &mut records[index] else {
        unreachable!("records built by `records` always carry their transaction")
    };
    match tamper {
        Tamper::Amount => {
            transaction.amount = if transaction.amount == "1" { "2".into() } else { "1".into() };
            "hash_mismatch"
        }
        Tamper::Currency => {
            transaction.currency = if transaction.currency == "USD" { "EUR".into() } else { "USD".into() };
            "hash_mismatch"
        }
        Tamper::OccurredAt => {
            transaction.occurred_at_micros = match transaction.occurred_at_micros {
                Some(micros) => Some(micros ^ 1),
                None => Some(0),
            };
            "hash_mismatch"
        }
        Tamper::MetadataValue => {
            let value = transaction.metadata.entry("k".into()).or_default();
            value.push('x');
            "hash_mismatch"
        }
        Tamper::MetadataKeyAdded => {
            transaction.metadata.insert("added.by.attacker".into(), String::new());
            "hash_mismatch"
        }
        Tamper::RecordedAt => {
            entry.recorded_at_micros += 1;
            "hash_mismatch"
        }
        Tamper::EntryHash => {
            entry.entry_hash.0[0] ^= 0xff;
            "hash_mismatch"
        }
        Tamper::PrevHash => {
            entry.prev_hash.0[31] ^= 0x01;
            "broken_link"
        }
        Tamper::SequenceNumber => {
            entry.sequence_number += 1_000_000;
            // Rows stream in sequence order, so the moved row now comes last.
            let moved = records.remove(index);
            records.push(moved);
            "sequence_gap"
        }
        Tamper::EntryTransactionId => {
            entry.transaction_id = uuid::Uuid::from_u128(u128::MAX);
            records[index] = match records[index].clone() {
                VerificationRecord::Entry(entry, _) => VerificationRecord::Entry(entry, None),
                other => other,
            };
            "entry_without_transaction"
        }
        Tamper::TransactionRowDeleted => {
            records[index] = match records[index].clone() {
                VerificationRecord::Entry(entry, _) => VerificationRecord::Entry(entry, None),
                other => other,
            };
            "entry_without_transaction"
        }
        Tamper::EntryRowDeleted => {
            let removed = records.remove(index);
            if let VerificationRecord::Entry(_, Some(transaction)) = removed {
                records.push(VerificationRecord::OrphanTransaction(transaction));
            }
            if is_last { "head_mismatch" } else { "sequence_gap" }
        }
        Tamper::EntryRowDuplicated => {
            let copy = records[index].clone();
            records.insert(index + 1, copy);
            "sequence_duplicate"
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_generated_ledger_verifies(transactions in strategies::distinct_transactions(0..40)) {
        let entries = chain(transactions);
        prop_assert_eq!(verify(head_of(&entries), &records(&entries)), None);
    }

    #[test]
    fn any_single_tamper_is_reported_at_exactly_that_sequence(
        transactions in strategies::distinct_transactions(1..25),
        pick in any::<prop::sample::Index>(),
        tamper in tamper(),
    ) {
        let entries = chain(transactions);
        let index = pick.index(entries.len());
        let mut rows = records(&entries);
        let expected_kind = apply(&mut rows, index, tamper);
        let found = verify(head_of(&entries), &rows).expect("tampering must be detected");
        prop_assert_eq!(found.kind(), expected_kind, "{:?} at index {} gave {}", tamper, index, found);
        let expected_sequence = entries[index].sequence_number;
        prop_assert_eq!(found.sequence(), Some(expected_sequence), "{}", found);
    }

    #[test]
    fn swapping_two_rows_is_caught_at_the_first_of_them(
        transactions in strategies::distinct_transactions(2..25),
        picks in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
        swap_whole_rows in any::<bool>(),
    ) {
        let entries = chain(transactions);
        let (a, b) = (picks.0.index(entries.len()), picks.1.index(entries.len()));
        prop_assume!(a != b);
        let (first, second) = (a.min(b), a.max(b));
        let mut rows = records(&entries);
        if swap_whole_rows {
            // The rows trade sequence numbers: each now sits at the other's position.
            rows.swap(first, second);
            for (position, row) in rows.iter_mut().enumerate() {
                if let VerificationRecord::Entry(entry, _) = row {
                    entry.sequence_number = entries[position].sequence_number;
                }
            }
        } else {
            // The entries trade transactions.
            let take = |row: &VerificationRecord| match row {
                VerificationRecord::Entry(_, transaction) => transaction.clone(),
                VerificationRecord::OrphanTransaction(_) => None,
            };
            let (tx_first, tx_second) = (take(&rows[first]), take(&rows[second]));
            if let VerificationRecord::Entry(entry, transaction) = &mut rows[first] {
                entry.transaction_id = tx_second.as_ref().map(|t| t.transaction_id).unwrap_or_default();
                *transaction = tx_second;
            }
            if let VerificationRecord::Entry(entry, transaction) = &mut rows[second] {
                entry.transaction_id = tx_first.as_ref().map(|t| t.transaction_id).unwrap_or_default();
                *transaction = tx_first;
            }
        }
        let found = verify(head_of(&entries), &rows).expect("a swap must be detected");
        prop_assert_eq!(found.sequence(), Some(entries[first].sequence_number), "{}", found);
    }

    #[test]
    fn a_rewritten_chain_passes_alone_but_not_against_a_saved_digest(
        transactions in strategies::distinct_transactions(2..20),
        pick in any::<prop::sample::Index>(),
    ) {
        let entries = chain(transactions.clone());
        let digest_at = pick.index(entries.len());
        let digest = entries[digest_at].checkpoint();
        // The attacker changes one amount and recomputes every hash after it.
        let mut rewritten = transactions;
        rewritten[digest_at].amount = Amount::parse("31337").unwrap();
        if rewritten[digest_at] == entries[digest_at].transaction {
            rewritten[digest_at].amount = Amount::parse("31338").unwrap();
        }
        let forged = chain(rewritten);
        prop_assert_eq!(verify(head_of(&forged), &records(&forged)), None);
        let mut verifier = Verifier::full(head_of(&forged)).expect_digest(digest);
        for record in records(&forged) {
            verifier.feed(&record);
        }
        let found = verifier.finish().first_break.expect("the digest must catch the rewrite");
        prop_assert_eq!(found.kind(), "digest_mismatch");
        prop_assert_eq!(found.sequence(), Some(digest.sequence_number));
    }

    #[test]
    fn a_consistent_rewrite_that_moves_a_recorded_time_back_is_caught(
        transactions in strategies::distinct_transactions(2..20),
        pick in any::<prop::sample::Index>(),
        back in 1i64..10_000_000,
    ) {
        // The attacker re-records entry `moved` earlier than the one before it
        // and recomputes every hash after it: links and hashes are all valid.
        let moved = 1 + pick.index(transactions.len() - 1);
        let mut position = ChainPosition::GENESIS;
        let forged: Vec<LedgerEntry> = (0..)
            .zip(transactions)
            .map(|(second, transaction)| {
                let mut recorded = at(second * 1_000_000);
                if second == moved as i64 {
                    recorded = at((second - 1) * 1_000_000 - back);
                }
                let entry = LedgerEntry::next(position, transaction, recorded).unwrap();
                position = entry.checkpoint();
                entry
            })
            .collect();
        let found = verify(head_of(&forged), &records(&forged)).expect("a decreasing time must be caught");
        prop_assert_eq!(found.kind(), "recorded_at_decreased");
        let IntegrityBreak::RecordedAtDecreased { sequence, previous_sequence, .. } = found else {
            unreachable!("kind checked above")
        };
        prop_assert_eq!(sequence, forged[moved].sequence_number);
        prop_assert_eq!(previous_sequence, forged[moved - 1].sequence_number);
    }

    #[test]
    fn resuming_from_any_verified_checkpoint_agrees_with_a_full_run(
        transactions in strategies::distinct_transactions(1..30),
        pick in any::<prop::sample::Index>(),
    ) {
        let entries = chain(transactions);
        let split = pick.index(entries.len());
        let checkpoint = if split == 0 { ChainPosition::GENESIS } else { entries[split - 1].checkpoint() };
        let mut verifier = Verifier::resume(head_of(&entries), checkpoint);
        for record in &records(&entries)[split..] {
            verifier.feed(record);
        }
        let report = verifier.finish();
        prop_assert_eq!(report.first_break, None);
        prop_assert_eq!(report.entries_checked as usize, entries.len() - split);
        prop_assert_eq!(report.verified, head_of(&entries).checkpoint());
    }

    #[test]
    fn replays_never_add_entries(
        transactions in strategies::distinct_transactions(1..20),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 1..10),
    ) {
        block_on(async {
            let ledger = Ledger::new(MemoryLedger::new());
            let first = ledger.ingest(transactions.clone(), at(0)).await.unwrap();
            let head = ledger.head().await.unwrap();
            let replay: Vec<_> = picks.iter().map(|pick| transactions[pick.index(transactions.len())].clone()).collect();
            let mut seen = std::collections::HashSet::new();
            let replay: Vec<_> = replay.into_iter().filter(|t| seen.insert(t.transaction_id)).collect();
            let receipts = ledger.ingest(replay.clone(), at(5_000_000)).await.unwrap();
            prop_assert_eq!(ledger.head().await.unwrap(), head);
            for (receipt, transaction) in receipts.iter().zip(&replay) {
                prop_assert_eq!(receipt.status, ReceiptStatus::Replayed);
                let original = first.iter().find(|r| r.entry.transaction_id() == transaction.transaction_id).unwrap();
                prop_assert_eq!(&receipt.entry, &original.entry);
            }
            Ok(())
        })?;
    }

    #[test]
    fn a_batch_with_one_bad_item_changes_nothing(
        recorded in strategies::distinct_transactions(1..10),
        fresh in strategies::distinct_transactions(1..10),
        bad_position in any::<prop::sample::Index>(),
        conflict_not_duplicate in any::<bool>(),
    ) {
        let recorded_ids: std::collections::HashSet<_> = recorded.iter().map(|t| t.transaction_id).collect();
        let mut batch: Vec<_> = fresh.into_iter().filter(|t| !recorded_ids.contains(&t.transaction_id)).collect();
        prop_assume!(!batch.is_empty());
        let bad = if conflict_not_duplicate {
            let mut changed = recorded[0].clone();
            changed.metadata = Metadata::from_pairs([("changed", "yes")]).unwrap();
            if changed == recorded[0] {
                changed.metadata = Metadata::empty();
            }
            changed
        } else {
            batch[0].clone()
        };
        let position = bad_position.index(batch.len() + 1);
        let position = if conflict_not_duplicate { position } else { position.max(1) };
        batch.insert(position, bad);
        block_on(async {
            let ledger = Ledger::new(MemoryLedger::new());
            ledger.ingest(recorded.clone(), at(0)).await.unwrap();
            let head = ledger.head().await.unwrap();
            let error = ledger.ingest(batch.clone(), at(1)).await.unwrap_err();
            let IngestError::Rejected(rejection) = error else { panic!("expected a rejection, got {error}") };
            prop_assert_eq!(rejection.items.len(), 1);
            prop_assert_eq!(rejection.items[0].index, position);
            prop_assert_eq!(rejection.items[0].problem.is_conflict(), conflict_not_duplicate);
            prop_assert_eq!(ledger.head().await.unwrap(), head);
            for transaction in batch.iter().filter(|t| !recorded_ids.contains(&t.transaction_id)) {
                prop_assert_eq!(ledger.entry(transaction.transaction_id).await.unwrap(), None);
            }
            Ok(())
        })?;
    }

    #[test]
    fn invalid_items_are_listed_and_nothing_is_written(
        valid in strategies::distinct_transactions(0..8),
        (invalid, field) in strategies::invalid_transaction_json(),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut items: Vec<_> = valid.iter().map(strategies::to_request_json).collect();
        let index = pick.index(items.len() + 1);
        items.insert(index, invalid);
        block_on(async {
            let ledger = Ledger::new(MemoryLedger::new());
            let error = ledger.ingest_json(&items, at(0)).await.unwrap_err();
            let IngestError::Rejected(rejection) = error else { panic!("expected a rejection, got {error}") };
            prop_assert!(rejection.items.iter().all(|item| item.index == index));
            prop_assert!(rejection.items.iter().any(|item| item.problem.field().starts_with(field)),
                "{:?}", rejection);
            prop_assert!(rejection.items.iter().all(|item| matches!(item.problem, ItemProblem::Invalid(_))));
            prop_assert_eq!(ledger.head().await.unwrap(), LedgerHead::EMPTY);
            Ok(())
        })?;
    }

    #[test]
    fn every_accepted_amount_round_trips_to_its_canonical_text(text in strategies::amount_text()) {
        let amount = Amount::parse(&text).unwrap();
        prop_assert_eq!(amount.to_string(), text.clone());
        prop_assert_eq!(Amount::parse(&amount.to_string()).unwrap(), amount);
        prop_assert_eq!(Amount::from_decimal(amount.decimal()).unwrap(), amount);
    }

    #[test]
    fn every_accepted_transaction_round_trips_through_its_json(transaction in strategies::transaction()) {
        let json = strategies::to_request_json(&transaction);
        prop_assert_eq!(Transaction::from_json(&json).unwrap(), transaction.clone());
        let metadata_json = serde_json::to_value(&transaction.metadata).unwrap();
        prop_assert_eq!(Metadata::from_json(&metadata_json).unwrap(), transaction.metadata);
    }

    #[test]
    fn planned_entries_extend_the_head_contiguously(
        recorded in strategies::distinct_transactions(0..10),
        batch in strategies::distinct_transactions(1..10),
        clock_skew in -5_000_000i64..5_000_000,
    ) {
        let entries = chain(recorded);
        let head = head_of(&entries);
        let recorded_ids: std::collections::HashSet<_> = entries.iter().map(|e| e.transaction_id()).collect();
        let batch: Vec<_> = batch.into_iter().filter(|t| !recorded_ids.contains(&t.transaction_id)).collect();
        prop_assume!(!batch.is_empty());
        let now = at(entries.len() as i64 * 1_000_000 + clock_skew);
        let plan = plan_append(&AppendSnapshot { head, existing: vec![], tree: tree_of(&entries) }, batch, now).unwrap();
        let mut position = head.checkpoint();
        for entry in plan.new_entries() {
            prop_assert_eq!(entry.sequence_number, position.sequence_number + 1);
            prop_assert_eq!(entry.prev_hash, position.entry_hash);
            prop_assert!(head.recorded_at.is_none_or(|previous| entry.recorded_at >= previous));
            position = entry.checkpoint();
        }
        prop_assert_eq!(plan.new_head().checkpoint(), position);
        let mut all = entries.clone();
        all.extend(plan.new_entries().iter().cloned());
        let leaves: Vec<_> = all.iter().map(|entry| entry_leaf_hash(&entry.entry_hash)).collect();
        let tree = plan.tree_update().expect("new entries grow the tree");
        prop_assert_eq!(tree.state.head.size, all.len() as u64);
        prop_assert_eq!(tree.state.head.root, root_of_leaves(&leaves));
        prop_assert_eq!(verify(plan.new_head(), &records(&all)), None);
    }
}

#[test]
fn an_empty_ledger_with_a_non_empty_head_is_a_head_mismatch() {
    let head = LedgerHead { sequence_number: 3, entry_hash: EntryHash([7; 32]), recorded_at: None };
    let found = verify(head, &[]).unwrap();
    assert_eq!(found.kind(), "head_mismatch");
    assert_eq!(
        found.to_string(),
        format!(
            "head mismatch at sequence 3: head says 3/{}, the chain ends at 0/{}",
            EntryHash([7; 32]),
            EntryHash::GENESIS
        )
    );
}

#[test]
fn an_orphan_transaction_is_reported() {
    let entries = chain(vec![]);
    let orphan = StoredTransaction {
        transaction_id: uuid::Uuid::from_u128(9),
        amount: "1".into(),
        currency: "BRL".into(),
        occurred_at_micros: None,
        metadata: Default::default(),
    };
    let found = verify(head_of(&entries), &[VerificationRecord::OrphanTransaction(orphan)]).unwrap();
    assert_eq!(
        found.to_string(),
        "transaction without entry: transaction 00000000-0000-0000-0000-000000000009 is not in the chain"
    );
}

#[test]
fn a_decreasing_recorded_time_names_both_entries() {
    let mut position = ChainPosition::GENESIS;
    let entries: Vec<LedgerEntry> = [(1, 5_000_000), (2, 4_000_000)]
        .into_iter()
        .map(|(n, micros)| {
            let transaction = Transaction::from_json(&serde_json::json!({
                "transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "1", "currency": "BRL",
            }))
            .unwrap();
            let entry = LedgerEntry::next(position, transaction, at(micros)).unwrap();
            position = entry.checkpoint();
            entry
        })
        .collect();
    let found = verify(head_of(&entries), &records(&entries)).unwrap();
    assert_eq!(
        found.to_string(),
        "recorded_at decreases at sequence 2: 2023-11-14T22:13:24.000000Z is earlier than \
         2023-11-14T22:13:25.000000Z at sequence 1"
    );
}

#[test]
fn sequence_numbers_never_wrap_or_repeat_at_the_end_of_the_range() {
    use crate::append::{AppendRefusal, plan_append_each};
    use crate::chain::MAX_SEQUENCE_NUMBER;
    let transaction = |n: u128| {
        Transaction::from_json(&serde_json::json!({
            "transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "1", "currency": "BRL",
        }))
        .unwrap()
    };
    let near_the_end = |sequence_number| AppendSnapshot {
        head: LedgerHead { sequence_number, entry_hash: EntryHash([1; 32]), recorded_at: Some(at(0)) },
        existing: vec![],
        tree: fake_tree(sequence_number),
    };
    let last = plan_append(&near_the_end(MAX_SEQUENCE_NUMBER - 1), vec![transaction(1)], at(1)).unwrap();
    assert_eq!(last.new_head().sequence_number, MAX_SEQUENCE_NUMBER);

    let refused =
        plan_append(&near_the_end(MAX_SEQUENCE_NUMBER - 1), vec![transaction(1), transaction(2)], at(1));
    let Err(AppendRefusal::Exhausted(exhausted)) = refused else {
        panic!("expected exhaustion, got {refused:?}")
    };
    assert_eq!(exhausted.after, MAX_SEQUENCE_NUMBER);
    assert_eq!(
        exhausted.to_string(),
        format!(
            "the ledger is full: no sequence number follows {MAX_SEQUENCE_NUMBER} (the largest is {MAX_SEQUENCE_NUMBER})"
        )
    );
    assert!(plan_append_each(&near_the_end(MAX_SEQUENCE_NUMBER), vec![transaction(1)], at(1)).is_err());
    assert!(
        LedgerEntry::next(
            ChainPosition { sequence_number: u64::MAX, entry_hash: EntryHash::GENESIS },
            transaction(1),
            at(1)
        )
        .is_err()
    );
    // The verifier, too, treats anything after u64::MAX as a repeat, not as sequence 0.
    let mut verifier = Verifier::resume(
        LedgerHead { sequence_number: u64::MAX, entry_hash: EntryHash([1; 32]), recorded_at: None },
        ChainPosition { sequence_number: u64::MAX, entry_hash: EntryHash([1; 32]) },
    );
    let (mut stored, stored_transaction) = StoredTransaction::of(&last.new_entries()[0]);
    stored.sequence_number = 0;
    verifier.feed(&VerificationRecord::Entry(stored, Some(stored_transaction)));
    assert_eq!(verifier.finish().first_break.unwrap().kind(), "sequence_duplicate");
}

/// JSON values built from the names and texts the transaction rules look at, nested a
/// little, so objects that are nearly transactions come up often.
fn nearly_transaction_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let text = prop_oneof![
        strategies::transaction_id().prop_map(|id| id.to_string()),
        strategies::amount_text(),
        "[A-Z]{3}|[a-z]{3}",
        strategies::timestamp().prop_map(|time| time.to_rfc3339()),
        "[a-z\"\\\\é\\u{0}]{0,5}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        text.prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..7)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "transaction_id",
        "amount",
        "currency",
        "occurred_at",
        "metadata",
        "Amount",
        "x",
        "",
    ])
    .prop_map(str::to_owned)
}

/// An object written out pair by pair, so a name may repeat (a `Value` cannot hold that).
fn object_text(pairs: &[(String, serde_json::Value)]) -> String {
    let members: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{}:{}", serde_json::Value::from(name.as_str()), value))
        .collect();
    format!("{{{}}}", members.join(","))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // The HTTP routes read bodies straight into `SubmittedTransaction`; auditors, the
    // contract suite and older callers use `Transaction::from_json` on a tree. One text
    // must get one verdict, refusals included, field by field and in the same order.
    #[test]
    fn reading_json_text_straight_agrees_with_reading_its_tree(
        text in prop_oneof![
            nearly_transaction_json().prop_map(|value| value.to_string()),
            strategies::transaction().prop_map(|transaction| strategies::to_request_json(&transaction).to_string()),
            strategies::invalid_transaction_json().prop_map(|(value, _)| value.to_string()),
            prop::collection::vec((field_name(), nearly_transaction_json()), 0..8).prop_map(|pairs| object_text(&pairs)),
        ]
    ) {
        let tree: serde_json::Value = serde_json::from_str(&text).unwrap();
        let crate::transaction::SubmittedTransaction(straight) = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(straight, Transaction::from_json(&tree), "{}", text);
    }
}
