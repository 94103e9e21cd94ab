//! The one HTTP error type: each variant knows its status and stable code.

use serde::Serialize;
use warp::http::StatusCode;

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
    /// Wrong method on a known path.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Same id, other content.
    #[error("{0}")]
    Conflict(String),
    /// Body above the limit.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Not `application/json`.
    #[error("the request body must be sent as Content-Type: application/json")]
    UnsupportedMediaType,
    /// The chain is broken; writes refused.
    #[error("{0}")]
    Quarantined(String),
    /// The database cannot be reached.
    #[error("the ledger database is unavailable; retry later")]
    Unavailable,
    /// A bug or an unexpected failure; details are logged, never answered.
    #[error("internal error; the correlation id identifies it in the logs")]
    Internal,
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
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Quarantined(_) | ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
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
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Quarantined(_) => "ledger_quarantined",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal => "internal",
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
