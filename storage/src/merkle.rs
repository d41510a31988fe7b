//! Per-partition Merkle trees for anti-entropy, updated incrementally on every write.
//!
//! A key contributes `item_hash(key, record)`, a 64-bit xxh3 of its stored key and its
//! record bytes (the canonical encoding of its whole sibling set), to one leaf chosen by
//! a hash of the stored key. A leaf is the XOR of its keys' contributions, a branch the
//! XOR of its leaves, the root the XOR of its branches (Riak's Tictac AAE). XOR makes
//! every update a constant-time delta `old ^ new` applied to one leaf, one branch and the
//! root, with no re-read of stored data, and makes the result independent of the order
//! writes arrive in: two replicas holding the same objects have equal trees.
//!
//! Shape: `width` branches of `width` leaves. With the default width 32 (1,024 leaves)
//! and 64 partitions, a million keys put ~15 keys in a leaf: an exchange that finds one
//! differing key sends the root and 32 branch hashes (264 bytes), one branch's 32 leaf
//! hashes (256 bytes) and the ~15 keys of one leaf, whatever the total key count. Wider
//! trees shrink the last step and grow the middle one; 32 balances them for 10^4–10^5
//! keys per partition.
//!
//! Trees live in memory (8 KiB a partition) and are rebuilt from a snapshot scan at start
//! and periodically ([`crate::Store::rebuild_trees`]), which also catches records that
//! rotted on disk after they were written.

use std::collections::HashMap;

use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// Default branches per tree (and leaves per branch).
pub const DEFAULT_WIDTH: usize = 32;

/// What one key contributes to its leaf. 0 means absent.
pub fn item_hash(stored_key: &[u8], record: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&(stored_key.len() as u32).to_le_bytes());
    h.update(stored_key);
    h.update(record);
    h.digest()
}

/// The leaf a stored key falls in, for a tree of `width`² leaves.
pub fn leaf_of(stored_key: &[u8], width: usize) -> usize {
    (xxh3_64(stored_key) % (width * width) as u64) as usize
}

/// One partition's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    width: usize,
    leaves: Vec<u64>,
    branches: Vec<u64>,
    root: u64,
}

impl Tree {
    pub fn new(width: usize) -> Tree {
        Tree { width, leaves: vec![0; width * width], branches: vec![0; width], root: 0 }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// XORs `delta` into one leaf and its ancestors.
    pub fn apply(&mut self, leaf: usize, delta: u64) {
        if delta == 0 || leaf >= self.leaves.len() {
            return;
        }
        self.leaves[leaf] ^= delta;
        self.branches[leaf / self.width] ^= delta;
        self.root ^= delta;
    }

    /// XORs another tree of the same width into this one (applying its deltas).
    pub fn absorb(&mut self, other: &Tree) {
        for (leaf, &d) in other.leaves.iter().enumerate() {
            self.apply(leaf, d);
        }
    }

    pub fn root(&self) -> u64 {
        self.root
    }

    pub fn branches(&self) -> &[u64] {
        &self.branches
    }

    /// The leaves of branch `b` (empty if out of range).
    pub fn leaves_of(&self, b: usize) -> &[u64] {
        self.leaves.get(b * self.width..(b + 1) * self.width).unwrap_or(&[])
    }
}

/// Every partition's tree, with the deltas that arrive while a rebuild scans.
#[derive(Debug)]
pub(crate) struct Forest {
    width: usize,
    trees: HashMap<u32, Tree>,
    /// Set while a rebuild scans: writes land here and are absorbed into the scanned trees.
    pending: Option<HashMap<u32, Tree>>,
}

impl Forest {
    pub(crate) fn new(width: usize) -> Forest {
        Forest { width, trees: HashMap::new(), pending: None }
    }

    pub(crate) fn width(&self) -> usize {
        self.width
    }

    pub(crate) fn apply(&mut self, partition: u32, stored_key: &[u8], delta: u64) {
        if delta == 0 {
            return;
        }
        let width = self.width;
        let trees = self.pending.as_mut().unwrap_or(&mut self.trees);
        trees.entry(partition).or_insert_with(|| Tree::new(width)).apply(leaf_of(stored_key, width), delta);
    }

    pub(crate) fn is_building(&self) -> bool {
        self.pending.is_some()
    }

    pub(crate) fn start_rebuild(&mut self) {
        self.pending = Some(HashMap::new());
    }

    /// Installs freshly scanned trees plus the deltas that arrived during the scan.
    pub(crate) fn finish_rebuild(&mut self, mut scanned: HashMap<u32, Tree>) {
        let width = self.width;
        for (p, delta) in self.pending.take().unwrap_or_default() {
            scanned.entry(p).or_insert_with(|| Tree::new(width)).absorb(&delta);
        }
        self.trees = scanned;
    }

    pub(crate) fn tree(&self, partition: u32) -> Option<&Tree> {
        if self.is_building() {
            return None;
        }
        self.trees.get(&partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The tree of a set of items does not depend on the order they were added or on
        /// intermediate versions that were later replaced.
        #[test]
        fn trees_depend_only_on_the_final_items(items in proptest::collection::vec((any::<u16>(), any::<u32>()), 0..200), seed in any::<u64>()) {
            let mut a = Tree::new(8);
            let mut finals: HashMap<u16, u64> = HashMap::new();
            for (k, v) in &items {
                let key = k.to_le_bytes();
                let new = item_hash(&key, &v.to_le_bytes());
                let old = finals.insert(*k, new).unwrap_or(0);
                a.apply(leaf_of(&key, 8), old ^ new);
            }
            let mut order: Vec<_> = finals.iter().collect();
            order.sort_by_key(|(k, _)| (**k as u64).wrapping_mul(seed | 1));
            let mut b = Tree::new(8);
            for (k, h) in order {
                b.apply(leaf_of(&k.to_le_bytes(), 8), *h);
            }
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn one_changed_key_changes_one_leaf_one_branch_and_the_root() {
        let mut a = Tree::new(4);
        let mut b = Tree::new(4);
        for k in 0u32..100 {
            let key = k.to_le_bytes();
            let h = item_hash(&key, b"v1");
            a.apply(leaf_of(&key, 4), h);
            b.apply(leaf_of(&key, 4), h);
        }
        let key = 42u32.to_le_bytes();
        b.apply(leaf_of(&key, 4), item_hash(&key, b"v1") ^ item_hash(&key, b"v2"));
        assert_ne!(a.root(), b.root());
        let differing: Vec<usize> = (0..4).filter(|&i| a.branches()[i] != b.branches()[i]).collect();
        assert_eq!(differing, vec![leaf_of(&key, 4) / 4]);
        let leaves: Vec<usize> =
            (0..4).filter(|&i| a.leaves_of(differing[0])[i] != b.leaves_of(differing[0])[i]).collect();
        assert_eq!(leaves, vec![leaf_of(&key, 4) % 4]);
    }
}
