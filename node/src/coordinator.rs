//! The coordinator: turns a client request into replica calls and waits for its quorum.
//!
//! Reads ask the first N healthy nodes of the key's preference list, answer once `r` have
//! answered, and keep listening in the background until the rest answer or the deadline
//! passes; primaries found stale or missing then get the merged version (read repair).
//!
//! Writes are coordinated by a primary replica of the key: a node outside the preference
//! list forwards the write. The coordinator stamps the new dot in its own store and sends
//! the result to the other primaries. A primary that the failure detector holds down, or
//! whose call fails, is replaced by the next healthy fallback, which keeps the copy as a
//! hint (sloppy quorum; `sloppy=false` refuses fallbacks). The answer comes once `w`
//! replicas (the coordinator included) acknowledged, `dw` of them after an fsync. Every
//! copy that no replica or fallback took is kept here as a hint for its primary, so a
//! node that was away catches up from hints long before anti-entropy would reach it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use quorumkv_ring::{NodeId, Ring};
use quorumkv_storage::{Actor, Content, Durability, Object, SIBLING_WARN, VersionVector};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::cluster::Cluster;
use crate::local::{Key, LocalStore};
use crate::metrics::{Metrics, OpLabels};
use crate::peer::PeerError;
use crate::peer::wire::{ReplicaAnswer, ReplicaCall, Request, Response};

/// Why a coordinated request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// Fewer than `required` replicas answered before the deadline; `replicas` names each
    /// one that failed and why.
    #[error("{succeeded} of {required} required replicas answered")]
    QuorumFailed { required: usize, succeeded: usize, replicas: Vec<(String, String)> },
    #[error("{count} concurrent versions would exceed the limit of {limit}")]
    TooManySiblings { count: usize, limit: usize },
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal: {0}")]
    Internal(String),
}

/// What a read waits for.
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    pub r: usize,
    pub timeout: Duration,
}

/// What a write waits for.
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions {
    pub w: usize,
    pub dw: usize,
    pub sloppy: bool,
    pub timeout: Duration,
}

