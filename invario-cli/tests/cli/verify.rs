//! `invario verify`: every kind of break named, saved digests, recorded times moved back.

use invario_testkit::contract::at;
use invario_testkit::harness::fresh_database;
use invario_testkit::tamper::{self, EntryEdit, TransactionEdit};
use serde_json::Value;

use crate::common::*;
use crate::helpers::*;

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
