//! invario-postgres against a real PostgreSQL (see invario-testkit's harness for how one is found).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use futures_util::future::BoxFuture;
use invario_core::{AppendSession, IngestError, Ledger, LedgerStore, plan_append};
use invario_postgres::{PgLedger, pending_migrations};
use invario_testkit::contract::{at, transaction};
use invario_testkit::harness::{TestDatabase, fresh_database, fresh_empty_database};
use invario_testkit::tamper::{self, EntryEdit, TransactionEdit};
use invario_testkit::{
    catalog_contract_tests, fresh_pg_catalog, fresh_pg_key_store, fresh_pg_ledger, key_store_contract_tests,
    ledger_store_contract_tests,
};
use serde_json::json;
use sqlx::PgPool;

ledger_store_contract_tests!(fresh_pg_ledger(), cases = 24);
catalog_contract_tests!(fresh_pg_catalog(), parallel_ledgers);
key_store_contract_tests!(fresh_pg_key_store());

async fn ledger_with(count: u128) -> (Ledger<PgLedger>, TestDatabase) {
    let database = fresh_database().await;
    let ledger = Ledger::new(PgLedger::new(database.pool().clone()));
    ledger.ingest((1..=count).map(|n| transaction(n, "10.00")).collect(), at(1)).await.unwrap();
    (ledger, database)
}

async fn first_break(ledger: &Ledger<PgLedger>) -> (String, Option<u64>, String) {
    let report = ledger.verify_full().await.unwrap();
    let found = report.first_break.expect("tampering must be detected");
    (found.kind().to_owned(), found.sequence(), found.to_string())
}

type Edit = fn(PgPool) -> BoxFuture<'static, Result<(), sqlx::Error>>;

#[tokio::test]
async fn every_tamper_is_reported_at_the_sequence_touched_with_its_kind() {
    let cases: [(&str, Edit, &str, u64); 17] = [
        (
            "amount",
            |p| {
                Box::pin(
                    async move { tamper::edit_transaction(&p, 3, TransactionEdit::Amount("10.01")).await },
                )
            },
            "hash_mismatch",
            3,
        ),
        (
            "same amount, other scale",
            |p| {
                Box::pin(
                    async move { tamper::edit_transaction(&p, 3, TransactionEdit::Amount("10.0")).await },
                )
            },
            "hash_mismatch",
            3,
        ),
        (
            "currency",
            |p| {
                Box::pin(
                    async move { tamper::edit_transaction(&p, 2, TransactionEdit::Currency("USD")).await },
                )
            },
            "hash_mismatch",
            2,
        ),
        (
            "occurred_at",
            |p| {
                Box::pin(
                    async move { tamper::edit_transaction(&p, 4, TransactionEdit::OccurredAt(None)).await },
                )
            },
            "hash_mismatch",
            4,
        ),
        (
            "metadata",
            |p| {
                Box::pin(async move {
                    tamper::edit_transaction(&p, 1, TransactionEdit::Metadata("order", "B-1")).await
                })
            },
            "hash_mismatch",
            1,
        ),
        (
            "transaction id",
            |p| {
                Box::pin(async move {
                    tamper::edit_transaction(&p, 2, TransactionEdit::TransactionId(uuid::Uuid::from_u128(99)))
                        .await
                })
            },
            "entry_without_transaction",
            2,
        ),
        (
            "entry hash",
            |p| Box::pin(async move { tamper::edit_entry(&p, 3, EntryEdit::EntryHash([9; 32])).await }),
            "hash_mismatch",
            3,
        ),
        (
            "prev hash",
            |p| Box::pin(async move { tamper::edit_entry(&p, 4, EntryEdit::PrevHash([9; 32])).await }),
            "broken_link",
            4,
        ),
        (
            "recorded_at",
            |p| Box::pin(async move { tamper::edit_entry(&p, 5, EntryEdit::RecordedAt(0)).await }),
            "hash_mismatch",
            5,
        ),
        (
            "sequence number",
            |p| Box::pin(async move { tamper::edit_entry(&p, 2, EntryEdit::SequenceNumber(77)).await }),
            "sequence_gap",
            2,
        ),
        (
            "entry's transaction id",
            |p| {
                Box::pin(async move {
                    tamper::edit_entry(&p, 1, EntryEdit::TransactionId(uuid::Uuid::from_u128(98))).await
                })
            },
            "entry_without_transaction",
            1,
        ),
        ("delete entry", |p| Box::pin(async move { tamper::delete_entry(&p, 3).await }), "sequence_gap", 3),
        (
            "delete transaction",
            |p| Box::pin(async move { tamper::delete_transaction(&p, 4).await }),
            "entry_without_transaction",
            4,
        ),
        (
            "delete both",
            |p| Box::pin(async move { tamper::delete_entry_and_transaction(&p, 2).await }),
            "sequence_gap",
            2,
        ),
        (
            "delete the last entry and its transaction",
            |p| Box::pin(async move { tamper::delete_entry_and_transaction(&p, 5).await }),
            "head_mismatch",
            5,
        ),
        ("swap rows", |p| Box::pin(async move { tamper::swap_entries(&p, 2, 4).await }), "broken_link", 2),
        (
            "rewrite head",
            |p| Box::pin(async move { tamper::rewrite_head(&p, 5, [1; 32]).await }),
            "head_mismatch",
            5,
        ),
    ];
    for (name, edit, kind, sequence) in cases {
        let (ledger, database) = ledger_with(5).await;
        assert!(ledger.verify_full().await.unwrap().is_intact());
        edit(database.pool().clone()).await.unwrap();
        let (found_kind, found_sequence, message) = first_break(&ledger).await;
        assert_eq!((found_kind.as_str(), found_sequence), (kind, Some(sequence)), "{name}: {message}");
        let refused = ledger.ingest(vec![transaction(100, "1")], at(2)).await;
        assert!(
            matches!(refused, Err(IngestError::Quarantined(_))),
            "{name}: a broken ledger refuses writes"
        );
    }
}

