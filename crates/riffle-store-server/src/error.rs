//! The server's errors as HTTP responses: a status and a JSON object `{"error": "..."}` that
//! says what failed and where, so that a client can tell a retry from a bug of its own.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use riffle_eventstore::StoreError;

/// An error answered to a request: its status and its JSON body.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the `error` field.
    pub message: String,
    /// For a wrong expected version (409): the stream's current version, `None` when the
    /// stream has no event (the body's `current_version` is then `null`).
    pub current_version: Option<Option<u64>>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            current_version: None,
        }
    }

    /// A 400: the request is invalid (the message says where).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 500: the server failed (a task panicked, a file could not be read).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::WrongExpectedVersion { current, .. } => ApiError {
                status: StatusCode::CONFLICT,
                message: "wrong expected version".to_string(),
                current_version: Some(current),
            },
            StoreError::StreamDeleted { .. } => ApiError::new(StatusCode::GONE, e.to_string()),
            StoreError::InvalidAppend { .. } => ApiError::bad_request(e.to_string()),
            // The store refuses writes (closed after a failed write, or read-only): a retry
            // against this process fails the same way until it is restarted.
            StoreError::ReadOnly { .. } | StoreError::Closed { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            StoreError::Io { .. } | StoreError::Corrupt { .. } | StoreError::Locked { .. } => {
                tracing::error!("event store: {e}");
                ApiError::internal(e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.current_version {
            Some(current) => serde_json::json!({"error": self.message, "current_version": current}),
            None => serde_json::json!({"error": self.message}),
        };
        (self.status, axum::Json(body)).into_response()
    }
}
