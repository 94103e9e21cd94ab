//! Posting transactions: receipts, idempotency, batches, group commit.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use invario_http::{GroupCommit, ServiceConfig};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{
    all_logs, error_code, hold_the_append_lock, log_lines_with, log_writes_with, spawn_app, spawn_app_with,
    transaction,
};

#[tokio::test]
async fn a_new_transaction_gets_201_a_receipt_and_a_location() {
    let app = spawn_app().await;
    let response = app.post("/v1/transactions", &transaction(1, "100.50")).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/v1/transactions/00000000-0000-0000-0000-000000000001");
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(receipt["amount"], "100.50");
    assert_eq!(receipt["currency"], "BRL");
    assert_eq!(receipt["occurred_at"], "2023-10-27T10:00:00.000000Z");
    assert_eq!(receipt["metadata"], json!({"order": "A-1"}));
    assert_eq!(receipt["sequence_number"], 1);
    assert_eq!(receipt["prev_hash"], "0".repeat(64));
    assert!(receipt["recorded_at"].as_str().unwrap().ends_with('Z'));
}

/// Recomputes an entry hash from a receipt's own fields with the README's format,
/// without using any Invario code.
fn recompute(receipt: &Value) -> String {
    let micros = |text: &str| chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_micros();
    let mut bytes = b"invario.ledger.v1\0".to_vec();
    bytes.extend(hex::decode(receipt["prev_hash"].as_str().unwrap()).unwrap());
    bytes.extend(receipt["sequence_number"].as_u64().unwrap().to_be_bytes());
    bytes.extend(uuid::Uuid::parse_str(receipt["transaction_id"].as_str().unwrap()).unwrap().as_bytes());
    let amount = receipt["amount"].as_str().unwrap().as_bytes();
    bytes.extend((amount.len() as u32).to_be_bytes());
    bytes.extend(amount);
    bytes.extend(receipt["currency"].as_str().unwrap().as_bytes());
    match receipt["occurred_at"].as_str() {
        Some(time) => bytes.extend(micros(time).to_be_bytes()),
        None => bytes.extend([0x80, 0, 0, 0, 0, 0, 0, 0]),
    }
    bytes.extend(micros(receipt["recorded_at"].as_str().unwrap()).to_be_bytes());
    let mut metadata: Vec<(&String, &Value)> = receipt["metadata"].as_object().unwrap().iter().collect();
    metadata.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    bytes.extend((metadata.len() as u32).to_be_bytes());
    for (key, value) in metadata {
        let value = value.as_str().unwrap();
        bytes.extend((key.len() as u32).to_be_bytes());
        bytes.extend(key.as_bytes());
        bytes.extend((value.len() as u32).to_be_bytes());
        bytes.extend(value.as_bytes());
    }
    hex::encode(Sha256::digest(&bytes))
}

#[tokio::test]
async fn a_receipts_hash_is_recomputable_from_its_own_fields() {
    let app = spawn_app().await;
    let mut item = transaction(7, "-0.005");
    item["metadata"] = json!({"zeta": "z", "Alpha": "São Paulo ✓", "_k": ""});
    let first: Value = app.post("/v1/transactions", &item).await.json().await.unwrap();
    let mut no_time = transaction(8, "12.3400");
    no_time.as_object_mut().unwrap().remove("occurred_at");
    let second: Value = app.post("/v1/transactions", &no_time).await.json().await.unwrap();
    assert_eq!(recompute(&first), first["entry_hash"]);
    assert_eq!(recompute(&second), second["entry_hash"]);
    assert_eq!(second["prev_hash"], first["entry_hash"]);
    assert_eq!(second["occurred_at"], Value::Null);
}

#[tokio::test]
async fn the_same_transaction_again_is_200_with_the_same_receipt_and_other_content_is_409() {
    let app = spawn_app().await;
    let created = app.post("/v1/transactions", &transaction(1, "100.50")).await;
    let created: Value = created.json().await.unwrap();
    let again = app.post("/v1/transactions", &transaction(1, "100.50")).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap(), created);

    let (status, code, body) = error_code(app.post("/v1/transactions", &transaction(1, "100.5")).await).await;
    assert_eq!((status, code.as_str()), (409, "conflict"));
    assert!(body["error"]["message"].as_str().unwrap().contains("already recorded at sequence 1"));
    let head: Value = app.get("/v1/ledger/head").await.json().await.unwrap();
    assert_eq!(head["sequence_number"], 1);
}

