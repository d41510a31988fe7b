//! Members, ring parameters, the ring of one version and the diff between two.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::claim::{self, Pool, Primaries, Walk};
use crate::error::RingError;
use crate::hash::key_partition;

/// Largest accepted partition count (2^16).
pub const MAX_PARTITIONS: u32 = 1 << 16;
/// Largest accepted number of virtual tokens per node; guards against a
/// configuration typo asking for billions of tokens.
pub const MAX_VNODES: u32 = 4096;
/// Largest accepted number of members (2^16): the wire form names members by
/// `u16` index.
pub const MAX_MEMBERS: usize = 1 << 16;
/// Largest accepted member weight.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// Longest accepted zone name, in bytes.
pub const MAX_ZONE_LEN: usize = 64;

/// The identity of a physical node, e.g. `"node-1"` or `"10.0.0.1:7071"`.
///
/// Ordered and compared by its string; its UTF-8 bytes decide where its
/// virtual tokens sit on the ring, so renaming a node moves its data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub String);

impl NodeId {
    /// The id as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl From<String> for NodeId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

/// A member as placement sees it: its id, its weight (capacity) and its zone.
///
/// A member's share of the partitions is proportional to its weight (use one
/// unit on every member, e.g. GiB of disk); replicas of a partition are
/// spread over as many zones as N allows (see the crate docs). Members
/// without a zone share one unnamed zone. A bare [`NodeId`] converts to a
/// member of weight 1 without a zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSpec {
    /// The member.
    pub id: NodeId,
    /// Its weight, `1..=MAX_WEIGHT`.
    pub weight: u32,
    /// Its zone (a rack, a data centre), 1 to [`MAX_ZONE_LEN`] bytes.
    pub zone: Option<String>,
}

impl MemberSpec {
    /// A member of `weight` in `zone`.
    #[must_use]
    pub fn new(id: impl Into<NodeId>, weight: u32, zone: Option<String>) -> MemberSpec {
        MemberSpec { id: id.into(), weight, zone }
    }

    fn check(&self) -> Result<(), RingError> {
        if self.weight == 0 || self.weight > MAX_WEIGHT {
            return Err(RingError::InvalidWeight { node: self.id.clone(), weight: self.weight });
        }
        if self.zone.as_ref().is_some_and(|z| z.is_empty() || z.len() > MAX_ZONE_LEN) {
            return Err(RingError::InvalidZone { node: self.id.clone() });
        }
        Ok(())
    }
}

impl From<NodeId> for MemberSpec {
    fn from(id: NodeId) -> Self {
        MemberSpec { id, weight: 1, zone: None }
    }
}

/// The shape of a ring, fixed when the cluster is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingParams {
    /// Number of partitions Q, a power of two in `1..=65536`. Changing it
    /// re-partitions every key.
    pub partitions: u32,
    /// Replicas per partition, N (at least 1). A ring with fewer members uses
    /// all of them: see [`Ring::replicas`].
    pub replicas: usize,
    /// Virtual tokens each node places on the hash ring, V, in `1..=4096`.
    pub vnodes: u32,
}

impl Default for RingParams {
    /// 64 partitions, 3 replicas, 256 virtual tokens per node.
    ///
    /// The claim balances the ring whatever V (see "Balance" in the crate
    /// docs); V decides how close to balanced the hashed walk already is, so
    /// how few slots the claim moves off it. 256 is where the walk's balance
    /// stopped improving in measurements with 3 to 10 nodes, at 64 partitions
    /// as at 1024; more tokens only cost build time.
    fn default() -> Self {
        Self { partitions: 64, replicas: 3, vnodes: 256 }
    }
}

impl RingParams {
    /// Checks the parameters.
    ///
    /// # Errors
    ///
    /// [`RingError::InvalidPartitions`] unless `partitions` is a power of two
    /// in `1..=65536`; [`RingError::InvalidReplicas`] if `replicas` is 0;
    /// [`RingError::InvalidVnodes`] unless `vnodes` is in `1..=4096`.
    pub fn validate(&self) -> Result<(), RingError> {
        if !self.partitions.is_power_of_two() || self.partitions > MAX_PARTITIONS {
            return Err(RingError::InvalidPartitions { partitions: self.partitions });
        }
        if self.replicas == 0 {
            return Err(RingError::InvalidReplicas { replicas: self.replicas });
        }
        if self.vnodes == 0 || self.vnodes > MAX_VNODES {
            return Err(RingError::InvalidVnodes { vnodes: self.vnodes });
        }
        Ok(())
    }
}

/// One ring version: its members and, for every partition, its preference
/// list.
///
/// Invariants, for every partition `p < partitions`:
/// - `preference_list(p)` holds every member exactly once;
/// - its first [`replicas()`](Ring::replicas) entries are the primaries,
///   distinct, in preference order: the first one leads (coordinates) the
///   partition; the rest of the list are the fallbacks, in clockwise order
///   from the partition's point;
/// - with `Q` partitions, `S` members and `N'` replicas, a *balanced* ring
///   makes every member a primary of `floor(Q·N'/S)` or `ceil(Q·N'/S)`
///   partitions and the leader of `floor(Q/S)` or `ceil(Q/S)`. A ring from
///   [`new`](Ring::new) is balanced, and so is one from
///   [`with_member`](Ring::with_member) on a balanced ring;
///   [`without_member`](Ring::without_member) keeps the balance whenever the
///   leaving node's slots alone can restore it (see there). The leader bound
///   holds whenever the primaries allow it, which they did in every ring
///   tested. The claim that achieves this is described in the crate docs.
///
/// [`new`](Ring::new) depends only on the parameters and the member *set*;
/// [`with_member`](Ring::with_member) and
/// [`without_member`](Ring::without_member) depend on the ring they start
/// from, so the same member set can have different rings with different
/// histories. Which of two rings is newer is decided by
/// [`version()`](Ring::version) alone (a higher version supersedes); equality
/// compares everything.
///
/// On the wire a ring is its version, parameters, members and every
/// partition's primaries (as indices into the members). Deserialization
/// re-validates all of it (see [`RingError`] for what it rejects) and rebuilds
/// the fallbacks, so a received ring always satisfies the structural
/// invariants above; it is not re-balanced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RingRepr", try_from = "RingRepr")]
pub struct Ring {
    version: u64,
    params: RingParams,
    /// Sorted, no duplicates, never empty, at most [`MAX_MEMBERS`].
    members: Vec<NodeId>,
    /// Each member's weight and zone, in member order.
    weights: Vec<u32>,
    zones: Vec<Option<String>>,
    /// Effective N: `min(params.replicas, members.len())`.
    replicas: usize,
    /// Every partition's primaries, `replicas` indices into `members` each.
    primaries: Primaries,
    /// `partitions * members.len()` entries: partition `p`'s preference list
    /// is `table[p * members.len()..][..members.len()]`.
    table: Vec<NodeId>,
}

