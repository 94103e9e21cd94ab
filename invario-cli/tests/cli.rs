//! End-to-end: the built `invario` binary against real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use invario_core::Ledger;
use invario_postgres::PgLedger;
use invario_testkit::contract::{at, transaction};
use invario_testkit::harness::{TestDatabase, fresh_database, fresh_empty_database};
use invario_testkit::tamper::{self, EntryEdit, TransactionEdit};
use serde_json::{Value, json};

mod common;
use common::*;

async fn ledger_of(database: &TestDatabase, count: u128) {
    let ledger = Ledger::new(PgLedger::new(database.pool().clone()));
    ledger.ingest((1..=count).map(|n| transaction(n, "10.00")).collect(), at(1)).await.unwrap();
}

#[tokio::test]
async fn migrate_applies_once_and_then_reports_nothing_to_do() {
    let database = fresh_empty_database().await;
    let first = invario(&database, &["migrate"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(
        text(&first.stdout),
        "Applied migration 20260101000001 ledger\nApplied migration 20261127000001 merkle tree\nApplied migration 20261127000002 checkpoints\nApplied migration 20261128000001 key change notifications\nApplied migration 20261128000002 ledgers\n"
    );
    let second = invario(&database, &["migrate"]);
    assert!(second.status.success());
    assert_eq!(text(&second.stdout), "Database schema is up to date: no pending migrations.\n");
}

#[tokio::test]
async fn a_ledger_from_before_the_tree_is_refused_by_serve_until_migrate_builds_it() {
    let database = fresh_database().await;
    ledger_of(&database, 12).await;
    let tree_before: (i64, Vec<u8>) =
        sqlx::query_as("SELECT tree_size, root_hash FROM tree_state WHERE ledger_id = 'default'")
            .fetch_one(database.pool())
            .await
            .unwrap();
    tamper::forget_tree(database.pool()).await.unwrap();

    let refused = invario(&database, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("the Merkle tree covers 0 of 12 entries; run `invario migrate`"), "{stderr}");
    let verify = invario(&database, &["verify"]);
    assert_eq!(verify.status.code(), Some(1), "a tree behind the chain does not verify");
    assert!(text(&verify.stdout).contains("run `invario migrate` to build it"), "{}", text(&verify.stdout));

    let migrate = invario(&database, &["migrate"]);
    assert!(migrate.status.success(), "{}", text(&migrate.stderr));
    assert_eq!(
        text(&migrate.stdout),
        "Database schema is up to date: no pending migrations.\nBuilt the Merkle tree over 12 existing entries\n"
    );
    let tree_after: (i64, Vec<u8>) =
        sqlx::query_as("SELECT tree_size, root_hash FROM tree_state WHERE ledger_id = 'default'")
            .fetch_one(database.pool())
            .await
            .unwrap();
    assert_eq!(tree_after, tree_before, "the backfill builds the very tree the appends built");
    assert_eq!(invario(&database, &["verify"]).status.code(), Some(0));
    let again = invario(&database, &["migrate"]);
    assert_eq!(text(&again.stdout), "Database schema is up to date: no pending migrations.\n");
}

#[tokio::test]
async fn ledgers_are_created_listed_and_verified_each_on_its_own() {
    use invario_core::{LedgerCatalog, LedgerName};
    let database = fresh_database().await;
    let created = invario(&database, &["ledger", "create", "acme"]);
    assert_eq!(text(&created.stdout), "Created ledger acme\n", "{}", text(&created.stderr));
    let again = invario(&database, &["ledger", "create", "acme"]);
    assert_eq!(text(&again.stdout), "Ledger acme exists already: nothing changed\n");
    let refused = invario(&database, &["ledger", "create", "Acme"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("ledger name \"Acme\" is not allowed"),
        "{}",
        text(&refused.stderr)
    );

    // The same ids in both ledgers: two chains of their own.
    let catalog = invario_postgres::PgCatalog::new(database.pool().clone());
    let acme = LedgerName::parse("acme").unwrap();
    ledger_of(&database, 3).await;
    let other = Ledger::new(catalog.store(&acme));
    other.ingest((1..=5).map(|n| transaction(n, "1.00")).collect(), at(1)).await.unwrap();
    let listing = text(&invario(&database, &["ledger", "list"]).stdout);
    let rows: Vec<Vec<&str>> = listing.lines().map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(rows[0][..3], ["LEDGER", "ENTRIES", "HEAD"], "{listing}");
    assert_eq!((rows[1][0], rows[1][1]), ("acme", "5"), "{listing}");
    assert_eq!((rows[2][0], rows[2][1]), ("default", "3"), "{listing}");
    let digest: Value =
        serde_json::from_slice(&invario(&database, &["digest", "--ledger", "acme"]).stdout).unwrap();
    assert_eq!(digest["sequence_number"], 5);

    // A tamper in one ledger breaks that ledger only.
    tamper::edit_transaction(
        tamper::Target::ledger(database.pool(), &acme),
        2,
        TransactionEdit::Amount("9.00"),
    )
    .await
    .unwrap();
    assert_eq!(invario(&database, &["verify"]).status.code(), Some(0), "default is intact");
    assert_eq!(invario(&database, &["verify", "--ledger", "acme"]).status.code(), Some(1));
    let all = invario(&database, &["verify", "--all-ledgers"]);
    assert_eq!(all.status.code(), Some(1));
    let report = text(&all.stdout);
    assert!(report.contains("ledger acme: ❌"), "{report}");
    assert!(report.contains("ledger default: ✅"), "{report}");
    assert!(report.ends_with("❌ 1 of 2 ledger(s) broken\n"), "{report}");
    let unknown = invario(&database, &["verify", "--ledger", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("no ledger named \"nope\" exists"), "{}", text(&unknown.stderr));
}

/// A fresh folder for the embedded default (SQLite) and a read-write key
/// created in it (the ledger file appears in the folder).
fn embedded_folder_with_key(prefix: &str) -> (std::path::PathBuf, String) {
    let folder = std::env::temp_dir().join(format!("{prefix}-{}", rand_id()));
    std::fs::create_dir_all(&folder).unwrap();
    let key = created_key(&invario_in(
        &folder,
        None,
        &["create-key", "--owner", "ClientName", "--scopes", r#"{"write": true, "read": true}"#],
    ));
    (folder, key)
}

/// The embedded default (SQLite) serves several ledgers written concurrently:
/// each its own intact chain, created with the CLI while the server runs.
#[tokio::test]
async fn the_embedded_default_serves_ledgers_written_concurrently() {
    let (folder, key) = embedded_folder_with_key("invario-embedded-ledgers");
    let server = serve_in(&folder, None).await;
    let names = ["shop-a", "shop-b", "shop-c"];
    for name in names {
        exited(&invario_in(&folder, None, &["ledger", "create", name]), 0);
    }
    let client = reqwest::Client::new();
    let every_post = names.iter().chain(&["default"]).flat_map(|name| (1..=15u128).map(move |n| (*name, n)));
    let posts = every_post.map(|(name, n)| {
        let (client, address, key) = (client.clone(), server.address.clone(), key.clone());
        async move {
            let id = uuid::Uuid::from_u128(n).to_string();
            let body = json!({"transaction_id": id, "amount": "1.00", "currency": "BRL"});
            let path = format!("{address}/v1/ledgers/{name}/transactions");
            client.post(path).bearer_auth(&key).json(&body).send().await.unwrap().status().as_u16()
        }
    });
    let statuses = futures_util::future::join_all(posts).await;
    assert!(statuses.iter().all(|status| *status == 201), "{statuses:?}");
    let all = exited(&invario_in(&folder, None, &["verify", "--all-ledgers"]), 0);
    assert!(all.ends_with("✅ All 4 ledger(s) intact\n"), "{all}");
    let listing = text(&invario_in(&folder, None, &["ledger", "list"]).stdout);
    for name in ["default", "shop-a", "shop-b", "shop-c"] {
        let row = listing.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| panic!("{listing}"));
        assert_eq!(row.split_whitespace().nth(1), Some("15"), "{listing}");
    }
}

#[tokio::test]
async fn serve_refuses_a_schema_with_pending_migrations() {
    let database = fresh_empty_database().await;
    let output = invario(&database, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("5 migration(s) pending") && stderr.contains("run `invario migrate`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn create_key_prints_the_guides_three_lines_and_bad_input_creates_nothing() {
    let database = fresh_database().await;
    created_key(&invario(
        &database,
        &["create-key", "--owner", "ClientName", "--scopes", r#"{"write": true}"#],
    ));
    for (args, message) in [
        (
            vec!["create-key", "--owner", "ClientName", "--scopes", r#"{"delete": true}"#],
            "unknown scope \"delete\"",
        ),
        (vec!["create-key", "--owner", "ClientName", "--scopes", "write"], "scopes must be JSON"),
        (vec!["create-key", "--owner", " ", "--scopes", r#"{"read": true}"#], "owner must not be empty"),
        (
            vec!["create-key", "--owner", "X", "--scopes", r#"{"read": true}"#, "--expires-in", "soon"],
            "expires-in",
        ),
    ] {
        let output = invario(&database, &args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(text(&output.stderr).contains(message), "{args:?}: {}", text(&output.stderr));
    }
    let listing = text(&invario(&database, &["list-keys"]).stdout);
    assert_eq!(listing.lines().count(), 2, "one header and the one good key:\n{listing}");
}

#[tokio::test]
async fn a_key_works_over_http_until_revoked_and_listings_never_show_secrets() {
    let database = fresh_database().await;
    let key = created_key(&invario(
        &database,
        &[
            "create-key",
            "--owner",
            "ClientName",
            "--scopes",
            r#"{"write": true, "read": true}"#,
            "--expires-in",
            "90d",
        ],
    ));
    let server = serve(&database).await;
    let client = reqwest::Client::new();
    let post = || {
        client
            .post(format!("{}/v1/transactions", server.address))
            .bearer_auth(&key)
            .json(&json!({"transaction_id": uuid::Uuid::from_u128(1).to_string(), "amount": "100.50", "currency": "BRL"}))
            .send()
    };
    assert_eq!(post().await.unwrap().status(), 201);

    let listing = text(&invario(&database, &["list-keys", "--owner", "ClientName"]).stdout);
    assert!(listing.contains(&key[..17]) && !listing.contains(&key[17..]), "{listing}");
    assert!(listing.contains("write,read") && listing.contains("active until"), "{listing}");

    let revoked = invario(&database, &["revoke-key", "--owner", "ClientName"]);
    assert!(revoked.status.success());
    assert_eq!(text(&revoked.stdout), "🔒 Revoked 1 active key(s) for 'ClientName'\n");
    assert_eq!(post().await.unwrap().status(), 401, "the very next request is refused");
    assert!(text(&invario(&database, &["list-keys"]).stdout).contains("revoked"));

    let other = created_key(&invario(
        &database,
        &["create-key", "--owner", "ClientName", "--scopes", r#"{"read": true}"#],
    ));
    let by_prefix = invario(&database, &["revoke-key", "--prefix", &other[..17]]);
    assert!(by_prefix.status.success(), "{}", text(&by_prefix.stderr));
    let again = invario(&database, &["revoke-key", "--prefix", &other[..17]]);
    assert_eq!(again.status.code(), Some(2));
}

#[tokio::test]
async fn verify_passes_an_intact_ledger_and_names_every_kind_of_break() {
    let database = fresh_database().await;
    ledger_of(&database, 5).await;
    let intact = invario(&database, &["verify"]);
    assert_eq!(intact.status.code(), Some(0));
    assert!(text(&intact.stdout).starts_with("✅ Ledger intact: 5 entries verified, head at sequence 5"));

    type Edit = fn(sqlx::PgPool) -> futures_util::future::BoxFuture<'static, Result<(), sqlx::Error>>;
    let cases: [(Edit, &str, u64); 5] = [
        (
            |p| {
                Box::pin(
                    async move { tamper::edit_transaction(&p, 3, TransactionEdit::Amount("10.01")).await },
                )
            },
            "hash_mismatch",
            3,
        ),
        (
            |p| Box::pin(async move { tamper::edit_entry(&p, 4, EntryEdit::PrevHash([7; 32])).await }),
            "broken_link",
            4,
        ),
        (|p| Box::pin(async move { tamper::delete_entry_and_transaction(&p, 2).await }), "sequence_gap", 2),
        (
            |p| Box::pin(async move { tamper::delete_transaction(&p, 5).await }),
            "entry_without_transaction",
            5,
        ),
        (|p| Box::pin(async move { tamper::rewrite_head(&p, 5, [1; 32]).await }), "head_mismatch", 5),
    ];
    for (edit, kind, sequence) in cases {
        let database = fresh_database().await;
        ledger_of(&database, 5).await;
        edit(database.pool().clone()).await.unwrap();
        let broken = invario(&database, &["verify"]);
        let stdout = text(&broken.stdout);
        assert_eq!(broken.status.code(), Some(1), "{kind}: {stdout}");
        assert!(stdout.contains(&format!("kind: {kind}")), "{stdout}");
        assert!(stdout.contains(&format!("first broken sequence: {sequence}")), "{stdout}");
        let json: Value = serde_json::from_slice(&invario(&database, &["verify", "--json"]).stdout).unwrap();
        assert_eq!(json["intact"], false);
        assert_eq!(json["break"]["kind"], kind);
    }

    let database = fresh_database().await;
    ledger_of(&database, 3).await;
    tamper::edit_transaction(database.pool(), 2, TransactionEdit::Amount("99.99")).await.unwrap();
    let stdout = text(&invario(&database, &["verify"]).stdout);
    assert!(stdout.contains("stored entry_hash:") && stdout.contains("recomputed entry_hash:"), "{stdout}");
    assert!(stdout.contains("\"amount\": \"99.99\""), "the row's fields are shown for forensics:\n{stdout}");
}

#[tokio::test]
async fn a_consistently_rewritten_chain_fails_against_a_saved_digest() {
    let database = fresh_database().await;
    ledger_of(&database, 4).await;
    let digest = invario(&database, &["digest"]);
    assert!(digest.status.success());
    let saved: Value = serde_json::from_slice(&digest.stdout).unwrap();
    assert_eq!(saved["format"], "invario.ledger.v1");
    assert_eq!(saved["sequence_number"], 4);
    let file = std::env::temp_dir().join(format!("invario-digest-{}.json", uuid::Uuid::from_u128(rand_id())));
    std::fs::write(&file, &digest.stdout).unwrap();

    let passes = invario(&database, &["verify", "--digest", file.to_str().unwrap()]);
    assert_eq!(passes.status.code(), Some(0), "{}", text(&passes.stdout));
    assert!(text(&passes.stdout).contains("still passes through the saved digest at sequence 4"));

    tamper::rewrite_chain_from(database.pool(), 2, "31337.00").await.unwrap();
    let alone = invario(&database, &["verify"]);
    assert_eq!(alone.status.code(), Some(0), "a consistent rewrite fools a check without a digest");
    let against_digest = invario(&database, &["verify", "--digest", file.to_str().unwrap()]);
    assert_eq!(against_digest.status.code(), Some(1));
    let stdout = text(&against_digest.stdout);
    assert!(
        stdout.contains("kind: digest_mismatch") && stdout.contains("first broken sequence: 4"),
        "{stdout}"
    );
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn a_consistent_rewrite_that_moves_a_recorded_time_back_fails_verify() {
    let database = fresh_database().await;
    ledger_of(&database, 4).await;
    let earlier = at(1).unix_micros() - 1_000_000;
    tamper::edit_entry(database.pool(), 3, EntryEdit::RecordedAt(earlier)).await.unwrap();
    tamper::rehash_chain_from(database.pool(), 3).await.unwrap();
    let output = invario(&database, &["verify", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["break"]["kind"], "recorded_at_decreased");
    assert_eq!(report["break"]["sequence"], 3);
    assert_eq!(report["break"]["previous_sequence"], 2);
    assert_eq!(report["entries_checked"], 2, "links and hashes are valid; only the time gives it away");
}

#[test]
fn serve_refuses_an_out_of_range_flag_with_exit_2_naming_it() {
    let output = invario_with_url(None, &["serve", "--group-commit-max", "20000"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "error: --group-commit-max: must be between 1 and 10000 (got 20000)\n",
        "refused before any database is opened or port bound"
    );
}

#[tokio::test]
async fn an_unreachable_or_missing_database_is_exit_2_with_a_clear_message() {
    for (url, message) in [
        (Some("postgres://postgres@127.0.0.1:1/invario"), "cannot connect to PostgreSQL: Connection refused"),
        (Some("mysql://localhost/x"), "the database URL is malformed"),
        (Some("sqlite:///no/such/folder/x.db"), "cannot open the SQLite database"),
    ] {
        for command in [&["verify"][..], &["migrate"], &["digest"], &["list-keys"]] {
            let output = invario_with_url(url, command);
            let stderr = text(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{command:?}: {stderr}");
            assert!(stderr.starts_with("error: ") && stderr.contains(message), "{command:?}: {stderr}");
            assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
        }
    }
}

#[tokio::test]
async fn the_embedded_default_keeps_everything_across_restarts_and_catches_tampering() {
    let folder = std::env::temp_dir().join(format!("invario-embedded-{}", rand_id()));
    std::fs::create_dir_all(&folder).unwrap();
    let first = invario_in(
        &folder,
        None,
        &["create-key", "--owner", "ClientName", "--scopes", r#"{"write": true, "read": true}"#],
    );
    assert!(
        text(&first.stderr).contains("Using the embedded ledger sqlite://./invario.db"),
        "{}",
        text(&first.stderr)
    );
    let key = created_key(&first);
    assert!(folder.join("invario.db").exists());

    let server = serve_in(&folder, None).await;
    let client = reqwest::Client::new();
    let mut receipts = Vec::new();
    for n in 1..=3u128 {
        let response = client
            .post(format!("{}/v1/transactions", server.address))
            .bearer_auth(&key)
            .json(&json!({"transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "100.50", "currency": "BRL"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        receipts.push(response.json::<Value>().await.unwrap());
    }
    let head_before: Value = client
        .get(format!("{}/v1/ledger/head", server.address))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    server.terminate();

    let server = serve_in(&folder, None).await;
    let head_after: Value = client
        .get(format!("{}/v1/ledger/head", server.address))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(head_after, head_before);
    assert_eq!(head_after["sequence_number"], 3);
    for receipt in &receipts {
        let url =
            format!("{}/v1/transactions/{}", server.address, receipt["transaction_id"].as_str().unwrap());
        let stored: Value = client.get(url).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
        assert_eq!(&stored, receipt, "every receipt survives the restart unchanged");
    }
    let verified = invario_in(&folder, None, &["verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified.stdout));

    // Tamper with the file behind the triggers, as someone with the file would.
    let pool =
        invario_sqlite::connect(&format!("sqlite://{}", folder.join("invario.db").display())).await.unwrap();
    let mut connection = pool.acquire().await.unwrap();
    sqlx::query("DROP TRIGGER transactions_no_update").execute(&mut *connection).await.unwrap();
    sqlx::query("UPDATE transactions SET amount = '999.99' WHERE transaction_id = $1")
        .bind(uuid::Uuid::from_u128(2).to_string())
        .execute(&mut *connection)
        .await
        .unwrap();
    drop(connection);
    pool.close().await;

    let broken = invario_in(&folder, None, &["verify"]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(text(&broken.stdout).contains("first broken sequence: 2"), "{}", text(&broken.stdout));
    let mut health = None;
    for _ in 0..50 {
        let response = client.get(format!("{}/health", server.address)).send().await.unwrap();
        if response.status() == 503 {
            health = Some(response.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = health.expect("/health turns 503 within the full-sweep interval");
    assert_eq!(health["status"], "corrupted");
    assert!(health["error"].as_str().unwrap().starts_with("hash mismatch at sequence 2"));
    server.terminate();
    let _ = std::fs::remove_dir_all(folder);
}

/// Posts singles and a batch through a running server, then checks inclusion
/// and consistency with `invario proof` both over HTTP and from the database.
async fn proofs_check_out(server: &Server, key: &str, database: Option<&str>, folder: &std::path::Path) {
    let client = reqwest::Client::new();
    for n in 1..=3u128 {
        let single = json!({"transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "9.99", "currency": "USD"});
        let response = client
            .post(format!("{}/v1/transactions", server.address))
            .bearer_auth(key)
            .json(&single)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let batch: Vec<Value> = (4..=270u128)
        .map(|n| json!({"transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "1.00", "currency": "EUR", "metadata": {"n": n.to_string()}}))
        .collect();
    let response = client
        .post(format!("{}/v1/transactions/batch", server.address))
        .bearer_auth(key)
        .json(&json!({ "transactions": batch }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let tree: Value = client
        .get(format!("{}/v1/ledger/tree", server.address))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let root = tree["root_hash"].as_str().unwrap().to_owned();
    assert_eq!(tree["tree_size"], 270);

    let over_http = ["--url", server.address.as_str(), "--key", key];
    for (id, size) in [(1u128, None), (2, Some("3")), (200, Some("256")), (270, None)] {
        let id = uuid::Uuid::from_u128(id).to_string();
        let mut args = vec!["proof", "inclusion", "--id", id.as_str()];
        if let Some(size) = size {
            args.extend(["--tree-size", size]);
        }
        for source in [&over_http[..], &[]] {
            let output = invario_in(folder, database, &[&args[..], source].concat());
            let stdout = text(&output.stdout);
            assert_eq!(
                output.status.code(),
                Some(0),
                "{args:?} {source:?}: {stdout}{}",
                text(&output.stderr)
            );
            assert!(stdout.starts_with(&format!("✅ Proven: transaction {id} is entry ")), "{stdout}");
            assert!(stdout.contains("unsigned"), "an unpinned root is said to be unsigned: {stdout}");
        }
    }
    // A pinned root: the right one proves without the "unsigned" warning, another is refuted.
    let other_root = "ab".repeat(32);
    let seven = uuid::Uuid::from_u128(7).to_string();
    let with_root = |pinned: &str| {
        let args = ["proof", "inclusion", "--id", &seven, "--tree-size", "270", "--root", pinned];
        invario_in(folder, database, &[&args[..], &over_http].concat())
    };
    let pinned = exited(&with_root(&root), 0);
    assert!(!pinned.contains("unsigned"), "{pinned}");
    let wrong = exited(&with_root(&other_root), 1);
    assert!(wrong.starts_with("❌ Refuted: the response is for tree size 270 with root"), "{wrong}");

    for (first, second) in [("1", Some("3")), ("3", Some("256")), ("100", None), ("270", Some("270"))] {
        let mut args = vec!["proof", "consistency", "--first", first];
        if let Some(second) = second {
            args.extend(["--second", second]);
        }
        for source in [&over_http[..], &[]] {
            let output = invario_in(folder, database, &[&args[..], source].concat());
            assert_eq!(
                output.status.code(),
                Some(0),
                "{args:?}: {}{}",
                text(&output.stdout),
                text(&output.stderr)
            );
            assert!(text(&output.stdout).starts_with("✅ Proven: the tree of size"));
        }
    }
    // The independent Python auditor agrees, reading the same server.
    let audit = |args: &[&str]| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/audit.py");
        Command::new("python3").arg(script).args(args).output().expect("python3 runs docs/audit.py")
    };
    for id in [1u128, 137, 270] {
        let id = uuid::Uuid::from_u128(id).to_string();
        let output = audit(&["inclusion", "--url", &server.address, "--key", key, "--id", &id]);
        assert_eq!(output.status.code(), Some(0), "{}{}", text(&output.stdout), text(&output.stderr));
        assert!(text(&output.stdout).starts_with(&format!("proven: transaction {id} is leaf")));
    }
    let nine = uuid::Uuid::from_u128(9).to_string();
    for (pinned_root, expected) in [(root.as_str(), 0), (other_root.as_str(), 1)] {
        let args = [
            "inclusion",
            "--url",
            &server.address,
            "--key",
            key,
            "--id",
            &nine,
            "--tree-size",
            "270",
            "--root",
            pinned_root,
        ];
        let output = audit(&args);
        assert_eq!(output.status.code(), Some(expected), "--root {pinned_root}: {}", text(&output.stdout));
    }
    for (first, second) in [("1", "270"), ("3", "256"), ("255", "257")] {
        let output = audit(&[
            "consistency",
            "--url",
            &server.address,
            "--key",
            key,
            "--first",
            first,
            "--second",
            second,
        ]);
        assert_eq!(output.status.code(), Some(0), "{}{}", text(&output.stdout), text(&output.stderr));
    }

    let unknown = invario_in(
        folder,
        database,
        &[&["proof", "inclusion", "--id", &uuid::Uuid::from_u128(999).to_string()][..], &over_http].concat(),
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("is not in the ledger"), "{}", text(&unknown.stderr));
}

#[tokio::test]
async fn proofs_from_a_postgres_ledger_check_out_and_an_edited_row_is_refuted() {
    let database = fresh_database().await;
    let key = created_key(&invario(
        &database,
        &["create-key", "--owner", "ClientName", "--scopes", r#"{"write": true, "read": true}"#],
    ));
    let server = serve(&database).await;
    proofs_check_out(&server, &key, Some(database.url()), &std::env::temp_dir()).await;
    drop(server);

    tamper::edit_transaction(database.pool(), 5, TransactionEdit::Amount("1000000.00")).await.unwrap();
    let id = uuid::Uuid::from_u128(5).to_string();
    let refused = invario(&database, &["proof", "inclusion", "--id", &id]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "the server side refuses to hand out a proof for an edited row"
    );
    assert!(
        text(&refused.stderr).contains("entry 5 does not hash to its stored entry_hash"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(invario(&database, &["verify"]).status.code(), Some(1));
}

#[tokio::test]
async fn proofs_from_the_embedded_ledger_check_out() {
    let (folder, key) = embedded_folder_with_key("invario-proofs");
    let server = serve_in(&folder, None).await;
    proofs_check_out(&server, &key, None, &folder).await;
    drop(server);
    let _ = std::fs::remove_dir_all(folder);
}

#[test]
fn checkpoint_keys_are_written_private_never_overwritten_and_shown_again() {
    let folder = std::env::temp_dir().join(format!("invario-keys-{}", rand_id()));
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("log.key");
    let path = file.to_str().unwrap();
    let generated = invario_with_url(
        None,
        &["checkpoint-key", "generate", "--origin", "ledger.example.com/payments", "--out", path],
    );
    assert_eq!(generated.status.code(), Some(0), "{}", text(&generated.stderr));
    let vkey = text(&generated.stdout).trim().to_owned();
    let parsed = invario_core::note::VerifierKey::parse(&vkey).unwrap();
    assert_eq!(parsed.name(), "ledger.example.com/payments");
    let private = std::fs::read_to_string(&file).unwrap();
    assert!(private.starts_with("PRIVATE+KEY+ledger.example.com/payments+"));
    assert!(!text(&generated.stdout).contains("PRIVATE"), "the private key is never printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let again = invario_with_url(
        None,
        &["checkpoint-key", "generate", "--origin", "ledger.example.com/payments", "--out", path],
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("exists already: a key is never overwritten"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), private, "the first key is untouched");

    let shown = invario_with_url(None, &["checkpoint-key", "show", "--key", path]);
    assert_eq!(text(&shown.stdout).trim(), vkey);
    for origin in ["", "has space/log", "a+b"] {
        let refused = invario_with_url(
            None,
            &[
                "checkpoint-key",
                "generate",
                "--origin",
                origin,
                "--out",
                folder.join("other.key").to_str().unwrap(),
            ],
        );
        assert_eq!(refused.status.code(), Some(2), "{origin:?}");
        assert!(text(&refused.stderr).contains("an origin must be"), "{}", text(&refused.stderr));
    }
    std::fs::write(folder.join("garbage.key"), "not a key").unwrap();
    let garbage = invario_with_url(
        None,
        &["checkpoint-key", "show", "--key", folder.join("garbage.key").to_str().unwrap()],
    );
    assert_eq!(garbage.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(folder);
}

/// A PostgreSQL ledger served with its checkpoint key and sink in a temp folder.
struct SigningSetup {
    database: TestDatabase,
    folder: std::path::PathBuf,
    key: String,
}

impl SigningSetup {
    async fn new(entries: u128) -> Self {
        let database = fresh_database().await;
        ledger_of(&database, entries).await;
        let folder = std::env::temp_dir().join(format!("invario-signing-{}", rand_id()));
        write_checkpoint_key(&folder);
        let key = created_key(&invario(
            &database,
            &["create-key", "--owner", "ClientName", "--scopes", r#"{"write": true, "read": true}"#],
        ));
        SigningSetup { database, folder, key }
    }

    async fn serve(&self) -> Server {
        self.serve_into(&self.folder.join("checkpoints")).await
    }

    /// Serves with the checkpoint directory `sink`.
    async fn serve_into(&self, sink: &std::path::Path) -> Server {
        let flags: Vec<std::ffi::OsString> = vec![
            "--checkpoint-key".into(),
            self.folder.join("checkpoint.key").into(),
            "--checkpoint-dir".into(),
            sink.into(),
            "--checkpoint-interval".into(),
            "50ms".into(),
            // The chain checks stay out of the way: what is tested is the checkpoint guard alone.
            "--integrity-interval".into(),
            "1h".into(),
            "--full-verify-interval".into(),
            "1h".into(),
        ];
        serve_with(&std::env::temp_dir(), Some(self.database.url()), &flags).await
    }

    fn vkey(&self) -> String {
        let key = std::fs::read_to_string(self.folder.join("checkpoint.key")).unwrap();
        invario_core::note::SignerKey::parse(&key).unwrap().verifier().to_string()
    }

    /// `invario verify --checkpoints <sink> --vkey <the key's vkey>`.
    fn verify_against_checkpoints(&self) -> Output {
        let sink = self.folder.join("checkpoints");
        invario(&self.database, &["verify", "--checkpoints", sink.to_str().unwrap(), "--vkey", &self.vkey()])
    }

    /// `docs/audit.py checkpoint --full` against `server`, with a state folder of its own.
    fn python_audit(&self, server: &Server) -> Output {
        self.python_audit_with(server, "python-auditor", &["--full"])
    }

    /// `docs/audit.py checkpoint … extra` against `server`, remembering in `state` (under the setup's folder).
    fn python_audit_with(&self, server: &Server, state: &str, extra: &[&str]) -> Output {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/audit.py");
        Command::new("python3")
            .arg(script)
            .args(["checkpoint", "--url", &server.address, "--key", &self.key, "--vkey", &self.vkey()])
            .args(extra)
            .arg("--state")
            .arg(self.folder.join(state))
            .output()
            .expect("python3 runs docs/audit.py")
    }

    /// `docs/audit.py checkpoint --full --ledger LEDGER` with verifier key `vkey`, remembering in `state`.
    fn python_audit_ledger(&self, server: &Server, vkey: &str, state: &str, ledger: &str) -> Output {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/audit.py");
        Command::new("python3")
            .arg(script)
            .args(["checkpoint", "--url", &server.address, "--key", &self.key, "--vkey", vkey])
            .args(["--full", "--ledger", ledger, "--state"])
            .arg(self.folder.join(state))
            .output()
            .expect("python3 runs docs/audit.py")
    }

    /// `invario audit` against `server`, remembering in the auditor's own folder.
    fn audit(&self, server: &Server, full: bool) -> Output {
        let state = self.folder.join("auditor");
        let mut args = vec!["audit", "--url", &server.address, "--key", &self.key];
        let vkey = self.vkey();
        args.extend(["--vkey", &vkey, "--state", state.to_str().unwrap()]);
        if full {
            args.push("--full");
        }
        invario_with_url(None, &args)
    }

    fn latest_size(&self) -> Option<u64> {
        let note = std::fs::read_to_string(self.folder.join("checkpoints/checkpoint")).ok()?;
        note.lines().nth(1)?.parse().ok()
    }
}

#[tokio::test]
async fn the_server_signs_checkpoints_into_its_sink_and_catches_a_rewritten_history() {
    let setup = SigningSetup::new(10).await;
    let server = setup.serve().await;
    eventually("the first checkpoint is published", async || {
        published_checkpoint_size(&server).await == Some(10)
    })
    .await;
    assert_eq!(setup.latest_size(), Some(10), "the sink holds what is published");
    let first_audit_out = exited(&setup.audit(&server, false), 0);
    assert!(first_audit_out.starts_with("✅ Verified the checkpoint at tree size 10"), "{}", first_audit_out);
    let client = reqwest::Client::new();
    for n in 11..=14u128 {
        let body = json!({"transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "4.00", "currency": "EUR"});
        let response = client
            .post(format!("{}/v1/transactions", server.address))
            .bearer_auth(&setup.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    eventually("the grown tree is published", async || published_checkpoint_size(&server).await == Some(14))
        .await;
    assert_eq!(setup.latest_size(), Some(14), "the sink holds what is published");
    assert!(
        setup.folder.join("checkpoints/10.checkpoint").exists()
            && setup.folder.join("checkpoints/14.checkpoint").exists()
    );
    let served = client
        .get(format!("{}/v1/ledger/checkpoint", server.address))
        .bearer_auth(&setup.key)
        .send()
        .await
        .unwrap();
    assert_eq!(served.headers()["content-type"], "text/plain; charset=utf-8");
    let served = served.text().await.unwrap();
    assert_eq!(served, std::fs::read_to_string(setup.folder.join("checkpoints/checkpoint")).unwrap());
    let signer = invario_core::note::SignerKey::parse(
        &std::fs::read_to_string(setup.folder.join("checkpoint.key")).unwrap(),
    )
    .unwrap();
    let (checkpoint, _) =
        invario_core::checkpoint::TreeCheckpoint::verify(served.as_bytes(), &signer.verifier()).unwrap();
    assert_eq!((checkpoint.origin.as_str(), checkpoint.tree_size), ("test.invario.local/ledger", 14));
    let (status, health) = health_of(&server).await;
    assert_eq!((status, health["checkpoint_tree_size"].as_u64()), (200, Some(14)));
    for _ in 0..2 {
        let python = setup.python_audit(&server);
        assert_eq!(python.status.code(), Some(0), "{}{}", text(&python.stdout), text(&python.stderr));
        assert!(
            text(&python.stdout).starts_with("consistent: checkpoint at tree size 14"),
            "{}",
            text(&python.stdout)
        );
    }
    let second_audit_out = exited(&setup.audit(&server, true), 0);
    assert!(
        second_audit_out.starts_with("✅ Consistent: the checkpoint at tree size 14"),
        "{second_audit_out}"
    );
    assert!(second_audit_out.contains("extends the one remembered at size 10"), "{second_audit_out}");
    assert!(second_audit_out.contains("Every entry up to 14 recomputed"), "{second_audit_out}");
    let before_out = exited(&setup.verify_against_checkpoints(), 0);
    assert!(before_out.contains("passes through every signed checkpoint given"), "{}", before_out);

    // Behind the API's back: a consistent rewrite of the whole chain, tree rebuilt too.
    tamper::rewrite_chain_from(setup.database.pool(), 3, "31337.00").await.unwrap();
    assert_eq!(
        invario(&setup.database, &["verify"]).status.code(),
        Some(0),
        "the rewrite fools the chain check alone"
    );
    eventually("the running server catches it at its next checkpoint", async || {
        let (status, health) = health_of(&server).await;
        status == 503 && health["kind"] == "checkpoint_inconsistent"
    })
    .await;
    let refused = client
        .post(format!("{}/v1/transactions", server.address))
        .bearer_auth(&setup.key)
        .json(&json!({"transaction_id": uuid::Uuid::from_u128(99).to_string(), "amount": "1", "currency": "EUR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503, "writes are quarantined");
    assert_eq!(setup.latest_size(), Some(14), "nothing was signed over the rewritten history");
    let after = setup.verify_against_checkpoints();
    assert_eq!(after.status.code(), Some(1), "{}", text(&after.stdout));
    assert!(text(&after.stdout).contains("kind: checkpoint_inconsistent"), "{}", text(&after.stdout));
    let full_audit = setup.audit(&server, true);
    assert_eq!(full_audit.status.code(), Some(1), "{}", text(&full_audit.stdout));
    assert!(text(&full_audit.stdout).starts_with("❌ INCONSISTENT: "), "{}", text(&full_audit.stdout));
    drop(server);

    let restarted = setup.serve().await;
    let (status, health) = health_of(&restarted).await;
    assert_eq!(
        (status, health["kind"].as_str()),
        (503, Some("checkpoint_inconsistent")),
        "caught at start-up: {health}"
    );
    drop(restarted);

    // The attacker also owns the server and wipes its checkpoint directory: it
    // now signs the rewritten history. The auditor remembers.
    let forger = setup.serve_into(&setup.folder.join("wiped-checkpoints")).await;
    eventually("the forged history is published", async || {
        published_checkpoint_size(&forger).await.is_some()
    })
    .await;
    assert!(setup.folder.join("wiped-checkpoints/checkpoint").exists());
    let caught_out = exited(&setup.audit(&forger, false), 1);
    let evidence = caught_out;
    assert!(evidence.starts_with("❌ INCONSISTENT:"), "{evidence}");
    let python = setup.python_audit(&forger);
    assert_eq!(python.status.code(), Some(1), "the Python auditor remembers too: {}", text(&python.stdout));
    assert!(text(&python.stdout).starts_with("INCONSISTENT:"), "{}", text(&python.stdout));
    assert!(
        evidence.contains("the checkpoint remembered from an earlier run")
            && evidence.contains("the checkpoint the server serves now"),
        "{evidence}"
    );
    let _ = std::fs::remove_dir_all(&setup.folder);
}

#[tokio::test]
async fn each_ledger_signs_its_own_checkpoints_that_its_auditor_alone_accepts() {
    let setup = SigningSetup::new(3).await;
    assert!(invario(&setup.database, &["ledger", "create", "acme"]).status.success());
    let server = setup.serve().await;
    let client = reqwest::Client::new();
    for n in 1..=5u128 {
        let body = json!({"transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "2.00", "currency": "EUR"});
        let response = client
            .post(format!("{}/v1/ledgers/acme/transactions", server.address))
            .bearer_auth(&setup.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let acme_sink = setup.folder.join("checkpoints/ledgers/acme");
    // The sink is written first, the database's served copy after: wait for both.
    let served_acme = async || served_checkpoint(&server, &setup.key, Some("acme")).await.unwrap_or_default();
    eventually("acme's checkpoint is in its own folder and served", async || {
        std::fs::read_to_string(acme_sink.join("checkpoint"))
            .is_ok_and(|note| note.lines().nth(1) == Some("5"))
            && served_acme().await.lines().nth(1) == Some("5")
    })
    .await;
    assert_eq!(setup.latest_size(), Some(3), "the default ledger's sink holds its own tree");

    let key_file = setup.folder.join("checkpoint.key");
    let shown = invario_with_url(
        None,
        &["checkpoint-key", "show", "--key", key_file.to_str().unwrap(), "--ledger", "acme"],
    );
    let acme_vkey = exited(&shown, 0).trim().to_owned();
    assert!(acme_vkey.starts_with("test.invario.local/ledger/acme+"), "{acme_vkey}");
    assert_ne!(acme_vkey, setup.vkey());
    let served = served_acme().await;
    assert!(served.starts_with("test.invario.local/ledger/acme\n5\n"), "{served}");

    let audit = |vkey: &str, state: &str| {
        let state = setup.folder.join(state);
        invario_with_url(
            None,
            &[
                "audit",
                "--url",
                &server.address,
                "--key",
                &setup.key,
                "--vkey",
                vkey,
                "--state",
                state.to_str().unwrap(),
                "--ledger",
                "acme",
                "--full",
            ],
        )
    };
    let accepted = exited(&audit(&acme_vkey, "acme-auditor"), 0);
    assert!(accepted.contains("the checkpoint at tree size 5"), "{accepted}");
    // The service's own key (the default ledger's) does not verify acme's checkpoint.
    let refused = audit(&setup.vkey(), "confused-auditor");
    assert_ne!(refused.status.code(), Some(0), "{}", text(&refused.stdout));
    // The independent Python auditor agrees, both ways.
    let accepted = setup.python_audit_ledger(&server, &acme_vkey, "python-acme", "acme");
    assert_eq!(accepted.status.code(), Some(0), "{}{}", text(&accepted.stdout), text(&accepted.stderr));
    let refused = setup.python_audit_ledger(&server, &setup.vkey(), "python-confused", "acme");
    assert_ne!(refused.status.code(), Some(0), "{}", text(&refused.stdout));

    let id = uuid::Uuid::from_u128(4).to_string();
    for source in [vec!["--url", server.address.as_str(), "--key", setup.key.as_str()], vec![]] {
        let mut args = vec!["proof", "inclusion", "--id", id.as_str(), "--ledger", "acme"];
        args.extend(source);
        let proven = exited(&invario(&setup.database, &args), 0);
        assert!(proven.contains("is entry 4 (leaf 3) of the tree of size 5"), "{proven}");
    }
}

#[tokio::test]
async fn a_truncated_history_is_caught_at_start_up() {
    let setup = SigningSetup::new(12).await;
    let server = setup.serve().await;
    eventually("the checkpoint at 12 is in the sink", async || setup.latest_size() == Some(12)).await;
    drop(server);
    // Cut the last two entries, point the head at entry 10, rebuild the tree: a consistent, shorter ledger.
    tamper::delete_entry_and_transaction(setup.database.pool(), 12).await.unwrap();
    tamper::delete_entry_and_transaction(setup.database.pool(), 11).await.unwrap();
    let tenth: Vec<u8> =
        sqlx::query_scalar("SELECT entry_hash FROM ledger_entries WHERE sequence_number = 10")
            .fetch_one(setup.database.pool())
            .await
            .unwrap();
    tamper::rewrite_head(setup.database.pool(), 10, tenth.try_into().unwrap()).await.unwrap();
    tamper::rebuild_tree(setup.database.pool()).await.unwrap();
    assert_eq!(
        invario(&setup.database, &["verify"]).status.code(),
        Some(0),
        "a clean cut fools the chain check alone"
    );
    let caught = setup.verify_against_checkpoints();
    assert_eq!(caught.status.code(), Some(1), "{}", text(&caught.stdout));
    assert!(text(&caught.stdout).contains("signed checkpoint at size 12"), "{}", text(&caught.stdout));

    let restarted = setup.serve().await;
    let (status, health) = health_of(&restarted).await;
    assert_eq!((status, health["kind"].as_str()), (503, Some("checkpoint_inconsistent")), "{health}");
    assert!(health["error"].as_str().unwrap().contains("signed checkpoint at size 12"), "{health}");
    let _ = std::fs::remove_dir_all(&setup.folder);
}

/// `/health`'s status and body.
async fn health_of(server: &Server) -> (u16, Value) {
    let response = reqwest::get(format!("{}/health", server.address)).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The tree size of the default ledger's checkpoint the server has published, from
/// `/health`. The sink is written first, then the database's copy that is served,
/// then this: waiting on the sink alone races the served copy.
async fn published_checkpoint_size(server: &Server) -> Option<u64> {
    health_of(server).await.1["checkpoint_tree_size"].as_u64()
}

/// The checkpoint `server` serves for `ledger` (the default ledger's route when
/// `None`), or `None` while none is signed.
async fn served_checkpoint(server: &Server, key: &str, ledger: Option<&str>) -> Option<String> {
    let url = match ledger {
        Some(name) => format!("{}/v1/ledgers/{name}/checkpoint", server.address),
        None => format!("{}/v1/ledger/checkpoint", server.address),
    };
    let response = reqwest::Client::new().get(url).bearer_auth(key).send().await.unwrap();
    if response.status() == 200 { Some(response.text().await.unwrap()) } else { None }
}

/// Posts `ids` with `amount` through `server`, each answered 201.
async fn post_all(server: &Server, key: &str, ids: std::ops::RangeInclusive<u128>, amount: &str) {
    let client = reqwest::Client::new();
    for n in ids {
        let body = json!({"transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": amount, "currency": "BRL"});
        let response = client
            .post(format!("{}/v1/transactions", server.address))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
}

#[tokio::test]
async fn a_forged_or_truncated_embedded_ledger_is_caught_at_start_up_by_verify_and_by_the_auditor() {
    for forged_entries in [5u128, 3] {
        let (folder, honest_key) = embedded_folder_with_key("invario-embedded-forgery");
        let sink = folder.join("invario-checkpoints");
        let latest = || {
            std::fs::read_to_string(sink.join("checkpoint"))
                .ok()
                .and_then(|n| n.lines().nth(1).map(str::to_owned))
        };
        let server = serve_in(&folder, None).await;
        post_all(&server, &honest_key, 1..=5, "100.50").await;
        eventually("the honest checkpoint at 5 is published", async || {
            published_checkpoint_size(&server).await == Some(5)
        })
        .await;
        assert_eq!(latest().as_deref(), Some("5"), "the sink holds what is published");
        let vkey = text(
            &invario_with_url(
                None,
                &["checkpoint-key", "show", "--key", folder.join("invario-checkpoint.key").to_str().unwrap()],
            )
            .stdout,
        )
        .trim()
        .to_owned();
        let state = folder.join("auditor");
        let audit = |server: &Server, key: &str| {
            invario_with_url(
                None,
                &[
                    "audit",
                    "--url",
                    &server.address,
                    "--key",
                    key,
                    "--vkey",
                    &vkey,
                    "--state",
                    state.to_str().unwrap(),
                ],
            )
        };
        exited(&audit(&server, &honest_key), 0);
        drop(server);

        // The attacker replaces the database file with a forged ledger, signed
        // with the stolen key into a checkpoint directory of their own.
        for file in ["invario.db", "invario.db-wal", "invario.db-shm"] {
            let _ = std::fs::remove_file(folder.join(file));
        }
        let forger_key = created_key(&invario_in(
            &folder,
            None,
            &["create-key", "--owner", "ClientName", "--scopes", r#"{"write": true, "read": true}"#],
        ));
        let forged_sink: std::ffi::OsString = folder.join("forged-checkpoints").into();
        let forger = serve_with(&folder, None, &["--checkpoint-dir".into(), forged_sink]).await;
        post_all(&forger, &forger_key, 1..=forged_entries, "999.00").await;
        eventually("the forgery is published", async || published_checkpoint_size(&forger).await.is_some())
            .await;
        drop(forger);

        let restarted = serve_in(&folder, None).await;
        let (_, health) = health_of(&restarted).await;
        assert_eq!(health["kind"], "checkpoint_inconsistent", "{forged_entries} forged entries: {health}");
        let verify = exited(
            &invario_in(&folder, None, &["verify", "--checkpoints", sink.to_str().unwrap(), "--vkey", &vkey]),
            1,
        );
        assert!(verify.contains("kind: checkpoint_inconsistent"), "{verify}");
        let caught = exited(&audit(&restarted, &forger_key), 1);
        assert!(caught.starts_with("❌ INCONSISTENT:"), "{caught}");
        drop(restarted);
        let _ = std::fs::remove_dir_all(&folder);
    }
}

#[tokio::test]
async fn serve_on_postgres_refuses_to_start_without_a_checkpoint_key_or_with_another_origin() {
    let database = fresh_database().await;
    let missing = invario(&database, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains(
            "--checkpoint-key is required on PostgreSQL: create one with `invario checkpoint-key generate"
        ),
        "{}",
        text(&missing.stderr)
    );
    let folder = std::env::temp_dir().join(format!("invario-origin-{}", rand_id()));
    let key = write_checkpoint_key(&folder);
    let other = invario(
        &database,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--checkpoint-key",
            key.to_str().unwrap(),
            "--origin",
            "elsewhere.example/log",
        ],
    );
    assert_eq!(other.status.code(), Some(2));
    assert!(
        text(&other.stderr).contains("is not the checkpoint key's name test.invario.local/ledger"),
        "{}",
        text(&other.stderr)
    );
    let _ = std::fs::remove_dir_all(folder);
}

/// `invario witness serve` on a free port; killed when dropped.
async fn witness_serve(folder: &std::path::Path, log_vkey: &str) -> Server {
    witness_serve_for(folder, &[log_vkey]).await
}

/// A witness trusting every log key of `log_vkeys`.
async fn witness_serve_for(folder: &std::path::Path, log_vkeys: &[&str]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let logs = log_vkeys.iter().flat_map(|vkey| ["--log", vkey]);
    let child = Command::new(env!("CARGO_BIN_EXE_invario"))
        .args(["witness", "serve", "--listen", &listen])
        .args(logs)
        .arg("--key")
        .arg(folder.join("witness.key"))
        .arg("--state")
        .arg(folder.join("witness-state"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, address: format!("http://{listen}") };
    for _ in 0..300 {
        if reqwest::Client::new().post(format!("{}/add-checkpoint", server.address)).send().await.is_ok() {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("invario witness serve did not come up on {listen}");
}

/// A ledger's checkpoints go to the same witnesses; one that trusts the
/// ledger's key cosigns them, and the ledger's auditor requires it.
#[tokio::test]
async fn a_ledgers_checkpoints_are_cosigned_by_a_witness_that_trusts_its_key() {
    use invario_core::note::{Note, SignerKey, VerifierKey};
    use invario_core::witness::check_quorum;
    let setup = SigningSetup::new(2).await;
    assert!(invario(&setup.database, &["ledger", "create", "acme"]).status.success());
    let signer =
        SignerKey::parse(&std::fs::read_to_string(setup.folder.join("checkpoint.key")).unwrap()).unwrap();
    let acme_vkey =
        signer.for_ledger(&invario_core::LedgerName::parse("acme").unwrap()).unwrap().verifier().to_string();
    let witness_vkey =
        VerifierKey::parse(&exited(&generate_witness_key(&setup.folder.join("witness.key")), 0)).unwrap();
    let witness = witness_serve_for(&setup.folder, &[&setup.vkey(), &acme_vkey]).await;
    let flags: Vec<std::ffi::OsString> = vec![
        "--checkpoint-key".into(),
        setup.folder.join("checkpoint.key").into(),
        "--checkpoint-dir".into(),
        setup.folder.join("checkpoints").into(),
        "--checkpoint-interval".into(),
        "50ms".into(),
        "--witness".into(),
        format!("{}={witness_vkey}", witness.address).into(),
        "--witness-quorum".into(),
        "1".into(),
    ];
    let server = serve_with(&std::env::temp_dir(), Some(setup.database.url()), &flags).await;
    let client = reqwest::Client::new();
    for n in 1..=3u128 {
        let body = json!({"transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "9.00", "currency": "EUR"});
        let url = format!("{}/v1/ledgers/acme/transactions", server.address);
        assert_eq!(client.post(url).bearer_auth(&setup.key).json(&body).send().await.unwrap().status(), 201);
    }
    let cosigned = async || {
        let note = served_checkpoint(&server, &setup.key, Some("acme")).await?;
        let parsed = Note::parse(note.as_bytes()).ok()?;
        (note.lines().nth(1) == Some("3")
            && check_quorum(&parsed, std::slice::from_ref(&witness_vkey), 1) == Ok(1))
        .then_some(note)
    };
    eventually("acme's checkpoint of 3 entries is cosigned", async || cosigned().await.is_some()).await;
    let state = setup.folder.join("acme-quorum-auditor");
    let witness_text = witness_vkey.to_string();
    let args = [
        "audit",
        "--url",
        &server.address,
        "--key",
        &setup.key,
        "--vkey",
        &acme_vkey,
        "--state",
        state.to_str().unwrap(),
        "--ledger",
        "acme",
        "--witness-vkey",
        &witness_text,
        "--quorum",
        "1",
    ];
    let accepted = exited(&invario_with_url(None, &args), 0);
    assert!(accepted.starts_with("✅ Verified the checkpoint at tree size 3"), "{accepted}");
    let metrics = reqwest::get(format!("{}/metrics", server.address)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|line| line == "invario_checkpoint_cosignatures{ledger=\"acme\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_built_in_witness_speaks_tlog_witness_and_never_rolls_back() {
    use invario_core::checkpoint::TreeCheckpoint;
    use invario_core::merkle::{LeafHashes, TreeHash, consistency_proof, leaf_hash, root_of_leaves};
    use invario_core::note::{Note, SignerKey, VerifierKey};
    use invario_core::witness::{AddCheckpoint, check_quorum};

    let folder = std::env::temp_dir().join(format!("invario-witness-{}", rand_id()));
    let log = SignerKey::parse(&std::fs::read_to_string(write_checkpoint_key(&folder)).unwrap()).unwrap();
    let generated = generate_witness_key(&folder.join("witness.key"));
    let witness_vkey = VerifierKey::parse(&exited(&generated, 0)).unwrap();
    let witness = witness_serve(&folder, &log.verifier().to_string()).await;

    let leaves: Vec<TreeHash> = (0..400u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let note = |signer: &SignerKey, size: usize, leaves: &[TreeHash]| {
        let checkpoint = TreeCheckpoint {
            origin: signer.name().to_owned(),
            tree_size: size as u64,
            root_hash: root_of_leaves(&leaves[..size]),
        };
        checkpoint.sign(signer).unwrap().to_text()
    };
    let submit = |old: usize, proof: Vec<TreeHash>, note: String| {
        let body = AddCheckpoint { old_size: old as u64, proof, note: note.into_bytes() }.to_body();
        let url = format!("{}/add-checkpoint", witness.address);
        async move {
            let response = reqwest::Client::new().post(url).body(body).send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
            (status, content_type, response.text().await.unwrap())
        }
    };
    let proof =
        |old: usize, new: usize| consistency_proof(&LeafHashes(&leaves), old as u64, new as u64).unwrap();

    // First submission, then growth: each answered with a cosignature that verifies.
    let first_note = note(&log, 10, &leaves);
    let (status, _, line) = submit(0, vec![], first_note.clone()).await;
    assert_eq!(status, 200, "{line}");
    let cosigned = Note::parse(format!("{first_note}{line}").as_bytes()).unwrap();
    assert_eq!(check_quorum(&cosigned, std::slice::from_ref(&witness_vkey), 1), Ok(1));
    let (status, _, body) = submit(10, proof(10, 257), note(&log, 257, &leaves)).await;
    assert_eq!(status, 200, "{body}");

    // A stale old: 409 naming the size to retry from.
    let (status, content_type, body) = submit(10, proof(10, 300), note(&log, 300, &leaves)).await;
    assert_eq!((status, content_type.as_deref(), body.as_str()), (409, Some("text/x.tlog.size"), "257\n"));
    // A bad proof, a fork at the same size, an unknown origin, an untrusted key, old beyond the size.
    let mut bad = proof(257, 300);
    bad[0].0[0] ^= 1;
    assert_eq!(submit(257, bad, note(&log, 300, &leaves)).await.0, 422);
    let forged: Vec<TreeHash> = leaves.iter().rev().copied().collect();
    assert_eq!(submit(257, vec![], note(&log, 257, &forged)).await.0, 422, "same size, another root");
    let stranger =
        SignerKey::from_seed("elsewhere.example/log", invario_core::note::ALGORITHM_ED25519, [8; 32])
            .unwrap();
    assert_eq!(submit(0, vec![], note(&stranger, 5, &leaves)).await.0, 404);
    let impostor = SignerKey::from_seed(log.name(), invario_core::note::ALGORITHM_ED25519, [9; 32]).unwrap();
    assert_eq!(submit(257, proof(257, 300), note(&impostor, 300, &leaves)).await.0, 403);
    assert_eq!(submit(301, vec![], note(&log, 300, &leaves)).await.0, 400);

    // Two concurrent submissions of the same growth: one cosigns, the other is told the new size.
    let (a, b) = tokio::join!(
        submit(257, proof(257, 300), note(&log, 300, &leaves)),
        submit(257, proof(257, 300), note(&log, 300, &leaves)),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");

    // A restart keeps the state.
    drop(witness);
    let witness = witness_serve(&folder, &log.verifier().to_string()).await;
    let url = format!("{}/add-checkpoint", witness.address);
    let body =
        AddCheckpoint { old_size: 0, proof: vec![], note: note(&log, 10, &leaves).into_bytes() }.to_body();
    let response = reqwest::Client::new().post(url).body(body).send().await.unwrap();
    assert_eq!(response.status(), 409);
    assert_eq!(response.text().await.unwrap(), "300\n");
    drop(witness);
    let _ = std::fs::remove_dir_all(folder);
}

#[tokio::test]
async fn checkpoints_are_cosigned_by_a_witness_that_refuses_a_forged_history() {
    use invario_core::note::{Note, VerifierKey};
    use invario_core::witness::check_quorum;

    let setup = SigningSetup::new(10).await;
    let generated = generate_witness_key(&setup.folder.join("witness.key"));
    let witness_vkey = VerifierKey::parse(&exited(&generated, 0)).unwrap();
    let witness = witness_serve(&setup.folder, &setup.vkey()).await;
    let with_witness = |sink: &str| -> Vec<std::ffi::OsString> {
        vec![
            "--checkpoint-key".into(),
            setup.folder.join("checkpoint.key").into(),
            "--checkpoint-dir".into(),
            setup.folder.join(sink).into(),
            "--checkpoint-interval".into(),
            "50ms".into(),
            "--witness".into(),
            format!("{}={witness_vkey}", witness.address).into(),
            "--witness-quorum".into(),
            "1".into(),
        ]
    };
    let served = async |server: &Server| served_checkpoint(server, &setup.key, None).await;
    let audit_with_quorum = |server: &Server, state: &str| {
        let state = setup.folder.join(state);
        let witness_vkey = witness_vkey.to_string();
        let args = [
            "audit",
            "--url",
            &server.address,
            "--key",
            &setup.key,
            "--vkey",
            &setup.vkey(),
            "--state",
            state.to_str().unwrap(),
            "--witness-vkey",
            &witness_vkey,
            "--quorum",
            "1",
        ];
        invario_with_url(None, &args)
    };
    let witness_vkey_text = witness_vkey.to_string();
    let python_audit_with_quorum = |server: &Server, state: &str| {
        setup.python_audit_with(server, state, &["--witness-vkey", &witness_vkey_text, "--quorum", "1"])
    };
    let metric = |server: &Server, name: &str| {
        let url = format!("{}/metrics", server.address);
        let name = name.to_owned();
        async move {
            let metrics = reqwest::get(url).await.unwrap().text().await.unwrap();
            metrics.lines().find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                (series == name).then(|| value.parse::<f64>().unwrap())
            })
        }
    };
    // A log that submits to no witness: an auditor asking for a quorum refuses its checkpoint.
    let unwitnessed = setup.serve_into(&setup.folder.join("unwitnessed")).await;
    eventually("a checkpoint is signed", async || served(&unwitnessed).await.is_some()).await;
    let refused = exited(&audit_with_quorum(&unwitnessed, "quorum-auditor"), 1);
    assert!(
        refused.starts_with("❌ INCONSISTENT: witnesses: 0 of the required 1 witnesses cosigned"),
        "{refused}"
    );
    let refused = exited(&python_audit_with_quorum(&unwitnessed, "python-quorum-auditor"), 1);
    assert!(
        refused.starts_with("INCONSISTENT: witnesses: 0 of the required 1 witnesses cosigned"),
        "{refused}"
    );
    drop(unwitnessed);

    let server =
        serve_with(&std::env::temp_dir(), Some(setup.database.url()), &with_witness("checkpoints")).await;
    post_all(&server, &setup.key, 11..=20, "2.00").await;
    eventually("the checkpoint at 20 is served with the witness's cosignature", async || {
        served(&server)
            .await
            .is_some_and(|note| note.lines().nth(1) == Some("20") && note.contains("witness.test/w1"))
    })
    .await;
    let note = served(&server).await.unwrap();
    let parsed = Note::parse(note.as_bytes()).unwrap();
    assert_eq!(check_quorum(&parsed, std::slice::from_ref(&witness_vkey), 1), Ok(1), "{note}");
    let accepted = exited(&audit_with_quorum(&server, "quorum-auditor"), 0);
    assert!(accepted.contains("the checkpoint at tree size 20"), "{accepted}");
    let accepted = exited(&python_audit_with_quorum(&server, "python-quorum-auditor"), 0);
    assert!(accepted.contains("cosigned by 1 of the 1 trusted witnesses"), "{accepted}");
    assert_eq!(metric(&server, "invario_checkpoint_cosignatures{ledger=\"default\"}").await, Some(1.0));
    assert_eq!(metric(&server, "invario_witness_quorum{ledger=\"default\"}").await, Some(1.0));
    let age = metric(
        &server,
        "invario_witness_cosignature_age_seconds{ledger=\"default\",witness=\"witness.test/w1\"}",
    )
    .await;
    assert!(age.is_some_and(|seconds| (0.0..60.0).contains(&seconds)), "{age:?}");
    every_monitored_metric_is_exported(&server).await;
    drop(server);

    // The attacker holds the signing key, rewrites the chain (tree too) and wipes the checkpoint directory.
    tamper::rewrite_chain_from(setup.database.pool(), 3, "31337.00").await.unwrap();
    let log_path = setup.folder.join("forger.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let forger =
        serve_logging(&std::env::temp_dir(), Some(setup.database.url()), &with_witness("wiped"), log).await;
    eventually("the forged history is signed", async || setup.folder.join("wiped/checkpoint").exists()).await;
    // The witness refused it: the service counts the failure and says it missed its quorum...
    eventually("the refusal is counted", async || {
        let metrics =
            reqwest::get(format!("{}/metrics", forger.address)).await.unwrap().text().await.unwrap();
        metrics.lines().any(|line| {
            line.starts_with("invario_witness_submissions_total") && line.contains("outcome=\"failed\"")
        })
    })
    .await;
    // ...the forged note never gains a cosignature, and what the witness holds is the honest tree.
    let forged_note = std::fs::read_to_string(setup.folder.join("wiped/checkpoint")).unwrap();
    assert_ne!(
        Note::parse(forged_note.as_bytes()).unwrap().text,
        parsed.text,
        "the forgery has another root"
    );
    let resubmitted =
        invario_core::witness::AddCheckpoint { old_size: 20, proof: vec![], note: forged_note.into_bytes() };
    let answer = reqwest::Client::new()
        .post(format!("{}/add-checkpoint", witness.address))
        .body(resubmitted.to_body())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 422, "the witness refuses the same size with another root");
    assert_eq!(served(&forger).await.unwrap(), note, "the database's copy at 20 is still the honest one");

    // The forged history grows: its new checkpoint cannot gather a cosignature, and the service says so.
    post_all(&forger, &setup.key, 21..=25, "2.00").await;
    eventually("the forged checkpoint at 25 is served", async || {
        served(&forger).await.is_some_and(|note| note.lines().nth(1) == Some("25"))
    })
    .await;
    eventually("the missed quorum is logged as an error", async || {
        std::fs::read_to_string(&log_path).unwrap().lines().any(|line| {
            line.contains("\"event\":\"witness_quorum_missed\"")
                && line.contains("\"tree_size\":25")
                && line.contains("\"level\":\"error\"")
        })
    })
    .await;
    assert_eq!(metric(&forger, "invario_checkpoint_cosignatures{ledger=\"default\"}").await, Some(0.0));
    let forged_25 = served(&forger).await.unwrap();
    assert!(!forged_25.contains("witness.test/w1"), "{forged_25}");
    // An auditor who never saw the honest log, but asks for one witness, refuses it.
    let refused = exited(&audit_with_quorum(&forger, "newcomer"), 1);
    assert!(
        refused.starts_with("❌ INCONSISTENT: witnesses: 0 of the required 1 witnesses cosigned"),
        "{refused}"
    );
    let refused = exited(&python_audit_with_quorum(&forger, "python-newcomer"), 1);
    assert!(refused.starts_with("INCONSISTENT: witnesses: 0 of the required 1"), "{refused}");
    drop(forger);
    drop(witness);
    let _ = std::fs::remove_dir_all(&setup.folder);
}

/// Every `invario_…` metric the alerts or the dashboard use is exported by a
/// live server (one that signs, submits to a witness and has appended).
async fn every_monitored_metric_is_exported(server: &Server) {
    let exported = reqwest::get(format!("{}/metrics", server.address)).await.unwrap().text().await.unwrap();
    let exported: std::collections::BTreeSet<&str> = exported
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut used = std::collections::BTreeSet::new();
    for file in ["deploy/prometheus/alerts.yml", "deploy/grafana/invario.json"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for (start, _) in text.match_indices("invario_") {
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            used.insert((file, name));
        }
    }
    assert!(used.len() > 10, "{used:?}");
    let missing: Vec<_> = used.iter().filter(|(_, name)| !exported.contains(name.as_str())).collect();
    assert!(
        missing.is_empty(),
        "named in the monitoring kit but not exported: {missing:?}\nexported: {exported:?}"
    );
}

/// `invario witness generate-key --name witness.test/w1 --out path`.
fn generate_witness_key(path: &std::path::Path) -> Output {
    invario_with_url(
        None,
        &["witness", "generate-key", "--name", "witness.test/w1", "--out", path.to_str().unwrap()],
    )
}
