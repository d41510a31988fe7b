//! The fjall-backed replica store.
//!
//! Keyspaces: `data` (objects), `hints` (copies kept for other nodes), `meta` (node
//! identity and small state). A data key is `partition (u32 BE) ‖ bucket length (u8) ‖
//! bucket ‖ key`, so one partition's keys are one contiguous prefix scan.
//!
//! Every call is synchronous and may block on I/O: the node calls it from blocking
//! threads, never from async ones.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use std::collections::HashMap;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};

use crate::Error;
use crate::background;
use crate::causal::{Content, Dot, Object, VersionVector, unix_ms};
use crate::commit::GroupCommit;
use crate::hint::{HintLayer, Layers};
use crate::journal::JournalSync;
use crate::merkle::{self, Forest, Tree};
use crate::record;
use crate::versions::{self, Issuer, StartKind};

/// Meta names of the version issuer's state and of the clean-stop mark.
const META_VERSIONS: &str = "versions";
const META_CLEAN_STOP: &str = "clean_stop";

/// Writes to one key are serialised by one of these locks (read-modify-write).
const LOCK_STRIPES: usize = 1024;

/// Names one stored object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectKey<'a> {
    pub partition: u32,
    pub bucket: &'a [u8],
    pub key: &'a [u8],
}

impl ObjectKey<'_> {
    /// Longest bucket the stored layout holds (its length is one byte).
    pub const MAX_BUCKET_BYTES: usize = 255;

    /// Checks that the stored layout can hold this key: a bucket of 1 to 255 bytes and a
    /// key of at least one byte. Every write checks it, so a bucket length can never be
    /// truncated into the length byte and alias another key.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] naming what is wrong.
    pub fn check(&self) -> Result<(), Error> {
        if self.bucket.is_empty() || self.bucket.len() > Self::MAX_BUCKET_BYTES {
            return Err(Error::InvalidKey(format!(
                "a bucket is 1 to {} bytes, this one is {}",
                Self::MAX_BUCKET_BYTES,
                self.bucket.len()
            )));
        }
        if self.key.is_empty() {
            return Err(Error::InvalidKey("a key is at least one byte".into()));
        }
        Ok(())
    }

    /// The stored key: `partition BE ‖ bucket length ‖ bucket ‖ key`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.bucket.len() + self.key.len());
        out.extend_from_slice(&self.partition.to_be_bytes());
        out.push(self.bucket.len() as u8);
        out.extend_from_slice(self.bucket);
        out.extend_from_slice(self.key);
        out
    }
}

/// Keys with the shapes of their versions ([`Object::shape`]), as a listing returns them.
pub type KeyShapes = Vec<(Vec<u8>, Object)>;

/// One stored object with its Merkle item hash, as partition scans return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
    pub hash: u64,
    pub object: Object,
}

/// A copy kept for another replica, as [`Store::scan_hints`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    /// Where a scan resumes after this hint.
    pub cursor: Vec<u8>,
    pub partition: u32,
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
    /// Its layers not yet expired, oldest first (see [`crate::hint`]): at least one.
    pub layers: Layers,
}

impl Hint {
    pub fn object_key(&self) -> ObjectKey<'_> {
        ObjectKey { partition: self.partition, bucket: &self.bucket, key: &self.key }
    }

    /// Every version the hint holds, merged: what its delivery carries.
    pub fn object(&self) -> Object {
        self.layers.merged()
    }

    /// When the oldest of its versions was first kept, in milliseconds since the epoch.
    pub fn kept_since_ms(&self) -> u64 {
        self.layers.layers().first().map_or(0, |l| l.kept_since_ms)
    }
}

fn hint_prefix(target: &str) -> Vec<u8> {
    let t = target.as_bytes();
    let t = &t[..t.len().min(255)];
    let mut out = Vec::with_capacity(1 + t.len());
    out.push(t.len() as u8);
    out.extend_from_slice(t);
    out
}

fn hint_key(target: &str, key: ObjectKey<'_>) -> Vec<u8> {
    let mut out = hint_prefix(target);
    out.extend_from_slice(&key.encode());
    out
}

/// The first key after every key that starts with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Splits a stored data key back into partition, bucket and key.
pub(crate) fn split_data_key(k: &[u8]) -> Option<(u32, &[u8], &[u8])> {
    let partition = u32::from_be_bytes(k.get(..4)?.try_into().ok()?);
    let len = usize::from(*k.get(4)?);
    let bucket = k.get(5..5 + len)?;
    let key = k.get(5 + len..)?;
    Some((partition, bucket, key))
}

