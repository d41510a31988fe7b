//! Membership: the stored cluster layout, gossip, and the failure detector's view.
//!
//! Placement comes from the [`Layout`] alone: loaded from disk before the node serves,
//! made once for a new cluster (version 1: this node and its seeds, once every seed has
//! answered and none had a layout), replaced only by a higher version learnt from a
//! peer. A greeter gossips: every node sends its layout to its seeds and to every
//! member, and takes the higher version; the same version with another digest is a
//! conflict, logged and shown in `/v1/status`. Whom this node can reach changes only
//! members' up/down state (the failure detector), never the ring.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use quorumkv_ring::{NodeId, PartitionChange, Ring};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::detector::PhiAccrual;
use crate::error::Error;
use crate::layout::{Change, ClusterParams, Layout, MemberInfo};
use crate::local::LocalStore;
use crate::metrics::Metrics;
use crate::peer::PeerClient;
use crate::peer::wire::{Greeting, Request, Response};

/// An operator's change as asked, before it is resolved against the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StageOp {
    Join(NodeId),
    Leave(NodeId),
    Remove(NodeId),
    Replace(NodeId, NodeId),
}

/// Where the layout is stored.
const LAYOUT_META: &str = "layout";
/// Where the previous layout is stored while it is live (empty once retired).
const PREVIOUS_META: &str = "layout-previous";
/// Where the partitions still to sync are stored.
const SYNCING_META: &str = "syncing";

/// How a member looks from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    Up,
    Down,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Up => "up",
            MemberState::Down => "down",
        }
    }
}

#[derive(Clone, Debug)]
struct Member {
    info: MemberInfo,
    state: MemberState,
    since: SystemTime,
    detector: PhiAccrual,
}

impl Member {
    fn new(info: MemberInfo, heartbeat: Duration) -> Member {
        let detector = PhiAccrual::new(std::time::Instant::now(), heartbeat);
        Member { info, state: MemberState::Up, since: SystemTime::now(), detector }
    }
}

/// How the failure detector runs.
#[derive(Clone, Copy, Debug)]
pub struct DetectorConfig {
    pub heartbeat: Duration,
    pub phi_threshold: f64,
}

/// The layout in force and its ring, swapped together.
#[derive(Debug)]
struct Current {
    layout: Arc<Layout>,
    ring: Arc<Ring>,
    /// The version before, still live while partitions move: its replicas keep taking
    /// writes and serve reads of the moving partitions until every new owner has synced.
    previous: Option<Arc<Layout>>,
    /// The partitions whose replica sets differ between `previous` and `layout`.
    moving: Arc<std::collections::BTreeSet<u32>>,
}

#[derive(Debug)]
pub struct Cluster {
    me: MemberInfo,
    /// From the configuration: what a first layout is made with, and what a peer's
    /// layout must match.
    params: ClusterParams,
    seeds: Vec<String>,
    local: LocalStore,
    current: RwLock<Option<Current>>,
    /// Every member of the layout but this node: its latest addresses and its state.
    members: RwLock<BTreeMap<NodeId, Member>>,
    /// Who answered a greeting, by the address it was greeted at (for the first layout).
    met: Mutex<BTreeMap<String, MemberInfo>>,
    /// A peer holding another layout of our version.
    conflict: Mutex<Option<String>>,
    /// The layout version each peer (by address) last said it holds.
    peer_versions: Mutex<BTreeMap<String, u64>>,
    /// The layout version each peer last said it has fully synced.
    peer_synced: Mutex<BTreeMap<NodeId, u64>>,
    /// Every node that greeted us or answered our greeting, by id: who can be joined.
    seen: Mutex<BTreeMap<NodeId, MemberInfo>>,
    /// Operator changes waiting for a commit (kept by the node the operator talks to).
    staged: Mutex<Vec<Change>>,
    /// Partitions this node gained with a layout change (or lost with its data) and has
    /// not yet synced from their other replicas: it answers reads of them with an error
    /// rather than with what it does not have yet. Stored, so a restart resumes them.
    syncing: Mutex<std::collections::BTreeSet<u32>>,
    /// The version of the layout in force, for workers that act on a change.
    version: tokio::sync::watch::Sender<u64>,
    /// Serialises adopting layouts (each is stored before it is used).
    adopting: tokio::sync::Mutex<()>,
    greet_now: Notify,
    started: SystemTime,
    peers: PeerClient,
    detector: DetectorConfig,
    metrics: Arc<Metrics>,
}

