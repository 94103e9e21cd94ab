//! The adapter contract suite: what every `LedgerStore` and `KeyStore` must do,
//! checked against the memory model. Call [`ledger_store_contract_tests!`](crate::ledger_store_contract_tests) and
//! [`key_store_contract_tests!`](crate::key_store_contract_tests) with an expression that makes a fresh store.
//!
//! Every factory returns `(store, guard)`: the guard keeps whatever backs the
//! store (e.g. a test database) alive until the check ends.

use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt;
use invario_core::merkle::{entry_leaf_hash, root_of_leaves};
use invario_core::{
    AppendSession, IdempotencyStrategy, IngestError, KeyAdmin, KeyEpoch, KeyStore, Ledger, LedgerCatalog,
    LedgerEntry, LedgerHead, LedgerInfo, LedgerName, LedgerStore, ReceiptStatus, Scope, StoreError,
    Timestamp, Transaction, VerificationRecord, VerificationSource, WriterState, plan_append,
};
use invario_core::{verify_consistency, verify_inclusion};
use serde_json::json;

mod model;

pub use model::{Operation, model_based_agreement};

/// A time for the n-th step of a check.
pub fn at(step: i64) -> Timestamp {
    Timestamp::from_unix_micros(1_700_000_000_000_000 + step * 1_000_001).expect("inside years 0001–9999")
}

/// A transaction with a fixed id `n`, amount and optional metadata.
pub fn transaction(n: u128, amount: &str) -> Transaction {
    Transaction::from_json(&json!({
        "transaction_id": uuid::Uuid::from_u128(n).to_string(),
        "amount": amount,
        "currency": "BRL",
        "occurred_at": "2023-10-27T10:00:00.123456Z",
        "metadata": {"order": format!("A-{n}"), "city": "São Paulo"},
    }))
    .expect("a valid test transaction")
}

async fn all_entries<S: LedgerStore>(ledger: &Ledger<S>) -> Vec<LedgerEntry> {
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let page = ledger.entries_after(after, 1_000).await.expect("entries_after");
        entries.extend(page.entries);
        match page.next_after {
            Some(next) => after = next,
            None => return entries,
        }
    }
}

/// An empty store has the genesis head, no entries, and verifies.
pub async fn empty_ledger_has_the_genesis_head<S: LedgerStore, G>(fresh: impl Future<Output = (S, G)>) {
    let (store, _guard) = fresh.await;
    let ledger = Ledger::new(store);
    assert_eq!(ledger.head().await.expect("head"), LedgerHead::EMPTY);
    assert!(all_entries(&ledger).await.is_empty());
    let report = ledger.verify_full().await.expect("verify");
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.entries_checked, 0);
}

/// Appends chain from the head; every field reads back exactly (scale, microseconds, non-ASCII).
pub async fn appends_are_chained_and_read_back<S: LedgerStore, G>(fresh: impl Future<Output = (S, G)>) {
    let (store, _guard) = fresh.await;
    let ledger = Ledger::new(store);
    let first = vec![
        transaction(1, "100.50"),
        transaction(2, "-0.005"),
        transaction(3, "1234567890.123456789012345678"),
    ];
    let receipts = ledger.ingest(first, at(1)).await.expect("first batch");
    let more =
        ledger.ingest(vec![transaction(4, "7"), transaction(5, "0.10")], at(2)).await.expect("second batch");
    let sequences: Vec<u64> = receipts.iter().chain(&more).map(|r| r.entry.sequence_number).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);
    assert!(receipts.iter().chain(&more).all(|r| r.status == ReceiptStatus::Created));

    for receipt in receipts.iter().chain(&more) {
        let stored = ledger.entry(receipt.entry.transaction_id()).await.expect("entry").expect("present");
        assert_eq!(stored, receipt.entry, "an entry reads back exactly as it was written");
    }
    let amount = ledger.entry(transaction(1, "1").transaction_id).await.expect("entry").expect("present");
    assert_eq!(amount.transaction.amount.to_string(), "100.50", "the scale survives storage");
    let entries = all_entries(&ledger).await;
    assert_eq!(entries.len(), 5);
    let page = ledger.entries_after(2, 2).await.expect("page");
    assert_eq!(page.entries.iter().map(|e| e.sequence_number).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(page.next_after, Some(4));
    let head = ledger.head().await.expect("head");
    assert_eq!(head.position(), entries[4].position());
    assert_eq!(head.recorded_at, Some(at(2)));
    assert!(ledger.verify_full().await.expect("verify").is_intact());
}