#[tokio::test]
async fn invalid_input_is_422_naming_the_field_and_bad_json_is_400() {
    let app = spawn_app().await;
    let (status, code, body) = error_code(
        app.post("/v1/transactions", &json!({"transaction_id": "x", "amount": 1.5, "currency": "usd"})).await,
    )
    .await;
    assert_eq!((status, code.as_str()), (422, "validation_failed"));
    let fields: Vec<&str> =
        body["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["transaction_id", "amount", "currency"]);
    assert!(body["error"]["correlation_id"].as_str().unwrap().starts_with("req_"));

    let response = app
        .client
        .post(app.url("/v1/transactions"))
        .bearer_auth(&app.write_key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (400, "invalid_json"));

    let response = app
        .client
        .post(app.url("/v1/transactions"))
        .bearer_auth(&app.write_key)
        .header("content-type", "text/plain")
        .body(transaction(1, "1").to_string())
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));

    let huge = json!({"transaction_id": uuid::Uuid::from_u128(1).to_string(), "amount": "1", "currency": "BRL",
                      "metadata": {"x": "y".repeat(70_000)}});
    let (status, code, _) = error_code(app.post("/v1/transactions", &huge).await).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    let head: Value = app.get("/v1/ledger/head").await.json().await.unwrap();
    assert_eq!(head["sequence_number"], 0, "nothing bad was written");
}

#[tokio::test]
async fn a_batch_is_atomic_and_lists_every_bad_item_by_index() {
    let app = spawn_app().await;
    let good: Vec<Value> = (1..=5).map(|n| transaction(n, "1.00")).collect();
    let response = app.post("/v1/transactions/batch", &json!({"transactions": good})).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let sequences: Vec<u64> =
        body["entries"].as_array().unwrap().iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);

    let mut mixed: Vec<Value> = (10..=15).map(|n| transaction(n, "2.00")).collect();
    mixed[1]["amount"] = json!("1e3");
    mixed[3] = transaction(2, "9.99");
    mixed[4]["currency"] = json!("XYZ");
    mixed[5] = mixed[0].clone();
    let response = app
        .client
        .post(app.url("/v1/transactions/batch"))
        .bearer_auth(&app.write_key)
        .header("x-correlation-id", "batch-check-1")
        .json(&json!({"transactions": mixed}))
        .send()
        .await
        .unwrap();
    let (status, code, body) = error_code(response).await;
    assert_eq!((status, code.as_str()), (422, "validation_failed"));
    let indexes: Vec<u64> =
        body["error"]["details"].as_array().unwrap().iter().map(|d| d["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, [1, 4], "invalid items are reported first; nothing reached the ledger");
    let head: Value = app.get("/v1/ledger/head").await.json().await.unwrap();
    assert_eq!(head["sequence_number"], 5);

    mixed[1]["amount"] = json!("1000");
    mixed[4]["currency"] = json!("USD");
    let (status, _, body) =
        error_code(app.post("/v1/transactions/batch", &json!({"transactions": mixed})).await).await;
    assert_eq!(status, 422);
    let details = body["error"]["details"].as_array().unwrap();
    let reported: Vec<(u64, &str)> =
        details.iter().map(|d| (d["index"].as_u64().unwrap(), d["field"].as_str().unwrap())).collect();
    assert_eq!(
        reported,
        [(3, "transaction_id"), (5, "transaction_id")],
        "a conflict and an in-batch duplicate"
    );
    let head: Value = app.get("/v1/ledger/head").await.json().await.unwrap();
    assert_eq!(head["sequence_number"], 5, "a rejected batch writes nothing");

    let rejected = log_lines_with("batch-check-1");
    assert!(
        rejected.iter().any(|line| line["event"] == "batch_rejected" && line["level"] == "warn"),
        "{rejected:?}"
    );
    let (status, _, _) =
        error_code(app.post("/v1/transactions/batch", &json!({"transactions": []})).await).await;
    assert_eq!(status, 422);
    let (status, _, body) = error_code(app.post("/v1/transactions/batch", &json!([1])).await).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["details"][0]["field"], "transactions");
    // The body is read straight into typed items: every other shape is refused by name too.
    for body in
        [json!({"transactions": {"0": transaction(20, "1")}}), json!({"transactions": "all", "note": 1})]
    {
        let (status, code, refusal) = error_code(app.post("/v1/transactions/batch", &body).await).await;
        assert_eq!((status, code.as_str()), (422, "validation_failed"), "{body}");
        assert_eq!(refusal["error"]["details"][0]["field"], "transactions", "{body}");
    }
    let (status, _, body) = error_code(
        app.post("/v1/transactions/batch", &json!({"note": [1], "transactions": [transaction(21, "1"), 7]}))
            .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["details"][0]["index"], 1);
    assert!(
        body["error"]["details"][0]["message"].as_str().unwrap().contains("must be a JSON object"),
        "{body}"
    );
    let truncated = json!({"transactions": [transaction(22, "1")]}).to_string();
    let response = app
        .client
        .post(app.url("/v1/transactions/batch"))
        .bearer_auth(&app.write_key)
        .header("content-type", "application/json")
        .body(truncated[..truncated.len() - 1].to_owned())
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (400, "invalid_json"));
    let head: Value = app.get("/v1/ledger/head").await.json().await.unwrap();
    assert_eq!(head["sequence_number"], 5, "no refused batch wrote anything");
}

