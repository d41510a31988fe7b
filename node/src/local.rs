//! The storage boundary: the only way from async code into the synchronous store.
//!
//! Nothing else in the node holds the [`Store`]: every call — reads, writes, hints,
//! Merkle trees, scans, status figures — goes through a method here and runs on a
//! dedicated storage thread, never on tokio's async threads (fjall can block on its
//! journal lock through an fsync, and on write back-pressure).
//!
//! Calls run on a few dedicated storage threads. A thread
//! takes every queued call at once (a batch) and runs them, so under load the threads
//! rarely sleep and a call costs a queue push and a wake of the waiting task instead of a
//! thread hand-off per call. Writes that must be on disk before they are acknowledged go
//! to one thread of their own, which makes one fsync per batch (group commit at the
//! boundary; [`Store::sync`] also shares fsyncs with any other caller).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use quorumkv_ring::NodeId;
use quorumkv_storage::versions::random_u64;
use quorumkv_storage::{
    Content, Durability, Entry, Error, Hint, Object, ObjectKey, Removal, Store, StoreStats, Tree,
    VersionVector, VersionsInfo,
};
use tokio::sync::oneshot;

use crate::key::Key;
use crate::peer::wire::{AgedItem, Item, KeyHash};

/// Calls one storage thread takes from the queue at most, so others share the work.
const MAX_BATCH: usize = 64;
/// How many times an idle storage thread looks for work again before it sleeps.
const SPINS_BEFORE_SLEEP: usize = 32;
/// Durable writes one fsync covers at most.
const MAX_DURABLE_BATCH: usize = 512;

/// What a storage call leaves to do once its batch is fsynced.
type AfterSync = Box<dyn FnOnce(&Result<(), Error>) + Send>;
/// A storage call: runs on a storage thread; may ask to be answered after the fsync.
type Job = Box<dyn FnOnce(&Store) -> Option<AfterSync> + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
    stopped: bool,
}

/// A queue and the threads that serve it.
struct Lane {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// What [`Lane::stalled_for`] measures from.
    epoch: Instant,
    /// When a thread of this lane last made progress (took a batch or finished a call),
    /// in nanoseconds since `epoch`.
    progress_ns: AtomicU64,
    /// Threads of this lane inside a batch.
    running: AtomicUsize,
}

impl Default for Lane {
    fn default() -> Lane {
        Lane {
            queue: Mutex::default(),
            ready: Condvar::new(),
            epoch: Instant::now(),
            progress_ns: AtomicU64::new(0),
            running: AtomicUsize::new(0),
        }
    }
}

impl Lane {
    fn submit(&self, job: Job) -> Result<(), Error> {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if q.stopped {
            return Err(Error::Unavailable("the node is shutting down".into()));
        }
        q.jobs.push_back(job);
        // Only a sleeping thread needs a wake-up; a busy one finds the job itself.
        if q.idle > 0 {
            self.ready.notify_one();
        }
        Ok(())
    }

    fn stop(&self) {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).stopped = true;
        self.ready.notify_all();
    }

    fn progressed(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.progress_ns.store(now, Ordering::Relaxed);
    }

    /// How long this lane has been working without finishing a call: zero when it is
    /// idle or moving. A lane whose threads all wait on one thing (fjall's journal lock
    /// through an fsync, a disk that stopped answering) shows it here within a call's time.
    fn stalled_for(&self) -> Duration {
        if self.running.load(Ordering::Relaxed) == 0 {
            return Duration::ZERO;
        }
        let since = Duration::from_nanos(self.progress_ns.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(since)
    }

    fn is_stopped(&self) -> bool {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).stopped
    }

    /// Waits for work and takes up to `max` jobs; `None` once stopped and drained.
    fn take(&self, max: usize) -> Option<Vec<Job>> {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        // Under load the next call comes within microseconds: look again a few times,
        // yielding the core meanwhile, before sleeping. A thread that never sleeps needs
        // no wake-up, which costs the submitter a futex call and both a context switch.
        for _ in 0..SPINS_BEFORE_SLEEP {
            if !q.jobs.is_empty() || q.stopped {
                break;
            }
            drop(q);
            std::thread::yield_now();
            q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        }
        while q.jobs.is_empty() {
            if q.stopped {
                return None;
            }
            q.idle += 1;
            q = self.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
            q.idle -= 1;
        }
        let n = q.jobs.len().min(max);
        Some(q.jobs.drain(..n).collect())
    }
}

