//! Large fenced writes go by binary COPY (issue 27, lever L4): what they
//! store reads back exactly and verifies, and they are refused as a call to
//! the append function is — fenced, an id stored already, a stale key epoch —
//! with nothing written. (A write of that size always goes by COPY.)

use invario_core::writer::WriterState;
use invario_core::{AppendSession, KeyEpoch, LedgerEntry, ReceiptStatus, StoreError, Transaction};
use invario_postgres::COPY_WRITE_MIN_ROWS;
use invario_testkit::strategies;
use proptest::prelude::*;

use super::*;

/// Hides the array function a write below [`COPY_WRITE_MIN_ROWS`] calls, so
/// a write that lands can only have gone by COPY (on plain PostgreSQL; on
/// Citus every write is one call of `invario_append_delegated_v1`).
async fn without_the_array_function(pool: &PgPool) {
    sqlx::query("ALTER FUNCTION invario_append_v2 RENAME TO invario_append_v2_hidden")
        .execute(pool)
        .await
        .unwrap();
}

async fn stored_entries(ledger: &Ledger<PgLedger>) -> Vec<LedgerEntry> {
    ledger.store().entries_after(0, usize::MAX).await.unwrap()
}

fn ids(first: u128, count: usize) -> Vec<u128> {
    (first..).take(count).collect()
}

