//! Replica storage for quorumkv: the causal model, the record format and the store.
//!
//! This crate knows nothing of the network or of key placement: the node hands it the
//! partition of every key (computed by `quorumkv-ring`), and it stores, merges and
//! checksums objects. Every call is synchronous.
//!
//! # Layout
//! - [`causal`]: dots, version vectors, DVV sibling sets and their merge laws.
//! - [`token`]: the causal context token handed to clients.
//! - [`merkle`]: per-partition Merkle trees, updated by XOR deltas on every write.
//! - [`record`]: the CRC-framed on-disk record.
//! - [`store`]: the fjall-backed store with per-key read-modify-write and group commit.
//! - [`versions`]: numbering versions, the one place a dot is made, so none is made twice.
//! - [`hint`]: a hint's value, layers of versions by age, and the rule that keeps its age.
//! - [`background`]: keeping fjall's flushes and compactions out of the requests' way.
//! - `commit`: the group-commit primitive; `journal`: fsyncing the journal outside fjall's lock.

pub mod background;
pub mod causal;
mod commit;
mod error;
pub mod hint;
mod journal;
pub mod merkle;
pub mod record;
pub mod store;
pub mod token;
pub mod versions;

pub use causal::{Actor, Content, Dot, Object, SIBLING_LIMIT, SIBLING_WARN, Sibling, VersionVector, unix_ms};
pub use error::Error;
pub use hint::{AGE_UNKNOWN_MS, HintLayer};
pub use merkle::Tree;
pub use store::{
    Durability, Entry, Hint, KeyShapes, ObjectKey, Removal, Store, StoreOptions, StoreStats, VersionsInfo,
};
pub use token::{TokenKey, decode_context, encode_context};
pub use versions::{Issuer, StartKind};
