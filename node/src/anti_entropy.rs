//! Merkle-tree anti-entropy and tombstone reaping.
//!
//! A worker walks the partitions this node is a primary of, one at a time, spread over
//! the configured interval. For each, it exchanges with every other primary that is up:
//! compare roots; if they differ, fetch the leaf hashes under the differing branches;
//! list the keys of the differing leaves with their item hashes; the peer answers with
//! its versions that differ and names the ones it wants; both sides merge (DVV rules).
//! Every step sends bytes in proportion to what differs, never to the key count.
//!
//! A tombstone is reaped only by the partition's first primary, only when every primary
//! is up and holds the very same version (same item hash) and the delete is older than
//! the grace period; each replica then removes it only if it still holds that version.
//! So a delete that some replica missed is first spread by the exchange, and a key never
//! comes back because one replica forgot it early. The grace period must outlast hint
//! delivery: a hint older than the tombstone, delivered after the reap, would revive it.
//! Hints therefore expire after the grace period, counted from when their oldest version
//! was first kept, however often they were re-hinted (DESIGN.md, decision 7).
//!
//! Trees are rebuilt from storage at start and every `rebuild_interval` (a full scan on a
//! blocking thread, while requests go on), which also catches records that rotted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quorumkv_ring::NodeId;
use quorumkv_storage::{Entry, unix_ms};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::Error;
use crate::key::Key;
use crate::local::LocalStore;
use crate::metrics::Metrics;
use crate::peer::wire::{AgedItem, Item, KeyHash, Request, Response};
use crate::replica::Replicas;
use crate::worker::{WorkState, Worker};

/// Merkle leaves (of 1,024 per partition) swapped per message at most: a whole
/// partition moves in four messages of about a quarter of it each. (Each message costs
/// both sides a scan of the partition, since leaves are not contiguous in storage.)
const LEAVES_PER_SYNC: usize = 256;

/// How anti-entropy runs.
#[derive(Clone, Copy, Debug)]
pub struct AntiEntropyConfig {
    /// Every owned partition is exchanged once per interval.
    pub interval: Duration,
    /// Trees are rebuilt from storage this often.
    pub rebuild_interval: Duration,
    /// Bytes per second anti-entropy sends and receives at most (`None`: no limit).
    pub rate: Option<u64>,
    /// A tombstone younger than this is never reaped.
    pub tombstone_grace: Duration,
}

/// What happened to one partition's last exchange.
#[derive(Clone, Debug, Default)]
struct PartitionProgress {
    last_exchange_unix_ms: u64,
    keys_repaired: u64,
    bytes: u64,
    in_sync: bool,
    /// The other replicas that were up and tried at the last exchange.
    peers: u32,
    /// Of those, the ones whose root equalled ours before the exchange.
    roots_agreed: u32,
}

#[derive(Debug, Default)]
struct State {
    /// Partitions asked for by an operator, served before the regular walk.
    /// In the order asked, each partition once: asking again for a queued partition
    /// does not move it ahead of others (no partition starves).
    requested: VecDeque<u32>,
    /// Where the regular walk is.
    cursor: usize,
    partitions: BTreeMap<u32, PartitionProgress>,
    last_rebuild: Option<Instant>,
    last_rebuild_unix_ms: u64,
    last_error: Option<String>,
    /// When `last_error` happened (milliseconds since the epoch), so an old one reads as old.
    last_error_unix_ms: Option<u64>,
    /// The roots of this node's trees as of the last exchange or rebuild.
    roots: BTreeMap<u32, u64>,
    building: bool,
    /// The layout version whose partitions to sync were last queued.
    synced_version: u64,
}

impl State {
    fn failed(&mut self, why: String) {
        self.last_error = Some(why);
        self.last_error_unix_ms = Some(unix_ms());
    }
}

