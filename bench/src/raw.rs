//! `--raw`: the object API driven over bare hyper HTTP/1.1 connections, one keep-alive
//! connection per client and node, TCP_NODELAY, no pool, no retries, no parsing beyond the
//! status and the context header (and a listing's keys, to count them). It costs the load
//! generator as little as wrk does, so a run measures the server. The etcd target uses
//! the same [`Connections`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::http::response::Parts;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::session::{ErrorKind, Read, Token};

/// Where `--raw` requests go: node addresses and, with ring routing, each partition's
/// replicas. Shared by every client of a run.
#[derive(Debug)]
pub struct RawTarget {
    /// Client API addresses; connections are indexed like this list.
    nodes: Vec<String>,
    /// Per partition, the indexes in `nodes` of its replicas; `None` without ring routing.
    routes: Option<Routes>,
    bucket: String,
    get_query: String,
    put_query: String,
    timeout: Duration,
}

#[derive(Debug)]
struct Routes {
    ring: quorumkv_client::ring::Ring,
    replicas: Vec<Vec<usize>>,
}

/// Settings of the requests a [`RawTarget`] sends.
#[derive(Debug, Clone)]
pub struct RawRequests {
    /// Bucket of every key.
    pub bucket: String,
    /// Query string of a read (`?r=2&timeout_ms=5000`), and of a listing.
    pub get_query: String,
    /// Query string of a write.
    pub put_query: String,
    /// Deadline of one exchange.
    pub timeout: Duration,
}

impl RawTarget {
    /// Sends every request to one of `nodes`, chosen per client.
    pub fn fixed(nodes: Vec<String>, requests: RawRequests) -> RawTarget {
        RawTarget::new(nodes, None, requests)
    }

    /// Sends each request to a replica of its key according to `ring` (rotating over the
    /// replicas). Members without a client address are never chosen.
    pub fn routed(ring: quorumkv_client::ring::Ring, requests: RawRequests) -> anyhow::Result<RawTarget> {
        let nodes: Vec<String> = ring.members.iter().filter_map(|m| m.api_addr.clone()).collect();
        let index = |id: &String| {
            let addr = ring.member(id)?.api_addr.as_ref()?;
            nodes.iter().position(|n| n == addr)
        };
        let mut replicas = vec![Vec::new(); ring.partition_count as usize];
        for p in &ring.partitions {
            if let Some(slot) = replicas.get_mut(p.partition as usize) {
                *slot = p.preference_list.iter().take(ring.replicas).filter_map(index).collect();
            }
        }
        if let Some(p) = replicas.iter().position(Vec::is_empty) {
            anyhow::bail!("the ring names no reachable replica for partition {p}: cannot route by it");
        }
        Ok(RawTarget::new(nodes, Some(Routes { ring, replicas }), requests))
    }

    fn new(nodes: Vec<String>, routes: Option<Routes>, r: RawRequests) -> RawTarget {
        RawTarget {
            nodes,
            routes,
            bucket: r.bucket,
            get_query: r.get_query,
            put_query: r.put_query,
            timeout: r.timeout,
        }
    }

    /// How many nodes requests may go to.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

/// One client's connections (opened on first use, reopened after an error).
#[derive(Debug)]
pub struct RawSession {
    target: Arc<RawTarget>,
    conns: Connections,
    /// The node this client sends to when not routing by the ring.
    home: usize,
    turn: usize,
}

impl RawSession {
    /// A session that sends to node `home` (mod the node count) unless the target routes.
    pub fn new(target: Arc<RawTarget>, home: usize) -> RawSession {
        let n = target.nodes.len().max(1);
        let conns = Connections::new(target.nodes.clone(), target.timeout);
        RawSession { conns, home: home % n, turn: home, target }
    }

    fn node_for(&mut self, key: &str) -> usize {
        match &self.target.routes {
            Some(routes) => {
                let p = routes.ring.partition_of(&self.target.bucket, key.as_bytes()) as usize;
                let replicas = &routes.replicas[p];
                self.turn = self.turn.wrapping_add(1);
                replicas[self.turn % replicas.len()]
            }
            None => self.home,
        }
    }

