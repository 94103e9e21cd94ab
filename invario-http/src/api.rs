//! Request handling: one dispatcher so every answer gets the same correlation
//! id, error shape, logs and metrics. Parsing and authentication happen here;
//! every rule is the core's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use invario_core::{
    AuthError, AuthenticationError, IngestError, ItemProblem, KeyAdmin, KeyStore, Ledger, LedgerStore,
    PageError, ReceiptStatus, Scope, StoreError, Transaction, TransactionId,
};
use serde_json::{Value, json};
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use crate::appender::{AppendFailure, Appender};
use crate::clock::now;
use crate::error::{ApiError, Detail};
use crate::metrics::{BATCHES_REJECTED_TOTAL, HTTP_REQUEST_DURATION, HTTP_REQUESTS_TOTAL};
use crate::receipt::{head_json, receipt_json};

/// Largest body of a single-transaction request.
pub const MAX_SINGLE_BODY_BYTES: usize = 64 * 1024;
/// Largest body of a batch request (10,000 transactions with room for metadata).
pub const MAX_BATCH_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Entries per page when `limit` is not given.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Longest correlation id accepted from a client.
const MAX_CORRELATION_ID_CHARS: usize = 128;

/// What every request handler shares.
pub(crate) struct App<S, K> {
    pub(crate) ledger: Arc<Ledger<S>>,
    pub(crate) keys: KeyAdmin<K>,
    pub(crate) appender: Appender,
}

/// A request as the dispatcher sees it.
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: HashMap<String, String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Result<Bytes, ApiError>,
}

/// Routes by method and path, then answers with headers, logs and metrics.
pub(crate) async fn dispatch<S: LedgerStore + 'static, K: KeyStore>(
    app: &App<S, K>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let correlation_id = correlation_id(&request.headers);
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let (route, result) = match (request.method.clone(), segments.as_slice()) {
        (Method::POST, ["v1", "transactions"]) => {
            ("/v1/transactions", post_transaction(app, &request, &correlation_id).await)
        }
        (Method::POST, ["v1", "transactions", "batch"]) => {
            ("/v1/transactions/batch", post_batch(app, &request, &correlation_id).await)
        }
        (Method::GET, ["v1", "transactions", id]) => {
            ("/v1/transactions/{id}", get_transaction(app, &request, id).await)
        }
        (Method::GET, ["v1", "ledger", "head"]) => ("/v1/ledger/head", get_head(app, &request).await),
        (Method::GET, ["v1", "ledger", "entries"]) => {
            ("/v1/ledger/entries", get_entries(app, &request).await)
        }
        (Method::GET, ["health"]) => ("/health", Ok(health(app).await)),
        (Method::GET, ["metrics"]) => ("/metrics", Ok(metrics_page())),
        (_, ["v1", "transactions"] | ["v1", "transactions", "batch"]) => ("other", Err(wrong_method("POST"))),
        (_, ["v1", "transactions", _] | ["v1", "ledger", "head" | "entries"] | ["health"] | ["metrics"]) => {
            ("other", Err(wrong_method("GET")))
        }
        _ => ("other", Err(ApiError::NotFound(format!("no route for {} {}", request.method, request.path)))),
    };
    let mut response = match result {
        Ok(response) => response,
        Err(error) => error_response(&error, &correlation_id),
    };
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert("x-correlation-id", value);
    }
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS_TOTAL, "route" => route, "status" => status.clone()).increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

fn wrong_method(allowed: &str) -> ApiError {
    ApiError::MethodNotAllowed(format!("this path only answers {allowed}"))
}

/// The client's id when sane (`[A-Za-z0-9._:-]`, at most 128), else a new `req_…`.
fn correlation_id(headers: &HeaderMap) -> String {
    ["x-correlation-id", "x-request-id"]
        .iter()
        .filter_map(|name| headers.get(*name).and_then(|value| value.to_str().ok()))
        .map(str::trim)
        .find(|id| {
            !id.is_empty()
                && id.len() <= MAX_CORRELATION_ID_CHARS
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        })
        .map_or_else(|| format!("req_{}", uuid::Uuid::new_v4().simple()), str::to_owned)
}

