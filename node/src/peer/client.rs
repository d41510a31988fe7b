//! Calls to other nodes: pooled keep-alive connections with TCP_NODELAY, a cap on calls
//! in flight per peer, and a deadline on every call.
//!
//! Replica reads and writes to one peer are coalesced under load: a dispatcher per peer
//! sends each call at once while fewer than [`BATCHES_IN_FLIGHT`] messages are on the
//! wire, and otherwise lets calls queue and sends everything queued as one `Batch`
//! message when a slot frees. An idle cluster pays no added latency; a busy one pays one
//! HTTP exchange per batch instead of per call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request as HttpRequest};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use super::wire::{self, ReplicaAnswer, ReplicaCall, Request, Response};

/// Largest peer response read (a whole object with siblings, plus headroom).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// Coalesced messages on the wire to one peer at a time.
pub const BATCHES_IN_FLIGHT: usize = 4;
/// Calls in one coalesced message at most.
const MAX_CALLS_PER_BATCH: usize = 128;

/// One queued call to a peer and where its answer goes.
struct Call {
    call: ReplicaCall,
    deadline: Instant,
    reply: oneshot::Sender<Result<ReplicaAnswer, PeerError>>,
}

/// Why a peer call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("timed out")]
    Timeout,
    #[error("bad answer: {0}")]
    Protocol(String),
}

#[derive(Clone)]
pub struct PeerClient {
    http: Client<HttpConnector, Full<Bytes>>,
    slots: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    links: Arc<Mutex<HashMap<String, mpsc::Sender<Call>>>>,
    max_in_flight: usize,
    call_timeout: Duration,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient").field("max_in_flight", &self.max_in_flight).finish_non_exhaustive()
    }
}

