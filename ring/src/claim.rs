//! The balanced claim: which members are each partition's primaries, and which
//! primary leads (coordinates) it.
//!
//! The clockwise walk ([`crate::placement`]) alone leaves a node's share of
//! partitions to chance: at 64 partitions no number of virtual tokens keeps
//! every node near its fair share. The claim corrects the walk the way Riak's
//! claim does. With `Q` partitions, `S` members and `N' = min(N, S)` primaries
//! per partition, a *balanced* assignment is one where
//!
//! - every member is a primary of `floor(Q·N'/S)` or `ceil(Q·N'/S)`
//!   partitions, and
//! - every member leads (is the first primary of) `floor(Q/S)` or
//!   `ceil(Q/S)` partitions.
//!
//! What each operation guarantees:
//!
//! - [`balanced`] (a ring built from scratch) starts from the walk's first
//!   `N'` members and moves the fewest primary slots that balance the
//!   primary counts. An under-loaded member claims, in the order of its rank
//!   in each partition's walk (then partition number), the partitions it is
//!   not yet in whose primaries include an over-loaded member; the slot it
//!   takes is that of the most over-loaded such primary. The primary counts
//!   are always balanced.
//! - [`join`] moves slots to the new member only: every partition whose
//!   primaries change gains the new member in place of exactly one old
//!   primary (or in a new slot, while `S < N`), taken from the currently
//!   most-loaded members, preferring partitions where the new member ranks
//!   earliest in the walk. If the old assignment was balanced, so is the new.
//!   With unequal weights the givers' partitions may not be enough (a heavy
//!   newcomer may need a slot in a partition whose members have none to
//!   spare); then [`settle`] passes a few slots on between other members too,
//!   so the newcomer still gets its share.
//! - [`leave`] hands each of the leaving member's slots to a member not
//!   already in that partition, the walk's next member first, then
//!   rearranged so that the counts balance; no other partition's primaries
//!   change. The hand-over is an exact search (see [`rebalance`]): balanced
//!   whenever some hand-over of those slots is. Not every leave allows one: a
//!   member below its new share may already be a primary of every partition
//!   the leaver held. With few tokens per node (V ≤ 16) or few partitions
//!   that happens; with V and Q both at least 64 it did not in measurements.
//! - Leaders are then chosen among each partition's primaries, changing as
//!   few leaders as an augmenting-path search needs. The search is exact: the
//!   leader counts are balanced whenever some choice of leaders among the
//!   given primaries is. After a join or a leave the search first tries to
//!   change leaders only in partitions whose primaries changed; a partition
//!   whose primaries did not change may still get another leader (its
//!   primaries reordered) when that is the only way to balance the leaders.
//!   Reordering primaries moves no data.
//!
//! # Weights and zones
//!
//! Members may carry a weight (their capacity) and a zone. "Fair share" above
//! is then weighted: member `m` of weight `w_m` should be a primary of
//! `Q·N'·w_m / Σw` partitions, and lead `Q·w_m / Σw` of them, no share above
//! `Q` (a member cannot hold a partition twice; the excess of a member that
//! heavy is spread over the others in proportion to their weights). A
//! balanced ring keeps every count within the floor and ceiling of its share.
//! With equal weights this is exactly the unweighted rule.
//!
//! Zones come first: every partition's primaries span `min(N', Z)` distinct
//! zones, `Z` being the number of zones among the members (members without a
//! zone share one unnamed zone). A ring built from scratch takes, in walk
//! order, the first members that still let the row reach that many zones; no
//! move of the claim, a join or a leave lowers a row's zone count below that
//! bound. Where the zones cannot carry their weighted shares (one small zone
//! of a single member must hold a copy of every partition), zone spread wins
//! and the counts are balanced as far as the zones allow.
//!
//! Every choice is a pure function of the inputs: ties go to the lowest
//! member index or partition number, and nothing iterates a hash map.

use std::cmp::Reverse;
use std::collections::VecDeque;

use crate::NodeId;
use crate::placement::walk_table;

/// The clockwise walk of every partition, with each member's rank in it.
#[derive(Debug)]
pub(crate) struct Walk {
    members: usize,
    /// `partitions × members` member indices, partition by partition.
    order: Vec<u16>,
    /// `rank[p * members + m]`: the position of member `m` in `p`'s walk.
    rank: Vec<u16>,
}

