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
//!
//! Trees are rebuilt from storage at start and every `rebuild_interval` (a full scan on a
//! blocking thread, while requests go on), which also catches records that rotted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use quorumkv_ring::NodeId;
use quorumkv_storage::{Durability, Entry, ObjectKey, unix_ms};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::local::{Key, LocalStore};
use crate::metrics::Metrics;
use crate::peer::wire::{Item, KeyHash, Request, Response};
use crate::worker::{WorkState, Worker};

/// How anti-entropy runs.
#[derive(Clone, Copy, Debug)]
pub struct AntiEntropyConfig {
    /// Every owned partition is exchanged once per interval.
    pub interval: Duration,
    /// Trees are rebuilt from storage this often.
    pub rebuild_interval: Duration,
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
}

#[derive(Debug, Default)]
struct State {
    /// Partitions asked for by an operator, served before the regular walk.
    requested: BTreeSet<u32>,
    /// Where the regular walk is.
    cursor: usize,
    partitions: BTreeMap<u32, PartitionProgress>,
    last_rebuild: Option<Instant>,
    last_rebuild_unix_ms: u64,
    last_error: Option<String>,
}

pub struct AntiEntropy {
    local: LocalStore,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    config: AntiEntropyConfig,
    state: Mutex<State>,
    wake: Notify,
    reaped: AtomicU64,
}

impl std::fmt::Debug for AntiEntropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AntiEntropy").field("config", &self.config).finish_non_exhaustive()
    }
}

