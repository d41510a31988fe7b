//! Key placement for quorumkv.
//!
//! This crate answers one question for every node and client: which nodes
//! hold a key. A key's partition is the top `k` bits of a stable 64-bit hash
//! of `bucket ‖ 0x00 ‖ key` ([`key_hash`], frozen forever); a cluster has a
//! fixed number Q = 2^k of partitions (Dynamo's strategy 3). A [`Ring`] is one
//! version of the member set and its assignment: it computes, once, the
//! preference list of every partition (N distinct primaries, the first of
//! which leads the partition, then every other member as a fallback in
//! clockwise order), so the hot path is a hash, a shift and an index.
//! [`Ring::diff`] tells which partitions change hands between two versions.
//!
//! The crate is pure: no I/O, no async, no threads.
//!
//! # Balance: the claim
//!
//! Placement starts from a consistent-hash ring of virtual tokens
//! ([`RingParams::vnodes`] per node, placed with `hashring`): each
//! partition's clockwise walk orders every member. The walk alone leaves a
//! node's share to chance; at 64 partitions, 10 nodes had 12 to 28
//! primary slots each around a mean of 19.2, whatever the number of tokens. So, as
//! in Riak, a deterministic *claim* corrects the walk. With S members and
//! N' = min(N, S) replicas, a ring is *balanced* when
//!
//! - every member is a primary of `floor(Q·N'/S)` or `ceil(Q·N'/S)`
//!   partitions;
//! - every member leads `floor(Q/S)` or `ceil(Q/S)` partitions (chosen by
//!   reordering each partition's primaries, which moves no data) whenever the
//!   primaries allow it, which they did in every ring tested.
//!
//! Every ring from [`Ring::new`] is balanced, and a join keeps a ring
//! balanced. A leave keeps it balanced whenever the leaving node's slots alone
//! can; with the default parameters they always could in measurements, with
//! very few tokens per node they sometimes cannot (see
//! [`Ring::without_member`]).
//!
//! Members may carry a weight and a zone ([`MemberSpec`]): shares are then
//! proportional to the weights, and every partition's primaries span
//! `min(N', zones)` zones; zone spread wins where both cannot hold (see the
//! `claim` module). Bare [`NodeId`]s are members of weight 1 in one zone, for
//! which all of the above is exactly the unweighted rule.
//!
//! [`Ring::new`] is a pure function of the parameters and the member set: it
//! takes the walk's first N' members as primaries and moves the fewest slots
//! that balance them, each under-loaded member taking the partitions where it
//! comes earliest in the walk. [`Ring::with_member`] (a join) moves slots to
//! the new node only, from the most-loaded members: every other partition
//! keeps its primaries. [`Ring::without_member`] hands the leaving node's
//! slots to the least-loaded members: every partition it did not hold keeps
//! its primaries. Since these two depend on history, a ring's wire form
//! carries its assignment.
//!
//! # Layout
//!
//! - [`hash`] — the stable key hash and the key → partition mapping.
//! - [`ring`] — [`NodeId`], [`RingParams`], [`Ring`] (build, join, leave,
//!   wire form) and [`PartitionChange`].
//! - [`quorum`] — [`Quorum`]: `r` and `w` as clients spell them, resolved against
//!   N (one rule for the node, the client and the CLI).
//! - [`error`] — [`RingError`].
//! - `placement` (private) — the `hashring` tokens and the clockwise walk of
//!   every partition.
//! - `claim` (private) — the balanced claim: primaries and leaders for a new
//!   ring, a join and a leave.

mod claim;
pub mod error;
pub mod hash;
mod placement;
pub mod quorum;
pub mod ring;

pub use error::RingError;
pub use hash::{key_hash, key_partition, partition_of};
pub use quorum::{Quorum, QuorumError};
pub use ring::{
    MAX_MEMBERS, MAX_PARTITIONS, MAX_VNODES, MAX_WEIGHT, MAX_ZONE_LEN, MemberSpec, NodeId, PartitionChange,
    Ring, RingParams,
};
