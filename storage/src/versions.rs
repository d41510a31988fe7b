//! Numbering versions: the one place a dot is made.
//!
//! The invariant (docs/DESIGN.md, "Versions are never issued twice"): no actor issues the
//! same dot twice, for any key, whatever the node lost. A dot `(actor, n)` in a version
//! vector claims every earlier dot of that actor for the key, so a coordinator may number
//! the next version of a key from what it holds only if it holds every version it ever
//! numbered for that key. Two rules keep that true:
//!
//! - **The floor, for what was deleted everywhere.** A reaped tombstone took the key's
//!   history with it on every replica. Before a replica forgets it, the [`Issuer`] raises
//!   its floor to the tombstone's counter for this node's actor, and every later dot is
//!   numbered above the floor. So a version written after the reap is never covered by a
//!   context token issued before it (Riak's KV679), and nothing live is covered by
//!   mistake: everything the reaped history held was deleted on every replica.
//! - **A new actor, for what may still live elsewhere.** When this node may have lost
//!   versions it numbered that other replicas still hold (a journal tail lost to an
//!   unclean stop, a record that rotted, a partition's data handed to its new owners, a
//!   restored directory that a peer's newer copy gives away), raising a counter would
//!   claim those versions and drop them on merge. Instead the node takes a new random
//!   epoch, hence a new actor that has numbered nothing anywhere: [`Issuer::lost`].
//!
//! The number of actors in a key's version vector is therefore bounded by the number of
//! epochs of the nodes that coordinated writes of it since it was last reaped: one per
//! node in steady state, one more per unclean stop, rotted record or regained partition
//! that was followed by a write of the key. No actor is ever pruned: an actor's entry is
//! what keeps the versions it superseded from coming back.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::causal::{Actor, Dot, VersionVector};

/// How this node's actor was chosen when the store started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartKind {
    /// A new data directory (or one that never numbered a version): a new actor.
    New,
    /// The last stop was clean (everything fsynced, nothing lost): the actor is kept.
    Clean,
    /// The last stop was not clean (a crash, kill -9, a power cut, or a directory copied
    /// while the node ran): writes that were never fsynced may be gone, so a new actor.
    Unclean,
}

/// Who numbers this node's versions, and from where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issuer {
    node_id: String,
    epoch: u64,
    actor: Actor,
    /// Every dot of `actor` is numbered above this (see the module comment).
    floor: u64,
    /// Whether `actor` may have numbered a version: only then can losing data lose one.
    issued: bool,
    /// Partitions where this node may have lost versions `actor` numbered (a rotted
    /// record, data handed to new owners, a peer ahead of us): the next version numbered
    /// in one of them is numbered by a new actor.
    lost_in: BTreeSet<u32>,
}

impl Issuer {
    /// The issuer of `node_id` in `epoch`, numbering above `floor`. `issued` says whether
    /// this epoch may already have numbered versions (a kept epoch has).
    pub fn new(node_id: &str, epoch: u64, floor: u64, issued: bool) -> Issuer {
        Issuer {
            node_id: node_id.to_owned(),
            epoch,
            actor: Actor::new(node_id, epoch),
            floor,
            issued,
            lost_in: BTreeSet::new(),
        }
    }

    /// An issuer for a bare `actor`, with no floor and nothing lost: numbering from an
    /// object's history and a context only ([`crate::Object::update`], for tests and tools).
    pub fn from_actor(actor: Actor) -> Issuer {
        Issuer { node_id: String::new(), epoch: 0, actor, floor: 0, issued: true, lost_in: BTreeSet::new() }
    }

