//! Ledgers share a commit (issue 27, lever L8): the fenced writes several
//! ledgers of one catalog have ready at the same moment go to PostgreSQL in
//! one call and one transaction, and each still lands or fails on its own.

use invario_core::{KeyEpoch, LedgerCatalog, LedgerName, StoreError};
use invario_postgres::PgCatalog;

use super::*;

async fn catalog_with(names: &[&str]) -> (PgCatalog, Vec<Ledger<PgLedger>>, TestDatabase) {
    let database = fresh_database().await;
    let catalog = PgCatalog::new(database.pool().clone());
    let mut ledgers = Vec::new();
    for name in names {
        let name = LedgerName::parse(name).unwrap();
        catalog.create_ledger(&name, at(0)).await.unwrap();
        ledgers.push(Ledger::new(catalog.store(&name)));
    }
    (catalog, ledgers, database)
}

/// How many transactions wrote the heads of `names` (rows written by one
/// transaction, or one subtransaction of it, share their `xmin`).
async fn head_writers(pool: &PgPool, names: &[&str]) -> i64 {
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM ledger_head WHERE ledger_id = ANY($1)")
        .bind(&names)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn writes_ready_together_on_several_ledgers_share_one_commit() {
    let names = ["lane-a", "lane-b", "lane-c", "lane-d", "lane-e"];
    let (_catalog, ledgers, database) = catalog_with(&names).await;
    let mut writes = Vec::new();
    for (index, ledger) in ledgers.iter().enumerate() {
        let state = ledger.store().writer_state().await.unwrap();
        let first = 10 * index as u128;
        writes.push(planned(state, &[first + 1, first + 2], 1));
    }
    // Polled together: the first write takes the connection, the other four
    // queue behind it and go as one call.
    let outcomes = futures_util::future::join_all(
        ledgers
            .iter()
            .zip(&writes)
            .map(|(ledger, (fence, plan))| ledger.store().write_fenced(fence, None, plan)),
    )
    .await;
    for outcome in &outcomes {
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    for (ledger, (_, plan)) in ledgers.iter().zip(&writes) {
        assert_eq!(ledger.head().await.unwrap(), plan.new_head());
        let report = ledger.verify_full().await.unwrap();
        assert!(report.is_intact() && report.entries_checked == 2, "{report}");
        assert_eq!(ledger.tree_head().await.unwrap().size, 2, "each tree kept up with its chain");
    }
    if !invario_postgres::is_citus(database.pool()).await.unwrap() {
        assert_eq!(
            head_writers(database.pool(), &names).await,
            i64::try_from(invario_postgres::LANE_CONNECTIONS).unwrap() + 1,
            "the first writes take a connection each, the others queue and share one commit"
        );
    }
}

#[tokio::test]
async fn each_ledger_of_a_shared_commit_keeps_its_own_outcome() {
    // The first writes take a connection each while the others queue.
    let holding: Vec<String> =
        (0..invario_postgres::LANE_CONNECTIONS).map(|n| format!("holding-{n}")).collect();
    let mut names: Vec<&str> = holding.iter().map(String::as_str).collect();
    let first = names.len();
    // Two writes that land beside the three refused ones.
    names.extend(["fenced", "replaying", "stale-key", "lands", "lands-too"]);
    let (fenced, replaying, stale_key) = (first, first + 1, first + 2);
    let (_catalog, ledgers, database) = catalog_with(&names).await;
    let mut writes = Vec::new();
    for (index, ledger) in ledgers.iter().enumerate() {
        let state = ledger.store().writer_state().await.unwrap();
        let base = 100 * index as u128;
        if index == fenced {
            // Another write moves the ledger after its state was taken.
            ledger.ingest(vec![transaction(base + 9, "2.00")], at(1)).await.unwrap();
        }
        if index == replaying {
            // An id stored already, presumed new.
            ledger.ingest(vec![transaction(base + 9, "1.00")], at(1)).await.unwrap();
            let state = ledger.store().writer_state().await.unwrap();
            let (fence, plan) = planned(state, &[base + 1, base + 9], 2);
            writes.push((fence, None, plan));
            continue;
        }
        let keys = (index == stale_key).then_some(KeyEpoch(0));
        let (fence, plan) = planned(state, &[base + 1, base + 2], 2);
        writes.push((fence, keys, plan));
    }
    let heads_before: Vec<_> =
        futures_util::future::join_all(ledgers.iter().map(|ledger| ledger.head())).await;
    let outcomes = futures_util::future::join_all(
        ledgers
            .iter()
            .zip(&writes)
            .map(|(ledger, (fence, keys, plan))| ledger.store().write_fenced(fence, *keys, plan)),
    )
    .await;

    for (index, outcome) in outcomes.iter().enumerate() {
        let name = names[index];
        let head = ledgers[index].head().await.unwrap();
        let first_new = transaction(100 * index as u128 + 1, "1.00").transaction_id;
        if [fenced, replaying, stale_key].contains(&index) {
            assert_eq!(&head, heads_before[index].as_ref().unwrap(), "{name}: nothing written");
            assert!(ledgers[index].entry(first_new).await.unwrap().is_none(), "{name}: nothing written");
        } else {
            assert!(outcome.is_ok(), "{name}: {outcome:?}");
            assert_eq!(head, writes[index].2.new_head(), "{name}");
        }
    }
    assert!(matches!(outcomes[fenced], Err(StoreError::Fenced)), "{:?}", outcomes[fenced]);
    assert!(matches!(outcomes[replaying], Err(StoreError::AlreadyStored)), "{:?}", outcomes[replaying]);
    assert!(matches!(outcomes[stale_key], Err(StoreError::KeysChanged)), "{:?}", outcomes[stale_key]);
    for ledger in &ledgers {
        assert!(ledger.verify_full().await.unwrap().is_intact());
    }
    // Through the core, the refused write is redone as one writer would.
    let base = 100 * replaying as u128;
    let receipts = ledgers[replaying]
        .ingest(vec![transaction(base + 1, "1.00"), transaction(base + 9, "1.00")], at(3))
        .await
        .unwrap();
    let answers: Vec<_> =
        receipts.iter().map(|receipt| (receipt.entry.sequence_number, receipt.status)).collect();
    assert_eq!(
        answers,
        [(2, invario_core::ReceiptStatus::Created), (1, invario_core::ReceiptStatus::Replayed)]
    );
    drop(database);
}

#[tokio::test]
async fn many_ledgers_appending_at_once_through_the_core_lose_nothing() {
    let names: Vec<String> = (0..12).map(|n| format!("many-{n}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (_catalog, ledgers, _database) = catalog_with(&refs).await;
    let ledgers = std::sync::Arc::new(ledgers);
    let mut tasks = Vec::new();
    for writer in 0..24_usize {
        let ledgers = ledgers.clone();
        tasks.push(tokio::spawn(async move {
            let ledger = &ledgers[writer % ledgers.len()];
            for round in 0..10_u128 {
                let id = 1_000 * writer as u128 + round + 1;
                ledger.ingest_each(vec![transaction(id, "3.00")], at(1)).await.unwrap()[0].as_ref().unwrap();
                // Every fifth write replays itself: answered, never stored twice.
                if round % 5 == 0 {
                    let replay = ledger.ingest_each(vec![transaction(id, "3.00")], at(2)).await.unwrap();
                    assert_eq!(replay[0].as_ref().unwrap().status, invario_core::ReceiptStatus::Replayed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for ledger in ledgers.iter() {
        let report = ledger.verify_full().await.unwrap();
        assert!(report.is_intact() && report.entries_checked == 20, "{report}");
        assert_eq!(ledger.tree_head().await.unwrap().size, 20);
        assert_eq!(ledger.fenced_writes(), 0, "ledgers sharing a commit never fence each other");
    }
}
