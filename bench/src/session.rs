//! What a run sends requests through: `quorumkv-client`, or `--raw` hyper connections.
//!
//! A [`Target`] is made once per run from the arguments; each simulated client gets its
//! own [`Session`] from it, which reads and writes keys and reports failures as short
//! error kinds (`quorum_failed`, `timeout`, `transport`, ...), counted by the report.

use std::borrow::Cow;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use hyper::header::HeaderValue;
use quorumkv_client::{Client, Context, Error, Value};

use crate::cli::{Routing, RunArgs};
use crate::raw::{RawRequests, RawSession, RawTarget};

/// A short name for why a request failed, as the report counts them.
pub type ErrorKind = Cow<'static, str>;

/// A causal context to write back, in the form of the session that read it.
#[derive(Debug, Clone)]
pub enum Token {
    /// From `quorumkv-client`.
    Client(Context),
    /// An `X-Causal-Context` header value, from `--raw`.
    Raw(HeaderValue),
}

/// The outcome of a read that did not fail.
#[derive(Debug)]
pub enum Read {
    /// One value or siblings, with their context (always there from a node).
    Found(Option<Token>),
    /// No live version; the tombstone's context if the key was deleted.
    Missing(Option<Token>),
}

/// Where a run's requests go and how, shared by all its clients.
#[derive(Debug)]
pub enum Target {
    /// Through `quorumkv-client`: one client for ring or first-node routing, one per node
    /// for round-robin.
    Client {
        /// The clients sessions take turns over.
        clients: Vec<Client>,
        /// Bucket of every key.
        bucket: String,
        /// What every write stores.
        value: Value,
    },
    /// Through bare hyper connections.
    Raw(Arc<RawTarget>),
}

impl Target {
    /// Builds the target `args` describe. With ring routing it fetches the ring first, so
    /// an unreachable cluster fails here rather than as a run full of errors.
    ///
    /// # Errors
    /// A bad address or option, or a cluster whose ring cannot be fetched.
    pub async fn connect(args: &RunArgs) -> anyhow::Result<Target> {
        let value = Bytes::from(value_bytes(args.value_size));
        let seed_client = |nodes: &[String], routing: bool| -> anyhow::Result<Client> {
            let mut b = Client::builder().nodes(nodes.iter().cloned()).routing(routing).timeout(args.timeout);
            if let Some(r) = args.r {
                b = b.r(r);
            }
            if let Some(w) = args.w {
                b = b.w(w);
            }
            if let Some(dw) = args.dw {
                b = b.dw(dw);
            }
            Ok(b.build()?)
        };
        // Fetching the ring installs it in the client, so the first requests do not wait.
        let ring_client = match args.routing {
            Routing::Ring => Some(seed_client(&args.nodes, true)?),
            Routing::First | Routing::RoundRobin => None,
        };
        let ring = match &ring_client {
            Some(client) => {
                Some(client.ring().await.context("fetching the ring to route by (try --routing first)")?)
            }
            None => None,
        };
        if args.raw {
            let requests = raw_requests(args, value);
            let target = match (ring, args.routing) {
                (Some(ring), _) => RawTarget::routed(ring, requests)?,
                (None, Routing::First) => RawTarget::fixed(args.nodes[..1].to_vec(), requests),
                (None, _) => RawTarget::fixed(args.nodes.clone(), requests),
            };
            return Ok(Target::Raw(Arc::new(target)));
        }
        let clients = match (ring_client, args.routing) {
            (Some(client), _) => vec![client],
            (None, Routing::RoundRobin) => args
                .nodes
                .iter()
                .map(|n| seed_client(std::slice::from_ref(n), false))
                .collect::<Result<_, _>>()?,
            (None, _) => vec![seed_client(&args.nodes, false)?],
        };
        Ok(Target::Client { clients, bucket: args.bucket.clone(), value: Value::new(value) })
    }

    /// The session of client number `index`.
    pub fn session(&self, index: usize) -> Session {
        match self {
            Target::Client { clients, bucket, value } => Session::Client {
                client: clients[index % clients.len()].clone(),
                bucket: bucket.clone(),
                value: value.clone(),
            },
            Target::Raw(target) => Session::Raw(RawSession::new(Arc::clone(target), index)),
        }
    }

    /// `client` or `raw`, for the report.
    pub fn mode(&self) -> &'static str {
        match self {
            Target::Client { .. } => "client",
            Target::Raw(_) => "raw",
        }
    }
}

