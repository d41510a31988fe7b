//! What a run sends requests through: `quorumkv-client`, `--raw` hyper connections, or
//! (`--target etcd`) etcd's JSON gateway.
//!
//! A [`Target`] is made once per run from the arguments; each simulated client gets its
//! own [`Session`] from it, which reads, writes and scans keys and reports failures as
//! short error kinds (`quorum_failed`, `timeout`, `transport`, ...), counted by the report.

use std::borrow::Cow;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use hyper::header::HeaderValue;
use quorumkv_client::{Client, Context, Error, Quorum, Value};

use crate::cli::{Routing, RunArgs, System};
use crate::etcd::{EtcdSession, EtcdTarget};
use crate::raw::{RawRequests, RawSession, RawTarget};
use crate::workload::{Values, key_name, scan_after};

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

impl Token {
    /// The token with its own copy of the bytes. A header value read off a connection
    /// shares that connection's read buffer; one kept for later must not pin it.
    pub fn detached(self) -> Token {
        match self {
            Token::Raw(header) => match HeaderValue::from_bytes(header.as_bytes()) {
                Ok(copy) => Token::Raw(copy),
                Err(_) => Token::Raw(header),
            },
            client => client,
        }
    }
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
        /// `--r`, for scans (a listing does not take the client's default).
        r: Option<Quorum>,
    },
    /// Through bare hyper connections.
    Raw(Arc<RawTarget>),
    /// An etcd cluster, through its JSON gateway.
    Etcd(Arc<EtcdTarget>),
}

impl Target {
    /// Builds the target `args` describe. With ring routing it fetches the ring first, so
    /// an unreachable cluster fails here rather than as a run full of errors.
    ///
    /// # Errors
    /// A bad address or option, or a cluster whose ring cannot be fetched.
    pub async fn connect(args: &RunArgs, values: &Values) -> anyhow::Result<Target> {
        if args.target == System::Etcd {
            let longest = values.longest().clone();
            return Ok(Target::Etcd(Arc::new(EtcdTarget::new(
                args.nodes.clone(),
                &args.bucket,
                longest,
                args.timeout,
            ))));
        }
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
            let requests = raw_requests(args);
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
        Ok(Target::Client { clients, bucket: args.bucket.clone(), r: args.r })
    }

    /// The session of client number `index`.
    pub fn session(&self, index: usize) -> Session {
        match self {
            Target::Client { clients, bucket, r } => Session::Client {
                client: clients[index % clients.len()].clone(),
                bucket: bucket.clone(),
                r: *r,
            },
            Target::Raw(target) => Session::Raw(RawSession::new(Arc::clone(target), index)),
            Target::Etcd(target) => Session::Etcd(EtcdSession::new(Arc::clone(target), index)),
        }
    }

    /// `client`, `raw` or `etcd-gateway`, for the report.
    pub fn mode(&self) -> &'static str {
        match self {
            Target::Client { .. } => "client",
            Target::Raw(_) => "raw",
            Target::Etcd(_) => "etcd-gateway",
        }
    }
}

fn raw_requests(args: &RunArgs) -> RawRequests {
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
    RawRequests { bucket: args.bucket.clone(), get_query, put_query, timeout: args.timeout }
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
        /// `r` of a scan.
        r: Option<Quorum>,
    },
    /// Through its own hyper connections.
    Raw(RawSession),
    /// To etcd, through its own hyper connections.
    Etcd(EtcdSession),
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
            Session::Etcd(etcd) => etcd.get(key).await,
        }
    }

    /// Writes `value` under `key`, superseding what `context` covers; returns the
    /// context of the result when the target gives one (etcd does not).
    pub async fn put(
        &mut self,
        key: &str,
        context: Option<&Token>,
        value: Bytes,
    ) -> Result<Option<Token>, ErrorKind> {
        match self {
            Session::Client { client, bucket, .. } => {
                let put = client.put(&*bucket, key, Value::new(value));
                let put = match context {
                    Some(Token::Client(ctx)) => put.context(ctx),
                    Some(Token::Raw(header)) => match header.to_str().map(Context::from_token) {
                        Ok(Ok(ctx)) => put.context(&ctx),
                        _ => return Err(Cow::Borrowed("protocol")),
                    },
                    None => put,
                };
                put.await.map(|ctx| Some(Token::Client(ctx))).map_err(|e| kind(&e))
            }
            Session::Raw(raw) => raw.put(key, context, value).await,
            Session::Etcd(etcd) => etcd.put(key, &value).await.map(|()| None),
        }
    }

    /// Lists up to `length` keys from key number `start` on, in one request; returns how
    /// many the answer held (fewer near the end of the keys, or past deleted ones).
    pub async fn scan(&mut self, start: u64, length: u64) -> Result<u64, ErrorKind> {
        match self {
            Session::Client { client, bucket, r } => {
                let mut list = client.list(&*bucket).page_size(length as usize);
                if let Some(after) = scan_after(start) {
                    list = list.after(after);
                }
                if let Some(r) = *r {
                    list = list.r(r);
                }
                // A fresh listing always has a first page.
                let page = list.next_page().await.map_err(|e| kind(&e))?;
                Ok(page.map_or(0, |keys| keys.len() as u64))
            }
            Session::Raw(raw) => raw.scan(scan_after(start).as_deref(), length).await,
            // A range includes its first key: no need for the one before it.
            Session::Etcd(etcd) => etcd.scan(&key_name(start), length).await,
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
    fn detached_tokens_keep_their_bytes() {
        let shared = Bytes::from_static(b"xxAgAbC-_=yy").slice(2..10);
        let header = HeaderValue::from_maybe_shared(shared).unwrap();
        let Token::Raw(copy) = Token::Raw(header.clone()).detached() else { panic!("not raw") };
        assert_eq!(copy, header);
        assert_eq!(copy.as_bytes(), b"AgAbC-_=");
    }
}
