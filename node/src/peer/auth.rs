//! Peer authentication: every internode message proves knowledge of the cluster secret.
//!
//! A request travels sealed as `ts u64 LE (unix ms) ‖ nonce u64 LE ‖ tag[32] ‖ message`,
//! the tag being HMAC-SHA256 under the peer key over `"req" ‖ ts ‖ nonce ‖ message`. The
//! receiver refuses a request whose tag is wrong, whose timestamp is more than
//! [`WINDOW`] from its own clock, or whose nonce it has already seen within the window
//! (so a captured message cannot be replayed, now or later). An answer travels as
//! `tag[32] ‖ message`, the tag over `"resp" ‖ ts ‖ nonce ‖ message` of the request it
//! answers, so an answer cannot be forged or moved to another request either.
//!
//! Keys are derived from the secret, one per use ([`derive`]): the peer key here, the
//! context-token key in the API. Without a configured secret a node uses a fixed,
//! public development key: the format is the same, but it proves nothing, which is why
//! such a node must keep its peer listener on loopback (see `node.rs`).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from the receiver's clock.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Nonces remembered at most; beyond this, requests are refused until old ones expire
/// (far above any real rate: 60 s at 100,000 messages a second).
const MAX_NONCES: usize = 6_000_000;
const TAG: usize = 32;
const HEADER: usize = 8 + 8 + TAG;
/// The development secret of a node started without one. Public: it authenticates nothing.
pub const DEV_SECRET: &[u8] = b"quorumkv development secret: not for use beyond loopback";

type HmacSha256 = Hmac<Sha256>;

/// A 32-byte key for one purpose, derived from the cluster secret.
pub fn derive(secret: &[u8], purpose: &str) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(b"quorumkv key derivation\0");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Why a sealed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("too short to carry a signature")]
    Truncated,
    #[error("wrong signature (is this node configured with the same cluster secret?)")]
    BadTag,
    #[error(
        "timestamp {0} s away from this node's clock (more than the 60 s allowed; are the clocks in sync?)"
    )]
    Stale(i64),
    #[error("replayed: this message was already received")]
    Replayed,
    #[error("more peer messages in the last minutes than this node remembers; refused until some expire")]
    Flooded,
}

/// What a receiver keeps of a request to seal its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    ts: u64,
    nonce: u64,
}

/// Seals and opens peer messages under one key; remembers recent nonces.
pub struct PeerAuth {
    key: [u8; 32],
    /// A random start, so two processes never count the same nonces.
    next_nonce: AtomicU64,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    set: HashMap<u64, u64>,
    /// (unix ms, nonce), oldest first.
    order: VecDeque<(u64, u64)>,
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAuth").finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl PeerAuth {
    /// Authentication under the peer key derived from `secret`.
    pub fn new(secret: &[u8]) -> PeerAuth {
        let start = std::hash::RandomState::new().build_hasher().finish();
        PeerAuth { key: derive(secret, "peer"), next_nonce: AtomicU64::new(start), seen: Mutex::default() }
    }

