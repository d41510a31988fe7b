//! The causal context token: a [`VersionVector`] as an opaque, URL-safe string.
//!
//! Layout before base64url (no padding):
//! `0x01 (format) ‖ varint count ‖ count × (actor u64 LE ‖ varint counter) ‖ crc32 LE`,
//! the CRC covering everything before it. A token that does not decode, has trailing
//! bytes or fails its checksum is rejected, never half-read.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Error;
use crate::causal::{Actor, Dot, VersionVector};

const TOKEN_FORMAT: u8 = 1;
/// No real history has more actors than this; it bounds the work a hostile token causes.
const MAX_ACTORS: u64 = 4096;

/// Encodes a context for the `X-Causal-Context` header.
pub fn encode_context(vv: &VersionVector) -> String {
    let mut buf = Vec::with_capacity(2 + vv.len() * 10 + 4);
    buf.push(TOKEN_FORMAT);
    put_varint(&mut buf, vv.len() as u64);
    for dot in vv.iter() {
        buf.extend_from_slice(&dot.actor.0.to_le_bytes());
        put_varint(&mut buf, dot.counter);
    }
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    URL_SAFE_NO_PAD.encode(buf)
}

/// Decodes a token made by [`encode_context`].
///
/// # Errors
/// [`Error::BadContext`] with a reason a person can act on.
pub fn decode_context(token: &str) -> Result<VersionVector, Error> {
    let bad = |reason: &str| Error::BadContext(reason.to_string());
    let raw = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| bad("not base64url"))?;
    if raw.len() < 1 + 1 + 4 {
        return Err(bad("too short"));
    }
    let (body, crc) = raw.split_at(raw.len() - 4);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != crc {
        return Err(bad("checksum mismatch"));
    }
    if body[0] != TOKEN_FORMAT {
        return Err(bad("unknown token format"));
    }
    let mut rest = &body[1..];
    let count = take_varint(&mut rest).ok_or_else(|| bad("truncated"))?;
    if count > MAX_ACTORS {
        return Err(bad("too many actors"));
    }
    let mut vv = VersionVector::new();
    for _ in 0..count {
        if rest.len() < 8 {
            return Err(bad("truncated"));
        }
        let (actor, tail) = rest.split_at(8);
        rest = tail;
        let mut a = [0u8; 8];
        a.copy_from_slice(actor);
        let counter = take_varint(&mut rest).ok_or_else(|| bad("truncated"))?;
        vv.add(Dot { actor: Actor(u64::from_le_bytes(a)), counter });
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(vv)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for (i, &b) in input.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            *input = &input[i + 1..];
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vv_strategy() -> impl Strategy<Value = VersionVector> {
        proptest::collection::vec((any::<u64>(), 1..u64::MAX), 0..8)
            .prop_map(|dots| dots.into_iter().map(|(a, c)| Dot { actor: Actor(a), counter: c }).collect())
    }

    proptest! {
        #[test]
        fn round_trips(vv in vv_strategy()) {
            let token = encode_context(&vv);
            prop_assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(decode_context(&token).expect("valid"), vv);
        }

        #[test]
        fn a_mangled_token_is_rejected(vv in vv_strategy(), pos in any::<prop::sample::Index>(), flip in 1..=255u8) {
            let token = encode_context(&vv);
            let mut raw = URL_SAFE_NO_PAD.decode(&token).expect("valid");
            let i = pos.index(raw.len());
            raw[i] ^= flip;
            let mangled = URL_SAFE_NO_PAD.encode(raw);
            prop_assert!(decode_context(&mangled).is_err());
        }

        #[test]
        fn garbage_never_panics(s in ".{0,64}") {
            let _ = decode_context(&s);
        }
    }

    #[test]
    fn empty_context_is_short() {
        let token = encode_context(&VersionVector::new());
        assert!(token.len() <= 10, "{token}");
        assert!(decode_context(&token).expect("valid").is_empty());
    }
}