impl Walk {
    /// The walk of a sorted, deduplicated, non-empty member set of at most
    /// 2^16 members.
    pub(crate) fn new(members: &[NodeId], partitions: u32, vnodes: u32) -> Walk {
        let width = members.len();
        let order = walk_table(members, partitions, vnodes);
        let mut rank = vec![0u16; order.len()];
        if width > 0 {
            for (p, list) in order.chunks_exact(width).enumerate() {
                for (r, &m) in list.iter().enumerate() {
                    // r < width <= 2^16.
                    rank[p * width + usize::from(m)] = r as u16;
                }
            }
        }
        Walk { members: width, order, rank }
    }

    pub(crate) fn members(&self) -> usize {
        self.members
    }

    pub(crate) fn partitions(&self) -> usize {
        self.order.len().checked_div(self.members).unwrap_or(0)
    }

    /// Partition `p`'s walk: every member once, clockwise.
    pub(crate) fn order(&self, p: usize) -> &[u16] {
        &self.order[p * self.members..][..self.members]
    }

    fn rank(&self, p: usize, member: u16) -> u16 {
        self.rank[p * self.members + usize::from(member)]
    }

    /// The partitions in the order `member` prefers them: by its rank in
    /// their walk, then by partition number.
    fn preferred_by(&self, member: u16) -> Vec<usize> {
        let mut partitions: Vec<usize> = (0..self.partitions()).collect();
        // Stable, so equal ranks stay in partition order.
        partitions.sort_by_key(|&p| self.rank(p, member));
        partitions
    }
}

/// What the claim knows of the members besides their walk: each member's
/// weight and zone.
#[derive(Clone, Debug)]
pub(crate) struct Pool {
    weights: Vec<u32>,
    /// Each member's zone as an index into the sorted distinct zone names.
    zones: Vec<u16>,
    zone_count: usize,
}

impl Pool {
    /// The pool of members with these weights (each at least 1) and zones, in
    /// member order.
    pub(crate) fn new(weights: Vec<u32>, zones: &[&str]) -> Pool {
        let mut names: Vec<&str> = zones.to_vec();
        names.sort_unstable();
        names.dedup();
        let zones = zones
            .iter()
            // At most as many zones as members, so below 2^16.
            .map(|z| names.binary_search(z).unwrap_or(0) as u16)
            .collect();
        Pool { weights, zones, zone_count: names.len() }
    }

    /// How many distinct zones a row must span: `min(width, Z)`.
    fn required(&self, width: usize) -> usize {
        width.min(self.zone_count)
    }

    /// The number of distinct zones among `members`.
    fn zones_of(&self, members: impl Iterator<Item = u16>) -> usize {
        let mut seen: Vec<u16> = members.map(|m| self.zones[usize::from(m)]).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    /// Whether putting `member` in `row[slot]` makes the row span more zones.
    fn widens(&self, row: &[u16], slot: usize, member: u16) -> bool {
        self.spread_after(row, slot, member) > self.zones_of(row.iter().copied())
    }

    fn spread_after(&self, row: &[u16], slot: usize, member: u16) -> usize {
        self.zones_of(row.iter().enumerate().map(|(i, &m)| if i == slot { member } else { m }))
    }

    /// Whether putting `member` in `row[slot]` keeps the row's zone spread:
    /// at least `min(required, what it spans now)` zones after the change.
    fn allows(&self, row: &[u16], slot: usize, member: u16) -> bool {
        let before = self.zones_of(row.iter().copied());
        self.spread_after(row, slot, member) >= before.min(self.required(row.len()))
    }
}

/// Each member's weighted share of `total` slots, as exact fractions
/// `num[m] / den`: proportional to its weight, none above `cap` (the excess of
/// a capped member is spread over the others, in proportion to their
/// weights, again and again until no share exceeds the cap).
#[derive(Clone, Debug)]
struct Shares {
    den: u128,
    num: Vec<u128>,
}

impl Shares {
    fn new(weights: &[u32], total: usize, cap: usize) -> Shares {
        let mut capped = vec![false; weights.len()];
        loop {
            let free: u128 =
                weights.iter().zip(&capped).filter(|(_, c)| !**c).map(|(&w, _)| u128::from(w)).sum();
            let left =
                (total as u128).saturating_sub(cap as u128 * capped.iter().filter(|&&c| c).count() as u128);
            let den = free.max(1);
            let over: Vec<usize> = (0..weights.len())
                .filter(|&m| !capped[m] && left * u128::from(weights[m]) > cap as u128 * den)
                .collect();
            if over.is_empty() {
                let num = (0..weights.len())
                    .map(|m| if capped[m] { cap as u128 * den } else { left * u128::from(weights[m]) })
                    .collect();
                return Shares { den, num };
            }
            for m in over {
                capped[m] = true;
            }
        }
    }

