//! The internode protocol: postcard messages behind a version byte, one request and one
//! response per HTTP POST to `/rpc` on the peer listener.
//!
//! A body is `PROTOCOL_VERSION ‖ postcard(message)`. A receiver rejects other versions
//! and undecodable bodies with a typed error; it never panics on them.

use serde::{Deserialize, Serialize};

use quorumkv_storage::{Content, Object, VersionVector};

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u8 = 1;

/// What a node says about itself when greeting another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub node_id: String,
    pub incarnation: u64,
    /// Where peers reach it.
    pub peer_addr: String,
    /// Where clients reach it.
    pub api_addr: String,
}

/// Cluster-wide parameters every member must share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterParams {
    pub partitions: u32,
    pub replicas: usize,
    pub vnodes: u32,
}

/// A call on one replica of one key: the hot path, coalesced into batches under load.
/// A separate type from [`Request`] so a batch cannot nest (no recursion to exhaust the
/// stack when decoding hostile bytes).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ReplicaCall {
    /// Reads this replica's version of a key.
    Get {
        partition: u32,
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Merges a version into this replica (replication, read repair); `durable` asks for
    /// an fsync before the answer.
    Merge {
        partition: u32,
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        object: Object,
        durable: bool,
        /// Set when the receiver is a fallback keeping the copy for this replica: it stores
        /// a hint instead of taking the key into its own data.
        hint_for: Option<String>,
    },
}

/// The answer to a [`ReplicaCall`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ReplicaAnswer {
    /// The replica's version, if it holds one.
    Object(Option<Object>),
    /// A merge was applied (and fsynced if `durable`).
    Merged {
        durable: bool,
    },
    Error(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// A heartbeat for the failure detector.
    Ping,
    /// One replica call.
    Replica(ReplicaCall),
    /// Several replica calls in one message, answered by a `Response::Batch` of the same
    /// length and order.
    Batch(Vec<ReplicaCall>),
    /// Introduces the sender and every member it knows.
    Hello { from: MemberInfo, params: ClusterParams, members: Vec<MemberInfo> },
    /// Hints delivered to the replica they were kept for: merged into its data, fsynced,
    /// then acknowledged as a whole.
    MergeBatch { items: Vec<Item> },
    /// Anti-entropy, step 1: this replica's tree root and branch hashes for a partition.
    /// The sender's root goes along: a replica with the same root answers with its root
    /// alone, so partitions in sync cost a few bytes each way.
    TreeSummary { partition: u32, root: u64 },
    /// Step 2: the leaf hashes under some branches.
    TreeLeaves { partition: u32, branches: Vec<u16> },
    /// Step 3: the sender's keys (with item hashes) in some leaves; the receiver answers
    /// with its versions that differ and names the keys it wants.
    SyncLeaves { partition: u32, leaves: Vec<u16>, entries: Vec<KeyHash> },
    /// Tombstone reaping: which of these exact versions does the receiver hold?
    ReapCheck { partition: u32, entries: Vec<KeyHash> },
    /// Tombstone reaping: remove these keys if they still hold exactly these versions.
    Reap { partition: u32, entries: Vec<KeyHash> },
    /// A client write forwarded to a replica of its key, which coordinates it.
    Coordinate {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        context: VersionVector,
        content: Content,
        w: usize,
        dw: usize,
        sloppy: bool,
        timeout_ms: u64,
    },
}

/// A key and the Merkle item hash of the version held for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyHash {
    #[serde(with = "serde_bytes")]
    pub bucket: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub hash: u64,
}

/// One key's version, in a batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Item {
    pub partition: u32,
    #[serde(with = "serde_bytes")]
    pub bucket: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub object: Object,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    Pong,
    Replica(ReplicaAnswer),
    Batch(Vec<ReplicaAnswer>),
    Hello {
        from: MemberInfo,
        params: ClusterParams,
        members: Vec<MemberInfo>,
    },
    /// Anti-entropy answers; `ready` is false while the replica rebuilds its trees.
    Tree {
        ready: bool,
        root: u64,
        branches: Vec<u64>,
    },
    Leaves {
        leaves: Vec<(u16, Vec<u64>)>,
    },
    /// The receiver's differing versions, and the keys it wants the sender's versions of.
    Sync {
        objects: Vec<Item>,
        want: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// For each entry of a `ReapCheck`, whether the exact version is held.
    Have(Vec<bool>),
    Reaped {
        count: usize,
    },
    /// A batch was merged and fsynced.
    MergedBatch {
        count: usize,
    },
    /// A forwarded write succeeded: the object as the coordinator left it.
    Written(Object),
    /// A forwarded write did not reach its quorum.
    QuorumFailed {
        required: usize,
        succeeded: usize,
        replicas: Vec<(String, String)>,
    },
    TooManySiblings {
        count: usize,
        limit: usize,
    },
    /// The request was understood but failed (a storage fault, mismatched cluster).
    Error(String),
}

/// Encodes a message behind the protocol version byte.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serialising plain data into a Vec cannot fail.
    postcard::to_extend(message, vec![PROTOCOL_VERSION]).unwrap_or_else(|_| unreachable!("postcard into Vec"))
}

/// Decodes a message, checking the version byte.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    match bytes.split_first() {
        None => Err("empty message".into()),
        Some((&PROTOCOL_VERSION, rest)) => match postcard::take_from_bytes(rest) {
            Ok((message, [])) => Ok(message),
            Ok((_, trailing)) => Err(format!("{} bytes after the message", trailing.len())),
            Err(e) => Err(format!("undecodable message: {e}")),
        },
        Some((v, _)) => Err(format!("protocol version {v}, this node speaks {PROTOCOL_VERSION}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let req =
            Request::Replica(ReplicaCall::Get { partition: 3, bucket: b"b".to_vec(), key: vec![0, 255] });
        let bytes = encode(&req);
        assert!(matches!(
            decode::<Request>(&bytes),
            Ok(Request::Replica(ReplicaCall::Get { partition: 3, .. }))
        ));
        // A deeply nested or endless message is refused, not a stack overflow.
        assert!(decode::<Request>(&[PROTOCOL_VERSION; 100_000]).is_err());
        assert!(decode::<Request>(&[]).is_err());
        assert!(decode::<Request>(&[9, 1, 2]).is_err());
        assert!(decode::<Request>(&[PROTOCOL_VERSION, 200, 200, 200]).is_err());
        let mut truncated = bytes.clone();
        truncated.truncate(bytes.len() - 1);
        assert!(decode::<Request>(&truncated).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode::<Request>(&trailing).is_err());
    }
}
