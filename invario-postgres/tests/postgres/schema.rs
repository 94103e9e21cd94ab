//! The schema: migrations reported and idempotent, URLs refused clearly, the
//! embedding example, Citus distribution, a database from before ledgers.

use super::*;

#[tokio::test]
async fn migrations_are_reported_and_idempotent() {
    let database = fresh_database().await;
    assert!(pending_migrations(database.pool()).await.unwrap().is_empty(), "the harness migrated");
    assert!(
        invario_postgres::migrate(database.pool()).await.unwrap().is_empty(),
        "a second run applies nothing"
    );
    sqlx::query("DROP TABLE _sqlx_migrations").execute(database.pool()).await.unwrap();
    let pending = pending_migrations(database.pool()).await.unwrap();
    assert_eq!(pending.len(), invario_postgres::MIGRATOR.iter().count());
    assert_eq!(pending[0].description, "ledger");
}

#[tokio::test]
async fn a_malformed_or_unreachable_url_is_a_clear_error() {
    let error = invario_postgres::connect("mysql://nope").await.unwrap_err().to_string();
    assert!(error.starts_with("the database URL is malformed"), "{error}");
    let error = invario_postgres::connect("postgres://postgres@127.0.0.1:1/x").await.unwrap_err().to_string();
    assert!(error.starts_with("cannot connect to PostgreSQL"), "{error}");
}

#[allow(dead_code, unreachable_pub)] // its `main` is for `cargo run --example`
#[path = "../../examples/embed_postgres.rs"]
mod embed_postgres;

#[tokio::test]
async fn the_embedding_example_runs_against_a_real_database() {
    let database = fresh_empty_database().await;
    embed_postgres::run(database.url()).await.unwrap();
    let entries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_entries").fetch_one(database.pool()).await.unwrap();
    assert_eq!(entries, 1);
}

