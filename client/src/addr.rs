//! Node addresses and request URLs.

use hyper::Uri;
use hyper::http::uri::Authority;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::Error;

/// The client API's default port (API.md).
pub const DEFAULT_PORT: u16 = 7070;

/// Bytes left as they are in a key's path segment: RFC 3986's unreserved characters.
/// Everything else, `/` and `%` included, is percent-encoded.
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `host:port` from `host:port`, `host` (port 7070) or `http://host:port[/]`.
pub(crate) fn normalise(addr: &str) -> Result<String, Error> {
    let bad = |why: &str| {
        Error::invalid(
            "invalid_address",
            format!("`{addr}` is not a node address: {why} (expected host:port, e.g. 127.0.0.1:7070)"),
        )
    };
    let trimmed = addr.trim();
    if trimmed.starts_with("https://") {
        return Err(bad("the API is plain HTTP"));
    }
    let rest = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains('/') {
        return Err(bad("give only host and port"));
    }
    let authority: Authority = rest.parse().map_err(|_| bad("not a host:port"))?;
    if authority.as_str().contains('@') {
        return Err(bad("no user info"));
    }
    Ok(match authority.port_u16() {
        Some(_) => authority.as_str().to_string(),
        None => format!("{}:{DEFAULT_PORT}", authority.host()),
    })
}

/// Checks a bucket name as the node would: 1 to 255 bytes of `[A-Za-z0-9._-]`.
pub(crate) fn check_bucket(bucket: &str) -> Result<(), Error> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if bucket.is_empty() || bucket.len() > 255 || !bucket.bytes().all(ok_char) {
        return Err(Error::invalid(
            "invalid_bucket",
            format!(
                "`{bucket}` is not a bucket name: 1 to 255 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
            ),
        ));
    }
    Ok(())
}

/// Checks a key: 1 to 1024 bytes, any bytes.
pub(crate) fn check_key(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() || key.len() > 1024 {
        return Err(Error::invalid(
            "invalid_key",
            format!("a key is 1 to 1024 bytes; this one is {}", key.len()),
        ));
    }
    Ok(())
}

/// `/v1/kv/{bucket}/{percent-encoded key}`.
pub(crate) fn object_path(bucket: &str, key: &[u8]) -> String {
    let mut path = String::with_capacity(8 + bucket.len() + key.len() * 3);
    path.push_str("/v1/kv/");
    path.push_str(bucket);
    path.push('/');
    for chunk in percent_encoding::percent_encode(key, KEY_ENCODE) {
        path.push_str(chunk);
    }
    path
}

/// Key bytes percent-encoded for a query value (`prefix=`, `after=`).
pub(crate) fn key_query(key: &[u8]) -> String {
    percent_encoding::percent_encode(key, KEY_ENCODE).to_string()
}

/// `http://{addr}{path_and_query}` as a URI.
pub(crate) fn uri(addr: &str, path_and_query: &str) -> Result<Uri, Error> {
    format!("http://{addr}{path_and_query}")
        .parse()
        .map_err(|e| Error::invalid("invalid_address", format!("cannot build a URL for {addr}: {e}")))
}

/// Percent-encodes a query value (our values are plain, but keep the URL valid anyway).
pub(crate) fn query_value(v: &str) -> String {
    utf8_percent_encode(v, KEY_ENCODE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(normalise("127.0.0.1:7071").unwrap(), "127.0.0.1:7071");
        assert_eq!(normalise("http://db1:80/").unwrap(), "db1:80");
        assert_eq!(normalise("db1").unwrap(), "db1:7070");
        assert_eq!(normalise("[::1]:9").unwrap(), "[::1]:9");
        assert!(normalise("https://db1:7070").is_err());
        assert!(normalise("db1:7070/v1").is_err());
        assert!(normalise("").is_err());
        assert!(normalise("a b").is_err());
    }

    #[test]
    fn keys_are_percent_encoded_byte_for_byte() {
        assert_eq!(object_path("b", b"alice"), "/v1/kv/b/alice");
        assert_eq!(object_path("b", b"a/b c%\x00\xff~.-_"), "/v1/kv/b/a%2Fb%20c%25%00%FF~.-_");
        // Every byte value survives into a valid URI.
        let all: Vec<u8> = (0..=255).collect();
        uri("127.0.0.1:1", &object_path("b", &all)).unwrap();
        let decoded: Vec<u8> =
            percent_encoding::percent_decode_str(object_path("b", &all).trim_start_matches("/v1/kv/b/"))
                .collect();
        assert_eq!(decoded, all);
    }
}
