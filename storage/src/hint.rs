//! A hint's value: the versions kept for a replica that missed them, in layers by age.
//!
//! A hint expires after the hint TTL (the tombstone grace period) so that it can never
//! carry a version that a reaped tombstone superseded. That holds only if the age a hint
//! counts from is never later than when its versions were first kept as a hint: **a
//! hint's age follows the oldest version it holds.** Yet a new write merged into an old
//! hint must not expire with it, since that hint may be the write's only second copy.
//! So a hint is a few layers, each `(kept_since, Object)`:
//!
//! - [`Layers::add`] merges versions into the layer of (nearly) the same age, within
//!   [`SLACK_MS`], keeping the older time, or adds a layer. Of two layers one of which
//!   holds the other (merging it in would change nothing), only the larger is kept, or
//!   the older if they are equal: a new version is never in an older layer, so this
//!   never shortens a new write's life.
//! - Each layer expires on its own; delivery sends the layers still young and the
//!   target's acknowledgement removes the layers it holds ([`Layers::forget`]).
//! - At most [`MAX_LAYERS`]: past it, the two layers closest in age become one with the
//!   older time, so a version may expire up to that gap early, never late; anti-entropy
//!   repairs what an expired hint held.
//!
//! A layer's time is a claim that its versions are safe to deliver until it is TTL old;
//! merging keeps the older claim and dropping a layer another one holds loses no
//! version, so every layer's claim stays true. Each layer is a DVV state, so the merge
//! of any subset of them is one too.
//!
//! Stored as `kept_since (8 B BE) ‖ record` for one layer (the format from before
//! layers, which still decodes), else `0xFF ‖ count (1 B) ‖ count × (kept_since (8 B
//! BE) ‖ record length (4 B BE) ‖ record)`. A kept-since time never starts with 0xFF
//! (that is millions of years away), so the first byte tells the two apart.

use crate::causal::Object;
use crate::record;

/// A version merged into a hint joins a layer at most this much older or younger.
pub const SLACK_MS: u64 = 1_000;

/// The most layers one hint keeps.
pub const MAX_LAYERS: usize = 8;

/// The age given to versions whose age is unknown (stored data, which carries no write
/// time): as old as can be, so any hint TTL has passed and they are never kept as a hint
/// where a TTL is set. An unknown age errs towards expiring sooner, never later.
pub const AGE_UNKNOWN_MS: u64 = 0;

const LAYERED: u8 = 0xFF;

/// Versions kept since one time (milliseconds since the epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HintLayer {
    /// When the oldest of these versions was first kept as a hint (or written).
    pub kept_since_ms: u64,
    pub object: Object,
}

/// A hint's layers, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layers(Vec<HintLayer>);

/// Whether merging `b` into `a` would leave `a` as it is.
fn holds(a: &Object, b: &Object) -> bool {
    let mut m = a.clone();
    m.merge(b);
    m == *a
}