#[tokio::test]
async fn concurrent_single_requests_are_group_committed_into_one_valid_chain() {
    let app = spawn_app().await;
    let requests = (1..=200u128).map(|n| {
        let client = app.client.clone();
        let url = app.url("/v1/transactions");
        let key = app.write_key.clone();
        async move {
            client.post(url).bearer_auth(key).json(&transaction(n, "3.00")).send().await.unwrap().status()
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|status| *status == 201), "{statuses:?}");

    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let page: Value =
            app.get(&format!("/v1/ledger/entries?after={after}&limit=64")).await.json().await.unwrap();
        entries.extend(page["entries"].as_array().unwrap().clone());
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(entries.len(), 200);
    let mut previous = "0".repeat(64);
    for (expected, entry) in (1..).zip(&entries) {
        assert_eq!(entry["sequence_number"], expected);
        assert_eq!(entry["prev_hash"], previous.as_str());
        assert_eq!(recompute(entry), entry["entry_hash"]);
        previous = entry["entry_hash"].as_str().unwrap().to_owned();
    }
    // Every entry of one group commit shares its recorded_at: count the commits.
    let commits: HashSet<&str> = entries.iter().map(|e| e["recorded_at"].as_str().unwrap()).collect();
    eprintln!("group commit: 200 requests in {} database transactions", commits.len());
    assert!(commits.len() < 100, "200 requests took {} database transactions", commits.len());
}

/// The group-commit window is not waited out once the requests expected
/// have come: with a 1 s window, 8 clients posting one after another (each
/// waits for its answer) would wait a second a round under a fixed window;
/// the appender closes each group as soon as the callers it just answered
/// are back, so the rounds take milliseconds and still share commits.
///
/// A caller that stops posting is waited for once, up to the window (the
/// appender cannot know it left), so every client keeps posting until all
/// have done their rounds, and the time is taken when the last one has: no
/// caller has left by then, so no window may have been waited out.
#[tokio::test]
async fn a_group_closes_once_the_callers_just_answered_are_back() {
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 6;
    let window = Duration::from_secs(1);
    let config = ServiceConfig {
        group_commit: GroupCommit { window, ..GroupCommit::default() },
        ..ServiceConfig::default()
    };
    let app = spawn_app_with(config).await;
    let clients_done = Arc::new(AtomicUsize::new(0));
    let next_id = Arc::new(AtomicUsize::new(1));
    let started = Instant::now();
    let clients = (0..CLIENTS).map(|_| {
        let (http, url, key) = (app.client.clone(), app.url("/v1/transactions"), app.write_key.clone());
        let (clients_done, next_id) = (Arc::clone(&clients_done), Arc::clone(&next_id));
        async move {
            let (mut round, mut all_done_after) = (0, None);
            loop {
                round += 1;
                let id = next_id.fetch_add(1, Ordering::SeqCst) as u128;
                let status = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&transaction(id, "1.00"))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 201);
                if round == ROUNDS && clients_done.fetch_add(1, Ordering::SeqCst) + 1 == CLIENTS {
                    all_done_after = Some(started.elapsed());
                }
                if round >= ROUNDS && clients_done.load(Ordering::SeqCst) == CLIENTS {
                    return all_done_after;
                }
            }
        }
    });
    let finished = futures_util::future::join_all(clients).await;
    let elapsed =
        finished.into_iter().flatten().next().expect("the last client to finish its rounds took the time");
    assert!(
        elapsed < window,
        "{ROUNDS} rounds of {CLIENTS} clients took {elapsed:?}: the {window:?} window was waited out"
    );
    let head: Value = app.get("/v1/ledger/head").await.json().await.unwrap();
    let written = next_id.load(Ordering::SeqCst) - 1;
    assert!(written >= CLIENTS * ROUNDS, "{written} written");
    assert_eq!(head["sequence_number"], written as u64);
}

