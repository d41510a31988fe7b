//! Parsing and validating what a client sends: names, query parameters, the context.

use std::time::Duration;

use bytes::Bytes;
use quorumkv_storage::{TokenKey, VersionVector};

use crate::error::Error;
use crate::key::Key;
use crate::quorum::Quorum;

/// A bucket name as sent; [`Key::new`](crate::key::Key::new) checks it.
pub fn bucket(raw: &str) -> Bytes {
    Bytes::copy_from_slice(raw.as_bytes())
}

/// Decodes a key: the percent-decoded rest of the path, any bytes;
/// [`Key::new`](crate::key::Key::new) checks its length. A `%` not followed by two hex
/// digits is refused: decoded leniently, `%zz` and `%25zz` would name the same key.
pub fn key(raw: &str) -> Result<Bytes, Error> {
    let bytes = raw.as_bytes();
    let malformed = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if malformed {
        return Err(Error::bad(
            "invalid_key",
            "the key's percent-encoding is invalid: every `%` must be followed by two hex digits (send `%25` for a literal `%`)",
        ));
    }
    Ok(Bytes::from(percent_encoding::percent_decode_str(raw).collect::<Vec<u8>>()))
}

/// Decodes the `X-Causal-Context` header of a request about `key`.
pub fn context(header: Option<&[u8]>, signer: &TokenKey, key: &Key) -> Result<VersionVector, Error> {
    let Some(raw) = header else {
        return Ok(VersionVector::new());
    };
    let text = std::str::from_utf8(raw).map_err(|_| {
        Error::bad("invalid_context", "X-Causal-Context is not text; send back the token as received")
    })?;
    quorumkv_storage::decode_context(text, signer, key.bucket(), key.key()).map_err(|e| {
        Error::bad(
            "invalid_context",
            format!("{e}; send back the X-Causal-Context token exactly as a response gave it"),
        )
    })
}

/// The query parameters of an object request, as sent (not yet resolved against N).
#[derive(Debug, Default)]
pub struct ObjectParams {
    pub r: Option<Quorum>,
    pub w: Option<Quorum>,
    pub dw: Option<usize>,
    pub sloppy: Option<bool>,
    pub timeout: Option<Duration>,
    pub return_body: bool,
    pub local: bool,
}

impl ObjectParams {
    pub fn parse(query: Option<&str>) -> Result<ObjectParams, Error> {
        let mut p = ObjectParams::default();
        for pair in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            let value = value.as_ref();
            match name {
                "r" => p.r = Some(quorum(name, value)?),
                "w" => p.w = Some(quorum(name, value)?),
                "dw" => p.dw = Some(value.parse().map_err(|_| invalid(name, value, "a number from 0 to w"))?),
                "sloppy" => p.sloppy = Some(boolean(name, value)?),
                "return_body" => p.return_body = boolean(name, value)?,
                "local" => p.local = boolean(name, value)?,
                "timeout_ms" => {
                    let ms: u64 =
                        value.parse().map_err(|_| invalid(name, value, "a number from 1 to 60000"))?;
                    if !(1..=60_000).contains(&ms) {
                        return Err(invalid(name, value, "a number from 1 to 60000"));
                    }
                    p.timeout = Some(Duration::from_millis(ms));
                }
                _ => {
                    return Err(Error::bad(
                        "invalid_parameter",
                        format!(
                            "unknown query parameter `{name}`; known: r, w, dw, sloppy, timeout_ms, return_body, local"
                        ),
                    ));
                }
            }
        }
        Ok(p)
    }
}

/// Resolves a replica count against N: a count outside `1..=n` is a 400, never a clamp.
pub fn resolve(name: &str, q: Quorum, n: usize) -> Result<usize, Error> {
    q.resolve(n).map_err(|_| invalid(name, &q.to_string(), &format!("1 to {n} (N), one, quorum or all")))
}

fn quorum(name: &str, value: &str) -> Result<Quorum, Error> {
    value.parse().map_err(|_| invalid(name, value, "a number from 1 to N, one, quorum or all"))
}

fn boolean(name: &str, value: &str) -> Result<bool, Error> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(name, value, "true or false")),
    }
}

pub fn invalid(name: &str, value: &str, expected: &str) -> Error {
    Error::bad("invalid_parameter", format!("`{name}={value}` is out of range: expected {expected}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_decoded() {
        assert_eq!(key("a%2Fb%00").ok(), Some(Bytes::from_static(b"a/b\0")));
        assert_eq!(key("%25zz").ok(), Some(Bytes::from_static(b"%zz")));
        for bad in ["%zz", "a%", "%4", "%%41"] {
            assert!(key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn params() {
        let p = ObjectParams::parse(Some("r=2&w=all&dw=1&sloppy=false&timeout_ms=100&return_body=true"))
            .expect("ok");
        assert_eq!(p.r, Some(Quorum::Count(2)));
        assert_eq!(p.w, Some(Quorum::All));
        assert_eq!(p.dw, Some(1));
        assert_eq!(p.sloppy, Some(false));
        assert!(p.return_body);
        assert!(ObjectParams::parse(Some("r=two")).is_err());
        assert!(ObjectParams::parse(Some("w=0")).is_err(), "the same rule as the client: 0 is refused");
        assert!(ObjectParams::parse(Some("timeout_ms=0")).is_err());
        assert!(ObjectParams::parse(Some("timeout_ms=60001")).is_err());
        assert!(ObjectParams::parse(Some("bogus=1")).is_err());
        assert!(resolve("r", Quorum::Count(4), 3).is_err());
        assert!(resolve("r", Quorum::Count(0), 3).is_err());
        assert_eq!(resolve("r", Quorum::Majority, 3).expect("ok"), 2);
    }
}