pub struct AntiEntropy {
    replicas: Replicas,
    local: LocalStore,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    config: AntiEntropyConfig,
    state: Mutex<State>,
    wake: Notify,
    reaped: AtomicU64,
    /// Set when this node lost its data: every partition is exchanged as soon as the
    /// layout is known, not at the sweep's pace.
    full_repair: AtomicBool,
}

impl std::fmt::Debug for AntiEntropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AntiEntropy").field("config", &self.config).finish_non_exhaustive()
    }
}

impl AntiEntropy {
    pub fn new(replicas: Replicas, metrics: Arc<Metrics>, config: AntiEntropyConfig) -> AntiEntropy {
        AntiEntropy {
            local: replicas.local().clone(),
            cluster: replicas.cluster().clone(),
            replicas,
            metrics,
            config,
            state: Mutex::default(),
            wake: Notify::new(),
            reaped: AtomicU64::new(0),
            full_repair: AtomicBool::new(false),
        }
    }

    /// Asks for every partition to be exchanged once the layout is known (a node that
    /// came back with no data).
    pub fn repair_everything(&self) {
        self.full_repair.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an exchange of `partition`, or of every partition this node holds.
    /// Returns the partitions queued.
    pub fn trigger(&self, partition: Option<u32>) -> Vec<u32> {
        let Ok(ring) = self.cluster.ring() else { return vec![] };
        let owned = ring.partitions_of(&self.cluster.my_id());
        let queued: Vec<u32> = match partition {
            Some(p) if owned.contains(&p) => vec![p],
            Some(_) => vec![],
            None => owned,
        };
        let mut st = self.state();
        for p in &queued {
            if !st.requested.contains(p) {
                st.requested.push_back(*p);
            }
        }
        drop(st);
        self.wake.notify_one();
        queued
    }

    /// Refreshes the cached roots of the partitions this node holds.
    async fn refresh_roots(&self) -> Result<(), Error> {
        let owned = self.cluster.ring()?.partitions_of(&self.cluster.my_id());
        let roots = self.local.roots(owned).await?;
        self.state().roots = roots.into_iter().collect();
        Ok(())
    }

    async fn rebuild(&self) -> Result<(), Error> {
        let started = std::time::Instant::now();
        self.state().building = true;
        let rebuilt = self.local.rebuild_trees().await;
        self.state().building = false;
        rebuilt?;
        tracing::info!(ms = started.elapsed().as_millis() as u64, "merkle trees rebuilt from storage");
        self.refresh_roots().await?;
        let mut st = self.state();
        st.last_rebuild = Some(Instant::now());
        st.last_rebuild_unix_ms = unix_ms();
        Ok(())
    }

    /// The next partition to exchange: an operator's request first, then the walk.
    fn next_partition(&self) -> Option<u32> {
        let owned = self.cluster.ring().ok()?.partitions_of(&self.cluster.my_id());
        let mut st = self.state();
        if let Some(p) = st.requested.pop_front() {
            return Some(p);
        }
        if owned.is_empty() {
            return None;
        }
        st.cursor = (st.cursor + 1) % owned.len();
        Some(owned[st.cursor])
    }

    /// Exchanges `partition` with every other primary that is up, then reaps what can be.
    async fn sync_partition(&self, partition: u32) -> Result<(), Error> {
        let ring = self.cluster.ring()?;
        // The partition's other replicas in the layout in force; while it moves, the
        // previous layout's replicas take part too when they are up (a dead one being
        // removed or replaced never will). Syncing completes with the former: with one
        // replica changed per partition, every acknowledged write is on one of them.
        let peers: Vec<NodeId> =
            ring.primaries(partition).iter().filter(|n| !self.cluster.is_me(n)).cloned().collect();
        let old_peers: Vec<NodeId> = self
            .cluster
            .previous_primaries(partition)
            .into_iter()
            .filter(|n| !self.cluster.is_me(n) && !peers.contains(n))
            .collect();
        let mut repaired = 0u64;
        let mut bytes = 0u64;
        let mut in_sync = true;
        let (mut tried, mut agreed) = (0u32, 0u32);
        // One peer failing (unreachable before the detector says so) does not stop the
        // exchanges with the others, nor the worker: it is recorded, and this partition
        // is not reaped (nor counted as synced) this time.
        let mut all_exchanged = true;
        for peer in peers.iter().chain(old_peers.iter()).filter(|p| self.cluster.is_up(p)) {
            tried += 1;
            match self.exchange(partition, peer).await {
                Ok(outcome) => {
                    repaired += outcome.repaired;
                    bytes += outcome.bytes;
                    in_sync &= outcome.in_sync_before;
                    agreed += u32::from(outcome.in_sync_before);
                }
                Err(e) => {
                    tracing::debug!(partition, peer = %peer, error = %e, "exchange failed");
                    self.state().failed(format!("partition {partition} with {peer}: {e}"));
                    all_exchanged &= !peers.contains(peer);
                    in_sync = false;
                }
            }
        }
        let all_up = peers.iter().all(|p| self.cluster.is_up(p));
        if all_up && all_exchanged && self.cluster.is_syncing(partition) {
            self.cluster.synced(partition).await?;
        }
        let leader = ring.primaries(partition).first().is_some_and(|n| self.cluster.is_me(n));
        // No reaping while the partition moves: every replica of every live layout
        // version must hold a tombstone first.
        if leader
            && all_up
            && all_exchanged
            && !self.cluster.is_moving(partition)
            && ring.primaries(partition).len() == ring.params().replicas.min(ring.members().len())
        {
            bytes += self.reap(partition, &peers).await?;
        }
        self.metrics.aae_exchanges.inc();
        self.metrics.aae_keys_repaired.inc_by(repaired);
        self.metrics.aae_bytes.inc_by(bytes);
        let root = self.local.roots(vec![partition]).await?;
        let mut st = self.state();
        st.roots.extend(root);
        let p = st.partitions.entry(partition).or_default();
        p.last_exchange_unix_ms = unix_ms();
        p.keys_repaired += repaired;
        p.bytes += bytes;
        p.in_sync = in_sync && repaired == 0;
        p.peers = tried;
        p.roots_agreed = agreed;
        Ok(())
    }

    async fn call(&self, peer: &NodeId, req: &Request) -> Result<(Response, u64), Error> {
        let deadline = Instant::now() + Duration::from_secs(30);
        self.replicas.request(peer, req, deadline).await
    }

    /// One exchange of one partition with one peer.
    async fn exchange(&self, partition: u32, peer: &NodeId) -> Result<Exchange, Error> {
        let mut out = Exchange::default();
        let Some(mine) = self.local.tree(partition).await? else {
            return Ok(out); // our trees are being rebuilt: next time
        };
        let (theirs, n) = self.call(peer, &Request::TreeSummary { partition, root: mine.root() }).await?;
        out.bytes += n;
        let Response::Tree { ready: true, root, branches } = theirs else {
            return Ok(out);
        };
        if root == mine.root() {
            out.in_sync_before = true;
            return Ok(out);
        }
        let differing: Vec<u16> = (0..mine.width())
            .filter(|&b| branches.get(b) != Some(&mine.branches()[b]))
            .map(|b| b as u16)
            .collect();
        let (leaves, n) = self.call(peer, &Request::TreeLeaves { partition, branches: differing }).await?;
        out.bytes += n;
        let Response::Leaves { leaves } = leaves else {
            return Err(Error::Internal(format!("{peer}: unexpected answer to TreeLeaves")));
        };
        let width = mine.width();
        let mut differing_leaves = Vec::new();
        for (b, hashes) in &leaves {
            let ours = mine.leaves_of(usize::from(*b));
            for (i, h) in hashes.iter().enumerate() {
                if ours.get(i) != Some(h) {
                    differing_leaves.push((usize::from(*b) * width + i) as u16);
                }
            }
        }
        if differing_leaves.is_empty() {
            return Ok(out);
        }
        // Leaf by leaf group, so no message carries more than a slice of the partition
        // (a new owner receives whole partitions this way).
        for leaves in differing_leaves.chunks(LEAVES_PER_SYNC) {
            self.sync_leaves(partition, peer, leaves.to_vec(), &mut out).await?;
        }
        Ok(out)
    }

    /// Step 3 of an exchange for some leaves: swap the differing versions.
    async fn sync_leaves(
        &self,
        partition: u32,
        peer: &NodeId,
        leaves: Vec<u16>,
        out: &mut Exchange,
    ) -> Result<(), Error> {
        let local_entries = self.local.leaf_entries(partition, leaves.clone()).await?;
        let entries: Vec<KeyHash> = local_entries
            .iter()
            .filter_map(|e| Some(KeyHash { key: self.key_of(partition, e)?, hash: e.hash }))
            .collect();
        let (reply, n) = self.call(peer, &Request::SyncLeaves { partition, leaves, entries }).await?;
        out.bytes += n;
        self.pace(n).await;
        let Response::Sync { objects, want } = reply else {
            return Err(Error::Internal(format!("{peer}: unexpected answer to SyncLeaves")));
        };
        if objects.iter().any(|item| item.key.partition() != partition) {
            return Err(Error::Internal(format!("{peer}: a key outside partition {partition}")));
        }
        // Take theirs (one storage call), then send ours, merged, for what they want.
        let mut ours: HashMap<Key, Entry> =
            local_entries.into_iter().filter_map(|e| Some((self.key_of(partition, &e)?, e))).collect();
        out.repaired += objects.len() as u64;
        let keys: Vec<Key> = objects.iter().map(|i| i.key.clone()).collect();
        let merged = self.local.merge_items(objects).await?;
        for (key, object) in keys.into_iter().zip(merged) {
            if let Some(e) = ours.get_mut(&key) {
                e.object = object;
            }
        }
        // Stored data carries no age: a receiver that no longer owns the key does not keep
        // it as a hint (we still hold it).
        let items: Vec<AgedItem> = want
            .into_iter()
            .filter_map(|k| ours.remove_entry(&k))
            .map(|(key, e)| AgedItem { key, object: e.object, kept_since_ms: None })
            .collect();
        if !items.is_empty() {
            out.repaired += items.len() as u64;
            let (_, n) = self.call(peer, &Request::MergeBatch { items }).await?;
            out.bytes += n;
            self.pace(n).await;
        }
        Ok(())
    }

    /// Waits as long as `bytes` take at the configured rate.
    async fn pace(&self, bytes: u64) {
        if let Some(rate) = self.config.rate.filter(|r| *r > 0) {
            tokio::time::sleep(Duration::from_secs_f64(bytes as f64 / rate as f64)).await;
        }
    }

    /// Reaps the partition's old tombstones that every primary holds identically.
    /// Returns the bytes exchanged.
    async fn reap(&self, partition: u32, peers: &[NodeId]) -> Result<u64, Error> {
        let cutoff = unix_ms().saturating_sub(self.config.tombstone_grace.as_millis() as u64);
        let candidates = self.local.tombstones(partition, cutoff, 1000).await?;
        if candidates.is_empty() {
            return Ok(0);
        }
        let mut entries: Vec<KeyHash> = candidates
            .iter()
            .filter_map(|e| Some(KeyHash { key: self.key_of(partition, e)?, hash: e.hash }))
            .collect();
        let mut bytes = 0;
        for peer in peers {
            let (answer, n) =
                self.call(peer, &Request::ReapCheck { partition, entries: entries.clone() }).await?;
            bytes += n;
            let Response::Have(have) = answer else {
                return Err(Error::Internal(format!("{peer}: unexpected answer to ReapCheck")));
            };
            entries = entries.into_iter().zip(have).filter(|(_, h)| *h).map(|(e, _)| e).collect();
            if entries.is_empty() {
                return Ok(bytes);
            }
        }
        for peer in peers {
            let (_, n) = self.call(peer, &Request::Reap { partition, entries: entries.clone() }).await?;
            bytes += n;
        }
        let removed = self.local.reap_unchanged(entries).await?;
        self.reaped.fetch_add(removed as u64, Ordering::Relaxed);
        self.metrics.tombstones_reaped.inc_by(removed as u64);
        Ok(bytes)
    }

    /// A stored entry's key. Stored keys were checked when written; one that no longer
    /// passes (written by an older version) is left out of exchanges, logged.
    fn key_of(&self, partition: u32, e: &Entry) -> Option<Key> {
        let q = self.cluster.params().partitions;
        match Key::placed(q, partition, e.bucket.clone().into(), e.key.clone().into()) {
            Ok(k) => Some(k),
            Err(err) => {
                tracing::warn!(partition, error = %err, "a stored key no longer passes the key rules; skipped");
                None
            }
        }
    }

    /// Serves a peer's anti-entropy or reaping request (partitions and keys checked by
    /// the caller).
    pub async fn serve(&self, request: Request) -> Result<Response, Error> {
        let partition = match &request {
            Request::TreeSummary { partition, .. }
            | Request::TreeLeaves { partition, .. }
            | Request::SyncLeaves { partition, .. }
            | Request::ReapCheck { partition, .. }
            | Request::Reap { partition, .. } => *partition,
            _ => return Err(Error::Internal("not an anti-entropy request".into())),
        };
        let ring = self.cluster.ring()?;
        if !self.cluster.owns(partition) {
            return Err(Error::bad(
                "not_a_replica",
                format!("partition {partition} has no replica here under layout version {}", ring.version()),
            ));
        }
        match request {
            Request::TreeSummary { partition, root } => Ok(match self.local.tree(partition).await? {
                Some(t) if t.root() == root => Response::Tree { ready: true, root, branches: vec![] },
                Some(t) => Response::Tree { ready: true, root: t.root(), branches: t.branches().to_vec() },
                None => Response::Tree { ready: false, root: 0, branches: vec![] },
            }),
            Request::TreeLeaves { partition, branches } => match self.local.tree(partition).await? {
                Some(t) => Ok(Response::Leaves {
                    leaves: branches
                        .into_iter()
                        .filter(|&b| usize::from(b) < t.width())
                        .map(|b| (b, t.leaves_of(usize::from(b)).to_vec()))
                        .collect(),
                }),
                None => Err(Error::Unavailable("trees are being rebuilt".into())),
            },
            Request::SyncLeaves { partition, leaves, entries } => {
                let width = self.local.figures().await?.tree_width;
                if leaves.iter().any(|&l| usize::from(l) >= width * width) {
                    return Err(Error::bad("invalid_leaf", "leaf out of range"));
                }
                let mine = self.local.leaf_entries(partition, leaves).await?;
                let mine = mine.into_iter().filter_map(|e| Some((self.key_of(partition, &e)?, e))).collect();
                Ok(sync_reply(mine, entries))
            }
            Request::ReapCheck { entries, .. } => Ok(Response::Have(self.local.holds(entries).await?)),
            Request::Reap { entries, .. } => {
                let count = self.local.reap_unchanged(entries).await?;
                self.reaped.fetch_add(count as u64, Ordering::Relaxed);
                self.metrics.tombstones_reaped.inc_by(count as u64);
                Ok(Response::Reaped { count })
            }
            _ => Err(Error::Internal("not an anti-entropy request".into())),
        }
    }
}

/// Compares the sender's entries with ours: our versions of every key that differs or
/// that only we hold, and the keys we want (differ, or only they hold).
fn sync_reply(mine: Vec<(Key, Entry)>, theirs: Vec<KeyHash>) -> Response {
    let mine_hashes: HashMap<&Key, u64> = mine.iter().map(|(k, e)| (k, e.hash)).collect();
    let want: Vec<Key> =
        theirs.iter().filter(|t| mine_hashes.get(&t.key) != Some(&t.hash)).map(|t| t.key.clone()).collect();
    let theirs: HashMap<Key, u64> = theirs.into_iter().map(|e| (e.key, e.hash)).collect();
    let objects = mine
        .into_iter()
        .filter(|(k, e)| theirs.get(k) != Some(&e.hash))
        .map(|(key, e)| Item { key, object: e.object })
        .collect();
    Response::Sync { objects, want }
}

#[derive(Debug, Default)]
struct Exchange {
    repaired: u64,
    bytes: u64,
    in_sync_before: bool,
}

impl Worker for AntiEntropy {
    fn name(&self) -> &'static str {
        "anti-entropy"
    }

