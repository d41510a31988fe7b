//! The cluster layout: the stored, versioned answer to "who holds what".
//!
//! A layout is a [`Ring`] (its version, N, the partition count, the members and every
//! partition's preference list, built by the ring crate) plus where each member listens.
//! Every node keeps its layout on disk and loads it before it serves; layouts spread by
//! gossip, the higher version winning. Only an operator's committed change makes a new
//! version; whom a node can reach never changes placement (that is the failure
//! detector's business, and sloppy quorum's).
//!
//! The first layout of a new cluster is made by each node once it has met every seed
//! and none of them had a layout: the members are the node and its seeds, so nodes
//! started with the same seed list make the same version 1.

use std::collections::BTreeMap;

use quorumkv_ring::{MemberSpec, NodeId, Ring, RingParams};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What a node says about itself when greeting another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub node_id: NodeId,
    pub incarnation: u64,
    /// Where peers reach it.
    pub peer_addr: String,
    /// Where clients reach it.
    pub api_addr: String,
    /// Its weight in placement: its share of the partitions is proportional to it.
    pub capacity: u32,
    /// Its failure domain (rack, data centre): replicas spread over zones first.
    pub zone: Option<String>,
}

impl MemberInfo {
    /// The member as placement sees it.
    pub fn spec(&self) -> MemberSpec {
        MemberSpec::new(self.node_id.clone(), self.capacity, self.zone.clone())
    }
}

/// Cluster-wide parameters every member must share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterParams {
    pub partitions: u32,
    pub replicas: usize,
    pub vnodes: u32,
}

/// Where a member listens, and which incarnation of it (which data directory) the layout
/// was made with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    pub peer_addr: String,
    pub api_addr: String,
    /// 0 in layouts stored before it was recorded: unknown.
    pub incarnation: u64,
}

/// [`Addresses`] as layouts stored before the incarnation was recorded hold them.
#[derive(Deserialize)]
struct LegacyAddresses {
    peer_addr: String,
    api_addr: String,
}

/// One operator change, staged until a commit makes the next version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Change {
    /// A running node (that has greeted a member) becomes a member.
    Join { node: MemberInfo },
    /// A running member hands everything off and leaves.
    Leave { node: NodeId },
    /// A dead member is dropped; its partitions are rebuilt from the other replicas.
    Remove { node: NodeId },
    /// A new node takes a member's place: exactly its partitions move, to the new node.
    Replace { old: NodeId, new: MemberInfo },
}

impl Addresses {
    fn of(m: &MemberInfo) -> Addresses {
        Addresses { peer_addr: m.peer_addr.clone(), api_addr: m.api_addr.clone(), incarnation: m.incarnation }
    }
}

/// One version of the cluster's layout. Deserialising re-validates the ring (see
/// `quorumkv_ring::Ring`) and checks that every member has addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LayoutRepr")]
pub struct Layout {
    ring: Ring,
    addresses: BTreeMap<NodeId, Addresses>,
}

#[derive(Deserialize)]
struct LayoutRepr {
    ring: Ring,
    addresses: BTreeMap<NodeId, Addresses>,
}

impl TryFrom<LayoutRepr> for Layout {
    type Error = String;

    fn try_from(r: LayoutRepr) -> Result<Layout, String> {
        let ids: Vec<&NodeId> = r.addresses.keys().collect();
        let members: Vec<&NodeId> = r.ring.members().iter().collect();
        if ids != members {
            return Err("a layout's addresses must name exactly its members".into());
        }
        Ok(Layout { ring: r.ring, addresses: r.addresses })
    }
}

impl Layout {
    /// Version 1 of a new cluster with `members`.
    ///
    /// # Errors
    /// Invalid parameters or no members.
    pub fn first(params: ClusterParams, members: &[MemberInfo]) -> Result<Layout, Error> {
        let ring_params =
            RingParams { partitions: params.partitions, replicas: params.replicas, vnodes: params.vnodes };
        let ring = Ring::new(ring_params, 1, members.iter().map(MemberInfo::spec))
            .map_err(|e| Error::bad("invalid_layout", e.to_string()))?;
        let addresses = members.iter().map(|m| (m.node_id.clone(), Addresses::of(m))).collect();
        Ok(Layout { ring, addresses })
    }