/// Who this node is, for stamping dots.
#[derive(Clone, Debug)]
pub struct Identity {
    pub node_id: String,
    pub incarnation: u64,
    pub actor: Actor,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;
/// Replica calls in flight, polled in the request's task (no task per call).
type Pending<T> = FuturesUnordered<BoxFuture<T>>;
/// One replica's answer to a read.
type ReadReply = (NodeId, Result<Option<Object>, String>);

/// One copy of a write: sent to `node`, on behalf of `owner` (the primary it belongs to;
/// `node` itself unless `node` is a fallback).
#[derive(Debug)]
struct CopyReply {
    node: NodeId,
    owner: NodeId,
    /// Acknowledged (durably?) or why not.
    result: Result<bool, String>,
}

#[derive(Debug)]
pub struct Coordinator {
    identity: Identity,
    local: LocalStore,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    background: TaskTracker,
    keep_hints: bool,
}

impl Coordinator {
    pub fn new(
        identity: Identity,
        local: LocalStore,
        cluster: Arc<Cluster>,
        metrics: Arc<Metrics>,
        background: TaskTracker,
        keep_hints: bool,
    ) -> Coordinator {
        Coordinator { identity, local, cluster, metrics, background, keep_hints }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    pub fn local(&self) -> &LocalStore {
        &self.local
    }

    /// N: how many replicas each key has (as configured for the cluster).
    pub fn replicas(&self) -> usize {
        self.cluster.params().replicas
    }

    pub fn key(&self, bucket: Bytes, key: Bytes) -> Key {
        let partition = quorumkv_ring::key_partition(&bucket, &key, self.cluster.params().partitions);
        Key { partition, bucket, key }
    }

    /// This node's own data only, whatever the ring says (`?local=true`).
    pub async fn get_local(&self, key: Key) -> Result<Option<Object>, CoordinatorError> {
        self.local.get(key).await.map_err(|e| CoordinatorError::Internal(e.to_string()))
    }

    /// What this node answers as a replica of `key`: its data, and, when it is a fallback
    /// for the key, the hints it keeps for the key's primaries.
    pub async fn read_own_replica(&self, key: Key) -> Result<Option<Object>, quorumkv_storage::Error> {
        let ring = self.cluster.ring();
        let primaries = ring.primaries(key.partition);
        if primaries.iter().any(|n| self.cluster.is_me(n)) {
            return self.local.get(key).await;
        }
        let targets = primaries.iter().map(|n| n.0.clone()).collect();
        self.local.get_with_hints(key, targets).await
    }

    /// The nodes a read asks: the first N healthy nodes of the preference list, topped up
    /// with primaries the detector holds down if too few are healthy.
    fn read_targets(&self, ring: &Ring, partition: u32) -> Vec<NodeId> {
        let n = ring.replicas();
        let mut targets: Vec<NodeId> = ring
            .preference_list(partition)
            .iter()
            .filter(|node| self.cluster.is_up(node))
            .take(n)
            .cloned()
            .collect();
        for p in ring.primaries(partition) {
            if targets.len() >= n {
                break;
            }
            if !targets.contains(p) {
                targets.push(p.clone());
            }
        }
        targets
    }

    /// Reads a key, answering after `r` replies. `None` when none of the replicas that
    /// answered holds it.
    ///
    /// # Errors
    /// [`CoordinatorError::QuorumFailed`] when fewer than `r` replicas answer before the
    /// deadline.
    #[tracing::instrument(level = "debug", skip(self, key), fields(partition = key.partition, key_len = key.key.len(), r = opts.r))]
    pub async fn get(&self, key: Key, opts: ReadOptions) -> Result<Option<Object>, CoordinatorError> {
        let deadline = Instant::now() + opts.timeout;
        let ring = self.cluster.ring();
        let targets = self.read_targets(&ring, key.partition);
        let mut calls: Pending<ReadReply> =
            targets.iter().map(|node| self.read_replica(node.clone(), key.clone(), deadline)).collect();
        let mut answers: Vec<(NodeId, Option<Object>)> = Vec::new();
        let mut failures: Vec<(String, String)> = Vec::new();
        while answers.len() < opts.r {
            match tokio::time::timeout_at(deadline, calls.next()).await {
                Ok(Some((node, Ok(obj)))) => answers.push((node, obj)),
                Ok(Some((node, Err(why)))) => failures.push((node.0, why)),
                Ok(None) => break,
                Err(_) => {
                    for node in &targets {
                        let answered = answers.iter().any(|(a, _)| a == node);
                        if !answered && !failures.iter().any(|(f, _)| f == node.as_str()) {
                            failures.push((node.0.clone(), "timed out".into()));
                        }
                    }
                    break;
                }
            }
        }
        let merged = merge_all(answers.iter().filter_map(|(_, o)| o.as_ref()));
        let stale = answers.iter().any(|(_, o)| o.as_ref() != merged.as_ref());
        let succeeded = answers.len();
        if stale || !calls.is_empty() {
            let primaries = ring.primaries(key.partition).to_vec();
            self.background.spawn(self.repairer().read_repair(key, primaries, answers, calls, deadline));
        }
        if succeeded < opts.r {
            return Err(self.quorum_failed("get", opts.r, succeeded, failures));
        }
        Ok(merged)
    }

    fn read_replica(&self, node: NodeId, key: Key, deadline: Instant) -> BoxFuture<ReadReply> {
        let cluster = self.cluster.clone();
        let metrics = self.metrics.clone();
        if cluster.is_me(&node) {
            // Our own replica, read through the same path a peer's request takes.
            let local = self.local.clone();
            let ring = cluster.ring();
            let primaries: Vec<String> = ring.primaries(key.partition).iter().map(|n| n.0.clone()).collect();
            let is_primary = primaries.iter().any(|p| cluster.is_me(&NodeId(p.clone())));
            return Box::pin(async move {
                let read = async {
                    if is_primary { local.get(key).await } else { local.get_with_hints(key, primaries).await }
                };
                let r = match tokio::time::timeout_at(deadline, read).await {
                    Ok(Ok(obj)) => Ok(obj),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_string()),
                };
                (node, r)
            });
        }
        Box::pin(async move {
            let req = ReplicaCall::Get {
                partition: key.partition,
                bucket: key.bucket.to_vec(),
                key: key.key.to_vec(),
            };
            let r = match call_replica(&cluster, &metrics, &node, req, deadline).await {
                Ok(ReplicaAnswer::Object(obj)) => Ok(obj),
                Ok(ReplicaAnswer::Error(e)) => Err(e),
                Ok(_) => Err("unexpected answer".to_string()),
                Err(e) => Err(e.to_string()),
            };
            (node, r)
        })
    }