impl AntiEntropy {
    pub fn new(
        local: LocalStore,
        cluster: Arc<Cluster>,
        metrics: Arc<Metrics>,
        config: AntiEntropyConfig,
    ) -> AntiEntropy {
        AntiEntropy {
            local,
            cluster,
            metrics,
            config,
            state: Mutex::default(),
            wake: Notify::new(),
            reaped: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an exchange of `partition`, or of every partition this node holds.
    /// Returns the partitions queued.
    pub fn trigger(&self, partition: Option<u32>) -> Vec<u32> {
        let ring = self.cluster.ring();
        let owned = ring.partitions_of(&self.cluster.my_id());
        let queued: Vec<u32> = match partition {
            Some(p) if owned.contains(&p) => vec![p],
            Some(_) => vec![],
            None => owned,
        };
        self.state().requested.extend(queued.iter().copied());
        self.wake.notify_one();
        queued
    }

    /// The root of this node's tree for `partition`, for status and convergence checks.
    fn roots(&self) -> BTreeMap<u32, String> {
        let ring = self.cluster.ring();
        let store = self.local.store();
        ring.partitions_of(&self.cluster.my_id())
            .into_iter()
            .filter_map(|p| store.tree(p).map(|t| (p, format!("{:016x}", t.root()))))
            .collect()
    }

    async fn rebuild(&self) -> Result<(), String> {
        let store = self.local.store().clone();
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || store.rebuild_trees())
            .await
            .map_err(|e| format!("tree rebuild panicked: {e}"))?
            .map_err(|e| format!("tree rebuild failed: {e}"))?;
        tracing::info!(ms = started.elapsed().as_millis() as u64, "merkle trees rebuilt from storage");
        let mut st = self.state();
        st.last_rebuild = Some(Instant::now());
        st.last_rebuild_unix_ms = unix_ms();
        Ok(())
    }

    /// The next partition to exchange: an operator's request first, then the walk.
    fn next_partition(&self) -> Option<u32> {
        let owned = self.cluster.ring().partitions_of(&self.cluster.my_id());
        let mut st = self.state();
        if let Some(p) = st.requested.pop_first() {
            return Some(p);
        }
        if owned.is_empty() {
            return None;
        }
        st.cursor = (st.cursor + 1) % owned.len();
        Some(owned[st.cursor])
    }

    /// Exchanges `partition` with every other primary that is up, then reaps what can be.
    async fn sync_partition(&self, partition: u32) -> Result<(), String> {
        let ring = self.cluster.ring();
        let peers: Vec<NodeId> =
            ring.primaries(partition).iter().filter(|n| !self.cluster.is_me(n)).cloned().collect();
        let mut repaired = 0u64;
        let mut bytes = 0u64;
        let mut in_sync = true;
        for peer in peers.iter().filter(|p| self.cluster.is_up(p)) {
            let outcome = self.exchange(partition, peer).await?;
            repaired += outcome.repaired;
            bytes += outcome.bytes;
            in_sync &= outcome.in_sync_before;
        }
        let all_up = peers.iter().all(|p| self.cluster.is_up(p));
        let leader = ring.primaries(partition).first().is_some_and(|n| self.cluster.is_me(n));
        if leader
            && all_up
            && ring.primaries(partition).len() == ring.params().replicas.min(ring.members().len())
        {
            bytes += self.reap(partition, &peers).await?;
        }
        self.metrics.aae_exchanges.inc();
        self.metrics.aae_keys_repaired.inc_by(repaired);
        self.metrics.aae_bytes.inc_by(bytes);
        let mut st = self.state();
        let p = st.partitions.entry(partition).or_default();
        p.last_exchange_unix_ms = unix_ms();
        p.keys_repaired += repaired;
        p.bytes += bytes;
        p.in_sync = in_sync && repaired == 0;
        Ok(())
    }

    async fn call(&self, peer: &NodeId, req: &Request) -> Result<(Response, u64), String> {
        let addr = self.cluster.peer_addr(peer).ok_or_else(|| format!("no address for {peer}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        match self.cluster.peers().call_counted(&addr, req, deadline).await {
            Ok((Response::Error(e), _)) => Err(format!("{peer}: {e}")),
            Ok((r, n)) => Ok((r, n as u64)),
            Err(e) => Err(format!("{peer}: {e}")),
        }
    }

    /// One exchange of one partition with one peer.
    async fn exchange(&self, partition: u32, peer: &NodeId) -> Result<Exchange, String> {
        let mut out = Exchange::default();
        let Some(mine) = self.local.store().tree(partition) else {
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
            return Err(format!("{peer}: unexpected answer to TreeLeaves"));
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
        let wanted = differing_leaves.clone();
        let local_entries =
            self.local.run(move |s| s.leaf_entries(partition, &wanted)).await.map_err(|e| e.to_string())?;
        let entries: Vec<KeyHash> = local_entries
            .iter()
            .map(|e| KeyHash { bucket: e.bucket.clone(), key: e.key.clone(), hash: e.hash })
            .collect();
        let (reply, n) =
            self.call(peer, &Request::SyncLeaves { partition, leaves: differing_leaves, entries }).await?;
        out.bytes += n;
        let Response::Sync { objects, want } = reply else {
            return Err(format!("{peer}: unexpected answer to SyncLeaves"));
        };
        // Take theirs, then send ours (merged) for what they want.
        let mut ours: HashMap<(Vec<u8>, Vec<u8>), Entry> =
            local_entries.into_iter().map(|e| ((e.bucket.clone(), e.key.clone()), e)).collect();
        for item in objects {
            let key = Key {
                partition,
                bucket: Bytes::from(item.bucket.clone()),
                key: Bytes::from(item.key.clone()),
            };
            let merged =
                self.local.merge(key, item.object, Durability::Journal).await.map_err(|e| e.to_string())?;
            out.repaired += 1;
            if let Some(e) = ours.get_mut(&(item.bucket, item.key)) {
                e.object = merged;
            }
        }
        let items: Vec<Item> = want
            .into_iter()
            .filter_map(|k| ours.remove(&k))
            .map(|e| Item { partition, bucket: e.bucket, key: e.key, object: e.object })
            .collect();
        if !items.is_empty() {
            out.repaired += items.len() as u64;
            let (_, n) = self.call(peer, &Request::MergeBatch { items }).await?;
            out.bytes += n;
        }
        Ok(out)
    }

    /// Reaps the partition's old tombstones that every primary holds identically.
    /// Returns the bytes exchanged.
    async fn reap(&self, partition: u32, peers: &[NodeId]) -> Result<u64, String> {
        let cutoff = unix_ms().saturating_sub(self.config.tombstone_grace.as_millis() as u64);
        let candidates = self
            .local
            .run(move |s| s.tombstones(partition, cutoff, 1000))
            .await
            .map_err(|e| e.to_string())?;
        if candidates.is_empty() {
            return Ok(0);
        }
        let mut entries: Vec<KeyHash> =
            candidates.into_iter().map(|e| KeyHash { bucket: e.bucket, key: e.key, hash: e.hash }).collect();
        let mut bytes = 0;
        for peer in peers {
            let (answer, n) =
                self.call(peer, &Request::ReapCheck { partition, entries: entries.clone() }).await?;
            bytes += n;
            let Response::Have(have) = answer else {
                return Err(format!("{peer}: unexpected answer to ReapCheck"));
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
        let removed = self
            .local
            .run(move |s| remove_entries(s, partition, &entries))
            .await
            .map_err(|e| e.to_string())?;
        self.reaped.fetch_add(removed as u64, Ordering::Relaxed);
        self.metrics.tombstones_reaped.inc_by(removed as u64);
        Ok(bytes)
    }

    /// Serves a peer's anti-entropy or reaping request.
    pub async fn serve(&self, request: Request) -> Response {
        let store = self.local.store().clone();
        let width = store.tree_width();
        let valid_partition = |p: u32| p < self.cluster.params().partitions;
        match request {
            Request::TreeSummary { partition, root } if valid_partition(partition) => match store
                .tree(partition)
            {
                Some(t) if t.root() == root => Response::Tree { ready: true, root, branches: vec![] },
                Some(t) => Response::Tree { ready: true, root: t.root(), branches: t.branches().to_vec() },
                None => Response::Tree { ready: false, root: 0, branches: vec![] },
            },
            Request::TreeLeaves { partition, branches } if valid_partition(partition) => {
                match store.tree(partition) {
                    Some(t) => Response::Leaves {
                        leaves: branches
                            .into_iter()
                            .filter(|&b| usize::from(b) < width)
                            .map(|b| (b, t.leaves_of(usize::from(b)).to_vec()))
                            .collect(),
                    },
                    None => Response::Error("trees are being rebuilt".into()),
                }
            }
            Request::SyncLeaves { partition, leaves, entries } if valid_partition(partition) => {
                if leaves.iter().any(|&l| usize::from(l) >= width * width) {
                    return Response::Error("leaf out of range".into());
                }
                match self.local.run(move |s| s.leaf_entries(partition, &leaves)).await {
                    Ok(mine) => sync_reply(partition, mine, entries),
                    Err(e) => Response::Error(e.to_string()),
                }
            }
            Request::ReapCheck { partition, entries } if valid_partition(partition) => {
                let checked = self
                    .local
                    .run(move |s| {
                        entries
                            .iter()
                            .map(|e| {
                                let key = ObjectKey { partition, bucket: &e.bucket, key: &e.key };
                                Ok(s.item_hash(key)? == Some(e.hash))
                            })
                            .collect::<Result<Vec<bool>, _>>()
                    })
                    .await;
                match checked {
                    Ok(have) => Response::Have(have),
                    Err(e) => Response::Error(e.to_string()),
                }
            }
            Request::Reap { partition, entries } if valid_partition(partition) => {
                match self.local.run(move |s| remove_entries(s, partition, &entries)).await {
                    Ok(count) => {
                        self.reaped.fetch_add(count as u64, Ordering::Relaxed);
                        self.metrics.tombstones_reaped.inc_by(count as u64);
                        Response::Reaped { count }
                    }
                    Err(e) => Response::Error(e.to_string()),
                }
            }
            _ => Response::Error("partition out of range".into()),
        }
    }
}

fn remove_entries(
    s: &quorumkv_storage::Store,
    partition: u32,
    entries: &[KeyHash],
) -> Result<usize, quorumkv_storage::Error> {
    let mut removed = 0;
    for e in entries {
        if s.remove_if(ObjectKey { partition, bucket: &e.bucket, key: &e.key }, e.hash)? {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Compares the sender's entries with ours: our versions of every key that differs or
/// that only we hold, and the keys we want (differ, or only they hold).
fn sync_reply(partition: u32, mine: Vec<Entry>, theirs: Vec<KeyHash>) -> Response {
    let mine_hashes: HashMap<(Vec<u8>, Vec<u8>), u64> =
        mine.iter().map(|e| ((e.bucket.clone(), e.key.clone()), e.hash)).collect();
    let want: Vec<(Vec<u8>, Vec<u8>)> = theirs
        .iter()
        .filter(|t| mine_hashes.get(&(t.bucket.clone(), t.key.clone())) != Some(&t.hash))
        .map(|t| (t.bucket.clone(), t.key.clone()))
        .collect();
    let theirs: HashMap<(Vec<u8>, Vec<u8>), u64> =
        theirs.into_iter().map(|e| ((e.bucket, e.key), e.hash)).collect();
    let objects = mine
        .into_iter()
        .filter(|e| theirs.get(&(e.bucket.clone(), e.key.clone())) != Some(&e.hash))
        .map(|e| Item { partition, bucket: e.bucket, key: e.key, object: e.object })
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
        let roots = self.roots();
        let st = self.state();
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
                        "root": roots.get(p),
                    }),
                )
            })
            .collect();
        json!({
            "trees": if self.local.store().trees_building() { "building" } else if st.last_rebuild.is_some() { "ready" } else { "absent" },
            "last_rebuild_unix_ms": st.last_rebuild_unix_ms,
            "queued": st.requested.len(),
            "roots": roots,
            "tombstones_reaped": self.reaped.load(Ordering::Relaxed),
            "partitions": partitions,
            "last_error": st.last_error,
        })
    }

    async fn work(&self) -> Result<WorkState, String> {
        let due = self.state().last_rebuild.is_none_or(|t| t.elapsed() >= self.config.rebuild_interval);
        if due {
            self.rebuild().await?;
        }
        let Some(partition) = self.next_partition() else {
            return Ok(WorkState::Idle);
        };
        if let Err(e) = self.sync_partition(partition).await {
            self.state().last_error = Some(e.clone());
            return Err(e);
        }
        let more = !self.state().requested.is_empty();
        Ok(if more { WorkState::Busy } else { WorkState::Idle })
    }

    async fn wait_for_work(&self) {
        let owned = self.cluster.ring().partitions_of(&self.cluster.my_id()).len().max(1) as u32;
        let pause = self.config.interval / owned;
        tokio::select! {
            () = self.wake.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}
