//! The coordinator: turns a client request into replica calls and waits for its quorum.
//!
//! Reads ask the first N healthy nodes of the key's preference list, answer once `r` have
//! answered, and keep listening in the background until the rest answer or the deadline
//! passes; primaries found stale or missing then get the merged version (read repair).
//!
//! Writes are coordinated by a primary replica of the key: a node outside the preference
//! list forwards the write, and so does a primary whose own storage is stalled (the write
//! would wait for it), to another primary that is up. The coordinator stamps the new dot in its own store and sends
//! the result to the other primaries. A primary that the failure detector holds down, or
//! whose call fails, is replaced by the next healthy fallback, which keeps the copy as a
//! hint (sloppy quorum; `sloppy=false` refuses fallbacks). The answer comes once `w`
//! replicas (the coordinator included) acknowledged, `dw` of them after an fsync. Every
//! copy that no replica or fallback took is kept here as a hint for its primary, so a
//! node that was away catches up from hints long before anti-entropy would reach it.
//! Each write is timed from its answer to the last primary's acknowledgement, and each
//! read counted with whether it found a primary stale (see [`crate::lag`]).
//!
//! The sending and counting is [`crate::replica`]'s; this module decides whom to ask and
//! what the answers mean.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use quorumkv_ring::{NodeId, Ring};
use quorumkv_storage::{Content, Durability, Object, SIBLING_WARN, VersionVector};
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::Error;
use crate::key::Key;
use crate::local::LocalStore;
use crate::metrics::{Metrics, OpLabels};
use crate::peer::wire::{ReplicaCall, Request, Response, SharedObject};
use crate::quorum::{Answer, Rule, Verdict};
use crate::replica::{Fanout, Replicas, merge_call};
use crate::worker::Background;

/// What a read waits for.
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    pub r: usize,
    pub timeout: Duration,
    /// Whether a fallback that holds a copy of the key (a hint) may count toward `r`;
    /// `false` asks the primary replicas only (a strict read).
    pub sloppy: bool,
}

/// What a write waits for.
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions {
    pub w: usize,
    pub dw: usize,
    pub sloppy: bool,
    pub timeout: Duration,
}

/// Who this node is. (Which actor numbers its versions is the store's business: see
/// [`quorumkv_storage::versions`].)
#[derive(Clone, Debug)]
pub struct Identity {
    pub node_id: NodeId,
    pub incarnation: u64,
}

/// How long the local storage may have been inside one call before a write this node
/// would coordinate goes to another primary. A storage call normally takes microseconds
/// and a batch of them about a millisecond.
const STALL_HAND_OFF: Duration = Duration::from_millis(2);

#[derive(Debug)]
pub struct Coordinator {
    identity: Identity,
    replicas: Replicas,
    metrics: Arc<Metrics>,
    background: Background,
    keep_hints: bool,
}

