//! The internode protocol: postcard messages behind a version byte, one request and one
//! response per HTTP POST to `/rpc` on the peer listener.
//!
//! A body is `PROTOCOL_VERSION ‖ postcard(message)`. A receiver rejects other versions
//! and undecodable bodies with a typed error; it never panics on them.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use quorumkv_ring::NodeId;
use serde::{Deserialize, Serialize};

use quorumkv_storage::{Content, Object, VersionVector};

use crate::error::WireError;
use crate::key::Key;
use crate::layout::{ClusterParams, Layout, MemberInfo};
use crate::listing::{ListFrom, ListedPart};

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u8 = 5;

/// An object that one write sends to several replicas: encoded at most once, the same
/// bytes going into every message that carries it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SharedObject(Arc<(Object, OnceLock<Bytes>)>);

impl SharedObject {
    pub fn new(object: Object) -> SharedObject {
        SharedObject(Arc::new((object, OnceLock::new())))
    }

    pub fn object(&self) -> &Object {
        &self.0.0
    }

    /// The postcard encoding of the object, made on first use.
    pub fn encoded(&self) -> &Bytes {
        self.0.1.get_or_init(|| {
            // Serialising plain data into a Vec cannot fail.
            Bytes::from(
                postcard::to_allocvec(&self.0.0).unwrap_or_else(|_| unreachable!("postcard into Vec")),
            )
        })
    }
}

impl PartialEq for SharedObject {
    fn eq(&self, other: &SharedObject) -> bool {
        self.object() == other.object()
    }
}

impl Serialize for SharedObject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.encoded())
    }
}

impl<'de> Deserialize<'de> for SharedObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SharedObject, D::Error> {
        let bytes = Bytes::deserialize(d)?;
        let object: Object = postcard::from_bytes(&bytes).map_err(serde::de::Error::custom)?;
        Ok(SharedObject(Arc::new((object, OnceLock::from(bytes)))))
    }
}

/// What a node says of itself and its layout, greeting another or answering.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Greeting {
    pub from: MemberInfo,
    pub params: ClusterParams,
    /// The sender's layout version and digest (0, 0 without one).
    pub version: u64,
    pub digest: u64,
    /// The layout itself, sent only when the receiver may not have it (it is unknown, or
    /// its last word was an older version).
    pub layout: Option<Layout>,
    /// The highest layout version the sender has finished syncing (the previous layout
    /// is retired once every member has synced the current one).
    pub synced: u64,
}

/// A call on one replica of one key: the hot path, coalesced into batches under load.
/// A separate type from [`Request`] so a batch cannot nest (no recursion to exhaust the
/// stack when decoding hostile bytes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReplicaCall {
    /// Reads this replica's version of a key (with the hints it keeps for the key's
    /// primaries, when it is a fallback).
    Get { key: Key },
    /// Merges a version into this replica (replication, read repair); `durable` asks for
    /// an fsync before the answer.
    Merge {
        key: Key,
        object: SharedObject,
        durable: bool,
        /// Set when the receiver is a fallback keeping the copy for this replica: it stores
        /// a hint instead of taking the key into its own data.
        hint_for: Option<NodeId>,
        /// When the coordinator made the newest version in `object` (milliseconds since
        /// the epoch, its clock). A hint kept from this copy counts its age from here,
        /// never from when the copy arrived: a copy that arrives late must not outlive a
        /// delete that followed its version (see docs/DESIGN.md, decision 7).
        made_at_ms: u64,
    },
}

impl ReplicaCall {
    pub fn key(&self) -> &Key {
        match self {
            ReplicaCall::Get { key } | ReplicaCall::Merge { key, .. } => key,
        }
    }
}

/// The answer to a [`ReplicaCall`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReplicaAnswer {
    /// The replica's version, if it holds one.
    Object(Option<Object>),
    /// A merge was applied (and fsynced if `durable`).
    Merged {
        durable: bool,
    },
    /// The receiver is not a replica of the key under its layout (of this version): it
    /// kept a merge as hints for the owners, and serves a read only from such hints.
    NotOwner {
        layout_version: u64,
    },
    Failed(WireError),
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
    /// Gossip: the sender and its layout (see [`Greeting`]).
    Hello(Greeting),
    /// Hints delivered to the replica they were kept for (or anti-entropy's versions for
    /// a peer): merged into its data, fsynced, then acknowledged as a whole.
    MergeBatch { items: Vec<AgedItem> },
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
    /// Key listing: up to `limit` keys of `bucket` starting with `prefix` from each of
    /// `parts` (see [`crate::listing`]), answered by `Response::Listed` in the same order.
    ListKeys { bucket: Bytes, prefix: Bytes, parts: Vec<ListFrom>, limit: u32 },
    /// A client write forwarded to a replica of its key, which coordinates it.
    Coordinate {
        key: Key,
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
    pub key: Key,
    pub hash: u64,
}

/// One key's version, in a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub key: Key,
    pub object: Object,
}