    pub fn version(&self) -> u64 {
        self.ring.version()
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    pub fn params(&self) -> ClusterParams {
        let p = self.ring.params();
        ClusterParams { partitions: p.partitions, replicas: p.replicas, vnodes: p.vnodes }
    }

    pub fn is_member(&self, node: &NodeId) -> bool {
        self.addresses.contains_key(node)
    }

    pub fn addresses(&self) -> &BTreeMap<NodeId, Addresses> {
        &self.addresses
    }

    /// The next version: `changes` applied in order.
    ///
    /// # Errors
    /// A change that names a node that is not (or already is) a member, or a result with
    /// fewer than N members.
    pub fn apply(&self, changes: &[Change]) -> Result<Layout, Error> {
        let version = self.version() + 1;
        let n = self.ring.params().replicas;
        let mut ring = self.ring.clone();
        let mut addresses = self.addresses.clone();
        let bad = |e: quorumkv_ring::RingError| Error::bad("invalid_layout_change", e.to_string());
        for change in changes {
            match change {
                Change::Join { node } => {
                    if addresses.contains_key(&node.node_id) {
                        return Err(Error::bad(
                            "invalid_layout_change",
                            format!("`{}` is a member already", node.node_id),
                        ));
                    }
                    ring = ring.with_member(node.spec(), version).map_err(bad)?;
                    addresses.insert(node.node_id.clone(), Addresses::of(node));
                }
                Change::Leave { node } | Change::Remove { node } => {
                    if addresses.remove(node).is_none() {
                        return Err(Error::bad("invalid_layout_change", format!("`{node}` is not a member")));
                    }
                    ring = ring.without_member(node, version).map_err(bad)?;
                }
                Change::Replace { old, new } => {
                    if addresses.remove(old).is_none() {
                        return Err(Error::bad("invalid_layout_change", format!("`{old}` is not a member")));
                    }
                    ring = ring.with_replacement(old, new.spec(), version).map_err(bad)?;
                    addresses.insert(new.node_id.clone(), Addresses::of(new));
                }
            }
        }
        if ring.members().len() < n {
            return Err(Error::bad(
                "too_few_members",
                format!(
                    "the change would leave {} member(s), fewer than N={n}: every key needs N distinct nodes",
                    ring.members().len()
                ),
            ));
        }
        if changes.is_empty() {
            return Err(Error::bad(
                "nothing_staged",
                "no change is staged: stage join, leave, remove or replace first",
            ));
        }
        Ok(Layout { ring, addresses })
    }

    /// The next version with nothing changed: what resolves a conflict, two layouts of
    /// one version, in favour of this one.
    pub fn superseding(&self) -> Layout {
        Layout { ring: self.ring.with_version(self.version() + 1), addresses: self.addresses.clone() }
    }

    /// A fingerprint of the whole layout: two layouts of one version must have the same.
    pub fn digest(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.encode())
    }