    pub fn actor(&self) -> Actor {
        self.actor
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Whether the next version numbered in `partition` needs a new actor first
    /// ([`Issuer::lost`]): this node may have lost versions of it that it numbered.
    pub fn must_renew(&self, partition: u32) -> bool {
        self.lost_in.contains(&partition)
    }

    /// How many partitions wait for a new actor.
    pub fn pending_renewals(&self) -> usize {
        self.lost_in.len()
    }

    /// This node may have lost versions of `partition` that it numbered. Returns whether
    /// that changed anything (then the state must be stored).
    pub fn lost_partition(&mut self, partition: u32) -> bool {
        self.issued && self.lost_in.insert(partition)
    }

    /// The dot for the next version of a key whose stored history here is `local`,
    /// written by a client that had seen `context`. The caller renews the actor first
    /// where [`Issuer::must_renew`] says so.
    ///
    /// # Errors
    /// [`Error::BadContext`] when the counter cannot advance (a context at `u64::MAX`).
    pub fn next(&mut self, local: &VersionVector, context: &VersionVector) -> Result<Dot, Error> {
        let counter =
            local.get(self.actor).max(context.get(self.actor)).max(self.floor).checked_add(1).ok_or_else(
                || {
                    Error::BadContext(
                    "the context's counter for this node is at its maximum; no later version can follow it"
                        .into(),
                )
                },
            )?;
        self.issued = true;
        Ok(Dot { actor: self.actor, counter })
    }

    /// A tombstone whose history is `vv` is about to be forgotten here: raises the floor
    /// over its counter for this node's actor. Returns whether the floor moved (then it
    /// must be stored before the tombstone is removed).
    pub fn reaping(&mut self, vv: &VersionVector) -> bool {
        let counter = vv.get(self.actor);
        if counter > self.floor {
            self.floor = counter;
            return true;
        }
        false
    }

    /// This node may have lost versions it numbered: from now on it numbers as a new
    /// actor of epoch `fresh_epoch`. Returns whether it switched (an actor that never
    /// numbered anything cannot have lost a version, and is kept).
    pub fn lost(&mut self, fresh_epoch: u64) -> bool {
        if !self.issued {
            return false;
        }
        *self = Issuer::new(&self.node_id, fresh_epoch, 0, false);
        true
    }

    /// Whether a version arriving from another replica proves that this node lost some
    /// of its own: every version this actor numbers is stored here before any other
    /// replica sees it, so another replica can be ahead of us only if we lost something.
    pub fn proves_loss(&self, local: &VersionVector, incoming: &VersionVector) -> bool {
        incoming.get(self.actor) > local.get(self.actor).max(self.floor)
    }
}

/// The issuer's stored state, what a clean restart resumes from: `epoch ‖ floor ‖ the
/// partitions it lost versions in`, little-endian.
pub(crate) fn encode(issuer: &Issuer) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 4 * issuer.lost_in.len());
    out.extend_from_slice(&issuer.epoch.to_le_bytes());
    out.extend_from_slice(&issuer.floor.to_le_bytes());
    for p in &issuer.lost_in {
        out.extend_from_slice(&p.to_le_bytes());
    }
    out
}

/// The issuer [`encode`] stored, resumed by `node_id` after a clean stop; `None` if the
/// bytes are not such a state.
pub(crate) fn decode(node_id: &str, bytes: &[u8]) -> Option<Issuer> {
    let epoch = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let floor = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    let rest = bytes.get(16..)?;
    if rest.len() % 4 != 0 {
        return None;
    }
    let mut issuer = Issuer::new(node_id, epoch, floor, true);
    issuer.lost_in = rest.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Some(issuer)
}

