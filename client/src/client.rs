//! [`Client`]: connections, ring-aware routing, retries and deadlines.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use hyper::header::{HeaderName, HeaderValue};

use crate::addr;
use crate::error::Error;
use crate::options::Options;
use crate::request::{Delete, Get, Put, Update};
use crate::ring::{Ring, Routes};
use crate::status::NodeStatus;
use crate::transport::{Reply, Transport};
use crate::value::{Change, Value};

/// The deadline of a call when neither the request nor the client sets one: API.md's
/// default `timeout_ms`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// One object request, as the request builders hand it to [`Client::object_request`].
#[derive(Debug)]
pub(crate) struct ObjectCall<'a> {
    pub method: Method,
    pub bucket: &'a str,
    pub key: &'a [u8],
    pub query: Vec<(&'static str, String)>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub deadline: Instant,
    /// The whole call's timeout, for the error if it passes.
    pub timeout: Duration,
}

/// A connection to a quorumkv cluster. Cheap to clone; clones share connections and the
/// ring.
///
/// The client learns the ring from `GET /v1/ring` and sends each request straight to one
/// of its key's replicas (rotating among them), which saves the hop a non-replica would
/// forward the write over. It refreshes the ring periodically and after a node fails.
/// A request that meets a connection error or a 503 is retried on the next replica,
/// then the fallbacks, then the configured nodes, within the request's deadline. Any node
/// can serve any request, so routing is only ever an optimisation.
///
/// ```no_run
/// use quorumkv_client::{Client, Quorum};
///
/// # async fn demo() -> Result<(), quorumkv_client::Error> {
/// let client = Client::builder()
///     .nodes(["10.0.0.1:7070", "10.0.0.2:7070"])
///     .w(Quorum::All)
///     .build()?;
/// let ctx = client.put("users", "alice", "hello").await?;
/// let obj = client.get("users", "alice").await?;
/// assert_eq!(obj.value().and_then(|v| v.as_str()), Some("hello"));
/// client.delete("users", "alice").context(&obj.context).await?;
/// # let _ = ctx;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) transport: Transport,
    seeds: Vec<String>,
    defaults: Options,
    routing: bool,
    refresh_every: Duration,
    max_attempts: usize,
    suspect_for: Duration,
    routes: Mutex<RouteState>,
    /// One ring refresh at a time; other requests go on with the ring they have.
    refreshing: tokio::sync::Mutex<()>,
    /// Nodes that failed recently, with when to trust them again.
    suspects: Mutex<HashMap<String, Instant>>,
    /// Rotates requests over a key's replicas.
    next: AtomicUsize,
}

#[derive(Debug, Default)]
struct RouteState {
    routes: Option<Arc<Routes>>,
    /// When to fetch the ring next; `None`: now.
    refresh_at: Option<Instant>,
}

/// Configures a [`Client`]: nodes to start from, per-request defaults, routing and
/// connection settings.
///
/// ```
/// use std::time::Duration;
/// use quorumkv_client::{Client, Quorum};
///
/// let client = Client::builder()
///     .node("127.0.0.1:7070")
///     .r(Quorum::One)
///     .timeout(Duration::from_secs(2))
///     .build()
///     .unwrap();
/// # let _ = client;
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    nodes: Vec<String>,
    defaults: Options,
    routing: bool,
    refresh_every: Duration,
    max_attempts: usize,
    suspect_for: Duration,
    pool_idle: Duration,
    connect_timeout: Duration,
    token: Option<String>,
}

impl Default for ClientBuilder {
    fn default() -> ClientBuilder {
        ClientBuilder {
            nodes: Vec::new(),
            defaults: Options::default(),
            routing: true,
            refresh_every: Duration::from_secs(30),
            max_attempts: 3,
            suspect_for: Duration::from_secs(5),
            pool_idle: Duration::from_secs(20),
            token: None,
            connect_timeout: Duration::from_secs(1),
        }
    }
}

