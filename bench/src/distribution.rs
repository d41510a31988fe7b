//! Which key an operation touches: YCSB's request distributions.
//!
//! - uniform: every record equally likely;
//! - zipfian: YCSB's `ScrambledZipfianGenerator`, a zipfian draw (constant 0.99) over ten
//!   billion items hashed with FNV-1a 64 and taken modulo the record count, so popular
//!   keys are spread over the key space instead of clustered at its start;
//! - latest: YCSB's `SkewedLatestGenerator`, the last inserted key minus a zipfian draw
//!   over the keys so far, so recent inserts are the most read.
//!
//! The zipfian draws follow YCSB's `ZipfianGenerator` (Gray et al., "Quickly generating
//! billion-record synthetic databases", SIGMOD 1994). Its zeta sums cost one `powf` per
//! item, so they are computed once per run ([`Zipfian::new`]) and copied to every client;
//! a client extends its copy only by the items inserted since it last looked.

use serde::Serialize;

/// YCSB's zipfian constant, `zipfianconstant` = 0.99.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

/// The item count YCSB's scrambled zipfian draws from before hashing.
const SCRAMBLED_ITEMS: u64 = 10_000_000_000;

/// zeta(10^10, 0.99), as YCSB hard-codes it for the scrambled generator.
const SCRAMBLED_ZETAN: f64 = 26.469_028_201_783_02;

/// A request distribution, as `--distribution` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Every record equally likely.
    Uniform,
    /// A few records are hot (zipfian, constant 0.99), scattered over the key space.
    Zipfian,
    /// The most recently inserted records are hot.
    Latest,
}

impl Distribution {
    /// The name `--distribution` takes.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Zipfian => "zipfian",
            Distribution::Latest => "latest",
        }
    }
}

/// `sum_{i=from+1}^{to} 1/i^theta`, added to `partial` (zeta(to) given zeta(from)).
pub fn zeta_from(from: u64, to: u64, theta: f64, partial: f64) -> f64 {
    (from..to).fold(partial, |sum, i| sum + 1.0 / ((i + 1) as f64).powf(theta))
}

/// zeta(n, theta) = `sum_{i=1}^{n} 1/i^theta`.
pub fn zeta(n: u64, theta: f64) -> f64 {
    zeta_from(0, n, theta, 0.0)
}

/// Zipfian draws over `0..items`: item 0 the most popular, item i with probability
/// proportional to `1/(i+1)^theta`. Copy it to each client; [`Zipfian::next`] takes
/// the client's own uniform number, so nothing is shared while drawing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    zeta2: f64,
    eta: f64,
}

impl Zipfian {
    /// Zipfian over `items` items (at least one) with constant `theta` in (0, 1);
    /// computes zeta(items, theta), one `powf` per item.
    pub fn new(items: u64, theta: f64) -> Zipfian {
        let items = items.max(1);
        Zipfian::with_zeta(items, theta, zeta(items, theta))
    }

    /// Zipfian over `items` items given their zeta (YCSB's precomputed constants).
    pub fn with_zeta(items: u64, theta: f64, zetan: f64) -> Zipfian {
        let zeta2 = zeta(2, theta);
        let mut z = Zipfian { items, theta, alpha: 1.0 / (1.0 - theta), zetan, zeta2, eta: 0.0 };
        z.eta = z.eta_for(items);
        z
    }

    fn eta_for(&self, items: u64) -> f64 {
        (1.0 - (2.0 / items as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2 / self.zetan)
    }

    /// How many items it draws from.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Grows the item count to `items` (never shrinks it), extending zeta by the new
    /// items only.
    pub fn grow_to(&mut self, items: u64) {
        if items > self.items {
            self.zetan = zeta_from(self.items, items, self.theta, self.zetan);
            self.items = items;
            self.eta = self.eta_for(items);
        }
    }

    /// The item for uniform `u` in `[0, 1)`: Gray et al.'s inversion, in `0..items`.
    pub fn next(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let item = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        item.min(self.items - 1)
    }
}

/// FNV-1a 64 of the eight little-endian bytes of `value`, made non-negative as a Java
/// `long` would be by `Math.abs`: YCSB's `Utils.fnvhash64`.
pub fn fnv1a64(value: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value.to_le_bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash as i64).wrapping_abs() as u64
}

/// YCSB's `ScrambledZipfianGenerator` over `0..records`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScrambledZipfian {
    zipfian: Zipfian,
    records: u64,
}

impl ScrambledZipfian {
    /// Over `records` records (at least one). With YCSB's constant 0.99 the zeta of its ten
    /// billion items is a constant, so this is cheap.
    pub fn new(records: u64) -> ScrambledZipfian {
        let zipfian = Zipfian::with_zeta(SCRAMBLED_ITEMS, ZIPFIAN_CONSTANT, SCRAMBLED_ZETAN);
        ScrambledZipfian { zipfian, records: records.max(1) }
    }

    /// The record for uniform `u` in `[0, 1)`.
    pub fn next(&self, u: f64) -> u64 {
        fnv1a64(self.zipfian.next(u)) % self.records
    }
}

