//! The dispatcher: every request is routed through the table in
//! [`crate::routes`], authenticated when its route needs a scope, given one
//! span carrying its correlation id, answered with the same error shape, and
//! counted. Handlers only parse and call the core.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use invario_core::{
    AuthError, AuthenticationError, KeyAdmin, KeyEpoch, KeyStore, LedgerCatalog, LedgerName, Scope, Scopes,
};
use tracing::Instrument;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use crate::clock::now;
use crate::error::ApiError;
use crate::ledgers::{LedgerRuntime, Ledgers};
use crate::metrics::{DATABASE_ERRORS_TOTAL, HTTP_REQUEST_DURATION, HTTP_REQUESTS_TOTAL};
use crate::routes::{LedgerParam, Resolution, Route, resolve};

/// Longest correlation id accepted from a client.
const MAX_CORRELATION_ID_CHARS: usize = 128;
/// The metric label of requests that matched no route (bounded cardinality).
pub(crate) const UNROUTED_LABEL: &str = "other";

/// What every request handler shares.
pub(crate) struct App<C: LedgerCatalog, K> {
    /// The ledgers, each with its own appender, monitor and checkpoints.
    pub(crate) ledgers: Ledgers<C>,
    pub(crate) keys: KeyAdmin<K>,
    pub(crate) routes: Vec<Route<C, K>>,
    /// Longest a request may take before it is answered 503.
    pub(crate) request_timeout: std::time::Duration,
    /// Whether the tlog-tiles read API answers without a key.
    pub(crate) tlog_public: bool,
}

impl<C: LedgerCatalog, K> App<C, K> {
    /// The runtime of the ledger the call is about (404 naming an unknown one).
    pub(crate) async fn runtime(&self, call: &Call) -> Result<Arc<LedgerRuntime<C::Store>>, ApiError> {
        let name = call.ledger.as_ref().ok_or_else(|| ApiError::Internal {
            detail: "a ledger handler was routed without a ledger (a route table bug)".into(),
        })?;
        self.ledgers.runtime(name).await
    }
}

/// A request body as it arrives.
pub(crate) type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, warp::Error>> + Send>>;

/// A request as warp hands it over.
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: HashMap<String, String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: BodyStream,
}

/// A routed, authenticated request with its body read: what a handler gets.
#[derive(Debug)]
pub(crate) struct Call {
    /// The ledger the route is about (`None` for routes about no ledger).
    pub(crate) ledger: Option<LedgerName>,
    /// The scopes of the key that authenticated the call, when the route needs one.
    pub(crate) scopes: Option<Scopes>,
    /// The key table's epoch the key was trusted at from the cache, on a
    /// route whose write checks it ([`crate::routes::Route::key_checked_by_write`]).
    pub(crate) key_epoch: Option<KeyEpoch>,
    pub(crate) params: Vec<(&'static str, String)>,
    pub(crate) query: HashMap<String, String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Call {
    /// The path segment the route's pattern names `{name}`.
    pub(crate) fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(param, _)| *param == name).map_or("", |(_, value)| value.as_str())
    }

    /// The body as JSON, refusing any other content type.
    pub(crate) fn json_body<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, ApiError> {
        let content_type = self.headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
        let is_json = content_type.is_some_and(|value| {
            value.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
        });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        serde_json::from_slice(&self.body)
            .map_err(|error| ApiError::InvalidJson(format!("the request body is not valid JSON: {error}")))
    }

    /// A query parameter as a non-negative whole number, or `default` when absent.
    pub(crate) fn query_number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, ApiError> {
        Ok(self.optional_number(name)?.unwrap_or(default))
    }

    /// A query parameter as a non-negative whole number, if present.
    pub(crate) fn optional_number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.query
            .get(name)
            .map(|text| {
                text.parse().map_err(|_| {
                    ApiError::invalid_field(
                        name,
                        format!("{name} must be a non-negative whole number (got {text:?})"),
                    )
                })
            })
            .transpose()
    }
}

/// Routes, authenticates and answers one request inside its own span.
pub(crate) async fn dispatch<C: LedgerCatalog + 'static, K: KeyStore + 'static>(
    app: &App<C, K>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let correlation_id = correlation_id(&request.headers);
    let resolution = resolve(&app.routes, &request.method, &request.path);
    let label = match &resolution {
        Resolution::Found(route, _) => route.pattern,
        _ => UNROUTED_LABEL,
    };
    let span = tracing::info_span!(
        "request",
        correlation_id = %correlation_id,
        route = label,
        method = %request.method,
    );
    let handled = handle(app, request, resolution).instrument(span.clone());
    let result = tokio::time::timeout(app.request_timeout, handled)
        .await
        .unwrap_or(Err(ApiError::TimedOut(app.request_timeout)));
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            span.in_scope(|| log_failure(&error));
            error_response(&error, &correlation_id)
        }
    };
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert("x-correlation-id", value);
    }
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS_TOTAL, "route" => label, "status" => status.clone()).increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION, "route" => label, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