    /// How far `load` is above member `m`'s share, in units of `1 / den`.
    fn excess(&self, m: usize, load: usize) -> i128 {
        (load as u128 * self.den) as i128 - self.num[m] as i128
    }

    /// The floor of every member's share.
    fn lows(&self) -> Vec<usize> {
        self.num.iter().map(|&n| (n / self.den) as usize).collect()
    }

    /// The ceiling of every member's share.
    fn highs(&self) -> Vec<usize> {
        self.num.iter().map(|&n| n.div_ceil(self.den) as usize).collect()
    }
}

/// Every partition's primaries as member indices, `width` per partition, in
/// preference order (the first leads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Primaries {
    width: usize,
    slots: Vec<u16>,
}

impl Primaries {
    /// Rows of `width` member indices each; `slots.len()` must be a multiple
    /// of `width`.
    pub(crate) fn from_rows(width: usize, slots: Vec<u16>) -> Primaries {
        Primaries { width, slots }
    }

    /// The walk's first `width` members of every partition that still let
    /// the row span [`Pool::required`] zones: a member of a zone already in
    /// the row is skipped while the slots left are only enough for the zones
    /// still missing.
    fn from_walk(walk: &Walk, pool: &Pool, width: usize) -> Primaries {
        let need = pool.required(width);
        let mut slots = Vec::with_capacity(walk.partitions() * width);
        let mut seen = Vec::with_capacity(width);
        for p in 0..walk.partitions() {
            let start = slots.len();
            seen.clear();
            for &m in walk.order(p) {
                let taken = slots.len() - start;
                if taken == width {
                    break;
                }
                let zone = pool.zones[usize::from(m)];
                let new_zone = !seen.contains(&zone);
                if new_zone || width - taken > need.saturating_sub(seen.len()) {
                    if new_zone {
                        seen.push(zone);
                    }
                    slots.push(m);
                }
            }
        }
        Primaries { width, slots }
    }

    pub(crate) fn width(&self) -> usize {
        self.width
    }

    pub(crate) fn partitions(&self) -> usize {
        self.slots.len().checked_div(self.width).unwrap_or(0)
    }

    pub(crate) fn row(&self, p: usize) -> &[u16] {
        &self.slots[p * self.width..][..self.width]
    }

    fn row_mut(&mut self, p: usize) -> &mut [u16] {
        &mut self.slots[p * self.width..][..self.width]
    }

    /// How many partitions each of `members` members is a primary of.
    fn loads(&self, members: usize) -> Vec<usize> {
        let mut load = vec![0; members];
        for &m in &self.slots {
            load[usize::from(m)] += 1;
        }
        load
    }

    /// How many partitions each of `members` members leads.
    fn leads(&self, members: usize) -> Vec<usize> {
        let mut load = vec![0; members];
        for p in 0..self.partitions() {
            load[usize::from(self.row(p)[0])] += 1;
        }
        load
    }

    /// Rewrites row `p` as `leader` followed by the other primaries in walk
    /// order.
    fn arrange(&mut self, walk: &Walk, p: usize, leader: u16) {
        let row = self.row_mut(p);
        row.sort_unstable_by_key(|&m| (m != leader, walk.rank(p, m)));
    }

    /// Maps every member index through `map` (renumbering after the member
    /// set changed).
    pub(crate) fn renumber(&mut self, map: impl Fn(u16) -> u16) {
        for m in &mut self.slots {
            *m = map(*m);
        }
    }
}

/// The balanced assignment of a ring built from scratch (see the module docs).
pub(crate) fn balanced(walk: &Walk, pool: &Pool, width: usize) -> Primaries {
    let mut primaries = Primaries::from_walk(walk, pool, width);
    let load = primaries.loads(walk.members());
    let shares = Shares::new(&pool.weights, walk.partitions() * width, walk.partitions());
    let target = level(&load, &shares, None);
    claim(walk, pool, &mut primaries, &load, &target);
    settle(pool, &mut primaries, &shares.lows(), &shares.highs(), &mut vec![false; walk.partitions()]);
    let partitions = primaries.partitions();
    for p in 0..partitions {
        let first = primaries.row(p).iter().copied().min_by_key(|&m| walk.rank(p, m));
        if let Some(first) = first {
            primaries.arrange(walk, p, first);
        }
    }
    lead(walk, pool, &mut primaries, &vec![true; partitions], false);
    primaries
}