/// Three lanes: reads and plain writes on a few threads; writes that must be fsynced on
/// one thread of their own; scans (tree rebuilds, partition and hint scans) on one more,
/// so a long scan never queues ahead of a request. A single durable thread keeps one
/// fsync in flight (outside fjall's lock, so other writes land meanwhile), and every
/// durable write that queued meanwhile shares the next one.
struct Executor {
    store: Arc<Store>,
    general: Lane,
    durable: Lane,
    scans: Lane,
}

impl Executor {
    fn worker(&self, lane: &Lane, max_batch: usize) {
        while let Some(batch) = lane.take(max_batch) {
            lane.running.fetch_add(1, Ordering::Relaxed);
            lane.progressed();
            let mut after_sync = Vec::new();
            for job in batch {
                // A panicking call drops its answer channel (the caller sees an error);
                // the thread lives on.
                let done = std::panic::catch_unwind(AssertUnwindSafe(|| job(&self.store)));
                lane.progressed();
                if let Ok(Some(then)) = done {
                    after_sync.push(then);
                }
            }
            if !after_sync.is_empty() {
                let synced = self.store.sync();
                lane.progressed();
                for then in after_sync {
                    then(&synced);
                }
            }
            lane.running.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// This node's replica of every partition it holds.
#[derive(Clone)]
pub struct LocalStore {
    executor: Arc<Executor>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore").finish_non_exhaustive()
    }
}

impl LocalStore {
    /// Starts `threads` storage threads over `store`, one for durable writes, one for
    /// scans (at CPU niceness `scan_nice`, when given: anti-entropy, tree rebuilds and key
    /// listings then use the cycles requests leave) and, with `journal_sync`, one that
    /// fsyncs the journal that often when it was written to (see
    /// [`Store::sync_if_written`]).
    ///
    /// # Errors
    /// The OS refused a thread.
    pub fn new(
        store: Arc<Store>,
        threads: usize,
        journal_sync: Option<Duration>,
        scan_nice: Option<i32>,
    ) -> std::io::Result<LocalStore> {
        let executor = Arc::new(Executor {
            store,
            general: Lane::default(),
            durable: Lane::default(),
            scans: Lane::default(),
        });
        let mut handles = Vec::new();
        let mut start = |name: String, body: Box<dyn FnOnce() + Send>| -> std::io::Result<()> {
            handles.push(std::thread::Builder::new().name(name).spawn(body)?);
            Ok(())
        };
        for i in 1..=threads.max(1) {
            let ex = executor.clone();
            start(format!("storage-{i}"), Box::new(move || ex.worker(&ex.general, MAX_BATCH)))?;
        }
        let ex = executor.clone();
        start("storage-durable".into(), Box::new(move || ex.worker(&ex.durable, MAX_DURABLE_BATCH)))?;
        let ex = executor.clone();
        start(
            "storage-scans".into(),
            Box::new(move || {
                if let Some(nice) = scan_nice {
                    quorumkv_storage::background::set_own_niceness(nice);
                }
                ex.worker(&ex.scans, 1)
            }),
        )?;
        if let Some(every) = journal_sync {
            let ex = executor.clone();
            start(
                "storage-syncer".into(),
                Box::new(move || {
                    while !ex.general.is_stopped() {
                        std::thread::sleep(every);
                        if let Err(e) = ex.store.sync_if_written() {
                            tracing::error!(error = %e, "periodic journal fsync failed");
                        }
                    }
                }),
            )?;
        }
        Ok(LocalStore { executor, threads: Arc::new(Mutex::new(handles)) })
    }

    /// Whether writes here would wait: the storage threads have been inside one call for
    /// longer than `threshold`. A coordinator then leaves the write to another replica
    /// (see [`crate::coordinator::Coordinator::put`]).
    pub fn writes_stalled(&self, threshold: Duration) -> bool {
        self.executor.general.stalled_for() > threshold
    }

    /// Occupies one general storage thread until `release` fires or is dropped, as a
    /// stalled disk or a held lock would. For tests of what the node does meanwhile.
    #[doc(hidden)]
    pub async fn hold_for_test(&self, release: oneshot::Receiver<()>) -> Result<(), Error> {
        self.run(move |_| {
            let _ = release.blocking_recv();
            Ok(())
        })
        .await
    }

    /// Counters the store keeps (atomics: reading them never waits).
    pub fn stats(&self) -> &StoreStats {
        self.executor.store.stats()
    }

    /// Lets the storage threads finish what is queued, joins them, then fsyncs the store
    /// and marks the stop clean (so the next start keeps this node's actor).
    pub async fn shutdown(&self) {
        self.executor.general.stop();
        self.executor.durable.stop();
        self.executor.scans.stop();
        let handles = std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        let store = self.executor.store.clone();
        let closed = tokio::task::spawn_blocking(move || {
            let mut joined = true;
            for h in handles {
                joined &= h.join().is_ok();
            }
            // A thread that panicked may have left a write half done: not a clean stop.
            if joined { store.close_cleanly() } else { store.flush() }
        });
        match closed.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "flush on shutdown failed"),
            Err(_) => tracing::warn!("a storage thread could not be joined"),
        }
    }

