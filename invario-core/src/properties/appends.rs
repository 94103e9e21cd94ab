//! Appends: replays add nothing, a bad item changes nothing, plans extend the
//! head contiguously, sequence numbers never wrap, texts and JSON round-trip.

use super::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

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
    fn joined_batches_are_answered_as_if_written_one_after_another(
        pool in strategies::distinct_transactions(2..12),
        recorded_count in 0usize..4,
        picks in prop::collection::vec(
            prop::collection::vec((any::<prop::sample::Index>(), 0u8..5), 1..6), 1..6),
    ) {
        let recorded: Vec<_> = pool.iter().take(recorded_count).cloned().collect();
        // Items picked from one pool, so later batches replay earlier ones;
        // one in five is altered (a conflict), and a pick may repeat in a batch.
        let batches: Vec<Vec<Transaction>> = picks.iter().map(|items| picked(&pool, items)).collect();
        block_on(async {
            let serial = Ledger::new(MemoryLedger::new());
            let joined = Ledger::new(MemoryLedger::new());
            if !recorded.is_empty() {
                serial.ingest(recorded.clone(), at(0)).await.unwrap();
                joined.ingest(recorded.clone(), at(0)).await.unwrap();
            }
            let mut expected = Vec::new();
            for batch in &batches {
                expected.push(answer_text(serial.ingest(batch.clone(), at(7)).await));
            }
            let requests = batches
                .iter()
                .map(|batch| BatchRequest { transactions: batch.clone(), keys: None })
                .collect();
            let answers: Vec<_> =
                joined.ingest_batches(requests, at(7)).await.unwrap().into_iter().map(answer_text).collect();
            prop_assert_eq!(answers, expected);
            prop_assert_eq!(joined.head().await.unwrap(), serial.head().await.unwrap());
            let report = joined.verify_full().await.unwrap();
            prop_assert_eq!(report.first_break, None);
            prop_assert_eq!(report.head, serial.head().await.unwrap());
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
        let mut position = head.position();
        for entry in plan.new_entries() {
            prop_assert_eq!(entry.sequence_number, position.sequence_number + 1);
            prop_assert_eq!(entry.prev_hash, position.entry_hash);
            prop_assert!(head.recorded_at.is_none_or(|previous| entry.recorded_at >= previous));
            position = entry.position();
        }
        prop_assert_eq!(plan.new_head().position(), position);
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
fn sequence_numbers_never_wrap_or_repeat_at_the_end_of_the_range() {
    use crate::append::{AppendRefusal, plan_append_each};
    use crate::chain::MAX_SEQUENCE_NUMBER;
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

/// The transactions of `pool` that `picks` name, in order; those picked with
/// kind 0 altered (their metadata changed: a conflict with the original).
pub(super) fn picked(pool: &[Transaction], picks: &[(prop::sample::Index, u8)]) -> Vec<Transaction> {
    picks
        .iter()
        .map(|(pick, kind)| {
            let mut transaction = pool[pick.index(pool.len())].clone();
            if *kind == 0 {
                transaction.metadata = altered(&transaction.metadata);
            }
            transaction
        })
        .collect()
}

/// Other metadata than `metadata`.
fn altered(metadata: &Metadata) -> Metadata {
    let changed = Metadata::from_pairs([("changed", "yes")]).unwrap();
    if changed == *metadata { Metadata::empty() } else { changed }
}

/// A batch's answer, comparable: the receipts, or the refusal's full text.
fn answer_text(
    answer: Result<Vec<crate::append::Receipt>, IngestError>,
) -> Result<Vec<crate::append::Receipt>, String> {
    answer.map_err(|error| format!("{error:?}"))
}

#[test]
fn a_joined_batch_that_would_pass_the_last_sequence_number_is_refused_alone() {
    use crate::append::{AppendRefusal, plan_append_batches};
    use crate::chain::MAX_SEQUENCE_NUMBER;
    let snapshot = near_the_end(MAX_SEQUENCE_NUMBER - 1);
    let batches = vec![vec![transaction(1), transaction(2)], vec![transaction(3)], vec![transaction(3)]];
    let plan = plan_append_batches(&snapshot, batches, at(1)).unwrap();
    assert_eq!(plan.write().new_entries().len(), 1, "only the batch that fits is written");
    assert_eq!(plan.write().new_head().sequence_number, MAX_SEQUENCE_NUMBER);
    let batches_back = plan.clone().into_batches();
    assert_eq!(batches_back[0], vec![transaction(1), transaction(2)], "a refused batch is handed back whole");
    let outcomes = plan.into_outcomes();
    let Err(AppendRefusal::Exhausted(exhausted)) = &outcomes[0] else {
        panic!("expected exhaustion: {outcomes:?}")
    };
    assert_eq!(exhausted.after, MAX_SEQUENCE_NUMBER);
    let created = outcomes[1].as_ref().unwrap();
    assert_eq!(created[0].status, ReceiptStatus::Created);
    // The third batch replays the second: it needs no sequence number, so it fits.
    let replayed = outcomes[2].as_ref().unwrap();
    assert_eq!(replayed[0].status, ReceiptStatus::Replayed);
    assert_eq!(replayed[0].entry, created[0].entry);
}

/// Transaction `n`: 1 BRL, id `n`.
fn transaction(n: u128) -> Transaction {
    Transaction::from_json(&serde_json::json!({
        "transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "1", "currency": "BRL",
    }))
    .unwrap()
}

/// A snapshot whose head is at `sequence_number`, with a made-up tree.
fn near_the_end(sequence_number: u64) -> AppendSnapshot {
    AppendSnapshot {
        head: LedgerHead { sequence_number, entry_hash: EntryHash([1; 32]), recorded_at: Some(at(0)) },
        existing: vec![],
        tree: fake_tree(sequence_number),
    }
}