#[tokio::test]
async fn a_large_write_lands_only_by_copy_and_reads_back_exactly() {
    let database = fresh_database().await;
    let ledger = Ledger::new(PgLedger::new(database.pool().clone()));
    ledger.ingest(vec![transaction(1, "1.00")], at(1)).await.unwrap();
    without_the_array_function(database.pool()).await;

    // Contents COPY's binary format must carry unchanged: scales up to 18
    // fraction digits, 28 significant digits, negative amounts, no
    // occurred_at, and metadata with quotes, backslashes, tabs, newlines and
    // characters outside ASCII.
    let awkward = [
        json!({"amount": "9999999999.999999999999999999", "currency": "EUR"}),
        json!({"amount": "-0.000000000000000001", "currency": "JPY", "occurred_at": "1970-01-01T00:00:00Z"}),
        json!({"amount": "100.50", "currency": "BRL",
               "metadata": {"note": "tab\there \"quoted\" back\\slash\nnext line", "city": "São Paulo ✓"}}),
        json!({"amount": "-12", "currency": "USD", "occurred_at": "2026-12-04T23:59:59.999999Z",
               "metadata": {"empty": ""}}),
    ];
    let mut items: Vec<serde_json::Value> = awkward
        .iter()
        .enumerate()
        .map(|(n, fields)| {
            let mut item = fields.clone();
            item["transaction_id"] = json!(uuid::Uuid::from_u128(100_000 + n as u128).to_string());
            item
        })
        .collect();
    items.extend((2..).take(COPY_WRITE_MIN_ROWS).map(|n| {
        json!({"transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "10.00", "currency": "BRL"})
    }));
    let receipts = ledger.ingest_json(&items, at(2)).await.unwrap();

    let stored = stored_entries(&ledger).await;
    let written: Vec<LedgerEntry> = receipts.into_iter().map(|receipt| receipt.entry).collect();
    assert_eq!(stored[1..], written[..], "every row reads back as the core planned it");
    let amounts: Vec<String> = sqlx::query_scalar(
        "SELECT amount::text FROM transactions WHERE transaction_id = ANY($1) ORDER BY transaction_id",
    )
    .bind((100_000..100_004).map(uuid::Uuid::from_u128).collect::<Vec<_>>())
    .fetch_all(database.pool())
    .await
    .unwrap();
    assert_eq!(amounts, ["9999999999.999999999999999999", "-0.000000000000000001", "100.50", "-12"]);
    assert!(ledger.verify_full().await.unwrap().is_intact());
    assert_eq!(ledger.fenced_writes(), 0);

    let small = ledger.ingest(vec![transaction(5_000, "1.00")], at(3)).await;
    if invario_postgres::is_citus(database.pool()).await.unwrap() {
        // On Citus every write, large or small, is one delegated call of
        // `invario_append_delegated_v1`: hiding v2 changes nothing.
        assert!(small.is_ok(), "{small:?}");
    } else {
        // A write below the threshold still calls the array function.
        assert!(small.is_err(), "a small write went by COPY: {small:?}");
    }
}

#[tokio::test]
async fn a_large_write_is_refused_like_a_call_with_nothing_written() {
    let database = fresh_database().await;
    let ledger = Ledger::new(PgLedger::new(database.pool().clone()));
    ledger.ingest(vec![transaction(1, "1.00")], at(1)).await.unwrap();
    let store = ledger.store();
    let before = stored_entries(&ledger).await;
    // A stale key epoch.
    let (fence, plan) = planned(store.writer_state().await.unwrap(), &ids(10, COPY_WRITE_MIN_ROWS), 2);
    let outcome = store.write_fenced(&fence, Some(KeyEpoch(0)), &plan).await;
    assert!(matches!(outcome, Err(StoreError::KeysChanged)), "{outcome:?}");
    assert_eq!(stored_entries(&ledger).await, before, "nothing written: {outcome:?}");

    // An id stored already, presumed new: the unique key fires inside the COPY.
    let mut replaying = ids(10, COPY_WRITE_MIN_ROWS);
    replaying[COPY_WRITE_MIN_ROWS / 2] = 1;
    let (fence, plan) = planned(store.writer_state().await.unwrap(), &replaying, 2);
    let outcome = store.write_fenced(&fence, None, &plan).await;
    assert!(matches!(outcome, Err(StoreError::AlreadyStored)), "{outcome:?}");
    assert_eq!(stored_entries(&ledger).await, before, "nothing written: {outcome:?}");

    // Another writer moved the ledger after this plan's state was read.
    let (fence, plan) = planned(store.writer_state().await.unwrap(), &ids(10, COPY_WRITE_MIN_ROWS), 2);
    let other_writer = Ledger::new(PgLedger::new(database.pool().clone()));
    other_writer.ingest(vec![transaction(2, "1.00")], at(2)).await.unwrap();
    let before = stored_entries(&ledger).await;
    let outcome = store.write_fenced(&fence, None, &plan).await;
    assert!(matches!(outcome, Err(StoreError::Fenced)), "{outcome:?}");
    assert_eq!(stored_entries(&ledger).await, before, "nothing written: {outcome:?}");

    // Through the core the replay is answered and the rest written, by COPY.
    let mut batch: Vec<Transaction> =
        ids(10, COPY_WRITE_MIN_ROWS).iter().map(|&n| transaction(n, "1.00")).collect();
    batch.push(transaction(1, "1.00"));
    let receipts = ledger.ingest(batch, at(3)).await.unwrap();
    assert_eq!(receipts.last().unwrap().status, ReceiptStatus::Replayed);
    assert_eq!(receipts.last().unwrap().entry, before[0]);
    assert_eq!(receipts[0].entry.sequence_number, 3);
    assert!(ledger.verify_full().await.unwrap().is_intact());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, max_shrink_iters: 8, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random valid transactions, written by COPY, read back as planned.
    #[test]
    fn random_transactions_written_by_copy_read_back_as_planned(
        batch in prop::collection::vec(strategies::transaction(), COPY_WRITE_MIN_ROWS..COPY_WRITE_MIN_ROWS + 30),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let database = fresh_database().await;
            without_the_array_function(database.pool()).await;
            let ledger = Ledger::new(PgLedger::new(database.pool().clone()));
            let receipts = ledger.ingest(batch, at(1)).await.unwrap();
            let written: Vec<LedgerEntry> = receipts.into_iter().map(|receipt| receipt.entry).collect();
            prop_assert_eq!(stored_entries(&ledger).await, written);
            prop_assert!(ledger.verify_full().await.unwrap().is_intact());
            Ok(())
        })?;
    }
}

