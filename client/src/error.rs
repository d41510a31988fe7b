//! The client's one error type.

use std::time::Duration;

use crate::value::Context;

/// Why a call failed.
///
/// The variants follow API.md's statuses: 404 is [`NotFound`](Error::NotFound), 400 and
/// 413 are [`InvalidInput`](Error::InvalidInput), a 503 with `quorum_failed` is
/// [`QuorumFailed`](Error::QuorumFailed), 409 is
/// [`TooManySiblings`](Error::TooManySiblings). Connection failures and 503s are retried
/// on other nodes within the deadline before any of them is returned.
///
/// ```
/// use quorumkv_client::Error;
///
/// fn describe(e: &Error) -> &'static str {
///     match e {
///         Error::NotFound { .. } => "no such key",
///         Error::QuorumFailed { .. } | Error::Unavailable { .. } => "too few replicas, retry later",
///         Error::Timeout { .. } => "too slow",
///         Error::InvalidInput { .. } => "fix the request",
///         _ => "something else",
///     }
/// }
/// # let _ = describe;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key has no live version: never written, or deleted. When a tombstone exists,
    /// `context` covers it: write with it and the new value supersedes the delete.
    #[error("not found")]
    NotFound {
        /// The tombstone's context, if the key was deleted.
        context: Option<Context>,
    },

    /// The request was refused as malformed, by the client before sending or by the node
    /// (400, or 413 for a value over the node's `max_value_bytes`). Retrying cannot help.
    #[error("invalid input ({code}): {message}")]
    InvalidInput {
        /// The API's snake_case error code, e.g. `invalid_bucket`, `value_too_large`.
        code: String,
        /// A sentence a person can act on.
        message: String,
    },

    /// Fewer replicas than required answered before the deadline (503 `quorum_failed`).
    /// A write may still be stored on some replicas and will spread; retrying it with the
    /// same context is safe.
    #[error("quorum failed on {node}: {succeeded} of {required} required replicas answered")]
    QuorumFailed {
        /// The node that coordinated the request.
        node: String,
        /// Replicas the request required.
        required: usize,
        /// Replicas that answered in time.
        succeeded: usize,
        /// What went wrong with each replica that failed, as the node reported it.
        replicas: Vec<ReplicaFailure>,
    },

    /// The node could not serve the request (503 other than a quorum failure, for example
    /// while it shuts down), and no other node could either.
    #[error("{node} is unavailable: {message}")]
    Unavailable {
        /// The node that answered.
        node: String,
        /// Its explanation.
        message: String,
    },

    /// The key has so many concurrent versions that the node refuses another blind write
    /// (409 `too_many_siblings`): read it and write back with its context.
    #[error("too many siblings: {message}")]
    TooManySiblings {
        /// The node's explanation, with the count and the limit.
        message: String,
    },

    /// An [`update`](crate::Client::update) found siblings but was given no resolver.
    #[error("the key has {siblings} concurrent versions and the update has no resolver")]
    Unresolved {
        /// How many siblings the read found.
        siblings: usize,
    },

    /// The deadline passed before any node answered (after retries).
    #[error("timed out after {timeout:?}")]
    Timeout {
        /// The deadline the call had.
        timeout: Duration,
    },

    /// No node could be reached: connection refused, reset, or no address to try.
    #[error("could not reach {node}: {message}")]
    Transport {
        /// The last node tried.
        node: String,
        /// What failed.
        message: String,
    },

    /// The node answered with an error this client does not map to another variant
    /// (for example a 500 after a storage fault).
    #[error("{node} answered {status} ({code}): {message}")]
    Server {
        /// The node that answered.
        node: String,
        /// The HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The node's explanation.
        message: String,
    },

    /// The answer did not follow API.md (a bug on one side, or not a quorumkv node).
    #[error("unexpected answer from {node}: {message}")]
    Protocol {
        /// The node that answered.
        node: String,
        /// What was wrong with the answer.
        message: String,
    },
}

/// One replica's failure inside a [`Error::QuorumFailed`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaFailure {
    /// The replica's node id.
    pub node: String,
    /// What went wrong with it.
    pub error: String,
}

impl Error {
    pub(crate) fn invalid(code: &str, message: impl Into<String>) -> Error {
        Error::InvalidInput { code: code.to_string(), message: message.into() }
    }

    /// Whether this is [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// The tombstone context of a [`Error::NotFound`], if the key was deleted.
    pub fn context(&self) -> Option<&Context> {
        match self {
            Error::NotFound { context } => context.as_ref(),
            _ => None,
        }
    }

    /// Whether another node may succeed where this attempt failed: transport failures and
    /// 503s. Every retry the client makes is safe by API.md: a read changes nothing, and a
    /// write retried with the same context leaves no duplicate sibling.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, Error::Transport { .. } | Error::QuorumFailed { .. } | Error::Unavailable { .. })
    }
}
