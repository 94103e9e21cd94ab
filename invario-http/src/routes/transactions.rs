//! `/v1/transactions`: record one, record a batch, read one.

use invario_core::proofs::ProofRequestError;
use invario_core::signer::ProofWait;
use invario_core::{
    IngestError, KeyStore, LedgerCatalog, LedgerEntry, LedgerStore, MAX_BATCH_SIZE, Receipt, ReceiptStatus,
    Scope, SubmittedTransaction, TransactionId,
};
use serde::de::{IgnoredAny, MapAccess, SeqAccess};
use serde_json::Value;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use crate::api::{App, Call, KeyTrust, authenticate, json_response};
use crate::checkpointer::LatestCheckpoint;
use crate::error::ApiError;
use crate::ledgers::ProofWaitSettings;
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
    let runtime = app.runtime(&call).await?;
    let receipt = match runtime.appender.append(transaction.clone(), call.key_epoch).await {
        // A key changed since the cached record was read (perhaps this one,
        // revoked): nothing was written; the key is checked against the table.
        Err(failure) if failure.keys_changed() => {
            authenticate(app, &call.headers, Scope::Write, call.ledger.as_ref(), KeyTrust::Current).await?;
            runtime.appender.append(transaction, None).await
        }
        outcome => outcome,
    }??;
    log_processed(&receipt.entry, receipt.status);
    let status = match receipt.status {
        ReceiptStatus::Created => StatusCode::CREATED,
        ReceiptStatus::Replayed => StatusCode::OK,
    };
    let mut response = match ProofRequest::of(&runtime, &call) {
        Some(request) => {
            let mut bodies = request.proofs_of(&runtime, std::slice::from_ref(&receipt.entry)).await?;
            applied(json_response(status, &bodies.remove(0)), request.wait)
        }
        None => json_response(status, &receipt.entry.receipt()),
    };
    let location = match call.ledger.as_ref().filter(|ledger| !ledger.is_default()) {
        Some(ledger) => format!("/v1/ledgers/{ledger}/transactions/{}", receipt.entry.transaction_id()),
        None => format!("/v1/transactions/{}", receipt.entry.transaction_id()),
    };
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `POST /v1/transactions/batch`: all items appended, or none; group-committed
/// with other batches.
pub(super) async fn create_batch<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let heavy = call.body.len() >= OFF_RUNTIME_BODY_BYTES;
    let (call, body) = cpu_work(heavy, move || {
        let body = call.json_body::<BatchBody>();
        (call, body)
    })
    .await?;
    let BatchBody { transactions } = body?;
    let items = transactions.ok_or_else(|| {
        ApiError::invalid_field(
            "transactions",
            format!("transactions is required: send {{\"transactions\": [ … up to {MAX_BATCH_SIZE} transactions … ]}}"),
        )
    })?;
    let count = items.len();
    let runtime = app.runtime(&call).await?;
    let transactions = invario_core::valid_batch(items).inspect_err(|error| log_rejection(error, count))?;
    let receipts = runtime
        .appender
        .append_batch(transactions)
        .await?
        .inspect_err(|error| log_rejection(error, count))?;
    let created = receipts.iter().filter(|r| r.status == ReceiptStatus::Created).count();
    let status = if created > 0 { StatusCode::CREATED } else { StatusCode::OK };
    match ProofRequest::of(&runtime, &call) {
        Some(request) => {
            let entries = cpu_work(heavy, move || logged_entries(receipts)).await?;
            let bodies = request.proofs_of(&runtime, &entries).await?;
            Ok(applied(json_response(status, &serde_json::json!({ "entries": bodies })), request.wait))
        }
        // The plain answer: lines and receipts in one hand-over.
        None => {
            cpu_work(heavy, move || {
                let entries = logged_entries(receipts);
                let receipts: Vec<_> = entries.iter().map(LedgerEntry::receipt).collect();
                json_response(status, &BatchReceipts { entries: receipts })
            })
            .await
        }
    }
}

/// Logs a batch's `transaction_processed` lines in one write and returns its entries.
fn logged_entries(receipts: Vec<Receipt>) -> Vec<LedgerEntry> {
    crate::telemetry::in_one_write(|| {
        for receipt in &receipts {
            log_processed(&receipt.entry, receipt.status);
        }
    });
    receipts.into_iter().map(|receipt| receipt.entry).collect()
}