impl PeerClient {
    pub fn new(max_in_flight: usize, call_timeout: Duration) -> PeerClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(call_timeout));
        // Below the server's 30 s idle timeout, so a pooled connection is never used
        // just as the server closes it.
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(20))
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(max_in_flight)
            .build(connector);
        PeerClient { http, slots: Arc::default(), links: Arc::default(), max_in_flight, call_timeout }
    }

    fn slot(&self, addr: &str) -> Arc<Semaphore> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(addr.to_string()).or_insert_with(|| Arc::new(Semaphore::new(self.max_in_flight))).clone()
    }

    /// Sends `request` to the peer at `addr` and waits for its answer until `deadline`
    /// (and at most the configured call timeout). Idempotent requests are retried once
    /// on a pooled connection that the peer closed under them.
    pub async fn call(
        &self,
        addr: &str,
        request: &Request,
        deadline: Instant,
    ) -> Result<Response, PeerError> {
        self.call_counted(addr, request, deadline).await.map(|(r, _)| r)
    }

    /// Like [`call`](Self::call), also returning the bytes sent and received.
    pub async fn call_counted(
        &self,
        addr: &str,
        request: &Request,
        deadline: Instant,
    ) -> Result<(Response, usize), PeerError> {
        self.call_direct(addr, request, deadline).await
    }

    /// A call on one replica, coalesced with other calls to the same peer under load.
    pub async fn call_replica(
        &self,
        addr: &str,
        call: ReplicaCall,
        deadline: Instant,
    ) -> Result<ReplicaAnswer, PeerError> {
        let deadline = deadline.min(Instant::now() + self.call_timeout);
        let (reply, answer) = oneshot::channel();
        let call = Call { call, deadline, reply };
        let link = self.link(addr);
        let queued = async {
            link.send(call).await.map_err(|_| PeerError::Unreachable("peer link closed".into()))?;
            answer.await.map_err(|_| PeerError::Unreachable("peer link closed".into()))?
        };
        tokio::time::timeout_at(deadline, queued).await.map_err(|_| PeerError::Timeout)?
    }

    /// The queue of coalescable calls to `addr`, starting its dispatcher on first use.
    fn link(&self, addr: &str) -> mpsc::Sender<Call> {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = links.get(addr) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(self.max_in_flight);
        links.insert(addr.to_string(), tx.clone());
        // The dispatcher ends when the client (holding the senders) is dropped.
        tokio::spawn(self.clone().dispatch(addr.to_string(), rx));
        tx
    }

    /// Sends queued calls to one peer, coalescing whatever queued while all
    /// [`BATCHES_IN_FLIGHT`] slots were busy.
    async fn dispatch(self, addr: String, mut rx: mpsc::Receiver<Call>) {
        let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
        while let Some(first) = rx.recv().await {
            let Ok(permit) = slots.clone().acquire_owned().await else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_CALLS_PER_BATCH {
                match rx.try_recv() {
                    Ok(call) => batch.push(call),
                    Err(_) => break,
                }
            }
            tokio::spawn(self.clone().send_batch(addr.clone(), batch, permit));
        }
    }

    async fn send_batch(self, addr: String, mut calls: Vec<Call>, _permit: OwnedSemaphorePermit) {
        calls.retain(|c| !c.reply.is_closed());
        let Some(deadline) = calls.iter().map(|c| c.deadline).max() else { return };
        let (request, count) = if calls.len() == 1 {
            (Request::Replica(calls[0].call.clone()), 1)
        } else {
            (Request::Batch(calls.iter().map(|c| c.call.clone()).collect()), calls.len())
        };
        let answers: Result<Vec<ReplicaAnswer>, PeerError> =
            match self.call_direct(&addr, &request, deadline).await {
                Ok((Response::Replica(answer), _)) if count == 1 => Ok(vec![answer]),
                Ok((Response::Batch(answers), _)) if answers.len() == count => Ok(answers),
                Ok((Response::Error(e), _)) => Err(PeerError::Protocol(e)),
                Ok(_) => Err(PeerError::Protocol("an answer of the wrong shape".into())),
                Err(e) => Err(e),
            };
        match answers {
            Ok(answers) => {
                for (call, answer) in calls.into_iter().zip(answers) {
                    let _ = call.reply.send(Ok(answer));
                }
            }
            Err(e) => {
                for call in calls {
                    let _ = call.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// One request, one HTTP exchange.
    async fn call_direct(
        &self,
        addr: &str,
        request: &Request,
        deadline: Instant,
    ) -> Result<(Response, usize), PeerError> {
        let deadline = deadline.min(Instant::now() + self.call_timeout);
        let body = Bytes::from(wire::encode(request));
        let sent = body.len();
        let idempotent = !matches!(request, Request::Coordinate { .. });
        let attempt = async {
            let slot = self.slot(addr);
            let _permit = slot.acquire().await.map_err(|_| PeerError::Unreachable("closed".into()))?;
            match self.send(addr, body.clone()).await {
                Err(Failure::Closed(_)) if idempotent => self.send(addr, body).await,
                other => other,
            }
            .map_err(PeerError::from)
        };
        let (response, received) =
            tokio::time::timeout_at(deadline, attempt).await.map_err(|_| PeerError::Timeout)??;
        Ok((response, sent + received))
    }

    async fn send(&self, addr: &str, body: Bytes) -> Result<(Response, usize), Failure> {
        let req = HttpRequest::builder()
            .method(Method::POST)
            .uri(format!("http://{addr}/rpc"))
            .header(hyper::header::CONTENT_TYPE, "application/x-quorumkv-peer")
            .body(Full::new(body))
            .map_err(|e| Failure::Other(PeerError::Unreachable(format!("bad peer address {addr}: {e}"))))?;
        let resp = self.http.request(req).await.map_err(|e| {
            let why = describe(&e);
            if closed_under_us(&e) {
                Failure::Closed(why)
            } else {
                Failure::Other(PeerError::Unreachable(why))
            }
        })?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| Failure::Other(PeerError::Unreachable(format!("reading the answer: {e}"))))?
            .to_bytes();
        match wire::decode::<Response>(&bytes) {
            Ok(r) => Ok((r, bytes.len())),
            Err(e) => Err(Failure::Other(PeerError::Protocol(format!("status {status}: {e}")))),
        }
    }
}

/// How one attempt failed: a pooled connection the peer closed (worth one retry), or
/// anything else.
enum Failure {
    Closed(String),
    Other(PeerError),
}

impl From<Failure> for PeerError {
    fn from(f: Failure) -> PeerError {
        match f {
            Failure::Closed(why) => PeerError::Unreachable(why),
            Failure::Other(e) => e,
        }
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
