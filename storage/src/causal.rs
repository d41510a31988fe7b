//! Dotted version vector sets: the causal model of every stored object.
//!
//! An [`Object`] is a set of siblings, each tagged with the [`Dot`] of the write that
//! created it, plus a [`VersionVector`] that summarises every write the object has seen
//! (including ones whose values were superseded). This is the DVV set of Almeida et al.
//! (2014), the model of Riak 2.0 and Garage K2V.
//!
//! Laws (checked by property tests below):
//! - [`Object::merge`] is commutative, associative and idempotent, so replicas may sync in
//!   any order, any number of times, and converge.
//! - [`Object::update`] with context `c` removes exactly the siblings whose dots `c`
//!   covers, and keeps every other (concurrent) sibling.
//! - Actors are coordinating replicas (node id + epoch), never clients, so a version
//!   vector has one entry per node epoch that coordinated a write of the key.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Above this many live siblings a write is logged and counted as a warning.
pub const SIBLING_WARN: usize = 25;
/// Above this many live siblings a client write is refused.
pub const SIBLING_LIMIT: usize = 100;

/// A coordinating replica: a node id in one epoch.
///
/// A node that may have lost versions it numbered takes a new epoch, hence a new actor,
/// so it never hands out a dot a surviving replica already knows for another version
/// (see [`crate::versions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Actor(pub u64);

impl Actor {
    /// The actor of `node_id` in `epoch`: xxh3-64 of `node_id ‖ 0x00 ‖ epoch (LE)`.
    pub fn new(node_id: &str, epoch: u64) -> Actor {
        let mut bytes = Vec::with_capacity(node_id.len() + 9);
        bytes.extend_from_slice(node_id.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&epoch.to_le_bytes());
        Actor(xxhash_rust::xxh3::xxh3_64(&bytes))
    }
}

/// One write event: the `counter`-th write coordinated by `actor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    pub actor: Actor,
    pub counter: u64,
}

/// A map actor → highest counter seen. Missing actors count as 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionVector(BTreeMap<Actor, u64>);

impl VersionVector {
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    /// The highest counter seen from `actor` (0 if none).
    pub fn get(&self, actor: Actor) -> u64 {
        self.0.get(&actor).copied().unwrap_or(0)
    }

    /// Whether the write `dot` is part of this history.
    pub fn covers(&self, dot: Dot) -> bool {
        self.get(dot.actor) >= dot.counter
    }

    /// Records `dot` (and, by the contiguity of counters, every earlier dot of its actor).
    pub fn add(&mut self, dot: Dot) {
        let entry = self.0.entry(dot.actor).or_insert(0);
        *entry = (*entry).max(dot.counter);
    }

    /// Least upper bound: the pointwise maximum.
    pub fn join(&mut self, other: &VersionVector) {
        for (&actor, &counter) in &other.0 {
            self.add(Dot { actor, counter });
        }
    }

    /// Whether every event of `other` is in `self`.
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(&actor, &counter)| self.get(actor) >= counter)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = Dot> + '_ {
        self.0.iter().map(|(&actor, &counter)| Dot { actor, counter })
    }
}

impl FromIterator<Dot> for VersionVector {
    fn from_iter<I: IntoIterator<Item = Dot>>(iter: I) -> VersionVector {
        let mut vv = VersionVector::new();
        for dot in iter {
            vv.add(dot);
        }
        vv
    }
}

/// What one sibling holds: a value with its content type, or the mark of a delete.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Content {
    Value {
        content_type: String,
        /// Shared, not copied, from the request body to storage and back to a response.
        bytes: Bytes,
    },
    /// A delete, stamped with the coordinator's wall-clock time (milliseconds since the
    /// Unix epoch) so tombstones can be reaped after a grace period.
    Tombstone { deleted_at_ms: u64 },
}

impl Content {
    pub fn value(content_type: impl Into<String>, bytes: impl Into<Bytes>) -> Content {
        Content::Value { content_type: content_type.into(), bytes: bytes.into() }
    }

