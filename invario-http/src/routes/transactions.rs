//! `/v1/transactions`: record one, record a batch, read one.

use invario_core::{
    IngestError, KeyStore, LedgerEntry, LedgerStore, MAX_BATCH_SIZE, ReceiptStatus, Transaction,
    TransactionId,
};
use serde_json::Value;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use crate::api::{App, Call, json_response};
use crate::clock::now;
use crate::error::ApiError;
use crate::metrics::BATCHES_REJECTED_TOTAL;

fn log_processed(entry: &LedgerEntry, status: ReceiptStatus) {
    let transaction = &entry.transaction;
    tracing::info!(
        event = "transaction_processed",
        transaction_id = %transaction.transaction_id,
        amount = %transaction.amount,
        currency = %transaction.currency,
        sequence_number = entry.sequence_number,
        replayed = status == ReceiptStatus::Replayed,
    );
}

/// `POST /v1/transactions`: one transaction, group-committed with others.
pub(super) async fn create<S: LedgerStore + 'static, K: KeyStore>(
    app: &App<S, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let transaction = Transaction::from_json(&call.json_body()?)?;
    let receipt = app.appender.append(transaction).await??;
    log_processed(&receipt.entry, receipt.status);
    let status = match receipt.status {
        ReceiptStatus::Created => StatusCode::CREATED,
        ReceiptStatus::Replayed => StatusCode::OK,
    };
    let mut response = json_response(status, &receipt.entry.receipt());
    let location = format!("/v1/transactions/{}", receipt.entry.transaction_id());
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `POST /v1/transactions/batch`: all items appended, or none.
pub(super) async fn create_batch<S: LedgerStore, K: KeyStore>(
    app: &App<S, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let value = call.json_body()?;
    let items = value.get("transactions").and_then(Value::as_array).ok_or_else(|| {
        ApiError::invalid_field(
            "transactions",
            format!("transactions is required: send {{\"transactions\": [ … up to {MAX_BATCH_SIZE} transactions … ]}}"),
        )
    })?;
    let receipts =
        app.ledger.ingest_json(items, now()).await.inspect_err(|error| log_rejection(error, items.len()))?;
    let created = receipts.iter().filter(|r| r.status == ReceiptStatus::Created).count();
    crate::metrics::record_append(created);
    for receipt in &receipts {
        log_processed(&receipt.entry, receipt.status);
    }
    let status = if created > 0 { StatusCode::CREATED } else { StatusCode::OK };
    let entries: Vec<_> = receipts.iter().map(|receipt| receipt.entry.receipt()).collect();
    Ok(json_response(status, &BatchReceipts { entries }))
}

/// The answer to a batch: every receipt, serialised straight to bytes.
#[derive(serde::Serialize)]
struct BatchReceipts<'a> {
    entries: Vec<invario_core::EntryReceipt<'a>>,
}

/// Counts and logs a batch refused for its content (`batch_rejected`).
fn log_rejection(error: &IngestError, items: usize) {
    match error {
        IngestError::Rejected(rejection) => {
            metrics::counter!(BATCHES_REJECTED_TOTAL).increment(1);
            let first = rejection.items.first();
            tracing::warn!(
                event = "batch_rejected",
                items,
                rejected = rejection.items.len(),
                first_index = first.map(|item| item.index),
                first_reason = first.map(|item| item.problem.to_string()),
            );
        }
        IngestError::EmptyBatch | IngestError::BatchTooLarge(_) => {
            metrics::counter!(BATCHES_REJECTED_TOTAL).increment(1);
            tracing::warn!(event = "batch_rejected", items, reason = %error);
        }
        _ => {}
    }
}

/// `GET /v1/transactions/{id}`: the receipt of a recorded transaction.
pub(super) async fn get<S: LedgerStore, K: KeyStore>(
    app: &App<S, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let id = TransactionId::parse(call.param("id"))
        .map_err(|error| ApiError::invalid_field("transaction_id", error.to_string()))?;
    match app.ledger.entry(id).await? {
        Some(entry) => Ok(json_response(StatusCode::OK, &entry.receipt_json())),
        None => Err(ApiError::NotFound(format!("transaction {id} is not in the ledger"))),
    }
}
