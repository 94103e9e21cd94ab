//! The embedded default (SQLite): concurrent ledgers, restarts, and forged or truncated files caught.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;
use crate::helpers::*;

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
    let head_before = get_json(&client, &format!("{}/v1/ledger/head", server.address), &key).await;
    server.terminate();

    let server = serve_in(&folder, None).await;
    let head_after = get_json(&client, &format!("{}/v1/ledger/head", server.address), &key).await;
    assert_eq!(head_after, head_before);
    assert_eq!(head_after["sequence_number"], 3);
    for receipt in &receipts {
        let url =
            format!("{}/v1/transactions/{}", server.address, receipt["transaction_id"].as_str().unwrap());
        let stored = get_json(&client, &url, &key).await;
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

/// A key created by `invario create-key` in `folder` for `owner` with `scopes`.
/// On SQLite the server caches key records too (the key table's epoch tells
/// it of changes): a key revoked by `invario revoke-key` — another process,
/// another connection — is refused on the very next request, read or write,
/// and nothing of the refused write is stored. Each round first uses the key
/// twice for each kind of request, so the refusal comes from a cached record.
#[tokio::test]
async fn on_sqlite_a_cached_key_revoked_by_another_process_is_refused_at_once() {
    let (folder, _) = embedded_folder_with_key("invario-embedded-revocation");
    let server = serve_in(&folder, None).await;
    let client = reqwest::Client::new();
    let mut n = 0u128;
    for round in 0..5 {
        let owner = format!("svc-{round}");
        let key = key_of(&folder, &owner, r#"{"write": true, "read": true}"#);
        let post = |n: u128| {
            let body = json!({"transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "1.00", "currency": "EUR"});
            client.post(format!("{}/v1/transactions", server.address)).bearer_auth(&key).json(&body).send()
        };
        let head = || client.get(format!("{}/v1/ledger/head", server.address)).bearer_auth(&key).send();
        for _ in 0..2 {
            n += 1;
            assert_eq!(post(n).await.unwrap().status(), 201, "round {round}: a fresh key writes");
            assert_eq!(head().await.unwrap().status(), 200, "round {round}: and reads");
        }
        exited(&invario_in(&folder, None, &["revoke-key", "--owner", &owner]), 0);
        n += 1;
        let refused = post(n).await.unwrap();
        assert_eq!(refused.status(), 401, "round {round}: the write after the revocation is refused");
        let body: Value = refused.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("revoked"), "{body}");
        assert_eq!(head().await.unwrap().status(), 401, "round {round}: and so is the next read");
        let key_admin = key_of(&folder, &format!("auditor-{round}"), r#"{"read": true}"#);
        let missing = client
            .get(format!("{}/v1/transactions/{}", server.address, uuid::Uuid::from_u128(n)))
            .bearer_auth(&key_admin)
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404, "round {round}: nothing of the refused write is stored");
    }
    let reader = key_of(&folder, "last", r#"{"read": true}"#);
    let head = get_json(&client, &format!("{}/v1/ledger/head", server.address), &reader).await;
    assert_eq!(head["sequence_number"], 5 * 2, "every accepted write is in the chain, once: {head}");
    let verified = exited(&invario_in(&folder, None, &["verify"]), 0);
    assert!(verified.contains("intact"), "{verified}");
    // The refusals above came with the cache in use, not from a server that
    // reads the key table on every request.
    let metrics = reqwest::get(format!("{}/metrics", server.address)).await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|line| line == "invario_key_cache_live 1"), "{metrics}");
}