/// YCSB's `SkewedLatestGenerator`: the newest key minus a zipfian draw over the keys
/// so far. Each client has its own, grown as inserts are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latest {
    zipfian: Zipfian,
}

impl Latest {
    /// Starting from `records` keys, with zeta(records) computed here: build one and copy
    /// it to every client.
    pub fn new(records: u64) -> Latest {
        Latest { zipfian: Zipfian::new(records, ZIPFIAN_CONSTANT) }
    }

    /// A key in `0..count` (count = keys readable now, at least one), skewed to
    /// `count - 1`.
    pub fn next(&mut self, count: u64, u: f64) -> u64 {
        let count = count.max(1);
        self.zipfian.grow_to(count);
        let back = self.zipfian.next(u) % count;
        count - 1 - back
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform numbers in [0, 1) from a fixed sequence (SplitMix64).
    fn uniforms(seed: u64) -> impl Iterator<Item = f64> {
        let mut rng = crate::workload::SplitMix64::new(seed);
        std::iter::repeat_with(move || rng.unit())
    }

    #[test]
    fn zeta_is_the_harmonic_sum() {
        assert!((zeta(1, 0.99) - 1.0).abs() < 1e-12);
        assert!((zeta(2, 0.99) - (1.0 + 0.5f64.powf(0.99))).abs() < 1e-12);
        assert!((zeta(3, 1.0) - (1.0 + 0.5 + 1.0 / 3.0)).abs() < 1e-12);
        assert!((zeta_from(2, 3, 1.0, zeta(2, 1.0)) - zeta(3, 1.0)).abs() < 1e-12);
    }

    #[test]
    fn the_top_item_gets_its_zipfian_share() {
        let z = Zipfian::new(1000, ZIPFIAN_CONSTANT);
        let n = 200_000;
        let mut counts = vec![0u32; 1000];
        for u in uniforms(1).take(n) {
            counts[z.next(u) as usize] += 1;
        }
        let expected = 1.0 / zeta(1000, ZIPFIAN_CONSTANT);
        let share = f64::from(counts[0]) / n as f64;
        assert!((share - expected).abs() < 0.01, "rank 1 got {share:.4}, expected {expected:.4}");
        // Rank 2 gets 1/2^theta of rank 1's share.
        let second = f64::from(counts[1]) / n as f64;
        assert!((second - expected * 0.5f64.powf(0.99)).abs() < 0.01, "rank 2 got {second:.4}");
        assert!(counts[0] > counts[10] && counts[10] > counts[500], "{:?}", &counts[..12]);
    }

    #[test]
    fn growing_is_the_same_as_starting_bigger() {
        let mut grown = Zipfian::new(1000, ZIPFIAN_CONSTANT);
        grown.grow_to(1500);
        let fresh = Zipfian::new(1500, ZIPFIAN_CONSTANT);
        assert!((grown.zetan - fresh.zetan).abs() < 1e-9);
        assert!((grown.eta - fresh.eta).abs() < 1e-12);
        grown.grow_to(10);
        assert_eq!(grown.items(), 1500, "never shrinks");
    }

    #[test]
    fn fnv_matches_ycsb() {
        // FNV-1a 64 of eight zero bytes, as YCSB's fnvhash64(0) computes it.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for _ in 0..8 {
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        assert_eq!(fnv1a64(0), (h as i64).wrapping_abs() as u64);
        assert_ne!(fnv1a64(1), fnv1a64(2));
        assert!(fnv1a64(u64::MAX) <= i64::MAX as u64 + 1);
    }

    #[test]
    fn scrambled_keys_cover_the_range_and_stay_skewed() {
        let z = ScrambledZipfian::new(100);
        let mut counts = vec![0u32; 100];
        for u in uniforms(2).take(100_000) {
            counts[z.next(u) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 0), "every record is drawn: {counts:?}");
        let max = *counts.iter().max().expect("counts");
        let min = *counts.iter().min().expect("counts");
        assert!(max > 3 * min, "skewed: max {max}, min {min}");
        // The hot record is not simply record 0: hashing scatters popularity.
        let hottest = counts.iter().position(|&c| c == max).expect("max");
        assert_eq!(hottest as u64, fnv1a64(0) % 100);
    }

    #[test]
    fn latest_favours_recent_inserts() {
        let mut latest = Latest::new(1000);
        let mut recent = 0;
        let n = 50_000;
        for u in uniforms(3).take(n) {
            let k = latest.next(1000, u);
            assert!(k < 1000);
            recent += usize::from(k >= 990);
        }
        // The newest ten keys of a thousand get about 40% of the reads with theta 0.99.
        assert!(recent * 10 > n * 3, "{recent} of {n} went to the newest ten keys");
        // After inserts, the new keys are the hot ones.
        let newest = uniforms(4).take(10_000).filter(|&u| latest.next(2000, u) >= 1990).count();
        assert!(newest > 3000, "{newest}");
        assert_eq!(latest.next(1, 0.5), 0);
    }
}
