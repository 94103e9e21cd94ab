//! What the route table and the dispatcher promise every request: 405 with
//! `Allow`, `Retry-After` on every 503 `unavailable`, push-back from a full
//! append queue, and log lines that carry the id of the request that caused them.

use std::time::Duration;

use invario_http::{GroupCommit, HttpLimits, ServiceConfig};
use serde_json::Value;

use crate::helpers::{
    error_code, hold_the_append_lock, log_lines_with, spawn_app, spawn_app_with, transaction,
};

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
    sqlx::query("SELECT 1 FROM ledger_head WHERE ledger_id = 'default' FOR UPDATE")
        .execute(&mut *blocker)
        .await
        .unwrap();
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

#[tokio::test]
async fn a_request_past_the_request_timeout_is_503_and_its_unchanged_retry_converges() {
    let config = ServiceConfig {
        http: HttpLimits { request_timeout: Duration::from_secs(1), ..HttpLimits::default() },
        ..ServiceConfig::default()
    };
    let app = spawn_app_with(config).await;
    let blocker = hold_the_append_lock(&app).await;
    let batch = serde_json::json!({"transactions": [transaction(1, "1.00"), transaction(2, "2.00")]});
    let started = std::time::Instant::now();
    let timed_out = app.post("/v1/transactions/batch", &batch).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(1) && waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(timed_out.headers()["retry-after"], "1");
    let (status, code, body) = error_code(timed_out).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"), "{body}");
    assert!(body.to_string().contains("may or may not have been recorded: retry it unchanged"), "{body}");
    assert!(!log_lines_with("request_timed_out").is_empty());
    blocker.rollback().await.unwrap();
    // The timed-out write was already on its way to the database: it may land
    // once the lock is free (then the retry is a replay) or not (then the retry
    // records it). Either way the retry answers a 2xx and the batch is stored once.
    let retry = app.post("/v1/transactions/batch", &batch).await;
    let retry_status = retry.status().as_u16();
    assert!(retry_status == 200 || retry_status == 201, "the retry converges: {retry_status}");
    let retried: serde_json::Value = retry.json().await.unwrap();
    let replay = app.post("/v1/transactions/batch", &batch).await;
    assert_eq!(replay.status(), 200, "and is replayed after");
    let replayed: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(retried["entries"], replayed["entries"], "the same receipts both times");
    assert_eq!(retried["entries"].as_array().map(Vec::len), Some(2));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_entries")
        .fetch_one(app.database.pool())
        .await
        .unwrap();
    assert_eq!(stored, 2, "the batch is stored once");
}

#[tokio::test]
async fn a_graceful_stop_waits_no_longer_than_the_shutdown_timeout() {
    let config = ServiceConfig {
        http: HttpLimits { shutdown_timeout: Duration::from_secs(1), ..HttpLimits::default() },
        ..ServiceConfig::default()
    };
    let mut app = spawn_app_with(config).await;
    let blocker = hold_the_append_lock(&app).await;
    let stuck = {
        let request = app
            .client
            .post(app.url("/v1/transactions/batch"))
            .bearer_auth(&app.write_key)
            .json(&serde_json::json!({"transactions": [transaction(1, "1.00"), transaction(2, "2.00")]}));
        tokio::spawn(async move { request.send().await.map(|response| response.status().as_u16()) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = std::time::Instant::now();
    app.stop().await;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(4), "the stop took {took:?}");
    assert!(stuck.await.unwrap().is_err(), "the abandoned request was never acknowledged");
    assert!(!log_lines_with("shutdown_timed_out").is_empty());
    blocker.rollback().await.unwrap();
    // An unacknowledged write may still land once the lock is free (it was
    // sent before the stop); what it must never do is land in part.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_entries")
        .fetch_one(app.database.pool())
        .await
        .unwrap();
    assert!(stored == 0 || stored == 2, "the abandoned batch is stored whole or not at all: {stored}");
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_cut_off_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let config = ServiceConfig {
        http: HttpLimits { header_read_timeout: Duration::from_millis(500), ..HttpLimits::default() },
        ..ServiceConfig::default()
    };
    let app = spawn_app_with(config).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Still trickling: one header byte at a time.
        let _ = slow.write_all(b"X").await;
        assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was still open after {:?}", started.elapsed());
    let closed_after = started.elapsed();
    assert!(closed_after < Duration::from_secs(3), "{closed_after:?}");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
}