    /// A listing spans every partition: with the ring, any node in turn; else home.
    fn node_for_listing(&mut self) -> usize {
        match &self.target.routes {
            Some(_) => {
                self.turn = self.turn.wrapping_add(1);
                self.turn % self.target.nodes.len().max(1)
            }
            None => self.home,
        }
    }

    /// Reads `key`.
    pub async fn get(&mut self, key: &str) -> Result<Read, ErrorKind> {
        let node = self.node_for(key);
        let uri = format!("/v1/kv/{}/{key}{}", self.target.bucket, self.target.get_query);
        let req = self.conns.request(Method::GET, &uri, node).body(Full::new(Bytes::new()));
        match answer(self.conns.exchange(node, req).await?)? {
            // No context only from a server that is not a node (the baseline server).
            Answer::Success(StatusCode::OK | StatusCode::MULTIPLE_CHOICES, context) => {
                Ok(Read::Found(context.map(Token::Raw)))
            }
            Answer::Success(status, _) => Err(unexpected(status)),
            Answer::NotFound(context) => Ok(Read::Missing(context.map(Token::Raw))),
        }
    }

    /// Writes `value` under `key`, with `context` if given; returns the context the node
    /// answered with.
    pub async fn put(
        &mut self,
        key: &str,
        context: Option<&Token>,
        value: Bytes,
    ) -> Result<Option<Token>, ErrorKind> {
        let node = self.node_for(key);
        let uri = format!("/v1/kv/{}/{key}{}", self.target.bucket, self.target.put_query);
        let mut req = self
            .conns
            .request(Method::PUT, &uri, node)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        match context {
            Some(Token::Raw(token)) => req = req.header("x-causal-context", token.clone()),
            Some(Token::Client(ctx)) => req = req.header("x-causal-context", ctx.as_str()),
            None => {}
        }
        let req = req.body(Full::new(value));
        match answer(self.conns.exchange(node, req).await?)? {
            Answer::Success(StatusCode::NO_CONTENT, context) => Ok(context.map(Token::Raw)),
            Answer::Success(status, _) => Err(unexpected(status)),
            Answer::NotFound(_) => Err(unexpected(StatusCode::NOT_FOUND)),
        }
    }

