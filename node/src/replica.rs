//! The replica-call layer: every call the node makes on a replica of a key, local or
//! remote, goes through here.
//!
//! [`Replicas::call`] runs one [`ReplicaCall`] on one node: this node's own replica is a
//! direct call through the storage boundary, any other goes through the peer client, and
//! the caller gets the same typed answer either way. [`Replicas::serve`] is the replica
//! side of a call, the same code for a local call and a peer's. [`Fanout`] sends one
//! message to a set of targets under a completion [`Rule`] and counts the answers with a
//! [`Tally`]: reads, writes and read repair all use it. Hint delivery and anti-entropy
//! send their own messages to one peer at a time through [`Replicas::request`], with the
//! same addressing, deadlines and error counting.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use quorumkv_ring::NodeId;
use quorumkv_storage::{Durability, Object};
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::Error;
use crate::key::Key;
use crate::local::LocalStore;
use crate::metrics::{Metrics, PeerLabels};
use crate::peer::transport::BoxFuture;
use crate::peer::wire::{ReplicaAnswer, ReplicaCall, Request, Response, SharedObject};
use crate::quorum::{Answer, Next, Rule, Tally, Verdict};

/// Calls on replicas, local or remote. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Replicas {
    local: LocalStore,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
}

impl Replicas {
    pub fn new(local: LocalStore, cluster: Arc<Cluster>, metrics: Arc<Metrics>) -> Replicas {
        Replicas { local, cluster, metrics }
    }

