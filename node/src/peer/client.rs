//! Calls to other nodes over a [`Transport`]: a cap on calls in flight per peer, a
//! deadline on every call, one retry of an idempotent call on a connection the peer
//! closed under us.
//!
//! Replica reads and writes to one peer are coalesced under load: a dispatcher per peer
//! sends each call at once while fewer than [`BATCHES_IN_FLIGHT`] messages are on the
//! wire, and otherwise lets calls queue and sends everything queued as one `Batch`
//! message when a slot frees. An idle cluster pays no added latency; a busy one pays one
//! exchange per batch instead of per call.
//!
//! Every task it starts is tracked: a dispatcher ends once the client's queue to its
//! peer is dropped ([`PeerClient::close`], or the last clone of the client dropped), and
//! [`PeerClient::wait`] waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::auth::PeerAuth;
use super::transport::{Transport, TransportError};
use super::wire::{self, ReplicaAnswer, ReplicaCall, Request, Response};

/// Coalesced messages on the wire to one peer at a time.
pub const BATCHES_IN_FLIGHT: usize = 4;
/// Calls in one coalesced message at most.
const MAX_CALLS_PER_BATCH: usize = 128;

/// Why a peer call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("timed out")]
    Timeout,
    #[error("bad answer: {0}")]
    Protocol(String),
}

impl From<PeerError> for crate::error::Error {
    fn from(e: PeerError) -> crate::error::Error {
        match e {
            PeerError::Timeout => crate::error::Error::Timeout,
            PeerError::Unreachable(why) => crate::error::Error::Unavailable(why),
            PeerError::Protocol(why) => crate::error::Error::Internal(format!("bad answer: {why}")),
        }
    }
}

/// One queued call to a peer and where its answer goes.
struct Call {
    call: ReplicaCall,
    deadline: Instant,
    reply: oneshot::Sender<Result<ReplicaAnswer, PeerError>>,
}

/// What the dispatchers share with the client: never the queues themselves, so a
/// dispatcher does not keep its own queue open.
struct Core {
    transport: Arc<dyn Transport>,
    auth: Arc<PeerAuth>,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    max_in_flight: usize,
    call_timeout: Duration,
}

#[derive(Clone)]
pub struct PeerClient {
    core: Arc<Core>,
    links: Arc<Mutex<HashMap<String, mpsc::Sender<Call>>>>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("transport", &self.core.transport)
            .field("max_in_flight", &self.core.max_in_flight)
            .finish_non_exhaustive()
    }
}

impl PeerClient {
    pub fn new(
        transport: Arc<dyn Transport>,
        auth: Arc<PeerAuth>,
        max_in_flight: usize,
        call_timeout: Duration,
    ) -> PeerClient {
        let core = Core { transport, auth, slots: Mutex::default(), max_in_flight, call_timeout };
        PeerClient { core: Arc::new(core), links: Arc::default(), tasks: TaskTracker::new() }
    }

    /// Sends `request` to the peer at `addr` and waits for its answer until `deadline`
    /// (and at most the configured call timeout).
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
        self.core.call(addr, request, deadline).await
    }

    /// A call on one replica, coalesced with other calls to the same peer under load.
    pub async fn call_replica(
        &self,
        addr: &str,
        call: ReplicaCall,
        deadline: Instant,
    ) -> Result<ReplicaAnswer, PeerError> {
        let deadline = deadline.min(Instant::now() + self.core.call_timeout);
        let (reply, answer) = oneshot::channel();
        let call = Call { call, deadline, reply };
        let link = self.link(addr)?;
        let queued = async {
            link.send(call).await.map_err(|_| PeerError::Unreachable("peer link closed".into()))?;
            answer.await.map_err(|_| PeerError::Unreachable("peer link closed".into()))?
        };
        tokio::time::timeout_at(deadline, queued).await.map_err(|_| PeerError::Timeout)?
    }

    /// Stops taking coalesced calls: each dispatcher ends once its queue is drained.
    pub fn close(&self) {
        self.links.lock().unwrap_or_else(PoisonError::into_inner).clear();
        self.tasks.close();
    }

    /// Waits until every dispatcher and batch started by this client has ended.
    pub async fn wait(&self) {
        self.tasks.wait().await;
    }

    /// The queue of coalescable calls to `addr`, starting its dispatcher on first use.
    fn link(&self, addr: &str) -> Result<mpsc::Sender<Call>, PeerError> {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = links.get(addr) {
            return Ok(tx.clone());
        }
        if self.tasks.is_closed() {
            return Err(PeerError::Unreachable("the node is shutting down".into()));
        }
        let (tx, rx) = mpsc::channel(self.core.max_in_flight);
        links.insert(addr.to_string(), tx.clone());
        self.tasks.spawn(dispatch(self.core.clone(), self.tasks.clone(), addr.to_string(), rx));
        Ok(tx)
    }
}