/// What goes on the wire for a [`Ring`].
#[derive(Debug, Serialize, Deserialize)]
struct RingRepr {
    version: u64,
    params: RingParams,
    /// Sorted, no duplicates.
    members: Vec<NodeId>,
    /// Each member's weight, in member order.
    weights: Vec<u32>,
    /// Each member's zone, in member order.
    zones: Vec<Option<String>>,
    /// For every partition, its primaries in preference order, as indices
    /// into `members`.
    primaries: Vec<Vec<u16>>,
}

impl From<Ring> for RingRepr {
    fn from(ring: Ring) -> Self {
        let primaries = (0..ring.primaries.partitions()).map(|p| ring.primaries.row(p).to_vec()).collect();
        Self {
            version: ring.version,
            params: ring.params,
            members: ring.members,
            weights: ring.weights,
            zones: ring.zones,
            primaries,
        }
    }
}

impl TryFrom<RingRepr> for Ring {
    type Error = RingError;

    fn try_from(repr: RingRepr) -> Result<Self, RingError> {
        let RingRepr { version, params, members, weights, zones, primaries: rows } = repr;
        params.validate()?;
        if members.is_empty() {
            return Err(RingError::NoMembers);
        }
        if members.len() > MAX_MEMBERS {
            return Err(RingError::TooManyMembers { members: members.len() });
        }
        if !members.windows(2).all(|w| w[0] < w[1]) {
            return Err(RingError::UnsortedMembers);
        }
        if weights.len() != members.len() || zones.len() != members.len() {
            return Err(RingError::WrongMemberAttributes { members: members.len() });
        }
        let specs: Vec<MemberSpec> = members
            .into_iter()
            .zip(weights)
            .zip(zones)
            .map(|((id, weight), zone)| MemberSpec { id, weight, zone })
            .collect();
        for spec in &specs {
            spec.check()?;
        }
        if rows.len() != params.partitions as usize {
            return Err(RingError::WrongPartitionCount { expected: params.partitions, found: rows.len() });
        }
        let width = params.replicas.min(specs.len());
        // seen[m] == partition + 1 once m is met in that partition's row.
        let mut seen = vec![0u32; specs.len()];
        let mut slots = Vec::with_capacity(rows.len() * width);
        for (partition, row) in (0u32..).zip(&rows) {
            if row.len() != width {
                return Err(RingError::WrongReplicaCount { partition, expected: width, found: row.len() });
            }
            for &index in row {
                let Some(mark) = seen.get_mut(usize::from(index)) else {
                    return Err(RingError::UnknownMemberIndex { partition, index });
                };
                if *mark == partition + 1 {
                    return Err(RingError::DuplicatePrimary { partition, index });
                }
                *mark = partition + 1;
            }
            slots.extend_from_slice(row);
        }
        Ok(Ring::assemble(params, version, specs, Primaries::from_rows(width, slots)))
    }
}

impl Ring {
    /// Builds the balanced ring of `version` for a member set.
    ///
    /// Members are [`MemberSpec`]s or bare [`NodeId`]s (weight 1, no zone).
    /// The order of `members` does not matter and duplicates are ignored (the
    /// first spec of an id wins): the
    /// result is a pure function of the parameters and the member set, the
    /// same in every process. It starts from the clockwise walk of the
    /// hash ring and moves the fewest primary slots that balance it (see the
    /// crate docs). The whole partition → preference list table is computed
    /// here, once.
    ///
    /// # Errors
    ///
    /// The errors of [`RingParams::validate`], [`RingError::NoMembers`] if
    /// `members` is empty, [`RingError::TooManyMembers`] above
    /// [`MAX_MEMBERS`], [`RingError::InvalidWeight`] and
    /// [`RingError::InvalidZone`].
    pub fn new(
        params: RingParams,
        version: u64,
        members: impl IntoIterator<Item = impl Into<MemberSpec>>,
    ) -> Result<Ring, RingError> {
        params.validate()?;
        let mut specs: Vec<MemberSpec> = members.into_iter().map(Into::into).collect();
        specs.sort_by(|a, b| a.id.cmp(&b.id));
        specs.dedup_by(|later, first| later.id == first.id);
        if specs.is_empty() {
            return Err(RingError::NoMembers);
        }
        if specs.len() > MAX_MEMBERS {
            return Err(RingError::TooManyMembers { members: specs.len() });
        }
        for spec in &specs {
            spec.check()?;
        }
        let (walk, pool) = Ring::placement(params, &specs);
        let primaries = claim::balanced(&walk, &pool, params.replicas.min(specs.len()));
        Ok(Ring::assemble_with(params, version, specs, &walk, primaries))
    }

    /// The ring of `version` after `node` joins: the join operation.
    ///
    /// `node` takes primary slots, one per partition, from the most-loaded
    /// members, preferring the partitions where it comes earliest in the
    /// clockwise walk, until the primary counts are balanced (if `self` was).
    /// Only partitions whose primaries gain `node` change primaries: each of
    /// them has exactly one old primary replaced by `node` (or, while the ring
    /// has fewer members than replicas, `node` added). Other partitions keep
    /// their primaries; their order (who leads) changes only where the
    /// leaders cannot be balanced otherwise. Fallbacks are recomputed.
    ///
    /// If `node` is already a member, the result is `self` with the new
    /// version.
    ///
    /// # Errors
    ///
    /// [`RingError::TooManyMembers`] if the ring already has
    /// [`MAX_MEMBERS`]; [`RingError::InvalidWeight`] and
    /// [`RingError::InvalidZone`].
    pub fn with_member(&self, node: impl Into<MemberSpec>, version: u64) -> Result<Ring, RingError> {
        let node = node.into();
        let at = match self.members.binary_search(&node.id) {
            Ok(_) => return Ok(self.with_version(version)),
            Err(at) => at,
        };
        node.check()?;
        if self.members.len() >= MAX_MEMBERS {
            return Err(RingError::TooManyMembers { members: self.members.len() + 1 });
        }
        let mut specs = self.specs();
        specs.insert(at, node);
        // at < members.len() <= MAX_MEMBERS = 2^16.
        let joined = at as u16;
        let mut old = self.primaries.clone();
        old.renumber(|m| if m >= joined { m + 1 } else { m });
        let (walk, pool) = Ring::placement(self.params, &specs);
        let width = self.params.replicas.min(specs.len());
        let primaries = claim::join(&walk, &pool, &old, width, joined);
        Ok(Ring::assemble_with(self.params, version, specs, &walk, primaries))
    }