    pub fn local(&self) -> &LocalStore {
        &self.local
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Serves a call on this node's replica: the data for a key this node is a primary
    /// of; for any other key, the data merged with the hints kept here for its primaries
    /// (what a fallback holds for them).
    pub async fn serve(&self, call: ReplicaCall) -> ReplicaAnswer {
        let ring = match self.cluster.ring() {
            Ok(r) => r,
            Err(e) => return ReplicaAnswer::Failed((&e).into()),
        };
        let primaries = ring.primaries(call.key().partition());
        let owner = self.cluster.owns(call.key().partition());
        let answer = match call {
            // A partition this node gained and has not synced yet: what it holds may be
            // missing versions, so it does not answer for it (the other replicas do).
            ReplicaCall::Get { key } if owner && self.cluster.is_syncing(key.partition()) => {
                let e =
                    Error::Unavailable(format!("partition {} is still being synced here", key.partition()));
                return ReplicaAnswer::Failed((&e).into());
            }
            ReplicaCall::Get { key } if owner => self.local.get(key).await.map(ReplicaAnswer::Object),
            // Not a replica: only the hints kept here for the key's primaries, never any
            // data of ours (a stray copy must not be served, nor read-repaired back). With
            // no hint it says it is not a replica rather than "not found": a fallback that
            // never took the write knows nothing of the key, and its empty answer must not
            // count toward a read quorum (docs/DESIGN.md, decision 3).
            ReplicaCall::Get { key } => match self.local.get_hints(key, primaries.to_vec()).await {
                Ok(None) => return ReplicaAnswer::NotOwner { layout_version: ring.version() },
                other => other.map(ReplicaAnswer::Object),
            },
            ReplicaCall::Merge { key, object, durable, hint_for, made_at_ms } => {
                let durability = if durable { Durability::Synced } else { Durability::Journal };
                let object = object.object().clone();
                match hint_for {
                    Some(target) => {
                        self.local.put_hints(vec![target], key, object, made_at_ms, durability).await
                    }
                    None if owner => self.local.merge(key, object, durability).await.map(|_| ()),
                    None => {
                        // Sent here by a coordinator with another layout: the copy is
                        // kept for the owners, and the answer says why it does not count.
                        // Its age counts from when its newest version was made (a
                        // coordinator's write, or now for read repair of versions live in
                        // replicas' data); delivered hints come in a `MergeBatch` with theirs.
                        self.metrics.not_owner_answers.inc();
                        let owners: Vec<NodeId> = primaries.to_vec();
                        return match self.local.put_hints(owners, key, object, made_at_ms, durability).await {
                            Ok(()) => ReplicaAnswer::NotOwner { layout_version: ring.version() },
                            Err(e) => ReplicaAnswer::Failed((&Error::from(e)).into()),
                        };
                    }
                }
                .map(|()| ReplicaAnswer::Merged { durable })
            }
        };
        answer.unwrap_or_else(|e| ReplicaAnswer::Failed((&Error::from(e)).into()))
    }

    /// Runs `call` on `node`'s replica until `deadline`.
    pub fn call(
        &self,
        node: NodeId,
        call: ReplicaCall,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<ReplicaAnswer, Error>> {
        let this = self.clone();
        Box::pin(async move {
            if this.cluster.is_me(&node) {
                return tokio::time::timeout_at(deadline, this.serve(call)).await.map_err(|_| Error::Timeout);
            }
            let addr = this.address(&node)?;
            let result = this.cluster.peers().call_replica(&addr, call, deadline).await;
            this.count_failure(&node, result.is_err());
            Ok(result?)
        })
    }

    /// Sends `request` (not a replica call: hints, trees, a forwarded write) to another
    /// node and returns its answer and the bytes exchanged. A `Failed` answer is an error.
    pub async fn request(
        &self,
        node: &NodeId,
        request: &Request,
        deadline: Instant,
    ) -> Result<(Response, u64), Error> {
        let addr = self.address(node)?;
        let result = self.cluster.peers().call_counted(&addr, request, deadline).await;
        self.count_failure(node, result.is_err());
        let answer = result.map_err(|e| match Error::from(e) {
            Error::Unavailable(why) => Error::Unavailable(format!("{node}: {why}")),
            other => other,
        })?;
        match answer {
            (Response::Failed(e), _) => Err(e.into()),
            (response, bytes) => Ok((response, bytes as u64)),
        }
    }

    fn address(&self, node: &NodeId) -> Result<String, Error> {
        self.cluster.peer_addr(node).ok_or_else(|| Error::Unavailable(format!("no address known for {node}")))
    }

    fn count_failure(&self, node: &NodeId, failed: bool) {
        if failed {
            self.metrics.peer_errors.get_or_create(&PeerLabels { peer: node.0.clone() }).inc();
        }
    }

    /// Sends `call` to every one of `owners` (each a replica the call is for), counting
    /// answers under `rule`. `done` are answers already in (the coordinator's own write).
    /// An owner that fails — or, with `skip_down`, that the failure detector holds down —
    /// is replaced by the next of `spares`, which keeps the copy as a hint for it.
    #[allow(clippy::too_many_arguments)]
    pub fn fan_out(
        &self,
        owners: &[NodeId],
        call: ReplicaCall,
        rule: Rule,
        spares: Vec<NodeId>,
        done: &[Answer],
        skip_down: bool,
        deadline: Instant,
    ) -> Fanout {
        let mut tally = Tally::new(rule, owners.len() + done.len(), spares.len());
        for a in done {
            tally.record(*a);
        }
        let mut f = Fanout {
            replicas: self.clone(),
            call,
            deadline,
            pending: FuturesUnordered::new(),
            spares: spares.into(),
            in_flight: Vec::new(),
            tally,
            answers: Vec::new(),
            failures: Vec::new(),
            missed: Vec::new(),
            acked: Vec::new(),
        };
        for owner in owners {
            if !skip_down || self.cluster.is_up(owner) {
                f.send(owner.clone(), owner.clone());
            } else {
                f.failed(owner.clone(), owner.clone(), "held down by the failure detector".into());
            }
        }
        f
    }
}

/// One target's reply.
struct Reply {
    node: NodeId,
    owner: NodeId,
    result: Result<ReplicaAnswer, Error>,
}

/// One message to several replicas, in flight.
pub struct Fanout {
    replicas: Replicas,
    call: ReplicaCall,
    deadline: Instant,
    pending: FuturesUnordered<BoxFuture<'static, Reply>>,
    spares: VecDeque<NodeId>,
    /// The nodes whose answer is awaited.
    in_flight: Vec<NodeId>,
    tally: Tally,
    /// Every answer that counted, by the node that gave it.
    pub answers: Vec<(NodeId, ReplicaAnswer)>,
    /// Every node that failed, and why.
    pub failures: Vec<(String, String)>,
    /// Replicas whose copy no node took (for a write: to keep as hints).
    pub missed: Vec<NodeId>,
    /// For a write: the replicas (owners) whose copy was acknowledged, and whether durably.
    pub acked: Vec<(NodeId, bool)>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout").field("tally", &self.tally).field("in_flight", &self.pending.len()).finish()
    }
}

impl Fanout {
    fn send(&mut self, node: NodeId, owner: NodeId) {
        let mut call = self.call.clone();
        if let ReplicaCall::Merge { hint_for, .. } = &mut call {
            *hint_for = (node != owner).then(|| owner.clone());
        }
        let fut = self.replicas.call(node.clone(), call, self.deadline);
        self.in_flight.push(node.clone());
        self.pending.push(Box::pin(async move { Reply { node, owner, result: fut.await } }));
    }