/// The assignment after member `joined` joins: `old` renumbered for the new
/// member set, whose walk is `walk` (see the module docs).
///
/// `old` must have `min(N, S - 1)` primaries per partition; `width` is
/// `min(N, S)`, so either equal to it or one more.
pub(crate) fn join(walk: &Walk, pool: &Pool, old: &Primaries, width: usize, joined: u16) -> Primaries {
    let members = walk.members();
    let partitions = old.partitions();
    let mut primaries;
    let mut changed = vec![false; partitions];
    if width > old.width() {
        // Fewer members than replicas: everyone is a primary everywhere.
        let mut slots = Vec::with_capacity(partitions * width);
        for p in 0..partitions {
            slots.extend_from_slice(old.row(p));
            slots.push(joined);
        }
        primaries = Primaries::from_rows(width, slots);
        changed.fill(true);
    } else {
        primaries = old.clone();
        let load = primaries.loads(members);
        let shares = Shares::new(&pool.weights, partitions * width, partitions);
        let target = level(&load, &shares, Some(joined));
        changed = claim(walk, pool, &mut primaries, &load, &target);
        settle(pool, &mut primaries, &shares.lows(), &shares.highs(), &mut changed);
    }
    lead(walk, pool, &mut primaries, &changed, true);
    primaries
}

/// The assignment after member `left` leaves: `old` (still numbered for the
/// old member set) with `left` removed and every other index mapped through
/// `renumber`; `walk` is the new member set's walk (see the module docs).
///
/// `width` is `min(N, S)` for the new member set, so equal to `old.width()`
/// or one less.
pub(crate) fn leave(
    walk: &Walk,
    pool: &Pool,
    old: &Primaries,
    width: usize,
    left: u16,
    renumber: impl Fn(u16) -> u16,
) -> Primaries {
    let members = walk.members();
    let partitions = old.partitions();
    if width < old.width() {
        // Fewer members than replicas: everyone else stays a primary
        // everywhere.
        let mut slots = Vec::with_capacity(partitions * width);
        for p in 0..partitions {
            slots.extend(old.row(p).iter().filter(|&&m| m != left).map(|&m| renumber(m)));
        }
        let mut primaries = Primaries::from_rows(width, slots);
        lead(walk, pool, &mut primaries, &vec![true; partitions], true);
        return primaries;
    }

    // The slots `left` held, as (partition, position in the row).
    let held: Vec<(usize, usize)> =
        (0..partitions).filter_map(|p| Some((p, old.row(p).iter().position(|&m| m == left)?))).collect();
    let mut primaries = old.clone();
    // A placeholder for the vacant slots; nothing counts it.
    let vacant = u16::MAX;
    primaries.renumber(|m| if m == left { vacant } else { renumber(m) });

    // Each vacant slot may go to any member not already in its partition
    // that gives the row as many zones as any candidate does (up to the
    // required spread); the walk order is the first choice. The leaver held
    // at most one slot of a partition, so the choices are independent.
    let need = pool.required(width);
    let eligible: Vec<Vec<u16>> = held
        .iter()
        .map(|&(p, slot)| {
            let row = primaries.row(p);
            let candidates: Vec<(u16, usize)> = walk
                .order(p)
                .iter()
                .copied()
                .filter(|m| !row.contains(m))
                .map(|m| {
                    let others = row.iter().enumerate().filter(|&(i, _)| i != slot).map(|(_, &o)| o);
                    (m, pool.zones_of(others.chain([m])))
                })
                .collect();
            let best = candidates.iter().map(|&(_, z)| z).max().unwrap_or(0).min(need);
            candidates.into_iter().filter(|&(_, z)| z >= best).map(|(m, _)| m).collect()
        })
        .collect();
    let mut load = vec![0; members];
    for &m in &primaries.slots {
        if m != vacant {
            load[usize::from(m)] += 1;
        }
    }
    let mut assigned: Vec<u16> =
        eligible.iter().map(|list| list.first().copied().unwrap_or(vacant)).collect();
    for &m in &assigned {
        if m != vacant {
            load[usize::from(m)] += 1;
        }
    }
    let shares = Shares::new(&pool.weights, partitions * width, partitions);
    rebalance(&eligible, &mut assigned, &mut load, &shares.lows(), &shares.highs(), None);
    let mut changed = vec![false; partitions];
    for (&(p, slot), &m) in held.iter().zip(&assigned) {
        primaries.row_mut(p)[slot] = m;
        changed[p] = true;
    }
    lead(walk, pool, &mut primaries, &changed, true);
    primaries
}

