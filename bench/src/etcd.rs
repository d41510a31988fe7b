//! `--target etcd`: the same workloads against an etcd 3.4 cluster, for comparison,
//! through its v3 JSON gateway over the same lean connections as `--raw`.
//!
//! A read is `POST /v3/kv/range {"key": base64}` (found when the answer lists `kvs`);
//! a write is `POST /v3/kv/put {"key": base64, "value": base64}`; a scan is a range from
//! its first key to the end of the bucket's prefix with a `limit`, keys only. etcd has no
//! causal contexts, so an update is a put and a read-modify-write a range then a put.
//! Each client sends its requests to the nodes in turn. Keys are `bucket/key`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, StatusCode};

use crate::raw::{Connections, unexpected};
use crate::session::{ErrorKind, Read};

/// Where etcd requests go, shared by every client of a run.
#[derive(Debug)]
pub struct EtcdTarget {
    nodes: Vec<String>,
    /// `bucket/`, in front of every key.
    prefix: String,
    /// Base64 of the first key after every key with the prefix: a scan's `range_end`.
    prefix_end_base64: String,
    /// Base64 of the longest value; every value is a prefix of it.
    longest: Bytes,
    longest_base64: String,
    timeout: Duration,
}

impl EtcdTarget {
    /// A target of etcd client addresses `nodes` (`host:port`), keys under `bucket/`,
    /// values cut from `longest`.
    pub fn new(nodes: Vec<String>, bucket: &str, longest: Bytes, timeout: Duration) -> EtcdTarget {
        let longest_base64 = base64(&longest);
        let prefix = format!("{bucket}/");
        let prefix_end_base64 = base64(&prefix_end(prefix.as_bytes()));
        EtcdTarget { nodes, prefix, prefix_end_base64, longest, longest_base64, timeout }
    }

    /// Base64 of `value`, a prefix of the longest value: most of it is a slice of the
    /// precomputed encoding, so a write does not re-encode its whole value.
    fn value_base64(&self, value: &[u8], out: &mut String) {
        if self.longest.starts_with(value) {
            let whole = value.len() / 3 * 3;
            out.push_str(&self.longest_base64[..whole / 3 * 4]);
            out.push_str(&base64(&value[whole..]));
        } else {
            out.push_str(&base64(value));
        }
    }
}

/// One client's connections to the etcd members.
#[derive(Debug)]
pub struct EtcdSession {
    target: Arc<EtcdTarget>,
    conns: Connections,
    turn: usize,
}

impl EtcdSession {
    /// Client number `index`'s session; it starts its rotation at node `index`.
    pub fn new(target: Arc<EtcdTarget>, index: usize) -> EtcdSession {
        let conns = Connections::new(target.nodes.clone(), target.timeout);
        EtcdSession { conns, turn: index, target }
    }

    fn next_node(&mut self) -> usize {
        self.turn = self.turn.wrapping_add(1);
        self.turn % self.conns.len().max(1)
    }

    fn key_base64(&self, key: &str) -> String {
        let mut full = Vec::with_capacity(self.target.prefix.len() + key.len());
        full.extend_from_slice(self.target.prefix.as_bytes());
        full.extend_from_slice(key.as_bytes());
        base64(&full)
    }