impl Cluster {
    /// A node's membership, starting from its stored layout (if any).
    pub async fn open(
        me: MemberInfo,
        params: ClusterParams,
        seeds: Vec<String>,
        local: LocalStore,
        peers: PeerClient,
        detector: DetectorConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Cluster, Error> {
        let stored = match local.meta_get(LAYOUT_META).await? {
            Some(bytes) => Some(Layout::decode(&bytes).map_err(|e| {
                Error::Internal(format!(
                    "the stored layout cannot be read ({e}); move this node's data directory aside and start it empty"
                ))
            })?),
            None => None,
        };
        let cluster = Cluster {
            me,
            params,
            seeds,
            local,
            current: RwLock::new(None),
            members: RwLock::default(),
            met: Mutex::default(),
            conflict: Mutex::default(),
            seen: Mutex::default(),
            peer_synced: Mutex::default(),
            peer_versions: Mutex::default(),
            staged: Mutex::default(),
            syncing: Mutex::default(),
            version: tokio::sync::watch::Sender::new(0),
            adopting: tokio::sync::Mutex::new(()),
            greet_now: Notify::new(),
            started: SystemTime::now(),
            peers,
            detector,
            metrics,
        };
        // Stored state that cannot be read stops the node: read as empty, it would make
        // the node answer for partitions it never synced, or retire a layout early.
        let unreadable = |what: &str, e: &dyn std::fmt::Display| {
            Error::Internal(format!(
                "the stored {what} cannot be read ({e}); this node will not serve what it may not have. \
                 Move its data directory aside and start it empty: it then syncs every partition it \
                 replicates from the other replicas before it answers for them"
            ))
        };
        if let Some(bytes) = cluster.local.meta_get(SYNCING_META).await? {
            let parts: Vec<u32> =
                postcard::from_bytes(&bytes).map_err(|e| unreadable("set of partitions being synced", &e))?;
            cluster.syncing.lock().unwrap_or_else(PoisonError::into_inner).extend(parts);
        }
        if let Some(layout) = stored {
            tracing::info!(version = layout.version(), "loaded the stored cluster layout");
            let previous = match cluster.local.meta_get(PREVIOUS_META).await? {
                Some(bytes) if !bytes.is_empty() => {
                    Some(Arc::new(Layout::decode(&bytes).map_err(|e| unreadable("previous layout", &e))?))
                }
                _ => None,
            };
            cluster.install(layout, previous);
        } else if cluster.seeds.is_empty() {
            // A node on its own is a cluster of one from its first start.
            let layout = Layout::first(params, std::slice::from_ref(&cluster.me))?;
            cluster.offer(layout).await?;
        }
        Ok(cluster)
    }

    pub fn me(&self) -> &MemberInfo {
        &self.me
    }

    pub fn my_id(&self) -> NodeId {
        self.me.node_id.clone()
    }

    /// The cluster's parameters (the layout's, once there is one).
    pub fn params(&self) -> ClusterParams {
        self.layout().map_or(self.params, |l| l.params())
    }

    pub fn peers(&self) -> &PeerClient {
        &self.peers
    }

    fn read_current(&self) -> std::sync::RwLockReadGuard<'_, Option<Current>> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The layout in force, if this node has one yet.
    pub fn layout(&self) -> Option<Arc<Layout>> {
        self.read_current().as_ref().map(|c| c.layout.clone())
    }

    /// The previous layout's ring, while partitions move from it.
    pub fn previous_ring(&self) -> Option<Arc<Ring>> {
        self.read_current().as_ref()?.previous.as_ref().map(|p| Arc::new(p.ring().clone()))
    }

    /// The previous layout's version, while it is live.
    pub fn previous_version(&self) -> Option<u64> {
        self.read_current().as_ref()?.previous.as_ref().map(|p| p.version())
    }

    /// Whether `partition` is moving between the previous layout and this one.
    pub fn is_moving(&self, partition: u32) -> bool {
        self.read_current().as_ref().is_some_and(|c| c.moving.contains(&partition))
    }

    /// The replicas of a moving partition under the previous layout (empty otherwise).
    pub fn previous_primaries(&self, partition: u32) -> Vec<NodeId> {
        let current = self.read_current();
        match current.as_ref() {
            Some(c) if c.moving.contains(&partition) => {
                c.previous.as_ref().map(|p| p.ring().primaries(partition).to_vec()).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    /// Whether this node is a replica of `partition` in a live layout version (the one in
    /// force, or the previous one while the partition moves).
    pub fn owns(&self, partition: u32) -> bool {
        let current = self.read_current();
        let Some(c) = current.as_ref() else { return false };
        let me = &self.me.node_id;
        c.ring.primaries(partition).contains(me)
            || (c.moving.contains(&partition)
                && c.previous.as_ref().is_some_and(|p| p.ring().primaries(partition).contains(me)))
    }

    /// The highest layout version this node has finished syncing.
    pub fn synced_version(&self) -> u64 {
        let current = self.read_current();
        let Some(c) = current.as_ref() else { return 0 };
        if self.syncing.lock().unwrap_or_else(PoisonError::into_inner).is_empty() {
            c.layout.version()
        } else {
            c.previous.as_ref().map_or(0, |p| p.version())
        }
    }

    /// Drops the previous layout once every member of the one in force has synced it.
    async fn maybe_retire(&self) {
        let (version, members) = {
            let current = self.read_current();
            let Some(c) = current.as_ref() else { return };
            if c.previous.is_none() {
                return;
            }
            (c.layout.version(), c.layout.ring().members().to_vec())
        };
        let synced = self.peer_synced.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let all = members.iter().all(|m| {
            if self.is_me(m) {
                self.synced_version() >= version
            } else {
                synced.get(m).is_some_and(|v| *v >= version)
            }
        });
        if !all {
            return;
        }
        let _one_at_a_time = self.adopting.lock().await;
        if let Err(e) = self.local.meta_put(PREVIOUS_META, Vec::new()).await {
            tracing::error!(error = %e, "cannot retire the previous layout");
            return;
        }
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = current.as_mut().filter(|c| c.layout.version() == version) {
            tracing::info!(version, "every new owner has synced: the previous layout is retired");
            c.previous = None;
            c.moving = Arc::default();
            self.metrics.partitions_moving.set(0);
        }
        let layout = current.as_ref().map(|c| c.layout.clone());
        drop(current);
        // Members only the retired version had are members no more (the members lock is
        // never taken while the layout's is held).
        if let Some(layout) = layout {
            self.members.write().unwrap_or_else(PoisonError::into_inner).retain(|id, _| layout.is_member(id));
        }
        self.version.send_modify(|_| {});
    }

    /// The ring of the layout in force (cheap: an `Arc` clone).
    ///
    /// # Errors
    /// [`Error::Unavailable`] while this node has no layout: it serves nothing until it
    /// has learnt or made one.
    pub fn ring(&self) -> Result<Arc<Ring>, Error> {
        self.read_current().as_ref().map(|c| c.ring.clone()).ok_or_else(|| {
            Error::Unavailable("this node has no cluster layout yet: it is waiting to meet its seeds".into())
        })
    }

    /// The peer address of a member.
    pub fn peer_addr(&self, node: &NodeId) -> Option<String> {
        let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = members.get(node) {
            return Some(m.info.peer_addr.clone());
        }
        drop(members);
        self.layout()?.addresses().get(node).map(|a| a.peer_addr.clone())
    }

    pub fn is_me(&self, node: &NodeId) -> bool {
        *node == self.me.node_id
    }

    /// Whether the failure detector holds `node` up (this node always is).
    pub fn is_up(&self, node: &NodeId) -> bool {
        if self.is_me(node) {
            return true;
        }
        let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
        members.get(node).is_some_and(|m| m.state == MemberState::Up)
    }

    /// Records an answer from `node` (a heartbeat): it is up.
    pub fn heartbeat(&self, node: &NodeId) {
        let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = members.get_mut(node) {
            m.detector.heartbeat(std::time::Instant::now());
            if m.state == MemberState::Down {
                self.transition(m, MemberState::Up, 0.0);
            }
        }
    }

    /// Marks down every member whose suspicion crossed the threshold.
    fn judge(&self) {
        let now = std::time::Instant::now();
        let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
        for m in members.values_mut().filter(|m| m.info.node_id != self.me.node_id) {
            let phi = m.detector.phi(now);
            if m.state == MemberState::Up && phi > self.detector.phi_threshold {
                self.transition(m, MemberState::Down, phi);
            }
        }
    }

    fn transition(&self, m: &mut Member, to: MemberState, phi: f64) {
        match to {
            MemberState::Down => tracing::warn!(peer = %m.info.node_id, phi, "member marked down"),
            MemberState::Up => tracing::info!(peer = %m.info.node_id, "member marked up"),
        }
        m.state = to;
        m.since = SystemTime::now();
        self.metrics
            .member_transitions
            .get_or_create(&crate::metrics::TransitionLabels {
                peer: m.info.node_id.0.clone(),
                to: to.as_str(),
            })
            .inc();
    }

    /// Asks the greeter to gossip now (a peer answered with a newer layout version).
    pub fn greet_soon(&self) {
        self.greet_now.notify_one();
    }

    /// Makes `layout` the one in force, in memory (it is stored already).
    fn install(&self, layout: Layout, previous: Option<Arc<Layout>>) {
        let layout = Arc::new(layout);
        let ring = Arc::new(layout.ring().clone());
        let moving: std::collections::BTreeSet<u32> = previous
            .as_ref()
            .map(|p| p.ring().diff(layout.ring()).into_iter().map(|c| c.partition).collect())
            .unwrap_or_default();
        {
            let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
            members
                .retain(|id, _| layout.is_member(id) || previous.as_ref().is_some_and(|p| p.is_member(id)));
            let all = layout.addresses().iter().chain(previous.iter().flat_map(|p| p.addresses().iter()));
            for (id, addrs) in all {
                if self.is_me(id) || members.contains_key(id) {
                    continue;
                }
                let info = MemberInfo {
                    node_id: id.clone(),
                    incarnation: 0,
                    peer_addr: addrs.peer_addr.clone(),
                    api_addr: addrs.api_addr.clone(),
                    capacity: layout.ring().weight(id).unwrap_or(1),
                    zone: layout.ring().zone(id).map(str::to_owned),
                };
                members.insert(id.clone(), Member::new(info, self.detector.heartbeat));
            }
        }
        let version = layout.version();
        // What peers said before this version is stale; forgetting it changes nothing for
        // gossip (an unknown version and an older one both get the layout sent), and a
        // peer's next word says where it is now.
        self.peer_versions.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, v| *v >= version);
        self.metrics.partitions_moving.set(moving.len() as i64);
        self.metrics
            .partitions_syncing
            .set(self.syncing.lock().unwrap_or_else(PoisonError::into_inner).len() as i64);
        let moving = Arc::new(moving);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            Some(Current { layout, ring, previous, moving });
        self.version.send_replace(version);
    }

    /// Marks partitions as still to sync (stored first).
    ///
    /// # Errors
    /// The store failed.
    pub async fn mark_syncing(&self, partitions: Vec<u32>) -> Result<(), Error> {
        let all: Vec<u32> = {
            let mut s = self.syncing.lock().unwrap_or_else(PoisonError::into_inner);
            s.extend(partitions);
            s.iter().copied().collect()
        };
        self.store_syncing(all).await
    }

    /// Records that `partition` has synced from every other replica.
    ///
    /// # Errors
    /// The store failed.
    pub async fn synced(&self, partition: u32) -> Result<(), Error> {
        let all: Vec<u32> = {
            let mut s = self.syncing.lock().unwrap_or_else(PoisonError::into_inner);
            if !s.remove(&partition) {
                return Ok(());
            }
            s.iter().copied().collect()
        };
        tracing::info!(partition, left = all.len(), "partition synced");
        self.store_syncing(all).await
    }

    async fn store_syncing(&self, all: Vec<u32>) -> Result<(), Error> {
        self.metrics.partitions_syncing.set(all.len() as i64);
        let bytes = postcard::to_allocvec(&all).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(self.local.meta_put(SYNCING_META, bytes).await?)
    }

    /// Whether `partition` is still to sync here.
    pub fn is_syncing(&self, partition: u32) -> bool {
        self.syncing.lock().unwrap_or_else(PoisonError::into_inner).contains(&partition)
    }

    /// The partitions still to sync here.
    pub fn syncing(&self) -> Vec<u32> {
        self.syncing.lock().unwrap_or_else(PoisonError::into_inner).iter().copied().collect()
    }

    /// Follows the version of the layout in force (0: none yet).
    pub fn watch_version(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Stages a change, refused at once (and not staged) if the staged changes with it
    /// could not be committed.
    ///
    /// # Errors
    /// No layout yet; an unknown node; `remove` of a node the detector holds up or
    /// `leave` of one it holds down; a change that leaves fewer than N members.
    pub fn stage(&self, op: StageOp) -> Result<(), Error> {
        let layout = self.layout().ok_or_else(|| Error::Unavailable("no cluster layout yet".into()))?;
        let known = |id: &NodeId| -> Result<MemberInfo, Error> {
            if self.is_me(id) {
                return Ok(self.me.clone());
            }
            self.seen.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned().ok_or_else(|| {
                Error::bad(
                    "unknown_node",
                    format!(
                        "no node `{id}` has greeted this cluster: start it with --seed set to a member's peer \
                         address, then stage the change again"
                    ),
                )
            })
        };
        let member = |id: &NodeId| -> Result<(), Error> {
            if layout.is_member(id) {
                Ok(())
            } else {
                Err(Error::bad(
                    "unknown_node",
                    format!("`{id}` is not a member of layout version {}", layout.version()),
                ))
            }
        };
        let change = match op {
            StageOp::Join(id) => Change::Join { node: known(&id)? },
            StageOp::Leave(id) => {
                member(&id)?;
                if !self.is_up(&id) {
                    return Err(Error::bad(
                        "node_down",
                        format!("`{id}` is down and cannot hand off its data: use remove"),
                    ));
                }
                Change::Leave { node: id }
            }
            StageOp::Remove(id) => {
                member(&id)?;
                if self.is_up(&id) {
                    return Err(Error::bad(
                        "node_up",
                        format!(
                            "`{id}` is up: remove is for a dead node; use leave so it hands off its data first"
                        ),
                    ));
                }
                Change::Remove { node: id }
            }
            StageOp::Replace(old, new) => {
                member(&old)?;
                Change::Replace { old, new: known(&new)? }
            }
        };
        let mut staged = self.staged.lock().unwrap_or_else(PoisonError::into_inner);
        let mut trial = staged.clone();
        trial.push(change);
        layout.apply(&trial)?;
        *staged = trial;
        Ok(())
    }

    /// The staged changes, and the layout they would make with every partition that
    /// moves (`None` with nothing staged).
    pub fn plan(&self) -> (Vec<Change>, Option<(Layout, Vec<PartitionChange>)>) {
        let staged = self.staged.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let next = self.layout().filter(|_| !staged.is_empty()).and_then(|l| {
            let next = l.apply(&staged).ok()?;
            let moves = l.ring().diff(next.ring());
            Some((next, moves))
        });
        (staged, next)
    }

    /// Makes the staged changes the next layout version: stored, in force here, and
    /// gossiped at once. Returns the new version.
    ///
    /// # Errors
    /// Nothing staged, or the changes no longer apply.
    pub async fn commit(&self) -> Result<u64, Error> {
        let layout = self.layout().ok_or_else(|| Error::Unavailable("no cluster layout yet".into()))?;
        let staged = self.staged.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let conflict = self.conflict.lock().unwrap_or_else(PoisonError::into_inner).is_some();
        // With nothing staged, a commit on a node that saw a conflict makes its own
        // layout the next version: every node takes it, whichever of the two it held.
        let next =
            if staged.is_empty() && conflict { layout.superseding() } else { layout.apply(&staged)? };
        let version = next.version();
        self.offer(next).await?;
        self.staged.lock().unwrap_or_else(PoisonError::into_inner).clear();
        self.greet_soon();
        Ok(version)
    }

    /// Drops the staged changes.
    pub fn cancel(&self) {
        self.staged.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Takes `layout` if it is newer than ours: stores it, then puts it in force. The
    /// same version with another digest is a conflict, recorded and refused.
    ///
    /// # Errors
    /// Parameters that differ from this node's, a conflict, or a failure to store it.
    pub async fn offer(&self, layout: Layout) -> Result<(), Error> {
        if layout.params() != self.params {
            let (t, o) = (layout.params(), self.params);
            return Err(Error::bad(
                "cluster_mismatch",
                format!(
                    "cluster parameters differ: theirs partitions={} replicas={} vnodes={}, ours partitions={} replicas={} vnodes={}",
                    t.partitions, t.replicas, t.vnodes, o.partitions, o.replicas, o.vnodes
                ),
            ));
        }
        let _one_at_a_time = self.adopting.lock().await;
        if let Some(mine) = self.layout() {
            if layout.version() < mine.version() {
                return Ok(());
            }
            if layout.version() == mine.version() {
                if layout.digest() != mine.digest() {
                    return Err(self.conflict(layout.version(), layout.digest(), mine.digest()));
                }
                return Ok(());
            }
        }
        // A node whose data directory is not the one the layout was made with (it lost
        // its data) holds nothing it is counted on for: every partition it replicates is
        // synced from the other replicas before it answers reads of it (issue 21).
        if self.layout().is_none() && layout.lost_by(&self.me.node_id, self.me.incarnation) {
            let mine = layout.ring().partitions_of(&self.me.node_id);
            tracing::warn!(
                partitions = mine.len(),
                "this node lost the data the layout counts on it for: syncing every partition it replicates before it answers reads"
            );
            self.mark_syncing(mine).await?;
        }
        // Partitions this node replicates now and did not before must be synced from
        // their other replicas before it answers reads of them.
        if let Some(before) = self.layout() {
            let me = &self.me.node_id;
            let had: std::collections::BTreeSet<u32> = before.ring().partitions_of(me).into_iter().collect();
            let gained: Vec<u32> =
                layout.ring().partitions_of(me).into_iter().filter(|p| !had.contains(p)).collect();
            if !gained.is_empty() {
                tracing::info!(
                    partitions = gained.len(),
                    "partitions gained with the new layout: syncing them"
                );
                self.mark_syncing(gained).await?;
            }
        }
        self.local.meta_put(LAYOUT_META, layout.encode()).await?;
        tracing::info!(
            version = layout.version(),
            members = layout.ring().members().len(),
            "cluster layout in force"
        );
        self.metrics.layout_version.set(layout.version() as i64);
        // A newer version settles any conflict over an older one.
        *self.conflict.lock().unwrap_or_else(PoisonError::into_inner) = None;
        // The layout being replaced stays live until the partitions that move have
        // synced on their new owners.
        let previous = self.layout().filter(|before| !before.ring().diff(layout.ring()).is_empty());
        let stored_previous = previous.as_ref().map(|p| p.encode()).unwrap_or_default();
        self.local.meta_put(PREVIOUS_META, stored_previous).await?;
        self.install(layout, previous);
        Ok(())
    }

    /// Records a greeting from (or answered by) `from`, greeted at `addr` if we greeted it.
    fn met(&self, from: &MemberInfo, addr: Option<&str>) {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).insert(from.node_id.clone(), from.clone());
        if let Some(addr) = addr {
            self.met.lock().unwrap_or_else(PoisonError::into_inner).insert(addr.to_owned(), from.clone());
        }
        let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = members.get_mut(&from.node_id)
            && m.info != *from
        {
            tracing::info!(peer = %from.node_id, incarnation = from.incarnation, addr = %from.peer_addr, "member's addresses or incarnation changed");
            m.info = from.clone();
        }
    }

    /// A peer's greeting: what it is, and its layout.
    ///
    /// # Errors
    /// Mismatched parameters or a layout conflict.
    pub async fn receive_hello(&self, g: Greeting) -> Result<(), Error> {
        self.met(&g.from, None);
        self.peer_synced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(g.from.node_id.clone(), g.synced);
        let offered = self.consider(&g.from.peer_addr, g.version, g.digest, g.layout).await;
        self.maybe_retire().await;
        offered
    }

    /// What a peer said of its layout: taken if newer; a newer one it did not send is
    /// asked for at once; the same version with another digest is a conflict.
    async fn consider(
        &self,
        addr: &str,
        version: u64,
        digest: u64,
        layout: Option<Layout>,
    ) -> Result<(), Error> {
        self.peer_versions.lock().unwrap_or_else(PoisonError::into_inner).insert(addr.to_owned(), version);
        if let Some(layout) = layout {
            return self.offer(layout).await;
        }
        let (mine, my_digest) = self.layout().map_or((0, 0), |l| (l.version(), l.digest()));
        if version > mine {
            // Our greeting told it our version: its answer to the next one brings the layout.
            self.greet_soon();
        } else if version == mine && version > 0 && digest != my_digest {
            return Err(self.conflict(version, digest, my_digest));
        }
        Ok(())
    }

    /// Records that a peer holds another layout of our version: logged, shown in
    /// `/v1/status`, and refused.
    fn conflict(&self, version: u64, theirs: u64, ours: u64) -> Error {
        let why = format!(
            "another layout of version {version} is in the cluster (digest {theirs:016x}, ours {ours:016x}): \
             run `quorumkv admin layout commit` with nothing staged on a node holding the layout that \
             should win, and it becomes version {} everywhere",
            version + 1
        );
        let mut recorded = self.conflict.lock().unwrap_or_else(PoisonError::into_inner);
        // Logged once per conflict, not at every gossip round that meets it again.
        if recorded.as_deref() != Some(why.as_str()) {
            tracing::error!(%why, "layout conflict");
            *recorded = Some(why.clone());
        }
        Error::bad("layout_conflict", why)
    }

    /// This node's layout version and digest, and the layout itself if a peer whose last
    /// word was `peer_version` (if any) may not have it.
    fn layout_for(&self, peer_version: Option<u64>) -> (u64, u64, Option<Layout>) {
        match self.layout() {
            None => (0, 0, None),
            Some(l) => {
                let send = peer_version.is_none_or(|v| v < l.version());
                (l.version(), l.digest(), send.then(|| (*l).clone()))
            }
        }
    }

    fn greeting(&self, peer_version: Option<u64>) -> Greeting {
        let (version, digest, layout) = self.layout_for(peer_version);
        Greeting {
            from: self.me.clone(),
            params: self.params,
            version,
            digest,
            layout,
            synced: self.synced_version(),
        }
    }

    /// The answer to a peer's `Hello` that named its layout version.
    pub fn hello_reply(&self, their_version: u64) -> Response {
        Response::Hello(Box::new(self.greeting(Some(their_version))))
    }

    fn member_infos(&self) -> Vec<MemberInfo> {
        let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
        members.values().map(|m| m.info.clone()).collect()
    }

    /// One round of gossip: every seed and member when `full` (or while this node has no
    /// layout), else one member chosen at random. Takes the newest layout answered.
    async fn greet(&self, full: bool) {
        let members: Vec<String> = self.member_infos().into_iter().map(|m| m.peer_addr).collect();
        let mut targets: Vec<String> = if full || self.layout().is_none() {
            let mut all = self.seeds.clone();
            all.extend(members);
            all
        } else {
            let pick = std::collections::hash_map::RandomState::new().hash_one(Instant::now()) as usize;
            members.get(pick % members.len().max(1)).cloned().into_iter().collect()
        };
        targets.sort();
        targets.dedup();
        let calls = targets.into_iter().map(|addr| async move {
            let deadline = Instant::now() + Duration::from_secs(1);
            let known = self.peer_versions.lock().unwrap_or_else(PoisonError::into_inner).get(&addr).copied();
            let hello = Request::Hello(self.greeting(known));
            let answer = self.peers.call(&addr, &hello, deadline).await;
            (addr, answer)
        });
        let answers = futures_util::future::join_all(calls).await;
        for (addr, result) in answers {
            match result {
                Ok(Response::Hello(g)) => {
                    self.met(&g.from, Some(&addr));
                    self.peer_synced
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(g.from.node_id.clone(), g.synced);
                    if let Err(e) = self.consider(&addr, g.version, g.digest, g.layout).await {
                        tracing::warn!(peer = %addr, error = %e, "refusing a peer's layout");
                    }
                }
                Ok(Response::Failed(e)) => {
                    tracing::warn!(peer = %addr, error = %Error::from(e), "a peer refused our greeting")
                }
                Ok(_) => tracing::warn!(peer = %addr, "unexpected answer to hello"),
                Err(e) => tracing::debug!(peer = %addr, error = %e, "hello failed"),
            }
        }
    }

    /// Makes version 1 of a new cluster once every seed has answered and none had a
    /// layout: the members are this node and its seeds.
    async fn maybe_bootstrap(&self) {
        if self.layout().is_some() || self.seeds.is_empty() {
            return;
        }
        let members: Option<Vec<MemberInfo>> = {
            let met = self.met.lock().unwrap_or_else(PoisonError::into_inner);
            self.seeds.iter().map(|s| met.get(s).cloned()).collect()
        };
        let Some(mut members) = members else { return };
        members.push(self.me.clone());
        match Layout::first(self.params, &members) {
            Ok(layout) => {
                if let Err(e) = self.offer(layout).await {
                    tracing::error!(error = %e, "cannot make the first layout");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot make the first layout"),
        }
    }

    /// The greeter: greets quickly until this node has a layout, then every few seconds
    /// (at once when asked).
    pub async fn run_greeter(self: Arc<Self>, shutdown: CancellationToken) {
        // Every node greets one random member a second; every tenth round, and whenever
        // asked (a newer layout heard of, a commit), everyone.
        let mut full = true;
        let mut round = 0u64;
        loop {
            self.greet(full || round.is_multiple_of(10)).await;
            round += 1;
            self.maybe_bootstrap().await;
            self.maybe_retire().await;
            let pause =
                if self.layout().is_some() { Duration::from_secs(1) } else { Duration::from_millis(200) };
            full = tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => false,
                () = self.greet_now.notified() => true,
            };
        }
    }
    /// The failure detector: one heartbeat loop per member, and a judge that marks down
    /// the members whose suspicion crossed the threshold.
    pub async fn run_detector(self: Arc<Self>, shutdown: CancellationToken) {
        let mut loops: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
        let mut pinged: std::collections::BTreeSet<NodeId> = std::collections::BTreeSet::new();
        let mut tick = tokio::time::interval(self.detector.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            for info in self.member_infos() {
                if pinged.insert(info.node_id.clone()) {
                    loops.spawn(self.clone().heartbeats(info.node_id, shutdown.clone()));
                }
            }
            self.judge();
        }
        loops.shutdown().await;
    }

    /// Pings one member every heartbeat interval, one ping in flight at a time.
    async fn heartbeats(self: Arc<Self>, node: NodeId, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.detector.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(addr) = self.peer_addr(&node) else { continue };
            // A ping may take up to 5 heartbeats; the judge does not wait for it.
            let deadline = Instant::now() + self.detector.heartbeat * 5;
            if let Ok(Response::Pong) = self.peers.call(&addr, &Request::Ping, deadline).await {
                self.heartbeat(&node);
            }
        }
    }

    /// Members with their state, for `/v1/status` and `/v1/ring`.
    /// This node (while it is a member, or has no layout yet) and the layout's other
    /// members, sorted by id.
    pub fn members_json(&self) -> Vec<Value> {
        let versions = self.peer_versions.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mine = self.layout().map(|l| l.version());
        let entry = |info: &MemberInfo, state: MemberState, since: SystemTime| {
            // The layout version it last said it holds (ours for this node; null before it said).
            let layout_version =
                if info.node_id == self.me.node_id { mine } else { versions.get(&info.peer_addr).copied() };
            json!({
                "node_id": info.node_id,
                "state": state.as_str(),
                "since_unix_ms": since.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
                "api_addr": info.api_addr,
                "peer_addr": info.peer_addr,
                "incarnation": info.incarnation,
                "capacity": info.capacity,
                "zone": info.zone,
                "layout_version": layout_version,
            })
        };
        let me_listed = self.layout().is_none_or(|l| l.is_member(&self.me.node_id));
        let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<(NodeId, Value)> =
            members.values().map(|m| (m.info.node_id.clone(), entry(&m.info, m.state, m.since))).collect();
        drop(members);
        if me_listed {
            all.push((self.me.node_id.clone(), entry(&self.me, MemberState::Up, self.started)));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.into_iter().map(|(_, v)| v).collect()
    }

    /// `GET /v1/ring`.
    ///
    /// # Errors
    /// No layout yet.
    pub fn ring_json(&self) -> Result<Value, Error> {
        let ring = self.ring()?;
        let partitions: Vec<Value> = (0..ring.params().partitions)
            .map(|p| {
                json!({
                    "partition": p,
                    "preference_list": ring.preference_list(p).iter().map(NodeId::as_str).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(json!({
            "version": ring.version(),
            "replicas": ring.params().replicas,
            "partition_count": ring.params().partitions,
            "members": self.members_json(),
            "partitions": partitions,
        }))
    }

    /// The layout part of `/v1/status`.
    pub fn layout_json(&self) -> Value {
        let conflict = self.conflict.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match self.layout() {
            None => json!({"version": null, "member": false, "conflict": conflict}),
            Some(l) => json!({
                "version": l.version(),
                "digest": format!("{:016x}", l.digest()),
                "member": l.is_member(&self.me.node_id),
                "conflict": conflict,
                "syncing": self.syncing(),
                "previous_version": self.previous_version(),
                "moving": self.read_current().as_ref().map_or(0, |c| c.moving.len()),
            }),
        }
    }
}
