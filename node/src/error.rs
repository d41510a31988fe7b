//! The node's one error type: what a request (from a client or a peer) failed with.
//!
//! It maps once to an HTTP status and JSON body ([`Error::status`], [`Error::body`]),
//! and once to and from its wire form ([`WireError`]) so a forwarded write's failure
//! reaches the client as if the first node had failed it.

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::key::KeyError;

/// A request that failed, with what the caller needs to act on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Malformed input: `code` is a stable snake_case name.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// The value is over `max_value_bytes`.
    #[error("the value is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// No live version; `context` is set when a tombstone exists.
    #[error("not found")]
    NotFound { context: Option<String> },
    /// No such route.
    #[error("no such endpoint")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The key has too many concurrent versions to accept a write that does not resolve them.
    #[error("{count} concurrent versions would exceed the limit of {limit}")]
    TooManySiblings { count: usize, limit: usize },
    /// Fewer replicas answered than the request required; `replicas` names each one
    /// that failed and why.
    #[error("{succeeded} of {required} required replicas answered")]
    QuorumFailed { required: usize, succeeded: usize, replicas: Vec<(String, String)> },
    /// The node is shutting down, or a peer could not be reached.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The deadline passed.
    #[error("timed out")]
    Timeout,
    /// A fault inside this node (storage I/O, a peer's nonsense answer); logged.
    #[error("internal: {0}")]
    Internal(String),
    /// Client tokens are on and the request has none, or a wrong one.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The request's token does not allow this operation.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// More requests in flight than `max_requests_in_flight`; retry after a second.
    #[error("overloaded")]
    Overloaded { limit: usize },
    /// The request body did not arrive within `request_read_timeout_ms`.
    #[error("the request body did not arrive in time")]
    SlowBody { after_ms: u64 },
}

impl Error {
    pub fn bad(code: &'static str, message: impl Into<String>) -> Error {
        Error::BadRequest { code, message: message.into() }
    }

    /// The HTTP status of each error: decided here and nowhere else.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::NotFound { .. } | Error::NoRoute => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::TooManySiblings { .. } => StatusCode::CONFLICT,
            Error::QuorumFailed { .. } | Error::Unavailable(_) | Error::Timeout => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::SlowBody { .. } => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The JSON body: `{"error": code, "message": sentence, ...details}`.
    pub fn body(&self) -> Value {
        match self {
            Error::BadRequest { code, message } => json!({"error": code, "message": message}),
            Error::TooLarge { limit } => json!({
                "error": "value_too_large",
                "message": format!("the value is larger than the limit of {limit} bytes (max_value_bytes)"),
                "limit": limit,
            }),
            Error::NotFound { .. } => json!({"error": "not_found", "message": "no live version of this key"}),
            Error::NoRoute => json!({"error": "no_such_route", "message": "no such endpoint; see API.md"}),
            Error::MethodNotAllowed => {
                json!({"error": "method_not_allowed", "message": "this endpoint does not take that method"})
            }
            Error::TooManySiblings { count, limit } => json!({
                "error": "too_many_siblings",
                "message": format!(
                    "the key would have {count} concurrent versions, over the limit of {limit}; \
                     read it and write back with its X-Causal-Context to resolve them"),
                "count": count,
                "limit": limit,
            }),
            Error::QuorumFailed { required, succeeded, replicas } => json!({
                "error": "quorum_failed",
                "message": format!(
                    "only {succeeded} of the {required} required replicas answered in time; \
                     retry, lower r/w, or check the replicas below"),
                "required": required,
                "succeeded": succeeded,
                "replicas": replicas.iter().map(|(node, error)| json!({"node": node, "error": error})).collect::<Vec<_>>(),
            }),
            Error::Unavailable(why) => json!({"error": "unavailable", "message": why}),
            Error::Timeout => {
                json!({"error": "unavailable", "message": "the request timed out inside the node"})
            }
            Error::Internal(why) => json!({"error": "internal", "message": why}),
            Error::Unauthorized(why) => json!({"error": "unauthorized", "message": why}),
            Error::Forbidden(why) => json!({"error": "forbidden", "message": why}),
            Error::Overloaded { limit } => json!({
                "error": "overloaded",
                "message": format!("this node has {limit} requests in flight, its limit (max_requests_in_flight); retry after the Retry-After delay or use another node"),
                "limit": limit,
            }),
            Error::SlowBody { after_ms } => json!({
                "error": "request_timeout",
                "message": format!("the request body did not arrive within {after_ms} ms (request_read_timeout_ms); send it at once"),
            }),
        }
    }