/// On Citus (`INVARIO_TEST_EXPECT_CITUS=1` makes a plain server a failure),
/// `migrate` distributes every ledger table by `ledger_id`, colocated, so all
/// of one ledger's rows live on one worker; on plain PostgreSQL the same
/// schema stays plain.
#[tokio::test]
async fn each_ledgers_rows_live_on_one_worker_on_citus() {
    use invario_core::{LedgerCatalog, LedgerName};
    let database = fresh_database().await;
    let pool = database.pool();
    let citus = invario_postgres::is_citus(pool).await.unwrap();
    let expected = std::env::var("INVARIO_TEST_EXPECT_CITUS").is_ok_and(|value| value == "1");
    assert!(citus || !expected, "INVARIO_TEST_EXPECT_CITUS=1 but the test server is plain PostgreSQL");
    if !citus {
        let distributed: bool = sqlx::query_scalar("SELECT to_regclass('pg_dist_partition') IS NOT NULL")
            .fetch_one(pool)
            .await
            .unwrap();
        assert!(!distributed, "plain PostgreSQL keeps plain tables");
        invario_postgres::distribute_on_citus(pool).await.expect("a no-op on plain PostgreSQL");
        return;
    }
    let tables: Vec<(String, String, Option<String>, i32)> = sqlx::query_as(
        "SELECT logicalrelid::regclass::text, partmethod::text, column_to_column_name(logicalrelid, partkey), colocationid \
         FROM pg_dist_partition ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let ledger_tables =
        ["checkpoints", "ledger_entries", "ledger_head", "transactions", "tree_state", "tree_tiles"];
    let colocation =
        tables.iter().find(|(name, ..)| name == "ledger_head").expect("ledger_head distributed").3;
    for table in ledger_tables {
        let row = tables
            .iter()
            .find(|(name, ..)| name == table)
            .unwrap_or_else(|| panic!("{table} not distributed"));
        assert_eq!(
            (row.1.as_str(), row.2.as_deref(), row.3),
            ("h", Some("ledger_id"), colocation),
            "{table}"
        );
    }
    for table in ["api_keys", "ledgers"] {
        let row = tables
            .iter()
            .find(|(name, ..)| name == table)
            .unwrap_or_else(|| panic!("{table} not a reference table"));
        assert_eq!(row.1, "n", "{table} is a reference table");
    }
    invario_postgres::distribute_on_citus(pool).await.expect("distributing again changes nothing");

    let catalog = invario_postgres::PgCatalog::new(pool.clone());
    let mut nodes_used = std::collections::BTreeSet::new();
    for (name, count) in [("acme", 3u128), ("books", 4), ("default", 2), ("tenant-7", 1)] {
        let ledger = LedgerName::parse(name).unwrap();
        catalog.create_ledger(&ledger, at(0)).await.unwrap();
        let store = Ledger::new(catalog.store(&ledger));
        store.ingest((1..=count).map(|n| transaction(n, "1.00")).collect(), at(1)).await.unwrap();
        store.store().store_checkpoint(1, &format!("{name} note")).await.unwrap();
        let nodes: Vec<i32> = sqlx::query_scalar(
            "SELECT DISTINCT n.nodeport FROM unnest($1::text[]) AS t(name) \
             JOIN pg_dist_placement p ON p.shardid = get_shard_id_for_distribution_column(t.name, $2) \
             JOIN pg_dist_node n ON n.groupid = p.groupid",
        )
        .bind(ledger_tables.map(str::to_owned).to_vec())
        .bind(name)
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(nodes.len(), 1, "ledger {name}: its shards are on {nodes:?}");
        nodes_used.extend(nodes);
        assert!(store.verify_full().await.unwrap().is_intact());
    }
    assert!(!nodes_used.is_empty());
}

/// On Citus an append is one call handed whole to the worker holding its
/// ledger (issue 27, lever L9): the coordinator's plan of the write function
/// is a single task on that worker, not statements run from the coordinator.
/// A write by it lands (on the worker's shard tables); one meeting a stored id
/// is refused as already stored and one on a stale fence as fenced, nothing of
/// either written; called where it is not handed on (inside a transaction
/// block) it goes through Citus and still fences. On plain
/// PostgreSQL the function is only created (the writer never calls it there).
#[tokio::test]
async fn on_citus_an_append_is_one_call_handed_to_the_ledgers_worker() {
    use invario_core::{LedgerCatalog, LedgerName, StoreError};
    let database = fresh_database().await;
    let pool = database.pool();
    let citus = invario_postgres::is_citus(pool).await.unwrap();
    let expected = std::env::var("INVARIO_TEST_EXPECT_CITUS").is_ok_and(|value| value == "1");
    assert!(citus || !expected, "INVARIO_TEST_EXPECT_CITUS=1 but the test server is plain PostgreSQL");
    let created: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'invario_append_delegated_v1')",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(created, "the migration creates the delegated write function");
    if !citus {
        return;
    }
    let catalog = invario_postgres::PgCatalog::new(pool.clone());
    let ledger = LedgerName::parse("tenant-9").unwrap();
    catalog.create_ledger(&ledger, at(0)).await.unwrap();

    // Custom plans on every node that runs the call: with cached generic
    // plans Citus re-plans and keeps one more local plan per call (a worker
    // backend grew by tens of MB a minute under load).
    let settings: Vec<String> = sqlx::query_scalar(
        "SELECT result FROM run_command_on_workers(\
         $$SELECT proconfig::text FROM pg_proc WHERE proname = 'invario_append_delegated_v1'$$)",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        !settings.is_empty() && settings.iter().all(|config| config == "{plan_cache_mode=force_custom_plan}"),
        "{settings:?}"
    );

    // A call with no rows on the empty fence: the statement EXPLAIN plans,
    // and (below) one called where it is not handed on.
    macro_rules! empty_write_call {
        () => {
            "SELECT invario_append_delegated_v1('tenant-9', 0, '', 0, '', \
             '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', 0, '', '', 0, '', NULL)"
        };
    }
    let plan: Vec<String> = sqlx::query_scalar(concat!("EXPLAIN (COSTS OFF) ", empty_write_call!()))
        .fetch_all(pool)
        .await
        .unwrap();
    let worker: i32 = sqlx::query_scalar(
        "SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n ON n.groupid = p.groupid \
         WHERE p.shardid = get_shard_id_for_distribution_column('ledger_head', 'tenant-9')",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(plan[0].trim(), "Custom Scan (Citus Adaptive)", "{plan:#?}");
    assert!(plan.iter().any(|line| line.trim() == "Task Count: 1"), "{plan:#?}");
    assert!(plan.iter().any(|line| line.contains(&format!("port={worker} "))), "not on {worker}: {plan:#?}");

    let store = catalog.store(&ledger);
    let first_state = store.writer_state().await.unwrap();
    let (stale_fence, _) = planned(first_state.clone(), &[9], 1);
    let (fence, written) = planned(first_state, &[1, 2, 3], 1);
    store.write_fenced(&fence, None, &written).await.unwrap();
    assert_eq!(store.head().await.unwrap().sequence_number, 3);

    let (fence, meeting_a_stored_id) = planned(store.writer_state().await.unwrap(), &[4, 3], 2);
    let refused = store.write_fenced(&fence, None, &meeting_a_stored_id).await.unwrap_err();
    assert!(matches!(refused, StoreError::AlreadyStored), "{refused:?}");
    let (_, on_a_stale_fence) = planned(store.writer_state().await.unwrap(), &[5], 2);
    let refused = store.write_fenced(&stale_fence, None, &on_a_stale_fence).await.unwrap_err();
    assert!(matches!(refused, StoreError::Fenced), "{refused:?}");

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM transactions WHERE ledger_id = 'tenant-9'")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(
        (store.head().await.unwrap().sequence_number, stored),
        (3, 3),
        "nothing of either refusal written"
    );

    // Inside a transaction block the coordinator runs the call itself, where
    // the ledger's shards are not tables of its own: the function's statements
    // then go to the distributed tables, through Citus, and still fence.
    let mut transaction = pool.begin().await.unwrap();
    let not_delegated = sqlx::query(empty_write_call!()).execute(&mut *transaction).await.unwrap_err();
    let code = not_delegated.as_database_error().and_then(|error| error.code()).map(|code| code.into_owned());
    assert_eq!(code.as_deref(), Some("IVF01"), "{not_delegated:?}");
    assert!(not_delegated.to_string().contains("ledger tenant-9 moved"), "{not_delegated}");
    transaction.rollback().await.unwrap();
    assert!(Ledger::new(store).verify_full().await.unwrap().is_intact());
}