impl Layers {
    /// Splits a stored value into `(kept_since, record)` frames, records not yet decoded.
    /// A value whose framing is broken yields one empty record, which decodes as corrupt.
    pub(crate) fn frames(bytes: &[u8]) -> Vec<(u64, &[u8])> {
        let Some((&LAYERED, mut rest)) = bytes.split_first() else {
            // Too short for a time stamp: decoding it as a record reports it as corrupt.
            return vec![
                bytes.split_first_chunk::<8>().map_or((0, bytes), |(s, r)| (u64::from_be_bytes(*s), r)),
            ];
        };
        let broken = vec![(0, &[][..])];
        let Some((&count, body)) = rest.split_first() else { return broken };
        rest = body;
        let mut out = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let Some((since, body)) = rest.split_first_chunk::<8>() else { return broken };
            let Some((len, body)) = body.split_first_chunk::<4>() else { return broken };
            let len = u32::from_be_bytes(*len) as usize;
            if body.len() < len {
                return broken;
            }
            let (record, body) = body.split_at(len);
            out.push((u64::from_be_bytes(*since), record));
            rest = body;
        }
        if out.is_empty() || !rest.is_empty() {
            return broken;
        }
        out
    }

    /// The layers of decoded frames.
    pub(crate) fn from_frames(mut layers: Vec<HintLayer>) -> Layers {
        layers.sort_by_key(|l| l.kept_since_ms);
        Layers(layers)
    }

    /// The stored value (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        if let [only] = self.0.as_slice() {
            let record = record::encode(&only.object);
            let mut out = Vec::with_capacity(8 + record.len());
            out.extend_from_slice(&only.kept_since_ms.to_be_bytes());
            out.extend_from_slice(&record);
            return out;
        }
        let mut out = vec![LAYERED, self.0.len() as u8];
        for layer in &self.0 {
            let record = record::encode(&layer.object);
            out.extend_from_slice(&layer.kept_since_ms.to_be_bytes());
            out.extend_from_slice(&(record.len() as u32).to_be_bytes());
            out.extend_from_slice(&record);
        }
        out
    }

    /// Keeps `object`'s versions as first kept at `kept_since_ms` (see the module docs).
    /// Returns whether the layers changed.
    pub fn add(&mut self, object: &Object, kept_since_ms: u64) -> bool {
        if self.0.iter().any(|l| l.kept_since_ms <= kept_since_ms && holds(&l.object, object)) {
            return false;
        }
        let near = self
            .0
            .iter_mut()
            .filter(|l| l.kept_since_ms.abs_diff(kept_since_ms) <= SLACK_MS)
            .min_by_key(|l| l.kept_since_ms.abs_diff(kept_since_ms));
        match near {
            Some(layer) => {
                layer.object.merge(object);
                layer.kept_since_ms = layer.kept_since_ms.min(kept_since_ms);
            }
            None => self.0.push(HintLayer { kept_since_ms, object: object.clone() }),
        }
        self.0.sort_by_key(|l| l.kept_since_ms);
        self.drop_held();
        while self.0.len() > MAX_LAYERS {
            let closest = (0..self.0.len() - 1)
                .min_by_key(|&i| self.0[i + 1].kept_since_ms - self.0[i].kept_since_ms)
                .unwrap_or(0);
            let younger = self.0.remove(closest + 1);
            self.0[closest].object.merge(&younger.object);
            self.drop_held();
        }
        true
    }

    /// Of two layers one of which holds the other, keeps only the larger, or the older if
    /// they are equal: the dropped one's versions lose nothing (holding is transitive).
    fn drop_held(&mut self) {
        let mut i = 0;
        while i < self.0.len() {
            let this = &self.0[i].object;
            let held = self.0.iter().enumerate().any(|(j, other)| {
                j != i && holds(&other.object, this) && (j < i || !holds(this, &other.object))
            });
            if held {
                self.0.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Drops the layers whose time `expired` says has passed; returns how many.
    pub fn expire(&mut self, expired: impl Fn(u64) -> bool) -> usize {
        let before = self.0.len();
        self.0.retain(|l| !expired(l.kept_since_ms));
        before - self.0.len()
    }

    /// Drops the layers whose versions `delivered` holds (its target has them now);
    /// returns whether any was dropped.
    pub fn forget(&mut self, delivered: &Object) -> bool {
        let before = self.0.len();
        self.0.retain(|l| !holds(delivered, &l.object));
        self.0.len() != before
    }

    /// Every version held, merged: what a read of the hint sees.
    pub fn merged(&self) -> Object {
        let mut out = Object::new();
        for layer in &self.0 {
            out.merge(&layer.object);
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn layers(&self) -> &[HintLayer] {
        &self.0
    }

    pub fn into_layers(self) -> Vec<HintLayer> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::causal::{Actor, Content, VersionVector};

    fn write(base: &Object, actor: u64, value: &str) -> Object {
        let mut o = base.clone();
        o.update(base.context(), Actor(actor), Content::value("text/plain", value.to_string()))
            .expect("update");
        o
    }

    fn blind(actor: u64, value: &str) -> Object {
        let mut o = Object::new();
        o.update(&VersionVector::new(), Actor(actor), Content::value("text/plain", value.to_string()))
            .expect("update");
        o
    }

    fn decode(bytes: &[u8]) -> Option<Layers> {
        let frames = Layers::frames(bytes)
            .into_iter()
            .map(|(s, r)| Some(HintLayer { kept_since_ms: s, object: record::decode(r).ok()? }))
            .collect::<Option<Vec<_>>>()?;
        Some(Layers::from_frames(frames))
    }

    fn ages(l: &Layers) -> Vec<u64> {
        l.layers().iter().map(|l| l.kept_since_ms).collect()
    }

    #[test]
    fn a_write_within_the_slack_joins_the_layer_and_keeps_the_older_time() {
        let mut l = Layers::default();
        assert!(l.add(&blind(1, "a"), 10_000));
        assert!(l.add(&blind(2, "b"), 10_000 + SLACK_MS));
        assert!(l.add(&blind(3, "c"), 9_500));
        assert_eq!(ages(&l), [9_500]);
        assert_eq!(l.merged().live().len(), 3);
    }

    #[test]
    fn a_later_concurrent_write_gets_a_layer_of_its_own_and_outlives_the_old_one() {
        let mut l = Layers::default();
        l.add(&blind(1, "a"), 10_000);
        l.add(&blind(2, "b"), 50_000);
        assert_eq!(ages(&l), [10_000, 50_000]);
        assert_eq!(l.expire(|since| since < 20_000), 1);
        assert_eq!(l.merged(), blind(2, "b"));
    }

    #[test]
    fn a_layer_a_younger_one_holds_is_dropped_and_an_old_copy_adds_nothing() {
        let a = blind(1, "a");
        let b = write(&a, 1, "b");
        let mut l = Layers::default();
        l.add(&a, 10_000);
        l.add(&b, 50_000);
        assert_eq!(ages(&l), [50_000], "b supersedes a: the old layer holds nothing more");
        assert!(!l.add(&b, 60_000), "a copy of what an older layer holds adds nothing");
        assert!(l.add(&b, 20_000), "an older copy of the same versions gets the older time");
        assert_eq!(ages(&l), [20_000]);
    }

    #[test]
    fn past_the_bound_the_closest_layers_become_one_with_the_older_time() {
        let mut l = Layers::default();
        for i in 0..MAX_LAYERS as u64 {
            l.add(&blind(i + 1, &format!("v{i}")), 100_000 * (i + 1));
        }
        assert_eq!(l.layers().len(), MAX_LAYERS);
        l.add(&blind(99, "late"), 100_000 * MAX_LAYERS as u64 + 2 * SLACK_MS);
        assert_eq!(l.layers().len(), MAX_LAYERS);
        assert_eq!(ages(&l).last(), Some(&(100_000 * MAX_LAYERS as u64)), "merged into the older time");
        assert_eq!(l.merged().live().len(), MAX_LAYERS + 1, "no version is lost");
    }

    #[test]
    fn forget_drops_only_what_the_delivery_held() {
        let mut l = Layers::default();
        l.add(&blind(1, "a"), 10_000);
        let delivered = l.merged();
        l.add(&blind(2, "b"), 50_000);
        assert!(l.forget(&delivered));
        assert_eq!(l.merged(), blind(2, "b"));
        assert!(!l.forget(&delivered));
    }

    #[test]
    fn both_formats_round_trip_and_broken_framing_is_caught() {
        let a = blind(1, "a");
        let mut one = Layers::default();
        one.add(&a, 1_234);
        let bytes = one.encode();
        assert_eq!(&bytes[..8], &1_234u64.to_be_bytes(), "one layer is the format from before layers");
        assert_eq!(decode(&bytes), Some(one.clone()));
        let mut two = one.clone();
        two.add(&blind(2, "b"), 99_999);
        let bytes = two.encode();
        assert_eq!(decode(&bytes), Some(two));
        for cut in [1, 2, 10, 14, bytes.len() - 1] {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        assert_eq!(decode(&[LAYERED, 0]), None);
        assert_eq!(decode(&[1, 2, 3]), None);
    }
}