    fn failed(&mut self, node: NodeId, owner: NodeId, why: String) {
        self.failures.push((node.0.clone(), why));
        match self.tally.record(Answer::Failed) {
            Next::SendToSpare => match self.spares.pop_front() {
                Some(spare) => {
                    if matches!(self.call, ReplicaCall::Merge { .. }) {
                        self.replicas.metrics.sloppy_writes.inc();
                    }
                    self.send(spare, owner);
                }
                None => self.missed.push(owner),
            },
            Next::Wait => self.missed.push(owner),
        }
    }

    fn absorb(&mut self, reply: Reply) {
        if let Some(at) = self.in_flight.iter().position(|n| *n == reply.node) {
            self.in_flight.swap_remove(at);
        }
        let answer = match &reply.result {
            Ok(ReplicaAnswer::Object(_)) | Ok(ReplicaAnswer::Merged { durable: false }) => Answer::Ack,
            Ok(ReplicaAnswer::Merged { durable: true }) => Answer::DurableAck,
            Ok(ReplicaAnswer::Failed(e)) => {
                let why = Error::from(e.clone()).to_string();
                return self.failed(reply.node, reply.owner, why);
            }
            Ok(ReplicaAnswer::NotOwner { layout_version }) => {
                let mine = self.replicas.cluster.layout().map_or(0, |l| l.version());
                if *layout_version > mine {
                    self.replicas.cluster.greet_soon();
                }
                let why = format!("not a replica under its layout (version {layout_version}, ours {mine})");
                return self.failed(reply.node, reply.owner, why);
            }
            Err(e) => {
                let why = e.to_string();
                return self.failed(reply.node, reply.owner, why);
            }
        };
        self.tally.record(answer);
        if let Ok(ReplicaAnswer::Merged { durable }) = &reply.result {
            self.acked.push((reply.owner.clone(), *durable));
        }
        if let Ok(a) = reply.result {
            self.answers.push((reply.node, a));
        }
    }

    /// Waits until the rule is met, or until it cannot be and every call has answered
    /// (so a failure reports every replica's outcome), or until the deadline, which
    /// counts every call still in flight as failed. Calls still in flight after that keep
    /// going: see [`finish`](Self::finish).
    pub async fn settle(&mut self) -> Verdict {
        loop {
            let verdict = self.tally.verdict();
            if verdict == Verdict::Met || (verdict == Verdict::Failed && self.pending.is_empty()) {
                return verdict;
            }
            match tokio::time::timeout_at(self.deadline, self.pending.next()).await {
                Ok(Some(reply)) => self.absorb(reply),
                Ok(None) => self.tally.expire(),
                Err(_) => {
                    for node in &self.in_flight {
                        self.failures.push((node.0.clone(), "timed out".into()));
                    }
                    self.tally.expire();
                    return self.tally.verdict();
                }
            }
        }
    }

    /// Whether every call has answered.
    pub fn is_done(&self) -> bool {
        self.pending.is_empty()
    }

    /// The figures a quorum failure reports: `(required, succeeded)`.
    pub fn shortfall(&self) -> (usize, usize) {
        self.tally.shortfall()
    }

    /// Collects the answers of every call still in flight (each ends by the deadline).
    pub async fn finish(mut self) -> Fanout {
        while let Some(reply) = self.pending.next().await {
            self.absorb(reply);
        }
        self
    }

    /// The merge of every object answered.
    pub fn merged(&self) -> Option<Object> {
        merge_all(self.objects().map(|(_, o)| o))
    }

    /// The objects answered by a read, by node (`None`: the node holds no version).
    pub fn objects(&self) -> impl Iterator<Item = (&NodeId, Option<&Object>)> {
        self.answers.iter().filter_map(|(n, a)| match a {
            ReplicaAnswer::Object(o) => Some((n, o.as_ref())),
            _ => None,
        })
    }
}

/// The merge of every object given (DVV rules); `None` if none is.
pub fn merge_all<'a>(objects: impl Iterator<Item = Option<&'a Object>>) -> Option<Object> {
    objects.flatten().fold(None, |acc: Option<Object>, o| match acc {
        None => Some(o.clone()),
        Some(mut m) => {
            m.merge(o);
            Some(m)
        }
    })
}

/// A merge of `object`, whose newest version was made at `made_at_ms`, into one replica,
/// as read repair and writes send it.
pub fn merge_call(key: Key, object: SharedObject, durable: bool, made_at_ms: u64) -> ReplicaCall {
    ReplicaCall::Merge { key, object, durable, hint_for: None, made_at_ms }
}