/// Replays return the stored entry; conflicts and in-batch duplicates change nothing.
pub async fn replays_and_conflicts<S: LedgerStore, G>(fresh: impl Future<Output = (S, G)>) {
    let (store, _guard) = fresh.await;
    let ledger = Ledger::new(store);
    let created = ledger.ingest(vec![transaction(1, "100.50")], at(1)).await.expect("create");
    let replayed = ledger.ingest(vec![transaction(1, "100.50")], at(2)).await.expect("replay");
    assert_eq!(replayed[0].status, ReceiptStatus::Replayed);
    assert_eq!(replayed[0].entry, created[0].entry);
    let head = ledger.head().await.expect("head");

    let conflict = ledger.ingest(vec![transaction(2, "1"), transaction(1, "100.5")], at(3)).await;
    let Err(IngestError::Rejected(rejection)) = conflict else { panic!("a conflict must be rejected") };
    assert_eq!(rejection.items.len(), 1);
    assert_eq!(rejection.items[0].index, 1);
    assert!(rejection.items[0].problem.is_conflict());
    let duplicate = ledger.ingest(vec![transaction(3, "1"), transaction(3, "1")], at(4)).await;
    assert!(matches!(duplicate, Err(IngestError::Rejected(_))), "a duplicate id inside a batch is rejected");
    assert_eq!(ledger.head().await.expect("head"), head, "rejected batches write nothing");
    assert_eq!(ledger.entry(transaction(2, "1").transaction_id).await.expect("entry"), None);
    assert_eq!(ledger.entry(transaction(3, "1").transaction_id).await.expect("entry"), None);
}

/// Dropping an append session without committing leaves nothing and releases the lock.
pub async fn a_dropped_append_rolls_back<S: LedgerStore, G>(fresh: impl Future<Output = (S, G)>) {
    let (store, _guard) = fresh.await;
    let ledger = Ledger::new(store);
    ledger.ingest(vec![transaction(1, "1")], at(1)).await.expect("first");
    let head = ledger.head().await.expect("head");
    {
        let batch = vec![transaction(2, "2")];
        let session = ledger.store().begin_append(&[batch[0].transaction_id]).await.expect("begin");
        let plan = plan_append(session.snapshot(), batch, at(2)).expect("plan");
        assert_eq!(plan.new_entries().len(), 1);
        drop(session);
    }
    assert_eq!(ledger.head().await.expect("head"), head);
    assert_eq!(ledger.entry(transaction(2, "2").transaction_id).await.expect("entry"), None);
    ledger.ingest(vec![transaction(3, "3")], at(3)).await.expect("the lock was released");
    assert!(ledger.verify_full().await.expect("verify").is_intact());
}

/// An append that presumed its ids new and meets a stored one writes nothing
/// and says so ([`StoreError::AlreadyStored`]) — unless the adapter read the
/// stored entries anyway (the port's default); through the service the
/// fallback then answers as a lookup would.
pub async fn a_presumed_new_write_meeting_a_stored_id_writes_nothing<S: LedgerStore, G>(
    fresh: impl Future<Output = (S, G)>,
) {
    let (store, _guard) = fresh.await;
    let ledger = Ledger::new(store).with_idempotency(IdempotencyStrategy::Optimistic);
    ledger.ingest(vec![transaction(1, "1"), transaction(2, "2")], at(1)).await.expect("ingest");
    let head = ledger.head().await.expect("head");
    let batch = vec![transaction(3, "3"), transaction(2, "2")];
    let ids: Vec<_> = batch.iter().map(|transaction| transaction.transaction_id).collect();
    let session = ledger.store().begin_append_presuming_new(&ids).await.expect("begin");
    if session.snapshot().existing.is_empty() {
        let plan = plan_append(session.snapshot(), batch.clone(), at(2)).expect("planned as new");
        let error = session.commit(&plan).await.expect_err("a unique key fires");
        assert!(matches!(error, StoreError::AlreadyStored), "{error}");
    } else {
        drop(session); // releases the append lock, writing nothing
    }
    assert_eq!(ledger.head().await.expect("head"), head, "nothing was written");
    assert!(ledger.entry(batch[0].transaction_id).await.expect("read").is_none());
    let receipts = ledger.ingest(batch, at(2)).await.expect("the fallback appends");
    let statuses: Vec<_> = receipts.iter().map(|receipt| receipt.status).collect();
    assert_eq!(statuses, [ReceiptStatus::Created, ReceiptStatus::Replayed]);
    assert_eq!(receipts[0].entry.sequence_number, 3);
    assert_eq!(receipts[1].entry.sequence_number, 2);
}

