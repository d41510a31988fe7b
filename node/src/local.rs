//! The storage boundary: the only place the node calls the synchronous store.
//!
//! Calls run on a few dedicated storage threads, never on tokio's async threads. A thread
//! takes every queued call at once (a batch) and runs them, so under load the threads
//! rarely sleep and a call costs a queue push and a wake of the waiting task instead of a
//! thread hand-off per call. Writes that must be on disk before they are acknowledged go
//! to one thread of their own, which makes one fsync per batch (group commit at the
//! boundary; [`Store::sync`] also shares fsyncs with any other caller).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use quorumkv_storage::{Actor, Content, Durability, Error, Object, ObjectKey, Store, VersionVector};
use tokio::sync::oneshot;

/// Calls one storage thread takes from the queue at most, so others share the work.
const MAX_BATCH: usize = 64;
/// Durable writes one fsync covers at most.
const MAX_DURABLE_BATCH: usize = 512;

/// Names one object with owned bytes, so it can cross into a storage thread.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub partition: u32,
    pub bucket: Bytes,
    pub key: Bytes,
}

impl Key {
    pub fn as_object_key(&self) -> ObjectKey<'_> {
        ObjectKey { partition: self.partition, bucket: &self.bucket, key: &self.key }
    }
}

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
#[derive(Default)]
struct Lane {
    queue: Mutex<Queue>,
    ready: Condvar,
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

    fn is_stopped(&self) -> bool {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).stopped
    }

    /// Waits for work and takes up to `max` jobs; `None` once stopped and drained.
    fn take(&self, max: usize) -> Option<Vec<Job>> {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
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

/// Two lanes: reads and plain writes on a few threads; writes that must be fsynced on
/// one thread of their own. fjall holds its journal lock through an fsync, so writes
/// cannot land while one runs: a single durable thread keeps one fsync in flight, and
/// every durable write that queued meanwhile shares the next one.
struct Executor {
    store: Arc<Store>,
    general: Lane,
    durable: Lane,
}

impl Executor {
    fn worker(&self, lane: &Lane, max_batch: usize) {
        while let Some(batch) = lane.take(max_batch) {
            let mut after_sync = Vec::new();
            for job in batch {
                // A panicking call drops its answer channel (the caller sees an error);
                // the thread lives on.
                if let Ok(Some(then)) = std::panic::catch_unwind(AssertUnwindSafe(|| job(&self.store))) {
                    after_sync.push(then);
                }
            }
            if !after_sync.is_empty() {
                let synced = self.store.sync();
                for then in after_sync {
                    then(&synced);
                }
            }
        }
    }
}

/// This node's replica of every partition it holds.
#[derive(Clone)]
pub struct LocalStore {
    executor: Arc<Executor>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore").finish_non_exhaustive()
    }
}

impl LocalStore {
    /// Starts `threads` storage threads over `store`, plus one for durable writes and,
    /// with `journal_sync`, one that fsyncs the journal that often when it was written
    /// to (see [`Store::sync_if_written`]).
    pub fn new(store: Arc<Store>, threads: usize, journal_sync: Option<Duration>) -> LocalStore {
        let executor = Arc::new(Executor { store, general: Lane::default(), durable: Lane::default() });
        for i in 0..=threads.max(1) {
            let ex = executor.clone();
            let (name, durable) =
                if i == 0 { ("storage-durable".to_string(), true) } else { (format!("storage-{i}"), false) };
            let spawned = std::thread::Builder::new().name(name).spawn(move || {
                if durable {
                    ex.worker(&ex.durable, MAX_DURABLE_BATCH)
                } else {
                    ex.worker(&ex.general, MAX_BATCH)
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a storage thread");
            }
        }
        if let Some(every) = journal_sync {
            let ex = executor.clone();
            let spawned = std::thread::Builder::new().name("storage-syncer".into()).spawn(move || {
                while !ex.general.is_stopped() {
                    std::thread::sleep(every);
                    if let Err(e) = ex.store.sync_if_written() {
                        tracing::error!(error = %e, "periodic journal fsync failed");
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the journal syncer thread");
            }
        }
        LocalStore { executor }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.executor.store
    }

    /// Lets the storage threads finish what is queued, then stop.
    pub fn stop(&self) {
        self.executor.general.stop();
        self.executor.durable.stop();
    }

    /// Runs `f` on a storage thread.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.executor.general.submit(Box::new(move |s| {
            let _ = tx.send(f(s));
            None
        }))?;
        rx.await.map_err(|_| Error::Unavailable("a storage call panicked".into()))?
    }

    /// Runs `f` on a storage thread; if `durability` is [`Durability::Synced`], answers
    /// only once an fsync after `f` completed.
    pub async fn run_write<T: Send + 'static>(
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
        self.run(move |s| match s.get(key.as_object_key()) {
            Err(Error::Corrupt { .. }) => Ok(None),
            other => other,
        })
        .await
    }

    /// Applies a client write as its coordinator: supersedes what `context` covers and
    /// stamps a new dot of `actor`. Returns the resulting object.
    pub async fn coordinate(
        &self,
        key: Key,
        context: VersionVector,
        actor: Actor,
        content: Content,
        durability: Durability,
    ) -> Result<Object, Error> {
        self.run_write(durability, move |s| {
            s.update(key.as_object_key(), Durability::Journal, |obj| obj.update(&context, actor, content))
                .map(|(obj, _dot)| obj)
        })
        .await
    }

    /// Reads this replica's version merged with the hints kept here for `targets` (what a
    /// fallback holds for the primaries it stands in for).
    pub async fn get_with_hints(&self, key: Key, targets: Vec<String>) -> Result<Option<Object>, Error> {
        self.run(move |s| {
            let k = key.as_object_key();
            let mut found = match s.get(k) {
                Err(Error::Corrupt { .. }) => None,
                other => other?,
            };
            for target in &targets {
                if let Ok(Some(hint)) = s.get_hint(target, k) {
                    found.get_or_insert_with(Object::new).merge(&hint);
                }
            }
            Ok(found)
        })
        .await
    }

    /// Keeps `object` as a hint for the replica `target`.
    pub async fn put_hint(
        &self,
        target: String,
        key: Key,
        object: Object,
        durability: Durability,
    ) -> Result<(), Error> {
        self.run_write(durability, move |s| s.put_hint(&target, key.as_object_key(), &object)).await
    }

    /// Merges a batch of versions (delivered hints), answering after one fsync.
    pub async fn merge_batch(&self, items: Vec<crate::peer::wire::Item>) -> Result<(), Error> {
        self.run_write(Durability::Synced, move |s| {
            for item in &items {
                let key = ObjectKey { partition: item.partition, bucket: &item.bucket, key: &item.key };
                s.merge(key, &item.object, Durability::Journal)?;
            }
            Ok(())
        })
        .await
    }

    /// Merges another replica's version into ours.
    pub async fn merge(&self, key: Key, object: Object, durability: Durability) -> Result<Object, Error> {
        self.run_write(durability, move |s| s.merge(key.as_object_key(), &object, Durability::Journal)).await
    }
}
