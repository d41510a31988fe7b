//! Hinted handoff: delivers the copies kept here for replicas that missed them.
//!
//! Hints live in the store's own keyspace, keyed by target, so they survive restarts and
//! one target's hints are one range scan. When the failure detector holds a target up,
//! the worker sends it its hints in batches (one fsync on the target per batch) and
//! deletes each hint only after the target acknowledged it, and only if it did not
//! change meanwhile. Delivery is rate-limited so it does not starve client requests; a
//! merge on the target follows DVV rules, so a hint never overwrites a newer write.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quorumkv_ring::NodeId;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::Error;
use crate::key::Key;
use crate::local::LocalStore;
use crate::metrics::{Metrics, PeerLabels};
use crate::peer::wire::{AgedItem, Request, Response};
use crate::replica::Replicas;
use crate::worker::{WorkState, Worker};

/// How hints are delivered.
#[derive(Clone, Copy, Debug)]
pub struct HandoffConfig {
    /// Hints per batch (one peer call, one fsync on the target).
    pub batch: usize,
    /// Hints delivered per second at most.
    pub rate: u32,
    /// How often pending hints are looked for when there is nothing to deliver.
    pub poll: Duration,
}

#[derive(Debug, Default)]
struct Progress {
    pending: BTreeMap<NodeId, u64>,
    last_error: Option<String>,
}

pub struct Handoff {
    replicas: Replicas,
    local: LocalStore,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    config: HandoffConfig,
    delivered: AtomicU64,
    progress: Mutex<Progress>,
    /// `hints_written` as of the last count (`u64::MAX`: never counted).
    counted_at: AtomicU64,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Handoff {
    pub fn new(replicas: Replicas, metrics: Arc<Metrics>, config: HandoffConfig) -> Handoff {
        Handoff {
            local: replicas.local().clone(),
            cluster: replicas.cluster().clone(),
            replicas,
            metrics,
            config,
            delivered: AtomicU64::new(0),
            progress: Mutex::default(),
            counted_at: AtomicU64::new(u64::MAX),
        }
    }

    /// Delivers the batch of `target`'s hints that follows `cursor`; returns how many
    /// were removed and where the next batch starts (`None`: no more hints).
    async fn deliver_batch(
        &self,
        target: &NodeId,
        cursor: Option<Vec<u8>>,
    ) -> Result<(usize, Option<Vec<u8>>), Error> {
        let hints = self.local.scan_hints(target.clone(), cursor, self.config.batch).await?;
        let Some(next) = hints.last().map(|h| h.cursor.clone()) else {
            return Ok((0, None));
        };
        let q = self.cluster.params().partitions;
        // Hints were checked when kept; one that no longer passes (kept by an older
        // version) is not sent, and stays until it expires.
        // Each layer goes with its age, which a receiver that is no longer an owner keeps.
        let items: Vec<AgedItem> = hints
            .iter()
            .filter_map(|h| {
                let key = Key::placed(q, h.partition, h.bucket.clone().into(), h.key.clone().into()).ok()?;
                Some(h.layers.layers().iter().map(move |l| AgedItem {
                    key: key.clone(),
                    object: l.object.clone(),
                    kept_since_ms: Some(l.kept_since_ms),
                }))
            })
            .flatten()
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        match self.replicas.request(target, &Request::MergeBatch { items }, deadline).await {
            Ok((Response::MergedBatch { .. }, _)) => {}
            Ok(_) => return Err(Error::Internal(format!("{target} gave an unexpected answer to hints"))),
            Err(e) => return Err(e),
        }
        let removed = self.local.remove_delivered(target.clone(), hints).await?;
        Ok((removed, Some(next)))
    }

    /// Counts the pending hints per target from storage and publishes the counts in
    /// the status and metrics. The node calls it once before it serves, so a restarted
    /// node never reports "no hints" while its hints wait for the first delivery round.
    pub async fn refresh_pending(&self) -> Result<BTreeMap<NodeId, u64>, Error> {
        let written = self.local.stats().hints_written.load(Ordering::Relaxed);
        let pending: BTreeMap<NodeId, u64> = self.local.hint_counts().await?.into_iter().collect();
        let mut progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        for target in progress.pending.keys() {
            if !pending.contains_key(target) {
                self.metrics.hints_pending.get_or_create(&PeerLabels { peer: target.0.clone() }).set(0);
            }
        }
        for (target, n) in &pending {
            self.metrics.hints_pending.get_or_create(&PeerLabels { peer: target.0.clone() }).set(*n as i64);
        }
        progress.pending = pending.clone();
        self.counted_at.store(written, Ordering::Relaxed);
        Ok(pending)
    }
}

impl Worker for Handoff {
    fn name(&self) -> &'static str {
        "hinted-handoff"
    }

