//! The on-disk record: `crc32 (LE) ‖ format version ‖ postcard(Object)`.
//!
//! The CRC covers the version byte and the payload, so a flipped bit anywhere after it
//! (or in it) is caught. A record that fails any check is corruption: it is reported,
//! never returned as data.

use crate::causal::Object;

/// The record format written today. Readers reject versions they do not know.
pub const RECORD_FORMAT: u8 = 1;

/// Why a record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFault {
    Truncated,
    Checksum,
    UnknownFormat(u8),
    Payload,
}

impl std::fmt::Display for RecordFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordFault::Truncated => write!(f, "record shorter than its header"),
            RecordFault::Checksum => write!(f, "crc32 mismatch"),
            RecordFault::UnknownFormat(v) => write!(f, "unknown record format {v}"),
            RecordFault::Payload => write!(f, "payload does not decode"),
        }
    }
}

pub fn encode(object: &Object) -> Vec<u8> {
    let mut buf = vec![0u8; 4];
    buf.push(RECORD_FORMAT);
    // Serialising plain data into a Vec cannot fail.
    let buf = postcard::to_extend(object, buf).unwrap_or_else(|_| unreachable!("postcard into Vec"));
    let mut buf = buf;
    let crc = crc32fast::hash(&buf[4..]);
    buf[..4].copy_from_slice(&crc.to_le_bytes());
    buf
}

pub fn decode(bytes: &[u8]) -> Result<Object, RecordFault> {
    if bytes.len() < 5 {
        return Err(RecordFault::Truncated);
    }
    let crc = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if crc32fast::hash(&bytes[4..]) != crc {
        return Err(RecordFault::Checksum);
    }
    if bytes[4] != RECORD_FORMAT {
        return Err(RecordFault::UnknownFormat(bytes[4]));
    }
    postcard::from_bytes(&bytes[5..]).map_err(|_| RecordFault::Payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::causal::{Actor, Content, VersionVector};
    use proptest::prelude::*;

    fn object(values: &[Vec<u8>]) -> Object {
        let mut obj = Object::new();
        for (i, v) in values.iter().enumerate() {
            let content = if v.is_empty() {
                Content::Tombstone { deleted_at_ms: 7 }
            } else {
                Content::value("application/x", v.clone())
            };
            obj.update(&VersionVector::new(), Actor(i as u64 % 3), content).expect("few siblings");
        }
        obj
    }

    proptest! {
        #[test]
        fn round_trips(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..6)) {
            let obj = object(&values);
            prop_assert_eq!(decode(&encode(&obj)).expect("valid"), obj);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            // The same bytes behind a valid checksum reach the payload decoder.
            let mut framed = crc32fast::hash(&bytes).to_le_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            let _ = decode(&framed);
        }

        /// What a checksum cannot catch: a change written with a matching CRC (a bug, or
        /// a hand-edited file). It is refused, or decodes to a canonical object.
        #[test]
        fn a_mutation_behind_a_valid_checksum_is_refused_or_canonical(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..32), 1..6),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = encode(&object(&values));
            for (pos, byte) in edits {
                let i = 5 + pos.index(bytes.len() - 5);
                bytes[i] = byte;
            }
            let crc = crc32fast::hash(&bytes[4..]);
            bytes[..4].copy_from_slice(&crc.to_le_bytes());
            if let Ok(obj) = decode(&bytes) {
                let siblings = obj.siblings();
                prop_assert!(siblings.windows(2).all(|w| w[0].dot < w[1].dot));
                prop_assert!(siblings.iter().all(|s| s.dot.counter > 0 && obj.context().covers(s.dot)));
                // And it still takes part in merges and updates.
                let mut other = obj.clone();
                other.merge(&obj);
                prop_assert_eq!(other, obj);
            }
        }

        #[test]
        fn a_flipped_bit_is_caught(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..6), pos in any::<prop::sample::Index>(), bit in 0..8u8) {
            let mut bytes = encode(&object(&values));
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            prop_assert!(decode(&bytes).is_err());
        }
    }
}
