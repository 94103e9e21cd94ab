//! Schema and start-up: `migrate`, a schema or tree that is behind, refused flags and databases.

use invario_testkit::harness::{fresh_database, fresh_empty_database};
use invario_testkit::tamper;

use crate::common::*;
use crate::helpers::*;

#[tokio::test]
async fn migrate_applies_once_and_then_reports_nothing_to_do() {
    let database = fresh_empty_database().await;
    let first = invario(&database, &["migrate"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(
        text(&first.stdout),
        "Applied migration 20260101000001 ledger\nApplied migration 20261127000001 merkle tree\nApplied migration 20261127000002 checkpoints\nApplied migration 20261128000001 key change notifications\nApplied migration 20261128000002 ledgers\nApplied migration 20261203000001 append function\nApplied migration 20261204000001 checkpoint cosignatures\nApplied migration 20261204000002 key epoch\nApplied migration 20261205000001 shared commit\nApplied migration 20261206000001 copy write\nApplied migration 20261209000001 citus delegated append\nApplied migration 20261210000001 citus custom plans\nApplied migration 20261211000001 leaner write functions\nApplied migration 20261212000001 citus shard local writes\nApplied migration 20261213000001 citus head check on shard\nApplied migration 20261214000001 contiguity waits for the head\n"
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
async fn serve_refuses_a_schema_with_pending_migrations() {
    let database = fresh_empty_database().await;
    let output = invario(&database, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("16 migration(s) pending") && stderr.contains("run `invario migrate`"),
        "{stderr}"
    );
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

#[test]
fn serve_refuses_zero_or_too_many_worker_threads_naming_the_flag_and_its_range() {
    for count in ["0", "1025"] {
        let output = invario_with_url(None, &["serve", "--worker-threads", count]);
        assert_eq!(output.status.code(), Some(2));
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(&format!("invalid value '{count}' for '--worker-threads"))
                && stderr.contains("1..=1024"),
            "{stderr}"
        );
    }
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
