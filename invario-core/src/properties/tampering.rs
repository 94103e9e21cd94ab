//! Every change an attacker with database access could make is pinpointed;
//! resumed and full verifications agree.

use super::*;

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
        let digest = entries[digest_at].position();
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
                position = entry.position();
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
        let checkpoint = if split == 0 { ChainPosition::GENESIS } else { entries[split - 1].position() };
        let mut verifier = Verifier::resume(head_of(&entries), checkpoint);
        for record in &records(&entries)[split..] {
            verifier.feed(record);
        }
        let report = verifier.finish();
        prop_assert_eq!(report.first_break, None);
        prop_assert_eq!(report.entries_checked as usize, entries.len() - split);
        prop_assert_eq!(report.verified, head_of(&entries).position());
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
            position = entry.position();
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