    fn status(&self) -> Value {
        let progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        json!({
            "pending": progress.pending,
            "delivered": self.delivered.load(Ordering::Relaxed),
            "expired": self.local.stats().hints_expired.load(Ordering::Relaxed),
            "last_error": progress.last_error,
        })
    }

    async fn work(&self) -> Result<WorkState, Error> {
        // Counting scans every hint (and the tombstones delivered ones leave until
        // compaction): once per unit of work, and not at all while nothing is pending and
        // no hint arrived since the last count.
        let written = self.local.stats().hints_written.load(Ordering::Relaxed);
        let nothing_pending = self.progress.lock().unwrap_or_else(PoisonError::into_inner).pending.is_empty();
        if nothing_pending && self.counted_at.load(Ordering::Relaxed) == written {
            return Ok(WorkState::Idle);
        }
        let pending = self.refresh_pending().await?;
        let mut delivered_any = false;
        let layout = self.cluster.layout();
        for target in pending.into_keys() {
            // Hints for a node that is no longer a member (removed, replaced, left) go to
            // the current owners of their keys instead.
            if let Some(layout) = layout.as_ref().filter(|l| !l.is_member(&target)) {
                let ring = std::sync::Arc::new(layout.ring().clone());
                let moved = self.local.rehome_hints(target.clone(), ring, self.cluster.my_id()).await?;
                tracing::info!(from = %target, hints = moved, "hints for a former member handed to the current owners");
                delivered_any |= moved > 0;
                continue;
            }
            if self.cluster.is_me(&target) || !self.cluster.is_up(&target) {
                continue;
            }
            // Up to about a second of batches for this target, resuming each scan where
            // the last one ended.
            let round = Instant::now();
            let mut cursor = None;
            while round.elapsed() < Duration::from_secs(1) && self.cluster.is_up(&target) {
                let started = Instant::now();
                match self.deliver_batch(&target, cursor.take()).await {
                    Ok((n, next)) => {
                        delivered_any |= n > 0;
                        self.delivered.fetch_add(n as u64, Ordering::Relaxed);
                        self.metrics.hints_delivered.inc_by(n as u64);
                        // Rate limit: a batch of n hints takes at least n / rate seconds.
                        let budget = Duration::from_secs_f64(n as f64 / f64::from(self.config.rate.max(1)));
                        tokio::time::sleep_until(started + budget).await;
                        match next {
                            Some(next) => cursor = Some(next),
                            None => break,
                        }
                    }
                    // One target failing (down before the detector says so) does not hold
                    // back the others: recorded, and tried again next round.
                    Err(e) => {
                        tracing::debug!(peer = %target, error = %e, "hint delivery failed");
                        self.progress.lock().unwrap_or_else(PoisonError::into_inner).last_error =
                            Some(e.to_string());
                        break;
                    }
                }
            }
        }
        Ok(if delivered_any { WorkState::Busy } else { WorkState::Idle })
    }

    async fn wait_for_work(&self) {
        tokio::time::sleep(self.config.poll).await;
    }
}