/// The loads that balance `load` with the fewest unit moves: one at a time
/// from the member most above its share to the one most below it (ties:
/// lowest index) while the move brings them closer to their shares; with
/// equal weights, until the loads differ by at most one. With
/// `only = Some(r)`, `r` is the only member that receives.
///
/// A member never both gives and receives, so the result is at most `load`
/// for every giver and at least `load` for every receiver.
fn level(load: &[usize], shares: &Shares, only: Option<u16>) -> Vec<usize> {
    let mut target = load.to_vec();
    let unit = shares.den as i128;
    loop {
        let giver = (0..target.len())
            .filter(|&m| Some(m) != only.map(usize::from))
            .max_by_key(|&m| (shares.excess(m, target[m]), Reverse(m)));
        let taker = match only {
            Some(r) => Some(usize::from(r)),
            None => (0..target.len()).min_by_key(|&m| (shares.excess(m, target[m]), m)),
        };
        let (Some(giver), Some(taker)) = (giver, taker) else {
            break;
        };
        if target[giver] == 0
            || shares.excess(giver, target[giver]) <= shares.excess(taker, target[taker]) + unit
        {
            break;
        }
        target[giver] -= 1;
        target[taker] += 1;
    }
    target
}

/// Moves primary slots from members above their `target` to members below
/// it, each receiver in turn (lowest index first) taking the partitions it
/// prefers ([`Walk::preferred_by`]) that it is not in and where a giver with
/// slots to spare is a primary; it takes the slot of the giver whose
/// replacement widens the row's zone spread, then with the most to spare
/// (ties: the one latest in the walk). A slot whose replacement would narrow
/// the row's spread below the required one is never taken.
///
/// Every receiver reaches its target: while a receiver `u` is short, some
/// giver `o` has slots to spare, and then `o` is a primary of more partitions
/// than `u` (targets differ by at most one), so of some partition without
/// `u`; `u`'s pass met that partition with `o` in it and `u` not, and took
/// it. Returns which partitions changed.
fn claim(walk: &Walk, pool: &Pool, primaries: &mut Primaries, load: &[usize], target: &[usize]) -> Vec<bool> {
    let mut spare: Vec<usize> = load.iter().zip(target).map(|(&l, &t)| l.saturating_sub(t)).collect();
    let mut changed = vec![false; primaries.partitions()];
    for (u, (&l, &t)) in load.iter().zip(target).enumerate() {
        let mut short = t.saturating_sub(l);
        if short == 0 {
            continue;
        }
        // u < members <= 2^16.
        let u = u as u16;
        for p in walk.preferred_by(u) {
            let row = primaries.row_mut(p);
            if row.contains(&u) {
                continue;
            }
            let giver = (0..row.len())
                .filter(|&slot| spare[usize::from(row[slot])] > 0 && pool.allows(row, slot, u))
                .max_by_key(|&slot| {
                    (pool.widens(row, slot, u), spare[usize::from(row[slot])], walk.rank(p, row[slot]))
                });
            if let Some(slot) = giver {
                spare[usize::from(row[slot])] -= 1;
                row[slot] = u;
                changed[p] = true;
                short -= 1;
                if short == 0 {
                    break;
                }
            }
        }
    }
    changed
}

