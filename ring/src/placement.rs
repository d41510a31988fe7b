//! Placement: the clockwise walk of every partition over a member set's
//! virtual tokens, the starting point of the claim (see [`crate::claim`]).
//!
//! Token positions come from `hashring` (pinned at `=0.3.6`): every member puts
//! `vnodes` virtual tokens on a `HashRing`, and `HashRing::get` finds the first
//! token clockwise from each partition's point. Two things keep this stable
//! across processes, platforms and compiler versions:
//!
//! - hashring hashes with SipHash-2-4 under fixed zero keys, and SipHash reads
//!   its input as little-endian words on every platform;
//! - the bytes it hashes come from `std::hash::Hash`, whose derived and
//!   built-in impls are *not* stable (`str` appends 0xff, slices prefix a
//!   native `usize` length). So [`VNode`] and [`PartitionPoint`] implement
//!   `Hash` by hand with exactly one `Hasher::write` of explicit bytes.
//!
//! hashring cannot walk past the first token: `get_with_replicas` clones the
//! whole ring on every call, counts one entry too many (and wraps onto the
//! first token when asked for exactly the ring's length) and repeats physical
//! nodes. So the walk itself runs here, on hashring's own token order, which
//! `HashRing::into_iter` yields sorted by position.

use std::hash::{Hash, Hasher};

use hashring::HashRing;

use crate::NodeId;

/// First byte of a virtual token's hashed bytes; keeps tokens and partition
/// points in separate domains.
const VNODE_TAG: u8 = b'V';
/// First byte of a partition point's hashed bytes.
const PARTITION_TAG: u8 = b'P';

/// One virtual token of a physical node.
///
/// Hashed bytes (frozen): `'V' ‖ index as u32 LE ‖ node id UTF-8 bytes`. The
/// fixed-width prefix makes the encoding injective without a length field.
#[derive(Clone, Copy, Debug)]
struct VNode<'a> {
    node: &'a NodeId,
    index: u32,
    /// Position of `node` in the sorted member list; not hashed, so a token's
    /// place never depends on who else is a member.
    member: usize,
}

impl Hash for VNode<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let name = self.node.as_str().as_bytes();
        let mut bytes = Vec::with_capacity(5 + name.len());
        bytes.push(VNODE_TAG);
        bytes.extend_from_slice(&self.index.to_le_bytes());
        bytes.extend_from_slice(name);
        state.write(&bytes);
    }
}

/// The ring position of a partition.
///
/// Hashed bytes (frozen): `'P' ‖ partition as u32 LE`.
#[derive(Clone, Copy, Debug)]
struct PartitionPoint(u32);

impl Hash for PartitionPoint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut bytes = [PARTITION_TAG, 0, 0, 0, 0];
        bytes[1..].copy_from_slice(&self.0.to_le_bytes());
        state.write(&bytes);
    }
}

/// The clockwise walk of every partition, flattened: entries
/// `p * members.len() .. (p + 1) * members.len()` are partition `p`'s walk,
/// every member's index into `members` exactly once, in clockwise order from
/// the partition's point.
///
/// `members` must be sorted, free of duplicates, and at most 2^16 long (the
/// indices are `u16`): tokens are added in that order, and hashring's stable
/// sort keeps it among tokens that collide on a position, so the result
/// depends on the member *set* only.
pub(crate) fn walk_table(members: &[NodeId], partitions: u32, vnodes: u32) -> Vec<u16> {
    let per_member = vnodes as usize;
    let tokens: Vec<VNode<'_>> = members
        .iter()
        .enumerate()
        .flat_map(|(member, node)| (0..vnodes).map(move |index| VNode { node, index, member }))
        .collect();

    let mut ring = HashRing::new();
    ring.batch_add(tokens);

    // Tokens in clockwise order, and each token's place in that order.
    let order: Vec<VNode<'_>> = ring.clone().into_iter().collect();
    let mut place = vec![0usize; order.len()];
    for (at, token) in order.iter().enumerate() {
        place[token.member * per_member + token.index as usize] = at;
    }

    let mut table = Vec::with_capacity(partitions as usize * members.len());
    let mut seen = vec![false; members.len()];
    for partition in 0..partitions {
        let start = ring
            .get(&PartitionPoint(partition))
            .map_or(0, |token| place[token.member * per_member + token.index as usize]);
        seen.fill(false);
        let mut found = 0;
        for token in order[start..].iter().chain(&order[..start]) {
            if !seen[token.member] {
                seen[token.member] = true;
                // The caller keeps members.len() <= 2^16, so the index fits.
                table.push(token.member as u16);
                found += 1;
                if found == members.len() {
                    break;
                }
            }
        }
    }
    table
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// Records every call a `Hash` impl makes, to pin the exact bytes.
    #[derive(Default)]
    struct Recorder(Vec<Vec<u8>>);

    impl Hasher for Recorder {
        fn write(&mut self, bytes: &[u8]) {
            self.0.push(bytes.to_vec());
        }
        fn finish(&self) -> u64 {
            0
        }
    }

    #[test]
    fn vnode_hashes_one_explicit_byte_string() {
        let node = NodeId::from("node-1");
        let mut recorder = Recorder::default();
        VNode { node: &node, index: 0x0102_0304, member: 7 }.hash(&mut recorder);
        assert_eq!(recorder.0, [b"V\x04\x03\x02\x01node-1".to_vec()]);
    }

    #[test]
    fn partition_point_hashes_one_explicit_byte_string() {
        let mut recorder = Recorder::default();
        PartitionPoint(0x0a0b_0c0d).hash(&mut recorder);
        assert_eq!(recorder.0, [b"P\x0d\x0c\x0b\x0a".to_vec()]);
    }

    #[test]
    fn every_partition_lists_every_member_once() {
        let members: Vec<NodeId> = ["a", "b", "c", "d"].map(NodeId::from).to_vec();
        let table = walk_table(&members, 16, 1);
        assert_eq!(table.len(), 16 * 4);
        for list in table.chunks(4) {
            let mut sorted = list.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3]);
        }
    }
}