/// A write planned on a writer's kept state lands only on the state it was
/// planned on: with a current fence it writes everything (the state advanced
/// by the core is then what the store reads back); with a stale fence, an
/// id stored already, or a key epoch the key table is not at (epochs start
/// at 1; a store without epochs refuses every one), it writes nothing and
/// says which.
pub async fn a_fenced_write_lands_only_on_the_state_it_was_planned_on<S: LedgerStore, G>(
    fresh: impl Future<Output = (S, G)>,
) {
    let (store, _guard) = fresh.await;
    let ledger = Ledger::new(store);
    ledger.ingest(vec![transaction(1, "1"), transaction(2, "2")], at(1)).await.expect("ingest");
    let store = ledger.store();
    let state = store.writer_state().await.expect("state");
    let stale = state.clone();
    let fence = state.fence();
    let snapshot = state.into_snapshot();
    let plan = plan_append(&snapshot, vec![transaction(3, "3")], at(2)).expect("planned");
    let refused = store.write_fenced(&fence, Some(KeyEpoch(0)), &plan).await.expect_err("no such key epoch");
    assert!(matches!(refused, StoreError::KeysChanged), "{refused}");
    assert_eq!(
        ledger.head().await.expect("head"),
        stale.head,
        "a write whose key epoch fails writes nothing"
    );
    store.write_fenced(&fence, None, &plan).await.expect("a current fence writes");
    let advanced = WriterState::after(snapshot, &plan);
    assert_eq!(store.writer_state().await.expect("state"), advanced, "the core's state is what was stored");
    assert_eq!(ledger.head().await.expect("head"), plan.new_head());

    let late =
        plan_append(&stale.clone().into_snapshot(), vec![transaction(4, "4")], at(3)).expect("planned");
    let error = store.write_fenced(&stale.fence(), None, &late).await.expect_err("a stale fence");
    assert!(matches!(error, StoreError::Fenced), "{error}");
    assert!(ledger.entry(transaction(4, "4").transaction_id).await.expect("read").is_none());
    assert_eq!(ledger.head().await.expect("head"), plan.new_head(), "nothing was written");

    let replaying =
        plan_append(&advanced.clone().into_snapshot(), vec![transaction(5, "5"), transaction(2, "2")], at(3))
            .expect("planned as new");
    let error = store.write_fenced(&advanced.fence(), None, &replaying).await.expect_err("a stored id");
    assert!(matches!(error, StoreError::AlreadyStored), "{error}");
    assert!(ledger.entry(transaction(5, "5").transaction_id).await.expect("read").is_none());
    assert_eq!(ledger.head().await.expect("head"), plan.new_head(), "nothing was written");
    assert!(ledger.verify_full().await.expect("verify").is_intact());
}

/// A write sent behind another ([`LedgerStore::write_fenced_behind`]),
/// planned on the state that write leaves, lands once it has: with both
/// current it writes everything; behind a write that failed (its fence
/// stale), or with rows another writer's entries already hold, it answers
/// [`StoreError::Fenced`] and writes nothing; a stored id answers
/// [`StoreError::AlreadyStored`], nothing written. Stores that pipeline
/// writes run the pair concurrently here.
pub async fn a_write_sent_behind_another_lands_only_after_it<S: LedgerStore, G>(
    fresh: impl Future<Output = (S, G)>,
) {
    let (store, _guard) = fresh.await;
    let ledger = Ledger::new(store);
    ledger.ingest(vec![transaction(1, "1")], at(1)).await.expect("ingest");
    let store = ledger.store();
    let pipelines = store.pipelines_writes().await;
    let state = store.writer_state().await.expect("state");
    let stale = state.clone();
    let snapshot = state.clone().into_snapshot();
    let first =
        plan_append(&snapshot, vec![transaction(2, "2"), transaction(3, "3")], at(2)).expect("planned");
    let middle = WriterState::after(snapshot, &first);
    let second =
        plan_append(&middle.clone().into_snapshot(), vec![transaction(4, "4")], at(2)).expect("planned");
    let (first_fence, middle_fence) = (state.fence(), middle.fence());
    let (ahead, behind) = if pipelines {
        futures_util::join!(
            store.write_fenced(&first_fence, None, &first),
            store.write_fenced_behind(&middle_fence, &second)
        )
    } else {
        (
            store.write_fenced(&first_fence, None, &first).await,
            store.write_fenced_behind(&middle_fence, &second).await,
        )
    };
    ahead.expect("the first write lands");
    // Sent at once, the second can reach the head before the first locked
    // it (the core then writes it again); sent after, it must land.
    match behind {
        Ok(()) => {}
        Err(StoreError::Fenced) if pipelines => {
            store.write_fenced_behind(&middle_fence, &second).await.expect("written again, it lands");
        }
        Err(error) => panic!("the write behind failed: {error}"),
    }
    let landed = WriterState::after(middle.into_snapshot(), &second);
    assert_eq!(store.writer_state().await.expect("state"), landed, "both writes landed, in order");

    // Behind a write that fails (a stale fence), nothing of either is written.
    let stale_snapshot = stale.clone().into_snapshot();
    let doomed = plan_append(&stale_snapshot, vec![transaction(5, "5")], at(3)).expect("planned");
    let after_doomed = WriterState::after(stale_snapshot, &doomed);
    let orphan = plan_append(&after_doomed.clone().into_snapshot(), vec![transaction(6, "6")], at(3))
        .expect("planned");
    let (stale_fence, doomed_fence) = (stale.fence(), after_doomed.fence());
    let (ahead, behind) = futures_util::join!(
        store.write_fenced(&stale_fence, None, &doomed),
        store.write_fenced_behind(&doomed_fence, &orphan)
    );
    assert!(matches!(ahead, Err(StoreError::Fenced)), "{ahead:?}");
    assert!(matches!(behind, Err(StoreError::Fenced)), "{behind:?}");
    // Alone, its sequence numbers held by entries written since: fenced too.
    let collides = store.write_fenced_behind(&stale.fence(), &doomed).await;
    assert!(matches!(collides, Err(StoreError::Fenced)), "{collides:?}");
    for n in [5, 6] {
        assert!(ledger.entry(transaction(n, "1").transaction_id).await.expect("read").is_none());
    }
    assert_eq!(store.writer_state().await.expect("state"), landed, "nothing was written");

    let replaying =
        plan_append(&landed.clone().into_snapshot(), vec![transaction(7, "7"), transaction(2, "2")], at(4))
            .expect("planned as new");
    let error = store.write_fenced_behind(&landed.fence(), &replaying).await.expect_err("a stored id");
    assert!(matches!(error, StoreError::AlreadyStored), "{error}");
    assert!(ledger.entry(transaction(7, "7").transaction_id).await.expect("read").is_none());
    assert_eq!(store.writer_state().await.expect("state"), landed, "nothing was written");
    assert!(ledger.verify_full().await.expect("verify").is_intact());
}