    /// The ring of `version` after `node` leaves.
    ///
    /// Each primary slot `node` held goes to a member not already in that
    /// partition, the least-loaded ones first. Only partitions `node` was a
    /// primary of change primaries, each by exactly that one (or, while the
    /// ring has no more members than replicas, by losing `node`). Other
    /// partitions keep their primaries; their order (who leads) changes only
    /// where the leaders cannot be balanced otherwise. Fallbacks are
    /// recomputed.
    ///
    /// If `self` is balanced, the result is balanced whenever some hand-over
    /// of `node`'s slots can make it so (the search is exact). That can fail
    /// when a member below its new share is already a primary of every
    /// partition `node` held; it never did in measurements with at least 64
    /// partitions and 64 tokens per node, and did for up to a quarter of the
    /// leaves with 1 token per node. Moving data of other partitions to fix it
    /// is left to an explicit rebalance, not done behind a leave.
    ///
    /// If `node` is not a member, the result is `self` with the new version.
    ///
    /// # Errors
    ///
    /// [`RingError::NoMembers`] if `node` is the only member.
    pub fn without_member(&self, node: &NodeId, version: u64) -> Result<Ring, RingError> {
        let Ok(at) = self.members.binary_search(node) else {
            return Ok(self.with_version(version));
        };
        if self.members.len() == 1 {
            return Err(RingError::NoMembers);
        }
        let mut specs = self.specs();
        specs.remove(at);
        // at < members.len() <= MAX_MEMBERS = 2^16.
        let left = at as u16;
        let (walk, pool) = Ring::placement(self.params, &specs);
        let width = self.params.replicas.min(specs.len());
        let primaries =
            claim::leave(&walk, &pool, &self.primaries, width, left, |m| if m > left { m - 1 } else { m });
        Ok(Ring::assemble_with(self.params, version, specs, &walk, primaries))
    }

    /// The ring of `version` after `new` takes `old`'s place: every partition `old` was a
    /// primary of has `new` there instead, in the same position; nothing else moves.
    /// Fallbacks are recomputed (they follow the walk, which depends on the names). `new`
    /// brings its own weight and zone, but the slots stay exactly `old`'s: a replacement
    /// in another zone, or of another weight, is the operator's choice.
    ///
    /// # Errors
    ///
    /// [`RingError::UnknownMember`] if `old` is not a member, [`RingError::AlreadyMember`]
    /// if `new` already is; [`RingError::InvalidWeight`] and [`RingError::InvalidZone`].
    pub fn with_replacement(
        &self,
        old: &NodeId,
        new: impl Into<MemberSpec>,
        version: u64,
    ) -> Result<Ring, RingError> {
        let new = new.into();
        let Ok(old_at) = self.members.binary_search(old) else {
            return Err(RingError::UnknownMember { node: old.clone() });
        };
        let Err(new_at) = self.members.binary_search(&new.id) else {
            return Err(RingError::AlreadyMember { node: new.id });
        };
        new.check()?;
        let mut specs = self.specs();
        specs.remove(old_at);
        let new_at = if new_at > old_at { new_at - 1 } else { new_at };
        specs.insert(new_at, new);
        // Indices shift between the two positions; `old` itself becomes `new`.
        let (old_at, new_at) = (old_at as u16, new_at as u16);
        let mut primaries = self.primaries.clone();
        primaries.renumber(|m| {
            if m == old_at {
                new_at
            } else if old_at < new_at && m > old_at && m <= new_at {
                m - 1
            } else if new_at < old_at && m >= new_at && m < old_at {
                m + 1
            } else {
                m
            }
        });
        Ok(Ring::assemble(self.params, version, specs, primaries))
    }

    /// Every member's spec, in member order.
    #[must_use]
    pub fn specs(&self) -> Vec<MemberSpec> {
        (0..self.members.len())
            .map(|m| MemberSpec {
                id: self.members[m].clone(),
                weight: self.weights[m],
                zone: self.zones[m].clone(),
            })
            .collect()
    }

    /// A member's weight; `None` for a stranger.
    #[must_use]
    pub fn weight(&self, node: &NodeId) -> Option<u32> {
        self.members.binary_search(node).ok().map(|m| self.weights[m])
    }

    /// A member's zone; `None` for a stranger or a member without one.
    #[must_use]
    pub fn zone(&self, node: &NodeId) -> Option<&str> {
        self.members.binary_search(node).ok().and_then(|m| self.zones[m].as_deref())
    }

    /// The walk and the claim's view of a sorted member set.
    fn placement(params: RingParams, specs: &[MemberSpec]) -> (Walk, Pool) {
        let ids: Vec<NodeId> = specs.iter().map(|s| s.id.clone()).collect();
        let walk = Walk::new(&ids, params.partitions, params.vnodes);
        let zones: Vec<&str> = specs.iter().map(|s| s.zone.as_deref().unwrap_or("")).collect();
        let pool = Pool::new(specs.iter().map(|s| s.weight).collect(), &zones);
        (walk, pool)
    }

    /// The same ring under another version (what a layout that supersedes a conflicting
    /// one of its own version carries).
    #[must_use]
    pub fn with_version(&self, version: u64) -> Ring {
        Ring { version, ..self.clone() }
    }

    /// The ring of an assignment: each partition's primaries, then the other
    /// members in walk order.
    fn assemble(params: RingParams, version: u64, specs: Vec<MemberSpec>, primaries: Primaries) -> Ring {
        let (walk, _) = Ring::placement(params, &specs);
        Ring::assemble_with(params, version, specs, &walk, primaries)
    }

    /// [`assemble`](Ring::assemble) with the walk already made.
    fn assemble_with(
        params: RingParams,
        version: u64,
        specs: Vec<MemberSpec>,
        walk: &Walk,
        primaries: Primaries,
    ) -> Ring {
        let mut members = Vec::with_capacity(specs.len());
        let mut weights = Vec::with_capacity(specs.len());
        let mut zones = Vec::with_capacity(specs.len());
        for spec in specs {
            members.push(spec.id);
            weights.push(spec.weight);
            zones.push(spec.zone);
        }
        let width = members.len();
        let mut table = Vec::with_capacity(primaries.partitions() * width);
        let mut is_primary = vec![false; width];
        for p in 0..primaries.partitions() {
            let row = primaries.row(p);
            for &m in row {
                is_primary[usize::from(m)] = true;
                table.push(members[usize::from(m)].clone());
            }
            for &m in walk.order(p) {
                if !is_primary[usize::from(m)] {
                    table.push(members[usize::from(m)].clone());
                }
            }
            for &m in row {
                is_primary[usize::from(m)] = false;
            }
        }
        Ring { version, params, replicas: primaries.width(), members, weights, zones, primaries, table }
    }

