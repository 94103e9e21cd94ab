//! `/health`, `/livez`, `/readyz` and `/metrics`: what load balancers,
//! orchestrators and Prometheus probe, without a key.

use invario_core::{KeyStore, LedgerCatalog, LedgerName};
use serde_json::json;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use crate::api::{App, Call, json_response};
use crate::error::ApiError;
use crate::receipt::head_json;

/// `GET /health`: 200 only while the chain verified intact and the database answers.
pub(super) async fn health<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    _call: Call,
) -> Result<Response, ApiError> {
    let default = app.ledgers.runtime(&LedgerName::default_ledger()).await?;
    let status = default.ledger.integrity();
    if let Some(found) = &status.broken {
        return Ok(unavailable(
            &ApiError::Quarantined(found.to_string()),
            &json!({
                "status": "corrupted",
                "error": found.to_string(),
                "kind": found.kind(),
                "sequence": found.sequence(),
            }),
        ));
    }
    let head = match default.ledger.head().await {
        Ok(head) => head,
        Err(error) => {
            let error = ApiError::from(error);
            return Ok(unavailable(
                &error,
                &json!({"status": "unavailable", "error": format!("cannot read the ledger: {error}")}),
            ));
        }
    };
    Ok(match status.verified {
        Some(verified) => json_response(
            StatusCode::OK,
            &json!({
                "status": "ok",
                "head": head_json(&head),
                "last_verified_sequence": verified.sequence_number,
                "checkpoint_tree_size": default.checkpoints.as_ref().and_then(|latest| latest.get()).map(|(size, _)| size),
                "ledgers": ledger_statuses(app),
            }),
        ),
        None => unavailable(
            &not_verified_yet(),
            &json!({"status": "unverified", "error": "no integrity check has completed yet", "head": head_json(&head)}),
        ),
    })
}

/// A 503 whose `Retry-After` follows the one policy ([`ApiError::retry_after`])
/// for the condition it reports.
fn unavailable(condition: &ApiError, body: &serde_json::Value) -> Response {
    let mut response = json_response(StatusCode::SERVICE_UNAVAILABLE, body);
    condition.set_retry_after(response.headers_mut());
    response
}

/// Before the start-up sweep completes: transient, so retryable.
fn not_verified_yet() -> ApiError {
    ApiError::Unavailable { detail: "no integrity check has completed yet".into() }
}

/// The integrity of every ledger this server has started, by name: one
/// broken ledger is quarantined alone, so it shows here, not as a 503.
fn ledger_statuses<C: LedgerCatalog, K>(app: &App<C, K>) -> serde_json::Map<String, serde_json::Value> {
    app.ledgers
        .started()
        .iter()
        .map(|runtime| {
            let status = runtime.ledger.integrity();
            let word = match (&status.broken, status.verified) {
                (Some(_), _) => "corrupted",
                (None, Some(_)) => "ok",
                (None, None) => "unverified",
            };
            (runtime.name.to_string(), json!(word))
        })
        .collect()
}

/// `GET /livez`: the process is alive and serving HTTP. Never touches the
/// database, so an outage of the database never gets the process restarted.
pub(super) async fn livez<C: LedgerCatalog, K>(_app: &App<C, K>, _call: Call) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, &json!({"status": "alive"})))
}

/// `GET /readyz`: 200 when this instance should receive traffic — the start-up
/// integrity sweep has completed, the ledger is not quarantined and the
/// database answers; else 503 naming the check that failed. (The schema is
/// checked before the server starts: `serve` refuses pending migrations.)
pub(super) async fn readyz<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    _call: Call,
) -> Result<Response, ApiError> {
    let not_ready = |check: &str, reason: String, condition: ApiError| {
        unavailable(&condition, &json!({"status": "not_ready", "check": check, "reason": reason}))
    };
    let default = app.ledgers.runtime(&LedgerName::default_ledger()).await?;
    let status = default.ledger.integrity();
    if let Some(found) = &status.broken {
        let reason = format!("the ledger is quarantined: {found}");
        return Ok(not_ready("integrity", reason.clone(), ApiError::Quarantined(reason)));
    }
    if status.verified.is_none() {
        return Ok(not_ready("integrity", "no integrity check has completed yet".into(), not_verified_yet()));
    }
    if let Err(error) = default.ledger.head().await {
        let reason = format!("cannot read the ledger: {error}");
        return Ok(not_ready("database", reason, ApiError::from(error)));
    }
    Ok(json_response(StatusCode::OK, &json!({"status": "ready"})))
}

/// The OpenAPI 3.1 description of this API (docs/openapi.yaml is JSON, which is also YAML).
pub(crate) const OPENAPI_DOCUMENT: &str = include_str!("../../../docs/openapi.yaml");

/// `GET /openapi.json`: [`OPENAPI_DOCUMENT`].
pub(super) async fn openapi<C: LedgerCatalog, K>(
    _app: &App<C, K>,
    _call: Call,
) -> Result<Response, ApiError> {
    let mut response = Response::new(OPENAPI_DOCUMENT.into());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// `GET /metrics`: the Prometheus text format.
pub(super) async fn metrics<C: LedgerCatalog, K>(
    _app: &App<C, K>,
    _call: Call,
) -> Result<Response, ApiError> {
    let mut response = Response::new(crate::metrics::prometheus().render().into());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok(response)
}
