//! `invario proof`: inclusion and consistency over HTTP and from the database, an edited row refuted.

use std::process::Command;

use invario_testkit::harness::fresh_database;
use invario_testkit::tamper::{self, TransactionEdit};
use serde_json::{Value, json};

use crate::common::*;
use crate::helpers::*;

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
    let tree = get_json(&client, &format!("{}/v1/ledger/tree", server.address), key).await;
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