impl ClientBuilder {
    /// Adds a node to start from (`host:port`, `host` for port 7070, or `http://host:port`).
    /// One reachable node is enough: the ring names the others.
    pub fn node(mut self, addr: impl Into<String>) -> ClientBuilder {
        self.nodes.push(addr.into());
        self
    }

    /// Adds several nodes to start from.
    pub fn nodes<I, S>(mut self, addrs: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.nodes.extend(addrs.into_iter().map(Into::into));
        self
    }

    /// Default `r` of every read.
    pub fn r(mut self, r: crate::Quorum) -> ClientBuilder {
        self.defaults.r = Some(r);
        self
    }

    /// Default `w` of every write.
    pub fn w(mut self, w: crate::Quorum) -> ClientBuilder {
        self.defaults.w = Some(w);
        self
    }

    /// Default `dw` of every write.
    pub fn dw(mut self, dw: usize) -> ClientBuilder {
        self.defaults.dw = Some(dw);
        self
    }

    /// Default `sloppy` of every write.
    pub fn sloppy(mut self, sloppy: bool) -> ClientBuilder {
        self.defaults.sloppy = Some(sloppy);
        self
    }

    /// Default deadline of every call, retries included [default: 5 s].
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.defaults.timeout = Some(timeout);
        self
    }

    /// All defaults at once.
    pub fn defaults(mut self, defaults: Options) -> ClientBuilder {
        self.defaults = defaults;
        self
    }

    /// Whether to route each request to a replica of its key [default: true]. Off, every
    /// request goes to the configured nodes in order, the next one on failure.
    pub fn routing(mut self, on: bool) -> ClientBuilder {
        self.routing = on;
        self
    }

    /// How often to fetch the ring when nothing failed [default: 30 s].
    pub fn ring_refresh(mut self, every: Duration) -> ClientBuilder {
        self.refresh_every = every;
        self
    }

    /// How many nodes one call may try [default: 3].
    pub fn max_attempts(mut self, attempts: usize) -> ClientBuilder {
        self.max_attempts = attempts.max(1);
        self
    }

    /// How long a node that failed is tried last [default: 5 s].
    pub fn suspect_for(mut self, duration: Duration) -> ClientBuilder {
        self.suspect_for = duration;
        self
    }

    /// How long an idle pooled connection is kept [default: 20 s]. Keep it below the
    /// nodes' keep-alive (30 s).
    pub fn pool_idle_timeout(mut self, idle: Duration) -> ClientBuilder {
        self.pool_idle = idle;
        self
    }

    /// How long to wait for a TCP connection before trying another node [default: 1 s].
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// The bearer token to send, for nodes started with client tokens (`--client-token`):
    /// a read-write token, or a read-only one for a client that only reads.
    pub fn token(mut self, token: impl Into<String>) -> ClientBuilder {
        self.token = Some(token.into());
        self
    }

    /// Makes the client. Does no I/O: the ring is fetched on first use.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if no node is given, an address does not parse, or a
    /// default is out of range.
    pub fn build(self) -> Result<Client, Error> {
        if self.nodes.is_empty() {
            return Err(Error::invalid("invalid_address", "give at least one node address (host:port)"));
        }
        self.defaults.validate()?;
        let mut seeds: Vec<String> = Vec::new();
        for n in &self.nodes {
            let n = addr::normalise(n)?;
            if !seeds.contains(&n) {
                seeds.push(n);
            }
        }
        Ok(Client {
            inner: Arc::new(Inner {
                transport: Transport::new(self.pool_idle, self.connect_timeout, self.token.as_deref())?,
                seeds,
                defaults: self.defaults,
                routing: self.routing,
                refresh_every: self.refresh_every,
                max_attempts: self.max_attempts,
                suspect_for: self.suspect_for,
                routes: Mutex::new(RouteState::default()),
                refreshing: tokio::sync::Mutex::new(()),
                suspects: Mutex::new(HashMap::new()),
                next: AtomicUsize::new(0),
            }),
        })
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the node is told its deadline is: a little under ours, so that a slow quorum
/// comes back as a 503 with details rather than as our own timeout.
fn server_timeout(remaining: Duration) -> Duration {
    let margin = (remaining / 10).min(Duration::from_millis(100));
    (remaining - margin).clamp(Duration::from_millis(1), Duration::from_secs(60))
}

impl Client {
    /// A client with default settings, starting from these nodes.
    ///
    /// # Errors
    /// As [`ClientBuilder::build`].
    pub fn new<I, S>(nodes: I) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Client::builder().nodes(nodes).build()
    }

    /// A builder, to set defaults and connection settings.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Reads a key. Await it, or set per-request options first.
    ///
    /// Answers the [`Object`](crate::Object): one value, or siblings, with the context to
    /// write back. A key with no live version is [`Error::NotFound`], carrying the
    /// tombstone's context when it was deleted.
    ///
    /// ```no_run
    /// # use quorumkv_client::{Client, Error, Quorum};
    /// # async fn demo(client: Client) -> Result<(), Error> {
    /// match client.get("users", "alice").r(Quorum::All).await {
    ///     Ok(obj) if obj.has_siblings() => println!("{} concurrent versions", obj.siblings.len()),
    ///     Ok(obj) => println!("{:?}", obj.value()),
    ///     Err(Error::NotFound { .. }) => println!("no alice"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn get(&self, bucket: impl AsRef<str>, key: impl AsRef<[u8]>) -> Get {
        Get::new(self.clone(), bucket.as_ref(), key.as_ref())
    }

    /// Writes a value. Await it for the new context, or set options first.
    ///
    /// Without [`Put::context`] the write is blind: it never overwrites what is stored, it
    /// becomes a sibling of it (a retried blind write of identical bytes leaves no
    /// duplicate). With the context of an earlier read it supersedes exactly what that
    /// read saw.
    ///
    /// ```no_run
    /// # use quorumkv_client::{Client, Error, Value};
    /// # async fn demo(client: Client) -> Result<(), Error> {
    /// let obj = client.get("users", "alice").await?;
    /// let ctx = client
    ///     .put("users", "alice", Value::json(&serde_json::json!({"age": 31})).unwrap())
    ///     .context(&obj.context)
    ///     .dw(1)
    ///     .await?;
    /// # let _ = ctx;
    /// # Ok(())
    /// # }
    /// ```
    pub fn put(&self, bucket: impl AsRef<str>, key: impl AsRef<[u8]>, value: impl Into<Value>) -> Put {
        Put::new(self.clone(), bucket.as_ref(), key.as_ref(), value.into())
    }

    /// Deletes a key. Await it for the tombstone's context.
    ///
    /// Give the [`context`](Delete::context) of a read: a delete supersedes only the
    /// versions its context covers, so a delete without one removes nothing already
    /// stored. ([`Client::update`] returning [`Change::Delete`] reads the context for
    /// you.) Deleting a key that does not exist succeeds.
    pub fn delete(&self, bucket: impl AsRef<str>, key: impl AsRef<[u8]>) -> Delete {
        Delete::new(self.clone(), bucket.as_ref(), key.as_ref())
    }

    /// Read-modify-write: reads the key, merges siblings with the
    /// [`resolver`](Update::resolve) you supply, calls `change` with the current value
    /// (`None` if there is none) and writes what it returns with the read's context.
    /// Answers the new context.
    ///
    /// A write that raced with this one is not lost: it shows up as a sibling at the next
    /// read, for the next update's resolver. Siblings without a resolver fail with
    /// [`Error::Unresolved`] before anything is written.
    ///
    /// ```no_run
    /// # use quorumkv_client::{Client, Error, Value};
    /// # async fn demo(client: Client) -> Result<(), Error> {
    /// // A counter whose concurrent increments merge by taking the largest.
    /// let count = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    /// client
    ///     .update("stats", "visits", |current| {
    ///         Value::from((current.map_or(0, |v| count(&v)) + 1).to_string())
    ///     })
    ///     .resolve(|siblings| siblings.into_iter().max_by_key(count).unwrap_or(Value::from("0")))
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn update<'a, F, C>(&self, bucket: impl AsRef<str>, key: impl AsRef<[u8]>, change: F) -> Update<'a>
    where
        F: FnOnce(Option<Value>) -> C + Send + 'a,
        C: Into<Change>,
    {
        Update::new(self.clone(), bucket.as_ref(), key.as_ref(), Box::new(move |v| change(v).into()))
    }

    /// Lists a bucket's live keys in byte order, a page per request: see [`List`].
    pub fn list(&self, bucket: impl AsRef<str>) -> crate::List {
        crate::List::new(self.clone(), bucket.as_ref())
    }

    /// Fetches the ring from a node (and routes by it from now on).
    ///
    /// # Errors
    /// [`Error::Transport`] or [`Error::Timeout`] if no node answers in the default
    /// deadline; [`Error::Protocol`] if the answer is not a ring.
    pub async fn ring(&self) -> Result<Ring, Error> {
        let timeout = self.timeout(None);
        let nodes = self.known_nodes();
        let reply = self
            .attempts(nodes, timeout, |node, left| async move {
                self.inner
                    .transport
                    .send(&node, Method::GET, "/v1/ring", Vec::new(), Bytes::new(), left)
                    .await
            })
            .await?;
        let ring: Ring = reply.json()?;
        self.install(ring.clone());
        Ok(ring)
    }

    /// The status of the first node that answers (in the order given to the builder).
    ///
    /// # Errors
    /// As [`Client::ring`].
    pub async fn status(&self) -> Result<NodeStatus, Error> {
        let reply = self
            .attempts(self.inner.seeds.clone(), self.timeout(None), |node, left| async move {
                self.inner
                    .transport
                    .send(&node, Method::GET, "/v1/status", Vec::new(), Bytes::new(), left)
                    .await
            })
            .await?;
        let mut status: NodeStatus = reply.json()?;
        status.raw = reply.json()?;
        Ok(status)
    }

    /// The status of one node, whether or not it is one the client was given.
    ///
    /// # Errors
    /// As [`Client::ring`], and [`Error::InvalidInput`] for a bad address.
    pub async fn node_status(&self, node: &str) -> Result<NodeStatus, Error> {
        let node = addr::normalise(node)?;
        let reply = self
            .inner
            .transport
            .send(&node, Method::GET, "/v1/status", Vec::new(), Bytes::new(), self.timeout(None))
            .await?;
        if reply.is_error() {
            return Err(reply.error());
        }
        let mut status: NodeStatus = reply.json()?;
        status.raw = reply.json()?;
        Ok(status)
    }

    /// Asks one node to run an anti-entropy exchange now, for one partition or for every
    /// partition it holds (`POST /v1/admin/anti-entropy`). Returns the partitions queued.
    ///
    /// # Errors
    /// As [`Client::ring`], and [`Error::InvalidInput`] for a partition out of range.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), quorumkv_client::Error> {
    /// let client = quorumkv_client::Client::new(["127.0.0.1:7070"])?;
    /// let queued = client.trigger_anti_entropy(None).await?;
    /// println!("{} partitions queued", queued.len());
    /// # Ok(()) }
    /// ```
    pub async fn trigger_anti_entropy(&self, partition: Option<u32>) -> Result<Vec<u32>, Error> {
        let path = match partition {
            Some(p) => format!("/v1/admin/anti-entropy?partition={p}"),
            None => "/v1/admin/anti-entropy".to_string(),
        };
        let path = &path;
        let reply = self
            .attempts(self.inner.seeds.clone(), self.timeout(None), |node, left| async move {
                self.inner.transport.send(&node, Method::POST, path, Vec::new(), Bytes::new(), left).await
            })
            .await?;
        #[derive(serde::Deserialize)]
        struct Queued {
            queued: Vec<u32>,
        }
        let queued: Queued = reply.json()?;
        Ok(queued.queued)
    }

    /// The cluster layout as one node sees it, with its staged changes and their plan
    /// (`GET /v1/admin/layout`); with `change`, first stages or commits it (`POST
    /// /v1/admin/layout/{change}`, e.g. `join?node=node-4`, `commit`, `cancel`). The
    /// answer is the node's JSON, for operators and the CLI.
    ///
    /// # Errors
    /// As [`Client::ring`], and [`Error::InvalidInput`] for a change the node refuses
    /// (an unknown node, fewer than N members left, nothing staged).
    pub async fn layout(&self, change: Option<&str>) -> Result<serde_json::Value, Error> {
        let (method, path) = match change {
            Some(c) => (Method::POST, format!("/v1/admin/layout/{c}")),
            None => (Method::GET, "/v1/admin/layout".to_string()),
        };
        let (method, path) = (&method, &path);
        // Staged changes live on the node they are sent to: always the first one.
        let first = self.inner.seeds.iter().take(1).cloned().collect();
        let reply = self
            .attempts(first, self.timeout(None), |node, left| async move {
                self.inner.transport.send(&node, method.clone(), path, Vec::new(), Bytes::new(), left).await
            })
            .await?;
        reply.json()
    }

    /// Whether a node answers `GET /v1/health` (the first of the builder's nodes that
    /// answers).
    ///
    /// # Errors
    /// As [`Client::ring`].
    pub async fn health(&self) -> Result<(), Error> {
        self.attempts(self.inner.seeds.clone(), self.timeout(None), |node, left| async move {
            self.inner.transport.send(&node, Method::GET, "/v1/health", Vec::new(), Bytes::new(), left).await
        })
        .await
        .map(drop)
    }

    // ---- the request path, used by the request builders ----

    pub(crate) fn defaults(&self) -> &Options {
        &self.inner.defaults
    }

    pub(crate) fn timeout(&self, requested: Option<Duration>) -> Duration {
        requested.or(self.inner.defaults.timeout).unwrap_or(DEFAULT_TIMEOUT)
    }

    /// Sends an object request to the key's replicas in turn (see [`Client`]) and answers
    /// the first non-retryable outcome. The query gets `timeout_ms` added.
    pub(crate) async fn object_request(&self, call: ObjectCall<'_>) -> Result<Reply, Error> {
        addr::check_bucket(call.bucket)?;
        addr::check_key(call.key)?;
        let nodes = self.candidates(call.bucket, call.key, call.deadline).await;
        let path = addr::object_path(call.bucket, call.key);
        let call = &call;
        let path = &path;
        self.attempts_until(nodes, call.deadline, call.timeout, |node, left| async move {
            let mut url = path.clone();
            let mut sep = '?';
            let server = server_timeout(left).as_millis().to_string();
            for (name, value) in call.query.iter().chain([&("timeout_ms", server)]) {
                url.push(sep);
                url.push_str(name);
                url.push('=');
                url.push_str(&addr::query_value(value));
                sep = '&';
            }
            self.inner
                .transport
                .send(&node, call.method.clone(), &url, call.headers.clone(), call.body.clone(), left)
                .await
        })
        .await
    }

    pub(crate) async fn attempts<F, Fut>(
        &self,
        nodes: Vec<String>,
        timeout: Duration,
        send: F,
    ) -> Result<Reply, Error>
    where
        F: FnMut(String, Duration) -> Fut,
        Fut: Future<Output = Result<Reply, Error>>,
    {
        self.attempts_until(nodes, Instant::now() + timeout, timeout, send).await
    }

    /// Tries `nodes` in order until one answers something other than a connection error
    /// or a 503, at most `max_attempts` of them, all before `deadline`.
    async fn attempts_until<F, Fut>(
        &self,
        nodes: Vec<String>,
        deadline: Instant,
        timeout: Duration,
        mut send: F,
    ) -> Result<Reply, Error>
    where
        F: FnMut(String, Duration) -> Fut,
        Fut: Future<Output = Result<Reply, Error>>,
    {
        let mut last = None;
        for node in nodes.iter().take(self.inner.max_attempts) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(1) {
                break;
            }
            let outcome = match send(node.clone(), left).await {
                Ok(reply) if reply.is_error() => Err(reply.error()),
                other => other,
            };
            match outcome {
                Ok(reply) => {
                    self.trust(node);
                    return Ok(reply);
                }
                Err(Error::Timeout { .. }) => {
                    // The node took all the time there was: nothing is left to retry with.
                    self.suspect(node);
                    return Err(Error::Timeout { timeout });
                }
                Err(e) if e.is_retryable() => {
                    if matches!(e, Error::Transport { .. } | Error::Unavailable { .. }) {
                        self.suspect(node);
                    }
                    // A node's own answer says more than a later connection failure.
                    let answered = |e: &Option<Error>| matches!(e, Some(Error::QuorumFailed { .. }));
                    if !(answered(&last) && matches!(e, Error::Transport { .. })) {
                        last = Some(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(match last {
            // Connection errors until the time ran out: to the caller, that is a timeout.
            Some(Error::Transport { .. }) if Instant::now() >= deadline => Error::Timeout { timeout },
            Some(e) => e,
            None if nodes.is_empty() => {
                Error::Transport { node: String::new(), message: "no node address to try".into() }
            }
            None => Error::Timeout { timeout },
        })
    }

    // ---- routing ----

    /// Where to send a request for this key, best first: its replicas (rotating, healthy
    /// ones first), then its fallbacks, then the builder's nodes; nodes that failed
    /// recently or that the ring says are not up go last.
    async fn candidates(&self, bucket: &str, key: &[u8], deadline: Instant) -> Vec<String> {
        let mut nodes: Vec<(String, bool)> = Vec::new();
        if let Some(routes) = self.routes(deadline).await {
            let (replicas, fallbacks) = routes.lookup(bucket, key);
            let turn = if replicas.is_empty() {
                0
            } else {
                self.inner.next.fetch_add(1, Ordering::Relaxed) % replicas.len()
            };
            let rotated = replicas[turn..].iter().chain(&replicas[..turn]);
            for &i in rotated.chain(fallbacks) {
                let n = &routes.nodes[i];
                nodes.push((n.addr.clone(), n.up));
            }
        }
        for seed in &self.inner.seeds {
            nodes.push((seed.clone(), true));
        }
        let now = Instant::now();
        let suspects = lock(&self.inner.suspects);
        let mut seen = std::collections::HashSet::new();
        let mut healthy = Vec::with_capacity(nodes.len());
        let mut doubtful = Vec::new();
        for (addr, up) in nodes {
            if !seen.insert(addr.clone()) {
                continue;
            }
            let suspect = suspects.get(&addr).is_some_and(|until| *until > now);
            if up && !suspect {
                healthy.push(addr);
            } else {
                doubtful.push(addr);
            }
        }
        healthy.extend(doubtful);
        healthy
    }

    /// Every node address the client knows, builder's first.
    pub(crate) fn known_nodes(&self) -> Vec<String> {
        let mut nodes = self.inner.seeds.clone();
        if let Some(routes) = lock(&self.inner.routes).routes.clone() {
            for n in &routes.nodes {
                if !nodes.contains(&n.addr) {
                    nodes.push(n.addr.clone());
                }
            }
        }
        nodes
    }

    /// The routing table, fetching the ring first if it is due. Only the first fetch makes
    /// a request wait; later ones are made by whichever request finds the ring due, while
    /// concurrent requests use the ring they have.
    async fn routes(&self, deadline: Instant) -> Option<Arc<Routes>> {
        if !self.inner.routing {
            return None;
        }
        let (current, due) = {
            let state = lock(&self.inner.routes);
            let due = state.refresh_at.is_none_or(|at| Instant::now() >= at);
            (state.routes.clone(), due)
        };
        if !due {
            return current;
        }
        let guard = match (&current, self.inner.refreshing.try_lock()) {
            (_, Ok(guard)) => guard,
            (Some(_), Err(_)) => return current,
            // First use and someone else is fetching: wait for it.
            (None, Err(_)) => self.inner.refreshing.lock().await,
        };
        // Someone may have refreshed while we waited.
        {
            let state = lock(&self.inner.routes);
            if state.refresh_at.is_some_and(|at| Instant::now() < at) {
                return state.routes.clone();
            }
        }
        // Bound the fetch so that a slow ring answer costs at most a part of the deadline.
        let left = deadline.saturating_duration_since(Instant::now());
        let budget = (left / 4).min(Duration::from_secs(1));
        let fetched = self
            .attempts(self.known_nodes(), budget, |node, left| async move {
                self.inner
                    .transport
                    .send(&node, Method::GET, "/v1/ring", Vec::new(), Bytes::new(), left)
                    .await
            })
            .await
            .and_then(|reply| reply.json::<Ring>());
        match fetched {
            Ok(ring) => self.install(ring),
            Err(_) => {
                // Keep the ring we have; try again soon, not on every request.
                let retry = self.inner.refresh_every.min(Duration::from_secs(1));
                lock(&self.inner.routes).refresh_at = Some(Instant::now() + retry);
            }
        }
        drop(guard);
        lock(&self.inner.routes).routes.clone()
    }

    /// Routes by `ring` from now on, unless it is older than the ring in use.
    fn install(&self, ring: Ring) {
        let mut state = lock(&self.inner.routes);
        state.refresh_at = Some(Instant::now() + self.inner.refresh_every);
        let older = state.routes.as_ref().is_some_and(|r| r.ring.version > ring.version);
        if !older {
            state.routes = Routes::new(ring).map(Arc::new);
        }
    }

    /// A node failed: try it last for a while, and refetch the ring soon.
    fn suspect(&self, node: &str) {
        let until = Instant::now() + self.inner.suspect_for;
        lock(&self.inner.suspects).insert(node.to_string(), until);
        if self.inner.routing {
            let soon = Instant::now() + Duration::from_millis(200);
            let mut state = lock(&self.inner.routes);
            if state.refresh_at.is_some_and(|at| at > soon) {
                state.refresh_at = Some(soon);
            }
        }
    }

    fn trust(&self, node: &str) {
        let mut suspects = lock(&self.inner.suspects);
        if !suspects.is_empty() {
            suspects.remove(node);
        }
    }

    /// The ring the client routes by, if it has fetched one.
    pub fn cached_ring(&self) -> Option<Ring> {
        lock(&self.inner.routes).routes.as_ref().map(|r| r.ring.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_gets_slightly_less_time_than_the_client() {
        assert_eq!(server_timeout(Duration::from_secs(5)), Duration::from_millis(4900));
        assert_eq!(server_timeout(Duration::from_millis(200)), Duration::from_millis(180));
        assert_eq!(server_timeout(Duration::from_micros(10)), Duration::from_millis(1));
        assert_eq!(server_timeout(Duration::from_secs(600)), Duration::from_secs(60));
    }

    #[test]
    fn builder_refuses_what_cannot_work() {
        assert!(Client::builder().build().is_err());
        assert!(Client::new(["https://x:1"]).is_err());
        assert!(Client::builder().node("x").timeout(Duration::ZERO).build().is_err());
        let c = Client::new(["x", "http://x:7070/", "y:1"]).unwrap();
        assert_eq!(c.inner.seeds, vec!["x:7070", "y:1"]);
    }
}
