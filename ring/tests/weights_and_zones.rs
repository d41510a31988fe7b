//! Weighted members and zones, through the public API only: every member's
//! share follows its weight, replicas spread over zones, and joins and leaves
//! keep both.
#![allow(clippy::unwrap_used)] // tests may unwrap

use proptest::prelude::*;
use quorumkv_ring::{MemberSpec, NodeId, Ring, RingError, RingParams};

fn spec(id: &str, weight: u32, zone: Option<&str>) -> MemberSpec {
    MemberSpec::new(id, weight, zone.map(str::to_owned))
}

fn params(partitions: u32, replicas: usize) -> RingParams {
    RingParams { partitions, replicas, vnodes: 64 }
}

/// Each member's weighted share of `total` slots, no share above `cap`,
/// computed independently of the crate (floating point water-filling).
fn shares(weights: &[u32], total: usize, cap: usize) -> Vec<f64> {
    let mut capped = vec![false; weights.len()];
    loop {
        let free: f64 = weights.iter().zip(&capped).filter(|(_, c)| !**c).map(|(&w, _)| f64::from(w)).sum();
        let left = total as f64 - cap as f64 * capped.iter().filter(|&&c| c).count() as f64;
        let share: Vec<f64> = weights
            .iter()
            .zip(&capped)
            .map(|(&w, &c)| if c { cap as f64 } else { left * f64::from(w) / free })
            .collect();
        let over: Vec<usize> =
            (0..weights.len()).filter(|&m| !capped[m] && share[m] > cap as f64 + 1e-9).collect();
        if over.is_empty() {
            return share;
        }
        for m in over {
            capped[m] = true;
        }
    }
}

/// Per-member counts of partitions led and held as a primary.
fn ownership(ring: &Ring) -> (Vec<usize>, Vec<usize>) {
    let leads = |m: &NodeId| (0..ring.params().partitions).filter(|&p| ring.primaries(p)[0] == *m).count();
    ring.members().iter().map(|m| (leads(m), ring.partitions_of(m).len())).unzip()
}

/// Whether every count is the floor or the ceiling of its share.
fn within(counts: &[usize], shares: &[f64]) -> bool {
    counts.iter().zip(shares).all(|(&c, &s)| (c as f64) >= s.floor() - 1e-9 && (c as f64) <= s.ceil() + 1e-9)
}

fn weights(ring: &Ring) -> Vec<u32> {
    ring.members().iter().map(|m| ring.weight(m).unwrap()).collect()
}

/// Checks both weighted balances: primaries and leaders.
fn check_weighted(ring: &Ring) -> Result<(), TestCaseError> {
    let q = ring.params().partitions as usize;
    let (first, any) = ownership(ring);
    let w = weights(ring);
    let primary_shares = shares(&w, q * ring.replicas(), q);
    prop_assert!(within(&any, &primary_shares), "primaries {:?}, shares {:?}", any, primary_shares);
    let leader_shares = shares(&w, q, q);
    prop_assert!(within(&first, &leader_shares), "leaders {:?}, shares {:?}", first, leader_shares);
    Ok(())
}

/// The number of distinct zones among a partition's primaries.
fn spread(ring: &Ring, partition: u32) -> usize {
    let mut zones: Vec<Option<&str>> = ring.primaries(partition).iter().map(|m| ring.zone(m)).collect();
    zones.sort_unstable();
    zones.dedup();
    zones.len()
}

fn zone_count(ring: &Ring) -> usize {
    let mut zones: Vec<Option<&str>> = ring.members().iter().map(|m| ring.zone(m)).collect();
    zones.sort_unstable();
    zones.dedup();
    zones.len()
}

/// Every partition's primaries span `min(N', Z)` zones.
fn check_spread(ring: &Ring) -> Result<(), TestCaseError> {
    let need = ring.replicas().min(zone_count(ring));
    for p in 0..ring.params().partitions {
        prop_assert!(
            spread(ring, p) >= need,
            "partition {} spans {} zones, needs {}",
            p,
            spread(ring, p),
            need
        );
    }
    Ok(())
}

#[test]
fn a_member_of_double_weight_holds_twice_the_partitions() {
    let ring = Ring::new(
        params(256, 3),
        1,
        [spec("a", 1, None), spec("b", 2, None), spec("c", 1, None), spec("d", 2, None), spec("e", 1, None)],
    )
    .unwrap();
    check_weighted(&ring).unwrap();
    let (_, any) = ownership(&ring);
    // Σw = 7: a share of 768 · 1/7 ≈ 109.7 and 768 · 2/7 ≈ 219.4.
    assert_eq!(any, [110, 219, 110, 219, 110]);
    assert_eq!(ring.weight(&NodeId::from("b")), Some(2));
    assert_eq!(ring.weight(&NodeId::from("z")), None);
}

#[test]
fn a_member_too_heavy_for_its_share_holds_every_partition_and_no_more() {
    // 10/13 of 192 slots is 147, but a member holds a partition at most once.
    let ring = Ring::new(
        params(64, 3),
        1,
        [spec("big", 10, None), spec("a", 1, None), spec("b", 1, None), spec("c", 1, None)],
    )
    .unwrap();
    let (_, any) = ownership(&ring);
    assert_eq!(any[ring.members().binary_search(&"big".into()).unwrap()], 64);
    check_weighted(&ring).unwrap();
}

