//! Hostile and malformed input, generated: arbitrary methods, odd paths and
//! query strings, wrong and huge headers, arbitrary JSON and bytes as bodies,
//! wrong lengths and truncated bodies, all sent as raw HTTP to the real
//! server. Whatever arrives: never a 5xx, never a hang, the head never moves
//! for a request that was not acknowledged, and the server keeps answering.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, spawn_app};

/// Generated cases per run (bounded: the suite runs in CI on two cores).
const CASES: u32 = 256;
/// An answer (or the connection closing) must come within this.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum Credentials {
    Write,
    Read,
    Raw(String),
    Absent,
}

#[derive(Debug, Clone)]
enum Framing {
    /// `Content-Length` as long as the body.
    Exact,
    /// `Content-Length` shorter than the body: the rest reads as a next request.
    Short(usize),
    /// `Content-Length` longer than what is sent; then the client stops sending.
    Truncated(usize),
    /// `Transfer-Encoding: chunked`, the body in pieces.
    Chunked(usize),
}

#[derive(Debug, Clone)]
struct RawRequest {
    method: String,
    path: String,
    credentials: Credentials,
    content_type: Option<String>,
    extra_headers: Vec<(String, String)>,
    body: Vec<u8>,
    framing: Framing,
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|number| serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        Just(Value::String(uuid::Uuid::new_v4().to_string())),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("transaction_id".to_owned()),
                    Just("amount".to_owned()),
                    Just("currency".to_owned()),
                    Just("metadata".to_owned()),
                    Just("occurred_at".to_owned()),
                    Just("transactions".to_owned()),
                    "[a-z_]{1,12}",
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|value| value.to_string().into_bytes()),
        // Nearly valid: a real transaction shape with generated values.
        (".{0,12}", ".{0,6}", json_value()).prop_map(|(amount, currency, metadata)| {
            serde_json::json!({
                "transaction_id": uuid::Uuid::new_v4(),
                "amount": amount,
                "currency": currency,
                "metadata": metadata,
            })
            .to_string()
            .into_bytes()
        }),
        prop::collection::vec(any::<u8>(), 0..512),
        Just(Vec::new()),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let segment = "[a-zA-Z0-9%._~{}-]{0,16}";
    let known = prop_oneof![
        Just("/v1/transactions".to_owned()),
        Just("/v1/transactions/batch".to_owned()),
        Just(format!("/v1/transactions/{}", uuid::Uuid::new_v4())),
        segment.prop_map(|id| format!("/v1/transactions/{id}/proof")),
        Just("/v1/ledger/head".to_owned()),
        Just("/v1/ledger/entries".to_owned()),
        Just("/v1/ledger/tree".to_owned()),
        Just("/v1/ledger/checkpoint".to_owned()),
        Just("/v1/ledger/proof/inclusion".to_owned()),
        Just("/v1/ledger/proof/consistency".to_owned()),
        Just("/health".to_owned()),
        Just("/readyz".to_owned()),
        Just("/v1/transactions/../ledger/head".to_owned()),
        Just("//v1///transactions//".to_owned()),
        Just(format!("/{}", "a".repeat(5000))),
    ];
    let random = prop::collection::vec(segment, 0..5).prop_map(|segments| format!("/{}", segments.join("/")));
    let query = prop::collection::vec(
        (
            prop_oneof![
                Just("after"),
                Just("limit"),
                Just("tree_size"),
                Just("first"),
                Just("second"),
                Just("leaf_index"),
                Just("x")
            ],
            prop_oneof!["-?[0-9]{0,22}", "[a-zA-Z%&=+]{0,12}"],
        ),
        0..4,
    );
    (prop_oneof![3 => known, 1 => random], query).prop_map(|(path, query)| {
        if query.is_empty() {
            path
        } else {
            let pairs: Vec<String> = query.into_iter().map(|(key, value)| format!("{key}={value}")).collect();
            format!("{path}?{}", pairs.join("&"))
        }
    })
}

