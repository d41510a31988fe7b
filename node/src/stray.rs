//! The stray-data worker: finds data this node holds for partitions it does not
//! replicate under its layout, hands it to the owners as hints, then deletes it.
//!
//! Such copies come from before layouts were stored, from a layout change, or from any
//! accident; left alone they are never updated, and a deleted key could come back
//! through them. A sweep runs once the node has a layout, again whenever the layout's
//! version changes, and every `interval`. Each key is kept as a hint for every primary
//! of its partition before it is removed (and only removed if it did not change
//! meanwhile), so a crash in between leaves a copy and a hint, never neither. Stored
//! data has no known age, so where a hint TTL is set (the node sets one) the hint is
//! already expired and the copy is dropped: see [`LocalStore::move_strays`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::Error;
use crate::local::LocalStore;
use crate::metrics::Metrics;
use crate::worker::{WorkState, Worker};

pub struct StrayCleanup {
    local: LocalStore,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    interval: Duration,
    /// The layout version of the last sweep (0: none yet).
    swept_version: AtomicU64,
    /// Whether a previous layout was still live at the last sweep.
    swept_during_move: std::sync::atomic::AtomicBool,
    last_sweep: Mutex<Option<Instant>>,
    moved: AtomicU64,
}

impl std::fmt::Debug for StrayCleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrayCleanup").field("interval", &self.interval).finish_non_exhaustive()
    }
}

impl StrayCleanup {
    pub fn new(
        local: LocalStore,
        cluster: Arc<Cluster>,
        metrics: Arc<Metrics>,
        interval: Duration,
    ) -> StrayCleanup {
        StrayCleanup {
            local,
            cluster,
            metrics,
            interval,
            swept_version: AtomicU64::new(0),
            swept_during_move: std::sync::atomic::AtomicBool::new(false),
            last_sweep: Mutex::new(None),
            moved: AtomicU64::new(0),
        }
    }

    /// Moves every stray key out of this node's data; returns how many.
    pub async fn sweep(&self) -> Result<u64, Error> {
        let ring = self.cluster.ring()?;
        let mut moved = 0;
        for partition in 0..ring.params().partitions {
            // A replica in a live layout version (the previous one too, while the
            // partition moves) keeps its data until that version is retired.
            if self.cluster.owns(partition) {
                continue;
            }
            let owners = ring.primaries(partition);
            moved += self.local.move_strays(partition, owners.to_vec()).await? as u64;
        }
        if moved > 0 {
            tracing::warn!(
                keys = moved,
                layout = ring.version(),
                "moved stray keys out of this node's data (as hints of unknown age: dropped where hints expire)"
            );
        }
        self.moved.fetch_add(moved, Ordering::Relaxed);
        self.metrics.stray_keys_moved.inc_by(moved);
        self.swept_version.store(ring.version(), Ordering::Relaxed);
        self.swept_during_move.store(self.cluster.previous_version().is_some(), Ordering::Relaxed);
        *self.last_sweep.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        Ok(moved)
    }
}

impl Worker for StrayCleanup {
    fn name(&self) -> &'static str {
        "stray-cleanup"
    }

    fn status(&self) -> Value {
        json!({
            "moved": self.moved.load(Ordering::Relaxed),
            "swept_layout_version": self.swept_version.load(Ordering::Relaxed),
        })
    }

    async fn work(&self) -> Result<WorkState, Error> {
        let Some(layout) = self.cluster.layout() else { return Ok(WorkState::Idle) };
        // Again after a layout change, and after the previous layout is retired (what
        // its replicas kept while the partitions moved is stray from then on).
        let retired =
            self.swept_during_move.load(Ordering::Relaxed) && self.cluster.previous_version().is_none();
        let changed = layout.version() != self.swept_version.load(Ordering::Relaxed) || retired;
        let due = self
            .last_sweep
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none_or(|t| t.elapsed() >= self.interval);
        if changed || due {
            self.sweep().await?;
        }
        Ok(WorkState::Idle)
    }

    async fn wait_for_work(&self) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