    pub fn is_tombstone(&self) -> bool {
        matches!(self, Content::Tombstone { .. })
    }

    /// A tombstone stamped now.
    pub fn tombstone_now() -> Content {
        Content::Tombstone { deleted_at_ms: unix_ms() }
    }
}

/// Milliseconds since the Unix epoch on this node's clock: what tombstones and hints are
/// stamped with, and what the tombstone grace period is measured against.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sibling {
    pub dot: Dot,
    pub content: Content,
}

/// A key's whole causal state on one replica.
///
/// Canonical form: siblings sorted by dot, no two with the same dot, every dot covered by
/// the version vector. Two replicas with the same history hold equal objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ObjectRepr")]
pub struct Object {
    vv: VersionVector,
    siblings: Vec<Sibling>,
}

/// An [`Object`] as decoded (from disk or a peer), before its canonical form is checked.
#[derive(Deserialize)]
struct ObjectRepr {
    vv: VersionVector,
    siblings: Vec<Sibling>,
}

impl TryFrom<ObjectRepr> for Object {
    type Error = String;

    /// Refuses what no history makes: siblings out of dot order or sharing a dot, a dot
    /// the version vector does not cover, a counter of 0.
    fn try_from(r: ObjectRepr) -> Result<Object, String> {
        if !r.siblings.windows(2).all(|w| w[0].dot < w[1].dot) {
            return Err("siblings out of order or sharing a dot".into());
        }
        if let Some(s) = r.siblings.iter().find(|s| s.dot.counter == 0 || !r.vv.covers(s.dot)) {
            return Err(format!("a sibling's dot {:?} is not part of the object's history", s.dot));
        }
        Ok(Object { vv: r.vv, siblings: r.siblings })
    }
}

impl Object {
    pub fn new() -> Object {
        Object::default()
    }

    /// Everything this object has seen: what a GET hands the client as its context.
    pub fn context(&self) -> &VersionVector {
        &self.vv
    }

    /// Every sibling, tombstones included, in dot order.
    pub fn siblings(&self) -> &[Sibling] {
        &self.siblings
    }

    /// The live versions a client sees: tombstones hidden, identical contents shown once.
    pub fn live(&self) -> Vec<&Content> {
        let mut out: Vec<&Content> = Vec::new();
        for s in &self.siblings {
            if !s.content.is_tombstone() && !out.contains(&&s.content) {
                out.push(&s.content);
            }
        }
        out
    }

    /// When the key was deleted: the newest tombstone's time, if every sibling is a
    /// tombstone (and there is at least one).
    pub fn deleted_at_ms(&self) -> Option<u64> {
        if self.siblings.is_empty() {
            return None;
        }
        self.siblings.iter().try_fold(0u64, |newest, s| match s.content {
            Content::Tombstone { deleted_at_ms } => Some(newest.max(deleted_at_ms)),
            Content::Value { .. } => None,
        })
    }

    /// Whether the object holds nothing but tombstones (a deleted key).
    pub fn is_deleted(&self) -> bool {
        self.siblings.iter().all(|s| s.content.is_tombstone())
    }

    /// Applies a client write coordinated by `actor`, numbered from this object's history
    /// and the context alone. For tests and tools: a node numbers its versions through
    /// [`crate::versions::Issuer`] (see [`crate::Store::coordinate`]), which also knows what
    /// the node forgot.
    ///
    /// # Errors
    /// As [`Object::update_at`], and [`Error::BadContext`] when `actor`'s counter cannot
    /// advance.
    pub fn update(&mut self, context: &VersionVector, actor: Actor, content: Content) -> Result<Dot, Error> {
        let mut issuer = crate::versions::Issuer::from_actor(actor);
        let dot = issuer.next(&self.vv, context)?;
        self.update_at(context, dot, content)?;
        Ok(dot)
    }

