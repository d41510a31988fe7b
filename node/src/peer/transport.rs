//! The seam under every peer call: one request's bytes to an address, one answer's
//! bytes back. Two implementations: [`HttpTransport`] (hyper over TCP, production) and
//! [`MemoryNetwork`] (in this process, with faults injected), which lets a test run a
//! whole cluster inside one process and cut, slow or drop its links.
//!
//! A transport has no deadline of its own: the caller bounds every call, so a message
//! the network swallows simply never answers.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request as HttpRequest};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Largest peer response read (a whole object with siblings, plus headroom).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// How one exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// A pooled connection the peer closed under us: worth one retry of an idempotent call.
    #[error("connection closed: {0}")]
    Closed(String),
    #[error("{0}")]
    Unreachable(String),
}

/// Sends one message and returns the answer's bytes.
pub trait Transport: Send + Sync + std::fmt::Debug + 'static {
    fn exchange(&self, addr: &str, body: Bytes) -> BoxFuture<'_, Result<Bytes, TransportError>>;
}

/// hyper's pooled HTTP/1.1 client: keep-alive connections with TCP_NODELAY; each
/// message is a `POST /rpc`.
#[derive(Clone, Debug)]
pub struct HttpTransport {
    http: Client<HttpConnector, Full<Bytes>>,
}

impl HttpTransport {
    pub fn new(max_idle_per_peer: usize, connect_timeout: Duration) -> HttpTransport {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        // Below the server's 30 s idle timeout, so a pooled connection is never used
        // just as the server closes it.
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(20))
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(max_idle_per_peer)
            .build(connector);
        HttpTransport { http }
    }

    async fn post(&self, addr: &str, body: Bytes) -> Result<Bytes, TransportError> {
        let req = HttpRequest::builder()
            .method(Method::POST)
            .uri(format!("http://{addr}/rpc"))
            .header(hyper::header::CONTENT_TYPE, "application/x-quorumkv-peer")
            .body(Full::new(body))
            .map_err(|e| TransportError::Unreachable(format!("bad peer address {addr}: {e}")))?;
        let resp = self.http.request(req).await.map_err(|e| {
            let why = describe(&e);
            if closed_under_us(&e) { TransportError::Closed(why) } else { TransportError::Unreachable(why) }
        })?;
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| TransportError::Unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(bytes)
    }
}

impl Transport for HttpTransport {
    fn exchange(&self, addr: &str, body: Bytes) -> BoxFuture<'_, Result<Bytes, TransportError>> {
        let addr = addr.to_owned();
        Box::pin(async move { self.post(&addr, body).await })
    }
}

/// The error and its causes as one sentence: `connection refused` rather than a debug dump.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ")
}

fn closed_under_us(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_incomplete_message() || h.is_canceled()) {
            return true;
        }
        source = s.source();
    }
    false
}

/// What a node registered on a [`MemoryNetwork`] answers a message with.
pub type Handler = Arc<dyn Fn(Bytes) -> BoxFuture<'static, Bytes> + Send + Sync>;

#[derive(Default)]
struct Faults {
    /// Directed links that deliver nothing: `(from, to)`.
    cut: HashSet<(String, String)>,
    /// Added one-way delay per directed link.
    delay: HashMap<(String, String), Duration>,
    /// Fraction of messages lost on every link, and the state of the generator that
    /// decides which (seeded, so a failing run can be replayed).
    drop_fraction: f64,
    rng: u64,
    /// Nodes that answer nothing and send nothing, as under SIGSTOP.
    paused: HashSet<String>,
}

struct Inner {
    handlers: HashMap<String, Handler>,
    faults: Faults,
}

/// A network inside one process: nodes register a handler under their address, and
/// each gets an [`Endpoint`] to send from. Faults are set on the network and apply to
/// every message from then on. Cloning gives another handle to the same network.
#[derive(Clone)]
pub struct MemoryNetwork {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNetwork").finish_non_exhaustive()
    }
}

/// What the network does with one message.
enum Fate {
    Deliver(Handler, Duration),
    Lose,
    Refused,
}

