//! `/v1/transactions`: record one, record a batch, read one.

use invario_core::{
    IngestError, KeyStore, LedgerCatalog, LedgerEntry, MAX_BATCH_SIZE, ReceiptStatus, SubmittedTransaction,
    TransactionId,
};
use serde::de::{IgnoredAny, MapAccess, SeqAccess};
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
pub(super) async fn create<C: LedgerCatalog + 'static, K: KeyStore>(
    app: &App<C, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let SubmittedTransaction(transaction) = call.json_body()?;
    let transaction = transaction?;
    let receipt = app.runtime(&call).await?.appender.append(transaction).await??;
    log_processed(&receipt.entry, receipt.status);
    let status = match receipt.status {
        ReceiptStatus::Created => StatusCode::CREATED,
        ReceiptStatus::Replayed => StatusCode::OK,
    };
    let mut response = json_response(status, &receipt.entry.receipt());
    let location = match call.ledger.as_ref().filter(|ledger| !ledger.is_default()) {
        Some(ledger) => format!("/v1/ledgers/{ledger}/transactions/{}", receipt.entry.transaction_id()),
        None => format!("/v1/transactions/{}", receipt.entry.transaction_id()),
    };
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `POST /v1/transactions/batch`: all items appended, or none.
pub(super) async fn create_batch<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let BatchBody { transactions } = call.json_body()?;
    let items = transactions.ok_or_else(|| {
        ApiError::invalid_field(
            "transactions",
            format!("transactions is required: send {{\"transactions\": [ … up to {MAX_BATCH_SIZE} transactions … ]}}"),
        )
    })?;
    let count = items.len();
    let runtime = app.runtime(&call).await?;
    let outcome = runtime.ledger.ingest_submitted(items, now()).await;
    crate::metrics::record_fences(&runtime.name, runtime.ledger.fenced_writes());
    let receipts = outcome.inspect_err(|error| log_rejection(error, count))?;
    let created = receipts.iter().filter(|r| r.status == ReceiptStatus::Created).count();
    crate::metrics::record_append(&runtime.name, created);
    for receipt in &receipts {
        log_processed(&receipt.entry, receipt.status);
    }
    let status = if created > 0 { StatusCode::CREATED } else { StatusCode::OK };
    let entries: Vec<_> = receipts.iter().map(|receipt| receipt.entry.receipt()).collect();
    Ok(json_response(status, &BatchReceipts { entries }))
}

/// The body of a batch: `transactions`, when it is an array; other names are ignored.
///
/// Any JSON value deserialises, so only malformed JSON text fails here; a missing or
/// non-array `transactions` is `None`, for the handler to refuse by name.
struct BatchBody {
    transactions: Option<Vec<SubmittedTransaction>>,
}

/// The value under `transactions`: the items when it is an array, else `None`.
struct TransactionList(Option<Vec<SubmittedTransaction>>);

/// Visitor methods that read every value but the one shape wanted as `$absent`, so a
/// body of the wrong shape is refused by the handler, by name, not as malformed JSON.
macro_rules! any_other_shape_reads_as {
    ($absent:expr) => {
        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($absent)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($absent)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($absent)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($absent)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($absent)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($absent)
        }
    };
}

struct BatchBodyVisitor;

impl<'de> serde::de::Visitor<'de> for BatchBodyVisitor {
    type Value = BatchBody;

    any_other_shape_reads_as!(BatchBody { transactions: None });

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BatchBody, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(BatchBody { transactions: None })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BatchBody, A::Error> {
        let mut transactions = None;
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if name == "transactions" {
                // A repeated name keeps its last value, as serde_json's own object does.
                transactions = map.next_value::<TransactionList>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(BatchBody { transactions })
    }
}

struct TransactionListVisitor;

impl<'de> serde::de::Visitor<'de> for TransactionListVisitor {
    type Value = TransactionList;

    any_other_shape_reads_as!(TransactionList(None));

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TransactionList, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH_SIZE));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(TransactionList(Some(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TransactionList, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(TransactionList(None))
    }
}

impl<'de> serde::Deserialize<'de> for BatchBody {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BatchBodyVisitor)
    }
}

impl<'de> serde::Deserialize<'de> for TransactionList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TransactionListVisitor)
    }
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
pub(super) async fn get<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let id = TransactionId::parse(call.param("id"))
        .map_err(|error| ApiError::invalid_field("transaction_id", error.to_string()))?;
    match app.runtime(&call).await?.ledger.entry(id).await? {
        Some(entry) => Ok(json_response(StatusCode::OK, &entry.receipt_json())),
        None => Err(ApiError::NotFound(format!("transaction {id} is not in the ledger"))),
    }
}