impl Coordinator {
    pub fn new(
        identity: Identity,
        replicas: Replicas,
        metrics: Arc<Metrics>,
        background: Background,
        keep_hints: bool,
    ) -> Coordinator {
        Coordinator { identity, replicas, metrics, background, keep_hints }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    fn cluster(&self) -> &Arc<Cluster> {
        self.replicas.cluster()
    }

    fn local(&self) -> &LocalStore {
        self.replicas.local()
    }

    /// N: how many replicas each key has (as configured for the cluster).
    pub fn replicas(&self) -> usize {
        self.cluster().params().replicas
    }

    /// This node's own data only, whatever the ring says (`?local=true`).
    pub async fn get_local(&self, key: Key) -> Result<Option<Object>, Error> {
        Ok(self.local().get(key).await?)
    }

    /// The nodes a read asks: the first N healthy nodes of the preference list, topped up
    /// with primaries the detector holds down if too few are healthy.
    pub(crate) fn read_targets(&self, ring: &Ring, partition: u32) -> Vec<NodeId> {
        let n = ring.replicas();
        let cluster = self.cluster();
        let mut targets: Vec<NodeId> = ring
            .preference_list(partition)
            .iter()
            .filter(|node| cluster.is_up(node))
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
    /// [`Error::QuorumFailed`] when fewer than `r` replicas answer before the deadline.
    #[tracing::instrument(level = "debug", skip(self, key), fields(partition = key.partition(), key_len = key.key().len(), r = opts.r))]
    pub async fn get(&self, key: Key, opts: ReadOptions) -> Result<Option<Object>, Error> {
        let deadline = Instant::now() + opts.timeout;
        // While the partition moves, reads go to the previous layout's replicas, which
        // hold everything (and take every write) until the new owners have synced.
        let ring = match self.cluster().previous_ring() {
            Some(old) if self.cluster().is_moving(key.partition()) => old,
            _ => self.cluster().ring()?,
        };
        // A strict read asks the primaries only. Otherwise a fallback that holds nothing
        // for the key does not count (it answers that it is not a replica): the next
        // healthy fallback is asked instead.
        let (targets, spares) = if opts.sloppy {
            let targets = self.read_targets(&ring, key.partition());
            let spares: Vec<NodeId> = ring
                .preference_list(key.partition())
                .iter()
                .filter(|n| !targets.contains(n) && self.cluster().is_up(n))
                .cloned()
                .collect();
            (targets, spares)
        } else {
            (ring.primaries(key.partition()).to_vec(), vec![])
        };
        let call = ReplicaCall::Get { key: key.clone() };
        let mut reads =
            self.replicas.fan_out(&targets, call, Rule::read(opts.r), spares, &[], false, deadline);
        let verdict = reads.settle().await;
        let merged = reads.merged();
        let failed =
            (verdict == Verdict::Failed).then(|| (reads.shortfall(), std::mem::take(&mut reads.failures)));
        let stale = reads.objects().any(|(_, o)| o != merged.as_ref());
        if stale || !reads.is_done() {
            let primaries = ring.primaries(key.partition()).to_vec();
            let repair = read_repair(self.replicas.clone(), self.metrics.clone(), key, primaries, reads);
            self.background.spawn(repair);
        } else {
            self.metrics.lag.read(false);
        }
        if let Some(((required, succeeded), failures)) = failed {
            return Err(self.quorum_failed("get", required, succeeded, failures));
        }
        Ok(merged)
    }

    /// Writes `content` (a value or a tombstone) superseding `context`, waiting for `w`
    /// acknowledgements of which `dw` are durable. A node that is not a primary of the
    /// key forwards the write to one that is.
    ///
    /// # Errors
    /// [`Error::QuorumFailed`] when fewer than `w` (or `dw` durable) acknowledgements
    /// arrive before the deadline: the write may still be stored on some replicas and
    /// spread; [`Error::TooManySiblings`] when the key has too many concurrent versions
    /// to take a write that does not resolve them.
    #[tracing::instrument(level = "debug", skip(self, key, context, content), fields(partition = key.partition(), key_len = key.key().len(), w = opts.w, dw = opts.dw))]
    pub async fn put(
        &self,
        key: Key,
        context: VersionVector,
        content: Content,
        opts: WriteOptions,
    ) -> Result<Object, Error> {
        let ring = self.cluster().ring()?;
        let primaries = ring.primaries(key.partition());
        if !primaries.iter().any(|n| self.cluster().is_me(n)) {
            return self.forward(key, context, content, opts).await;
        }
        // The new version is stamped in the coordinator's own store before it is copied,
        // so a coordinator whose storage is stuck (a flush holding the journal, a slow
        // disk) would hold the write however fast the other replicas are. Another primary
        // that is up coordinates it instead.
        if self.local().writes_stalled(STALL_HAND_OFF)
            && primaries.iter().any(|n| !self.cluster().is_me(n) && self.cluster().is_up(n))
        {
            self.metrics.stall_hand_offs.inc();
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
    ) -> Result<Object, Error> {
        let deadline = Instant::now() + opts.timeout;
        let durable = opts.dw > 0;
        let durability = if durable { Durability::Synced } else { Durability::Journal };
        let me = self.identity.node_id.0.clone();
        let made_at_ms = quorumkv_storage::unix_ms();
        let stamped = self.local().coordinate(key.clone(), context, content, durability);
        let object = match tokio::time::timeout_at(deadline, stamped).await {
            Ok(Ok(obj)) => obj,
            Ok(Err(quorumkv_storage::Error::TooManySiblings { count, limit })) => {
                return Err(Error::TooManySiblings { count, limit });
            }
            Ok(Err(e)) => return Err(self.quorum_failed("put", opts.w, 0, vec![(me, e.to_string())])),
            Err(_) => return Err(self.quorum_failed("put", opts.w, 0, vec![(me, "timed out".into())])),
        };
        self.check_siblings(&key, &object);

        let shared = Version { object: SharedObject::new(object), made_at_ms };
        let spread = Spread::new(self.metrics.clone());
        let me_acked = (self.identity.node_id.clone(), durable);
        let copied: Result<_, Error> = async {
            // While the partition moves, the previous layout's replicas take the write
            // first and `w` of them must acknowledge it; then `w` of the new ones (those in
            // both count once), so reads from either replica set see it.
            let mut acked = vec![me_acked];
            if self.cluster().is_moving(key.partition())
                && let Some(old) = self.cluster().previous_ring()
            {
                acked = self.copy_to(&old, &key, &shared, opts, &acked, deadline, &spread).await?;
            }
            let ring = self.cluster().ring()?;
            self.copy_to(&ring, &key, &shared, opts, &acked, deadline, &spread).await
        }
        .await;
        spread.answered(copied.is_ok());
        copied?;
        Ok(shared.object.object().clone())
    }

    /// Sends a stamped write to the replicas of its key under `ring` that have not
    /// acknowledged it yet (`acked`, by owner), waiting for `w` acknowledgements among
    /// them, `dw` durable. Returns every owner that acknowledged, those of `acked` too.
    /// `spread` learns when and whether the copies reached their primaries.
    #[allow(clippy::too_many_arguments)]
    async fn copy_to(
        &self,
        ring: &Ring,
        key: &Key,
        shared: &Version,
        opts: WriteOptions,
        acked: &[(NodeId, bool)],
        deadline: Instant,
        spread: &Arc<Spread>,
    ) -> Result<Vec<(NodeId, bool)>, Error> {
        let n = ring.replicas();
        let pref = ring.preference_list(key.partition());
        let replicas = &pref[..n];
        let done: Vec<Answer> = acked
            .iter()
            .filter(|(owner, _)| replicas.contains(owner))
            .map(|(_, durable)| if *durable { Answer::DurableAck } else { Answer::Ack })
            .collect();
        let others: Vec<NodeId> =
            replicas.iter().filter(|p| !acked.iter().any(|(a, _)| a == *p)).cloned().collect();
        let spares: Vec<NodeId> = if opts.sloppy {
            pref[n..].iter().filter(|f| self.cluster().is_up(f)).cloned().collect()
        } else {
            vec![]
        };
        let call = merge_call(key.clone(), shared.object.clone(), opts.dw > 0, shared.made_at_ms);
        let rule = Rule::write(opts.w, opts.dw);
        let mut copies = self.replicas.fan_out(&others, call, rule, spares, &done, true, deadline);
        let verdict = copies.settle().await;
        let failed =
            (verdict == Verdict::Failed).then(|| (copies.shortfall(), std::mem::take(&mut copies.failures)));
        let mut all: Vec<(NodeId, bool)> = acked.to_vec();
        all.extend(copies.acked.iter().cloned());
        // Copies still in flight finish in the background (dropping them would cancel
        // them); every copy that fails there, or found no taker, is kept here as a hint.
        // A write whose copies all landed spawns nothing.
        if !copies.is_done() || (self.keep_hints && !copies.missed.is_empty()) {
            let hints = self.keep_hints.then(|| Hinter {
                local: self.local().clone(),
                metrics: self.metrics.clone(),
                key: key.clone(),
                version: shared.clone(),
            });
            let spread = spread.later();
            self.background.spawn(async move {
                let copies = copies.finish().await;
                spread.settled(landed(&copies, &others));
                if let Some(hints) = hints {
                    hints.keep(copies.missed).await;
                }
            });
        } else if !landed(&copies, &others) {
            spread.missed();
        }
        if let Some(((required, succeeded), failures)) = failed {
            return Err(self.quorum_failed("put", required, succeeded, failures));
        }
        Ok(all)
    }

    /// Sends a write to another primary of its key, healthy ones first, trying the next
    /// one if a primary cannot be reached.
    async fn forward(
        &self,
        key: Key,
        context: VersionVector,
        content: Content,
        opts: WriteOptions,
    ) -> Result<Object, Error> {
        self.metrics.forwarded.inc();
        let deadline = Instant::now() + opts.timeout;
        let ring = self.cluster().ring()?;
        let mut primaries: Vec<NodeId> =
            ring.primaries(key.partition()).iter().filter(|p| !self.cluster().is_me(p)).cloned().collect();
        primaries.sort_by_key(|p| !self.cluster().is_up(p));
        let mut failures = Vec::new();
        for node in &primaries {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let req = Request::Coordinate {
                key: key.clone(),
                context: context.clone(),
                content: content.clone(),
                w: opts.w,
                dw: opts.dw,
                sloppy: opts.sloppy,
                timeout_ms: remaining.as_millis().max(1) as u64,
            };
            match self.replicas.request(node, &req, deadline).await {
                Ok((Response::Written(obj), _)) => return Ok(obj),
                Ok(_) => failures.push((node.0.clone(), "unexpected answer".into())),
                Err(
                    e @ (Error::QuorumFailed { .. }
                    | Error::TooManySiblings { .. }
                    | Error::BadRequest { .. }),
                ) => {
                    if let Error::QuorumFailed { .. } = e {
                        self.metrics.quorum_failures.get_or_create(&OpLabels { op: "put" }).inc();
                    }
                    return Err(e);
                }
                // A timed-out forward may still be applied: do not send it again.
                Err(Error::Timeout) => {
                    failures.push((node.0.clone(), "timed out".into()));
                    break;
                }
                Err(e) => failures.push((node.0.clone(), e.to_string())),
            }
        }
        Err(self.quorum_failed("put", opts.w, 0, failures))
    }

    fn check_siblings(&self, key: &Key, obj: &Object) {
        let live = obj.live().len();
        static MANY_SIBLINGS: crate::throttle::Throttle =
            crate::throttle::Throttle::new(std::time::Duration::from_secs(10));
        if live > SIBLING_WARN {
            self.metrics.sibling_warnings.inc();
            // Every write to such a key would say so again: once per interval is enough.
            if let Some(held) = MANY_SIBLINGS.ready() {
                tracing::warn!(
                    siblings = live,
                    bucket = %String::from_utf8_lossy(key.bucket()),
                    key = %String::from_utf8_lossy(key.key()),
                    warnings_since_last_line = held,
                    "key has many concurrent versions; clients should read it and write back with its context"
                );
            }
        }
    }

    fn quorum_failed(
        &self,
        op: &'static str,
        required: usize,
        succeeded: usize,
        replicas: Vec<(String, String)>,
    ) -> Error {
        self.metrics.quorum_failures.get_or_create(&OpLabels { op }).inc();
        Error::QuorumFailed { required, succeeded, replicas }
    }
}

/// Whether every one of `owners` acknowledged its own copy (not a fallback for it).
fn landed(copies: &Fanout, owners: &[NodeId]) -> bool {
    owners.iter().all(|owner| copies.answers.iter().any(|(node, _)| node == owner))
}

/// When the copies of one write reached their primaries, across the one or two replica
/// sets it is copied to (two while its partition moves). The write is recorded once
/// ([`crate::lag::Window::write`]), when the client has been answered and every copy has
/// settled: with its lag if every primary acknowledged its own copy, as not landed if
/// one did not (a fallback kept it as a hint, it failed, or the quorum failed). A write
/// whose answer or copies are cut short (the request dropped, shutdown) is not recorded.
#[derive(Debug)]
struct Spread {
    metrics: Arc<Metrics>,
    /// When the coordinator stamped its own copy, which counts as acknowledged then.
    /// The times below are nanoseconds after it.
    stamped: Instant,
    answered: AtomicU64,
    last_ack: AtomicU64,
    landed: AtomicBool,
    /// Parts not settled yet: the answer, and each background task finishing copies.
    open: AtomicUsize,
}

impl Spread {
    fn new(metrics: Arc<Metrics>) -> Arc<Spread> {
        Arc::new(Spread {
            metrics,
            stamped: Instant::now(),
            answered: AtomicU64::new(0),
            last_ack: AtomicU64::new(0),
            landed: AtomicBool::new(true),
            open: AtomicUsize::new(1),
        })
    }

    fn elapsed_nanos(&self) -> u64 {
        u64::try_from(self.stamped.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A part that settles later: copies finishing in the background.
    fn later(self: &Arc<Spread>) -> Arc<Spread> {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.clone()
    }

    /// Some primary did not take its own copy.
    fn missed(&self) {
        self.landed.store(false, Ordering::Relaxed);
    }

    /// A later part's copies have all settled, now; `landed`: each on its primary.
    fn settled(&self, landed: bool) {
        if landed {
            self.last_ack.fetch_max(self.elapsed_nanos(), Ordering::Relaxed);
        } else {
            self.missed();
        }
        self.close();
    }

    /// The client is answered now; `ok`: the write met its quorum.
    fn answered(&self, ok: bool) {
        self.answered.store(self.elapsed_nanos(), Ordering::Relaxed);
        if !ok {
            self.missed();
        }
        self.close();
    }

    fn close(&self) {
        // The last part to settle sees every other part's stores (AcqRel on `open`).
        if self.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            let lag = self.landed.load(Ordering::Relaxed).then(|| {
                let after = self.last_ack.load(Ordering::Relaxed);
                Duration::from_nanos(after.saturating_sub(self.answered.load(Ordering::Relaxed)))
            });
            self.metrics.lag.write(lag);
        }
    }
}

/// A stamped write as it is copied: the object and when its new version was made.
#[derive(Clone)]
struct Version {
    object: SharedObject,
    made_at_ms: u64,
}

/// Keeps the copies of one write that no replica took as local hints for their owners,
/// aged from when the write was made, however late its copies failed.
struct Hinter {
    local: LocalStore,
    metrics: Arc<Metrics>,
    key: Key,
    version: Version,
}

impl Hinter {
    async fn keep(self, mut owners: Vec<NodeId>) {
        owners.sort();
        owners.dedup();
        for owner in owners {
            let stored = self.local.put_hints(
                vec![owner.clone()],
                self.key.clone(),
                self.version.object.object().clone(),
                self.version.made_at_ms,
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
async fn read_repair(
    replicas: Replicas,
    metrics: Arc<Metrics>,
    key: Key,
    primaries: Vec<NodeId>,
    reads: Fanout,
) {
    let reads = reads.finish().await;
    let Some(merged) = reads.merged() else {
        metrics.lag.read(false);
        return;
    };
    let merged = SharedObject::new(merged);
    let deadline = Instant::now() + Duration::from_secs(5);
    // Fallbacks hold hints, not data: only primaries are repaired.
    let stale: Vec<NodeId> = reads
        .objects()
        .filter(|(n, o)| primaries.contains(n) && *o != Some(merged.object()))
        .map(|(n, _)| n.clone())
        .collect();
    metrics.lag.read(!stale.is_empty());
    for node in stale {
        let call = merge_call(key.clone(), merged.clone(), false, quorumkv_storage::unix_ms());
        match replicas.call(node.clone(), call, deadline).await {
            Ok(crate::peer::wire::ReplicaAnswer::Merged { .. }) => {
                metrics.read_repairs.inc();
                tracing::debug!(peer = %node, partition = key.partition(), "read repair");
            }
            Ok(other) => tracing::debug!(peer = %node, answer = ?other, "read repair failed"),
            Err(e) => tracing::debug!(peer = %node, error = %e, "read repair failed"),
        }
    }
}
