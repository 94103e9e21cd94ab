//! Groups written back to back ([`Ledger::ingest_batch_groups`],
//! [`Ledger::ingest_single_groups`]) are answered exactly as groups written
//! one after another, whatever fails on
//! the way: a stored id, a conflict, an id in two groups in flight, another
//! writer moving the ledger.

use super::*;
use crate::keys::KeyEpoch;
use futures_util::stream::{self, StreamExt};
use prop::sample::Index;

/// Batch requests of `transactions`, no key epochs.
fn requests(group: &[Vec<Transaction>]) -> Vec<BatchRequest> {
    group.iter().map(|batch| BatchRequest { transactions: batch.clone(), keys: None }).collect()
}

/// A group's answer, comparable: each batch's receipts or refusal text.
type GroupText = Result<Vec<Result<Vec<crate::append::Receipt>, String>>, String>;

fn group_text(answer: crate::ledger::GroupAnswer) -> GroupText {
    answer
        .map(|batches| batches.into_iter().map(|batch| batch.map_err(|error| format!("{error:?}"))).collect())
        .map_err(|error| format!("{error:?}"))
}

/// Writes `groups` through [`Ledger::ingest_batch_groups`], the group at
/// index `i` at time `at(i)`; the answers in order. `before_each` runs when
/// the stream is asked for a group, with its index.
async fn write_back_to_back<F, Fut>(
    ledger: &Ledger<MemoryLedger>,
    groups: &[Vec<Vec<Transaction>>],
    before_each: F,
) -> Vec<GroupText>
where
    F: Fn(usize) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = ()> + Send,
{
    let before_each = &before_each;
    let stream = stream::iter(groups.iter().enumerate()).then(|(index, group)| async move {
        before_each(index).await;
        (requests(group), at(i64::try_from(index).unwrap()), index)
    });
    let mut answers: Vec<Option<GroupText>> = vec![None; groups.len()];
    let mut order = Vec::new();
    ledger
        .ingest_batch_groups(Box::pin(stream), |index, answer| {
            order.push(index);
            answers[index] = Some(group_text(answer));
        })
        .await;
    assert_eq!(order, (0..groups.len()).collect::<Vec<_>>(), "groups are answered in the order they came");
    answers.into_iter().map(|answer| answer.expect("every group is answered")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Groups picked from one pool, so that later groups replay or conflict
    /// with earlier ones (stored, or still in flight), some items altered
    /// (conflicts) and some repeated in a batch: the answers, the head and
    /// the chain are those of the same groups written one after another.
    #[test]
    fn groups_written_back_to_back_are_answered_as_if_written_in_turn(
        pool in strategies::distinct_transactions(3..24),
        recorded_count in 0usize..3,
        picks in prop::collection::vec(
            prop::collection::vec(prop::collection::vec((any::<Index>(), 0u8..8), 1..5), 1..4), 1..8),
    ) {
        let recorded: Vec<_> = pool.iter().take(recorded_count).cloned().collect();
        let groups: Vec<Vec<Vec<Transaction>>> = picks
            .iter()
            .map(|group| group.iter().map(|batch| super::appends::picked(&pool, batch)).collect())
            .collect();
        block_on(async {
            let in_turn = Ledger::new(MemoryLedger::new());
            let back_to_back = Ledger::new(MemoryLedger::new().pipelining());
            if !recorded.is_empty() {
                in_turn.ingest(recorded.clone(), at(-1)).await.unwrap();
                back_to_back.ingest(recorded.clone(), at(-1)).await.unwrap();
            }
            let mut expected = Vec::new();
            for (index, group) in groups.iter().enumerate() {
                let answer = in_turn.ingest_batches(requests(group), at(i64::try_from(index).unwrap())).await;
                expected.push(group_text(answer));
            }
            let answers = write_back_to_back(&back_to_back, &groups, |_| async {}).await;
            prop_assert_eq!(answers, expected);
            prop_assert_eq!(back_to_back.head().await.unwrap(), in_turn.head().await.unwrap());
            prop_assert_eq!(back_to_back.fenced_writes(), 0, "a writer alone is never fenced");
            let report = back_to_back.verify_full().await.unwrap();
            prop_assert!(report.is_intact(), "{}", report);
            prop_assert_eq!(back_to_back.tree_head().await.unwrap(), in_turn.tree_head().await.unwrap());
            Ok(())
        })?;
    }
}

/// Transaction `n`: 1 EUR, id `n`.
fn numbered(n: u128) -> Transaction {
    Transaction::from_json(&serde_json::json!({
        "transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "1", "currency": "EUR",
    }))
    .unwrap()
}

/// Another writer appends while the first group is in flight: that write is
/// fenced (counted once), the group sent behind it fails with it, and both
/// are written again after the other writer's entry — nothing forks.
#[test]
fn another_writer_moving_the_ledger_fences_the_write_in_flight_and_the_one_behind_it() {
    block_on(async {
        let store = MemoryLedger::new();
        let ledger = Ledger::new(store.clone().pipelining());
        // Its writes land at once, while the first group's is still in flight.
        let other = Ledger::new(store);
        ledger.ingest(vec![numbered(1)], at(0)).await.unwrap();
        let groups = vec![vec![vec![numbered(2), numbered(3)]], vec![vec![numbered(4)], vec![numbered(5)]]];
        let other = &other;
        let answers = write_back_to_back(&ledger, &groups, |index| async move {
            // Asked for the second group while the first is in flight.
            if index == 1 {
                other.ingest(vec![numbered(99)], at(50)).await.unwrap();
            }
        })
        .await;
        let sequences = |answer: &GroupText| -> Vec<Vec<u64>> {
            answer
                .as_ref()
                .unwrap()
                .iter()
                .map(|batch| {
                    batch.as_ref().unwrap().iter().map(|receipt| receipt.entry.sequence_number).collect()
                })
                .collect()
        };
        assert_eq!(sequences(&answers[0]), [vec![3, 4]], "written after the other writer's entry (2)");
        assert_eq!(sequences(&answers[1]), [vec![5], vec![6]]);
        assert_eq!(ledger.fenced_writes(), 1, "the other writer is counted once");
        let report = ledger.verify_full().await.unwrap();
        assert!(report.is_intact() && report.entries_checked == 6, "{report}");
        assert_eq!(ledger.tree_head().await.unwrap().size, 6);
    });
}

/// On a store that does not pipeline, groups are written one at a time,
/// with the same answers.
#[test]
fn without_pipelining_groups_are_written_in_turn() {
    block_on(async {
        let ledger = Ledger::new(MemoryLedger::new());
        let groups = vec![vec![vec![numbered(1)]], vec![vec![numbered(1)], vec![numbered(2)]]];
        let answers = write_back_to_back(&ledger, &groups, |_| async {}).await;
        let statuses: Vec<Vec<ReceiptStatus>> = answers[1]
            .as_ref()
            .unwrap()
            .iter()
            .map(|batch| batch.as_ref().unwrap().iter().map(|receipt| receipt.status).collect())
            .collect();
        assert_eq!(statuses, [vec![ReceiptStatus::Replayed], vec![ReceiptStatus::Created]]);
        assert_eq!(ledger.head().await.unwrap().sequence_number, 2);
    });
}

/// A group of singles' answer, comparable: each item's receipt or problem text.
type SinglesText = Result<Vec<Result<crate::append::Receipt, String>>, String>;

fn singles_text(answer: crate::ledger::SinglesAnswer) -> SinglesText {
    answer
        .map(|items| {
            items
                .into_iter()
                .map(|item| match item {
                    Ok(item) => item.map_err(|problem| format!("{problem:?}")),
                    Err(error) => Err(format!("{error:?}")),
                })
                .collect()
        })
        .map_err(|error| format!("{error:?}"))
}

/// A group of singles written on its own, as the model has it: the write
/// checks the oldest key epoch among its requests; when that cannot be
/// confirmed, those that carried one are refused `KeysChanged` and the
/// others are written at once without one.
async fn singles_in_turn(
    ledger: &Ledger<MemoryLedger>,
    items: &[(Transaction, Option<KeyEpoch>)],
    now: crate::timestamp::Timestamp,
) -> SinglesText {
    let transactions: Vec<Transaction> = items.iter().map(|(transaction, _)| transaction.clone()).collect();
    let keys = items.iter().filter_map(|(_, keys)| *keys).min();
    let whole = ledger.ingest_each_with_keys(transactions, now, keys).await;
    let keys_changed = |answer: &crate::ledger::SinglesAnswer| {
        matches!(answer, Err(IngestError::Store(crate::ports::StoreError::KeysChanged)))
    };
    let whole = whole.map(|items| items.into_iter().map(Ok).collect());
    let unkeyed: Vec<(usize, Transaction)> = items
        .iter()
        .enumerate()
        .filter(|(_, (_, keys))| keys.is_none())
        .map(|(position, (transaction, _))| (position, transaction.clone()))
        .collect();
    if !keys_changed(&whole) || unkeyed.is_empty() {
        return singles_text(whole);
    }
    let refused = format!("{:?}", IngestError::from(crate::ports::StoreError::KeysChanged));
    let (positions, transactions): (Vec<usize>, Vec<Transaction>) = unkeyed.into_iter().unzip();
    let written = singles_text(
        ledger
            .ingest_each_with_keys(transactions, now, None)
            .await
            .map(|items| items.into_iter().map(Ok).collect()),
    );
    written.map(|written| {
        let mut answers: Vec<Result<crate::append::Receipt, String>> = vec![Err(refused); items.len()];
        for (position, item) in positions.into_iter().zip(written) {
            answers[position] = item;
        }
        answers
    })
}

/// Writes groups of singles through [`Ledger::ingest_single_groups`], the
/// group at index `i` at time `at(i)`, each with its key epoch; the answers
/// in order. `before_each` runs when the stream is asked for a group.
async fn singles_back_to_back<F, Fut>(
    ledger: &Ledger<MemoryLedger>,
    groups: &[Vec<(Transaction, Option<KeyEpoch>)>],
    before_each: F,
) -> Vec<SinglesText>
where
    F: Fn(usize) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = ()> + Send,
{
    let before_each = &before_each;
    let stream = stream::iter(groups.iter().enumerate()).then(|(index, group)| async move {
        before_each(index).await;
        (group.clone(), at(i64::try_from(index).unwrap()), index)
    });
    let mut answers: Vec<Option<SinglesText>> = vec![None; groups.len()];
    let mut order = Vec::new();
    ledger
        .ingest_single_groups(Box::pin(stream), |index, answer| {
            order.push(index);
            answers[index] = Some(singles_text(answer));
        })
        .await;
    assert_eq!(order, (0..groups.len()).collect::<Vec<_>>(), "groups are answered in the order they came");
    answers.into_iter().map(|answer| answer.expect("every group is answered")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Groups of singles picked from one pool (replays and conflicts of
    /// earlier groups, stored or in flight; ids repeated in a group; some
    /// requests carrying a key epoch the store cannot confirm, alone or beside
    /// requests without one): the answers, the head and the chain are those
    /// of the same groups written one after another, the requests without an
    /// epoch of a refused group written again at once.
    #[test]
    fn single_groups_written_back_to_back_are_answered_as_if_written_in_turn(
        pool in strategies::distinct_transactions(3..24),
        recorded_count in 0usize..3,
        picks in prop::collection::vec(
            (prop::collection::vec((any::<Index>(), 0u8..8), 1..6), prop::collection::vec(prop::bool::weighted(0.15), 6)),
            1..10),
    ) {
        let recorded: Vec<_> = pool.iter().take(recorded_count).cloned().collect();
        let groups: Vec<Vec<(Transaction, Option<KeyEpoch>)>> = picks
            .iter()
            .map(|(items, keyed)| {
                let picked = super::appends::picked(&pool, items);
                picked.into_iter().zip(keyed).map(|(item, keyed)| (item, keyed.then_some(KeyEpoch(1)))).collect()
            })
            .collect();
        block_on(async {
            let in_turn = Ledger::new(MemoryLedger::new());
            let back_to_back = Ledger::new(MemoryLedger::new().pipelining());
            if !recorded.is_empty() {
                in_turn.ingest(recorded.clone(), at(-1)).await.unwrap();
                back_to_back.ingest(recorded.clone(), at(-1)).await.unwrap();
            }
            let mut expected = Vec::new();
            for (index, items) in groups.iter().enumerate() {
                let now = at(i64::try_from(index).unwrap());
                expected.push(singles_in_turn(&in_turn, items, now).await);
            }
            let answers = singles_back_to_back(&back_to_back, &groups, |_| async {}).await;
            prop_assert_eq!(answers, expected);
            prop_assert_eq!(back_to_back.head().await.unwrap(), in_turn.head().await.unwrap());
            prop_assert_eq!(back_to_back.fenced_writes(), 0, "a writer alone is never fenced");
            let report = back_to_back.verify_full().await.unwrap();
            prop_assert!(report.is_intact(), "{}", report);
            prop_assert_eq!(back_to_back.tree_head().await.unwrap(), in_turn.tree_head().await.unwrap());
            Ok(())
        })?;
    }
}

/// Another writer appends while a group of singles is in flight: that write
/// is fenced (counted once), the group planned on it fails with it, and both
/// are written again after the other writer's entry.
#[test]
fn another_writer_fences_a_group_of_singles_in_flight_and_the_one_behind_it() {
    block_on(async {
        let store = MemoryLedger::new();
        let ledger = Ledger::new(store.clone().pipelining());
        let other = Ledger::new(store);
        ledger.ingest(vec![numbered(1)], at(0)).await.unwrap();
        let groups = vec![
            vec![(numbered(2), None), (numbered(3), None)],
            vec![(numbered(4), None), (numbered(5), None)],
        ];
        let other = &other;
        let answers = singles_back_to_back(&ledger, &groups, |index| async move {
            if index == 1 {
                other.ingest(vec![numbered(99)], at(50)).await.unwrap();
            }
        })
        .await;
        let sequences = |answer: &SinglesText| -> Vec<u64> {
            answer.as_ref().unwrap().iter().map(|item| item.as_ref().unwrap().entry.sequence_number).collect()
        };
        assert_eq!(sequences(&answers[0]), [3, 4], "written after the other writer's entry (2)");
        assert_eq!(sequences(&answers[1]), [5, 6]);
        assert_eq!(ledger.fenced_writes(), 1, "the other writer is counted once");
        let report = ledger.verify_full().await.unwrap();
        assert!(report.is_intact() && report.entries_checked == 6, "{report}");
    });
}
