//! invario-sqlite: the contract suite, agreement with PostgreSQL, durability and tamper detection.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use invario_core::{Ledger, LedgerEntry};
use invario_postgres::PgLedger;
use invario_sqlite::SqliteLedger;
use invario_testkit::contract::{at, transaction};
use invario_testkit::harness::fresh_database;
use invario_testkit::{
    TempSqliteFile, catalog_contract_tests, fresh_sqlite_catalog, fresh_sqlite_key_store,
    fresh_sqlite_ledger, key_store_contract_tests, ledger_store_contract_tests,
};

ledger_store_contract_tests!(fresh_sqlite_ledger(), cases = 32);
catalog_contract_tests!(fresh_sqlite_catalog());
key_store_contract_tests!(fresh_sqlite_key_store());

async fn all_entries<S: invario_core::LedgerStore>(ledger: &Ledger<S>) -> Vec<LedgerEntry> {
    ledger.entries_after(0, 1000).await.unwrap().entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_transactions_hash_identically_on_sqlite_and_postgres() {
    let file = TempSqliteFile::new().await;
    let sqlite = Ledger::new(SqliteLedger::new(file.pool().clone()));
    let database = fresh_database().await;
    let postgres = Ledger::new(PgLedger::new(database.pool().clone()));
    let batches = [
        vec![
            transaction(1, "100.50"),
            transaction(2, "-0.005"),
            transaction(3, "1234567890.123456789012345678"),
        ],
        vec![transaction(4, "7")],
        vec![transaction(5, "0.10"), transaction(1, "100.50")],
    ];
    for (step, batch) in (1..).zip(batches) {
        let on_sqlite = sqlite.ingest(batch.clone(), at(step)).await.unwrap();
        let on_postgres = postgres.ingest(batch, at(step)).await.unwrap();
        assert_eq!(on_sqlite, on_postgres);
    }
    let (from_sqlite, from_postgres) = (all_entries(&sqlite).await, all_entries(&postgres).await);
    assert_eq!(from_sqlite.len(), 5);
    assert_eq!(from_sqlite, from_postgres, "entries, hashes included, are identical");
    assert_eq!(from_sqlite[0].transaction.amount.to_string(), "100.50");
}

#[tokio::test]
async fn appends_survive_reopening_the_file() {
    let file = TempSqliteFile::new().await;
    let before = {
        let ledger = Ledger::new(SqliteLedger::new(file.pool().clone()));
        ledger.ingest((1..=3).map(|n| transaction(n, "1.50")).collect(), at(1)).await.unwrap();
        file.pool().close().await;
        ledger.head().await.err().map(|_| ())
    };
    assert!(before.is_some(), "the closed pool is really closed");
    let reopened = invario_sqlite::connect(&file.url()).await.unwrap();
    let ledger = Ledger::new(SqliteLedger::new(reopened));
    assert_eq!(ledger.head().await.unwrap().sequence_number, 3);
    assert!(ledger.verify_full().await.unwrap().is_intact());
}

#[tokio::test]
async fn a_checkpoint_copy_only_gains_cosignatures() {
    let file = TempSqliteFile::new().await;
    let ledger = Ledger::new(SqliteLedger::new(file.pool().clone()));
    ledger.ingest((1..=2).map(|n| transaction(n, "10.00")).collect(), at(1)).await.unwrap();
    invario_core::LedgerStore::store_checkpoint(ledger.store(), 2, "the note\n\n— log sig\n").await.unwrap();
    for (statement, message) in [
        ("UPDATE checkpoints SET note = 'forged'", "only gains cosignatures"),
        ("UPDATE checkpoints SET note = 'the nOte\n\n— log sig\n— w1 cosig\n'", "only gains cosignatures"),
        ("UPDATE checkpoints SET note = 'the note\n\n— log sig\n'", "only gains cosignatures"),
        ("UPDATE checkpoints SET tree_size = 3, note = note || '— w1\n'", "only gains cosignatures"),
        ("DELETE FROM checkpoints", "the ledger is append-only"),
    ] {
        let error = sqlx::query(statement).execute(file.pool()).await.expect_err(statement).to_string();
        assert!(error.contains(message), "{statement}: {error}");
    }
    sqlx::query("UPDATE checkpoints SET note = note || '— w1 cosig\n'")
        .execute(file.pool())
        .await
        .expect("a cosignature gathered later may be appended");
    assert_eq!(
        invario_core::LedgerStore::latest_checkpoint(ledger.store()).await.unwrap().as_deref(),
        Some("the note\n\n— log sig\n— w1 cosig\n")
    );
}

#[tokio::test]
async fn plain_edits_are_refused_and_edits_behind_the_triggers_are_caught() {
    let file = TempSqliteFile::new().await;
    let ledger = Ledger::new(SqliteLedger::new(file.pool().clone()));
    ledger.ingest((1..=4).map(|n| transaction(n, "10.00")).collect(), at(1)).await.unwrap();
    for statement in [
        "UPDATE transactions SET amount = '1'",
        "DELETE FROM transactions",
        "UPDATE ledger_entries SET recorded_at = 0",
        "DELETE FROM ledger_entries",
        "DELETE FROM ledger_head",
        "UPDATE ledger_head SET sequence_number = 1",
    ] {
        let error = sqlx::query(statement).execute(file.pool()).await.expect_err(statement).to_string();
        assert!(error.contains("the ledger is append-only"), "{statement}: {error}");
    }
    // An attacker with the file drops the trigger, edits, and puts it back.
    let mut connection = file.pool().acquire().await.unwrap();
    sqlx::query("DROP TRIGGER transactions_no_update").execute(&mut *connection).await.unwrap();
    sqlx::query("UPDATE transactions SET amount = '10.01' WHERE transaction_id = $1")
        .bind(uuid::Uuid::from_u128(3).to_string())
        .execute(&mut *connection)
        .await
        .unwrap();
    drop(connection);
    let found = ledger.verify_full().await.unwrap().first_break.unwrap();
    assert_eq!((found.kind(), found.sequence()), ("hash_mismatch", Some(3)));
}

/// Contiguity is checked where the head moves, not per inserted row: an entry
/// slipped in past the head behind the ledger's back is no longer refused at
/// insert, but the next append is refused with nothing written (its head
/// may not move onto a run with a gap, or with entries beyond it) and
/// verification reports the gap.
#[tokio::test]
async fn an_entry_slipped_in_past_the_head_blocks_appends_and_is_reported() {
    let file = TempSqliteFile::new().await;
    let ledger = Ledger::new(SqliteLedger::new(file.pool().clone()));
    ledger.ingest((1..=4).map(|n| transaction(n, "10.00")).collect(), at(1)).await.unwrap();
    let head = ledger.head().await.unwrap();
    sqlx::query(
        "INSERT INTO ledger_entries (ledger_id, sequence_number, transaction_id, prev_hash, entry_hash, recorded_at) \
         VALUES ('default', 7, $1, zeroblob(32), zeroblob(32), 0)",
    )
    .bind(uuid::Uuid::from_u128(99).to_string())
    .execute(file.pool())
    .await
    .unwrap();
    for (batch, refusal) in [(5..=5, "contiguous"), (5..=7, "UNIQUE")] {
        let error = ledger
            .ingest(batch.clone().map(|n| transaction(n, "1.00")).collect(), at(2))
            .await
            .expect_err("an append onto a broken run")
            .to_string();
        assert!(error.contains(refusal), "{batch:?}: {error}");
        assert_eq!(ledger.head().await.unwrap(), head, "{batch:?}: nothing was written");
        assert_eq!(ledger.entry(transaction(5, "1.00").transaction_id).await.unwrap(), None);
    }
    let found = ledger.verify_full().await.unwrap().first_break.expect("the stray entry is reported");
    assert_eq!((found.kind(), found.sequence()), ("sequence_gap", Some(5)), "{found:?}");
}

/// A SQLite file from before ledgers holding a chain (and a checkpoint copy
/// and tiles) migrates — every ledger table rebuilt — with all its rows in
/// `default`: the same head and tree, every entry verified, ids still idempotent.
#[tokio::test]
async fn a_file_from_before_ledgers_migrates_with_all_its_rows_in_default() {
    use invario_core::{LedgerCatalog, LedgerStore};
    let path = std::env::temp_dir().join(format!("invario-old-{}.db", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}", path.display());
    let pool = invario_sqlite::connect(&url).await.unwrap();
    let before_ledgers =
        invario_testkit::harness::migrations_before(&invario_sqlite::MIGRATOR, 20261128000002);
    before_ledgers.run(&pool).await.unwrap();
    // The previous schema's own writer: the same statements with no ledger_id.
    let old_append = |n: u128, entry: &LedgerEntry| {
        let t = entry.transaction.clone();
        let entry = entry.clone();
        let pool = pool.clone();
        async move {
            let metadata = serde_json::to_string(t.metadata.as_map()).unwrap();
            sqlx::query("INSERT INTO transactions (transaction_id, amount, currency, occurred_at, metadata) VALUES ($1, $2, $3, $4, $5)")
                .bind(t.transaction_id.to_string())
                .bind(t.amount.to_canonical_string())
                .bind(t.currency.code())
                .bind(t.occurred_at.map(|time| time.unix_micros()))
                .bind(metadata)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO ledger_entries (sequence_number, transaction_id, prev_hash, entry_hash, recorded_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(i64::try_from(n).unwrap())
                .bind(t.transaction_id.to_string())
                .bind(entry.prev_hash.as_bytes().as_slice())
                .bind(entry.entry_hash.as_bytes().as_slice())
                .bind(entry.recorded_at.unix_micros())
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("UPDATE ledger_head SET sequence_number = $1, entry_hash = $2, recorded_at = $3")
                .bind(i64::try_from(n).unwrap())
                .bind(entry.entry_hash.as_bytes().as_slice())
                .bind(entry.recorded_at.unix_micros())
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    let mut position = invario_core::ChainPosition::GENESIS;
    for n in 1..=5u128 {
        let entry =
            LedgerEntry::next(position, transaction(n, "3.25"), at(i64::try_from(n).unwrap())).unwrap();
        position = entry.position();
        old_append(n, &entry).await;
    }
    sqlx::query("INSERT INTO checkpoints (tree_size, note) VALUES (5, 'an old note')")
        .execute(&pool)
        .await
        .unwrap();

    let applied = invario_sqlite::migrate(&pool).await.unwrap();
    assert_eq!(
        applied.iter().map(|m| m.description.as_str()).collect::<Vec<_>>(),
        ["ledgers", "checkpoint cosignatures", "contiguity at head move", "key epoch"]
    );
    let ledger = Ledger::new(SqliteLedger::new(pool.clone()));
    assert_eq!(ledger.head().await.unwrap().position(), position);
    assert_eq!(ledger.store().latest_checkpoint().await.unwrap().as_deref(), Some("an old note"));
    ledger.build_tree(&mut |_, _| {}).await.unwrap();
    let report = ledger.verify_full().await.unwrap();
    assert!(report.is_intact() && report.entries_checked == 5, "{report:?}");
    let replay = ledger.ingest(vec![transaction(2, "3.25"), transaction(6, "1")], at(9)).await.unwrap();
    assert_eq!((replay[0].entry.sequence_number, replay[1].entry.sequence_number), (2, 6));
    let catalog = invario_sqlite::SqliteCatalog::new(pool.clone());
    assert_eq!(catalog.list_ledgers().await.unwrap().len(), 1);
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// The key table's epoch on SQLite (migration `key_epoch`): the contract's
/// key-epoch write check.
#[tokio::test]
async fn contract_a_write_carrying_a_key_epoch_lands_only_while_no_key_changed() {
    let file = TempSqliteFile::new().await;
    let pool = file.pool().clone();
    let stores = async { (SqliteLedger::new(pool.clone()), invario_sqlite::SqliteKeyStore::new(pool), file) };
    let epochs_handed_out =
        invario_testkit::contract::a_write_carrying_a_key_epoch_lands_only_while_no_key_changed(stores).await;
    assert!(epochs_handed_out, "SQLite hands out key epochs");
}

/// SQLite's key feed reports every key change and nothing else
/// (`last_used_at` is written by authentication itself and decides nothing);
/// a change made by hand in SQL moves the epoch too, and refuses a write
/// carrying the epoch before it.
#[tokio::test]
async fn the_key_feed_sees_each_change_and_a_hand_edit_refuses_a_cached_write() {
    use invario_core::{IngestError, KeyAdmin, KeyChange, KeyEpoch, KeyStore, ReceiptStatus, StoreError};
    let file = TempSqliteFile::new().await;
    let keys = KeyAdmin::new(invario_sqlite::SqliteKeyStore::new(file.pool().clone()));
    let ledger = Ledger::new(SqliteLedger::new(file.pool().clone()));
    let mut feed = keys.store().change_feed().expect("SQLite follows its key epoch");
    assert_eq!(feed.catch_up().await, KeyChange::Listening);
    assert_eq!(feed.catch_up().await, KeyChange::Unchanged);
    let mut rng = rand_core::UnwrapErr(rand_core::OsRng);
    let (secret, record) = keys.create_key(&mut rng, "svc", r#"{"write": true}"#, None, at(0)).await.unwrap();
    assert_eq!(feed.catch_up().await, KeyChange::Changed, "a key created");
    let (_, Some(read_at)) = keys.store().key_by_hash_with_epoch(&secret.hash()).await.unwrap().unwrap()
    else {
        panic!("SQLite hands out key epochs");
    };
    assert!(read_at > KeyEpoch(1), "epochs start at 1 and the creation moved it: {read_at:?}");
    keys.store().touch_last_used(record.id, at(1)).await.unwrap();
    assert_eq!(feed.catch_up().await, KeyChange::Unchanged, "a use noted is no key change");
    let (_, still) = keys.store().key_by_hash_with_epoch(&secret.hash()).await.unwrap().unwrap();
    assert_eq!(still, Some(read_at), "a use noted leaves the epoch");

    let (_, other) = keys.create_key(&mut rng, "other", r#"{"read": true}"#, None, at(2)).await.unwrap();
    keys.revoke_prefix(&other.prefix, at(3)).await.unwrap();
    assert_eq!(feed.catch_up().await, KeyChange::Changed, "a key created and one revoked");
    let (_, Some(now_at)) = keys.store().key_by_hash_with_epoch(&secret.hash()).await.unwrap().unwrap()
    else {
        panic!("SQLite hands out key epochs");
    };
    let written = ledger.ingest_each_with_keys(vec![transaction(1, "1")], at(4), Some(now_at)).await.unwrap();
    assert!(matches!(&written[0], Ok(receipt) if receipt.status == ReceiptStatus::Created), "{written:?}");

    // A change made by hand in SQL moves the epoch too.
    sqlx::query("UPDATE api_keys SET scopes = '{\"read\": true}' WHERE owner = 'svc'")
        .execute(file.pool())
        .await
        .unwrap();
    assert_eq!(feed.catch_up().await, KeyChange::Changed, "an edit by hand");
    let head = ledger.head().await.unwrap();
    let edited = ledger.ingest_each_with_keys(vec![transaction(2, "2")], at(5), Some(now_at)).await;
    assert!(matches!(edited, Err(IngestError::Store(StoreError::KeysChanged))), "{edited:?}");
    assert_eq!(ledger.head().await.unwrap(), head, "nothing was written");
    assert!(ledger.verify_full().await.unwrap().is_intact());
}