    async fn post(&mut self, path: &str, body: String) -> Result<Bytes, ErrorKind> {
        let node = self.next_node();
        let req = self
            .conns
            .request(Method::POST, path, node)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from(body)));
        let (parts, body) = self.conns.exchange(node, req).await?;
        if parts.status == StatusCode::OK {
            return Ok(body);
        }
        Err(error_kind(parts.status, &body))
    }

    /// Reads `key` (a linearizable range read, etcd's default).
    pub async fn get(&mut self, key: &str) -> Result<Read, ErrorKind> {
        let body = format!(r#"{{"key":"{}"}}"#, self.key_base64(key));
        let answer = self.post("/v3/kv/range", body).await?;
        // The gateway leaves out empty fields: no `kvs`, no key.
        if contains(&answer, b"\"kvs\"") { Ok(Read::Found(None)) } else { Ok(Read::Missing(None)) }
    }

    /// Writes `value` under `key`.
    pub async fn put(&mut self, key: &str, value: &[u8]) -> Result<(), ErrorKind> {
        let mut body = String::with_capacity(32 + key.len() * 2 + value.len() * 4 / 3);
        body.push_str(r#"{"key":""#);
        body.push_str(&self.key_base64(key));
        body.push_str(r#"","value":""#);
        self.target.value_base64(value, &mut body);
        body.push_str(r#""}"#);
        let answer = self.post("/v3/kv/put", body).await?;
        if contains(&answer, b"\"header\"") { Ok(()) } else { Err(unexpected(StatusCode::OK)) }
    }

    /// Lists up to `limit` keys from `key` on (within the bucket); returns how many the
    /// answer held.
    pub async fn scan(&mut self, key: &str, limit: u64) -> Result<u64, ErrorKind> {
        #[derive(serde::Deserialize)]
        struct RangeAnswer {
            // Required: a 200 without it is not a range answer.
            #[serde(rename = "header")]
            _header: serde::de::IgnoredAny,
            // The gateway leaves out an empty `kvs`.
            #[serde(default)]
            kvs: Vec<serde::de::IgnoredAny>,
        }
        let body = format!(
            r#"{{"key":"{}","range_end":"{}","limit":{limit},"keys_only":true}}"#,
            self.key_base64(key),
            self.target.prefix_end_base64
        );
        let answer = self.post("/v3/kv/range", body).await?;
        match serde_json::from_slice::<RangeAnswer>(&answer) {
            Ok(range) => Ok(range.kvs.len() as u64),
            Err(_) => Err(unexpected(StatusCode::OK)),
        }
    }
}

/// The first key after every key that starts with `prefix` (etcd's `range_end` for a
/// prefix): the prefix with its last byte below 0xff incremented and what follows cut.
/// An empty or all-0xff prefix has no end: `\0`, which etcd reads as "to the last key".
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&b| b < 0xff) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            end
        }
        None => vec![0],
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `grpc_<code>` from the gateway's JSON error (`{"error", "code", "message"}`), or
/// `http_<status>`.
fn error_kind(status: StatusCode, body: &[u8]) -> ErrorKind {
    #[derive(serde::Deserialize)]
    struct GatewayError {
        code: u32,
    }
    match serde_json::from_slice::<GatewayError>(body) {
        Ok(e) => Cow::Owned(format!("grpc_{}", e.code)),
        Err(_) => Cow::Owned(format!("http_{}", status.as_u16())),
    }
}

/// Standard base64 with padding (RFC 4648 §4), as the gateway's JSON carries bytes.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn values_are_encoded_as_a_whole_would_be() {
        let longest = Bytes::from(crate::workload::value_bytes(100));
        let target = EtcdTarget::new(vec!["a:1".into()], "bench", longest.clone(), Duration::from_secs(1));
        for len in [0, 1, 2, 3, 4, 50, 99, 100] {
            let mut out = String::new();
            target.value_base64(&longest[..len], &mut out);
            assert_eq!(out, base64(&longest[..len]), "length {len}");
        }
        let mut other = String::new();
        target.value_base64(b"zz", &mut other);
        assert_eq!(other, base64(b"zz"));
    }

    #[test]
    fn scans_end_at_the_bucket_prefix() {
        assert_eq!(prefix_end(b"bench/"), b"bench0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
        let target = EtcdTarget::new(vec!["a:1".into()], "bench", Bytes::new(), Duration::from_secs(1));
        assert_eq!(target.prefix_end_base64, base64(b"bench0"));
    }

    #[test]
    fn gateway_errors_have_short_kinds() {
        let body = br#"{"error":"etcdserver: request timed out","code":14,"message":"etcdserver: request timed out"}"#;
        assert_eq!(error_kind(StatusCode::SERVICE_UNAVAILABLE, body), "grpc_14");
        assert_eq!(error_kind(StatusCode::NOT_FOUND, b"404 page not found"), "http_404");
    }
}
