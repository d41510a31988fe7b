//! Parsing and validating what a client sends: names, query parameters, the context.

use std::time::Duration;

use bytes::Bytes;
use quorumkv_storage::VersionVector;

use super::error::ApiError;
use crate::quorum::Quorum;

pub const MAX_BUCKET_BYTES: usize = 255;
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a bucket name: 1 to 255 bytes of `[A-Za-z0-9._-]`.
pub fn bucket(raw: &str) -> Result<Bytes, ApiError> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if raw.is_empty() || raw.len() > MAX_BUCKET_BYTES || !raw.bytes().all(ok_char) {
        return Err(ApiError::bad(
            "invalid_bucket",
            "a bucket name is 1 to 255 characters of A-Z, a-z, 0-9, '.', '_' and '-'",
        ));
    }
    Ok(Bytes::copy_from_slice(raw.as_bytes()))
}

/// Decodes a key: the percent-decoded rest of the path, 1 to 1024 bytes, any bytes.
pub fn key(raw: &str) -> Result<Bytes, ApiError> {
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    if decoded.is_empty() || decoded.len() > MAX_KEY_BYTES {
        return Err(ApiError::bad(
            "invalid_key",
            format!(
                "a key is 1 to {MAX_KEY_BYTES} bytes after percent-decoding; this one is {}",
                decoded.len()
            ),
        ));
    }
    Ok(Bytes::from(decoded))
}

/// Decodes an `X-Causal-Context` header.
pub fn context(header: Option<&[u8]>) -> Result<VersionVector, ApiError> {
    let Some(raw) = header else {
        return Ok(VersionVector::new());
    };
    let text = std::str::from_utf8(raw).map_err(|_| {
        ApiError::bad("invalid_context", "X-Causal-Context is not text; send back the token as received")
    })?;
    quorumkv_storage::decode_context(text).map_err(|e| {
        ApiError::bad(
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
    pub fn parse(query: Option<&str>) -> Result<ObjectParams, ApiError> {
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
                    return Err(ApiError::bad(
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
pub fn resolve(name: &str, q: Quorum, n: usize) -> Result<usize, ApiError> {
    match q {
        Quorum::Count(c) if c == 0 || c > n => {
            Err(invalid(name, &c.to_string(), &format!("1 to {n} (N), one, quorum or all")))
        }
        q => Ok(q.resolve(n)),
    }
}

fn quorum(name: &str, value: &str) -> Result<Quorum, ApiError> {
    value.parse().map_err(|_| invalid(name, value, "a number from 1 to N, one, quorum or all"))
}

fn boolean(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(name, value, "true or false")),
    }
}

pub fn invalid(name: &str, value: &str, expected: &str) -> ApiError {
    ApiError::bad("invalid_parameter", format!("`{name}={value}` is out of range: expected {expected}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(bucket("users-v1.x_y").is_ok());
        assert!(bucket("").is_err());
        assert!(bucket("a/b").is_err());
        assert!(bucket(&"b".repeat(256)).is_err());
        assert_eq!(key("a%2Fb%00").expect("ok"), Bytes::from_static(b"a/b\0"));
        assert!(key("").is_err());
        assert!(key(&"k".repeat(1025)).is_err());
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
        assert!(ObjectParams::parse(Some("timeout_ms=0")).is_err());
        assert!(ObjectParams::parse(Some("timeout_ms=60001")).is_err());
        assert!(ObjectParams::parse(Some("bogus=1")).is_err());
        assert!(resolve("r", Quorum::Count(4), 3).is_err());
        assert!(resolve("r", Quorum::Count(0), 3).is_err());
        assert_eq!(resolve("r", Quorum::Majority, 3).expect("ok"), 2);
    }
}
