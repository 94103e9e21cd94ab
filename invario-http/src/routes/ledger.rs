//! `/v1/ledger`: the head and pages of entries, for auditors re-verifying from outside.

use invario_core::{KeyStore, LedgerCatalog, LedgerEntry};
use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::reply::Response;

use crate::api::{App, Call, json_response};
use crate::error::ApiError;
use crate::receipt::head_json;

/// Entries per page when `limit` is not given.
pub const DEFAULT_PAGE_SIZE: usize = 100;

const _: () = assert!(DEFAULT_PAGE_SIZE <= invario_core::MAX_PAGE_SIZE);

/// `GET /v1/ledger/head`.
pub(super) async fn head<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let head = app.runtime(&call).await?.ledger.head().await?;
    Ok(json_response(StatusCode::OK, &head_json(&head)))
}

/// `GET /v1/ledger/entries?after=&limit=`.
pub(super) async fn entries<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let after: u64 = call.query_number("after", 0)?;
    let limit: usize = call.query_number("limit", DEFAULT_PAGE_SIZE)?;
    let page = app.runtime(&call).await?.ledger.entries_after(after, limit).await?;
    let entries: Vec<Value> = page.entries.iter().map(LedgerEntry::receipt_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "entries": entries, "next_after": page.next_after })))
}
