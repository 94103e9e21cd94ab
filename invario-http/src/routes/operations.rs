//! `/health`, `/livez`, `/readyz` and `/metrics`: what load balancers,
//! orchestrators and Prometheus probe, without a key.

use invario_core::{KeyStore, LedgerCatalog, LedgerName};
use serde_json::json;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use crate::api::{App, Call, json_response};
use crate::error::{ApiError, RETRY_AFTER_SECONDS};
use crate::receipt::head_json;

/// `GET /health`: 200 only while the chain verified intact and the database answers.
pub(super) async fn health<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    _call: Call,
) -> Result<Response, ApiError> {
    let default = app.ledgers.runtime(&LedgerName::default_ledger()).await?;
    let status = default.ledger.integrity();
    if let Some(found) = &status.broken {
        return Ok(json_response(
            StatusCode::SERVICE_UNAVAILABLE,
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
            let mut response = json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "unavailable", "error": format!("cannot read the ledger: {error}")}),
            );
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            return Ok(response);
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
        None => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unverified", "error": "no integrity check has completed yet", "head": head_json(&head)}),
        ),
    })
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
    let not_ready = |check: &str, reason: String| {
        let mut response = json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "not_ready", "check": check, "reason": reason}),
        );
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        response
    };
    let default = app.ledgers.runtime(&LedgerName::default_ledger()).await?;
    let status = default.ledger.integrity();
    if let Some(found) = &status.broken {
        return Ok(not_ready("integrity", format!("the ledger is quarantined: {found}")));
    }
    if status.verified.is_none() {
        return Ok(not_ready("integrity", "no integrity check has completed yet".into()));
    }
    if let Err(error) = default.ledger.head().await {
        return Ok(not_ready("database", format!("cannot read the ledger: {error}")));
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