    fn tag(&self, kind: &[u8], ts: u64, nonce: u64, message: &[u8]) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        mac.update(kind);
        mac.update(&ts.to_le_bytes());
        mac.update(&nonce.to_le_bytes());
        mac.update(message);
        mac
    }

    /// Seals a request; returns it with what [`open_answer`](Self::open_answer) needs.
    pub fn seal_request(&self, message: &[u8]) -> (Bytes, Opened) {
        let opened = Opened { ts: now_ms(), nonce: self.next_nonce.fetch_add(1, Ordering::Relaxed) };
        let tag = self.tag(b"req", opened.ts, opened.nonce, message).finalize().into_bytes();
        let mut out = Vec::with_capacity(HEADER + message.len());
        out.extend_from_slice(&opened.ts.to_le_bytes());
        out.extend_from_slice(&opened.nonce.to_le_bytes());
        out.extend_from_slice(&tag);
        out.extend_from_slice(message);
        (Bytes::from(out), opened)
    }

    /// Checks a sealed request; returns the message inside and what sealing the answer
    /// needs.
    ///
    /// # Errors
    /// A wrong tag, a timestamp outside the window or a nonce seen before.
    pub fn open_request(&self, sealed: &Bytes) -> Result<(Bytes, Opened), AuthError> {
        if sealed.len() < HEADER {
            return Err(AuthError::Truncated);
        }
        let ts = u64::from_le_bytes(sealed[..8].try_into().unwrap_or_default());
        let nonce = u64::from_le_bytes(sealed[8..16].try_into().unwrap_or_default());
        let message = sealed.slice(HEADER..);
        self.tag(b"req", ts, nonce, &message)
            .verify_slice(&sealed[16..HEADER])
            .map_err(|_| AuthError::BadTag)?;
        let now = now_ms();
        let skew = now as i64 - ts as i64;
        if skew.unsigned_abs() > WINDOW.as_millis() as u64 {
            return Err(AuthError::Stale(skew / 1000));
        }
        self.remember(now, ts, nonce)?;
        Ok((message, Opened { ts, nonce }))
    }

    /// Records a nonce, forgetting those past the window.
    fn remember(&self, now: u64, ts: u64, nonce: u64) -> Result<(), AuthError> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let horizon = now.saturating_sub(2 * WINDOW.as_millis() as u64);
        while let Some(&(at, old)) = seen.order.front() {
            if at >= horizon {
                break;
            }
            seen.order.pop_front();
            if seen.set.get(&old) == Some(&at) {
                seen.set.remove(&old);
            }
        }
        if seen.set.contains_key(&nonce) {
            return Err(AuthError::Replayed);
        }
        if seen.set.len() >= MAX_NONCES {
            return Err(AuthError::Flooded);
        }
        seen.set.insert(nonce, now.max(ts));
        seen.order.push_back((now.max(ts), nonce));
        Ok(())
    }

    /// Seals the answer to the request `to`.
    pub fn seal_answer(&self, to: Opened, message: &[u8]) -> Bytes {
        let tag = self.tag(b"resp", to.ts, to.nonce, message).finalize().into_bytes();
        let mut out = Vec::with_capacity(TAG + message.len());
        out.extend_from_slice(&tag);
        out.extend_from_slice(message);
        Bytes::from(out)
    }

    /// Checks the answer to the request `to`; returns the message inside.
    ///
    /// # Errors
    /// A wrong tag (another secret, or an answer not to this request).
    pub fn open_answer(&self, to: Opened, sealed: &Bytes) -> Result<Bytes, AuthError> {
        if sealed.len() < TAG {
            return Err(AuthError::Truncated);
        }
        let message = sealed.slice(TAG..);
        self.tag(b"resp", to.ts, to.nonce, &message)
            .verify_slice(&sealed[..TAG])
            .map_err(|_| AuthError::BadTag)?;
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_request_opens_once_and_only_under_the_same_secret() {
        let a = PeerAuth::new(b"secret one");
        let b = PeerAuth::new(b"secret one");
        let other = PeerAuth::new(b"secret two");
        let (sealed, sent) = a.seal_request(b"hello");
        assert_eq!(other.open_request(&sealed), Err(AuthError::BadTag));
        let (message, opened) = b.open_request(&sealed).expect("same secret");
        assert_eq!(&message[..], b"hello");
        assert_eq!(opened, sent);
        assert_eq!(b.open_request(&sealed), Err(AuthError::Replayed), "a replay is refused");
        let answer = b.seal_answer(opened, b"world");
        assert_eq!(&a.open_answer(sent, &answer).expect("answer")[..], b"world");
        assert_eq!(other.open_answer(sent, &answer), Err(AuthError::BadTag));
        let (_, another) = a.seal_request(b"hello");
        assert_eq!(a.open_answer(another, &answer), Err(AuthError::BadTag), "an answer to another request");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_are_refused_without_a_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let auth = PeerAuth::new(b"s");
            proptest::prop_assert!(auth.open_request(&Bytes::from(bytes.clone())).is_err());
            let (_, to) = auth.seal_request(b"x");
            proptest::prop_assert!(auth.open_answer(to, &Bytes::from(bytes)).is_err());
        }
    }

    #[test]
    fn altered_truncated_and_stale_requests_are_refused() {
        let auth = PeerAuth::new(b"s");
        let (sealed, _) = auth.seal_request(b"payload");
        for i in 0..sealed.len() {
            let mut bad = sealed.to_vec();
            bad[i] ^= 1;
            assert!(auth.open_request(&Bytes::from(bad)).is_err(), "byte {i} flipped");
        }
        assert_eq!(auth.open_request(&sealed.slice(..HEADER - 1)), Err(AuthError::Truncated));
        // A correctly signed message from two minutes ago.
        let ts = now_ms() - 120_000;
        let tag = auth.tag(b"req", ts, 7, b"old").finalize().into_bytes();
        let mut old = ts.to_le_bytes().to_vec();
        old.extend_from_slice(&7u64.to_le_bytes());
        old.extend_from_slice(&tag);
        old.extend_from_slice(b"old");
        assert!(matches!(auth.open_request(&Bytes::from(old)), Err(AuthError::Stale(120))));
        assert_ne!(derive(b"s", "peer"), derive(b"s", "token"));
    }
}