    /// Runs `f` on a storage thread.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        run_on(&self.executor.general, f).await
    }

    /// Runs `f` on the scan thread.
    async fn scan<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        run_on(&self.executor.scans, f).await
    }

    /// Runs `f` on a storage thread; if `durability` is [`Durability::Synced`], answers
    /// only once an fsync after `f` completed.
    async fn run_write<T: Send + 'static>(
        &self,
        durability: Durability,
        f: impl FnOnce(&Store) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        if durability == Durability::Journal {
            return self.run(f).await;
        }
        let (tx, rx) = oneshot::channel();
        self.executor.durable.submit(Box::new(move |s| {
            let result = f(s);
            if result.is_err() {
                let _ = tx.send(result);
                return None;
            }
            Some(Box::new(move |synced: &Result<(), Error>| {
                let _ = match synced {
                    Ok(()) => tx.send(result),
                    Err(e) => tx.send(Err(Error::SyncFailed(e.to_string()))),
                };
            }))
        }))?;
        rx.await.map_err(|_| Error::Unavailable("a storage call panicked".into()))?
    }

    /// Reads this replica's version. A corrupt record reads as missing (it was logged and
    /// counted by the store), so repair replaces it.
    pub async fn get(&self, key: Key) -> Result<Option<Object>, Error> {
        self.run(move |s| read(s, key.as_object_key())).await
    }

    /// Applies a client write as its coordinator: supersedes what `context` covers and
    /// numbers the new version with this node's next dot for the key (see
    /// [`quorumkv_storage::versions`]). Returns the resulting object.
    pub async fn coordinate(
        &self,
        key: Key,
        context: VersionVector,
        content: Content,
        durability: Durability,
    ) -> Result<Object, Error> {
        self.run_write(durability, move |s| {
            s.coordinate(key.as_object_key(), &context, content, Durability::Journal).map(|(obj, _dot)| obj)
        })
        .await
    }

    /// The hints kept here for `targets` about one key, merged (what a fallback holds for
    /// the primaries it stands in for).
    pub async fn get_hints(&self, key: Key, targets: Vec<NodeId>) -> Result<Option<Object>, Error> {
        self.run(move |s| {
            let k = key.as_object_key();
            let mut found: Option<Object> = None;
            for target in &targets {
                if let Ok(Some(hint)) = s.get_hint(target.as_str(), k) {
                    found.get_or_insert_with(Object::new).merge(&hint);
                }
            }
            Ok(found)
        })
        .await
    }

    /// Keeps `object` as a hint for each of `targets`, in one storage call, with the time
    /// its versions were first kept (see [`Store::put_hint_since`]).
    pub async fn put_hints(
        &self,
        targets: Vec<NodeId>,
        key: Key,
        object: Object,
        kept_since_ms: u64,
        durability: Durability,
    ) -> Result<(), Error> {
        self.run_write(durability, move |s| {
            for t in &targets {
                s.put_hint_since(t.as_str(), key.as_object_key(), &object, kept_since_ms)?;
            }
            Ok(())
        })
        .await
    }

    /// Merges a batch of versions (delivered hints), answering after one fsync.
    pub async fn merge_batch(&self, items: Vec<AgedItem>) -> Result<(), Error> {
        self.run_write(Durability::Synced, move |s| {
            for item in &items {
                s.merge(item.key.as_object_key(), &item.object, Durability::Journal)?;
            }
            Ok(())
        })
        .await
    }

    /// Merges other replicas' versions into ours, in one storage call; returns the
    /// results in order.
    pub async fn merge_items(&self, items: Vec<Item>) -> Result<Vec<Object>, Error> {
        self.run(move |s| {
            items.iter().map(|i| s.merge(i.key.as_object_key(), &i.object, Durability::Journal)).collect()
        })
        .await
    }

    /// Merges another replica's version into ours.
    pub async fn merge(&self, key: Key, object: Object, durability: Durability) -> Result<Object, Error> {
        self.run_write(durability, move |s| s.merge(key.as_object_key(), &object, Durability::Journal)).await
    }

    /// The next `limit` hints kept for `target` after `cursor`.
    pub async fn scan_hints(
        &self,
        target: NodeId,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<Hint>, Error> {
        self.run(move |s| s.scan_hints(target.as_str(), cursor.as_deref(), limit)).await
    }

    /// Removes the delivered hints that did not change meanwhile; returns how many.
    pub async fn remove_delivered(&self, target: NodeId, hints: Vec<Hint>) -> Result<usize, Error> {
        self.run(move |s| {
            let mut removed = 0;
            for h in &hints {
                if s.remove_hint_if_unchanged(target.as_str(), h.object_key(), &h.object())? {
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await
    }

    /// Hands every hint kept for `target` (no longer a member) to the current owners of
    /// its key under `ring`: merged here where this node (`me`) is one, kept as a hint
    /// for each other with the age of each of its layers (so moving a hint never makes
    /// it younger); the old hint is removed only if it did not change meanwhile.
    /// Returns how many hints were moved.
    pub async fn rehome_hints(
        &self,
        target: NodeId,
        ring: Arc<quorumkv_ring::Ring>,
        me: NodeId,
    ) -> Result<usize, Error> {
        self.scan(move |s| {
            let mut moved = 0;
            let mut cursor: Option<Vec<u8>> = None;
            loop {
                let hints = s.scan_hints(target.as_str(), cursor.as_deref(), 256)?;
                let Some(last) = hints.last() else { break };
                cursor = Some(last.cursor.clone());
                for h in &hints {
                    let object = h.object();
                    for owner in ring.primaries(h.partition) {
                        if *owner == me {
                            s.merge(h.object_key(), &object, Durability::Journal)?;
                            continue;
                        }
                        for layer in h.layers.layers() {
                            s.put_hint_since(
                                owner.as_str(),
                                h.object_key(),
                                &layer.object,
                                layer.kept_since_ms,
                            )?;
                        }
                    }
                    if s.remove_hint_if_unchanged(target.as_str(), h.object_key(), &object)? {
                        moved += 1;
                    }
                }
            }
            Ok(moved)
        })
        .await
    }

    /// Pending hints per target (scans every hint).
    pub async fn hint_counts(&self) -> Result<Vec<(NodeId, u64)>, Error> {
        self.scan(|s| Ok(s.hint_counts()?.into_iter().map(|(t, n)| (NodeId(t), n)).collect())).await
    }

    /// A copy of `partition`'s Merkle tree; `None` while the trees are rebuilt.
    pub async fn tree(&self, partition: u32) -> Result<Option<Tree>, Error> {
        self.run(move |s| Ok(s.tree(partition))).await
    }

    /// The roots of the given partitions' trees (none while the trees are rebuilt).
    pub async fn roots(&self, partitions: Vec<u32>) -> Result<Vec<(u32, u64)>, Error> {
        self.run(move |s| {
            Ok(partitions.into_iter().filter_map(|p| s.tree(p).map(|t| (p, t.root()))).collect())
        })
        .await
    }

    /// Rebuilds every tree from storage (a full scan, on the scan thread).
    pub async fn rebuild_trees(&self) -> Result<(), Error> {
        self.scan(|s| s.rebuild_trees()).await
    }

    /// The objects of `partition` in some Merkle leaves (a partition scan).
    pub async fn leaf_entries(&self, partition: u32, leaves: Vec<u16>) -> Result<Vec<Entry>, Error> {
        self.scan(move |s| s.leaf_entries(partition, &leaves)).await
    }

    /// Up to `limit` tombstones of `partition` older than `before_ms` (a partition scan).
    pub async fn tombstones(
        &self,
        partition: u32,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, Error> {
        self.scan(move |s| s.tombstones(partition, before_ms, limit)).await
    }

    /// For each of `parts` (a partition, and the key to start after), up to `limit` keys
    /// of `bucket` that start with `prefix`, with the shapes of their versions, and
    /// whether more follow. One call on the scan thread: a listing never queues ahead of
    /// a request.
    pub async fn list_keys(
        &self,
        bucket: bytes::Bytes,
        prefix: bytes::Bytes,
        parts: Vec<(u32, Option<bytes::Bytes>)>,
        limit: usize,
    ) -> Result<Vec<Result<(quorumkv_storage::KeyShapes, bool), Error>>, Error> {
        self.scan(move |s| {
            Ok(parts
                .into_iter()
                .map(|(partition, after)| s.list_keys(partition, &bucket, &prefix, after.as_deref(), limit))
                .collect())
        })
        .await
    }

    /// For each entry, whether this replica holds exactly that version.
    pub async fn holds(&self, entries: Vec<KeyHash>) -> Result<Vec<bool>, Error> {
        self.run(move |s| {
            entries.iter().map(|e| Ok(s.item_hash(e.key.as_object_key())? == Some(e.hash))).collect()
        })
        .await
    }

    /// Reaps each entry's tombstone if this replica still holds exactly that version;
    /// returns how many.
    pub async fn reap_unchanged(&self, entries: Vec<KeyHash>) -> Result<usize, Error> {
        self.run(move |s| {
            let mut removed = 0;
            for e in &entries {
                if s.remove_if(e.key.as_object_key(), e.hash, Removal::Reap)? {
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await
    }

    /// Storage figures for `/v1/status` and `/metrics`: bytes on disk (takes fjall's
    /// journal lock, so never on an async thread), approximate objects, the tree width.
    pub async fn figures(&self) -> Result<StorageFigures, Error> {
        self.run(|s| {
            Ok(StorageFigures {
                disk_bytes: s.disk_space(),
                approximate_objects: s.approximate_objects(),
                tree_width: s.tree_width(),
            })
        })
        .await
    }

    /// This node's id and incarnation, created on the first start (see [`load_identity`]).
    /// The flag is true when the incarnation was made now (a new or wiped data directory).
    /// Starts numbering versions as this node (see [`Store::start_versions`]).
    pub async fn identity(&self, configured: Option<String>) -> Result<(NodeId, u64, bool), Error> {
        self.run(move |s| {
            let identity = load_identity(s, configured.as_deref())?;
            s.start_versions(identity.0.as_str())?;
            Ok(identity)
        })
        .await
    }

    /// How this node numbers versions (for status).
    pub fn versions(&self) -> Option<VersionsInfo> {
        self.executor.store.versions()
    }

    /// Moves every key of `partition` out of this node's data: each is kept as a hint
    /// for every one of `owners`, then removed if it did not change meanwhile. Returns
    /// how many were moved. Runs on the scan thread.
    ///
    /// Stored data carries no write time, so a stray's age is unknown and counts as old
    /// as can be ([`quorumkv_storage::AGE_UNKNOWN_MS`]): where a hint TTL is set, and
    /// the node sets one, the copy is dropped, not handed over. Handing it over as if
    /// new could revive a delete whose tombstone the owners have reaped since (this node
    /// missed the delete). Dropping it loses nothing the owners lack in the normal
    /// course: data turns stray when the previous layout retires, once the new owners
    /// have synced from the replicas both layouts share (one replica changes per commit,
    /// so they hold every acknowledged write), writes have gone to both replica sets
    /// while the partition moved, and this node took part in the owners' anti-entropy
    /// whenever it was up. What it can lose is a version held only here: a `w=1` write
    /// only this node took that no exchange moved, a write no quorum acknowledged, or
    /// data from before layouts were stored.
    pub async fn move_strays(&self, partition: u32, owners: Vec<NodeId>) -> Result<usize, Error> {
        self.scan(move |s| {
            let mut moved = 0;
            for e in s.partition_entries(partition)? {
                let key = ObjectKey { partition, bucket: &e.bucket, key: &e.key };
                for owner in &owners {
                    s.put_hint_since(owner.as_str(), key, &e.object, quorumkv_storage::AGE_UNKNOWN_MS)?;
                }
                if s.remove_if(key, e.hash, Removal::HandedOff)? {
                    moved += 1;
                }
            }
            Ok(moved)
        })
        .await
    }

    /// How many keys and value bytes this node holds in `partition` (a partition scan).
    pub async fn partition_size(&self, partition: u32) -> Result<(u64, u64), Error> {
        self.scan(move |s| {
            let entries = s.partition_entries(partition)?;
            Ok((entries.len() as u64, entries.iter().map(|e| e.object.value_bytes() as u64).sum()))
        })
        .await
    }

    /// A small named value of node state (the layout, the identity).
    pub async fn meta_get(&self, name: &'static str) -> Result<Option<Vec<u8>>, Error> {
        self.run(move |s| s.meta_get(name)).await
    }

    /// Stores a small named value of node state, fsynced before it answers.
    pub async fn meta_put(&self, name: &'static str, value: Vec<u8>) -> Result<(), Error> {
        self.run(move |s| s.meta_put(name, &value)).await
    }

    /// The raw record of a key, for tests that corrupt one.
    #[doc(hidden)]
    pub async fn raw(&self, key: Key) -> Result<Option<Vec<u8>>, Error> {
        self.run(move |s| s.raw_get(key.as_object_key())).await
    }

    /// Overwrites the raw record of a key, for tests that corrupt one.
    #[doc(hidden)]
    pub async fn put_raw(&self, key: Key, bytes: Vec<u8>) -> Result<(), Error> {
        self.run(move |s| s.raw_put(key.as_object_key(), &bytes)).await
    }

    /// Keeps a hint as if it had been kept at `now_ms`, for tests of hint expiry.
    #[doc(hidden)]
    pub async fn put_hint_at(
        &self,
        target: NodeId,
        key: Key,
        object: Object,
        now_ms: u64,
    ) -> Result<(), Error> {
        self.run(move |s| s.put_hint_since(target.as_str(), key.as_object_key(), &object, now_ms)).await
    }
}

/// What `/v1/status` and `/metrics` show of storage.
#[derive(Clone, Copy, Debug, Default)]
pub struct StorageFigures {
    pub disk_bytes: u64,
    pub approximate_objects: usize,
    pub tree_width: usize,
}

/// Reads one object; a corrupt record reads as missing (the store logged and counted
/// it), so repair replaces it.
fn read(s: &Store, key: ObjectKey<'_>) -> Result<Option<Object>, Error> {
    match s.get(key) {
        Err(Error::Corrupt { .. }) => Ok(None),
        other => other,
    }
}

async fn run_on<T: Send + 'static>(
    lane: &Lane,
    f: impl FnOnce(&Store) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = oneshot::channel();
    lane.submit(Box::new(move |s| {
        let _ = tx.send(f(s));
        None
    }))?;
    rx.await.map_err(|_| Error::Unavailable("a storage call panicked".into()))?
}

/// Loads this node's id and incarnation from the data directory, creating them on the
/// first start. An empty data directory always gets a new incarnation (and the store a
/// new actor: see [`Store::start_versions`]).
fn load_identity(store: &Store, configured: Option<&str>) -> Result<(NodeId, u64, bool), Error> {
    let stored_id = store.meta_get("node_id")?.and_then(|v| String::from_utf8(v).ok());
    let node_id = match (configured, stored_id) {
        (Some(id), stored) => {
            if stored.as_deref() != Some(id) {
                if let Some(old) = stored {
                    tracing::warn!(old = %old, new = %id, "node id changed by configuration");
                }
                store.meta_put("node_id", id.as_bytes())?;
            }
            id.to_owned()
        }
        (None, Some(stored)) => stored,
        (None, None) => {
            let id = format!("node-{:08x}", random_u64() as u32);
            store.meta_put("node_id", id.as_bytes())?;
            id
        }
    };
    let (incarnation, fresh) = match store.meta_get("incarnation")? {
        Some(v) if v.len() == 8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v);
            (u64::from_le_bytes(b), false)
        }
        _ => {
            let inc = random_u64();
            store.meta_put("incarnation", &inc.to_le_bytes())?;
            (inc, true)
        }
    };
    Ok((NodeId(node_id), incarnation, fresh))
}