fn raw_requests(args: &RunArgs, value: Bytes) -> RawRequests {
    let timeout_ms = format!("timeout_ms={}", args.timeout.as_millis().clamp(1, 60_000));
    let mut get_query = String::from("?");
    if let Some(r) = args.r {
        get_query.push_str(&format!("r={r}&"));
    }
    get_query.push_str(&timeout_ms);
    let mut put_query = String::from("?");
    if let Some(w) = args.w {
        put_query.push_str(&format!("w={w}&"));
    }
    if let Some(dw) = args.dw {
        put_query.push_str(&format!("dw={dw}&"));
    }
    put_query.push_str(&timeout_ms);
    RawRequests { bucket: args.bucket.clone(), get_query, put_query, value, timeout: args.timeout }
}

/// `size` bytes of printable filler: the value every write of a run stores.
pub fn value_bytes(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// One simulated client's way to the cluster.
#[derive(Debug)]
pub enum Session {
    /// Through `quorumkv-client`.
    Client {
        /// The client (clones share connections).
        client: Client,
        /// Bucket of every key.
        bucket: String,
        /// What every write stores.
        value: Value,
    },
    /// Through its own hyper connections.
    Raw(RawSession),
}

impl Session {
    /// Reads `key`.
    pub async fn get(&mut self, key: &str) -> Result<Read, ErrorKind> {
        match self {
            Session::Client { client, bucket, .. } => match client.get(&*bucket, key).await {
                Ok(object) => Ok(Read::Found(Some(Token::Client(object.context)))),
                Err(Error::NotFound { context }) => Ok(Read::Missing(context.map(Token::Client))),
                Err(e) => Err(kind(&e)),
            },
            Session::Raw(raw) => raw.get(key).await,
        }
    }

    /// Writes the run's value under `key`, superseding what `context` covers.
    pub async fn put(&mut self, key: &str, context: Option<&Token>) -> Result<(), ErrorKind> {
        match self {
            Session::Client { client, bucket, value } => {
                let put = client.put(&*bucket, key, value.clone());
                let put = match context {
                    Some(Token::Client(ctx)) => put.context(ctx),
                    Some(Token::Raw(header)) => match header.to_str().map(Context::from_token) {
                        Ok(Ok(ctx)) => put.context(&ctx),
                        _ => return Err(Cow::Borrowed("protocol")),
                    },
                    None => put,
                };
                put.await.map(drop).map_err(|e| kind(&e))
            }
            Session::Raw(raw) => raw.put(key, context).await,
        }
    }
}

/// The report's name for a client error.
fn kind(e: &Error) -> ErrorKind {
    match e {
        Error::NotFound { .. } => Cow::Borrowed("not_found"),
        Error::InvalidInput { code, .. } => Cow::Owned(code.clone()),
        Error::QuorumFailed { .. } => Cow::Borrowed("quorum_failed"),
        Error::Unavailable { .. } => Cow::Borrowed("unavailable"),
        Error::TooManySiblings { .. } => Cow::Borrowed("too_many_siblings"),
        Error::Unresolved { .. } => Cow::Borrowed("unresolved"),
        Error::Timeout { .. } => Cow::Borrowed("timeout"),
        Error::Transport { .. } => Cow::Borrowed("transport"),
        Error::Server { code, status, .. } if code.is_empty() => Cow::Owned(format!("http_{status}")),
        Error::Server { code, .. } => Cow::Owned(code.clone()),
        Error::Protocol { .. } => Cow::Borrowed("protocol"),
        _ => Cow::Borrowed("other"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_have_short_kinds() {
        assert_eq!(kind(&Error::Timeout { timeout: std::time::Duration::from_secs(1) }), "timeout");
        let quorum = Error::QuorumFailed { node: "n".into(), required: 2, succeeded: 1, replicas: vec![] };
        assert_eq!(kind(&quorum), "quorum_failed");
        let server =
            Error::Server { node: "n".into(), status: 500, code: String::new(), message: "m".into() };
        assert_eq!(kind(&server), "http_500");
    }

    #[test]
    fn values_have_the_asked_size() {
        assert_eq!(value_bytes(1024).len(), 1024);
        assert!(value_bytes(0).is_empty());
        assert_eq!(&value_bytes(3), b"abc");
    }
}