pub(crate) fn error_response(error: &ApiError, correlation_id: &str) -> Response {
    let mut response = json_response(error.status(), &error.body(correlation_id));
    if error.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(body.to_string().into());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn authenticate<S, K: KeyStore>(
    app: &App<S, K>,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    match app.keys.authenticate(presented, scope, now()).await {
        Ok(_) => Ok(()),
        Err(AuthenticationError::Refused(refusal)) => {
            let prefix = match &refusal {
                AuthError::Revoked { prefix }
                | AuthError::Expired { prefix }
                | AuthError::MissingScope { prefix, .. } => prefix.as_str(),
                _ => "",
            };
            tracing::warn!(event = "auth_failed", key_prefix = prefix, reason = %refusal);
            Err(if refusal.is_forbidden() {
                ApiError::Forbidden(refusal.to_string())
            } else {
                ApiError::Unauthorized(refusal.to_string())
            })
        }
        Err(AuthenticationError::Store(error)) => Err(store_failure(error)),
    }
}

fn store_failure(error: StoreError) -> ApiError {
    match error {
        StoreError::Unavailable(_) => {
            tracing::warn!(event = "database_unavailable", error = %error);
            ApiError::Unavailable
        }
        other => {
            tracing::error!(event = "internal_error", error = %other);
            ApiError::Internal
        }
    }
}

/// The body as JSON; its size was already bounded per route when it was read.
fn json_body(request: &Request) -> Result<Value, ApiError> {
    let content_type = request.headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
    let is_json = content_type.is_some_and(|value| {
        value.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = request.body.as_ref().map_err(|error| match error {
        ApiError::PayloadTooLarge(size) => ApiError::PayloadTooLarge(*size),
        _ => ApiError::InvalidJson("the request body could not be read".into()),
    })?;
    serde_json::from_slice(body)
        .map_err(|error| ApiError::InvalidJson(format!("the request body is not valid JSON: {error}")))
}

fn log_processed(correlation_id: &str, entry: &invario_core::LedgerEntry, status: ReceiptStatus) {
    let transaction = &entry.transaction;
    tracing::info!(
        event = "transaction_processed",
        correlation_id,
        transaction_id = %transaction.transaction_id,
        amount = %transaction.amount,
        currency = %transaction.currency,
        sequence_number = entry.sequence_number,
        replayed = status == ReceiptStatus::Replayed,
    );
}

async fn post_transaction<S: LedgerStore + 'static, K: KeyStore>(
    app: &App<S, K>,
    request: &Request,
    correlation_id: &str,
) -> Result<Response, ApiError> {
    authenticate(app, &request.headers, Scope::Write).await?;
    let value = json_body(request)?;
    let transaction = Transaction::from_json(&value).map_err(|errors| {
        let details: Vec<Detail> = errors
            .0
            .iter()
            .map(|error| Detail { index: None, field: error.field(), message: error.to_string() })
            .collect();
        ApiError::Validation { message: errors.to_string(), details }
    })?;
    match app.appender.append(transaction).await {
        Ok(Ok(receipt)) => {
            log_processed(correlation_id, &receipt.entry, receipt.status);
            let status = match receipt.status {
                ReceiptStatus::Created => StatusCode::CREATED,
                ReceiptStatus::Replayed => StatusCode::OK,
            };
            let mut response = json_response(status, &receipt_json(&receipt.entry));
            let location = format!("/v1/transactions/{}", receipt.entry.transaction_id());
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            Ok(response)
        }
        Ok(Err(problem @ ItemProblem::Conflict { .. })) => Err(ApiError::Conflict(problem.to_string())),
        Ok(Err(problem)) => Err(ApiError::invalid_field(&problem.field(), problem.to_string())),
        Err(AppendFailure::Quarantined(message)) => Err(ApiError::Quarantined(message)),
        Err(AppendFailure::Unavailable(message)) => {
            tracing::warn!(event = "database_unavailable", correlation_id, error = %message);
            Err(ApiError::Unavailable)
        }
        Err(AppendFailure::Internal(message)) => {
            tracing::error!(event = "internal_error", correlation_id, error = %message);
            Err(ApiError::Internal)
        }
    }
}

async fn post_batch<S: LedgerStore, K: KeyStore>(
    app: &App<S, K>,
    request: &Request,
    correlation_id: &str,
) -> Result<Response, ApiError> {
    authenticate(app, &request.headers, Scope::Write).await?;
    let value = json_body(request)?;
    let items = value.get("transactions").and_then(Value::as_array).ok_or_else(|| {
        ApiError::invalid_field(
            "transactions",
            "transactions is required: send {\"transactions\": [ … up to 10000 transactions … ]}".into(),
        )
    })?;
    match app.ledger.ingest_json(items, now()).await {
        Ok(receipts) => {
            let created = receipts.iter().filter(|r| r.status == ReceiptStatus::Created).count();
            crate::metrics::record_append(created);
            for receipt in &receipts {
                log_processed(correlation_id, &receipt.entry, receipt.status);
            }
            let status = if created > 0 { StatusCode::CREATED } else { StatusCode::OK };
            let entries: Vec<Value> = receipts.iter().map(|receipt| receipt_json(&receipt.entry)).collect();
            Ok(json_response(status, &json!({ "entries": entries })))
        }
        Err(IngestError::Rejected(rejection)) => {
            metrics::counter!(BATCHES_REJECTED_TOTAL).increment(1);
            let details: Vec<Detail> = rejection
                .items
                .iter()
                .map(|item| Detail {
                    index: Some(item.index),
                    field: item.problem.field(),
                    message: item.problem.to_string(),
                })
                .collect();
            tracing::warn!(
                event = "batch_rejected",
                correlation_id,
                items = items.len(),
                rejected = details.len(),
                first_index = details.first().and_then(|d| d.index),
                first_reason = details.first().map(|d| d.message.as_str()),
            );
            Err(ApiError::Validation { message: rejection.to_string(), details })
        }
        Err(error @ (IngestError::EmptyBatch | IngestError::BatchTooLarge(_))) => {
            metrics::counter!(BATCHES_REJECTED_TOTAL).increment(1);
            tracing::warn!(event = "batch_rejected", correlation_id, items = items.len(), reason = %error);
            Err(ApiError::invalid_field("transactions", error.to_string()))
        }
        Err(IngestError::Quarantined(found)) => {
            Err(ApiError::Quarantined(IngestError::Quarantined(found).to_string()))
        }
        Err(IngestError::Store(error)) => Err(store_failure(error)),
    }
}

async fn get_transaction<S: LedgerStore, K: KeyStore>(
    app: &App<S, K>,
    request: &Request,
    id: &str,
) -> Result<Response, ApiError> {
    authenticate(app, &request.headers, Scope::Read).await?;
    let id = TransactionId::parse(id)
        .map_err(|error| ApiError::invalid_field("transaction_id", error.to_string()))?;
    match app.ledger.entry(id).await.map_err(store_failure)? {
        Some(entry) => Ok(json_response(StatusCode::OK, &receipt_json(&entry))),
        None => Err(ApiError::NotFound(format!("transaction {id} is not in the ledger"))),
    }
}

async fn get_head<S: LedgerStore, K: KeyStore>(
    app: &App<S, K>,
    request: &Request,
) -> Result<Response, ApiError> {
    authenticate(app, &request.headers, Scope::Read).await?;
    let head = app.ledger.head().await.map_err(store_failure)?;
    Ok(json_response(StatusCode::OK, &head_json(&head)))
}

fn query_number<T: std::str::FromStr>(request: &Request, name: &str, default: T) -> Result<T, ApiError> {
    match request.query.get(name) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            ApiError::invalid_field(
                name,
                format!("{name} must be a non-negative whole number (got {text:?})"),
            )
        }),
    }
}

