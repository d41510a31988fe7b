//! Which key and which operation comes next: uniform keys, a fixed read/write mix.

use crate::cli::Workload;

/// One operation of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A read.
    Get,
    /// A blind write.
    Put,
    /// A read, then a write with the read's context.
    Update,
}

/// Picks keys and operations for one client. Deterministic for a seed, so two clients
/// with different seeds do not walk the keys in step.
#[derive(Debug, Clone)]
pub struct Picker {
    workload: Workload,
    read_ratio: f64,
    keys: u64,
    rng: SplitMix64,
}

impl Picker {
    /// A picker over `keys` keys; `read_ratio` matters for [`Workload::Mixed`] only.
    pub fn new(workload: Workload, read_ratio: f64, keys: u64, seed: u64) -> Picker {
        Picker { workload, read_ratio, keys: keys.max(1), rng: SplitMix64(seed) }
    }

    /// The next operation and the index of its key.
    pub fn pick(&mut self) -> (Op, u64) {
        let op = match self.workload {
            Workload::Get => Op::Get,
            Workload::Put => Op::Put,
            Workload::Update => Op::Update,
            Workload::Mixed if self.rng.unit() < self.read_ratio => Op::Get,
            Workload::Mixed => Op::Put,
        };
        (op, self.rng.below(self.keys))
    }
}

/// The name of key number `index`: `k` and ten digits, so names sort like their numbers.
pub fn key_name(index: u64) -> String {
    format!("k{index:010}")
}

/// SplitMix64 (Steele, Lea and Flood 2014): a tiny, fast generator, plenty for choosing
/// keys uniformly; not for anything that must be unpredictable.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-40 for our n).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_fixed_width() {
        assert_eq!(key_name(0), "k0000000000");
        assert_eq!(key_name(99_999), "k0000099999");
    }

    #[test]
    fn keys_stay_in_range_and_cover_it() {
        let mut p = Picker::new(Workload::Get, 0.5, 10, 7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let (op, key) = p.pick();
            assert_eq!(op, Op::Get);
            seen[key as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }

    #[test]
    fn mixed_follows_the_read_ratio() {
        let reads = |ratio: f64| {
            let mut p = Picker::new(Workload::Mixed, ratio, 100, 42);
            (0..10_000).filter(|_| p.pick().0 == Op::Get).count()
        };
        assert_eq!(reads(0.0), 0);
        assert_eq!(reads(1.0), 10_000);
        assert!((4_700..5_300).contains(&reads(0.5)));
        let mut p = Picker::new(Workload::Update, 0.5, 100, 1);
        assert_eq!(p.pick().0, Op::Update);
    }
}