/// A write authenticated from a cached key carries the key table's epoch the
/// key was read at, and lands only while no key changed since: a creation, a
/// revocation, anything but a use noted moves the epoch and refuses the
/// write with nothing written. A replay is checked for the epoch first; once
/// replays dominate (lookup first), a write carrying an epoch is handed back
/// rather than written unchecked. `fresh` gives a ledger store and a key
/// store on one database. Answers whether the stores hand out epochs at all
/// (Citus does not; then a write carrying one must be refused).
pub async fn a_write_carrying_a_key_epoch_lands_only_while_no_key_changed<S: LedgerStore, K: KeyStore, G>(
    fresh: impl Future<Output = (S, K, G)>,
) -> bool {
    let (store, key_store, _guard) = fresh.await;
    let keys = KeyAdmin::new(key_store);
    let ledger = Ledger::new(store);
    let mut rng = rand_core::UnwrapErr(rand_core::OsRng);
    let refused_keys = |outcome: &Result<_, IngestError>| {
        matches!(outcome, Err(IngestError::Store(StoreError::KeysChanged)))
    };
    let (secret, _) =
        keys.create_key(&mut rng, "svc", r#"{"write": true}"#, None, at(0)).await.expect("create");
    let (_, epoch) =
        keys.store().key_by_hash_with_epoch(&secret.hash()).await.expect("read").expect("present");
    let Some(read_at) = epoch else {
        let refused = ledger.ingest_each_with_keys(vec![transaction(1, "1")], at(1), Some(KeyEpoch(1))).await;
        assert!(refused_keys(&refused), "a store without epochs cannot check one: {refused:?}");
        assert!(ledger.entry(transaction(1, "1").transaction_id).await.expect("read").is_none());
        return false;
    };

    let written =
        ledger.ingest_each_with_keys(vec![transaction(1, "1")], at(1), Some(read_at)).await.expect("written");
    assert!(matches!(&written[0], Ok(receipt) if receipt.status == ReceiptStatus::Created), "{written:?}");

    // Any key change moves the epoch: here another key's creation and revocation.
    let (_, other) =
        keys.create_key(&mut rng, "other", r#"{"read": true}"#, None, at(2)).await.expect("create");
    keys.revoke_prefix(&other.prefix, at(3)).await.expect("revoke");
    let (_, now_at) =
        keys.store().key_by_hash_with_epoch(&secret.hash()).await.expect("read").expect("present");
    let now_at = now_at.expect("a store that handed out an epoch hands out the next");
    assert!(now_at > read_at, "{now_at:?} after {read_at:?}");

    let head = ledger.head().await.expect("head");
    let refused = ledger.ingest_each_with_keys(vec![transaction(2, "2")], at(4), Some(read_at)).await;
    assert!(refused_keys(&refused), "{refused:?}");
    assert_eq!(ledger.head().await.expect("head"), head, "nothing was written");
    assert!(ledger.entry(transaction(2, "2").transaction_id).await.expect("read").is_none());

    let written =
        ledger.ingest_each_with_keys(vec![transaction(2, "2")], at(5), Some(now_at)).await.expect("written");
    assert!(matches!(&written[0], Ok(receipt) if receipt.entry.sequence_number == 2), "{written:?}");
    // A replay meets the unique key after the epoch was checked, and is
    // answered from the locking path; with a stale epoch it is refused first.
    let stale = ledger.ingest_each_with_keys(vec![transaction(2, "2")], at(6), Some(read_at)).await;
    assert!(refused_keys(&stale), "{stale:?}");
    let replay =
        ledger.ingest_each_with_keys(vec![transaction(2, "2")], at(6), Some(now_at)).await.expect("replayed");
    assert!(matches!(&replay[0], Ok(receipt) if receipt.status == ReceiptStatus::Replayed), "{replay:?}");
    // Replays now dominate the recent writes (lookup first): that path cannot
    // check an epoch, so the write is handed back rather than written unchecked.
    for _ in 0..4 {
        ledger.ingest_each(vec![transaction(2, "2")], at(7)).await.expect("replayed");
    }
    let handed_back = ledger.ingest_each_with_keys(vec![transaction(3, "3")], at(8), Some(now_at)).await;
    assert!(refused_keys(&handed_back), "{handed_back:?}");
    assert!(ledger.entry(transaction(3, "3").transaction_id).await.expect("read").is_none());
    assert!(ledger.verify_full().await.expect("verify").is_intact());
    true
}

/// Two writers on one ledger (two services, or a service and the CLI): each
/// keeps its state, so each write of one moves the ledger under the other's
/// state. The fence catches it: the write is redone on the locking path,
/// counted, and every answer and the chain are what one writer would give.
pub async fn a_second_writer_is_fenced_and_nothing_forks<S: LedgerStore + Clone, G>(
    fresh: impl Future<Output = (S, G)>,
) {
    let (store, _guard) = fresh.await;
    let first = Ledger::new(store.clone());
    let second = Ledger::new(store);
    first.ingest(vec![transaction(1, "1")], at(1)).await.expect("first writer");
    first.ingest(vec![transaction(2, "2")], at(2)).await.expect("first writer, from its kept state");
    assert_eq!(first.fenced_writes(), 0, "one writer is never fenced");
    second.ingest(vec![transaction(3, "3")], at(3)).await.expect("second writer");
    let receipts = first
        .ingest(vec![transaction(4, "4"), transaction(3, "3")], at(4))
        .await
        .expect("the fenced write is redone");
    assert_eq!(first.fenced_writes(), 1, "the first writer's kept state was stale");
    let answers: Vec<_> = receipts.iter().map(|r| (r.entry.sequence_number, r.status)).collect();
    assert_eq!(answers, [(4, ReceiptStatus::Created), (3, ReceiptStatus::Replayed)]);
    second.ingest(vec![transaction(5, "5")], at(5)).await.expect("the second writer, fenced in turn");
    for n in 6..=9 {
        let ledger = if n % 2 == 0 { &first } else { &second };
        ledger.ingest(vec![transaction(n, "1")], at(i64::try_from(n).expect("small"))).await.expect("ingest");
    }
    let head = first.head().await.expect("head");
    assert_eq!(head.sequence_number, 9, "nothing forked, nothing lost");
    let report = first.verify_full().await.expect("verify");
    assert!(report.is_intact() && report.entries_checked == 9, "{report}");
    assert_eq!(first.tree_head().await.expect("tree").size, 9, "the tree kept up with the chain");
}

/// A verification source reads one snapshot: the head, the tree, the entries
/// after a position in order with their transactions, no orphans — and
/// nothing appended after its first read.
pub async fn verification_source_reads_one_snapshot<S: LedgerStore, G>(fresh: impl Future<Output = (S, G)>) {
    let (store, _guard) = fresh.await;
    let ledger = Ledger::new(store);
    ledger.ingest((1..=6).map(|n| transaction(n, "1.5")).collect(), at(1)).await.expect("ingest");
    for (after, late_id) in [(0, 100), (4, 101)] {
        let expected_tree = ledger.tree_head().await.expect("tree");
        let mut source = ledger.store().verification_source().await.expect("source");
        let head = source.head().await.expect("head");
        assert_eq!(head.sequence_number, expected_tree.size);
        assert_eq!(source.tree().await.expect("tree").head, expected_tree);
        // Appended once the snapshot was taken: the source does not see it.
        ledger.ingest(vec![transaction(late_id, "2")], at(2)).await.expect("late ingest");
        let sequences: Vec<u64> = source
            .entries_after(after)
            .map(|record| match record.expect("record") {
                VerificationRecord::Entry(entry, Some(_)) => entry.sequence_number,
                other => panic!("unexpected record {other:?}"),
            })
            .collect()
            .await;
        assert_eq!(sequences, (after + 1..=head.sequence_number).collect::<Vec<_>>());
        assert_eq!(source.orphan_transactions().count().await, 0);
    }
}

/// 32 tasks appending at once end with contiguous sequences, every id once, and a valid chain.
pub async fn concurrent_appends_serialise<S: LedgerStore + 'static, G>(fresh: impl Future<Output = (S, G)>) {
    const TASKS: u128 = 32;
    const PER_TASK: u128 = 5;
    let (store, _guard) = fresh.await;
    let ledger = Arc::new(Ledger::new(store));
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let ledger = Arc::clone(&ledger);
        handles.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                let n = 1 + task * PER_TASK + i;
                ledger.ingest(vec![transaction(n, "1")], at(1)).await.expect("concurrent ingest");
            }
        }));
    }
    for handle in handles {
        handle.await.expect("task");
    }
    let entries = all_entries(&ledger).await;
    let total = usize::try_from(TASKS * PER_TASK).expect("small");
    assert_eq!(entries.len(), total);
    assert!(entries.iter().zip(1..).all(|(entry, expected)| entry.sequence_number == expected));
    let ids: std::collections::HashSet<_> = entries.iter().map(LedgerEntry::transaction_id).collect();
    assert_eq!(ids.len(), total);
    assert!(ledger.verify_full().await.expect("verify").is_intact());
    assert_eq!(
        ledger.fenced_writes(),
        0,
        "one service's concurrent writes take turns; they never fence each other"
    );
}