/// Brings every member's primary count within `lo..=hi` where [`claim`]
/// left one outside, by chains of slot moves ([`Search`]) over the whole
/// table: with unequal weights a receiver may already hold every partition a
/// giver with slots to spare is in, so a third member has to pass one on.
/// Each chain is checked before it is kept: no row may list a member twice or
/// lose zone spread. Marks in `changed` every row it changes.
fn settle(pool: &Pool, primaries: &mut Primaries, lo: &[usize], hi: &[usize], changed: &mut [bool]) {
    let members = lo.len();
    let width = primaries.width();
    let mut search = Search::new(members);
    let mut stuck = vec![false; members];
    loop {
        let mut load = primaries.loads(members);
        let over = (0..members)
            .filter(|&m| !stuck[m] && load[m] > hi[m])
            .max_by_key(|&m| (load[m] - hi[m], Reverse(m)));
        let under = (0..members)
            .filter(|&m| !stuck[m] && load[m] < lo[m])
            .max_by_key(|&m| (lo[m] - load[m], Reverse(m)));
        let Some((member, shedding)) = over.map(|m| (m, true)).or(under.map(|m| (m, false))) else {
            return;
        };
        // Every slot may go to a member not in its row that keeps the row's spread.
        let eligible: Vec<Vec<u16>> = (0..primaries.partitions())
            .flat_map(|p| {
                let row = primaries.row(p);
                (0..width).map(move |slot| {
                    // m < members <= 2^16.
                    (0..members as u16).filter(|&m| !row.contains(&m) && pool.allows(row, slot, m)).collect()
                })
            })
            .collect();
        let mut assigned = primaries.slots.clone();
        let moved = if shedding {
            search.shed(member, &eligible, &mut assigned, &mut load, hi, None)
        } else {
            search.lift(member, &candidates(&eligible, members), &mut assigned, &mut load, lo, None)
        };
        let next = Primaries::from_rows(width, assigned);
        let valid = (0..next.partitions()).all(|p| {
            let row = next.row(p);
            let before = primaries.row(p);
            let distinct = row.iter().enumerate().all(|(i, m)| !row[..i].contains(m));
            let need = pool.zones_of(before.iter().copied()).min(pool.required(width));
            distinct && pool.zones_of(row.iter().copied()) >= need
        });
        if moved && valid {
            for (p, flag) in changed.iter_mut().enumerate() {
                *flag |= next.row(p) != primaries.row(p);
            }
            *primaries = next;
        } else {
            stuck[member] = true;
        }
    }
}

/// Balances the leaders (see the module docs): the current first primary of
/// each partition is the starting choice, and the fewest changes an
/// augmenting-path search finds are made. With `prefer_changed`, paths
/// through partitions not marked in `changed` are used only when no other
/// path exists.
///
/// Every row whose leader changed, or that is marked in `changed`, is
/// rewritten as its leader followed by the other primaries in walk order;
/// other rows are left as they are.
fn lead(walk: &Walk, pool: &Pool, primaries: &mut Primaries, changed: &[bool], prefer_changed: bool) {
    let members = walk.members();
    let partitions = primaries.partitions();
    let eligible: Vec<Vec<u16>> = (0..partitions).map(|p| primaries.row(p).to_vec()).collect();
    let mut assigned: Vec<u16> = (0..partitions).map(|p| primaries.row(p)[0]).collect();
    let mut load = primaries.leads(members);
    let shares = Shares::new(&pool.weights, partitions, partitions);
    let preferred = prefer_changed.then_some(changed);
    rebalance(&eligible, &mut assigned, &mut load, &shares.lows(), &shares.highs(), preferred);
    for (p, &leader) in assigned.iter().enumerate() {
        if changed[p] || primaries.row(p)[0] != leader {
            primaries.arrange(walk, p, leader);
        }
    }
}

/// Reassigns items among their eligible members until every load is within
/// `lo..=hi`, if any assignment achieves it.
///
/// `eligible[i]` lists the members item `i` may go to, `assigned[i]` is its
/// current member (one of them), `load[m]` counts what member `m` carries,
/// including anything not at stake here. Two phases, each by augmenting
/// paths (breadth first, so the shortest: the fewest items change member):
/// first every member above `hi` sheds one item at a time along a chain that
/// ends at a member below `hi`; then every member below `lo` takes one item
/// at a time along a chain that starts at a member above `lo`. A member for
/// which no chain exists cannot be brought within bounds by any assignment
/// (the usual max-flow argument), so it is left as it is. The second phase
/// never pushes a load above `hi`.
///
/// With `preferred`, chains through items not marked in it are used only
/// when no chain avoids them.
fn rebalance(
    eligible: &[Vec<u16>],
    assigned: &mut [u16],
    load: &mut [usize],
    lo: &[usize],
    hi: &[usize],
    preferred: Option<&[bool]>,
) {
    let members = load.len();
    let candidates = candidates(eligible, members);
    let mut search = Search::new(members);

    let mut stuck = vec![false; members];
    while let Some(m) =
        (0..members).filter(|&m| !stuck[m] && load[m] > hi[m]).max_by_key(|&m| (load[m] - hi[m], Reverse(m)))
    {
        let moved = preferred.is_some_and(|only| search.shed(m, eligible, assigned, load, hi, Some(only)))
            || search.shed(m, eligible, assigned, load, hi, None);
        stuck[m] = !moved;
    }

    stuck.fill(false);
    while let Some(m) =
        (0..members).filter(|&m| !stuck[m] && load[m] < lo[m]).max_by_key(|&m| (lo[m] - load[m], Reverse(m)))
    {
        let moved = preferred.is_some_and(|only| search.lift(m, &candidates, assigned, load, lo, Some(only)))
            || search.lift(m, &candidates, assigned, load, lo, None);
        stuck[m] = !moved;
    }
}

