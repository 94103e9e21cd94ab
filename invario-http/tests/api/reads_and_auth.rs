//! Reads, scopes, revocation, expiry, and the error shape of every refusal.

use std::time::Duration;

use invario_core::Timestamp;
use rand::TryRngCore;
use serde_json::Value;

use crate::helpers::{error_code, now, spawn_app, transaction};

#[tokio::test]
async fn reads_return_receipts_the_head_and_pages() {
    let app = spawn_app().await;
    let empty: Value = app.get("/v1/ledger/head").await.json().await.unwrap();
    assert_eq!(
        empty,
        serde_json::json!({"sequence_number": 0, "entry_hash": "0".repeat(64), "recorded_at": null})
    );
    let created: Value = app.post("/v1/transactions", &transaction(5, "1.50")).await.json().await.unwrap();
    let fetched = app.get("/v1/transactions/00000000-0000-0000-0000-000000000005").await;
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.json::<Value>().await.unwrap(), created);
    let head: Value = app.get("/v1/ledger/head").await.json().await.unwrap();
    assert_eq!(head["entry_hash"], created["entry_hash"]);
    assert_eq!(head["recorded_at"], created["recorded_at"]);

    let (status, code, _) =
        error_code(app.get("/v1/transactions/00000000-0000-0000-0000-000000000009").await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let (status, code, body) = error_code(app.get("/v1/transactions/not-a-uuid").await).await;
    assert_eq!((status, code.as_str()), (422, "validation_failed"));
    assert_eq!(body["error"]["details"][0]["field"], "transaction_id");
    let (status, _, body) = error_code(app.get("/v1/ledger/entries?limit=1001").await).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["message"], "limit must be between 1 and 1000 (got 1001)");
    let (status, _, body) = error_code(app.get("/v1/ledger/entries?after=-1").await).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["details"][0]["field"], "after");
    let page: Value = app.get("/v1/ledger/entries?after=0").await.json().await.unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_after"], Value::Null);

    let (status, code, _) = error_code(app.get("/v1/nothing-here").await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let response =
        app.client.delete(app.url("/v1/transactions")).bearer_auth(&app.write_key).send().await.unwrap();
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"));
}