/// The tree grows with every append, across tile boundaries, and serves
/// proofs at every past size that verify against the reference root.
pub async fn the_tree_grows_with_the_chain<S: LedgerStore, G>(fresh: impl Future<Output = (S, G)>) {
    let (store, _guard) = fresh.await;
    let ledger = Ledger::new(store);
    let mut n = 1;
    for batch in [1u128, 254, 1, 300, 1, 200] {
        ledger
            .ingest((n..n + batch).map(|k| transaction(k, "2.50")).collect(), at(n as i64))
            .await
            .expect("ingest");
        n += batch;
    }
    let leaves: Vec<_> =
        all_entries(&ledger).await.iter().map(|entry| entry_leaf_hash(&entry.entry_hash)).collect();
    assert_eq!(leaves.len(), 757);
    let head = ledger.tree_head().await.expect("tree head");
    assert_eq!((head.size, head.root), (757, root_of_leaves(&leaves)));
    for size in [1u64, 255, 256, 257, 512, 513, 757] {
        let root = root_of_leaves(&leaves[..size as usize]);
        for sequence in [1, size / 2 + 1, size] {
            let proof = ledger.inclusion_proof_at(sequence, Some(size)).await.expect("inclusion proof");
            assert_eq!(proof.root_hash, root);
            verify_inclusion(sequence - 1, size, &leaves[sequence as usize - 1], &proof.hashes, &root)
                .expect("the adapter's inclusion proof verifies");
        }
        let proof = ledger.consistency_proof(size, None).await.expect("consistency proof");
        verify_consistency(size, 757, &root, &head.root, &proof.hashes)
            .expect("the adapter's consistency proof verifies");
    }
    assert!(ledger.verify_full().await.expect("verify").is_intact());
}