#[tokio::test]
async fn a_deleted_entry_leaves_an_orphan_transaction_that_is_named() {
    let (ledger, database) = ledger_with(2).await;
    let first_hash = ledger.entries_after(0, 1).await.unwrap().entries[0].entry_hash.0;
    tamper::delete_entry(database.pool(), 2).await.unwrap();
    tamper::rewrite_head(database.pool(), 1, first_hash).await.unwrap();
    let (kind, _, message) = first_break(&ledger).await;
    assert_eq!(kind, "transaction_without_entry", "{message}");
    assert!(message.contains("00000000-0000-0000-0000-000000000002"), "{message}");
}

#[tokio::test]
async fn plain_edits_fail_with_the_append_only_message() {
    let (_ledger, database) = ledger_with(2).await;
    let pool = database.pool();
    for statement in [
        "UPDATE transactions SET amount = 1",
        "DELETE FROM transactions",
        "TRUNCATE transactions",
        "UPDATE ledger_entries SET recorded_at = now()",
        "DELETE FROM ledger_entries WHERE sequence_number = 1",
        "TRUNCATE ledger_entries",
        "DELETE FROM ledger_head",
        "UPDATE ledger_head SET sequence_number = 1",
    ] {
        let error = sqlx::query(statement).execute(pool).await.expect_err(statement).to_string();
        assert!(error.contains("the ledger is append-only"), "{statement}: {error}");
    }
    let citus = invario_postgres::is_citus(pool).await.unwrap();
    // Citus cannot run the statement trigger that checks contiguity (it drops
    // it when distributing, as documented); verification finds gaps there.
    if !citus {
        let gapped = sqlx::query(
            "INSERT INTO ledger_entries (ledger_id, sequence_number, transaction_id, prev_hash, entry_hash, recorded_at) \
             VALUES ('default', 4, gen_random_uuid(), decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex'), now())",
        )
        .execute(pool)
        .await;
        assert!(gapped.unwrap_err().to_string().contains("sequence numbers must be contiguous"));
    }
    // Citus refuses to move a row to another distribution value before our trigger runs.
    let moved_ledger =
        if citus { "modifying the partition value of rows is not allowed" } else { "may only move forward" };
    for (statement, message) in [
        (
            "INSERT INTO ledger_head (ledger_id, sequence_number, entry_hash) VALUES ('forged', 7, sha256('x'))",
            "a new ledger's head starts at sequence 0",
        ),
        (
            "INSERT INTO tree_state (ledger_id, tree_size, root_hash, frontier) VALUES ('forged', 7, sha256('x'), '')",
            "a new ledger's tree starts empty",
        ),
        ("UPDATE ledger_head SET ledger_id = 'other'", moved_ledger),
        ("DELETE FROM ledgers", "the ledger is append-only"),
    ] {
        let error = sqlx::query(statement).execute(pool).await.expect_err(statement).to_string();
        assert!(error.contains(message), "{statement}: {error}");
    }
    let forward_to_nowhere = sqlx::query("UPDATE ledger_head SET sequence_number = 3").execute(pool).await;
    assert!(forward_to_nowhere.unwrap_err().to_string().contains("must point at an existing entry"));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_entries").fetch_one(pool).await.unwrap();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn tree_tiles_only_grow_and_the_tree_state_only_moves_forward() {
    let (_ledger, database) = ledger_with(2).await;
    let pool = database.pool();
    for (statement, message) in [
        ("UPDATE tree_tiles SET hashes = substring(hashes FROM 1 FOR 32)", "may only grow"),
        ("UPDATE tree_tiles SET hashes = decode(repeat('ab', 96), 'hex')", "may only grow"),
        ("UPDATE tree_tiles SET tile_index = 9", "may only grow"),
        ("DELETE FROM tree_tiles", "the ledger is append-only"),
        ("TRUNCATE tree_tiles", "the ledger is append-only"),
        ("UPDATE tree_state SET tree_size = 1", "may only grow"),
        ("DELETE FROM tree_state", "the ledger is append-only"),
        ("TRUNCATE tree_state", "the ledger is append-only"),
    ] {
        let error = sqlx::query(statement).execute(pool).await.expect_err(statement).to_string();
        assert!(error.contains(message), "{statement}: {error}");
    }
    // Growing a partial tile by one more hash, keeping its prefix, is what an append does.
    sqlx::query("UPDATE tree_tiles SET hashes = hashes || decode(repeat('cd', 32), 'hex') WHERE level = 0")
        .execute(pool)
        .await
        .expect("a partial tile may grow");
}