/// A random number from the OS-seeded hasher keys: unique enough for ids and epochs.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    //! A model of three replicas of one key, where replica 0 loses what it holds in every
    //! way a node can (a power cut back to its last fsync, a rotted record, its data
    //! handed to new owners) while the others never do, and old context tokens come
    //! back at random. Over random histories: no two writes share a dot, and every write
    //! (each was copied to a replica that never loses data) survives unless a write whose
    //! context observed it superseded it; nothing superseded comes back.

    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::causal::{Content, Object};

    const PARTITION: u32 = 7;

    #[derive(Clone, Debug)]
    enum Ctx {
        Blind,
        Replica(usize),
        Token(usize),
    }

    #[derive(Clone, Debug)]
    enum Op {
        Write {
            coord: usize,
            ctx: Ctx,
            tombstone: bool,
            copy_to: usize,
        },
        Read {
            replica: usize,
        },
        Sync {
            from: usize,
            to: usize,
        },
        /// Replica 0 fsyncs: a power cut later goes back to here.
        Fsync,
        /// Power cut on replica 0: back to its last fsync, an unclean start.
        PowerCut,
        /// Replica 0 loses the key: a rotted record, or its data handed to new owners.
        Lose,
        /// Every replica holds the same tombstone: all forget it.
        Reap,
    }

    fn op() -> impl Strategy<Value = Op> {
        let ctx = prop_oneof![
            Just(Ctx::Blind),
            (0..3usize).prop_map(Ctx::Replica),
            (0..64usize).prop_map(Ctx::Token),
        ];
        prop_oneof![
            4 => (0..3usize, ctx, proptest::bool::weighted(0.3), 0..3usize)
                .prop_map(|(coord, ctx, tombstone, copy_to)| Op::Write { coord, ctx, tombstone, copy_to }),
            1 => (0..3usize).prop_map(|replica| Op::Read { replica }),
            3 => (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Sync { from, to }),
            1 => Just(Op::Fsync),
            1 => Just(Op::PowerCut),
            1 => Just(Op::Lose),
            2 => Just(Op::Reap),
        ]
    }

    /// One replica: its object, the ground truth of which writes its history holds, and
    /// its issuer.
    #[derive(Clone)]
    struct Replica {
        obj: Object,
        seen: BTreeSet<u64>,
        issuer: Issuer,
    }

    struct Write {
        dot: Dot,
        value: bool,
        observed: BTreeSet<u64>,
    }

    struct Model {
        replicas: Vec<Replica>,
        fsynced: (Object, BTreeSet<u64>),
        tokens: Vec<(VersionVector, BTreeSet<u64>)>,
        writes: Vec<Write>,
        epochs: u64,
    }

    impl Model {
        fn new() -> Model {
            let replicas = (0..3)
                .map(|i| Replica {
                    obj: Object::new(),
                    seen: BTreeSet::new(),
                    issuer: Issuer::new(&format!("r{i}"), 1000 + i as u64, 0, false),
                })
                .collect();
            Model { replicas, fsynced: Default::default(), tokens: vec![], writes: vec![], epochs: 0 }
        }

        fn fresh_epoch(&mut self) -> u64 {
            self.epochs += 1;
            self.epochs
        }

        fn merge_into(&mut self, to: usize, obj: &Object, seen: &BTreeSet<u64>) {
            let r = &mut self.replicas[to];
            if r.issuer.proves_loss(r.obj.context(), obj.context()) {
                r.issuer.lost_partition(PARTITION);
            }
            r.obj.merge(obj);
            r.seen.extend(seen.iter().copied());
        }

        fn apply(&mut self, op: &Op) {
            match op {
                Op::Write { coord, ctx, tombstone, copy_to } => {
                    let (vv, seen) = match ctx {
                        Ctx::Blind => Default::default(),
                        Ctx::Replica(j) => {
                            (self.replicas[*j].obj.context().clone(), self.replicas[*j].seen.clone())
                        }
                        Ctx::Token(k) if self.tokens.is_empty() => Default::default(),
                        Ctx::Token(k) => self.tokens[k % self.tokens.len()].clone(),
                    };
                    let id = self.writes.len() as u64;
                    let fresh = self.fresh_epoch();
                    let r = &mut self.replicas[*coord];
                    if r.issuer.must_renew(PARTITION) {
                        r.issuer.lost(fresh);
                    }
                    let dot = r.issuer.next(r.obj.context(), &vv).expect("counter");
                    let content = if *tombstone {
                        Content::Tombstone { deleted_at_ms: id }
                    } else {
                        Content::value("t", id.to_le_bytes().to_vec())
                    };
                    r.obj.update_at(&vv, dot, content).expect("few siblings");
                    r.seen.extend(seen.iter().copied());
                    r.seen.insert(id);
                    self.writes.push(Write { dot, value: !*tombstone, observed: seen });
                    let (obj, seen) = (r.obj.clone(), r.seen.clone());
                    self.tokens.push((obj.context().clone(), seen.clone()));
                    let to = if copy_to == coord { (coord + 1) % 3 } else { *copy_to };
                    self.merge_into(to, &obj, &seen);
                }
                Op::Read { replica } => {
                    let r = &self.replicas[*replica];
                    self.tokens.push((r.obj.context().clone(), r.seen.clone()));
                }
                Op::Sync { from, to } => {
                    let (obj, seen) = (self.replicas[*from].obj.clone(), self.replicas[*from].seen.clone());
                    self.merge_into(*to, &obj, &seen);
                }
                Op::Fsync => self.fsynced = (self.replicas[0].obj.clone(), self.replicas[0].seen.clone()),
                Op::PowerCut => {
                    let fresh = self.fresh_epoch();
                    let r = &mut self.replicas[0];
                    (r.obj, r.seen) = self.fsynced.clone();
                    r.issuer = Issuer::new("r0", fresh, 0, false);
                }
                Op::Lose => {
                    let r = &mut self.replicas[0];
                    r.obj = Object::new();
                    r.seen.clear();
                    r.issuer.lost_partition(PARTITION);
                }
                Op::Reap => {
                    let first = self.replicas[0].obj.clone();
                    let all_same = self.replicas.iter().all(|r| r.obj == first);
                    if !all_same || first.siblings().is_empty() || !first.is_deleted() {
                        return;
                    }
                    // The grace period is far longer than the fsync interval: the
                    // tombstone is on disk everywhere before it is reaped.
                    self.apply(&Op::Fsync);
                    for r in &mut self.replicas {
                        r.issuer.reaping(r.obj.context());
                        r.obj = Object::new();
                        r.seen.clear();
                    }
                    self.fsynced = Default::default();
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn no_dot_twice_and_no_acknowledged_write_lost(ops in proptest::collection::vec(op(), 0..48)) {
            let mut m = Model::new();
            for op in &ops {
                m.apply(op);
            }
            let dots: BTreeSet<Dot> = m.writes.iter().map(|w| w.dot).collect();
            prop_assert_eq!(dots.len(), m.writes.len(), "a dot was numbered twice");
            let mut all = Object::new();
            for r in &m.replicas {
                all.merge(&r.obj);
            }
            for (id, w) in m.writes.iter().enumerate() {
                let id = id as u64;
                let superseded = m.writes.iter().any(|later| later.observed.contains(&id));
                let present = all.siblings().iter().any(|s| s.dot == w.dot);
                if w.value {
                    prop_assert!(present || superseded, "write {} ({:?}) was lost", id, w.dot);
                }
                prop_assert!(!(present && superseded), "write {} ({:?}) came back after it was superseded", id, w.dot);
            }
        }
    }
}