    /// The causal context header to send with the error, if any.
    pub fn context(&self) -> Option<&str> {
        match self {
            Error::NotFound { context } => context.as_deref(),
            _ => None,
        }
    }
}

impl From<quorumkv_storage::Error> for Error {
    fn from(e: quorumkv_storage::Error) -> Error {
        use quorumkv_storage::Error as S;
        match e {
            S::TooManySiblings { count, limit } => Error::TooManySiblings { count, limit },
            S::InvalidKey(why) => Error::bad("invalid_key", why),
            S::BadContext(why) => Error::bad("invalid_context", why),
            S::Unavailable(why) => Error::Unavailable(why),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Error {
        let code = match e {
            KeyError::Bucket => "invalid_bucket",
            KeyError::Key(_) | KeyError::Partition { .. } => "invalid_key",
        };
        Error::bad(code, e.to_string())
    }
}

/// An [`Error`] as it crosses between nodes. Decoding never fails on a variant a newer
/// node adds: unknown ones arrive as the message of an [`Error::Internal`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WireError {
    BadRequest { code: String, message: String },
    TooManySiblings { count: usize, limit: usize },
    QuorumFailed { required: usize, succeeded: usize, replicas: Vec<(String, String)> },
    Unavailable(String),
    Timeout,
    Other(String),
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> WireError {
        match e {
            Error::BadRequest { code, message } => {
                WireError::BadRequest { code: (*code).to_owned(), message: message.clone() }
            }
            Error::TooManySiblings { count, limit } => {
                WireError::TooManySiblings { count: *count, limit: *limit }
            }
            Error::QuorumFailed { required, succeeded, replicas } => WireError::QuorumFailed {
                required: *required,
                succeeded: *succeeded,
                replicas: replicas.clone(),
            },
            Error::Unavailable(why) => WireError::Unavailable(why.clone()),
            Error::Timeout => WireError::Timeout,
            other => WireError::Other(other.to_string()),
        }
    }
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Error {
        match e {
            // Codes are `&'static str` here: only the ones this node knows pass through.
            WireError::BadRequest { code, message } => {
                let code = ["invalid_key", "invalid_bucket", "invalid_context", "invalid_parameter"]
                    .into_iter()
                    .find(|c| *c == code)
                    .unwrap_or("invalid_request");
                Error::bad(code, message)
            }
            WireError::TooManySiblings { count, limit } => Error::TooManySiblings { count, limit },
            WireError::QuorumFailed { required, succeeded, replicas } => {
                Error::QuorumFailed { required, succeeded, replicas }
            }
            WireError::Unavailable(why) => Error::Unavailable(why),
            WireError::Timeout => Error::Timeout,
            WireError::Other(why) => Error::Internal(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_survives_the_wire_with_its_status() {
        let errors = [
            Error::bad("invalid_key", "too long"),
            Error::TooManySiblings { count: 101, limit: 100 },
            Error::QuorumFailed {
                required: 2,
                succeeded: 1,
                replicas: vec![("n2".into(), "timed out".into())],
            },
            Error::Unavailable("shutting down".into()),
            Error::Timeout,
        ];
        for e in errors {
            let back = Error::from(WireError::from(&e));
            assert_eq!(back, e);
            assert_eq!(back.status(), e.status());
        }
        let internal = Error::from(WireError::from(&Error::Internal("disk".into())));
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
