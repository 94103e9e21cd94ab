//! The Merkle tree: its head, and inclusion and consistency proofs any client
//! can check without trusting the server (RFC 9162; hashes in lower-case hex).

use invario_core::proof::TlogProof;
use invario_core::{KeyStore, LedgerCatalog, TransactionId};
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::api::{App, Call, json_response};
use crate::error::ApiError;

/// A query number that must be present.
fn required(call: &Call, name: &'static str) -> Result<u64, ApiError> {
    call.optional_number::<u64>(name)?
        .ok_or_else(|| ApiError::invalid_field(name, format!("{name} is required (a whole number)")))
}

/// `GET /v1/ledger/tree`: the current tree size and root.
pub(super) async fn tree<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let head = app.runtime(&call).await?.ledger.tree_head().await?;
    Ok(json_response(StatusCode::OK, &json!({ "tree_size": head.size, "root_hash": head.root })))
}

/// `GET /v1/ledger/checkpoint`: the latest signed checkpoint, byte-exact C2SP.
pub(super) async fn checkpoint<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    call: Call,
) -> Result<Response, ApiError> {
    // The database's copy, so every API process serves it; the sink is the reference.
    let note = app
        .runtime(&call)
        .await?
        .ledger
        .latest_checkpoint_copy()
        .await?
        .ok_or_else(|| ApiError::NotFound("no checkpoint has been signed yet".into()))?;
    let mut response = Response::new(note.into());
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

/// How an inclusion proof is answered.
enum ProofFormat {
    /// `{"receipt", "leaf_index", "tree_size", "root_hash", "inclusion"}`, at any size.
    Json { tree_size: Option<u64> },
    /// `c2sp.org/tlog-proof@v1` text against the latest signed checkpoint.
    TlogProof,
}

/// The `format` query parameter (`json`, the default, or `tlog-proof`).
fn proof_format(call: &Call) -> Result<ProofFormat, ApiError> {
    let tree_size = call.optional_number::<u64>("tree_size")?;
    match call.query.get("format").map(String::as_str) {
        None | Some("json") => Ok(ProofFormat::Json { tree_size }),
        Some("tlog-proof") if tree_size.is_some() => Err(ApiError::invalid_field(
            "tree_size",
            "tree_size cannot be combined with format=tlog-proof: a tlog-proof is always against the latest signed checkpoint".into(),
        )),
        Some("tlog-proof") => Ok(ProofFormat::TlogProof),
        Some(other) => Err(ApiError::invalid_field(
            "format",
            format!("format must be json or tlog-proof (got {other:?})"),
        )),
    }
}

/// A tlog-proof, as text to save in a `.tlog-proof` file.
fn tlog_proof_response(proof: &TlogProof) -> Response {
    let mut response = Response::new(proof.to_text().into());
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `GET /v1/transactions/{id}/proof?tree_size=N` or `?format=tlog-proof`.
pub(super) async fn for_transaction<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let id = TransactionId::parse(call.param("id"))
        .map_err(|error| ApiError::invalid_field("transaction_id", error.to_string()))?;
    let format = proof_format(&call)?;
    let runtime = app.runtime(&call).await?;
    let ledger = &runtime.ledger;
    Ok(match format {
        ProofFormat::Json { tree_size } => {
            json_response(StatusCode::OK, &ledger.inclusion_proof_for(id, tree_size).await?.to_json())
        }
        ProofFormat::TlogProof => tlog_proof_response(&ledger.tlog_proof_for(id).await?),
    })
}

/// `GET /v1/ledger/proof/inclusion?sequence_number=S&tree_size=N` or `&format=tlog-proof`.
pub(super) async fn inclusion<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let sequence_number = required(&call, "sequence_number")?;
    let format = proof_format(&call)?;
    let runtime = app.runtime(&call).await?;
    let ledger = &runtime.ledger;
    Ok(match format {
        ProofFormat::Json { tree_size } => json_response(
            StatusCode::OK,
            &ledger.inclusion_proof_at(sequence_number, tree_size).await?.to_json(),
        ),
        ProofFormat::TlogProof => tlog_proof_response(&ledger.tlog_proof_at(sequence_number).await?),
    })
}

/// `GET /v1/ledger/proof/consistency?first=M&second=N`.
pub(super) async fn consistency<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let first = required(&call, "first")?;
    let second = call.optional_number::<u64>("second")?;
    let proof = app.runtime(&call).await?.ledger.consistency_proof(first, second).await?;
    Ok(json_response(StatusCode::OK, &proof.to_json()))
}
