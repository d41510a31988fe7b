//! The causal context token: a [`VersionVector`] as an opaque, URL-safe string that only
//! the cluster can make, valid for one key only.
//!
//! Layout before base64url (no padding):
//! `0x02 (format) ‖ varint count ‖ count × (actor u64 LE ‖ varint counter) ‖ tag[16]`,
//! the tag being the first 16 bytes of HMAC-SHA256 under the token key over
//! `bucket length u16 LE ‖ bucket ‖ key length u32 LE ‖ key ‖ everything before the tag`.
//! The key is derived from the cluster secret, so every node accepts every other node's
//! tokens and tokens survive restarts; a token made up by a client, altered, or issued
//! for another key is rejected, never half-read. (Format 1 carried a CRC, which anyone
//! could compute.)

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Error;
use crate::causal::{Actor, Dot, VersionVector};

const TOKEN_FORMAT: u8 = 2;
const TAG_BYTES: usize = 16;
/// No real history has more actors than this; it bounds the work a token causes.
const MAX_ACTORS: u64 = 4096;

/// The key context tokens are signed with: 32 bytes derived from the cluster secret.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    pub fn new(key: [u8; 32]) -> TokenKey {
        TokenKey(key)
    }

    fn tag(&self, bucket: &[u8], key: &[u8], body: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        // Names are bounded (255 and 1024 bytes), so the lengths always fit.
        mac.update(&(bucket.len() as u16).to_le_bytes());
        mac.update(bucket);
        mac.update(&(key.len() as u32).to_le_bytes());
        mac.update(key);
        mac.update(body);
        mac
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// Encodes the context of `bucket`/`key` for the `X-Causal-Context` header.
pub fn encode_context(vv: &VersionVector, signer: &TokenKey, bucket: &[u8], key: &[u8]) -> String {
    let mut buf = Vec::with_capacity(2 + vv.len() * 10 + TAG_BYTES);
    buf.push(TOKEN_FORMAT);
    put_varint(&mut buf, vv.len() as u64);
    for dot in vv.iter() {
        buf.extend_from_slice(&dot.actor.0.to_le_bytes());
        put_varint(&mut buf, dot.counter);
    }
    let tag = signer.tag(bucket, key, &buf).finalize().into_bytes();
    buf.extend_from_slice(&tag[..TAG_BYTES]);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Decodes a token made by [`encode_context`] for `bucket`/`key` under the same key.
///
/// # Errors
/// [`Error::BadContext`] with a reason a person can act on.
pub fn decode_context(
    token: &str,
    signer: &TokenKey,
    bucket: &[u8],
    key: &[u8],
) -> Result<VersionVector, Error> {
    let bad = |reason: &str| Error::BadContext(reason.to_string());
    let raw = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| bad("not base64url"))?;
    if raw.len() < 1 + 1 + TAG_BYTES {
        return Err(bad("too short"));
    }
    let (body, tag) = raw.split_at(raw.len() - TAG_BYTES);
    signer.tag(bucket, key, body).verify_truncated_left(tag).map_err(|_| {
        bad("not a token this cluster issued for this key (altered, made up, or from another key)")
    })?;
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

    fn signer() -> TokenKey {
        TokenKey::new([7; 32])
    }

    fn encode(vv: &VersionVector) -> String {
        encode_context(vv, &signer(), b"b", b"k")
    }

    fn decode(token: &str) -> Result<VersionVector, Error> {
        decode_context(token, &signer(), b"b", b"k")
    }

    fn vv_strategy() -> impl Strategy<Value = VersionVector> {
        proptest::collection::vec((any::<u64>(), 1..u64::MAX), 0..8)
            .prop_map(|dots| dots.into_iter().map(|(a, c)| Dot { actor: Actor(a), counter: c }).collect())
    }

    proptest! {
        #[test]
        fn round_trips(vv in vv_strategy()) {
            let token = encode(&vv);
            prop_assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(decode(&token).expect("valid"), vv);
        }

        #[test]
        fn a_mangled_token_is_rejected(vv in vv_strategy(), pos in any::<prop::sample::Index>(), flip in 1..=255u8) {
            let token = encode(&vv);
            let mut raw = URL_SAFE_NO_PAD.decode(&token).expect("valid");
            let i = pos.index(raw.len());
            raw[i] ^= flip;
            let mangled = URL_SAFE_NO_PAD.encode(raw);
            prop_assert!(decode(&mangled).is_err());
        }

        #[test]
        fn garbage_never_panics(s in ".{0,64}", bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&s);
            let _ = decode(&URL_SAFE_NO_PAD.encode(bytes));
        }
    }

    #[test]
    fn a_token_is_bound_to_its_key_and_its_signer() {
        let vv: VersionVector = [Dot { actor: Actor(1), counter: 3 }].into_iter().collect();
        let token = encode(&vv);
        assert!(decode_context(&token, &signer(), b"b", b"other").is_err(), "another key");
        assert!(decode_context(&token, &signer(), b"c", b"k").is_err(), "another bucket");
        // The boundary between bucket and key is part of what is signed.
        assert!(decode_context(&token, &signer(), b"bk", b"").is_err());
        assert!(decode_context(&token, &TokenKey::new([8; 32]), b"b", b"k").is_err(), "another cluster");
        let e = decode_context(&token, &signer(), b"b", b"other").expect_err("refused").to_string();
        assert!(e.contains("another key"), "{e}");
    }

    #[test]
    fn a_token_made_without_the_key_is_rejected() {
        // What a client could build: the right layout with a made-up tag, for the
        // largest counter and for thousands of actors.
        let mut forged = vec![TOKEN_FORMAT, 1];
        forged.extend_from_slice(&1u64.to_le_bytes());
        put_varint(&mut forged, u64::MAX);
        forged.extend_from_slice(&[0; TAG_BYTES]);
        assert!(decode(&URL_SAFE_NO_PAD.encode(&forged)).is_err());
        let many: VersionVector = (0..5000).map(|a| Dot { actor: Actor(a), counter: 1 }).collect();
        assert!(decode(&encode(&many)).is_err(), "too many actors, even signed");
    }

    #[test]
    fn empty_context_is_short() {
        let token = encode(&VersionVector::new());
        assert!(token.len() <= 24, "{token}");
        assert!(decode(&token).expect("valid").is_empty());
    }
}