async fn handle<C: LedgerCatalog + 'static, K: KeyStore + 'static>(
    app: &App<C, K>,
    request: Request,
    resolution: Resolution<'_, C, K>,
) -> Result<Response, ApiError> {
    let (route, params) = match resolution {
        Resolution::Found(route, params) => (route, params),
        Resolution::MethodNotAllowed(allowed) => return Err(ApiError::MethodNotAllowed { allowed }),
        Resolution::NotFound => {
            return Err(ApiError::NotFound(format!("no route for {} {}", request.method, request.path)));
        }
    };
    let ledger = match route.ledger {
        LedgerParam::None => None,
        LedgerParam::Default => Some(LedgerName::default_ledger()),
        LedgerParam::FromPath => {
            let text =
                params.iter().find(|(name, _)| *name == "ledger").map_or("", |(_, value)| value.as_str());
            // A name that breaks the rule cannot exist: the same 404 as an unknown one.
            Some(
                LedgerName::parse(text)
                    .map_err(|_| ApiError::NotFound(format!("no ledger named {text:?}")))?,
            )
        }
    };
    let (scopes, key_epoch) = match route.scope {
        Some(_) if route.public_tlog && app.tlog_public => (None, None),
        Some(scope) => {
            let trust = if route.key_checked_by_write { KeyTrust::CheckedByWrite } else { KeyTrust::Current };
            let (scopes, epoch) = authenticate(app, &request.headers, scope, ledger.as_ref(), trust).await?;
            (Some(scopes), epoch)
        }
        None => (None, None),
    };
    let body = read_body(route.body_limit, &request.headers, request.body).await?;
    let call =
        Call { ledger, scopes, key_epoch, params, query: request.query, headers: request.headers, body };
    (route.handler)(app, call).await
}

/// Logs what went wrong once, inside the request's span: internal errors at
/// error level with their whole source chain, outages as warnings.
fn log_failure(error: &ApiError) {
    match error {
        ApiError::Internal { detail } => tracing::error!(event = "internal_error", error = %detail),
        ApiError::ProofSelfCheck { detail } => {
            tracing::error!(event = "integrity_check_failed", kind = "proof_self_check", error = %detail);
        }
        ApiError::Unavailable { detail } => {
            metrics::counter!(DATABASE_ERRORS_TOTAL, "kind" => "unavailable").increment(1);
            tracing::warn!(event = "database_unavailable", error = %detail);
        }
        ApiError::StorageFull { detail } => {
            metrics::counter!(DATABASE_ERRORS_TOTAL, "kind" => "full").increment(1);
            tracing::error!(event = "database_full", error = %detail);
        }
        ApiError::Busy => tracing::warn!(event = "append_queue_full", error = %error),
        ApiError::TimedOut(_) => tracing::warn!(event = "request_timed_out", error = %error),
        _ => {}
    }
}

/// The client's id when sane (`[A-Za-z0-9._:-]`, bounded), else a new `req_…`.
pub(crate) fn correlation_id(headers: &HeaderMap) -> String {
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

fn error_response(error: &ApiError, correlation_id: &str) -> Response {
    let mut response = json_response(error.status(), &error.body(correlation_id));
    let headers = response.headers_mut();
    if error.status() == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let ApiError::MethodNotAllowed { allowed } = error {
        let list = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
        if let Ok(value) = HeaderValue::from_str(&list) {
            headers.insert(header::ALLOW, value);
        }
    }
    error.set_retry_after(headers);
    response
}

/// A JSON answer with `status`.
pub(crate) fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    // Serialising a JSON value or a derived struct of strings, numbers and
    // string maps into memory cannot fail.
    let mut response = Response::new(serde_json::to_vec(body).unwrap_or_default().into());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// How far a cached key record is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyTrust {
    /// Only once the cache has caught up with every key change.
    Current,
    /// At the epoch it was read at, which the request's write checks.
    CheckedByWrite,
}

/// The key's scopes, and the epoch its write must check when `trust` let a
/// cached record through without a catch-up.
pub(crate) async fn authenticate<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    headers: &HeaderMap,
    scope: Scope,
    ledger: Option<&LedgerName>,
    trust: KeyTrust,
) -> Result<(Scopes, Option<KeyEpoch>), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    let authenticated = match trust {
        KeyTrust::Current => {
            app.keys.authenticate(presented, scope, ledger, now()).await.map(|record| (record, None))
        }
        KeyTrust::CheckedByWrite => app.keys.authenticate_for_write(presented, scope, ledger, now()).await,
    };
    match authenticated {
        Ok((record, epoch)) => Ok((record.scopes, epoch)),
        Err(AuthenticationError::Refused(refusal)) => {
            let prefix = match &refusal {
                AuthError::Revoked { prefix }
                | AuthError::Expired { prefix }
                | AuthError::MissingScope { prefix, .. }
                | AuthError::LedgerNotAllowed { prefix, .. } => prefix.as_str(),
                _ => "",
            };
            tracing::warn!(event = "auth_failed", key_prefix = prefix, reason = %refusal);
            Err(refusal.into())
        }
        Err(error) => Err(error.into()),
    }
}

/// Reads a body up to `limit`, refusing early on a large `Content-Length`.
/// A route without a body (`limit` 0) reads nothing.
async fn read_body(limit: usize, headers: &HeaderMap, mut body: BodyStream) -> Result<Bytes, ApiError> {
    if limit == 0 {
        return Ok(Bytes::new());
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| ApiError::InvalidJson("the request body could not be read".into()))?;
        if collected.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.freeze())
}
