//! The one HTTP error type: each variant knows its status and stable code, and
//! each error the core or the appender can return is mapped to it once, here.

use invario_core::{
    AuthError, AuthenticationError, IngestError, ItemProblem, PageError, ProofRequestError, StoreError,
    TransactionErrors,
};
use serde::Serialize;
use warp::http::{Method, StatusCode};

use crate::appender::AppendFailure;

/// Seconds a client is told to wait before retrying a 503 `unavailable`.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// One problem in a request body, for `error.details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detail {
    /// Position in a batch (absent for single requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The field to fix, as the client spells it.
    pub field: String,
    /// What rule it broke.
    pub message: String,
}

/// Everything an API call can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("{0}")]
    InvalidJson(String),
    /// The JSON breaks a rule.
    #[error("{message}")]
    Validation {
        /// Summary.
        message: String,
        /// Every problem.
        details: Vec<Detail>,
    },
    /// No usable key.
    #[error("{0}")]
    Unauthorized(String),
    /// The key lacks the scope.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing there.
    #[error("{0}")]
    NotFound(String),
    /// A known path asked with a method it does not answer.
    #[error("this path answers only {}", allowed_list(.allowed))]
    MethodNotAllowed {
        /// The methods the path answers, for the `Allow` header.
        allowed: Vec<Method>,
    },
    /// Same id, other content.
    #[error("{0}")]
    Conflict(String),
    /// A tlog-proof was asked for an entry no signed checkpoint covers yet.
    #[error("{0}")]
    NotYetSigned(String),
    /// Body above the route's limit.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Not `application/json`.
    #[error("the request body must be sent as Content-Type: application/json")]
    UnsupportedMediaType,
    /// The chain is broken; writes refused.
    #[error("{0}")]
    Quarantined(String),
    /// No sequence number is left: the ledger takes no more entries.
    #[error("{0}")]
    LedgerFull(String),
    /// The database cannot be reached; `detail` is for the log only.
    #[error("the ledger database is unavailable; retry later")]
    Unavailable {
        /// What failed, with its source chain.
        detail: String,
    },
    /// The database has no space left: nothing was recorded.
    #[error(
        "the ledger database has no space left to write; nothing was recorded; retry once space is freed"
    )]
    StorageFull {
        /// What failed, with its source chain.
        detail: String,
    },
    /// The request did not complete within the request timeout.
    #[error(
        "the request did not complete within {} s; it may or may not have been recorded: retry it unchanged (a transaction_id already recorded is answered with its receipt)",
        .0.as_secs_f64()
    )]
    TimedOut(std::time::Duration),
    /// The write is recorded, but no checkpoint covering it was signed (or
    /// witnessed) within the proof wait the service allows.
    #[error("{0}")]
    ProofNotReady(String),
    /// Too many writes are waiting for the appender: the service pushes back.
    #[error("the service is busy: too many writes are waiting; retry later")]
    Busy,
    /// A proof built from storage failed the server's own check (a row or a
    /// tile was edited): answered like an internal error, logged as an
    /// integrity alarm, never answered with the proof.
    #[error("internal error; the correlation id identifies it in the logs")]
    ProofSelfCheck {
        /// What failed the check.
        detail: String,
    },
    /// A bug or an unexpected failure; `detail` is logged, never answered.
    #[error("internal error; the correlation id identifies it in the logs")]
    Internal {
        /// What failed, with its source chain.
        detail: String,
    },
}