/// Writes sent behind a write still holding the head (the locked path's
/// session here) send their rows at once and land only after it commits, in
/// the order they were planned — the second one, smaller, finishes sending
/// first and still waits for the first — and they write nothing if it rolls
/// back (lever L5; never used on Citus, where a write is one delegated call).
#[tokio::test]
async fn writes_sent_behind_a_committing_write_land_after_it_in_order() {
    let (ledger, database) = ledger_with(1).await;
    if invario_postgres::is_citus(database.pool()).await.unwrap() {
        return;
    }
    let store = ledger.store();
    assert!(store.pipelines_writes().await);
    for commit in [true, false] {
        let before = stored_entries(&ledger).await;
        let first_id = 10 + 10_000 * u128::from(commit);
        let session = store.begin_append(&[]).await.unwrap();
        let holding = plan_append(session.snapshot(), vec![transaction(first_id, "1.00")], at(2)).unwrap();
        let after_holding = WriterState::after(session.snapshot().clone(), &holding);
        let (large_fence, large) = planned(after_holding.clone(), &ids(first_id + 1, 3_000), 3);
        let after_large = WriterState::after(after_holding.into_snapshot(), &large);
        let (small_fence, small) = planned(after_large.clone(), &ids(first_id + 5_000, 1), 4);
        let holder = async {
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            assert_eq!(stored_entries(&ledger).await, before, "nothing lands while the head is held");
            if commit { session.commit(&holding).await.unwrap() } else { drop(session) }
        };
        let small_later = async {
            // Sent after the large write announced itself.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            store.write_fenced_behind(&small_fence, &small).await
        };
        let ((), large_outcome, small_outcome) =
            tokio::join!(holder, store.write_fenced_behind(&large_fence, &large), small_later);
        if commit {
            large_outcome.unwrap();
            small_outcome.unwrap();
            let head = ledger.head().await.unwrap();
            assert_eq!(head, small.new_head(), "both landed, the small one last");
            assert_eq!(
                store.writer_state().await.unwrap(),
                WriterState::after(after_large.into_snapshot(), &small)
            );
        } else {
            assert!(matches!(large_outcome, Err(StoreError::Fenced)), "{large_outcome:?}");
            assert!(matches!(small_outcome, Err(StoreError::Fenced)), "{small_outcome:?}");
            assert_eq!(stored_entries(&ledger).await, before, "nothing written behind a rolled-back write");
        }
    }
    assert!(ledger.verify_full().await.unwrap().is_intact());
}

/// Rows sent behind a write wait for the write announced just before them
/// (`invario_write_key`), even while nobody holds the head: otherwise a
/// write could lock the head before the write ahead of it, still sending
/// its rows, had. When that write rolls back, the rows do not extend the
/// head and are refused as a fence.
#[tokio::test]
async fn rows_wait_for_the_write_announced_just_before_them() {
    let (ledger, database) = ledger_with(1).await;
    if invario_postgres::is_citus(database.pool()).await.unwrap() {
        return;
    }
    let store = ledger.store();
    let (_, ahead) = planned(store.writer_state().await.unwrap(), &ids(2, 1), 2);
    let after_ahead = WriterState::after(store.writer_state().await.unwrap().into_snapshot(), &ahead);
    let (fence, behind) = planned(after_ahead, &ids(3, 1), 3);
    let mut announcer = database.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(invario_write_key('default', 2))")
        .execute(&mut *announcer)
        .await
        .unwrap();
    let wait = std::time::Duration::from_millis(400);
    let started = std::time::Instant::now();
    let release = async {
        tokio::time::sleep(wait).await;
        announcer.rollback().await.unwrap();
    };
    let (outcome, ()) = tokio::join!(store.write_fenced_behind(&fence, &behind), release);
    assert!(started.elapsed() >= wait, "the rows waited for the announced write");
    assert!(matches!(outcome, Err(StoreError::Fenced)), "{outcome:?}");
    assert_eq!(ledger.head().await.unwrap().sequence_number, 1, "nothing written");
}
