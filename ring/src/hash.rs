//! The stable key hash and the key → partition mapping.
//!
//! Every node and every client must agree on these functions forever: a change
//! moves every key to another partition. They are frozen by golden-value tests.

use xxhash_rust::xxh3::{Xxh3Default, xxh3_64};

/// Inputs up to this many bytes (`bucket ‖ 0x00 ‖ key`) are hashed from a stack
/// buffer in one shot; longer ones go through the streaming hasher. Both paths
/// give the same value, and neither allocates.
const INLINE_INPUT: usize = 256;

/// Stable 64-bit hash of a key.
///
/// Defined as XXH3-64 with seed 0 of the bytes `bucket ‖ 0x00 ‖ key`. This
/// definition is frozen forever: it decides which partition, and so which
/// nodes, hold a key, and clients compute it too. The 0x00 separator keeps
/// `("ab", "c")` and `("a", "bc")` apart as long as bucket names hold no 0x00.
///
/// Never allocates.
#[must_use]
pub fn key_hash(bucket: &[u8], key: &[u8]) -> u64 {
    let len = bucket.len() + 1 + key.len();
    if len <= INLINE_INPUT {
        let mut buf = [0u8; INLINE_INPUT];
        buf[..bucket.len()].copy_from_slice(bucket);
        // buf[bucket.len()] is already the 0x00 separator.
        buf[bucket.len() + 1..len].copy_from_slice(key);
        xxh3_64(&buf[..len])
    } else {
        let mut hasher = Xxh3Default::new();
        hasher.update(bucket);
        hasher.update(&[0x00]);
        hasher.update(key);
        hasher.digest()
    }
}

/// The partition of a hash: its top `k` bits, where `partitions == 2^k`.
///
/// With `partitions` 0 or 1 (k = 0) the answer is always 0. `partitions` is
/// meant to be a power of two (see [`RingParams::validate`]); for any other
/// value `k` is `floor(log2(partitions))`, so the result is still below
/// `partitions` and the function never panics.
///
/// [`RingParams::validate`]: crate::RingParams::validate
#[must_use]
#[inline]
pub fn partition_of(hash: u64, partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    let k = partitions.ilog2(); // 1..=31
    // k <= 31, so the shifted value fits in a u32.
    (hash >> (64 - k)) as u32
}

/// The partition of a key: `partition_of(key_hash(bucket, key), partitions)`.
#[must_use]
#[inline]
pub fn key_partition(bucket: &[u8], key: &[u8], partitions: u32) -> u32 {
    partition_of(key_hash(bucket, key), partitions)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference definition, allocation and all.
    fn reference(bucket: &[u8], key: &[u8]) -> u64 {
        let mut input = bucket.to_vec();
        input.push(0x00);
        input.extend_from_slice(key);
        xxh3_64(&input)
    }

    #[test]
    fn key_hash_golden_values() {
        // Frozen forever: a change here moves every key in every cluster.
        // Cross-checked against the reference C implementation of XXH3.
        assert_eq!(key_hash(b"", b""), 0xc44b_dff4_074e_ecdb);
        assert_eq!(key_hash(b"users", b"alice"), 0x77ed_47d6_eeed_28ef);
        assert_eq!(key_hash(b"photos", &[0xff, 0x00, 0x7f]), 0x53fe_6e18_d407_0d82);
        assert_eq!(key_hash(b"b", &[b'k'; 1000]), 0xe0fd_8725_9d3b_39e5);
    }

    #[test]
    fn both_paths_agree_at_the_inline_boundary() {
        for len in INLINE_INPUT - 3..INLINE_INPUT + 3 {
            let key = vec![0xa5; len - 3];
            assert_eq!(key_hash(b"ab", &key), reference(b"ab", &key), "input length {len}");
        }
    }

    #[test]
    fn separator_keeps_bucket_and_key_apart() {
        assert_ne!(key_hash(b"ab", b"c"), key_hash(b"a", b"bc"));
        assert_ne!(key_hash(b"", b"a"), key_hash(b"a", b""));
    }

    #[test]
    fn partition_of_edge_cases() {
        // k = 0: everything is partition 0.
        assert_eq!(partition_of(u64::MAX, 1), 0);
        assert_eq!(partition_of(u64::MAX, 0), 0);
        // k = 1: the top bit only.
        assert_eq!(partition_of(1 << 63, 2), 1);
        assert_eq!(partition_of((1 << 63) - 1, 2), 0);
        // k = 6 (the default 64 partitions).
        assert_eq!(partition_of(0xfc00_0000_0000_0000, 64), 63);
        assert_eq!(partition_of(0x0400_0000_0000_0000, 64), 1);
        assert_eq!(partition_of(0x03ff_ffff_ffff_ffff, 64), 0);
        // k = 16 (the largest valid ring).
        assert_eq!(partition_of(u64::MAX, 65536), 65535);
        assert_eq!(partition_of(0x1234_5678_9abc_def0, 65536), 0x1234);
        assert_eq!(partition_of(0, 65536), 0);
        // Not a power of two: floor(log2), still in range, no panic.
        assert_eq!(partition_of(u64::MAX, 100), 63);
        assert_eq!(partition_of(u64::MAX, u32::MAX), (1 << 31) - 1);
    }

    #[test]
    fn key_partition_is_the_top_bits_of_key_hash() {
        let h = key_hash(b"users", b"alice");
        assert_eq!(key_partition(b"users", b"alice", 64), (h >> 58) as u32);
        assert_eq!(key_partition(b"users", b"alice", 1), 0);
    }

    proptest! {
        #[test]
        fn key_hash_matches_the_definition(
            bucket in proptest::collection::vec(any::<u8>(), 0..300),
            key in proptest::collection::vec(any::<u8>(), 0..1400),
        ) {
            prop_assert_eq!(key_hash(&bucket, &key), reference(&bucket, &key));
        }

        #[test]
        fn partition_is_in_range(hash in any::<u64>(), k in 0u32..=16) {
            let partitions = 1u32 << k;
            prop_assert!(partition_of(hash, partitions) < partitions);
        }
    }
}