fn allowed_list(allowed: &[Method]) -> String {
    allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::NotYetSigned(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::LedgerFull(_) | ApiError::StorageFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Quarantined(_)
            | ApiError::Unavailable { .. }
            | ApiError::Busy
            | ApiError::ProofNotReady(_)
            | ApiError::TimedOut(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal { .. } | ApiError::ProofSelfCheck { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::Validation { .. } => "validation_failed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::NotYetSigned(_) => "not_yet_signed",
            ApiError::ProofNotReady(_) => "proof_not_ready",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Quarantined(_) => "ledger_quarantined",
            ApiError::LedgerFull(_) => "ledger_full",
            ApiError::StorageFull { .. } => "storage_full",
            ApiError::Unavailable { .. } | ApiError::Busy | ApiError::TimedOut(_) => "unavailable",
            ApiError::Internal { .. } | ApiError::ProofSelfCheck { .. } => "internal",
        }
    }

    /// The one retry policy, used by every answer (the API's errors,
    /// `/health`, `/readyz`): seconds a client should wait before retrying, or
    /// `None` when retrying cannot help until someone acts. Transient
    /// conditions — the database unreachable or full (space can be freed), the
    /// queue full, a timeout — say when; a quarantined ledger does not: it
    /// stays refused until an operator restores it (docs/design.md,
    /// "Quarantine").
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Unavailable { .. }
            | ApiError::Busy
            | ApiError::TimedOut(_)
            | ApiError::ProofNotReady(_)
            | ApiError::StorageFull { .. } => Some(RETRY_AFTER_SECONDS),
            _ => None,
        }
    }

    /// Sets `Retry-After` on `headers` as [`retry_after`](Self::retry_after) says.
    pub(crate) fn set_retry_after(&self, headers: &mut warp::http::HeaderMap) {
        if let Some(seconds) = self.retry_after() {
            headers.insert(warp::http::header::RETRY_AFTER, warp::http::HeaderValue::from(seconds));
        }
    }

    /// A validation error about one field of a single request.
    pub fn invalid_field(field: &str, message: String) -> Self {
        ApiError::Validation {
            message: message.clone(),
            details: vec![Detail { index: None, field: field.to_owned(), message }],
        }
    }

    /// The JSON body `{"error": {code, message, correlation_id, details?}}`.
    pub fn body(&self, correlation_id: &str) -> serde_json::Value {
        let mut error = serde_json::json!({
            "code": self.code(),
            "message": self.to_string(),
            "correlation_id": correlation_id,
        });
        if let ApiError::Validation { details, .. } = self {
            error["details"] = serde_json::json!(details);
        }
        serde_json::json!({ "error": error })
    }
}

