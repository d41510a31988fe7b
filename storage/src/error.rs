use crate::record::RecordFault;

/// Everything the storage crate can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage engine failed (I/O, disk full, a poisoned database).
    #[error("storage engine: {0}")]
    Engine(#[from] fjall::Error),
    /// A stored record failed its checks: it is never served, and repair restores it.
    #[error("corrupt record in partition {partition} ({fault})")]
    Corrupt { partition: u32, key: Vec<u8>, fault: RecordFault },
    /// A client write would leave a key with too many concurrent versions.
    #[error(
        "the key would have {count} concurrent versions, over the limit of {limit}; \
         read it and write back with the returned causal context to resolve them"
    )]
    TooManySiblings { count: usize, limit: usize },
    /// An fsync (group commit) failed; the write is in the journal but not known durable.
    #[error("fsync failed: {0}")]
    SyncFailed(String),
    /// The storage boundary stopped (shutdown) or a storage task panicked.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A key the stored layout cannot hold: an empty or longer than 255-byte bucket, an
    /// empty key. Refused before anything is written.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A causal context token that does not decode.
    #[error("causal context token is invalid: {0}")]
    BadContext(String),
}