    fn status(&self) -> Value {
        let st = self.state();
        let roots: BTreeMap<u32, String> = st.roots.iter().map(|(p, r)| (*p, format!("{r:016x}"))).collect();
        let partitions: BTreeMap<String, Value> = st
            .partitions
            .iter()
            .map(|(p, g)| {
                (
                    p.to_string(),
                    json!({
                        "last_exchange_unix_ms": g.last_exchange_unix_ms,
                        "keys_repaired": g.keys_repaired,
                        "bytes": g.bytes,
                        "in_sync": g.in_sync,
                        "peers": g.peers,
                        "roots_agreed": g.roots_agreed,
                        "root": roots.get(p),
                    }),
                )
            })
            .collect();
        json!({
            "trees": if st.building { "building" } else if st.last_rebuild.is_some() { "ready" } else { "absent" },
            "last_rebuild_unix_ms": st.last_rebuild_unix_ms,
            "queued": st.requested.len(),
            "roots": roots,
            "tombstones_reaped": self.reaped.load(Ordering::Relaxed),
            "partitions": partitions,
            "last_error": st.last_error,
            "last_error_unix_ms": st.last_error_unix_ms,
        })
    }

    async fn work(&self) -> Result<WorkState, Error> {
        // Nothing is exchanged before this node has the cluster's layout: under no
        // layout (or a partial one) it would sync partitions it does not replicate.
        if self.cluster.layout().is_none() {
            return Ok(WorkState::Idle);
        }
        if self.full_repair.swap(false, Ordering::Relaxed) {
            let queued = self.trigger(None);
            tracing::info!(
                partitions = queued.len(),
                "this node lost its data: repairing every partition now"
            );
        }
        // Partitions to sync (gained with a layout change, or left half synced by a
        // restart) are exchanged first, at full speed, whatever the sweep's pace.
        let version = self.cluster.layout().map_or(0, |l| l.version());
        if self.state().synced_version != version {
            self.state().synced_version = version;
            for p in self.cluster.syncing() {
                self.trigger(Some(p));
            }
        }
        let due = self.state().last_rebuild.is_none_or(|t| t.elapsed() >= self.config.rebuild_interval);
        if due {
            self.rebuild().await?;
        }
        let Some(partition) = self.next_partition() else {
            return Ok(WorkState::Idle);
        };
        if let Err(e) = self.sync_partition(partition).await {
            self.state().failed(e.to_string());
            return Err(e);
        }
        let more = !self.state().requested.is_empty();
        Ok(if more { WorkState::Busy } else { WorkState::Idle })
    }

    async fn wait_for_work(&self) {
        // Without a layout yet, look again soon: the first exchanges start once it comes.
        let pause = match self.cluster.ring() {
            Ok(r) => self.config.interval / r.partitions_of(&self.cluster.my_id()).len().max(1) as u32,
            Err(_) => Duration::from_millis(200),
        };
        let mut layout = self.cluster.watch_version();
        layout.borrow_and_update();
        let until = Instant::now() + pause;
        loop {
            tokio::select! {
                // A wake-up left over from a request already served does not cut the
                // sweep's pause short: only a partition still queued does.
                () = self.wake.notified() => {
                    if !self.state().requested.is_empty() {
                        return;
                    }
                }
                () = tokio::time::sleep_until(until) => return,
                _ = layout.changed() => return,
            }
        }
    }
}