impl MemoryNetwork {
    /// A network whose random losses follow `seed`.
    pub fn new(seed: u64) -> MemoryNetwork {
        let faults = Faults { rng: seed | 1, ..Faults::default() };
        MemoryNetwork { inner: Arc::new(Mutex::new(Inner { handlers: HashMap::new(), faults })) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `handler` answer the messages sent to `addr`.
    pub fn register(&self, addr: &str, handler: Handler) {
        self.lock().handlers.insert(addr.to_owned(), handler);
    }

    /// Takes `addr` off the network: messages to it are refused, as by a closed port.
    pub fn unregister(&self, addr: &str) {
        self.lock().handlers.remove(addr);
    }

    /// The transport of the node at `addr`.
    pub fn endpoint(&self, addr: &str) -> Arc<Endpoint> {
        Arc::new(Endpoint { network: self.clone(), me: addr.to_owned() })
    }

    /// Messages from `from` to `to` are lost (a one-way cut; answers to `to`'s requests
    /// to `from` are lost too, since they travel the same direction).
    pub fn cut_one_way(&self, from: &str, to: &str) {
        self.lock().faults.cut.insert((from.to_owned(), to.to_owned()));
    }

    /// No message crosses between `a` and `b`.
    pub fn cut(&self, a: &str, b: &str) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Cuts every link between the two groups.
    pub fn partition(&self, left: &[&str], right: &[&str]) {
        for a in left {
            for b in right {
                self.cut(a, b);
            }
        }
    }

    /// Every message from `from` to `to` takes `delay` longer.
    pub fn delay(&self, from: &str, to: &str, delay: Duration) {
        self.lock().faults.delay.insert((from.to_owned(), to.to_owned()), delay);
    }

    /// Each message is lost with probability `fraction` (0 to 1).
    pub fn drop_fraction(&self, fraction: f64) {
        self.lock().faults.drop_fraction = fraction.clamp(0.0, 1.0);
    }

    /// `addr` answers nothing and sends nothing until [`resume`](Self::resume).
    pub fn pause(&self, addr: &str) {
        self.lock().faults.paused.insert(addr.to_owned());
    }

    pub fn resume(&self, addr: &str) {
        self.lock().faults.paused.remove(addr);
    }

    /// Removes every fault.
    pub fn heal(&self) {
        let mut inner = self.lock();
        let rng = inner.faults.rng;
        inner.faults = Faults { rng, ..Faults::default() };
    }

    fn fate(&self, from: &str, to: &str) -> Fate {
        let mut inner = self.lock();
        let f = &mut inner.faults;
        let link = (from.to_owned(), to.to_owned());
        if f.paused.contains(from) || f.paused.contains(to) || f.cut.contains(&link) {
            return Fate::Lose;
        }
        if f.drop_fraction > 0.0 {
            // xorshift64: enough to pick losses reproducibly.
            f.rng ^= f.rng << 13;
            f.rng ^= f.rng >> 7;
            f.rng ^= f.rng << 17;
            if (f.rng >> 11) as f64 / (1u64 << 53) as f64 <= f.drop_fraction {
                return Fate::Lose;
            }
        }
        let delay = f.delay.get(&link).copied().unwrap_or_default();
        match inner.handlers.get(to) {
            Some(h) => Fate::Deliver(h.clone(), delay),
            None => Fate::Refused,
        }
    }
}

/// One node's place on a [`MemoryNetwork`].
#[derive(Debug)]
pub struct Endpoint {
    network: MemoryNetwork,
    me: String,
}

impl Transport for Endpoint {
    fn exchange(&self, addr: &str, body: Bytes) -> BoxFuture<'_, Result<Bytes, TransportError>> {
        let to = addr.to_owned();
        Box::pin(async move {
            let (handler, delay) = match self.network.fate(&self.me, &to) {
                Fate::Deliver(h, d) => (h, d),
                Fate::Lose => return std::future::pending().await,
                Fate::Refused => {
                    return Err(TransportError::Unreachable(format!("{to}: connection refused")));
                }
            };
            tokio::time::sleep(delay).await;
            let answer = handler(body).await;
            // The answer travels back the other way, through that direction's faults.
            match self.network.fate(&to, &self.me) {
                Fate::Deliver(_, d) => {
                    tokio::time::sleep(d).await;
                    Ok(answer)
                }
                // The asker is not registered as a server (a client-only endpoint):
                // answers still reach it.
                Fate::Refused => Ok(answer),
                Fate::Lose => std::future::pending().await,
            }
        })
    }
}