/// Checkpoint copies: kept once per size (only extended by cosignatures
/// appended later, never replaced), the largest served.
pub async fn checkpoint_copies_are_kept_once_per_size<S: LedgerStore, G>(
    fresh: impl Future<Output = (S, G)>,
) {
    let (store, _guard) = fresh.await;
    assert_eq!(store.latest_checkpoint().await.expect("read"), None);
    store.store_checkpoint(3, "three\n").await.expect("store");
    store.store_checkpoint(10, "ten\n").await.expect("store");
    store.store_checkpoint(7, "seven\n").await.expect("store");
    store.store_checkpoint(10, "another ten\n").await.expect("the same size again is ignored");
    assert_eq!(store.latest_checkpoint().await.expect("read").as_deref(), Some("ten\n"));
    store.store_checkpoint(10, "ten\n— w1 cosigned\n").await.expect("cosignatures gathered later extend it");
    store.store_checkpoint(10, "ten\n").await.expect("a shorter one is ignored");
    store
        .store_checkpoint(10, "ten\n— w2 instead\n")
        .await
        .expect("another extension of the original is ignored");
    assert_eq!(store.latest_checkpoint().await.expect("read").as_deref(), Some("ten\n— w1 cosigned\n"));
}

/// Keys can be created, found by hash, listed, touched and revoked by owner or prefix.
pub async fn key_store_round_trip<K: KeyStore, G>(fresh: impl Future<Output = (K, G)>) {
    let (store, _guard) = fresh.await;
    let admin = KeyAdmin::new(store);
    let mut rng = rand_core::UnwrapErr(rand_core::OsRng);
    let (first, record) =
        admin.create_key(&mut rng, "ClientName", r#"{"write": true}"#, None, at(1)).await.expect("create");
    let (second, _) = admin
        .create_key(&mut rng, "ClientName", r#"{"write": true, "read": true}"#, Some(at(100)), at(2))
        .await
        .expect("create");
    let (other, other_record) =
        admin.create_key(&mut rng, "Other", r#"{"read": true}"#, None, at(3)).await.expect("create");

    let found = admin.store().key_by_hash(&first.hash()).await.expect("find").expect("present");
    assert_eq!(found, record, "a key reads back exactly");
    assert_eq!(admin.list(None).await.expect("list").len(), 3);
    let mine = admin.list(Some("ClientName")).await.expect("list");
    assert_eq!(mine.len(), 2);
    assert!(mine[0].created_at <= mine[1].created_at, "oldest first");

    let used =
        admin.authenticate(Some(second.expose()), Scope::Read, None, at(4)).await.expect("authenticate");
    assert_eq!(used.owner.as_str(), "ClientName");
    let touched = admin.store().key_by_hash(&second.hash()).await.expect("find").expect("present");
    assert_eq!(touched.last_used_at, Some(at(4)));

    assert_eq!(admin.revoke_owner("ClientName", at(5)).await.expect("revoke"), 2);
    assert_eq!(admin.revoke_owner("ClientName", at(6)).await.expect("revoke"), 0, "already revoked");
    assert!(admin.authenticate(Some(first.expose()), Scope::Write, None, at(7)).await.is_err());
    assert!(
        admin.authenticate(Some(other.expose()), Scope::Read, None, at(7)).await.is_ok(),
        "other owners keep access"
    );
    assert_eq!(admin.revoke_prefix(&other_record.prefix, at(8)).await.expect("revoke"), 1);
    assert!(admin.authenticate(Some(other.expose()), Scope::Read, None, at(9)).await.is_err());
    let revoked = admin.store().key_by_hash(&other.hash()).await.expect("find").expect("present");
    assert_eq!(revoked.revoked_at, Some(at(8)));
}

fn ledger_name(name: &str) -> LedgerName {
    LedgerName::parse(name).expect("a valid test ledger name")
}

/// The catalog starts with `default`; creating a ledger is idempotent; a
/// ledger not created answers `UnknownLedger` and writes nothing.
pub async fn ledgers_are_created_once_and_listed<C: LedgerCatalog, G>(fresh: impl Future<Output = (C, G)>) {
    let (catalog, _guard) = fresh.await;
    let names =
        |ledgers: Vec<LedgerInfo>| ledgers.into_iter().map(|info| info.name.to_string()).collect::<Vec<_>>();
    assert_eq!(names(catalog.list_ledgers().await.expect("list")), ["default"]);
    let acme = ledger_name("acme");
    assert_eq!(catalog.find_ledger(&acme).await.expect("find"), None);
    let missing = Ledger::new(catalog.store(&acme));
    assert!(matches!(missing.head().await, Err(StoreError::UnknownLedger(name)) if name == acme));
    let refused = missing.ingest(vec![transaction(1, "1")], at(1)).await.expect_err("no such ledger");
    assert!(matches!(refused, IngestError::Store(StoreError::UnknownLedger(_))), "{refused:?}");

    assert!(catalog.create_ledger(&acme, at(2)).await.expect("create"));
    assert!(
        !catalog.create_ledger(&acme, at(3)).await.expect("create again"),
        "a second create changes nothing"
    );
    assert!(catalog.create_ledger(&ledger_name("0-books_2"), at(4)).await.expect("create"));
    assert_eq!(names(catalog.list_ledgers().await.expect("list")), ["0-books_2", "acme", "default"]);
    let found = catalog.find_ledger(&acme).await.expect("find").expect("created");
    assert_eq!(found.created_at, at(2), "the first create's time is kept");
    // A store handed out before the ledger existed works once it does.
    assert_eq!(missing.head().await.expect("head"), LedgerHead::EMPTY);
    missing.ingest(vec![transaction(1, "1")], at(5)).await.expect("append to the new ledger");
}

/// Two ledgers share nothing: the same transaction id is two transactions,
/// each chain starts at 1 with its own tree and checkpoints.
pub async fn ledgers_are_isolated<C: LedgerCatalog, G>(fresh: impl Future<Output = (C, G)>) {
    let (catalog, _guard) = fresh.await;
    let acme = ledger_name("acme");
    catalog.create_ledger(&acme, at(0)).await.expect("create");
    let default = Ledger::new(catalog.store(&LedgerName::default_ledger()));
    let other = Ledger::new(catalog.store(&acme));
    let first =
        default.ingest(vec![transaction(1, "10.00"), transaction(2, "20.00")], at(1)).await.expect("ingest");
    // Same ids, other amounts: in another ledger neither a replay nor a conflict.
    let second =
        other.ingest(vec![transaction(2, "99.00"), transaction(1, "-5")], at(2)).await.expect("ingest");
    assert!(first.iter().chain(&second).all(|receipt| receipt.status == ReceiptStatus::Created));
    assert_eq!(second[0].entry.sequence_number, 1, "each ledger's chain starts at 1");
    assert_eq!(second[0].entry.prev_hash, LedgerHead::EMPTY.entry_hash);
    let stored = other.entry(second[0].entry.transaction_id()).await.expect("read").expect("present");
    assert_eq!(stored.transaction.amount.to_canonical_string(), "99.00");
    assert_eq!(all_entries(&default).await.len(), 2);
    assert_eq!(all_entries(&other).await.len(), 2);
    assert_ne!(default.head().await.expect("head"), other.head().await.expect("head"));
    assert_ne!(
        default.store().tree_state().await.expect("tree").head.root,
        other.store().tree_state().await.expect("tree").head.root
    );
    assert!(default.verify_full().await.expect("verify").is_intact());
    assert!(other.verify_full().await.expect("verify").is_intact());

    default.store().store_checkpoint(2, "default note").await.expect("store");
    assert_eq!(other.store().latest_checkpoint().await.expect("read"), None);
    other.store().store_checkpoint(2, "acme note").await.expect("store");
    assert_eq!(default.store().latest_checkpoint().await.expect("read").as_deref(), Some("default note"));
}

/// The head lock is per ledger: an append held open on one ledger does not
/// make an append to another wait (SQLite, with one writer per file, cannot).
pub async fn ledgers_append_in_parallel<C: LedgerCatalog, G>(fresh: impl Future<Output = (C, G)>) {
    let (catalog, _guard) = fresh.await;
    let acme = ledger_name("acme");
    catalog.create_ledger(&acme, at(0)).await.expect("create");
    let default = Ledger::new(catalog.store(&LedgerName::default_ledger()));
    let other = Ledger::new(catalog.store(&acme));
    let held = default.store().begin_append(&[]).await.expect("lock default");
    let elsewhere = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        other.ingest(vec![transaction(3, "3")], at(3)),
    )
    .await
    .expect("an append to another ledger does not wait for this one's lock");
    elsewhere.expect("ingest");
    drop(held);
}

/// Generates one `#[tokio::test]` per ledger-store contract check, plus the
/// model-based property (`cases` runs). `$fresh` is an async expression
/// evaluating to `(store, guard)`.
#[macro_export]
macro_rules! ledger_store_contract_tests {
    ($fresh:expr, cases = $cases:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_empty_ledger_has_the_genesis_head() {
            $crate::contract::empty_ledger_has_the_genesis_head($fresh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_appends_are_chained_and_read_back() {
            $crate::contract::appends_are_chained_and_read_back($fresh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_replays_and_conflicts() {
            $crate::contract::replays_and_conflicts($fresh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_a_dropped_append_rolls_back() {
            $crate::contract::a_dropped_append_rolls_back($fresh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_a_presumed_new_write_meeting_a_stored_id_writes_nothing() {
            $crate::contract::a_presumed_new_write_meeting_a_stored_id_writes_nothing($fresh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_a_fenced_write_lands_only_on_the_state_it_was_planned_on() {
            $crate::contract::a_fenced_write_lands_only_on_the_state_it_was_planned_on($fresh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_a_write_sent_behind_another_lands_only_after_it() {
            $crate::contract::a_write_sent_behind_another_lands_only_after_it($fresh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_a_second_writer_is_fenced_and_nothing_forks() {
            $crate::contract::a_second_writer_is_fenced_and_nothing_forks($fresh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_verification_source_reads_one_snapshot() {
            $crate::contract::verification_source_reads_one_snapshot($fresh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_the_tree_grows_with_the_chain() {
            $crate::contract::the_tree_grows_with_the_chain($fresh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_checkpoint_copies_are_kept_once_per_size() {
            $crate::contract::checkpoint_copies_are_kept_once_per_size($fresh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_concurrent_appends_serialise() {
            $crate::contract::concurrent_appends_serialise($fresh).await;
        }
        #[test]
        fn contract_model_based_agreement_with_the_memory_model() {
            $crate::contract::model_based_agreement(|| $fresh, $cases);
        }
    };
}

/// Generates one `#[tokio::test]` per catalog contract check. `$fresh` is an
/// async expression evaluating to `(catalog, guard)`; add `parallel_ledgers`
/// when the store's head lock is per ledger.
#[macro_export]
macro_rules! catalog_contract_tests {
    ($fresh:expr, parallel_ledgers) => {
        $crate::catalog_contract_tests!($fresh);
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_ledgers_append_in_parallel() {
            $crate::contract::ledgers_append_in_parallel($fresh).await;
        }
    };
    ($fresh:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_ledgers_are_created_once_and_listed() {
            $crate::contract::ledgers_are_created_once_and_listed($fresh).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_ledgers_are_isolated() {
            $crate::contract::ledgers_are_isolated($fresh).await;
        }
    };
}

/// Generates a `#[tokio::test]` for the key-store contract.
#[macro_export]
macro_rules! key_store_contract_tests {
    ($fresh:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_key_store_round_trip() {
            $crate::contract::key_store_round_trip($fresh).await;
        }
    };
}
