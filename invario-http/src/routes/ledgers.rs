//! `POST /v1/ledgers` and `GET /v1/ledgers`: creating and listing ledgers,
//! with the `admin` scope (a key limited to some ledgers sees and creates
//! only those).

use invario_core::{KeyStore, LedgerCatalog, LedgerInfo, LedgerName};
use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::reply::Response;

use crate::api::{App, Call, json_response};
use crate::clock::now;
use crate::error::ApiError;

/// The body of `POST /v1/ledgers`.
#[derive(serde::Deserialize)]
struct NewLedger {
    name: Option<Value>,
}

fn ledger_json(info: &LedgerInfo) -> Value {
    json!({"name": info.name, "created_at": info.created_at.to_rfc3339()})
}

/// `POST /v1/ledgers` `{"name": "acme"}`: 201 when created, 200 when it
/// existed already (nothing changed), either way the ledger.
pub(super) async fn create<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let NewLedger { name } = call.json_body()?;
    let text = name.as_ref().and_then(Value::as_str).ok_or_else(|| {
        ApiError::invalid_field("name", "name is required: a ledger name such as \"acme\"".to_owned())
    })?;
    let name = LedgerName::parse(text).map_err(|error| ApiError::invalid_field("name", error.to_string()))?;
    if !call.scopes.as_ref().is_some_and(|scopes| scopes.allows_ledger(&name)) {
        return Err(ApiError::Forbidden(format!("this API key may not use ledger \"{name}\"")));
    }
    let created = app.ledgers.catalog().create_ledger(&name, now()).await?;
    let info = app.ledgers.catalog().find_ledger(&name).await?.ok_or_else(|| ApiError::Internal {
        detail: format!("ledger {name} vanished right after it was created"),
    })?;
    if created {
        tracing::info!(event = "ledger_created", ledger = %name);
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json_response(status, &ledger_json(&info)))
}

/// `GET /v1/ledgers`: every ledger the key may use, by name.
pub(super) async fn list<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let ledgers: Vec<Value> = app
        .ledgers
        .catalog()
        .list_ledgers()
        .await?
        .iter()
        .filter(|info| call.scopes.as_ref().is_some_and(|scopes| scopes.allows_ledger(&info.name)))
        .map(ledger_json)
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "ledgers": ledgers })))
}