/// For each of `members` members, the items it is eligible for: `eligible` inverted.
fn candidates(eligible: &[Vec<u16>], members: usize) -> Vec<Vec<usize>> {
    let mut candidates: Vec<Vec<usize>> = vec![Vec::new(); members];
    for (item, list) in eligible.iter().enumerate() {
        for &m in list {
            candidates[usize::from(m)].push(item);
        }
    }
    candidates
}

/// Scratch space for the breadth-first searches of [`rebalance`].
struct Search {
    /// For each member reached: the item that moves and the member on the
    /// other end of that move.
    parent: Vec<Option<(usize, usize)>>,
    visited: Vec<bool>,
    queue: VecDeque<usize>,
}

impl Search {
    fn new(members: usize) -> Search {
        Search { parent: vec![None; members], visited: vec![false; members], queue: VecDeque::new() }
    }

    fn start(&mut self, from: usize) {
        self.parent.fill(None);
        self.visited.fill(false);
        self.queue.clear();
        self.visited[from] = true;
        self.queue.push_back(from);
    }

    /// Moves one unit of load from `from` to a member below `hi`, along the
    /// shortest chain of items each moving to another of its eligible
    /// members. Returns whether a chain exists.
    fn shed(
        &mut self,
        from: usize,
        eligible: &[Vec<u16>],
        assigned: &mut [u16],
        load: &mut [usize],
        hi: &[usize],
        only: Option<&[bool]>,
    ) -> bool {
        let mut owned: Vec<Vec<usize>> = vec![Vec::new(); load.len()];
        for (item, &m) in assigned.iter().enumerate() {
            owned[usize::from(m)].push(item);
        }
        self.start(from);
        while let Some(v) = self.queue.pop_front() {
            for &item in &owned[v] {
                if only.is_some_and(|only| !only[item]) {
                    continue;
                }
                for &w in &eligible[item] {
                    let w = usize::from(w);
                    if self.visited[w] {
                        continue;
                    }
                    self.visited[w] = true;
                    self.parent[w] = Some((item, v));
                    if load[w] < hi[w] {
                        // Each item on the chain moves one step towards `w`.
                        let mut at = w;
                        while let Some((item, giver)) = self.parent[at] {
                            // at < members <= 2^16.
                            assigned[item] = at as u16;
                            at = giver;
                        }
                        load[w] += 1;
                        load[from] -= 1;
                        return true;
                    }
                    self.queue.push_back(w);
                }
            }
        }
        false
    }

    /// Moves one unit of load to `to` from a member above `lo`, along the
    /// shortest chain of items each taken by another of its eligible
    /// members. Returns whether a chain exists.
    fn lift(
        &mut self,
        to: usize,
        candidates: &[Vec<usize>],
        assigned: &mut [u16],
        load: &mut [usize],
        lo: &[usize],
        only: Option<&[bool]>,
    ) -> bool {
        self.start(to);
        while let Some(v) = self.queue.pop_front() {
            for &item in &candidates[v] {
                if only.is_some_and(|only| !only[item]) {
                    continue;
                }
                let w = usize::from(assigned[item]);
                if self.visited[w] {
                    continue;
                }
                self.visited[w] = true;
                self.parent[w] = Some((item, v));
                if load[w] > lo[w] {
                    // Each item on the chain moves one step towards `to`.
                    let mut at = w;
                    while let Some((item, taker)) = self.parent[at] {
                        // taker < members <= 2^16.
                        assigned[item] = taker as u16;
                        at = taker;
                    }
                    load[w] -= 1;
                    load[to] += 1;
                    return true;
                }
                self.queue.push_back(w);
            }
        }
        false
    }
}