#[test]
fn replicas_span_every_zone_when_there_are_n_zones() {
    let members: Vec<MemberSpec> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .enumerate()
        .map(|(i, id)| spec(id, 1, Some(["east", "west", "north"][i % 3])))
        .collect();
    let ring = Ring::new(RingParams::default(), 1, members).unwrap();
    for p in 0..64 {
        assert_eq!(spread(&ring, p), 3, "partition {p}: {:?}", ring.primaries(p));
    }
    check_weighted(&ring).unwrap();
    assert_eq!(ring.zone(&NodeId::from("a")), Some("east"));

    // Two zones of three: every partition has copies in both.
    let two: Vec<MemberSpec> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .enumerate()
        .map(|(i, id)| spec(id, 1, Some(["east", "west"][i % 2])))
        .collect();
    let ring = Ring::new(RingParams::default(), 1, two).unwrap();
    assert!((0..64).all(|p| spread(&ring, p) == 2));
    check_weighted(&ring).unwrap();
}

#[test]
fn zones_win_over_weights_when_both_cannot_hold() {
    // One member alone in its zone must hold a copy of every partition.
    let ring = Ring::new(
        RingParams::default(),
        1,
        [spec("a", 1, Some("x")), spec("b", 1, Some("y")), spec("c", 1, Some("y")), spec("d", 1, Some("y"))],
    )
    .unwrap();
    assert!((0..64).all(|p| spread(&ring, p) == 2));
    assert_eq!(ring.partitions_of(&"a".into()).len(), 64);
}

#[test]
fn bad_weights_and_zones_are_refused_with_the_member_named() {
    let err = Ring::new(params(8, 2), 1, [spec("a", 0, None), spec("b", 1, None)]).unwrap_err();
    assert_eq!(err, RingError::InvalidWeight { node: "a".into(), weight: 0 });
    assert!(err.to_string().contains("`a`"), "{err}");
    let too_long = "z".repeat(65);
    let err = Ring::new(params(8, 2), 1, [spec("a", 1, Some(&too_long))]).unwrap_err();
    assert_eq!(err, RingError::InvalidZone { node: "a".into() });
    let ring = Ring::new(params(8, 2), 1, [spec("a", 1, None), spec("b", 1, None)]).unwrap();
    assert_eq!(
        ring.with_member(spec("c", 2_000_000, None), 2).unwrap_err(),
        RingError::InvalidWeight { node: "c".into(), weight: 2_000_000 }
    );
    assert_eq!(
        ring.with_replacement(&"a".into(), spec("c", 1, Some("")), 2).unwrap_err(),
        RingError::InvalidZone { node: "c".into() }
    );
}

#[test]
fn weights_and_zones_survive_the_wire_form() {
    let ring =
        Ring::new(params(16, 2), 4, [spec("a", 3, Some("x")), spec("b", 1, None), spec("c", 2, Some("y"))])
            .unwrap();
    let text = serde_json::to_string(&ring).unwrap();
    let back: Ring = serde_json::from_str(&text).unwrap();
    assert_eq!(back, ring);
    assert_eq!(back.specs(), ring.specs());
}

fn weighted_members() -> impl Strategy<Value = Vec<MemberSpec>> {
    proptest::collection::vec(("[a-z]{1,6}", 1u32..=4, proptest::option::of(0u8..3)), 3..10).prop_map(|m| {
        m.into_iter().map(|(id, w, z)| MemberSpec::new(id, w, z.map(|z| format!("zone-{z}")))).collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn weighted_rings_are_balanced_by_weight(members in weighted_members()) {
        let plain: Vec<MemberSpec> =
            members.iter().map(|m| MemberSpec::new(m.id.clone(), m.weight, None)).collect();
        let ring = Ring::new(params(256, 3), 1, plain).unwrap();
        check_weighted(&ring)?;
    }

    #[test]
    fn zoned_rings_spread_every_partition(members in weighted_members()) {
        let ring = Ring::new(params(64, 3), 1, members).unwrap();
        check_spread(&ring)?;
    }

    #[test]
    fn joins_and_leaves_keep_the_zone_spread_and_the_weights(
        members in weighted_members(),
        weight in 1u32..=4,
        zone in 0u8..3,
        leaver in any::<usize>(),
    ) {
        let ring = Ring::new(params(64, 3), 1, members).unwrap();
        // A newcomer in a zone the ring already has keeps the spread.
        let zones: Vec<Option<String>> = ring.members().iter().map(|m| ring.zone(m).map(str::to_owned)).collect();
        let zone = zones[usize::from(zone) % zones.len()].clone();
        let joined = ring.with_member(MemberSpec::new("newcomer", weight, zone), 2).unwrap();
        check_spread(&joined)?;
        let gone = ring.members()[leaver % ring.members().len()].clone();
        let left = ring.without_member(&gone, 3).unwrap();
        check_spread(&left)?;
        if zone_count(&ring) == 1 {
            // Without zones, a join balances by weight exactly.
            check_weighted(&joined)?;
        }
    }
}
