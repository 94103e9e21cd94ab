//! What the route table and the dispatcher promise every request: 405 with
//! `Allow`, `Retry-After` on every 503 `unavailable`, push-back from a full
//! append queue, and log lines that carry the id of the request that caused them.

use std::time::Duration;

use invario_http::{GroupCommit, ServiceConfig};
use serde_json::Value;

use crate::helpers::{error_code, log_lines_with, spawn_app, spawn_app_with, transaction};

#[tokio::test]
async fn a_known_path_with_another_method_is_405_naming_the_allowed_methods() {
    let app = spawn_app().await;
    for (method, path, allowed) in [
        (reqwest::Method::DELETE, "/v1/transactions", "POST"),
        (reqwest::Method::GET, "/v1/transactions/", "POST"),
        (reqwest::Method::POST, "/v1/ledger/head", "GET"),
        (reqwest::Method::PUT, "/health", "GET"),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(&app.write_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], allowed, "{method} {path}");
        let (status, code, body) = error_code(response).await;
        assert_eq!((status, code.as_str()), (405, "method_not_allowed"), "{method} {path}");
        assert_eq!(body["error"]["message"], format!("this path answers only {allowed}"));
    }
    let (status, code, _) = error_code(app.get("/v1/no/such/route").await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
}

#[tokio::test]
async fn a_refused_key_is_logged_with_the_requests_correlation_id_and_route() {
    let app = spawn_app().await;
    let unknown = format!("inv_live_{}", "Q".repeat(32));
    let response = app
        .client
        .get(app.url("/v1/ledger/head"))
        .bearer_auth(&unknown)
        .header("x-correlation-id", "corr-auth-failed-7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let lines = log_lines_with("corr-auth-failed-7");
    let refused = lines.iter().find(|line| line["event"] == "auth_failed").expect("auth_failed is logged");
    assert_eq!(refused["correlation_id"], "corr-auth-failed-7");
    assert_eq!(refused["route"], "/v1/ledger/head");
    assert!(!crate::helpers::all_logs().contains(&unknown), "a presented key is never logged");
}

#[tokio::test]
async fn an_internal_error_is_500_and_logged_once_with_its_source_chain_and_the_id() {
    let app = spawn_app().await;
    sqlx::query("ALTER TABLE ledger_head RENAME TO ledger_head_gone")
        .execute(app.database.pool())
        .await
        .unwrap();
    let response = app
        .client
        .get(app.url("/v1/ledger/head"))
        .bearer_auth(&app.read_key)
        .header("x-correlation-id", "corr-internal-9")
        .send()
        .await
        .unwrap();
    let (status, code, body) = error_code(response).await;
    assert_eq!((status, code.as_str()), (500, "internal"));
    assert!(!body.to_string().contains("ledger_head"), "internals are logged, never answered: {body}");
    let lines: Vec<Value> = log_lines_with("corr-internal-9")
        .into_iter()
        .filter(|line| line["event"] == "internal_error")
        .collect();
    assert_eq!(lines.len(), 1, "logged exactly once: {lines:?}");
    assert_eq!(lines[0]["level"], "error");
    let error = lines[0]["error"].as_str().unwrap();
    assert!(error.contains("relation \"ledger_head\" does not exist"), "the source chain is logged: {error}");
}

#[tokio::test]
async fn an_unreachable_database_is_503_with_retry_after_and_logged_with_the_id() {
    let mut app = spawn_app().await;
    assert_eq!(app.get("/v1/ledger/head").await.status(), 200);
    app.database.pool().close().await;
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    assert_eq!(health.headers()["retry-after"], "1");
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "unavailable");
    let response = app
        .client
        .post(app.url("/v1/transactions"))
        .bearer_auth(&app.write_key)
        .header("x-correlation-id", "corr-db-down-3")
        .json(&transaction(1, "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"));
    let lines = log_lines_with("corr-db-down-3");
    assert!(lines.iter().any(|line| line["event"] == "database_unavailable"), "{lines:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_full_append_queue_pushes_back_with_503_and_retry_after_then_drains() {
    let config = ServiceConfig {
        group_commit: GroupCommit {
            window: Duration::ZERO,
            max_batch: 1,
            queue_depth: 1,
            queue_wait: Duration::from_millis(100),
        },
        ..ServiceConfig::default()
    };
    let app = spawn_app_with(config).await;
    // Hold the head lock: the appender's first append waits on it.
    let mut blocker = app.database.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM ledger_head FOR UPDATE").execute(&mut *blocker).await.unwrap();
    let post = |n: u128| {
        let request = app
            .client
            .post(app.url("/v1/transactions"))
            .bearer_auth(&app.write_key)
            .json(&transaction(n, "1"));
        tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
    };
    let in_the_appender = post(1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let in_the_queue = post(2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = app
        .client
        .post(app.url("/v1/transactions"))
        .bearer_auth(&app.write_key)
        .json(&transaction(3, "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.headers()["retry-after"], "1");
    let (status, code, body) = error_code(refused).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"), "{body}");
    blocker.rollback().await.unwrap();
    assert_eq!(in_the_appender.await.unwrap(), 201);
    assert_eq!(in_the_queue.await.unwrap(), 201);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_entries")
        .fetch_one(app.database.pool())
        .await
        .unwrap();
    assert_eq!(stored, 2, "the refused request wrote nothing");
}