/// One key's versions in a `MergeBatch`, with their age as a hint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgedItem {
    pub key: Key,
    pub object: Object,
    /// When the oldest of these versions was first kept as a hint (milliseconds since the
    /// epoch, on the sender's clock); `None` for stored data, whose age is unknown. A
    /// receiver that keeps the versions as a hint for the key's owners keeps this age.
    pub kept_since_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    Pong,
    Replica(ReplicaAnswer),
    Batch(Vec<ReplicaAnswer>),
    Hello(Box<Greeting>),
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
        want: Vec<Key>,
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
    /// The chunks of a `ListKeys`, one per partition asked, in its order.
    Listed(Vec<ListedPart>),
    /// The request was understood but failed (a quorum, a storage fault, bad input).
    Failed(WireError),
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
    fn a_shared_object_is_encoded_once_and_decodes_to_itself() {
        let mut o = Object::new();
        o.update(&VersionVector::new(), quorumkv_storage::Actor(1), Content::value("text/plain", "v"))
            .expect("update");
        let shared = SharedObject::new(o.clone());
        let first = shared.encoded().as_ptr();
        let key = Key::new(64, Bytes::from_static(b"b"), Bytes::from_static(b"k")).expect("key");
        let call = |n: &str| ReplicaCall::Merge {
            key: key.clone(),
            object: shared.clone(),
            durable: false,
            hint_for: Some(NodeId::from(n)),
            made_at_ms: 1,
        };
        let batch = encode(&Request::Batch(vec![call("a"), call("b")]));
        assert_eq!(shared.encoded().as_ptr(), first, "every message reuses the one encoding");
        let Ok(Request::Batch(calls)) = decode::<Request>(&batch) else { panic!("decodes") };
        for c in calls {
            let ReplicaCall::Merge { object, .. } = c else { panic!("a merge") };
            assert_eq!(object.object(), &o);
        }
    }

    #[test]
    fn round_trip_and_garbage() {
        let key = Key::new(64, Bytes::from_static(b"b"), Bytes::from_static(&[0, 255])).expect("key");
        let req = Request::Replica(ReplicaCall::Get { key: key.clone() });
        let bytes = encode(&req);
        assert!(
            matches!(decode::<Request>(&bytes), Ok(Request::Replica(ReplicaCall::Get { key: k })) if k == key)
        );
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

    /// Valid messages of every kind a peer sends most, to mutate.
    fn samples() -> Vec<Vec<u8>> {
        let mut o = Object::new();
        o.update(&VersionVector::new(), quorumkv_storage::Actor(1), Content::value("text/plain", "v"))
            .expect("update");
        let key = Key::new(64, Bytes::from_static(b"bucket"), Bytes::from_static(b"key")).expect("key");
        let merge = ReplicaCall::Merge {
            key: key.clone(),
            object: SharedObject::new(o.clone()),
            durable: true,
            hint_for: Some(NodeId::from("n2")),
            made_at_ms: 1_700_000_000_000,
        };
        vec![
            encode(&Request::Replica(merge.clone())),
            encode(&Request::Batch(vec![merge, ReplicaCall::Get { key: key.clone() }])),
            encode(&Request::MergeBatch {
                items: vec![AgedItem { key: key.clone(), object: o.clone(), kept_since_ms: Some(7) }],
            }),
            encode(&Request::SyncLeaves {
                partition: 3,
                leaves: vec![1, 2],
                entries: vec![KeyHash { key, hash: 9 }],
            }),
            encode(&Response::Replica(ReplicaAnswer::Object(Some(o.clone())))),
            encode(&Request::ListKeys {
                bucket: Bytes::from_static(b"bucket"),
                prefix: Bytes::from_static(b"k"),
                parts: vec![ListFrom { partition: 3, after: Some(Bytes::from_static(b"key")) }],
                limit: 100,
            }),
            encode(&Response::Listed(vec![ListedPart::Keys {
                keys: vec![crate::listing::ListedKey { key: Bytes::from_static(b"key"), shape: o.shape() }],
                more: true,
            }])),
        ]
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024)) {
            let _ = decode::<Request>(&bytes);
            let _ = decode::<Response>(&bytes);
            let mut versioned = vec![PROTOCOL_VERSION];
            versioned.extend_from_slice(&bytes);
            let _ = decode::<Request>(&versioned);
            let _ = decode::<Response>(&versioned);
        }

        /// A mutated message is refused, or decodes to names that pass the same checks a
        /// client's do (and objects in canonical form: the storage crate checks those).
        #[test]
        fn mutated_messages_are_refused_or_valid(
            which in 0usize..7,
            edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 1..4),
        ) {
            let mut bytes = samples().swap_remove(which);
            for (pos, byte) in edits {
                let i = 1 + pos.index(bytes.len() - 1);
                bytes[i] = byte;
            }
            let keys: Vec<Key> = match decode::<Request>(&bytes) {
                Ok(Request::Replica(call)) => vec![call.key().clone()],
                Ok(Request::Batch(calls)) => calls.iter().map(|c| c.key().clone()).collect(),
                Ok(Request::MergeBatch { items }) => items.into_iter().map(|i| i.key).collect(),
                Ok(Request::SyncLeaves { entries, .. }) => entries.into_iter().map(|e| e.key).collect(),
                _ => Vec::new(),
            };
            for key in keys {
                proptest::prop_assert!(Key::new(64, key.bucket().clone(), key.key().clone()).is_ok(), "{key:?}");
            }
            let _ = decode::<Response>(&bytes);
        }
    }
}