#[tokio::test]
async fn the_guides_audit_query_works_as_written() {
    use sqlx::Row;
    let (_ledger, database) = ledger_with(12).await;
    let rows = sqlx::query("SELECT * FROM ledger_entries ORDER BY sequence_number DESC LIMIT 10;")
        .fetch_all(database.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[0].get::<i64, _>("sequence_number"), 12);
}

#[tokio::test]
async fn amounts_keep_their_scale_and_float_style_input_never_reaches_the_database() {
    let database = fresh_database().await;
    let ledger = Ledger::new(PgLedger::new(database.pool().clone()));
    let id = uuid::Uuid::from_u128(1).to_string();
    ledger
        .ingest_json(&[json!({"transaction_id": id, "amount": "100.50", "currency": "BRL"})], at(1))
        .await
        .unwrap();
    let stored: String =
        sqlx::query_scalar("SELECT amount::text FROM transactions").fetch_one(database.pool()).await.unwrap();
    assert_eq!(stored, "100.50");
    for bad in [json!("1e3"), json!(100.5), json!("1E-2"), json!("NaN"), json!("Infinity")] {
        let id = uuid::Uuid::from_u128(2).to_string();
        let item = json!({"transaction_id": id, "amount": bad, "currency": "BRL"});
        let refused = ledger.ingest_json(&[item], at(2)).await;
        assert!(matches!(refused, Err(IngestError::Rejected(_))), "{bad}");
    }
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM transactions").fetch_one(database.pool()).await.unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_batch_whose_connection_is_killed_mid_transaction_leaves_nothing() {
    let database = fresh_database().await;
    let pool = database.pool().clone();
    let ledger = Ledger::new(PgLedger::new(pool.clone()));
    ledger.ingest(vec![transaction(1, "1")], at(1)).await.unwrap();
    let head = ledger.head().await.unwrap();

    // Another session holds ledger_entries, so the append blocks half-way:
    // holding the head lock, before its rows are written.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE ledger_entries IN EXCLUSIVE MODE").execute(&mut *blocker).await.unwrap();
    let store = ledger.store().clone();
    let append = tokio::spawn(async move {
        let batch: Vec<_> = (2..=50).map(|n| transaction(n, "2")).collect();
        let ids: Vec<_> = batch.iter().map(|t| t.transaction_id).collect();
        let session = store.begin_append(&ids).await?;
        let plan = plan_append(session.snapshot(), batch, at(2)).expect("plan");
        session.commit(&plan).await
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let victim: i32 = loop {
        assert!(std::time::Instant::now() < deadline, "the append never blocked on ledger_entries");
        let waiting: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO ledger_entries%'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if let Some(pid) = waiting {
            break pid;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(victim).fetch_one(&pool).await.unwrap();
    assert!(killed);
    let lost = append.await.unwrap().expect_err("the append must report the lost connection");
    // Retryable: the HTTP layer answers 503 `unavailable`, never 500.
    assert!(matches!(lost, invario_core::StoreError::Unavailable(_)), "{lost:?}");
    blocker.rollback().await.unwrap();

    assert_eq!(ledger.head().await.unwrap(), head);
    let transactions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM transactions").fetch_one(&pool).await.unwrap();
    assert_eq!(transactions, 1, "the half-written batch left nothing behind");
    assert!(ledger.verify_full().await.unwrap().is_intact());
    ledger.ingest(vec![transaction(2, "2")], at(3)).await.expect("appends continue afterwards");
}

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
#[path = "../examples/embed_postgres.rs"]
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
        position = entry.checkpoint();
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
    assert_eq!(applied.iter().map(|m| m.description.as_str()).collect::<Vec<_>>(), ["ledgers"]);
    let ledger = Ledger::new(PgLedger::new(pool.clone()));
    assert_eq!(ledger.head().await.unwrap().checkpoint(), position, "the head moved into default unchanged");
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