    pub fn encode(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Repr<'a> {
            ring: &'a Ring,
            addresses: &'a BTreeMap<NodeId, Addresses>,
        }
        // Serialising plain data into a Vec cannot fail.
        postcard::to_allocvec(&Repr { ring: &self.ring, addresses: &self.addresses })
            .unwrap_or_else(|_| unreachable!("postcard into Vec"))
    }

    /// Decodes a stored layout.
    ///
    /// # Errors
    /// Bytes that are not a valid layout.
    pub fn decode(bytes: &[u8]) -> Result<Layout, String> {
        postcard::from_bytes(bytes).or_else(|e| {
            #[derive(Deserialize)]
            struct Legacy {
                ring: Ring,
                addresses: BTreeMap<NodeId, LegacyAddresses>,
            }
            let old: Legacy = postcard::from_bytes(bytes).map_err(|_| e.to_string())?;
            let addresses = old
                .addresses
                .into_iter()
                .map(|(id, a)| {
                    (id, Addresses { peer_addr: a.peer_addr, api_addr: a.api_addr, incarnation: 0 })
                })
                .collect();
            Layout::try_from(LayoutRepr { ring: old.ring, addresses })
        })
    }

    /// Whether this layout was made with another data directory of `me` than the one of
    /// `incarnation`: the node lost the data the layout counts on it for.
    pub fn lost_by(&self, me: &NodeId, incarnation: u64) -> bool {
        self.addresses.get(me).is_some_and(|a| a.incarnation != 0 && a.incarnation != incarnation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str) -> MemberInfo {
        MemberInfo {
            node_id: NodeId::from(id),
            incarnation: 1,
            peer_addr: format!("{id}:1"),
            api_addr: format!("{id}:2"),
            capacity: 1,
            zone: None,
        }
    }

    #[test]
    fn the_first_layout_is_the_same_whoever_makes_it_and_round_trips() {
        let params = ClusterParams { partitions: 64, replicas: 3, vnodes: 64 };
        let a = Layout::first(params, &[member("a"), member("b"), member("c")]).expect("layout");
        let b = Layout::first(params, &[member("c"), member("a"), member("b")]).expect("layout");
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.version(), 1);
        let back = Layout::decode(&a.encode()).expect("decodes");
        assert_eq!(back, a);
        assert!(Layout::decode(&a.encode()[..10]).is_err());
    }

    #[test]
    fn a_layout_knows_which_data_directory_of_each_member_it_was_made_with() {
        let params = ClusterParams { partitions: 64, replicas: 3, vnodes: 64 };
        let layout = Layout::first(params, &[member("a"), member("b"), member("c")]).expect("layout");
        assert!(!layout.lost_by(&NodeId::from("a"), 1), "the same data directory");
        assert!(layout.lost_by(&NodeId::from("a"), 2), "a new data directory: the data is gone");
        assert!(!layout.lost_by(&NodeId::from("z"), 2), "not a member");
    }

    #[test]
    fn a_layout_stored_before_incarnations_were_recorded_still_loads() {
        #[derive(Serialize)]
        struct OldAddresses<'a> {
            peer_addr: &'a str,
            api_addr: &'a str,
        }
        #[derive(Serialize)]
        struct Old<'a> {
            ring: &'a Ring,
            addresses: BTreeMap<NodeId, OldAddresses<'a>>,
        }
        let params = ClusterParams { partitions: 64, replicas: 3, vnodes: 64 };
        let layout = Layout::first(params, &[member("a"), member("b"), member("c")]).expect("layout");
        let addresses = layout
            .addresses()
            .iter()
            .map(|(id, a)| (id.clone(), OldAddresses { peer_addr: &a.peer_addr, api_addr: &a.api_addr }))
            .collect();
        let bytes = postcard::to_allocvec(&Old { ring: layout.ring(), addresses }).expect("encode");
        let old = Layout::decode(&bytes).expect("an old layout loads");
        assert_eq!(old.ring(), layout.ring());
        assert!(old.addresses().values().all(|a| a.incarnation == 0));
        assert!(!old.lost_by(&NodeId::from("a"), 7), "an unknown incarnation is not a loss");
    }

    proptest::proptest! {
        /// A stored layout that was damaged is refused, or is a valid one (the ring
        /// re-validates its whole table).
        #[test]
        fn a_damaged_layout_is_refused_or_valid(
            edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 0..4),
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let _ = Layout::decode(&garbage);
            let params = ClusterParams { partitions: 16, replicas: 2, vnodes: 8 };
            let mut bytes = Layout::first(params, &[member("a"), member("b"), member("c")]).expect("layout").encode();
            for (pos, byte) in edits {
                let i = pos.index(bytes.len());
                bytes[i] = byte;
            }
            if let Ok(layout) = Layout::decode(&bytes) {
                let ring = layout.ring();
                for p in 0..ring.params().partitions {
                    let mut primaries = ring.primaries(p).to_vec();
                    primaries.sort();
                    primaries.dedup();
                    proptest::prop_assert_eq!(primaries.len(), ring.replicas());
                    proptest::prop_assert!(primaries.iter().all(|n| layout.is_member(n)));
                }
            }
        }
    }

    #[test]
    fn changes_make_the_next_version_and_bad_ones_are_refused() {
        let params = ClusterParams { partitions: 64, replicas: 3, vnodes: 64 };
        let v1 = Layout::first(params, &[member("a"), member("b"), member("c")]).expect("layout");
        let v2 = v1.apply(&[Change::Join { node: member("d") }]).expect("join");
        assert_eq!(v2.version(), 2);
        assert!(v2.is_member(&NodeId::from("d")));
        let moved = v1.ring().diff(v2.ring()).len();
        assert!(moved > 0 && moved < 64, "a join moves some partitions, not all: {moved}");
        let v3 = v2.apply(&[Change::Replace { old: NodeId::from("b"), new: member("e") }]).expect("replace");
        assert!(v3.is_member(&NodeId::from("e")) && !v3.is_member(&NodeId::from("b")));
        assert!(v2.apply(&[]).is_err(), "nothing staged");
        assert!(v2.apply(&[Change::Join { node: member("a") }]).is_err(), "a member already");
        assert!(v2.apply(&[Change::Leave { node: NodeId::from("x") }]).is_err(), "unknown");
        let two = [Change::Leave { node: NodeId::from("a") }, Change::Remove { node: NodeId::from("b") }];
        let e = v2.apply(&two).expect_err("fewer than N");
        assert!(e.to_string().contains("fewer than N=3"), "{e}");
    }
}