    /// The ring's version; a higher version supersedes a lower one.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The parameters the ring was built with.
    #[must_use]
    pub fn params(&self) -> RingParams {
        self.params
    }

    /// The members, sorted, without duplicates, never empty.
    #[must_use]
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// The effective replica count N: `min(params().replicas, members().len())`.
    #[must_use]
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// The partition of a key (a hash and a shift; see [`crate::key_partition`]).
    #[must_use]
    #[inline]
    pub fn partition(&self, bucket: &[u8], key: &[u8]) -> u32 {
        key_partition(bucket, key, self.params.partitions)
    }

    /// The whole preference list of a partition: every member exactly once;
    /// the first [`replicas()`](Ring::replicas) are the primaries in
    /// preference order (the first leads), the rest the fallbacks in the order
    /// to try them (clockwise from the partition's point).
    ///
    /// Empty for a partition out of range.
    #[must_use]
    pub fn preference_list(&self, partition: u32) -> &[NodeId] {
        if partition >= self.params.partitions {
            return &[];
        }
        let width = self.members.len();
        let start = partition as usize * width;
        self.table.get(start..start + width).unwrap_or(&[])
    }

    /// The N primaries of a partition, in preference order: the first is the
    /// partition's leader (its coordinator). Empty for a partition out of
    /// range.
    #[must_use]
    pub fn primaries(&self, partition: u32) -> &[NodeId] {
        let list = self.preference_list(partition);
        &list[..self.replicas.min(list.len())]
    }

    /// The fallbacks of a partition, in the order to try them. Empty for a
    /// partition out of range or when every member is a primary.
    #[must_use]
    pub fn fallbacks(&self, partition: u32) -> &[NodeId] {
        let list = self.preference_list(partition);
        &list[self.replicas.min(list.len())..]
    }

    /// The partitions for which `node` is a primary, ascending.
    #[must_use]
    pub fn partitions_of(&self, node: &NodeId) -> Vec<u32> {
        (0..self.params.partitions).filter(|&p| self.primaries(p).contains(node)).collect()
    }

    /// The partitions whose primary *set* differs between `self` (before) and
    /// `other` (after), ascending, each with both primary lists in preference
    /// order. A change of order alone among the same primaries is not a change.
    ///
    /// Rings with different partition counts place keys differently, so
    /// comparing them is meaningless; every partition index of either ring is
    /// compared anyway (a missing partition has no primaries).
    #[must_use]
    pub fn diff(&self, other: &Ring) -> Vec<PartitionChange> {
        let partitions = self.params.partitions.max(other.params.partitions);
        (0..partitions)
            .filter_map(|partition| {
                let before = self.primaries(partition);
                let after = other.primaries(partition);
                let same = before.len() == after.len() && before.iter().all(|n| after.contains(n));
                (!same).then(|| PartitionChange { partition, before: before.to_vec(), after: after.to_vec() })
            })
            .collect()
    }
}