#[tokio::test]
async fn queued_batches_are_written_together_each_all_or_nothing() {
    let app = spawn_app().await;
    let post = |items: Vec<Value>| {
        let request = app
            .client
            .post(app.url("/v1/transactions/batch"))
            .bearer_auth(&app.write_key)
            .json(&json!({ "transactions": items }));
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        })
    };
    let blocker = hold_the_append_lock(&app).await;
    // The first batch is taken at once and waits for the lock. On plain
    // PostgreSQL the second is sent behind it at once (planned on the state
    // the first leaves) and waits too; elsewhere it queues. The next ones
    // queue in the order sent, and go out together after those.
    let first = post(vec![transaction(1, "1.00")]);
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(150));
    pause().await;
    let second = post(vec![transaction(2, "2.00"), transaction(3, "3.00")]);
    pause().await;
    let third = post(vec![transaction(6, "6.00")]);
    pause().await;
    let conflicting = post(vec![transaction(4, "4.00"), transaction(1, "9.99")]);
    pause().await;
    let replaying = post(vec![transaction(3, "3.00"), transaction(5, "5.00")]);
    pause().await;
    blocker.rollback().await.unwrap();

    let sequences = |body: &Value| -> Vec<u64> {
        body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["sequence_number"].as_u64().unwrap())
            .collect()
    };
    let (status, first) = first.await.unwrap();
    assert_eq!((status, sequences(&first)), (201, vec![1]));
    let (status, second) = second.await.unwrap();
    assert_eq!((status, sequences(&second)), (201, vec![2, 3]));
    let (status, third) = third.await.unwrap();
    assert_eq!((status, sequences(&third)), (201, vec![4]));
    let (status, refused) = conflicting.await.unwrap();
    assert_eq!((status, refused["error"]["code"].as_str()), (422, Some("validation_failed")), "{refused}");
    assert_eq!(refused["error"]["details"][0]["index"], 1, "{refused}");
    let (status, replaying) = replaying.await.unwrap();
    assert_eq!(status, 201, "{replaying}");
    // 3 was recorded by an earlier batch; 4 (in the refused batch) never was.
    assert_eq!(sequences(&replaying), [3, 5]);
    assert_eq!(
        replaying["entries"][0], second["entries"][1],
        "the same receipt as the batch that recorded it"
    );
    assert_eq!(
        third["entries"][0]["recorded_at"], replaying["entries"][1]["recorded_at"],
        "the queued batches were written together"
    );
    assert_ne!(first["entries"][0]["recorded_at"], second["entries"][0]["recorded_at"]);
    let missing = app.get("/v1/transactions/00000000-0000-0000-0000-000000000004").await;
    assert_eq!(missing.status(), 404, "nothing of the refused batch was written");
    let head: Value = app.get("/v1/ledger/head").await.json().await.unwrap();
    assert_eq!(head["sequence_number"], 5);
}

