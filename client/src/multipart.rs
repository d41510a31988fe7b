//! Reading the `multipart/mixed` body of a 300 Multiple Choices (RFC 2046, section 5.1).

use bytes::Bytes;

use crate::value::{DEFAULT_CONTENT_TYPE, Value};

/// The `boundary` parameter of a `multipart/mixed` content type.
pub(crate) fn boundary(content_type: &str) -> Option<&str> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"'))
            .filter(|b| !b.is_empty())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

/// The parts of a multipart body, each a sibling with its own Content-Type; `None` if the
/// body is not well-formed.
pub(crate) fn parse(body: &Bytes, boundary: &str) -> Option<Vec<Value>> {
    let dash = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    // The first delimiter may open the body or follow a preamble.
    let mut pos = if body.starts_with(dash.as_bytes()) {
        dash.len()
    } else {
        find(body, delimiter.as_bytes(), 0)? + delimiter.len()
    };
    let mut parts = Vec::new();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return Some(parts);
        }
        // Transport padding, then the line break that ends the delimiter line.
        let line_end = find(body, b"\r\n", pos)?;
        let start = line_end + 2;
        let end = find(body, delimiter.as_bytes(), start)?;
        parts.push(part(body.slice(start..end))?);
        pos = end + delimiter.len();
    }
}

fn part(raw: Bytes) -> Option<Value> {
    let (head_len, body_start) = if raw.starts_with(b"\r\n") {
        (0, 2)
    } else {
        let i = find(&raw, b"\r\n\r\n", 0)?;
        (i, i + 4)
    };
    let head = std::str::from_utf8(&raw[..head_len]).ok()?;
    let content_type = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-type"))
        .map_or(DEFAULT_CONTENT_TYPE, |(_, v)| v.trim());
    Some(Value::with_content_type(content_type, raw.slice(body_start..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_parameter() {
        assert_eq!(boundary("multipart/mixed; boundary=abc"), Some("abc"));
        assert_eq!(boundary("Multipart/Mixed;charset=x; Boundary=\"a b\""), Some("a b"));
        assert_eq!(boundary("text/plain; boundary=abc"), None);
        assert_eq!(boundary("multipart/mixed"), None);
    }

    #[test]
    fn parses_what_the_node_writes() {
        let body = Bytes::from_static(
            b"--qkv\r\nContent-Type: text/plain\r\n\r\nv1\r\n\
              --qkv\r\nContent-Type: application/json\r\n\r\n{\"v\":2}\r\n\
              --qkv\r\nContent-Type: application/octet-stream\r\n\r\n\r\n--qk\x00\xff\r\n\
              --qkv\r\nContent-Type: text/plain\r\n\r\n\r\n\
              --qkv--\r\n",
        );
        let parts = parse(&body, "qkv").unwrap();
        assert_eq!(
            parts,
            vec![
                Value::with_content_type("text/plain", "v1"),
                Value::with_content_type("application/json", "{\"v\":2}"),
                Value::with_content_type("application/octet-stream", &b"\r\n--qk\x00\xff"[..]),
                Value::with_content_type("text/plain", ""),
            ]
        );
    }

    #[test]
    fn preamble_and_missing_headers() {
        let body = Bytes::from_static(b"preamble\r\n--b\r\n\r\nraw\r\n--b--");
        assert_eq!(parse(&body, "b").unwrap(), vec![Value::new("raw")]);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for body in [&b""[..], b"--b\r\nContent-Type: x\r\n\r\nno end", b"nothing here"] {
            assert_eq!(parse(&Bytes::copy_from_slice(body), "b"), None);
        }
    }
}