/// Whether a write must be on disk (fsynced) before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// In the journal: survives a process crash, not a power loss.
    Journal,
    /// Fsynced, through group commit.
    Synced,
}

/// Counters a node exports as metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub corrupt_records: AtomicU64,
    pub syncs: AtomicU64,
    /// Hints written (or merged into) since the store opened: lets a reader skip
    /// rescanning the hints when none arrived.
    pub hints_written: AtomicU64,
    /// Hints dropped undelivered because they outlived the hint TTL.
    pub hints_expired: AtomicU64,
    /// Times this node took a new actor because it may have lost versions it numbered.
    pub actor_renewals: AtomicU64,
}

/// Why an object leaves this replica's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// A tombstone every replica holds, past its grace period: the key's history is
    /// deleted everywhere.
    Reap,
    /// Data of a partition this node no longer replicates, now kept for its owners: its
    /// versions live on elsewhere.
    HandedOff,
}

/// What `/v1/status` shows of how this node numbers versions.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VersionsInfo {
    /// The actor this node numbers versions as, in hex.
    pub actor: String,
    pub epoch: u64,
    /// Every version is numbered above this (raised by reaps).
    pub floor: u64,
    /// How the actor was chosen at start.
    pub last_start: StartKind,
    /// Partitions whose next write needs a new actor.
    pub renew_pending: usize,
}

/// How a store is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// CPU niceness (0–19) for fjall's flush and compaction threads, so requests go
    /// first; `None` leaves them at the process's priority. See [`crate::background`].
    pub worker_nice: Option<i32>,
    /// Memtable size of the data keyspace when the store is created; `None` draws one
    /// between 40 and 64 MiB so that replicas do not flush at the same moment.
    pub memtable_bytes: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions { worker_nice: Some(DEFAULT_WORKER_NICE), memtable_bytes: None }
    }
}

/// Niceness of fjall's worker threads unless configured otherwise.
pub const DEFAULT_WORKER_NICE: i32 = 19;

pub struct Store {
    db: Database,
    data: Keyspace,
    hints: Keyspace,
    meta: Keyspace,
    locks: Box<[Mutex<()>]>,
    commit: GroupCommit,
    stats: StoreStats,
    forest: Mutex<Forest>,
    /// Fsyncs the journal outside fjall's journal lock, so writers never wait on it.
    journal: JournalSync,
    /// The journal sequence number the last [`Store::sync_if_written`] saw.
    synced_seqno: AtomicU64,
    /// Hints older than this many milliseconds are dropped, not delivered (0: never).
    hint_ttl_ms: AtomicU64,
    /// Numbers this node's versions; `None` until [`Store::start_versions`].
    issuer: Mutex<Option<Issuer>>,
    last_start: Mutex<Option<StartKind>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `path` with the default [`StoreOptions`]. A second
    /// open of the same path fails.
    pub fn open(path: &Path) -> Result<Store, Error> {
        Store::open_with(path, &StoreOptions::default())
    }