    /// Applies a client write numbered `dot`: the siblings `context` covers are
    /// superseded, every other sibling stays as a concurrent one, and the new content gets
    /// `dot`. A sibling with content identical to the new one is superseded too: the new
    /// dot is created knowing it, so nothing concurrent is lost.
    ///
    /// # Errors
    /// [`Error::TooManySiblings`] when the result would hold more than [`SIBLING_LIMIT`]
    /// live siblings; [`Error::BadContext`] when `dot` does not follow both the object's
    /// and the context's history of its actor. The object is then unchanged.
    pub fn update_at(&mut self, context: &VersionVector, dot: Dot, content: Content) -> Result<(), Error> {
        if dot.counter <= self.vv.get(dot.actor).max(context.get(dot.actor)) {
            return Err(Error::BadContext(format!(
                "{dot:?} does not follow the history it was numbered from"
            )));
        }
        let survives = |s: &Sibling| !context.covers(s.dot) && s.content != content;
        let live_after = self.siblings.iter().filter(|s| survives(s) && !s.content.is_tombstone()).count()
            + usize::from(!content.is_tombstone());
        if live_after > SIBLING_LIMIT {
            return Err(Error::TooManySiblings { count: live_after, limit: SIBLING_LIMIT });
        }
        self.siblings.retain(survives);
        self.siblings.push(Sibling { dot, content });
        self.siblings.sort_by_key(|s| s.dot);
        self.vv.join(context);
        self.vv.add(dot);
        Ok(())
    }

    /// Replica-to-replica sync: keeps every sibling that the other side has not seen
    /// superseded, and joins the histories. Commutative, associative, idempotent.
    pub fn merge(&mut self, other: &Object) {
        let mut merged: Vec<Sibling> = Vec::with_capacity(self.siblings.len() + other.siblings.len());
        for s in &other.siblings {
            // Two versions under one dot cannot happen (docs/DESIGN.md, decision 20); were
            // it to, both are kept here and every replica keeps the same one below, so
            // replicas still converge.
            let rival = || self.sibling(s.dot).is_some_and(|ours| ours.content != s.content);
            if !self.vv.covers(s.dot) || rival() {
                merged.push(s.clone());
            }
        }
        for s in std::mem::take(&mut self.siblings) {
            if other.has_dot(s.dot) || !other.vv.covers(s.dot) {
                merged.push(s);
            }
        }
        merged.sort_by(|a, b| a.dot.cmp(&b.dot).then_with(|| content_order(&b.content, &a.content)));
        merged.dedup_by_key(|s| s.dot);
        self.siblings = merged;
        self.vv.join(&other.vv);
    }

    fn has_dot(&self, dot: Dot) -> bool {
        self.sibling(dot).is_some()
    }

    fn sibling(&self, dot: Dot) -> Option<&Sibling> {
        self.siblings.binary_search_by_key(&dot, |s| s.dot).ok().map(|i| &self.siblings[i])
    }

    /// Whether a client reading this object finds a value: a sibling that is not a
    /// tombstone.
    pub fn is_live(&self) -> bool {
        self.siblings.iter().any(|s| !s.content.is_tombstone())
    }

    /// The object's causal shape without its values: the same history and dots, each
    /// value emptied (tombstones kept). Merging shapes gives the shape of the merge, so
    /// a key listing can tell a live key from a deleted one across replicas without
    /// moving the values.
    pub fn shape(&self) -> Object {
        let siblings = self
            .siblings
            .iter()
            .map(|s| Sibling {
                dot: s.dot,
                content: match &s.content {
                    Content::Value { .. } => {
                        Content::Value { content_type: String::new(), bytes: Bytes::new() }
                    }
                    tombstone => tombstone.clone(),
                },
            })
            .collect();
        Object { vv: self.vv.clone(), siblings }
    }

    /// Sum of the value bytes held, for storage figures.
    pub fn value_bytes(&self) -> usize {
        self.siblings
            .iter()
            .map(|s| match &s.content {
                Content::Value { bytes, .. } => bytes.len(),
                Content::Tombstone { .. } => 0,
            })
            .sum()
    }
}