async fn get_entries<S: LedgerStore, K: KeyStore>(
    app: &App<S, K>,
    request: &Request,
) -> Result<Response, ApiError> {
    authenticate(app, &request.headers, Scope::Read).await?;
    let after: u64 = query_number(request, "after", 0)?;
    let limit: usize = query_number(request, "limit", DEFAULT_PAGE_SIZE)?;
    let page = app.ledger.entries_after(after, limit).await.map_err(|error| match error {
        PageError::LimitOutOfRange(_) => ApiError::invalid_field("limit", error.to_string()),
        PageError::Store(error) => store_failure(error),
    })?;
    let entries: Vec<Value> = page.entries.iter().map(receipt_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "entries": entries, "next_after": page.next_after })))
}

async fn health<S: LedgerStore, K: KeyStore>(app: &App<S, K>) -> Response {
    let status = app.ledger.integrity();
    if let Some(found) = &status.broken {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({
                "status": "corrupted",
                "error": found.to_string(),
                "kind": found.kind(),
                "sequence": found.sequence(),
            }),
        );
    }
    match app.ledger.head().await {
        Err(error) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable", "error": format!("cannot read the ledger: {error}")}),
        ),
        Ok(head) => match status.verified {
            Some(verified) => json_response(
                StatusCode::OK,
                &json!({
                    "status": "ok",
                    "head": head_json(&head),
                    "last_verified_sequence": verified.sequence_number,
                }),
            ),
            None => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "unverified", "error": "no integrity check has completed yet", "head": head_json(&head)}),
            ),
        },
    }
}

fn metrics_page() -> Response {
    let mut response = Response::new(crate::metrics::prometheus().render().into());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