#[tokio::test]
async fn a_batch_logs_one_line_per_item_in_one_write() {
    let app = spawn_app().await;
    // A small batch is handled in place; a large one (≈ 60 KB) is parsed and
    // answered off the runtime's workers: its lines keep the request's span.
    let mut first = 1;
    for (size, correlation_id) in [(3_u64, "corr-batch-lines-7"), (500, "corr-batch-lines-500")] {
        let items: Vec<Value> =
            (0..size).map(|n| transaction(u128::from(7_001 + first + n), "3.00")).collect();
        let response = app
            .client
            .post(app.url("/v1/transactions/batch"))
            .bearer_auth(&app.write_key)
            .header("x-correlation-id", correlation_id)
            .json(&json!({ "transactions": items }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["entries"].as_array().map(Vec::len), Some(size as usize));
        let writes = log_writes_with(correlation_id);
        let processed: Vec<&String> =
            writes.iter().filter(|text| text.contains("transaction_processed")).collect();
        assert_eq!(processed.len(), 1, "the batch's lines came in {} writes: {writes:?}", processed.len());
        let lines: Vec<Value> =
            processed[0].lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        let sequence: Vec<u64> = lines.iter().map(|line| line["sequence_number"].as_u64().unwrap()).collect();
        assert_eq!(sequence, (first..first + size).collect::<Vec<u64>>(), "one line per item, in order");
        assert!(
            lines
                .iter()
                .all(|line| line["event"] == "transaction_processed"
                    && line["correlation_id"] == correlation_id)
        );
        first += size;
    }
}

#[tokio::test]
async fn logs_carry_the_correlation_id_and_never_the_key() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/transactions"))
        .bearer_auth(&app.write_key)
        .header("x-correlation-id", "corr-log-check-42")
        .json(&transaction(42, "100.50"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-correlation-id"], "corr-log-check-42");
    let lines = log_lines_with("corr-log-check-42");
    let processed = lines.iter().find(|line| line["event"] == "transaction_processed").expect("a log line");
    assert_eq!(processed["level"], "info");
    assert_eq!(processed["correlation_id"], "corr-log-check-42");
    assert_eq!(processed["transaction_id"], "00000000-0000-0000-0000-00000000002a");
    assert_eq!(processed["amount"], "100.50");
    assert_eq!(processed["currency"], "BRL");
    assert!(processed["timestamp"].as_str().unwrap().ends_with('Z'));

    let generated = app.get("/v1/ledger/head").await;
    assert!(generated.headers()["x-correlation-id"].to_str().unwrap().starts_with("req_"));
    let unsafe_id = app
        .client
        .get(app.url("/health"))
        .header("x-correlation-id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    assert!(unsafe_id.headers()["x-correlation-id"].to_str().unwrap().starts_with("req_"));
    let request_id =
        app.client.get(app.url("/health")).header("x-request-id", "from-request-id").send().await.unwrap();
    assert_eq!(request_id.headers()["x-correlation-id"], "from-request-id");

    let _ =
        app.client.get(app.url("/v1/ledger/head")).bearer_auth(format!("{}x", app.write_key)).send().await;
    let logs = all_logs();
    assert!(!logs.contains(&app.write_key[9..]), "a key's secret part appeared in the logs");
    assert!(!logs.contains(&app.read_key[9..]), "a key's secret part appeared in the logs");
}

#[tokio::test]
async fn an_oversized_body_is_answered_413_not_a_connection_reset() {
    let app = spawn_app().await;
    // 40 MiB against the batch route's 32 MiB: the client is still sending when the limit is known.
    let oversized = vec![b' '; 40 * 1024 * 1024];
    let response = app
        .client
        .post(app.url("/v1/transactions/batch"))
        .bearer_auth(&app.write_key)
        .header("content-type", "application/json")
        .body(oversized.clone())
        .send()
        .await
        .expect("the client reads the answer, not a reset");
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));

    let head: Value = app.get("/v1/ledger/head").await.json().await.unwrap();
    assert_eq!(head["sequence_number"], 0);
}
