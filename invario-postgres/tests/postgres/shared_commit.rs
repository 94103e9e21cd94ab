//! Ledgers share a commit (issue 27, lever L8): the fenced writes several
//! ledgers of one catalog have ready at the same moment go to PostgreSQL in
//! one call and one transaction, and each still lands or fails on its own.

use invario_core::{KeyEpoch, LedgerCatalog, LedgerName, LedgerStore, StoreError};
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

/// Awaits `first` and then `rest` while the head of `held` (the ledger
/// `first` writes) is locked by another transaction: `first`'s call waits on
/// that lock, `rest` is issued only then — so every write of it is queued
/// while the lane's one call is in flight, however slow the machine — and the
/// lock is released once they are.
async fn behind_a_held_call<A, B>(
    pool: &PgPool,
    held: &str,
    first: impl std::future::Future<Output = A>,
    rest: impl std::future::Future<Output = B>,
) -> (A, B) {
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM ledger_head WHERE ledger_id = $1 FOR UPDATE")
        .bind(held)
        .execute(&mut *holder)
        .await
        .unwrap();
    let first_waits = tokio::sync::Notify::new();
    let (rest_queued, queued) = tokio::sync::oneshot::channel::<()>();
    let watch = async {
        let waiting = async {
            loop {
                let calls: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND wait_event_type = 'Lock' AND query LIKE '%invario_append%'",
                )
                .fetch_one(pool)
                .await
                .unwrap();
                if calls >= 1 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("the first write waits for its head");
        first_waits.notify_one();
        queued.await.unwrap();
        holder.rollback().await.unwrap();
    };
    let issue_rest = async {
        first_waits.notified().await;
        let mut rest = std::pin::pin!(rest);
        // Polled once, every write of `rest` is queued; then the lock goes.
        let early = futures_util::poll!(rest.as_mut());
        rest_queued.send(()).unwrap();
        match early {
            std::task::Poll::Ready(done) => done,
            std::task::Poll::Pending => rest.await,
        }
    };
    let (first, rest, ()) = tokio::join!(first, issue_rest, watch);
    (first, rest)
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
    // The first write's call waits on its head; the others, issued then,
    // queue behind it and go as one call.
    let first = ledgers[0].store().write_fenced(&writes[0].0, None, &writes[0].1);
    let rest = futures_util::future::join_all(
        ledgers[1..]
            .iter()
            .zip(&writes[1..])
            .map(|(ledger, (fence, plan))| ledger.store().write_fenced(fence, None, plan)),
    );
    let citus = invario_postgres::is_citus(database.pool()).await.unwrap();
    let (first, mut outcomes) = if citus {
        tokio::join!(first, rest)
    } else {
        behind_a_held_call(database.pool(), names[0], first, rest).await
    };
    outcomes.push(first);
    for outcome in &outcomes {
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    for (ledger, (_, plan)) in ledgers.iter().zip(&writes) {
        assert_eq!(ledger.head().await.unwrap(), plan.new_head());
        let report = ledger.verify_full().await.unwrap();
        assert!(report.is_intact() && report.entries_checked == 2, "{report}");
        assert_eq!(ledger.tree_head().await.unwrap().size, 2, "each tree kept up with its chain");
    }
    if !citus {
        assert_eq!(
            head_writers(database.pool(), &names).await,
            2,
            "the first write commits alone, the others queued behind it share one commit"
        );
    }
}

/// Rows of `table` whose xmax is a MultiXact (several transactions on one row
/// version: here, a lock taken by one and an update made by another).
async fn multixact_row_versions(pool: &PgPool, table: &str) -> i64 {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pageinspect").execute(pool).await.unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM generate_series(0, (pg_relation_size($1::regclass) / 8192)::int - 1) AS page, \
         LATERAL heap_page_items(get_raw_page($1, page)) WHERE (t_infomask & 4096) <> 0",
    )
    .bind(table)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A shared commit moves each head and tree state in the (sub)transaction that
/// locked it. Locked in one and moved in another, the moved row versions
/// would carry MultiXacts, each written to the MultiXact logs, looked up by
/// later readers of the row and counted toward the cluster's MultiXact
/// wraparound vacuums.
#[tokio::test]
async fn a_shared_commit_leaves_no_multixact_on_the_rows_it_moves() {
    let names = ["mx-a", "mx-b", "mx-c", "mx-d", "mx-e"];
    let (_catalog, ledgers, database) = catalog_with(&names).await;
    if invario_postgres::is_citus(database.pool()).await.unwrap() {
        return; // Shared commits never run on Citus (each write goes to its ledger's worker alone).
    }
    let mut writes = Vec::new();
    for (index, ledger) in ledgers.iter().enumerate() {
        let state = ledger.store().writer_state().await.unwrap();
        writes.push(planned(state, &[10 * index as u128 + 1], 1));
    }
    let first = ledgers[0].store().write_fenced(&writes[0].0, None, &writes[0].1);
    let rest = futures_util::future::join_all(
        ledgers[1..]
            .iter()
            .zip(&writes[1..])
            .map(|(ledger, (fence, plan))| ledger.store().write_fenced(fence, None, plan)),
    );
    let (first, outcomes) = behind_a_held_call(database.pool(), names[0], first, rest).await;
    assert!(first.is_ok() && outcomes.iter().all(Result::is_ok), "{first:?} {outcomes:?}");
    assert_eq!(
        head_writers(database.pool(), &names).await,
        2,
        "the writes after the first one shared a commit"
    );
    for table in ["ledger_head", "tree_state"] {
        assert_eq!(multixact_row_versions(database.pool(), table).await, 0, "{table}");
    }
}

/// `state`'s plan for `ids` at `step`, its fence, and the state it leaves.
fn planned_ahead(
    state: invario_core::writer::WriterState,
    ids: &[u128],
    step: i64,
) -> (invario_core::writer::Fence, invario_core::AppendPlan, invario_core::writer::WriterState) {
    let fence = state.fence();
    let snapshot = state.into_snapshot();
    let plan = plan_append(&snapshot, ids.iter().map(|&n| transaction(n, "1.00")).collect(), at(step))
        .expect("planned");
    let after = invario_core::writer::WriterState::after(snapshot, &plan);
    (fence, plan, after)
}

/// Writes `first` and `second` on ledger `ledgers[0]`, both queued while a
/// call writing transaction `other_id` on `ledgers[1]` (which must be
/// written) waits on that ledger's held head; their outcomes.
async fn queued_behind_a_held_call(
    database: &TestDatabase,
    ledgers: &[Ledger<PgLedger>],
    other_id: u128,
    (first_fence, first): (&invario_core::writer::Fence, &invario_core::AppendPlan),
    (second_fence, second): (&invario_core::writer::Fence, &invario_core::AppendPlan),
) -> (Result<(), StoreError>, Result<(), StoreError>) {
    let (other, store) = (ledgers[1].store(), ledgers[0].store());
    let (other_fence, other_plan) = planned(other.writer_state().await.unwrap(), &[other_id], 1);
    let waits = other.write_fenced(&other_fence, None, &other_plan);
    let queued = futures_util::future::join(
        store.write_fenced(first_fence, None, first),
        store.write_fenced(second_fence, None, second),
    );
    let held = other.ledger().as_str().to_owned();
    let (other_outcome, outcomes) = behind_a_held_call(database.pool(), &held, waits, queued).await;
    assert!(other_outcome.is_ok(), "{other_outcome:?}");
    outcomes
}

/// What lets the core plan a ledger's next write while its last is in
/// flight (`LedgerStore::orders_fenced_writes`): two writes of one ledger
/// queued together, the second planned on the state the first leaves, land
/// in order; behind a first write that is refused, the second is refused too
/// and nothing of either is written.
#[tokio::test]
async fn a_ledgers_write_queued_behind_another_of_its_own_lands_after_it() {
    let names = ["order-a", "order-b"];
    let (_catalog, ledgers, database) = catalog_with(&names).await;
    let (ordered, store) = (&ledgers[0], ledgers[0].store());
    if invario_postgres::is_citus(database.pool()).await.unwrap() {
        assert!(!store.orders_fenced_writes().await, "Citus delegates writes side by side");
        return;
    }
    assert!(store.orders_fenced_writes().await);
    let start = store.writer_state().await.unwrap();
    let (first_fence, first, after_first) = planned_ahead(start.clone(), &[1, 2], 1);
    let (second_fence, second, _) = planned_ahead(after_first, &[3], 2);
    let (first_outcome, second_outcome) =
        queued_behind_a_held_call(&database, &ledgers, 100, (&first_fence, &first), (&second_fence, &second))
            .await;
    assert!(first_outcome.is_ok(), "{first_outcome:?}");
    assert!(second_outcome.is_ok(), "{second_outcome:?}");
    assert_eq!(ordered.head().await.unwrap(), second.new_head());
    let report = ordered.verify_full().await.unwrap();
    assert!(report.is_intact() && report.entries_checked == 3, "{report}");

    // Planned on the state before those writes: the first is fenced, and the
    // one queued behind it with it, planned on what it would have left.
    let (stale_fence, stale, after_stale) = planned_ahead(start, &[4], 3);
    let (doomed_fence, doomed, _) = planned_ahead(after_stale, &[5], 4);
    let (stale_outcome, doomed_outcome) =
        queued_behind_a_held_call(&database, &ledgers, 101, (&stale_fence, &stale), (&doomed_fence, &doomed))
            .await;
    assert!(matches!(stale_outcome, Err(StoreError::Fenced)), "{stale_outcome:?}");
    assert!(matches!(doomed_outcome, Err(StoreError::Fenced)), "{doomed_outcome:?}");
    assert_eq!(ordered.head().await.unwrap(), second.new_head(), "nothing written");
    for id in [4, 5] {
        assert!(ordered.entry(transaction(id, "1.00").transaction_id).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn each_ledger_of_a_shared_commit_keeps_its_own_outcome() {
    // Polled together, the writes are queued together and the lane's task
    // writes them in one call; the first ledgers' writes land.
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

/// Two servers sharing commits over the same ledgers (two catalogs, each with
/// its own connections), their writers going through the ledgers in opposite
/// orders: each write lands once; the other server's writes are fenced and
/// redone, never lost, and no call fails (a deadlock would fail every write of
/// one call; that the heads are locked in name order, which rules one out, is
/// pinned down by `a_shared_commit_locks_its_heads_in_name_order`).
#[tokio::test]
async fn two_servers_sharing_commits_over_the_same_ledgers_lose_nothing() {
    const WRITERS: usize = 6;
    const ROUNDS: usize = 8;
    let names: Vec<String> = (0..6).map(|n| format!("both-{n}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (_first, first_ledgers, database) = catalog_with(&refs).await;
    let second = PgCatalog::new(database.pool().clone());
    let second_ledgers: Vec<_> =
        names.iter().map(|name| Ledger::new(second.store(&LedgerName::parse(name).unwrap()))).collect();
    let mut tasks = Vec::new();
    for (server, ledgers) in [first_ledgers, second_ledgers].into_iter().enumerate() {
        let ledgers = std::sync::Arc::new(ledgers);
        for writer in 0..WRITERS {
            let ledgers = ledgers.clone();
            tasks.push(tokio::spawn(async move {
                for round in 0..ROUNDS {
                    let turn = (writer + round) % ledgers.len();
                    let index = if server == 0 { turn } else { ledgers.len() - 1 - turn };
                    let id = (100_000 * server + 1_000 * writer + round + 1) as u128;
                    let receipts = ledgers[index].ingest_each(vec![transaction(id, "1.00")], at(1)).await;
                    let receipt = receipts.unwrap().remove(0).unwrap();
                    assert_eq!(receipt.status, invario_core::ReceiptStatus::Created);
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let reader = PgCatalog::new(database.pool().clone());
    let mut entries = 0;
    for name in &names {
        let ledger = Ledger::new(reader.store(&LedgerName::parse(name).unwrap()));
        let report = ledger.verify_full().await.unwrap();
        assert!(report.is_intact(), "{name}: {report}");
        entries += report.entries_checked;
    }
    assert_eq!(entries, 2 * WRITERS as u64 * ROUNDS as u64, "every write landed once");
}

/// A shared commit locks its ledgers' heads in name order whatever order its
/// writes queued in — what keeps two servers sharing commits over the same
/// ledgers from waiting on each other in a cycle. Seen from outside: with the
/// head of `lock-b` held by another transaction, a call that lists `lock-b`
/// before `lock-a` has already locked `lock-a` when it waits.
#[tokio::test]
async fn a_shared_commit_locks_its_heads_in_name_order() {
    let names = ["lock-a", "lock-b"];
    let (_catalog, _ledgers, database) = catalog_with(&names).await;
    let pool = database.pool().clone();
    if invario_postgres::is_citus(&pool).await.unwrap() {
        return; // Shared commits never run on Citus (each write goes to its ledger's worker alone).
    }
    type Fence = (String, i64, Vec<u8>, i64, Vec<u8>, Vec<u8>, i64, Vec<u8>);
    let fences: Vec<Fence> = sqlx::query_as(
        "SELECT h.ledger_id, h.sequence_number, h.entry_hash, s.tree_size, s.root_hash, s.frontier, \
                h.sequence_number, h.entry_hash \
         FROM ledger_head h JOIN tree_state s USING (ledger_id) WHERE h.ledger_id = ANY($1) \
         ORDER BY h.ledger_id DESC",
    )
    .bind(names)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(fences[0].0, "lock-b", "the call lists lock-b first");
    let column = |pick: fn(&Fence) -> Vec<u8>| fences.iter().map(pick).collect::<Vec<_>>();
    let numbers = |pick: fn(&Fence) -> i64| fences.iter().map(pick).collect::<Vec<_>>();
    let call = sqlx::query(
        "SELECT code, message FROM invario_append_many_v1(ARRAY[NULL, NULL]::bigint[], $1, $2, $3, $4, $5, \
             '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', \
             $4, $5, $6, $7, $8, ARRAY[NULL, NULL]::timestamptz[])",
    )
    .bind(fences.iter().map(|fence| fence.0.clone()).collect::<Vec<_>>())
    .bind(numbers(|fence| fence.1))
    .bind(column(|fence| fence.2.clone()))
    .bind(numbers(|fence| fence.3))
    .bind(column(|fence| fence.4.clone()))
    .bind(column(|fence| fence.5.clone()))
    .bind(numbers(|fence| fence.6))
    .bind(column(|fence| fence.7.clone()));

    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM ledger_head WHERE ledger_id = 'lock-b' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let calling = {
        let pool = pool.clone();
        tokio::spawn(async move { call.fetch_all(&pool).await.map(|rows| rows.len()) })
    };
    let waiting = async {
        loop {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND query LIKE '%invario_append_many_v1%')",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if waiting {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("the call waits for lock-b's head");

    let mut probe = pool.begin().await.unwrap();
    let lock_a = sqlx::query("SELECT 1 FROM ledger_head WHERE ledger_id = 'lock-a' FOR UPDATE NOWAIT")
        .execute(&mut *probe)
        .await;
    let code = lock_a
        .err()
        .and_then(|error| error.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned()));
    assert_eq!(code.as_deref(), Some("55P03"), "lock-a's head is locked before lock-b's is waited for");
    probe.rollback().await.unwrap();

    holder.rollback().await.unwrap();
    assert_eq!(calling.await.unwrap().unwrap(), 2, "one outcome per ledger once lock-b is free");
}