    fn repairer(&self) -> Repairer {
        Repairer { local: self.local.clone(), cluster: self.cluster.clone(), metrics: self.metrics.clone() }
    }

    /// Writes `content` (a value or a tombstone) superseding `context`, waiting for `w`
    /// acknowledgements of which `dw` are durable. A node that is not a primary of the
    /// key forwards the write to one that is.
    ///
    /// # Errors
    /// [`CoordinatorError::QuorumFailed`] when fewer than `w` (or `dw` durable)
    /// acknowledgements arrive before the deadline: the write may still be stored on
    /// some replicas and spread; [`CoordinatorError::TooManySiblings`] when the key has
    /// too many concurrent versions to take a write that does not resolve them.
    #[tracing::instrument(level = "debug", skip(self, key, context, content), fields(partition = key.partition, key_len = key.key.len(), w = opts.w, dw = opts.dw))]
    pub async fn put(
        &self,
        key: Key,
        context: VersionVector,
        content: Content,
        opts: WriteOptions,
    ) -> Result<Object, CoordinatorError> {
        let ring = self.cluster.ring();
        if !ring.primaries(key.partition).iter().any(|n| self.cluster.is_me(n)) {
            return self.forward(key, context, content, opts).await;
        }
        self.coordinate(key, context, content, opts).await
    }