/// A database from before ledgers (every migration up to the key change
/// notifications) holding a chain migrates with all its rows in `default`:
/// the same head, every entry readable and verified, ids still idempotent.
#[tokio::test]
async fn a_database_from_before_ledgers_migrates_with_all_its_rows_in_default() {
    use invario_core::{ChainPosition, LedgerCatalog, LedgerEntry, LedgerName};
    let database = fresh_empty_database().await;
    let pool = database.pool();
    let before_ledgers =
        invario_testkit::harness::migrations_before(&invario_postgres::MIGRATOR, 20261128000002);
    before_ledgers.run(pool).await.unwrap();
    // Rows as the adapter of that schema wrote them (no ledger_id anywhere).
    let mut position = ChainPosition::GENESIS;
    for n in 1..=6u128 {
        let entry =
            LedgerEntry::next(position, transaction(n, "12.30"), at(i64::try_from(n).unwrap())).unwrap();
        position = entry.position();
        let t = &entry.transaction;
        sqlx::query(
            "INSERT INTO transactions (transaction_id, amount, currency, occurred_at, metadata) \
             VALUES ($1, $2::numeric, $3, $4, $5::jsonb)",
        )
        .bind(t.transaction_id.as_uuid())
        .bind(t.amount.to_canonical_string())
        .bind(t.currency.code())
        .bind(t.occurred_at.map(|time| time.to_datetime()))
        .bind(serde_json::to_string(t.metadata.as_map()).unwrap())
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO ledger_entries (sequence_number, transaction_id, prev_hash, entry_hash, recorded_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(i64::try_from(entry.sequence_number).unwrap())
        .bind(t.transaction_id.as_uuid())
        .bind(entry.prev_hash.as_bytes().as_slice())
        .bind(entry.entry_hash.as_bytes().as_slice())
        .bind(entry.recorded_at.to_datetime())
        .execute(pool)
        .await
        .unwrap();
        sqlx::query("UPDATE ledger_head SET sequence_number = $1, entry_hash = $2, recorded_at = $3")
            .bind(i64::try_from(entry.sequence_number).unwrap())
            .bind(entry.entry_hash.as_bytes().as_slice())
            .bind(entry.recorded_at.to_datetime())
            .execute(pool)
            .await
            .unwrap();
    }

    let applied = invario_postgres::migrate(pool).await.unwrap();
    assert_eq!(
        applied.iter().map(|m| m.description.as_str()).collect::<Vec<_>>(),
        [
            "ledgers",
            "append function",
            "checkpoint cosignatures",
            "key epoch",
            "shared commit",
            "copy write",
            "citus delegated append",
            "citus custom plans",
            "leaner write functions",
            "citus shard local writes",
            "citus head check on shard",
            "contiguity waits for the head"
        ]
    );
    let ledger = Ledger::new(PgLedger::new(pool.clone()));
    assert_eq!(ledger.head().await.unwrap().position(), position, "the head moved into default unchanged");
    ledger.build_tree(&mut |_, _| {}).await.unwrap();
    let report = ledger.verify_full().await.unwrap();
    assert!(report.is_intact() && report.entries_checked == 6, "{report:?}");
    let replay = ledger.ingest(vec![transaction(3, "12.30")], at(9)).await.unwrap();
    assert_eq!(replay[0].entry.sequence_number, 3, "an old id is still a replay in default");
    let catalog = invario_postgres::PgCatalog::new(pool.clone());
    let names: Vec<LedgerName> =
        catalog.list_ledgers().await.unwrap().into_iter().map(|info| info.name).collect();
    assert_eq!(names, [LedgerName::default_ledger()]);
}