/// Sends queued calls to one peer, coalescing whatever queued while all
/// [`BATCHES_IN_FLIGHT`] slots were busy. Ends when every sender of `rx` is gone.
async fn dispatch(core: Arc<Core>, tasks: TaskTracker, addr: String, mut rx: mpsc::Receiver<Call>) {
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
        tasks.spawn(send_batch(core.clone(), addr.clone(), batch, permit));
    }
}

async fn send_batch(core: Arc<Core>, addr: String, mut calls: Vec<Call>, _permit: OwnedSemaphorePermit) {
    calls.retain(|c| !c.reply.is_closed());
    let Some(deadline) = calls.iter().map(|c| c.deadline).max() else { return };
    let count = calls.len();
    let mut replies = Vec::with_capacity(count);
    let mut messages = Vec::with_capacity(count);
    for c in calls {
        replies.push(c.reply);
        messages.push(c.call);
    }
    let request = if count == 1 {
        Request::Replica(messages.pop().unwrap_or_else(|| unreachable!("one call")))
    } else {
        Request::Batch(messages)
    };
    let answers: Result<Vec<ReplicaAnswer>, PeerError> = match core.call(&addr, &request, deadline).await {
        Ok((Response::Replica(answer), _)) if count == 1 => Ok(vec![answer]),
        Ok((Response::Batch(answers), _)) if answers.len() == count => Ok(answers),
        Ok((Response::Failed(e), _)) => Err(PeerError::Protocol(crate::error::Error::from(e).to_string())),
        Ok(_) => Err(PeerError::Protocol("an answer of the wrong shape".into())),
        Err(e) => Err(e),
    };
    match answers {
        Ok(answers) => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

impl Core {
    fn slot(&self, addr: &str) -> Arc<Semaphore> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(addr.to_string()).or_insert_with(|| Arc::new(Semaphore::new(self.max_in_flight))).clone()
    }

    /// One request, one exchange; idempotent requests are retried once on a pooled
    /// connection that the peer closed under them.
    async fn call(
        &self,
        addr: &str,
        request: &Request,
        deadline: Instant,
    ) -> Result<(Response, usize), PeerError> {
        let deadline = deadline.min(Instant::now() + self.call_timeout);
        let message = wire::encode(request);
        let idempotent = !matches!(request, Request::Coordinate { .. });
        let attempt = async {
            let slot = self.slot(addr);
            let _permit = slot.acquire().await.map_err(|_| PeerError::Unreachable("closed".into()))?;
            // A retry is sealed anew: the receiver refuses a nonce it has seen.
            let (body, sealed) = self.auth.seal_request(&message);
            match self.transport.exchange(addr, body.clone()).await {
                Err(TransportError::Closed(_)) if idempotent => {
                    let (body, sealed) = self.auth.seal_request(&message);
                    self.transport
                        .exchange(addr, body.clone())
                        .await
                        .map(|answer| (answer, sealed, body.len()))
                }
                other => other.map(|answer| (answer, sealed, body.len())),
            }
            .map_err(|e| PeerError::Unreachable(e.to_string()))
        };
        let (sealed_answer, to, sent) =
            tokio::time::timeout_at(deadline, attempt).await.map_err(|_| PeerError::Timeout)??;
        let bytes = self
            .auth
            .open_answer(to, &sealed_answer)
            .map_err(|e| PeerError::Protocol(format!("the answer failed authentication: {e}")))?;
        match wire::decode::<Response>(&bytes) {
            Ok(r) => Ok((r, sent + bytes.len())),
            Err(e) => Err(PeerError::Protocol(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::key::Key;
    use crate::peer::transport::{Handler, MemoryNetwork};

    #[tokio::test]
    async fn dispatchers_end_when_the_client_closes() {
        let net = MemoryNetwork::new(1);
        let answer = wire::encode(&Response::Replica(ReplicaAnswer::Object(None)));
        let auth = Arc::new(PeerAuth::new(b"a test secret, long enough"));
        let server = auth.clone();
        let handler: Handler = Arc::new(move |body: Bytes| {
            let sealed = server.open_request(&body).map(|(_, to)| server.seal_answer(to, &answer));
            Box::pin(async move { sealed.unwrap_or_default() })
        });
        net.register("peer", handler);
        let client = PeerClient::new(net.endpoint("me"), auth, 8, Duration::from_secs(1));
        let key = Key::new(64, Bytes::from_static(b"b"), Bytes::from_static(b"k")).expect("key");
        let deadline = Instant::now() + Duration::from_secs(1);
        let got = client.call_replica("peer", ReplicaCall::Get { key: key.clone() }, deadline).await;
        assert_eq!(got, Ok(ReplicaAnswer::Object(None)));
        client.close();
        tokio::time::timeout(Duration::from_secs(5), client.wait()).await.expect("every dispatcher ended");
        let after = client.call_replica("peer", ReplicaCall::Get { key }, deadline).await;
        assert!(after.is_err(), "a closed client takes no calls");
    }
}