/// A total order on contents, for the one tie merge must break the same way everywhere.
fn content_order(a: &Content, b: &Content) -> std::cmp::Ordering {
    let key = |c: &Content| match c {
        Content::Value { content_type, bytes } => (1u8, content_type.as_bytes().to_vec(), bytes.clone(), 0),
        Content::Tombstone { deleted_at_ms } => (0u8, Vec::new(), Bytes::new(), *deleted_at_ms),
    };
    key(a).cmp(&key(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn two_versions_under_one_dot_merge_the_same_way_on_every_replica() {
        let dot = Dot { actor: actor(1), counter: 1 };
        let one = |v: &str| {
            let mut o = Object::new();
            o.update_at(&VersionVector::new(), dot, val(v)).expect("update");
            o
        };
        let (a, b) = (one("a"), one("b"));
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba, "replicas holding different versions under one dot must still converge");
    }

    fn actor(i: u8) -> Actor {
        Actor::new(&format!("node-{i}"), 1)
    }

    fn val(s: &str) -> Content {
        Content::value("text/plain", s.as_bytes().to_vec())
    }

    #[test]
    fn a_context_at_the_largest_counter_is_refused_and_changes_nothing() {
        let mut o = Object::new();
        o.update(&VersionVector::new(), actor(1), val("kept")).expect("a write");
        let before = o.clone();
        let exhausted: VersionVector = [Dot { actor: actor(1), counter: u64::MAX }].into_iter().collect();
        let e = o.update(&exhausted, actor(1), val("lost?")).expect_err("no counter follows u64::MAX");
        assert!(matches!(e, Error::BadContext(_)), "{e}");
        assert_eq!(o, before);
    }

    /// A random history: a sequence of writes by up to 3 actors on 3 replicas, with
    /// contexts taken from some replica's state at some point, and syncs between replicas.
    #[derive(Clone, Debug)]
    enum Op {
        Write { replica: usize, ctx_from: Option<usize>, value: u8 },
        Sync { from: usize, to: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3usize, proptest::option::of(0..3usize), 0..4u8)
                .prop_map(|(replica, ctx_from, value)| Op::Write { replica, ctx_from, value }),
            (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Sync { from, to }),
        ]
    }

    fn run(ops: &[Op]) -> Vec<Object> {
        let mut replicas = vec![Object::new(); 3];
        for op in ops {
            match *op {
                Op::Write { replica, ctx_from, value } => {
                    let ctx = ctx_from.map(|r| replicas[r].context().clone()).unwrap_or_default();
                    let content = if value == 0 {
                        Content::Tombstone { deleted_at_ms: 1 }
                    } else {
                        val(&value.to_string())
                    };
                    replicas[replica].update(&ctx, actor(replica as u8), content).expect("few siblings");
                }
                Op::Sync { from, to } => {
                    let src = replicas[from].clone();
                    replicas[to].merge(&src);
                }
            }
        }
        replicas
    }

    proptest! {
        #[test]
        fn merge_is_commutative(ops in proptest::collection::vec(op(), 0..30)) {
            let r = run(&ops);
            let mut ab = r[0].clone(); ab.merge(&r[1]);
            let mut ba = r[1].clone(); ba.merge(&r[0]);
            prop_assert_eq!(ab, ba);
        }

        #[test]
        fn merge_is_associative(ops in proptest::collection::vec(op(), 0..30)) {
            let r = run(&ops);
            let mut left = r[0].clone(); left.merge(&r[1]); left.merge(&r[2]);
            let mut bc = r[1].clone(); bc.merge(&r[2]);
            let mut right = r[0].clone(); right.merge(&bc);
            prop_assert_eq!(left, right);
        }

        #[test]
        fn merge_is_idempotent(ops in proptest::collection::vec(op(), 0..30)) {
            let r = run(&ops);
            let mut aa = r[0].clone(); aa.merge(&r[0]);
            prop_assert_eq!(&aa, &r[0]);
            let mut ab = r[0].clone(); ab.merge(&r[1]);
            let once = ab.clone();
            ab.merge(&r[1]);
            prop_assert_eq!(ab, once);
        }

        #[test]
        fn update_removes_exactly_the_covered_siblings(ops in proptest::collection::vec(op(), 0..30), ctx_from in 0..3usize, target in 0..3usize) {
            let r = run(&ops);
            let ctx = r[ctx_from].context().clone();
            let mut obj = r[target].clone();
            let before = obj.siblings().to_vec();
            let new = val("fresh-value-not-in-history");
            let dot = obj.update(&ctx, actor(9), new.clone()).expect("few siblings");
            for s in &before {
                let kept = obj.siblings().iter().any(|x| x.dot == s.dot);
                prop_assert_eq!(kept, !ctx.covers(s.dot), "sibling {:?}", s);
            }
            prop_assert!(obj.siblings().iter().any(|s| s.dot == dot && s.content == new));
            prop_assert!(obj.context().descends(&ctx));
        }

        #[test]
        fn concurrent_writes_are_never_dropped(ops in proptest::collection::vec(op(), 0..30)) {
            // Two writes from the same starting context on different replicas are
            // concurrent: after syncing both ways, both values are present.
            let mut r = run(&ops);
            let ctx = r[0].context().clone();
            r[0].update(&ctx, actor(0), val("left")).expect("few siblings");
            r[1].update(&ctx, actor(1), val("right")).expect("few siblings");
            let left = r[0].clone();
            r[1].merge(&left);
            let live = r[1].live();
            prop_assert!(live.contains(&&val("left")));
            prop_assert!(live.contains(&&val("right")));
        }
    }

    #[test]
    fn blind_writes_become_siblings_and_a_context_write_resolves_them() {
        let mut obj = Object::new();
        obj.update(&VersionVector::new(), actor(1), val("a")).expect("ok");
        obj.update(&VersionVector::new(), actor(1), val("b")).expect("ok");
        assert_eq!(obj.live().len(), 2);
        let ctx = obj.context().clone();
        obj.update(&ctx, actor(1), val("c")).expect("ok");
        assert_eq!(obj.live(), vec![&val("c")]);
    }

    #[test]
    fn identical_blind_retries_leave_one_sibling() {
        let mut obj = Object::new();
        obj.update(&VersionVector::new(), actor(1), val("a")).expect("ok");
        obj.update(&VersionVector::new(), actor(2), val("a")).expect("ok");
        assert_eq!(obj.siblings().len(), 1);
    }

    #[test]
    fn tombstone_hides_value_and_context_write_revives() {
        let mut obj = Object::new();
        obj.update(&VersionVector::new(), actor(1), val("a")).expect("ok");
        let ctx = obj.context().clone();
        obj.update(&ctx, actor(1), Content::tombstone_now()).expect("ok");
        assert!(obj.is_deleted());
        assert!(obj.live().is_empty());
        let ctx = obj.context().clone();
        obj.update(&ctx, actor(1), val("b")).expect("ok");
        assert_eq!(obj.siblings().len(), 1);
        assert_eq!(obj.live(), vec![&val("b")]);
    }

    #[test]
    fn sibling_limit_refuses_and_leaves_object_unchanged() {
        let mut obj = Object::new();
        for i in 0..SIBLING_LIMIT {
            obj.update(&VersionVector::new(), actor(1), val(&i.to_string())).expect("under limit");
        }
        let before = obj.clone();
        let err = obj.update(&VersionVector::new(), actor(1), val("one-too-many"));
        assert!(matches!(err, Err(Error::TooManySiblings { count: 101, limit: 100 })));
        assert_eq!(obj, before);
        // A write with the context still goes through and collapses everything.
        let ctx = obj.context().clone();
        obj.update(&ctx, actor(1), val("resolved")).expect("context write");
        assert_eq!(obj.live().len(), 1);
    }
}