    /// Lists up to `limit` keys after `after` (from the bucket's first key without it);
    /// returns how many the page held.
    pub async fn scan(&mut self, after: Option<&str>, limit: u64) -> Result<u64, ErrorKind> {
        let node = self.node_for_listing();
        let t = &self.target;
        // Bench key names are letters and digits: nothing in them to percent-encode.
        let mut uri = format!("/v1/kv/{}{}&limit={limit}", t.bucket, t.get_query);
        if let Some(after) = after {
            uri.push_str("&after=");
            uri.push_str(after);
        }
        let req = self.conns.request(Method::GET, &uri, node).body(Full::new(Bytes::new()));
        let (parts, body) = self.conns.exchange(node, req).await?;
        if parts.status != StatusCode::OK {
            return Err(error_kind(parts.status, &body));
        }
        listed_keys(&body)
    }
}

/// How many keys a listing's page (`{"keys": [...], "next": ...}`) holds; `protocol` if
/// it has no `keys` array.
pub fn listed_keys(body: &[u8]) -> Result<u64, ErrorKind> {
    #[derive(serde::Deserialize)]
    struct Page {
        keys: Vec<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Page>(body) {
        Ok(page) => Ok(page.keys.len() as u64),
        Err(_) => Err(Cow::Borrowed("protocol")),
    }
}

/// One keep-alive connection per node, opened on first use and after an error; shared
/// by `--raw` and the etcd target.
#[derive(Debug)]
pub struct Connections {
    nodes: Vec<String>,
    conns: Vec<Option<Conn>>,
    timeout: Duration,
}

impl Connections {
    /// No connections yet to `nodes`; each exchange must finish within `timeout`.
    pub fn new(nodes: Vec<String>, timeout: Duration) -> Connections {
        Connections { conns: nodes.iter().map(|_| None).collect(), nodes, timeout }
    }

    /// A request to node `node` with its `Host` header.
    pub fn request(&self, method: Method, uri: &str, node: usize) -> hyper::http::request::Builder {
        Request::builder().method(method).uri(uri).header(HOST, self.nodes[node].as_str())
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// One exchange on node `node`'s connection, opened first if needed: the answer's
    /// head and whole body, whatever its status. A connection that failed or timed out
    /// is dropped, to be reopened by the next request.
    pub async fn exchange(
        &mut self,
        node: usize,
        req: Result<Request<Full<Bytes>>, hyper::http::Error>,
    ) -> Result<(Parts, Bytes), ErrorKind> {
        let req = req.map_err(|_| Cow::Borrowed("bad_request_built"))?;
        let timeout = self.timeout;
        let conn = match &mut self.conns[node] {
            Some(conn) => conn,
            slot => match tokio::time::timeout(timeout, Conn::open(&self.nodes[node])).await {
                Ok(Ok(conn)) => slot.insert(conn),
                Ok(Err(_)) => return Err(Cow::Borrowed("connect")),
                Err(_) => return Err(Cow::Borrowed("timeout")),
            },
        };
        let outcome = tokio::time::timeout(timeout, async {
            let resp = conn.send(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>((parts, body))
        })
        .await;
        match outcome {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => {
                self.conns[node] = None;
                Err(Cow::Borrowed("transport"))
            }
            Err(_) => {
                // The answer may still come on this connection: never reuse it.
                self.conns[node] = None;
                Err(Cow::Borrowed("timeout"))
            }
        }
    }
}

/// What a node's answer means for the object API.
fn answer((parts, body): (Parts, Bytes)) -> Result<Answer, ErrorKind> {
    let context = parts.headers.get("x-causal-context").cloned();
    if parts.status.is_success() || parts.status == StatusCode::MULTIPLE_CHOICES {
        return Ok(Answer::Success(parts.status, context));
    }
    if parts.status == StatusCode::NOT_FOUND {
        let body = std::str::from_utf8(&body).unwrap_or("");
        // A 404 for the key, not for a route the node does not serve.
        if body.contains("\"not_found\"") {
            return Ok(Answer::NotFound(context));
        }
    }
    Err(error_kind(parts.status, &body))
}

/// A node's answer that is not an error.
#[derive(Debug)]
enum Answer {
    /// 2xx or 300, with the context header if there was one.
    Success(StatusCode, Option<HeaderValue>),
    /// 404 `not_found`, with the tombstone's context if the key was deleted.
    NotFound(Option<HeaderValue>),
}

/// The error kind of a status the exchange did not expect.
pub fn unexpected(status: StatusCode) -> ErrorKind {
    Cow::Owned(format!("unexpected_{}", status.as_u16()))
}

/// The API's error code from a JSON error body, or `http_<status>`.
fn error_kind(status: StatusCode, body: &[u8]) -> ErrorKind {
    #[derive(serde::Deserialize)]
    struct ApiError {
        error: String,
    }
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) if !e.error.is_empty() => Cow::Owned(e.error),
        _ => Cow::Owned(format!("http_{}", status.as_u16())),
    }
}

/// One HTTP/1.1 connection. The task that drives it ends when the connection is dropped.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Conn {
    async fn open(addr: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // Owned by this Conn and aborted with it; its error is seen by the next send.
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn { sender, driver })
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, hyper::Error> {
        self.sender.ready().await?;
        self.sender.send_request(req).await
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_come_from_the_api_code() {
        let body = br#"{"error":"quorum_failed","message":"m","required":2,"succeeded":1}"#;
        assert_eq!(error_kind(StatusCode::SERVICE_UNAVAILABLE, body), "quorum_failed");
        assert_eq!(error_kind(StatusCode::BAD_GATEWAY, b"<html>"), "http_502");
    }

    #[test]
    fn a_listing_counts_its_keys_or_is_a_protocol_error() {
        assert_eq!(listed_keys(br#"{"keys":["k0000000001","k%25"],"next":null}"#), Ok(2));
        assert_eq!(listed_keys(br#"{"keys":[],"next":"k0000000009"}"#), Ok(0));
        assert_eq!(listed_keys(br#"{"next":null}"#), Err(Cow::Borrowed("protocol")));
        assert_eq!(listed_keys(b"ok"), Err(Cow::Borrowed("protocol")));
    }
}