fn raw_request() -> impl Strategy<Value = RawRequest> {
    let any_method = prop_oneof![
        Just("POST"),
        Just("GET"),
        Just("PUT"),
        Just("DELETE"),
        Just("PATCH"),
        Just("HEAD"),
        Just("OPTIONS"),
        Just("BREW")
    ];
    // Mostly a method the path answers, so the input reaches the handlers.
    let route = prop_oneof![
        3 => prop_oneof![Just("/v1/transactions"), Just("/v1/transactions/batch")]
            .prop_map(|path| ("POST", path.to_owned())),
        2 => path().prop_map(|path| ("GET", path)),
        1 => (any_method, path()),
    ];
    let credentials = prop_oneof![
        3 => Just(Credentials::Write),
        1 => Just(Credentials::Read),
        1 => Just(Credentials::Absent),
        1 => prop_oneof![
            Just("Bearer inv_live_000000000000000000000000000000000".to_owned()),
            Just("Basic dXNlcjpwYXNz".to_owned()),
            Just(format!("Bearer {}", "k".repeat(10_000))),
            "[ -~]{0,60}",
        ]
        .prop_map(Credentials::Raw),
    ];
    let content_type = prop_oneof![
        4 => Just(Some("application/json".to_owned())),
        1 => Just(Some("application/json; charset=utf-8".to_owned())),
        1 => Just(Some("text/plain".to_owned())),
        1 => Just(None),
        1 => "[ -~]{0,40}".prop_map(Some),
    ];
    let extra_headers = prop::collection::vec(
        (
            prop_oneof![
                Just("X-Correlation-Id".to_owned()),
                Just("X-Request-Id".to_owned()),
                Just("Accept".to_owned()),
                "[A-Za-z-]{1,20}"
            ],
            prop_oneof![20 => "[ -~]{0,200}", 1 => Just("h".repeat(70_000))],
        ),
        0..3,
    );
    let framing = prop_oneof![
        4 => Just(Framing::Exact),
        1 => (0usize..64).prop_map(Framing::Short),
        1 => (1usize..4096).prop_map(Framing::Truncated),
        1 => (1usize..64).prop_map(Framing::Chunked),
    ];
    (route, credentials, content_type, extra_headers, body(), framing).prop_map(
        |((method, path), credentials, content_type, extra_headers, body, framing)| RawRequest {
            method: method.to_owned(),
            path,
            credentials,
            content_type,
            extra_headers,
            body,
            framing,
        },
    )
}

/// Sends `request` on a connection of its own; returns the status, or `None`
/// when the server closed the connection without an answer (malformed HTTP).
async fn send(app: &TestApp, request: &RawRequest) -> Result<Option<u16>, String> {
    let mut head =
        format!("{} {} HTTP/1.1\r\nHost: invario\r\nConnection: close\r\n", request.method, request.path);
    match &request.credentials {
        Credentials::Write => head.push_str(&format!("Authorization: Bearer {}\r\n", app.write_key)),
        Credentials::Read => head.push_str(&format!("Authorization: Bearer {}\r\n", app.read_key)),
        Credentials::Raw(value) => head.push_str(&format!("Authorization: {value}\r\n")),
        Credentials::Absent => {}
    }
    if let Some(content_type) = &request.content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    for (name, value) in &request.extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = &request.body;
    let mut wire = Vec::new();
    let mut stop_sending = false;
    match request.framing {
        Framing::Exact => head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len())),
        Framing::Short(less) => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len().saturating_sub(less)))
        }
        Framing::Truncated(more) => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len() + more));
            stop_sending = true;
        }
        Framing::Chunked(_) => head.push_str("Transfer-Encoding: chunked\r\n\r\n"),
    }
    wire.extend_from_slice(head.as_bytes());
    if let Framing::Chunked(size) = request.framing {
        for chunk in body.chunks(size) {
            wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
    } else {
        wire.extend_from_slice(body);
    }
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
            .await
            .map_err(|error| format!("the server does not accept connections: {error}"))?;
        // The server may answer and close before everything is written (a 431, a 413): not a failure.
        let _ = stream.write_all(&wire).await;
        if stop_sending {
            let _ = stream.shutdown().await;
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(ANSWER_WITHIN, exchange)
        .await
        .map_err(|_| format!("no answer within {ANSWER_WITHIN:?}"))??;
    if answer.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", &text[..text.len().min(120)]))?;
    Ok(Some(status))
}

async fn head_sequence(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT sequence_number FROM ledger_head")
        .fetch_one(app.database.pool())
        .await
        .unwrap()
}

#[test]
fn generated_hostile_requests_never_get_a_5xx_never_hang_and_never_move_the_head() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let app = runtime.block_on(spawn_app());
    let mut runner = TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<String, u32>::new());
    let outcome = runner.run(&raw_request(), |request| {
        runtime.block_on(async {
            let before = head_sequence(&app).await;
            let status = send(&app, &request).await.map_err(TestCaseError::fail)?;
            let label = status.map_or("closed".into(), |status| status.to_string());
            *statuses.lock().unwrap().entry(label).or_insert(0) += 1;
            prop_assert!(status.is_none_or(|status| status < 500), "{request:?} was answered {status:?}");
            if !status.is_some_and(|status| (200..300).contains(&status)) {
                prop_assert_eq!(head_sequence(&app).await, before, "the head moved for {:?}", request);
            }
            let health = app.client.get(app.url("/health")).send().await;
            prop_assert!(health.is_ok_and(|health| health.status() == 200), "the server stopped answering");
            Ok(())
        })
    });
    let statuses = statuses.into_inner().unwrap();
    println!("answers to {CASES} generated requests: {statuses:?}");
    outcome.unwrap();
    // The input reached the handlers, not only the HTTP parser.
    assert!(statuses.keys().filter(|status| status.starts_with('4')).count() >= 4, "{statuses:?}");
}