/// An error's message followed by each source's that it does not already
/// contain, so a log line shows the whole chain once.
pub(crate) fn source_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl From<&StoreError> for ApiError {
    fn from(error: &StoreError) -> Self {
        let detail = source_chain(error);
        match error {
            StoreError::Unavailable(_) => ApiError::Unavailable { detail },
            StoreError::OutOfSpace(_) => ApiError::StorageFull { detail },
            StoreError::UnknownLedger(name) => ApiError::NotFound(format!("no ledger named \"{name}\"")),
            StoreError::Backend(_)
            | StoreError::Corrupt(_)
            | StoreError::Contract(_)
            | StoreError::AlreadyStored
            | StoreError::Fenced
            // Handled by the single POST (it authenticates again): never an answer.
            | StoreError::KeysChanged => ApiError::Internal { detail },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::from(&error)
    }
}

impl From<TransactionErrors> for ApiError {
    fn from(errors: TransactionErrors) -> Self {
        let details = errors
            .0
            .iter()
            .map(|error| Detail { index: None, field: error.field(), message: error.to_string() })
            .collect();
        ApiError::Validation { message: errors.to_string(), details }
    }
}

impl From<ItemProblem> for ApiError {
    fn from(problem: ItemProblem) -> Self {
        if problem.is_conflict() {
            ApiError::Conflict(problem.to_string())
        } else {
            ApiError::invalid_field(&problem.field(), problem.to_string())
        }
    }
}

impl From<&IngestError> for ApiError {
    fn from(error: &IngestError) -> Self {
        match error {
            IngestError::Rejected(rejection) => {
                let details = rejection
                    .items
                    .iter()
                    .map(|item| Detail {
                        index: Some(item.index),
                        field: item.problem.field(),
                        message: item.problem.to_string(),
                    })
                    .collect();
                ApiError::Validation { message: rejection.to_string(), details }
            }
            IngestError::EmptyBatch | IngestError::BatchTooLarge(_) => {
                ApiError::invalid_field("transactions", error.to_string())
            }
            IngestError::Quarantined(_) => ApiError::Quarantined(error.to_string()),
            IngestError::Exhausted(_) => ApiError::LedgerFull(error.to_string()),
            // The tree is built by `invario migrate` before serve starts; behind or damaged here is a bug or tampering.
            IngestError::Tree(_) | IngestError::TooManyJoined(_) => {
                ApiError::Internal { detail: error.to_string() }
            }
            IngestError::Store(store) => store.into(),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        ApiError::from(&error)
    }
}

impl From<PageError> for ApiError {
    fn from(error: PageError) -> Self {
        match error {
            PageError::LimitOutOfRange(_) => ApiError::invalid_field("limit", error.to_string()),
            PageError::AfterOutOfRange(_) => ApiError::invalid_field("after", error.to_string()),
            PageError::Store(store) => store.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(refusal: AuthError) -> Self {
        if refusal.is_forbidden() {
            ApiError::Forbidden(refusal.to_string())
        } else {
            ApiError::Unauthorized(refusal.to_string())
        }
    }
}

impl From<AuthenticationError> for ApiError {
    fn from(error: AuthenticationError) -> Self {
        match error {
            AuthenticationError::Refused(refusal) => refusal.into(),
            AuthenticationError::Store(store) => store.into(),
        }
    }
}

impl From<AppendFailure> for ApiError {
    fn from(failure: AppendFailure) -> Self {
        match failure {
            AppendFailure::Ingest(error) => ApiError::from(&*error),
            AppendFailure::Busy => ApiError::Busy,
            AppendFailure::Stopped(detail) => ApiError::Internal { detail: detail.to_owned() },
        }
    }
}

impl From<ProofRequestError> for ApiError {
    fn from(error: ProofRequestError) -> Self {
        match error {
            ProofRequestError::OutOfRange { parameter, message } => {
                ApiError::invalid_field(parameter, message)
            }
            ProofRequestError::NotFound(_) => ApiError::NotFound(error.to_string()),
            ProofRequestError::NotYetSigned { .. } => ApiError::NotYetSigned(error.to_string()),
            ProofRequestError::SelfCheck(detail) => ApiError::ProofSelfCheck { detail },
            ProofRequestError::Store(store) => store.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code an answer can carry is one the OpenAPI document lists
    /// (Schemathesis refuses an answer whose code is not in its enum).
    #[test]
    fn every_error_code_is_in_the_openapi_enum() {
        let source = include_str!("error.rs");
        let start = source.find("pub fn code(&self)").unwrap_or_default();
        let end = start + source[start..].find("\n    }\n").unwrap_or_default();
        let codes: Vec<&str> =
            source[start..end].split("=> \"").skip(1).filter_map(|rest| rest.split('"').next()).collect();
        assert!(codes.len() >= 16, "the code() arms were not found: {codes:?}");
        let document: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/openapi.yaml")).unwrap_or_default();
        let listed = document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]
            ["enum"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for code in codes {
            assert!(listed.iter().any(|value| value == code), "{code} is missing from docs/openapi.yaml");
        }
    }

    #[test]
    fn only_transient_conditions_say_when_to_retry() {
        let transient = [
            ApiError::Unavailable { detail: String::new() },
            ApiError::StorageFull { detail: String::new() },
            ApiError::Busy,
            ApiError::TimedOut(std::time::Duration::from_secs(1)),
        ];
        for error in transient {
            assert_eq!(error.retry_after(), Some(RETRY_AFTER_SECONDS), "{error:?}");
        }
        let lasting = [
            ApiError::Quarantined("broken".into()),
            ApiError::LedgerFull("full".into()),
            ApiError::Conflict("other content".into()),
            ApiError::Internal { detail: String::new() },
        ];
        for error in lasting {
            assert_eq!(error.retry_after(), None, "{error:?}");
        }
    }
}