/// A partition whose primaries change from one ring to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    /// The partition.
    pub partition: u32,
    /// Its primaries in the old ring, in preference order.
    pub before: Vec<NodeId>,
    /// Its primaries in the new ring, in preference order.
    pub after: Vec<NodeId>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names.iter().copied().map(NodeId::from).collect()
    }

    fn params(partitions: u32, replicas: usize, vnodes: u32) -> RingParams {
        RingParams { partitions, replicas, vnodes }
    }

    /// Checks every structural invariant documented on [`Ring`].
    fn check_invariants(ring: &Ring) -> Result<(), TestCaseError> {
        let n = ring.params().replicas.min(ring.members().len());
        prop_assert_eq!(ring.replicas(), n);
        prop_assert!(ring.members().windows(2).all(|w| w[0] < w[1]));
        for p in 0..ring.params().partitions {
            let list = ring.preference_list(p);
            let mut sorted = list.to_vec();
            sorted.sort();
            prop_assert_eq!(sorted.as_slice(), ring.members(), "partition {}", p);
            prop_assert_eq!(ring.primaries(p).len(), n);
            prop_assert_eq!(ring.primaries(p), &list[..n]);
            prop_assert_eq!(ring.fallbacks(p), &list[n..]);
        }
        Ok(())
    }

    /// Per-member counts of partitions where the member is the first primary,
    /// and where it is any primary.
    fn ownership(ring: &Ring) -> (Vec<usize>, Vec<usize>) {
        let members = ring.members();
        let mut first = vec![0; members.len()];
        let mut any = vec![0; members.len()];
        for p in 0..ring.params().partitions {
            for (rank, node) in ring.primaries(p).iter().enumerate() {
                let m = members.binary_search(node).unwrap();
                if rank == 0 {
                    first[m] += 1;
                }
                any[m] += 1;
            }
        }
        (first, any)
    }

    /// Whether every member is a primary of the floor or the ceiling of the
    /// mean number of partitions.
    fn primaries_balanced(ring: &Ring) -> bool {
        let members = ring.members().len();
        let total = ring.params().partitions as usize * ring.replicas();
        let (lo, hi) = (total / members, total.div_ceil(members));
        ownership(ring).1.iter().all(|c| (lo..=hi).contains(c))
    }

    /// Whether every member leads the floor or the ceiling of the mean
    /// number of partitions.
    fn leaders_balanced(ring: &Ring) -> bool {
        let members = ring.members().len();
        let partitions = ring.params().partitions as usize;
        let (lo, hi) = (partitions / members, partitions.div_ceil(members));
        ownership(ring).0.iter().all(|c| (lo..=hi).contains(c))
    }

    /// Checks the balance documented on [`Ring`], primaries and leaders.
    fn check_balanced(ring: &Ring) -> Result<(), TestCaseError> {
        let (first, any) = ownership(ring);
        prop_assert!(primaries_balanced(ring), "primary counts {:?} for {:?}", any, ring.members());
        prop_assert!(leaders_balanced(ring), "leader counts {:?} for {:?}", first, ring.members());
        Ok(())
    }

    /// Whether `node`'s primary slots in `ring` can be handed over, each to a
    /// member not already a primary of that partition, so that the primary
    /// counts of the remaining members balance. An oracle independent of the
    /// claim: a feasible flow with lower bounds (source → slot, 1; slot →
    /// eligible member, 1; member → sink, between what it lacks for the
    /// floor and what it may take up to the ceiling).
    fn handover_can_balance(ring: &Ring, node: &NodeId) -> bool {
        let rest: Vec<&NodeId> = ring.members().iter().filter(|m| *m != node).collect();
        let width = ring.params().replicas.min(rest.len());
        let total = ring.params().partitions as usize * width;
        let (lo, hi) = (total / rest.len(), total.div_ceil(rest.len()));
        let mut base = vec![0; rest.len()];
        let mut slots: Vec<Vec<usize>> = Vec::new();
        for p in 0..ring.params().partitions {
            let row = ring.primaries(p);
            for (m, member) in rest.iter().enumerate() {
                base[m] += usize::from(row.contains(member));
            }
            if row.contains(node) {
                slots.push((0..rest.len()).filter(|&m| !row.contains(rest[m])).collect());
            }
        }
        if width < ring.replicas() {
            // Nobody takes anything: `node` just leaves every partition.
            return base.iter().all(|b| (lo..=hi).contains(b));
        }
        if base.iter().any(|&b| b > hi) {
            return false;
        }
        // Nodes: 0 source, 1..=k slots, then members, sink, and the
        // super-source and super-sink of the lower-bound reduction.
        let k = slots.len();
        let member = |m: usize| 1 + k + m;
        let (source, sink) = (0, 1 + k + rest.len());
        let (super_source, super_sink) = (sink + 1, sink + 2);
        let mut flow = Flow::new(sink + 3);
        let mut required = 0;
        for (i, eligible) in slots.iter().enumerate() {
            // Every slot must be handed over: lower bound 1, upper bound 1.
            flow.edge(super_source, 1 + i, 1);
            flow.edge(source, super_sink, 1);
            required += 1;
            for &m in eligible {
                flow.edge(1 + i, member(m), 1);
            }
        }
        for (m, &b) in base.iter().enumerate() {
            let need = lo.saturating_sub(b);
            flow.edge(member(m), sink, hi - b - need);
            flow.edge(super_source, sink, need);
            flow.edge(member(m), super_sink, need);
            required += need;
        }
        flow.edge(sink, source, usize::MAX / 2);
        flow.max(super_source, super_sink) == required
    }

    /// A residual graph for [`handover_can_balance`]: augmenting paths found
    /// breadth first.
    struct Flow {
        /// (to, capacity left); edge `e ^ 1` is the reverse of edge `e`.
        edges: Vec<(usize, usize)>,
        from: Vec<Vec<usize>>,
    }

    impl Flow {
        fn new(nodes: usize) -> Flow {
            Flow { edges: Vec::new(), from: vec![Vec::new(); nodes] }
        }

        fn edge(&mut self, a: usize, b: usize, capacity: usize) {
            self.from[a].push(self.edges.len());
            self.edges.push((b, capacity));
            self.from[b].push(self.edges.len());
            self.edges.push((a, 0));
        }

        fn max(&mut self, source: usize, sink: usize) -> usize {
            let mut total = 0;
            loop {
                let mut via = vec![None; self.from.len()];
                let mut queue = std::collections::VecDeque::from([source]);
                while let Some(v) = queue.pop_front() {
                    for &e in &self.from[v] {
                        let (w, left) = self.edges[e];
                        if left > 0 && w != source && via[w].is_none() {
                            via[w] = Some(e);
                            queue.push_back(w);
                        }
                    }
                }
                if via[sink].is_none() {
                    return total;
                }
                let mut push = usize::MAX;
                let mut at = sink;
                while let Some(e) = via[at] {
                    push = push.min(self.edges[e].1);
                    at = self.edges[e ^ 1].0;
                }
                let mut at = sink;
                while let Some(e) = via[at] {
                    self.edges[e].1 -= push;
                    self.edges[e ^ 1].1 += push;
                    at = self.edges[e ^ 1].0;
                }
                total += push;
            }
        }
    }

    /// `before` → `after` changed primaries only where `node` joined (or, if
    /// `joined` is false, left), each by that one member, and `diff` reports
    /// exactly those partitions.
    fn check_moves_only(
        before: &Ring,
        after: &Ring,
        node: &NodeId,
        joined: bool,
    ) -> Result<(), TestCaseError> {
        let (old, new) = if joined { (before, after) } else { (after, before) };
        // Seen from the smaller ring `old` to the larger `new`, `node` joins.
        let grew = new.replicas() > old.replicas();
        let mut changed = Vec::new();
        for p in 0..before.params().partitions {
            let (o, n) = (old.primaries(p), new.primaries(p));
            let gone: Vec<&NodeId> = o.iter().filter(|m| !n.contains(m)).collect();
            let came: Vec<&NodeId> = n.iter().filter(|m| !o.contains(m)).collect();
            if came.is_empty() {
                prop_assert!(gone.is_empty(), "partition {}", p);
                continue;
            }
            changed.push(p);
            prop_assert_eq!(came, vec![node], "partition {}", p);
            prop_assert_eq!(gone.len(), usize::from(!grew), "partition {}", p);
        }
        if grew {
            prop_assert_eq!(changed.len(), before.params().partitions as usize);
        }
        let diff = before.diff(after);
        prop_assert_eq!(diff.iter().map(|c| c.partition).collect::<Vec<_>>(), changed);
        for change in diff {
            prop_assert_eq!(change.before.as_slice(), before.primaries(change.partition));
            prop_assert_eq!(change.after.as_slice(), after.primaries(change.partition));
        }
        Ok(())
    }

    #[test]
    fn golden_preference_lists() {
        // Frozen: a change here moves partitions in every existing cluster.
        // Refrozen when the balanced claim replaced the bare clockwise walk.
        // The walk (b c a, c b a, c b a, a c b, c b a, c a b, a b c, c b a)
        // made `a` a primary of 3 partitions and `c` of 7, where the fair
        // share is 5 or 6, and let `c` lead 5 of the 8. The claim moves two
        // slots to `a` (partition 0 from `c`, 1 from `b`) and evens the
        // leaders to 3, 2, 3; the fallbacks stay in walk order.
        let ring = Ring::new(params(8, 2, 16), 1, ids(&["a", "b", "c"])).unwrap();
        let golden: [[&str; 3]; 8] = [
            ["b", "a", "c"],
            ["a", "c", "b"],
            ["b", "c", "a"],
            ["a", "c", "b"],
            ["c", "b", "a"],
            ["c", "a", "b"],
            ["a", "b", "c"],
            ["c", "b", "a"],
        ];
        for (p, expected) in (0u32..).zip(golden) {
            assert_eq!(ring.preference_list(p), ids(&expected), "partition {p}");
            assert_eq!(ring.primaries(p), ids(&expected[..2]), "partition {p}");
            assert_eq!(ring.fallbacks(p), ids(&expected[2..]), "partition {p}");
        }
    }

    #[test]
    fn validate_names_the_broken_rule() {
        assert_eq!(params(1, 1, 1).validate(), Ok(()));
        assert_eq!(params(65536, 1, MAX_VNODES).validate(), Ok(()));
        for partitions in [0, 3, 96, 131_072] {
            assert_eq!(
                params(partitions, 3, 64).validate(),
                Err(RingError::InvalidPartitions { partitions })
            );
        }
        assert_eq!(params(64, 0, 64).validate(), Err(RingError::InvalidReplicas { replicas: 0 }));
        for vnodes in [0, MAX_VNODES + 1] {
            assert_eq!(params(64, 3, vnodes).validate(), Err(RingError::InvalidVnodes { vnodes }));
        }
        let message = params(64, 3, 0).validate().unwrap_err().to_string();
        assert!(message.contains("`vnodes` = 0"), "{message}");
        assert_eq!(RingParams::default().validate(), Ok(()));
    }

    #[test]
    fn new_rejects_bad_params_and_member_sets() {
        assert_eq!(
            Ring::new(params(5, 3, 64), 1, ids(&["a"])),
            Err(RingError::InvalidPartitions { partitions: 5 })
        );
        assert_eq!(Ring::new(RingParams::default(), 1, Vec::<NodeId>::new()), Err(RingError::NoMembers));
        let crowd = (0..=MAX_MEMBERS).map(|i| NodeId(i.to_string()));
        assert_eq!(
            Ring::new(RingParams::default(), 1, crowd),
            Err(RingError::TooManyMembers { members: MAX_MEMBERS + 1 })
        );
    }

    #[test]
    fn members_are_sorted_and_deduplicated() {
        let ring = Ring::new(RingParams::default(), 7, ids(&["c", "a", "b", "a", "c"])).unwrap();
        assert_eq!(ring.members(), ids(&["a", "b", "c"]));
        assert_eq!(ring.version(), 7);
        assert_eq!(ring.params(), RingParams::default());
        assert_eq!(ring.preference_list(0).len(), 3);
    }

    #[test]
    fn fewer_members_than_replicas_makes_everyone_primary() {
        let ring = Ring::new(RingParams::default(), 1, ids(&["x", "y"])).unwrap();
        assert_eq!(ring.replicas(), 2);
        for p in 0..64 {
            assert_eq!(ring.primaries(p).len(), 2);
            assert!(ring.fallbacks(p).is_empty());
        }
        assert_eq!(ring.partitions_of(&"x".into()), (0..64).collect::<Vec<_>>());
        // Each still leads half of the partitions.
        assert_eq!(ownership(&ring).0, [32, 32]);
    }

    #[test]
    fn out_of_range_partitions_have_no_nodes() {
        let ring = Ring::new(params(8, 2, 16), 1, ids(&["a", "b", "c"])).unwrap();
        for p in [8, 9, u32::MAX] {
            assert!(ring.preference_list(p).is_empty());
            assert!(ring.primaries(p).is_empty());
            assert!(ring.fallbacks(p).is_empty());
        }
    }

    #[test]
    fn partition_agrees_with_key_partition() {
        let ring = Ring::new(params(1024, 3, 16), 1, ids(&["a"])).unwrap();
        for key in [&b""[..], b"alice", b"bob", &[0xff; 300]] {
            assert_eq!(ring.partition(b"users", key), key_partition(b"users", key, 1024));
        }
    }

    #[test]
    fn partitions_of_lists_exactly_the_partitions_a_node_serves() {
        let ring = Ring::new(params(64, 3, 16), 1, ids(&["a", "b", "c", "d", "e"])).unwrap();
        let mut total = 0;
        for node in ring.members() {
            let mine = ring.partitions_of(node);
            for p in 0..64 {
                assert_eq!(mine.contains(&p), ring.primaries(p).contains(node));
            }
            total += mine.len();
        }
        assert_eq!(total, 64 * 3);
        assert!(ring.partitions_of(&"stranger".into()).is_empty());
    }

    #[test]
    fn diff_of_a_ring_with_itself_is_empty() {
        let a = Ring::new(params(64, 3, 16), 1, ids(&["a", "b", "c", "d"])).unwrap();
        let b = Ring::new(params(64, 3, 16), 2, ids(&["d", "c", "b", "a"])).unwrap();
        assert!(a.diff(&b).is_empty());
        assert_ne!(a, b, "versions differ");
    }

    #[test]
    fn diff_reports_the_leaving_nodes_partitions() {
        let before = Ring::new(params(64, 3, 16), 1, ids(&["a", "b", "c", "d", "e"])).unwrap();
        let d = NodeId::from("d");
        let after = before.without_member(&d, 2).unwrap();
        let changes = before.diff(&after);
        assert_eq!(changes.iter().map(|c| c.partition).collect::<Vec<_>>(), before.partitions_of(&d));
        for change in &changes {
            assert_eq!(change.before, before.primaries(change.partition));
            assert_eq!(change.after, after.primaries(change.partition));
            assert!(!change.after.contains(&d));
        }
    }

    #[test]
    fn diff_across_partition_counts_does_not_panic() {
        let small = Ring::new(params(8, 2, 16), 1, ids(&["a", "b", "c"])).unwrap();
        let large = Ring::new(params(16, 2, 16), 2, ids(&["a", "b", "c"])).unwrap();
        let changes = small.diff(&large);
        assert_eq!(changes.iter().filter(|c| c.partition >= 8).count(), 8);
        assert!(changes.iter().filter(|c| c.partition >= 8).all(|c| c.before.is_empty()));
    }

    #[test]
    fn joining_twice_or_leaving_as_a_stranger_only_bumps_the_version() {
        let ring = Ring::new(params(64, 3, 16), 1, ids(&["a", "b", "c", "d"])).unwrap();
        let again = ring.with_member(NodeId::from("b"), 2).unwrap();
        assert_eq!(again.version(), 2);
        assert!(ring.diff(&again).is_empty());
        assert_eq!(again.with_version(1), ring);
        let gone = ring.without_member(&"stranger".into(), 3).unwrap();
        assert_eq!(gone.with_version(1), ring);
    }

    #[test]
    fn the_last_member_cannot_leave() {
        let ring = Ring::new(params(8, 3, 16), 1, ids(&["a"])).unwrap();
        assert_eq!(ring.without_member(&"a".into(), 2), Err(RingError::NoMembers));
    }

    #[test]
    fn a_ring_grows_and_shrinks_one_node_at_a_time() {
        // 1 → 12 members and back, through the N' = S corner at 2 and 3.
        let names: Vec<NodeId> = (1..=12).map(|i| NodeId(format!("node-{i}"))).collect();
        let mut ring = Ring::new(RingParams::default(), 1, names[..1].to_vec()).unwrap();
        for (version, node) in (2..).zip(&names[1..]) {
            let next = ring.with_member(node.clone(), version).unwrap();
            check_invariants(&next).unwrap();
            check_balanced(&next).unwrap();
            check_moves_only(&ring, &next, node, true).unwrap();
            ring = next;
        }
        for (version, node) in (20..).zip(names[1..].iter().rev()) {
            let next = ring.without_member(node, version).unwrap();
            check_invariants(&next).unwrap();
            check_balanced(&next).unwrap();
            check_moves_only(&ring, &next, node, false).unwrap();
            ring = next;
        }
        assert_eq!(ring.members(), &names[..1]);
    }

    #[test]
    fn wire_form_carries_the_assignment() {
        fn serde_both<T: Serialize + serde::de::DeserializeOwned>() {}
        serde_both::<Ring>();
        serde_both::<RingParams>();
        serde_both::<NodeId>();
        serde_both::<PartitionChange>();

        // A ring with a history differs from the fresh ring of its members;
        // its wire form must bring back the history, not recompute it.
        let ring = Ring::new(params(16, 3, 32), 9, ids(&["a", "b", "c", "d"]))
            .unwrap()
            .with_member(NodeId::from("e"), 10)
            .unwrap();
        let fresh = Ring::new(params(16, 3, 32), 10, ring.members().to_vec()).unwrap();
        assert_ne!(ring, fresh, "pick members whose histories differ");
        let repr = RingRepr::from(ring.clone());
        assert_eq!(repr.members, ring.members());
        assert_eq!(repr.primaries.len(), 16);
        assert_eq!(Ring::try_from(repr), Ok(ring));
    }

    #[test]
    fn wire_form_rejects_bad_tables() {
        let ring = Ring::new(params(8, 2, 16), 1, ids(&["a", "b", "c"])).unwrap();
        let good = || RingRepr::from(ring.clone());
        let rejected = |change: &dyn Fn(&mut RingRepr)| {
            let mut repr = good();
            change(&mut repr);
            Ring::try_from(repr).unwrap_err()
        };

        assert_eq!(rejected(&|r| r.params.partitions = 3), RingError::InvalidPartitions { partitions: 3 });
        assert_eq!(
            rejected(&|r| r.params.partitions = 16),
            RingError::WrongPartitionCount { expected: 16, found: 8 }
        );
        assert_eq!(
            rejected(&|r| {
                r.primaries.pop();
            }),
            RingError::WrongPartitionCount { expected: 8, found: 7 }
        );
        assert_eq!(
            rejected(&|r| r.primaries[5].push(0)),
            RingError::WrongReplicaCount { partition: 5, expected: 2, found: 3 }
        );
        assert_eq!(
            rejected(&|r| r.params.replicas = 3),
            RingError::WrongReplicaCount { partition: 0, expected: 3, found: 2 }
        );
        assert_eq!(
            rejected(&|r| r.primaries[2] = vec![1, 1]),
            RingError::DuplicatePrimary { partition: 2, index: 1 }
        );
        assert_eq!(
            rejected(&|r| r.primaries[7][1] = 3),
            RingError::UnknownMemberIndex { partition: 7, index: 3 }
        );
        assert_eq!(
            rejected(&|r| r.primaries[0][0] = u16::MAX),
            RingError::UnknownMemberIndex { partition: 0, index: u16::MAX }
        );
        assert_eq!(rejected(&|r| r.members.swap(0, 1)), RingError::UnsortedMembers);
        assert_eq!(rejected(&|r| r.members[1] = r.members[0].clone()), RingError::UnsortedMembers);
        assert_eq!(rejected(&|r| r.members.clear()), RingError::NoMembers);

        // The same primaries in another order are a valid (if unbalanced)
        // ring: order is the leaders' business, not the validator's.
        let mut repr = good();
        repr.primaries[0].reverse();
        let swapped = Ring::try_from(repr).unwrap();
        check_invariants(&swapped).unwrap();
        assert_eq!(swapped.primaries(0)[0], ring.primaries(0)[1]);
        let message = rejected(&|r| r.primaries[2] = vec![1, 1]).to_string();
        assert!(message.contains("partition 2"), "{message}");
    }

    #[test]
    fn a_leave_that_cannot_balance_still_moves_only_the_leavers_slots() {
        // `c` is a primary of partition 0 only, next to `e`; `e` is a primary
        // of one partition, and after the leave the fair share is 2 each.
        // Only partition 0 may change, and `e` is already in it.
        let ring = Ring::new(params(4, 2, 2), 1, ids(&["a", "b", "c", "d", "e"])).unwrap();
        let c = NodeId::from("c");
        assert_eq!(ring.partitions_of(&c), [0]);
        assert_eq!(ring.primaries(0), ids(&["c", "e"]));
        assert_eq!(ring.partitions_of(&"e".into()).len(), 1);
        assert!(!handover_can_balance(&ring, &c));

        let after = ring.without_member(&c, 2).unwrap();
        check_invariants(&after).unwrap();
        check_moves_only(&ring, &after, &c, false).unwrap();
        assert_eq!(ownership(&after).1, [2, 3, 2, 1]);
        assert!(leaders_balanced(&after));
        // Other leavers' slots can be handed over evenly, and are.
        let a = NodeId::from("a");
        assert!(handover_can_balance(&ring, &a));
        assert!(primaries_balanced(&ring.without_member(&a, 2).unwrap()));
    }

    #[test]
    fn node_id_conversions_and_display() {
        let id = NodeId::from("10.0.0.1:7071");
        assert_eq!(id, NodeId::from(String::from("10.0.0.1:7071")));
        assert_eq!(id.as_str(), "10.0.0.1:7071");
        assert_eq!(id.to_string(), "10.0.0.1:7071");
    }

    /// The member sets the balance tests use: 3 to 10 nodes, named both ways
    /// operators name them.
    fn realistic_member_sets() -> Vec<Vec<NodeId>> {
        let mut sets = Vec::new();
        for size in 3..=10 {
            sets.push((1..=size).map(|i| NodeId(format!("node-{i}"))).collect());
            sets.push((1..=size).map(|i| NodeId(format!("10.0.0.{i}:7071"))).collect());
        }
        sets
    }

    #[test]
    fn default_rings_of_3_to_10_nodes_are_balanced() {
        for members in realistic_member_sets() {
            let ring = Ring::new(RingParams::default(), 1, members.clone()).unwrap();
            check_balanced(&ring).unwrap();
            // What operators were promised: within ±25% of the mean.
            let (first, any) = ownership(&ring);
            let mean = 64.0 * 3.0 / members.len() as f64;
            assert!(any.iter().all(|&c| (c as f64 - mean).abs() <= 0.25 * mean), "{members:?}: {any:?}");
            assert_eq!(first.iter().sum::<usize>(), 64);
        }
    }

    #[test]
    fn default_rings_stay_balanced_as_nodes_join_and_leave() {
        for members in realistic_member_sets() {
            let ring = Ring::new(RingParams::default(), 1, members.clone()).unwrap();
            let newcomer = NodeId(format!("{}-new", members[0]));
            let joined = ring.with_member(newcomer.clone(), 2).unwrap();
            check_balanced(&joined).unwrap();
            check_moves_only(&ring, &joined, &newcomer, true).unwrap();
            let left = ring.without_member(&members[1], 3).unwrap();
            check_balanced(&left).unwrap();
            check_moves_only(&ring, &left, &members[1], false).unwrap();
        }
    }

    fn node_names() -> impl Strategy<Value = Vec<NodeId>> {
        proptest::collection::vec("[a-z0-9.:-]{1,16}", 1..12)
            .prop_map(|names| names.into_iter().map(NodeId).collect())
    }

    fn ring_params() -> impl Strategy<Value = RingParams> {
        (0u32..=8, 1usize..=5, 1u32..=64).prop_map(|(k, replicas, vnodes)| RingParams {
            partitions: 1 << k,
            replicas,
            vnodes,
        })
    }

    /// A join (`true`) or a leave (`false`) of a name, or of the member at
    /// that position modulo the member count.
    fn changes() -> impl Strategy<Value = Vec<(bool, String, usize)>> {
        proptest::collection::vec((any::<bool>(), "[a-z0-9.:-]{1,16}", any::<usize>()), 1..8)
    }

    proptest! {
        #[test]
        fn every_ring_is_valid_and_balanced(params in ring_params(), members in node_names()) {
            let ring = Ring::new(params, 1, members).unwrap();
            check_invariants(&ring)?;
            check_balanced(&ring)?;
            let repr = RingRepr::from(ring.clone());
            prop_assert_eq!(Ring::try_from(repr), Ok(ring));
        }

        #[test]
        fn member_order_does_not_matter(
            params in ring_params(),
            (members, shuffled) in node_names()
                .prop_flat_map(|m| (Just(m.clone()), Just(m).prop_shuffle())),
        ) {
            let mut doubled = shuffled.clone();
            doubled.extend(shuffled);
            let a = Ring::new(params, 3, members).unwrap();
            let b = Ring::new(params, 3, doubled).unwrap();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn a_join_moves_only_what_the_newcomer_takes(
            params in ring_params(),
            members in node_names(),
            newcomer in "[a-z0-9.:-]{1,16}",
        ) {
            let newcomer = NodeId(newcomer);
            prop_assume!(!members.contains(&newcomer));
            let before = Ring::new(params, 1, members).unwrap();
            let after = before.with_member(newcomer.clone(), 2).unwrap();
            check_invariants(&after)?;
            check_balanced(&after)?;
            check_moves_only(&before, &after, &newcomer, true)?;
        }

        #[test]
        fn a_leave_moves_only_what_the_leaver_held(
            params in ring_params(),
            members in node_names(),
            pick in any::<usize>(),
        ) {
            // '~' is outside the name alphabet: at least two members.
            let second = NodeId(format!("{}~", members[0]));
            let before = Ring::new(params, 1, members.into_iter().chain([second])).unwrap();
            let leaver = before.members()[pick % before.members().len()].clone();
            let after = before.without_member(&leaver, 2).unwrap();
            check_invariants(&after)?;
            check_moves_only(&before, &after, &leaver, false)?;
            // Balanced exactly when some hand-over of the leaver's slots is.
            prop_assert_eq!(
                primaries_balanced(&after),
                handover_can_balance(&before, &leaver),
                "primary counts {:?}", ownership(&after).1
            );
            prop_assert!(leaders_balanced(&after), "leader counts {:?}", ownership(&after).0);
        }

        #[test]
        fn any_history_of_joins_and_leaves_stays_balanced(
            params in ring_params(),
            members in node_names(),
            history in changes(),
        ) {
            let mut ring = Ring::new(params, 1, members).unwrap();
            // Balance is promised only from a balanced ring, and a leave
            // keeps it only when some hand-over of the leaver's slots can.
            let mut balanced = true;
            for (version, (join, name, pick)) in (2..).zip(history) {
                let node = NodeId(name);
                let next = if join && !ring.members().contains(&node) {
                    let next = ring.with_member(node.clone(), version).unwrap();
                    check_moves_only(&ring, &next, &node, true)?;
                    if balanced {
                        prop_assert!(primaries_balanced(&next), "{:?}", ownership(&next).1);
                    }
                    next
                } else if ring.members().len() > 1 {
                    let leaver = ring.members()[pick % ring.members().len()].clone();
                    let next = ring.without_member(&leaver, version).unwrap();
                    check_moves_only(&ring, &next, &leaver, false)?;
                    if balanced {
                        prop_assert_eq!(
                            primaries_balanced(&next),
                            handover_can_balance(&ring, &leaver)
                        );
                    }
                    next
                } else {
                    continue;
                };
                check_invariants(&next)?;
                prop_assert!(leaders_balanced(&next), "{:?}", ownership(&next).0);
                balanced = balanced && primaries_balanced(&next);
                // The wire form keeps the history.
                prop_assert_eq!(Ring::try_from(RingRepr::from(next.clone())), Ok(next.clone()));
                ring = next;
            }
        }
    }

    #[test]
    fn a_replacement_takes_exactly_the_old_members_slots() {
        let params = RingParams { partitions: 64, replicas: 3, vnodes: 64 };
        let ring = Ring::new(params, 1, ["a", "c", "e", "g"].map(NodeId::from)).expect("ring");
        for new in ["b", "f", "z", "0"] {
            let replaced = ring.with_replacement(&NodeId::from("c"), NodeId::from(new), 2).expect("replace");
            assert_eq!(replaced.version(), 2);
            assert!(replaced.members().contains(&NodeId::from(new)));
            assert!(!replaced.members().contains(&NodeId::from("c")));
            for p in 0..64 {
                let before: Vec<&str> = ring.primaries(p).iter().map(NodeId::as_str).collect();
                let after: Vec<&str> = replaced.primaries(p).iter().map(NodeId::as_str).collect();
                let expected: Vec<&str> = before.iter().map(|n| if *n == "c" { new } else { n }).collect();
                assert_eq!(after, expected, "partition {p}");
            }
        }
        assert!(ring.with_replacement(&NodeId::from("x"), NodeId::from("y"), 2).is_err());
        assert!(ring.with_replacement(&NodeId::from("a"), NodeId::from("c"), 2).is_err());
    }
}