    /// Opens (or creates) the store in `path`. A second open of the same path fails.
    pub fn open_with(path: &Path, options: &StoreOptions) -> Result<Store, Error> {
        let db = match options.worker_nice {
            Some(nice) => background::open_at_niceness(nice, || Database::builder(path).open())?,
            None => Database::builder(path).open()?,
        };
        let memtable = options.memtable_bytes.unwrap_or_else(background::memtable_bytes);
        // fjall keeps a keyspace's memtable size from its creation on: this applies to new
        // stores only.
        let data = db.keyspace("data", || KeyspaceCreateOptions::default().max_memtable_size(memtable))?;
        let hints = db.keyspace("hints", KeyspaceCreateOptions::default)?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        let locks = (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect();
        Ok(Store {
            db,
            data,
            hints,
            meta,
            locks,
            commit: GroupCommit::default(),
            stats: StoreStats::default(),
            forest: Mutex::new(Forest::new(merkle::DEFAULT_WIDTH)),
            journal: JournalSync::new(path),
            synced_seqno: AtomicU64::new(0),
            hint_ttl_ms: AtomicU64::new(0),
            issuer: Mutex::new(None),
            last_start: Mutex::new(None),
        })
    }

    /// Starts numbering versions as `node_id`: resumes the stored actor if the last stop
    /// was clean ([`Store::close_cleanly`]), otherwise takes a new one, since the versions
    /// an unclean stop lost may live on other replicas (see [`crate::versions`]). Call
    /// once, before the first [`Store::coordinate`].
    pub fn start_versions(&self, node_id: &str) -> Result<StartKind, Error> {
        let stored = self.meta.get(META_VERSIONS)?;
        let resumable = stored.as_deref().and_then(|b| versions::decode(node_id, b));
        let clean = self.meta.get(META_CLEAN_STOP)?.map(|v| v.to_vec());
        // From here until the next clean stop, a crash is unclean.
        self.meta.remove(META_CLEAN_STOP)?;
        let (kind, issuer) = match resumable {
            Some(i) if clean.as_deref() == Some(&i.epoch().to_le_bytes()[..]) => (StartKind::Clean, i),
            Some(_) => (StartKind::Unclean, Issuer::new(node_id, versions::random_u64(), 0, false)),
            None if stored.is_some() => {
                (StartKind::Unclean, Issuer::new(node_id, versions::random_u64(), 0, false))
            }
            None => (StartKind::New, Issuer::new(node_id, versions::random_u64(), 0, false)),
        };
        self.meta.insert(META_VERSIONS, versions::encode(&issuer))?;
        self.sync()?;
        tracing::info!(actor = %format!("{:016x}", issuer.actor().0), epoch = issuer.epoch(), start = ?kind, "numbering versions");
        *self.issuer.lock().unwrap_or_else(PoisonError::into_inner) = Some(issuer);
        *self.last_start.lock().unwrap_or_else(PoisonError::into_inner) = Some(kind);
        Ok(kind)
    }

    /// Fsyncs everything and marks the stop clean, so the next start keeps this node's
    /// actor. Call last, once nothing writes any more.
    pub fn close_cleanly(&self) -> Result<(), Error> {
        self.db.persist(PersistMode::SyncAll)?;
        if let Some(issuer) = self.issuer.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            self.meta.insert(META_VERSIONS, versions::encode(issuer))?;
            self.meta.insert(META_CLEAN_STOP, issuer.epoch().to_le_bytes())?;
        }
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// How this node numbers versions, for status; `None` before [`Store::start_versions`].
    pub fn versions(&self) -> Option<VersionsInfo> {
        let issuer = self.issuer.lock().unwrap_or_else(PoisonError::into_inner).clone()?;
        let last_start = (*self.last_start.lock().unwrap_or_else(PoisonError::into_inner))?;
        Some(VersionsInfo {
            actor: format!("{:016x}", issuer.actor().0),
            epoch: issuer.epoch(),
            floor: issuer.floor(),
            last_start,
            renew_pending: issuer.pending_renewals(),
        })
    }

    /// Runs `f` on the issuer, storing its state (in the journal) if `f` says it changed.
    fn with_issuer<T>(&self, f: impl FnOnce(&mut Issuer) -> (T, bool)) -> Result<T, Error> {
        let mut guard = self.issuer.lock().unwrap_or_else(PoisonError::into_inner);
        let issuer = guard
            .as_mut()
            .ok_or_else(|| Error::Unavailable("this store does not number versions yet".into()))?;
        let (out, changed) = f(issuer);
        if changed {
            self.meta.insert(META_VERSIONS, versions::encode(issuer))?;
        }
        Ok(out)
    }

    /// This node may have lost versions it numbered in `partition` (`why` says how): the
    /// next write it coordinates there is numbered by a new actor.
    fn lost_versions_in(&self, partition: u32, why: &str) {
        if self.issuer.lock().unwrap_or_else(PoisonError::into_inner).is_none() {
            return;
        }
        match self.with_issuer(|i| {
            let changed = i.lost_partition(partition);
            (changed, changed)
        }) {
            Ok(true) => tracing::info!(
                partition,
                why,
                "this node may have lost versions it numbered here: its next write here takes a new actor"
            ),
            Ok(false) => {}
            Err(e) => tracing::error!(partition, error = %e, "could not record lost versions"),
        }
    }

    /// Applies a client write as its coordinator: supersedes what `context` covers,
    /// keeps every concurrent sibling, and numbers the new version with this node's next
    /// dot for the key, which no version anywhere holds (see [`crate::versions`]).
    /// Returns the resulting object and the new dot.
    ///
    /// # Errors
    /// As [`Object::update_at`]; [`Error::Unavailable`] before [`Store::start_versions`].
    pub fn coordinate(
        &self,
        key: ObjectKey<'_>,
        context: &VersionVector,
        content: Content,
        durability: Durability,
    ) -> Result<(Object, Dot), Error> {
        self.update(key, durability, |obj| {
            let (dot, renewed) = self.with_issuer(|i| {
                let renewed = i.must_renew(key.partition) && i.lost(versions::random_u64());
                ((i.next(obj.context(), context), renewed), renewed)
            })?;
            if renewed {
                self.stats.actor_renewals.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    partition = key.partition,
                    "this node may have lost versions it numbered in this partition: it now numbers as a new actor"
                );
            }
            let dot = dot?;
            obj.update_at(context, dot, content)?;
            Ok(dot)
        })
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// Reads one object.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the stored record fails its checks (logged and counted);
    /// callers treat it as missing and repair it.
    pub fn get(&self, key: ObjectKey<'_>) -> Result<Option<Object>, Error> {
        let stored = key.encode();
        match self.data.get(&stored)? {
            None => Ok(None),
            Some(bytes) => self.decode(key, &bytes).map(Some),
        }
    }

    /// Read-modify-write of one object under its key lock: `f` gets the stored object
    /// (empty if absent or corrupt) and changes it; the result is written and returned.
    /// Nothing is written if `f` fails or leaves the object unchanged.
    pub fn update<T>(
        &self,
        key: ObjectKey<'_>,
        durability: Durability,
        f: impl FnOnce(&mut Object) -> Result<T, Error>,
    ) -> Result<(Object, T), Error> {
        key.check()?;
        let stored = key.encode();
        let _guard = self.lock(&stored);
        let (current, old_hash) = match self.data.get(&stored)? {
            None => (None, 0),
            // A corrupt record is replaced by whatever the write brings; repair fills the
            // rest. It was never counted in the tree (see `rebuild_trees`).
            Some(bytes) => match self.decode(key, &bytes) {
                Ok(obj) => (Some(obj), merkle::item_hash(&stored, &bytes)),
                Err(_) => (None, 0),
            },
        };
        let mut object = current.clone().unwrap_or_default();
        let out = f(&mut object)?;
        if current.as_ref() != Some(&object) {
            let bytes = record::encode(&object);
            let new_hash = merkle::item_hash(&stored, &bytes);
            self.data.insert(stored.as_slice(), bytes)?;
            self.forest().apply(key.partition, &stored, old_hash ^ new_hash);
        }
        drop(_guard);
        if durability == Durability::Synced {
            self.sync()?;
        }
        Ok((object, out))
    }

    /// Merges a replica's version of an object into ours (DVV rules); returns the result.
    pub fn merge(
        &self,
        key: ObjectKey<'_>,
        incoming: &Object,
        durability: Durability,
    ) -> Result<Object, Error> {
        self.update(key, durability, |obj| {
            let ahead = self
                .issuer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .is_some_and(|i| i.proves_loss(obj.context(), incoming.context()));
            if ahead {
                self.lost_versions_in(
                    key.partition,
                    "another replica holds newer versions this node numbered",
                );
            }
            obj.merge(incoming);
            Ok(())
        })
        .map(|(obj, ())| obj)
    }

    /// Waits until every write made before this call is fsynced, sharing the fsync with
    /// concurrent callers (group commit). The fsync holds none of fjall's locks (see
    /// [`crate::journal`]): writes go on landing while it runs.
    pub fn sync(&self) -> Result<(), Error> {
        self.commit
            .wait(|| {
                self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                self.journal.sync()
            })
            .map_err(|e| Error::SyncFailed(e.to_string()))
    }

    /// Fsyncs the journal if anything was written since the last call; returns whether
    /// it did.
    ///
    /// The node calls this every few tens of milliseconds so the journal never holds
    /// much unsynced data. fjall fsyncs the whole journal under its write lock when it
    /// rotates it (every 64 MiB), so with tens of MiB unsynced every writer stalls for
    /// 100 ms or more; synced as it goes, the rotation's fsync has almost nothing left to
    /// do. It also bounds what a power loss can take from writes made with `dw=0`.
    pub fn sync_if_written(&self) -> Result<bool, Error> {
        let seqno = self.db.seqno();
        if self.synced_seqno.swap(seqno, Ordering::Relaxed) == seqno {
            return Ok(false);
        }
        self.sync()?;
        Ok(true)
    }

    /// A small named value of node state.
    pub fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.meta.get(name)?.map(|v| v.to_vec()))
    }

    /// Stores a small named value of node state, fsynced.
    pub fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), Error> {
        self.meta.insert(name, value)?;
        self.sync()
    }

    /// Bytes the store occupies on disk.
    pub fn disk_space(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }

    /// Approximate number of stored objects.
    pub fn approximate_objects(&self) -> usize {
        self.data.approximate_len()
    }

    /// Removes an object if its record still hashes to `expected` (what every replica
    /// agreed on, or what was handed off); returns whether it did. What this node may
    /// have forgotten is recorded first (see [`crate::versions`]): a reaped tombstone
    /// raises the floor its next versions are numbered above; handed-off data makes the
    /// next write of its partition here take a new actor.
    pub fn remove_if(&self, key: ObjectKey<'_>, expected: u64, why: Removal) -> Result<bool, Error> {
        let stored = key.encode();
        let _guard = self.lock(&stored);
        let Some(bytes) = self.data.get(&stored)? else {
            return Ok(false);
        };
        if merkle::item_hash(&stored, &bytes) != expected {
            return Ok(false);
        }
        match why {
            // Stored (in the journal, before the removal) so that no restart can find the
            // tombstone gone and the floor below it.
            Removal::Reap => {
                if let Ok(obj) = self.decode(key, &bytes)
                    && self.issuer.lock().unwrap_or_else(PoisonError::into_inner).is_some()
                {
                    self.with_issuer(|i| ((), i.reaping(obj.context())))?;
                }
            }
            Removal::HandedOff => {
                self.lost_versions_in(key.partition, "its data was handed to the new owners")
            }
        }
        self.data.remove(stored.as_slice())?;
        self.forest().apply(key.partition, &stored, expected);
        Ok(true)
    }

    /// The Merkle item hash of what is stored for a key; `None` if absent or corrupt.
    pub fn item_hash(&self, key: ObjectKey<'_>) -> Result<Option<u64>, Error> {
        let stored = key.encode();
        match self.data.get(&stored)? {
            Some(bytes) if self.decode(key, &bytes).is_ok() => Ok(Some(merkle::item_hash(&stored, &bytes))),
            _ => Ok(None),
        }
    }

    /// Rebuilds every partition's Merkle tree from a consistent snapshot, while writes go
    /// on: the writes that land during the scan are kept aside and folded in after it.
    /// Records that fail their checks are counted, logged and left out of the tree, so an
    /// exchange sees them as missing and repairs them. Slow (a full scan): call it from a
    /// background worker.
    pub fn rebuild_trees(&self) -> Result<(), Error> {
        let snapshot = {
            // With every key lock held no write is half done: each lands wholly before
            // the snapshot (in the scan) or wholly after (in the pending deltas).
            let _all: Vec<_> =
                self.locks.iter().map(|l| l.lock().unwrap_or_else(PoisonError::into_inner)).collect();
            self.forest().start_rebuild();
            self.db.snapshot()
        };
        let width = self.forest().width();
        let mut scanned: HashMap<u32, Tree> = HashMap::new();
        for guard in snapshot.iter(&self.data) {
            let (k, v) = guard.into_inner()?;
            let Some((partition, bucket, key)) = split_data_key(&k) else { continue };
            if self.decode(ObjectKey { partition, bucket, key }, &v).is_err() {
                continue;
            }
            scanned
                .entry(partition)
                .or_insert_with(|| Tree::new(width))
                .apply(merkle::leaf_of(&k, width), merkle::item_hash(&k, &v));
        }
        self.forest().finish_rebuild(scanned);
        Ok(())
    }

    /// A copy of one partition's tree; `None` while a rebuild runs (an exchange then
    /// waits). A partition that holds nothing here has an empty tree.
    pub fn tree(&self, partition: u32) -> Option<Tree> {
        let forest = self.forest();
        if forest.is_building() {
            return None;
        }
        Some(forest.tree(partition).cloned().unwrap_or_else(|| Tree::new(forest.width())))
    }

    /// Whether the trees are being rebuilt.
    pub fn trees_building(&self) -> bool {
        self.forest().is_building()
    }

    /// The width of every tree (branches per tree, leaves per branch).
    pub fn tree_width(&self) -> usize {
        self.forest().width()
    }

    /// Every object of `partition` that falls in one of `leaves`, with its item hash.
    /// Corrupt records are left out (they count as missing). Scans the partition.
    pub fn leaf_entries(&self, partition: u32, leaves: &[u16]) -> Result<Vec<Entry>, Error> {
        let width = self.tree_width();
        let wanted: std::collections::HashSet<usize> = leaves.iter().map(|&l| usize::from(l)).collect();
        self.scan_partition(partition, |k| wanted.contains(&merkle::leaf_of(k, width)))
    }

    /// Every object of `partition`, with its item hash. Corrupt records are left out.
    pub fn partition_entries(&self, partition: u32) -> Result<Vec<Entry>, Error> {
        self.scan_partition(partition, |_| true)
    }

    /// Deleted keys of `partition` whose newest tombstone is older than `before_ms`, at
    /// most `limit`.
    pub fn tombstones(&self, partition: u32, before_ms: u64, limit: usize) -> Result<Vec<Entry>, Error> {
        let mut found = self.scan_partition(partition, |_| true)?;
        found.retain(|e| e.object.deleted_at_ms().is_some_and(|t| t < before_ms));
        found.truncate(limit);
        Ok(found)
    }

    /// The keys of `bucket` in `partition` that start with `prefix` and sort after
    /// `after`, in byte order, at most `limit`, each with the [`Object::shape`] of its
    /// version (deleted keys too: a listing merges replicas before it hides them). The
    /// flag says whether more such keys follow. Reads only the bucket's key range;
    /// corrupt records are left out (they count as missing, as for reads).
    pub fn list_keys(
        &self,
        partition: u32,
        bucket: &[u8],
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(KeyShapes, bool), Error> {
        let base = ObjectKey { partition, bucket, key: prefix }.encode();
        let start = match after {
            Some(a) if a >= prefix => {
                let mut k = ObjectKey { partition, bucket, key: a }.encode();
                k.push(0);
                k
            }
            _ => base.clone(),
        };
        let mut out = Vec::new();
        // A bounded range lets the tree skip every table outside the bucket's keys.
        let range = match prefix_end(&base) {
            Some(end) => self.data.range(start..end),
            None => self.data.range(start..),
        };
        for guard in range {
            let (k, v) = guard.into_inner()?;
            if !k.starts_with(&base) {
                return Ok((out, false));
            }
            if out.len() >= limit {
                return Ok((out, true));
            }
            // The length byte in `base` pins the bucket: every key here is this bucket's.
            let Some((p, b, key)) = split_data_key(&k) else { continue };
            if let Ok(object) = self.decode(ObjectKey { partition: p, bucket: b, key }, &v) {
                out.push((key.to_vec(), object.shape()));
            }
        }
        Ok((out, false))
    }

    fn scan_partition(&self, partition: u32, want: impl Fn(&[u8]) -> bool) -> Result<Vec<Entry>, Error> {
        let mut out = Vec::new();
        for guard in self.data.prefix(partition.to_be_bytes()) {
            let (k, v) = guard.into_inner()?;
            if !want(&k) {
                continue;
            }
            let Some((p, bucket, key)) = split_data_key(&k) else { continue };
            if let Ok(object) = self.decode(ObjectKey { partition: p, bucket, key }, &v) {
                out.push(Entry {
                    bucket: bucket.to_vec(),
                    key: key.to_vec(),
                    hash: merkle::item_hash(&k, &v),
                    object,
                });
            }
        }
        Ok(out)
    }

    fn forest(&self) -> std::sync::MutexGuard<'_, Forest> {
        self.forest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets how old a hint may grow before it is dropped instead of delivered (`None`:
    /// never). The node sets it to the tombstone grace period: a tombstone is reaped no
    /// sooner than that after its delete, so a hint younger than it cannot carry a
    /// version that a reaped tombstone superseded, and an older one might (delivering it
    /// would bring a deleted key back). Anti-entropy repairs what a dropped hint held.
    pub fn set_hint_ttl(&self, ttl: Option<std::time::Duration>) {
        let ms = ttl.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1));
        self.hint_ttl_ms.store(ms, Ordering::Relaxed);
    }

    fn hint_expired(&self, kept_since_ms: u64, now_ms: u64) -> bool {
        let ttl = self.hint_ttl_ms.load(Ordering::Relaxed);
        ttl > 0 && now_ms.saturating_sub(kept_since_ms) > ttl
    }

    /// Decodes a stored hint value into its layers.
    fn decode_hint(&self, key: ObjectKey<'_>, bytes: &[u8]) -> Result<Layers, Error> {
        let layers = Layers::frames(bytes)
            .into_iter()
            .map(|(kept_since_ms, record)| {
                Ok(HintLayer { kept_since_ms, object: self.decode_record(key, record)? })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Layers::from_frames(layers))
    }

    /// Drops the layers of `layers` that outlived the hint TTL at `now_ms`, counting them.
    fn expire_layers(&self, layers: &mut Layers, now_ms: u64) -> usize {
        let expired = layers.expire(|since| self.hint_expired(since, now_ms));
        self.stats.hints_expired.fetch_add(expired as u64, Ordering::Relaxed);
        expired
    }

    /// Merges `object` into the hint kept here for `target` (a replica that missed it), as
    /// a version written now. Hints are keyed `target length ‖ target ‖ data key`, so one
    /// target's hints are one prefix scan; they are as durable as any write. A hint keeps
    /// the time each of its versions was first kept, which is what their expiry counts
    /// from (see [`crate::hint`]).
    pub fn put_hint(&self, target: &str, key: ObjectKey<'_>, object: &Object) -> Result<(), Error> {
        self.put_hint_since(target, key, object, unix_ms())
    }

    /// Keeps `object` as a hint for `target` whose versions were first kept (as a hint, or
    /// written) at `kept_since_ms`: what a hint moved or delivered elsewhere passes on, so
    /// that re-hinting never makes a version younger. A time later than now counts as now
    /// (a peer's clock ahead of ours does not lengthen a hint's life); versions already
    /// older than the hint TTL are not kept, only counted as expired.
    /// [`crate::hint::AGE_UNKNOWN_MS`] is the age of versions whose age is unknown.
    pub fn put_hint_since(
        &self,
        target: &str,
        key: ObjectKey<'_>,
        object: &Object,
        kept_since_ms: u64,
    ) -> Result<(), Error> {
        key.check()?;
        if target.is_empty() || target.len() > ObjectKey::MAX_BUCKET_BYTES {
            return Err(Error::InvalidKey(format!(
                "a hint's target is 1 to 255 bytes, this one is {}",
                target.len()
            )));
        }
        self.stats.hints_written.fetch_add(1, Ordering::Relaxed);
        let now_ms = unix_ms();
        let since = kept_since_ms.min(now_ms);
        if self.hint_expired(since, now_ms) {
            self.stats.hints_expired.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target, partition = key.partition, "not kept: older than the hint TTL");
            return Ok(());
        }
        let stored = hint_key(target, key);
        let _guard = self.lock(&stored);
        // A corrupt hint is replaced: anti-entropy covers what it held.
        let mut layers = match self.hints.get(&stored)? {
            Some(bytes) => self.decode_hint(key, &bytes).unwrap_or_default(),
            None => Layers::default(),
        };
        let expired = self.expire_layers(&mut layers, now_ms) > 0;
        if layers.add(object, since) || expired {
            self.hints.insert(stored, layers.encode())?;
        }
        Ok(())
    }

    /// The hint kept for `target` about one key (its layers not expired, merged), if any.
    pub fn get_hint(&self, target: &str, key: ObjectKey<'_>) -> Result<Option<Object>, Error> {
        match self.hints.get(hint_key(target, key))? {
            None => Ok(None),
            Some(bytes) => {
                let mut layers = self.decode_hint(key, &bytes)?;
                let now = unix_ms();
                layers.expire(|since| self.hint_expired(since, now));
                Ok((!layers.is_empty()).then(|| layers.merged()))
            }
        }
    }

    /// Up to `limit` hints for `target`, in key order, starting after `after` (a
    /// [`Hint::cursor`] of a previous call). Expired layers (see [`Store::set_hint_ttl`])
    /// are deleted on the way and counted in [`StoreStats::hints_expired`].
    pub fn scan_hints(&self, target: &str, after: Option<&[u8]>, limit: usize) -> Result<Vec<Hint>, Error> {
        self.scan_hints_at(target, after, limit, unix_ms())
    }

    /// [`Store::scan_hints`] as if the time were `now_ms` (milliseconds since the epoch).
    #[doc(hidden)]
    pub fn scan_hints_at(
        &self,
        target: &str,
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<Hint>, Error> {
        let prefix = hint_prefix(target);
        let mut out = Vec::new();
        let start: Vec<u8> = match after {
            Some(cursor) => {
                let mut c = cursor.to_vec();
                c.push(0);
                c
            }
            None => prefix.clone(),
        };
        for guard in self.hints.range(start..) {
            let (k, v) = guard.into_inner()?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let Some((partition, bucket, key)) = split_data_key(&k[prefix.len()..]) else {
                tracing::error!(target, "malformed hint key: skipped");
                continue;
            };
            let object_key = ObjectKey { partition, bucket, key };
            match self.decode_hint(object_key, &v) {
                Ok(mut layers) => {
                    if layers.expire(|since| self.hint_expired(since, now_ms)) > 0 {
                        self.remove_expired_hint(&k, object_key, now_ms)?;
                    }
                    if !layers.is_empty() {
                        out.push(Hint {
                            cursor: k.to_vec(),
                            partition,
                            bucket: bucket.to_vec(),
                            key: key.to_vec(),
                            layers,
                        });
                    }
                }
                // A corrupt hint cannot be delivered; anti-entropy covers its key.
                Err(_) => {
                    self.hints.remove(k.to_vec())?;
                }
            }
        }
        Ok(out)
    }

    /// Deletes the expired layers of the hint stored under `stored` (and the hint once
    /// none is left).
    fn remove_expired_hint(&self, stored: &[u8], key: ObjectKey<'_>, now: u64) -> Result<(), Error> {
        let _guard = self.lock(stored);
        let Some(bytes) = self.hints.get(stored)? else { return Ok(()) };
        let mut layers = self.decode_hint(key, &bytes).unwrap_or_default();
        if self.expire_layers(&mut layers, now) == 0 && !layers.is_empty() {
            return Ok(());
        }
        if layers.is_empty() {
            self.hints.remove(stored.to_vec())?;
        } else {
            self.hints.insert(stored.to_vec(), layers.encode())?;
        }
        tracing::warn!(
            partition = key.partition,
            key = %String::from_utf8_lossy(key.key),
            "dropped a hint older than the hint TTL (the tombstone grace period); anti-entropy repairs its key"
        );
        Ok(())
    }

    /// Forgets what a delivery carried: drops each layer of the hint whose versions
    /// `delivered` holds, so a version kept after the hint was read stays to be delivered.
    /// Returns whether the hint is gone (every layer was delivered, or it is corrupt).
    pub fn remove_hint_if_unchanged(
        &self,
        target: &str,
        key: ObjectKey<'_>,
        delivered: &Object,
    ) -> Result<bool, Error> {
        let stored = hint_key(target, key);
        let _guard = self.lock(&stored);
        let mut layers = match self.hints.get(&stored)? {
            None => return Ok(false),
            Some(bytes) => self.decode_hint(key, &bytes).unwrap_or_default(),
        };
        let changed = layers.forget(delivered);
        if layers.is_empty() {
            self.hints.remove(stored)?;
            return Ok(true);
        }
        if changed {
            self.hints.insert(stored, layers.encode())?;
        }
        Ok(false)
    }

    /// Targets that have hints kept here, with how many.
    pub fn hint_counts(&self) -> Result<Vec<(String, u64)>, Error> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for guard in self.hints.iter() {
            let k = guard.key()?;
            let Some((&len, rest)) = k.split_first() else { continue };
            let Some(target) = rest.get(..usize::from(len)) else { continue };
            let target = String::from_utf8_lossy(target);
            match out.last_mut() {
                Some((t, n)) if *t == target => *n += 1,
                _ => out.push((target.into_owned(), 1)),
            }
        }
        Ok(out)
    }

    /// The stored record bytes of an object, unchecked. For fault injection and tools.
    #[doc(hidden)]
    pub fn raw_get(&self, key: ObjectKey<'_>) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.data.get(key.encode())?.map(|v| v.to_vec()))
    }

    /// Overwrites an object's record bytes, unchecked. For fault injection and tools.
    #[doc(hidden)]
    pub fn raw_put(&self, key: ObjectKey<'_>, bytes: &[u8]) -> Result<(), Error> {
        self.data.insert(key.encode(), bytes)?;
        self.sync()
    }

    /// Flushes everything to disk; called on shutdown.
    pub fn flush(&self) -> Result<(), Error> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Decodes a data record. A record that fails its checks may have held versions
    /// this node numbered: its partition's next write here takes a new actor.
    fn decode(&self, key: ObjectKey<'_>, bytes: &[u8]) -> Result<Object, Error> {
        self.decode_record(key, bytes).inspect_err(|_| {
            self.lost_versions_in(key.partition, "a record failed its checks");
        })
    }

    fn decode_record(&self, key: ObjectKey<'_>, bytes: &[u8]) -> Result<Object, Error> {
        record::decode(bytes).map_err(|fault| {
            self.stats.corrupt_records.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                partition = key.partition,
                bucket = %String::from_utf8_lossy(key.bucket),
                key = %String::from_utf8_lossy(key.key),
                %fault,
                "corrupt record: not served, left for repair"
            );
            Error::Corrupt { partition: key.partition, key: key.key.to_vec(), fault }
        })
    }

    fn lock(&self, stored_key: &[u8]) -> std::sync::MutexGuard<'_, ()> {
        let stripe = xxhash_rust::xxh3::xxh3_64(stored_key) as usize % LOCK_STRIPES;
        self.locks[stripe].lock().unwrap_or_else(PoisonError::into_inner)
    }
}