/// Request bodies from this size on are parsed, and their answers written,
/// off the runtime's worker threads (see [`cpu_work`]): a batch of 1,000
/// transactions is ≈ 150 KB.
const OFF_RUNTIME_BODY_BYTES: usize = 16 * 1024;

/// Runs `work` on the blocking pool when `heavy`, in the caller's span, else
/// in place. Parsing a large batch or writing its receipts and log lines takes
/// milliseconds of CPU; on a worker thread that is time no other request is
/// read and no database reply is handled (measured: BENCHMARKS.md, "Batch
/// JSON off the workers"). A small body is not worth the hand-over.
async fn cpu_work<T: Send + 'static>(
    heavy: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    if !heavy {
        return Ok(work());
    }
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work)).await.map_err(|error| ApiError::Internal {
        detail: format!("a batch's JSON work did not finish: {error}"),
    })
}

/// The proof wait the request's `Prefer` header asks for (RFC 7240:
/// `Prefer: wait=signed` or `wait=witnessed`; other preferences, and other
/// values of `wait`, are not ours and are ignored).
fn preferred_wait(call: &Call) -> Option<ProofWait> {
    call.headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| {
            let (name, value) = preference.split(';').next()?.split_once('=')?;
            name.trim().eq_ignore_ascii_case("wait").then(|| ProofWait::from_preference(value)).flatten()
        })
        .next()
}

/// A `Prefer: wait=…` the service honours: asked for, and the service signs
/// checkpoints (with witnesses, for `witnessed`). Decided before anything is
/// answered, so a request without one never waits.
struct ProofRequest<'r> {
    wait: ProofWait,
    settings: &'r ProofWaitSettings,
    latest: &'r LatestCheckpoint,
}

impl<'r> ProofRequest<'r> {
    /// `None`: the preference does not apply and the plain receipts go out.
    fn of<S: LedgerStore>(runtime: &'r crate::ledgers::LedgerRuntime<S>, call: &Call) -> Option<Self> {
        let wait = preferred_wait(call)?;
        let settings = runtime.proof_wait.as_ref()?;
        let latest = runtime.checkpoints.as_ref()?;
        (wait != ProofWait::Witnessed || settings.witnessed).then_some(ProofRequest {
            wait,
            settings,
            latest,
        })
    }

    /// Waits for a checkpoint covering `entries`, then gives each receipt
    /// with its tlog-proof under `"proof"`. Past the wait, 503: the entries
    /// stay recorded, and a retry is answered from them.
    async fn proofs_of<S: LedgerStore>(
        &self,
        runtime: &crate::ledgers::LedgerRuntime<S>,
        entries: &[LedgerEntry],
    ) -> Result<Vec<Value>, ApiError> {
        let (wait, settings) = (self.wait, self.settings);
        let last = entries.iter().map(|entry| entry.sequence_number).max().unwrap_or(0);
        let not_ready = || {
            ApiError::ProofNotReady(format!(
                "recorded up to sequence number {last}, but no checkpoint covering it was {} within {} s: nothing is lost — retry the request unchanged (it is answered from what was recorded) or fetch GET …/transactions/{{id}}/proof?format=tlog-proof later",
                wait.name(),
                settings.limit.as_secs_f64()
            ))
        };
        let met = |size: u64, served: &str, cosignatures: usize| {
            wait.is_met(last, size, cosignatures, settings.quorum)
                && (wait == ProofWait::Signed
                    || crate::checkpointer::quorum_met(
                        settings.policy.as_deref(),
                        settings.quorum,
                        served,
                        cosignatures,
                    ))
        };
        if !self.latest.wait_for(met, settings.limit).await {
            return Err(not_ready());
        }
        let proofs = runtime.ledger.tlog_proofs_of(entries).await.map_err(|error| match error {
            ProofRequestError::NotYetSigned { .. } => not_ready(),
            other => ApiError::from(other),
        })?;
        Ok(entries
            .iter()
            .zip(proofs)
            .map(|(entry, proof)| {
                let mut body = entry.receipt_json();
                if let Value::Object(fields) = &mut body {
                    fields.insert("proof".into(), Value::String(proof.to_text()));
                }
                body
            })
            .collect())
    }
}

/// Marks a response as honouring the `Prefer: wait=…` it was asked with.
fn applied(mut response: Response, wait: ProofWait) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!("wait={}", wait.name())) {
        response.headers_mut().insert("preference-applied", value);
    }
    response
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