#[tokio::test]
async fn keys_are_checked_for_presence_scope_revocation_and_expiry() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/v1/ledger/head")).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let (status, code, body) = error_code(response).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    assert!(body["error"]["correlation_id"].is_string());

    let unknown = format!("inv_live_{}", "Z".repeat(32));
    let response = app.client.get(app.url("/v1/ledger/head")).bearer_auth(&unknown).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");

    let (status, code, _) = error_code(
        app.client
            .post(app.url("/v1/transactions"))
            .bearer_auth(&app.read_key)
            .json(&transaction(1, "1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    let (status, code, _) = error_code(
        app.client.get(app.url("/v1/ledger/head")).bearer_auth(&app.write_key).send().await.unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));

    assert_eq!(app.get("/v1/ledger/head").await.status(), 200);
    assert_eq!(app.keys.revoke_owner("reader", now()).await.unwrap(), 1);
    let (status, _, body) = error_code(app.get("/v1/ledger/head").await).await;
    assert_eq!(status, 401, "revocation bites on the very next request");
    assert!(body["error"]["message"].as_str().unwrap().contains("was revoked"));

    let mut rng = rand::rngs::OsRng.unwrap_err();
    let soon = Timestamp::from_unix_micros(now().unix_micros() + 2_000_000).unwrap();
    let (short_lived, _) =
        app.keys.create_key(&mut rng, "temp", r#"{"read": true}"#, Some(soon), now()).await.unwrap();
    let request = || app.client.get(app.url("/v1/ledger/head")).bearer_auth(short_lived.expose()).send();
    assert_eq!(request().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (status, _, body) = error_code(request().await.unwrap()).await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn health_and_metrics_need_no_key() {
    let app = spawn_app().await;
    app.post("/v1/transactions", &transaction(1, "1")).await;
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["head"]["sequence_number"], 1);
    assert!(health["last_verified_sequence"].is_u64());

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for name in [
        "invario_transactions_total",
        "invario_ledger_integrity_status",
        "invario_ledger_head_sequence",
        "invario_ledger_last_verified_sequence",
        "invario_http_requests_total{route=\"/v1/transactions\",status=\"201\"}",
        "invario_http_request_duration_seconds_bucket",
        "invario_append_batch_size_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }
}

/// Waits until the server's key change feed listens on a connection to this
/// test's database (other than `not`), then a moment for the cache to go
/// live; returns that connection's backend pid.
async fn wait_for_key_feed(app: &crate::helpers::TestApp, not: Option<i32>) -> i32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listening: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $2 \
             AND (query LIKE 'LISTEN%' OR query = 'SELECT 1') AND pid IS DISTINCT FROM $1",
        )
        .bind(not)
        .bind(invario_postgres::KEY_FEED_APPLICATION_NAME)
        .fetch_optional(app.database.pool())
        .await
        .unwrap();
        if let Some(pid) = listening {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return pid;
        }
        assert!(std::time::Instant::now() < deadline, "the server never listened for key changes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn cached_keys_authenticate_without_the_key_table_and_revocation_by_hand_still_bites() {
    let app = spawn_app().await;
    wait_for_key_feed(&app, None).await;
    assert_eq!(app.get("/v1/ledger/head").await.status(), 200);

    // With the key table locked, a lookup would wait: a cached key does not.
    let mut locker = app.database.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE").execute(&mut *locker).await.unwrap();
    let cached = tokio::time::timeout(Duration::from_secs(3), app.get("/v1/ledger/head")).await;
    assert_eq!(cached.expect("a cached key must not read the locked key table").status(), 200);
    locker.rollback().await.unwrap();

    // A revocation written by hand in SQL (not through Invario) notifies too.
    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE owner = 'reader'")
        .execute(app.database.pool())
        .await
        .unwrap();
    let (status, _, body) = error_code(app.get("/v1/ledger/head").await).await;
    assert_eq!(status, 401, "revocation bites on the very next request");
    assert!(body["error"]["message"].as_str().unwrap().contains("was revoked"));
}

/// The notice of a revocation reaches the server on a connection of its own,
/// racing the client's next request: the cache must not let the request win.
#[tokio::test]
async fn a_cached_key_revoked_elsewhere_is_refused_on_the_very_next_request_every_time() {
    let app = spawn_app().await;
    wait_for_key_feed(&app, None).await;
    let mut rng = rand::rngs::OsRng.unwrap_err();
    for round in 0..25 {
        let owner = format!("svc-{round}");
        let (secret, _) =
            app.keys.create_key(&mut rng, &owner, r#"{"read": true}"#, None, now()).await.unwrap();
        let head = || app.client.get(app.url("/v1/ledger/head")).bearer_auth(secret.expose()).send();
        // Twice over: the key cached, then once the notices of earlier
        // changes (this key's creation) are in, cached again and used: the
        // revocation below is then the only news not yet heard.
        for _ in 0..2 {
            assert_eq!(head().await.unwrap().status(), 200, "round {round}: a fresh key works");
            assert_eq!(head().await.unwrap().status(), 200, "round {round}: and again, from the cache");
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        assert_eq!(app.keys.revoke_owner(&owner, now()).await.unwrap(), 1);
        let (status, _, body) = error_code(head().await.unwrap()).await;
        assert_eq!(status, 401, "round {round}: the request after the revocation must be refused: {body}");
    }
}

/// The same race for writes, where a cached key skips the catch-up and its
/// write carries the key table's epoch instead: a write after the revocation
/// is refused and nothing of it is stored, every time.
#[tokio::test]
async fn a_cached_key_revoked_elsewhere_never_writes_after_the_revocation() {
    let app = spawn_app().await;
    wait_for_key_feed(&app, None).await;
    let mut rng = rand::rngs::OsRng.unwrap_err();
    let mut n = 0u128;
    for round in 0..25 {
        let owner = format!("writer-{round}");
        let (secret, _) =
            app.keys.create_key(&mut rng, &owner, r#"{"write": true}"#, None, now()).await.unwrap();
        let post = |n: u128| {
            app.client
                .post(app.url("/v1/transactions"))
                .bearer_auth(secret.expose())
                .json(&transaction(n, "1"))
                .send()
        };
        for _ in 0..2 {
            for _ in 0..2 {
                n += 1;
                assert_eq!(post(n).await.unwrap().status(), 201, "round {round}: a fresh key writes");
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        assert_eq!(app.keys.revoke_owner(&owner, now()).await.unwrap(), 1);
        n += 1;
        let (status, _, body) = error_code(post(n).await.unwrap()).await;
        assert_eq!(status, 401, "round {round}: the write after the revocation must be refused: {body}");
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM transactions WHERE transaction_id = $1")
            .bind(uuid::Uuid::from_u128(n))
            .fetch_one(app.database.pool())
            .await
            .unwrap();
        assert_eq!(stored, 0, "round {round}: nothing of the refused write is stored");
    }
    // Every accepted write is in the chain, once.
    let head: Value = app.get("/v1/ledger/head").await.json().await.unwrap();
    assert_eq!(head["sequence_number"], 25 * 4, "{head}");
}

#[tokio::test]
async fn a_lost_key_feed_is_reconnected_and_revocations_after_it_bite() {
    let app = spawn_app().await;
    let first = wait_for_key_feed(&app, None).await;
    assert_eq!(app.get("/v1/ledger/head").await.status(), 200);
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(app.database.pool())
        .await
        .unwrap();
    assert!(terminated);
    // The next request's catch-up finds the connection gone: it is answered
    // from the key table, and the feed reconnects.
    assert_eq!(app.get("/v1/ledger/head").await.status(), 200);
    wait_for_key_feed(&app, Some(first)).await;
    assert_eq!(app.get("/v1/ledger/head").await.status(), 200);
    assert_eq!(app.keys.revoke_owner("reader", now()).await.unwrap(), 1);
    let (status, _, _) = error_code(app.get("/v1/ledger/head").await).await;
    assert_eq!(status, 401, "revocation bites after the feed came back");
}
