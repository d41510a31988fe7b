//! Client API errors and the one place that maps them to HTTP statuses.

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::coordinator::CoordinatorError;

/// A request that failed, with what the client needs to act on it.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApiError {
    /// Malformed input: `code` is a stable snake_case name.
    BadRequest {
        code: &'static str,
        message: String,
    },
    /// The value is over `max_value_bytes`.
    TooLarge {
        limit: usize,
    },
    /// No live version; `context` is set when a tombstone exists.
    NotFound {
        context: Option<String>,
    },
    /// No such route.
    NoRoute,
    MethodNotAllowed,
    /// The key has too many concurrent versions to accept a blind write.
    TooManySiblings {
        count: usize,
        limit: usize,
    },
    /// Fewer replicas answered than the request required.
    QuorumFailed {
        required: usize,
        succeeded: usize,
        replicas: Vec<(String, String)>,
    },
    /// The node is shutting down or not yet ready.
    Unavailable(String),
    /// A fault inside this node (storage I/O); logged.
    Internal(String),
}

impl ApiError {
    pub fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest { code, message: message.into() }
    }

    /// The HTTP status of each error: decided here and nowhere else.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound { .. } | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManySiblings { .. } => StatusCode::CONFLICT,
            ApiError::QuorumFailed { .. } | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body: `{"error": code, "message": sentence, ...details}`.
    pub fn body(&self) -> Value {
        match self {
            ApiError::BadRequest { code, message } => json!({"error": code, "message": message}),
            ApiError::TooLarge { limit } => json!({
                "error": "value_too_large",
                "message": format!("the value is larger than the limit of {limit} bytes (max_value_bytes)"),
                "limit": limit,
            }),
            ApiError::NotFound { .. } => {
                json!({"error": "not_found", "message": "no live version of this key"})
            }
            ApiError::NoRoute => {
                json!({"error": "no_such_route", "message": "no such endpoint; see API.md"})
            }
            ApiError::MethodNotAllowed => {
                json!({"error": "method_not_allowed", "message": "this endpoint does not take that method"})
            }
            ApiError::TooManySiblings { count, limit } => json!({
                "error": "too_many_siblings",
                "message": format!(
                    "the key would have {count} concurrent versions, over the limit of {limit}; \
                     read it and write back with its X-Causal-Context to resolve them"),
                "count": count,
                "limit": limit,
            }),
            ApiError::QuorumFailed { required, succeeded, replicas } => json!({
                "error": "quorum_failed",
                "message": format!(
                    "only {succeeded} of the {required} required replicas answered in time; \
                     retry, lower r/w, or check the replicas below"),
                "required": required,
                "succeeded": succeeded,
                "replicas": replicas.iter().map(|(node, error)| json!({"node": node, "error": error})).collect::<Vec<_>>(),
            }),
            ApiError::Unavailable(why) => json!({"error": "unavailable", "message": why}),
            ApiError::Internal(why) => json!({"error": "internal", "message": why}),
        }
    }

    /// The causal context header to send with the error, if any.
    pub fn context(&self) -> Option<&str> {
        match self {
            ApiError::NotFound { context } => context.as_deref(),
            _ => None,
        }
    }
}

impl From<CoordinatorError> for ApiError {
    fn from(e: CoordinatorError) -> ApiError {
        match e {
            CoordinatorError::QuorumFailed { required, succeeded, replicas } => {
                ApiError::QuorumFailed { required, succeeded, replicas }
            }
            CoordinatorError::TooManySiblings { count, limit } => ApiError::TooManySiblings { count, limit },
            CoordinatorError::Unavailable(why) => ApiError::Unavailable(why),
            CoordinatorError::Internal(why) => ApiError::Internal(why),
        }
    }
}
