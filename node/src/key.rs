//! The one name of a stored object: partition, bucket and key, validated once.
//!
//! Every way into the node — a client's path, a peer's message, a hint from disk —
//! builds a [`Key`] through [`Key::new`] (peer messages through its `Deserialize`),
//! so the same rules hold whoever sent the bytes: a bucket is 1 to 255 bytes of
//! `[A-Za-z0-9._-]`, a key 1 to 1024 bytes of anything.

use bytes::Bytes;
use quorumkv_storage::ObjectKey;
use serde::{Deserialize, Serialize};

/// Longest bucket name, in bytes (the stored layout gives its length one byte).
pub const MAX_BUCKET_BYTES: usize = 255;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why a bucket or key was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a bucket name is 1 to 255 characters of A-Z, a-z, 0-9, '.', '_' and '-', and not `.` or `..`")]
    Bucket,
    #[error("a key is 1 to {MAX_KEY_BYTES} bytes after percent-decoding; this one is {0}")]
    Key(usize),
    #[error("partition {partition} is not the partition of this key ({expected})")]
    Partition { partition: u32, expected: u32 },
}

/// A validated object name. Cheap to clone (the bytes are shared).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    partition: u32,
    bucket: Bytes,
    key: Bytes,
}

impl Key {
    /// Checks `bucket` and `key` and places them in their partition of `partitions`.
    ///
    /// # Errors
    /// [`KeyError::Bucket`] or [`KeyError::Key`] for a name outside the rules above.
    pub fn new(partitions: u32, bucket: Bytes, key: Bytes) -> Result<Key, KeyError> {
        check_bucket(&bucket)?;
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(KeyError::Key(key.len()));
        }
        let partition = quorumkv_ring::key_partition(&bucket, &key, partitions);
        Ok(Key { partition, bucket, key })
    }

    /// Like [`Key::new`], for a key that arrived with its partition: refused unless the
    /// partition is the key's own, so a peer cannot file a key where reads never look.
    ///
    /// # Errors
    /// As [`Key::new`], and [`KeyError::Partition`].
    pub fn placed(partitions: u32, partition: u32, bucket: Bytes, key: Bytes) -> Result<Key, KeyError> {
        let k = Key::new(partitions, bucket, key)?;
        if k.partition != partition {
            return Err(KeyError::Partition { partition, expected: k.partition });
        }
        Ok(k)
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    pub fn bucket(&self) -> &Bytes {
        &self.bucket
    }

    pub fn key(&self) -> &Bytes {
        &self.key
    }

    pub fn as_object_key(&self) -> ObjectKey<'_> {
        ObjectKey { partition: self.partition, bucket: &self.bucket, key: &self.key }
    }
}

/// Checks a bucket name against the rules above.
///
/// # Errors
/// [`KeyError::Bucket`].
pub fn check_bucket(bucket: &[u8]) -> Result<(), KeyError> {
    let ok_char = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    // `.` and `..` are path segments proxies and clients normalise away.
    if bucket.is_empty()
        || bucket.len() > MAX_BUCKET_BYTES
        || !bucket.iter().all(ok_char)
        || bucket == b"."
        || bucket == b".."
    {
        return Err(KeyError::Bucket);
    }
    Ok(())
}

/// On the wire a key is `(partition, bucket, key)`. Decoding checks the names but not
/// the partition (the receiver knows the partition count: see [`Key::placed`]).
#[derive(Serialize, Deserialize)]
struct WireKey {
    partition: u32,
    bucket: Bytes,
    key: Bytes,
}

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireKey { partition: self.partition, bucket: self.bucket.clone(), key: self.key.clone() }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let w = WireKey::deserialize(d)?;
        check_bucket(&w.bucket).map_err(serde::de::Error::custom)?;
        if w.key.is_empty() || w.key.len() > MAX_KEY_BYTES {
            return Err(serde::de::Error::custom(KeyError::Key(w.key.len())));
        }
        Ok(Key { partition: w.partition, bucket: w.bucket, key: w.key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn names_are_checked_once_for_every_sender() {
        assert!(Key::new(64, b(b"users-v1.x_y"), b(b"a/b\0")).is_ok());
        assert_eq!(Key::new(64, b(b""), b(b"k")), Err(KeyError::Bucket));
        assert_eq!(Key::new(64, b(b"a/b"), b(b"k")), Err(KeyError::Bucket));
        assert_eq!(Key::new(64, b(b"."), b(b"k")), Err(KeyError::Bucket));
        assert_eq!(Key::new(64, b(b".."), b(b"k")), Err(KeyError::Bucket));
        assert!(Key::new(64, b(b"..."), b(b"k")).is_ok());
        assert_eq!(Key::new(64, b(&[b'b'; 256]), b(b"k")), Err(KeyError::Bucket));
        assert!(Key::new(64, b(&[b'b'; 255]), b(b"k")).is_ok());
        assert_eq!(Key::new(64, b(b"b"), b(b"")), Err(KeyError::Key(0)));
        assert_eq!(Key::new(64, b(b"b"), b(&[b'k'; 1025])), Err(KeyError::Key(1025)));
    }

    #[test]
    fn a_key_from_the_wire_is_checked_and_placed() {
        let k = Key::new(64, b(b"users"), b(b"alice")).expect("valid");
        let bytes = postcard::to_allocvec(&k).expect("encode");
        let back: Key = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, k);
        let forged = WireKey { partition: 0, bucket: b(&[b'b'; 300]), key: b(b"k") };
        let bytes = postcard::to_allocvec(&forged).expect("encode");
        assert!(postcard::from_bytes::<Key>(&bytes).is_err(), "a 300-byte bucket is refused on decode");
        let wrong = (k.partition() + 1) % 64;
        assert!(matches!(
            Key::placed(64, wrong, k.bucket().clone(), k.key().clone()),
            Err(KeyError::Partition { .. })
        ));
    }
}