    /// Coordinates a write here, as a replica of the key.
    pub async fn coordinate(
        &self,
        key: Key,
        context: VersionVector,
        content: Content,
        opts: WriteOptions,
    ) -> Result<Object, CoordinatorError> {
        let deadline = Instant::now() + opts.timeout;
        let durable = opts.dw > 0;
        let durability = if durable { Durability::Synced } else { Durability::Journal };
        let stamped = self.local.coordinate(key.clone(), context, self.identity.actor, content, durability);
        let object = match tokio::time::timeout_at(deadline, stamped).await {
            Ok(Ok(obj)) => obj,
            Ok(Err(quorumkv_storage::Error::TooManySiblings { count, limit })) => {
                return Err(CoordinatorError::TooManySiblings { count, limit });
            }
            Ok(Err(e)) => {
                return Err(self.quorum_failed(
                    "put",
                    opts.w,
                    0,
                    vec![(self.identity.node_id.clone(), e.to_string())],
                ));
            }
            Err(_) => {
                let why = vec![(self.identity.node_id.clone(), "timed out".to_string())];
                return Err(self.quorum_failed("put", opts.w, 0, why));
            }
        };
        self.check_siblings(&object);

        let ring = self.cluster.ring();
        let n = ring.replicas();
        let pref = ring.preference_list(key.partition);
        let mut fallbacks: VecDeque<NodeId> = if opts.sloppy {
            pref[n..].iter().filter(|f| self.cluster.is_up(f)).cloned().collect()
        } else {
            VecDeque::new()
        };
        let mut missed: Vec<NodeId> = Vec::new();
        let mut calls: Pending<CopyReply> = FuturesUnordered::new();
        for primary in pref[..n].iter().filter(|p| !self.cluster.is_me(p)) {
            if self.cluster.is_up(primary) {
                calls.push(self.replicate(
                    primary.clone(),
                    primary.clone(),
                    &key,
                    &object,
                    durable,
                    deadline,
                ));
            } else if let Some(fallback) = fallbacks.pop_front() {
                self.metrics.sloppy_writes.inc();
                calls.push(self.replicate(fallback, primary.clone(), &key, &object, durable, deadline));
            } else {
                missed.push(primary.clone());
            }
        }

        let (mut acks, mut durable_acks) = (1usize, usize::from(durable));
        let mut failures = Vec::new();
        while acks < opts.w || durable_acks < opts.dw {
            match tokio::time::timeout_at(deadline, calls.next()).await {
                Ok(Some(CopyReply { result: Ok(synced), .. })) => {
                    acks += 1;
                    durable_acks += usize::from(synced);
                }
                Ok(Some(CopyReply { node, owner, result: Err(why) })) => {
                    failures.push((node.0, why));
                    // The copy goes to the next healthy fallback, or becomes a hint here.
                    match fallbacks.pop_front() {
                        Some(fallback) => {
                            self.metrics.sloppy_writes.inc();
                            calls.push(self.replicate(fallback, owner, &key, &object, durable, deadline));
                        }
                        None => missed.push(owner),
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    failures.push(("(remaining replicas)".into(), "timed out".into()));
                    break;
                }
            }
        }
        // Copies still in flight finish in the background (dropping them would cancel
        // them); every copy that fails there, or found no taker, is kept here as a hint.
        let hints = self.hinter(key, object.clone());
        let keep_hints = self.keep_hints;
        self.background.spawn(async move {
            let mut missed = missed;
            while let Some(reply) = calls.next().await {
                if reply.result.is_err() {
                    missed.push(reply.owner);
                }
            }
            if keep_hints {
                hints.keep(missed).await;
            }
        });
        if acks < opts.w || durable_acks < opts.dw {
            let succeeded = if durable_acks < opts.dw { durable_acks } else { acks };
            let required = if durable_acks < opts.dw { opts.dw } else { opts.w };
            return Err(self.quorum_failed("put", required, succeeded, failures));
        }
        Ok(object)
    }

    /// Sends one copy of a write to `node` for `owner` (a hint if they differ).
    fn replicate(
        &self,
        node: NodeId,
        owner: NodeId,
        key: &Key,
        object: &Object,
        durable: bool,
        deadline: Instant,
    ) -> BoxFuture<CopyReply> {
        let cluster = self.cluster.clone();
        let metrics = self.metrics.clone();
        let req = ReplicaCall::Merge {
            partition: key.partition,
            bucket: key.bucket.to_vec(),
            key: key.key.to_vec(),
            object: object.clone(),
            durable,
            hint_for: (node != owner).then(|| owner.0.clone()),
        };
        Box::pin(async move {
            let result = match call_replica(&cluster, &metrics, &node, req, deadline).await {
                Ok(ReplicaAnswer::Merged { durable }) => Ok(durable),
                Ok(ReplicaAnswer::Error(e)) => Err(e),
                Ok(_) => Err("unexpected answer".to_string()),
                Err(e) => Err(e.to_string()),
            };
            CopyReply { node, owner, result }
        })
    }

    fn hinter(&self, key: Key, object: Object) -> Hinter {
        Hinter { local: self.local.clone(), metrics: self.metrics.clone(), key, object }
    }

    /// Sends a write to a primary of its key, healthy ones first, trying the next one if
    /// a primary cannot be reached.
    async fn forward(
        &self,
        key: Key,
        context: VersionVector,
        content: Content,
        opts: WriteOptions,
    ) -> Result<Object, CoordinatorError> {
        self.metrics.forwarded.inc();
        let deadline = Instant::now() + opts.timeout;
        let ring = self.cluster.ring();
        let mut primaries = ring.primaries(key.partition).to_vec();
        primaries.sort_by_key(|p| !self.cluster.is_up(p));
        let mut failures = Vec::new();
        for node in &primaries {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let req = Request::Coordinate {
                bucket: key.bucket.to_vec(),
                key: key.key.to_vec(),
                context: context.clone(),
                content: content.clone(),
                w: opts.w,
                dw: opts.dw,
                sloppy: opts.sloppy,
                timeout_ms: remaining.as_millis().max(1) as u64,
            };
            match call(&self.cluster, &self.metrics, node, &req, deadline).await {
                Ok(Response::Written(obj)) => return Ok(obj),
                Ok(Response::QuorumFailed { required, succeeded, replicas }) => {
                    return Err(self.quorum_failed("put", required, succeeded, replicas));
                }
                Ok(Response::TooManySiblings { count, limit }) => {
                    return Err(CoordinatorError::TooManySiblings { count, limit });
                }
                Ok(Response::Error(e)) => failures.push((node.0.clone(), e)),
                Ok(_) => failures.push((node.0.clone(), "unexpected answer".into())),
                // A timed-out forward may still be applied: do not send it again.
                Err(PeerError::Timeout) => {
                    failures.push((node.0.clone(), "timed out".into()));
                    break;
                }
                Err(e) => failures.push((node.0.clone(), e.to_string())),
            }
        }
        Err(self.quorum_failed("put", opts.w, 0, failures))
    }

    fn check_siblings(&self, obj: &Object) {
        let live = obj.live().len();
        if live > SIBLING_WARN {
            self.metrics.sibling_warnings.inc();
            tracing::warn!(siblings = live, "key has many concurrent versions; clients should resolve them");
        }
    }

    fn quorum_failed(
        &self,
        op: &'static str,
        required: usize,
        succeeded: usize,
        replicas: Vec<(String, String)>,
    ) -> CoordinatorError {
        self.metrics.quorum_failures.get_or_create(&OpLabels { op }).inc();
        CoordinatorError::QuorumFailed { required, succeeded, replicas }
    }
}

/// Calls a peer, counting failures.
async fn call(
    cluster: &Cluster,
    metrics: &Metrics,
    node: &NodeId,
    req: &Request,
    deadline: Instant,
) -> Result<Response, PeerError> {
    let Some(addr) = cluster.peer_addr(node) else {
        return Err(PeerError::Unreachable(format!("no address known for {node}")));
    };
    let result = cluster.peers().call(&addr, req, deadline).await;
    if result.is_err() {
        metrics.peer_errors.get_or_create(&crate::metrics::PeerLabels { peer: node.0.clone() }).inc();
    }
    result
}

/// Calls a replica (coalesced with other calls to it under load), counting failures.
async fn call_replica(
    cluster: &Cluster,
    metrics: &Metrics,
    node: &NodeId,
    req: ReplicaCall,
    deadline: Instant,
) -> Result<ReplicaAnswer, PeerError> {
    let Some(addr) = cluster.peer_addr(node) else {
        return Err(PeerError::Unreachable(format!("no address known for {node}")));
    };
    let result = cluster.peers().call_replica(&addr, req, deadline).await;
    if result.is_err() {
        metrics.peer_errors.get_or_create(&crate::metrics::PeerLabels { peer: node.0.clone() }).inc();
    }
    result
}

fn merge_all<'a>(objects: impl Iterator<Item = &'a Object>) -> Option<Object> {
    objects.fold(None, |acc: Option<Object>, o| match acc {
        None => Some(o.clone()),
        Some(mut m) => {
            m.merge(o);
            Some(m)
        }
    })
}

/// Keeps the copies of one write that no replica took as local hints for their owners.
struct Hinter {
    local: LocalStore,
    metrics: Arc<Metrics>,
    key: Key,
    object: Object,
}

impl Hinter {
    async fn keep(self, mut owners: Vec<NodeId>) {
        owners.sort();
        owners.dedup();
        for owner in owners {
            let stored = self.local.put_hint(
                owner.0.clone(),
                self.key.clone(),
                self.object.clone(),
                Durability::Journal,
            );
            match stored.await {
                Ok(()) => {
                    self.metrics.hints_stored.inc();
                }
                Err(e) => {
                    tracing::warn!(peer = %owner, error = %e, "cannot keep a hint; anti-entropy will repair")
                }
            }
        }
    }
}

/// The background half of a read: collects the late answers, then sends the merged
/// version to every primary that answered with less.
struct Repairer {
    local: LocalStore,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
}

impl Repairer {
    async fn read_repair(
        self,
        key: Key,
        primaries: Vec<NodeId>,
        mut answers: Vec<(NodeId, Option<Object>)>,
        mut calls: Pending<ReadReply>,
        deadline: Instant,
    ) {
        while let Ok(Some(reply)) = tokio::time::timeout_at(deadline, calls.next()).await {
            if let (node, Ok(obj)) = reply {
                answers.push((node, obj));
            }
        }
        let Some(merged) = merge_all(answers.iter().filter_map(|(_, o)| o.as_ref())) else {
            return;
        };
        let repair_deadline = Instant::now() + Duration::from_secs(5);
        // Fallbacks hold hints, not data: only primaries are repaired.
        for (node, obj) in answers.iter().filter(|(n, _)| primaries.contains(n)) {
            if obj.as_ref() == Some(&merged) {
                continue;
            }
            let outcome = if self.cluster.is_me(node) {
                self.local
                    .merge(key.clone(), merged.clone(), Durability::Journal)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                let req = ReplicaCall::Merge {
                    partition: key.partition,
                    bucket: key.bucket.to_vec(),
                    key: key.key.to_vec(),
                    object: merged.clone(),
                    durable: false,
                    hint_for: None,
                };
                match call_replica(&self.cluster, &self.metrics, node, req, repair_deadline).await {
                    Ok(ReplicaAnswer::Merged { .. }) => Ok(()),
                    Ok(_) => Err("unexpected answer".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            };
            match outcome {
                Ok(()) => {
                    self.metrics.read_repairs.inc();
                    tracing::debug!(peer = %node, partition = key.partition, "read repair");
                }
                Err(e) => tracing::debug!(peer = %node, error = %e, "read repair failed"),
            }
        }
    }
}
