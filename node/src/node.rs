//! Starting and stopping a node: identity, storage, listeners, workers, shutdown.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumkv_storage::{Actor, Store};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::anti_entropy::{AntiEntropy, AntiEntropyConfig};
use crate::cluster::{Cluster, DetectorConfig};
use crate::config::{Config, ConfigError};
use crate::coordinator::{Coordinator, Identity};
use crate::handoff::{Handoff, HandoffConfig};
use crate::local::LocalStore;
use crate::metrics::Metrics;
use crate::peer::PeerClient;
use crate::peer::wire::{ClusterParams, MemberInfo};
use crate::worker::Worker;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the data directory {dir}: {source}")]
    Storage { dir: String, source: quorumkv_storage::Error },
    #[error("cannot create the data directory {dir}: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot count the pending hints: {0}")]
    Hints(String),
}

/// What every request handler shares.
#[derive(Debug)]
pub struct NodeState {
    pub config: Config,
    pub coordinator: Coordinator,
    pub metrics: Arc<Metrics>,
    pub local: LocalStore,
    pub handoff: Arc<Handoff>,
    pub anti_entropy: Arc<AntiEntropy>,
    pub started: Instant,
}

impl NodeState {
    pub fn status_json(&self) -> Value {
        let id = self.coordinator.identity();
        let store = self.local.store();
        let cluster = self.coordinator.cluster();
        let members = cluster.members_json();
        let n = cluster.params().replicas;
        let mut warnings = Vec::new();
        if members.len() < n {
            warnings.push(format!(
                "the cluster has {} member(s), fewer than N={n}: writes needing more than {} replicas will fail",
                members.len(),
                members.len()
            ));
        }
        let me = cluster.my_id();
        json!({
            "node_id": id.node_id,
            "incarnation": id.incarnation,
            "version": env!("CARGO_PKG_VERSION"),
            "api_addr": cluster.me().api_addr,
            "peer_addr": cluster.me().peer_addr,
            "uptime_seconds": self.started.elapsed().as_secs(),
            "replicas": n,
            "partitions": cluster.params().partitions,
            "ring_version": cluster.ring().version(),
            "partitions_owned": cluster.ring().partitions_of(&me).len(),
            "members": members,
            "warnings": warnings,
            "workers": {
                "hinted_handoff": self.handoff.status(),
                "anti_entropy": self.anti_entropy.status(),
            },
            "storage": {
                "disk_bytes": store.disk_space(),
                "approximate_objects": store.approximate_objects(),
                "corrupt_records": store.stats().corrupt_records.load(std::sync::atomic::Ordering::Relaxed),
            },
        })
    }

    pub fn ring_json(&self) -> Value {
        self.coordinator.cluster().ring_json()
    }
}

/// Runs a node until `shutdown` fires, then drains requests and flushes storage.
///
/// `ready` receives the bound client and peer addresses once the node serves requests.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    ready: Option<tokio::sync::oneshot::Sender<(SocketAddr, SocketAddr)>>,
) -> Result<(), StartError> {
    config.validate()?;
    let storage_err = |source| StartError::Storage { dir: config.data_dir.display().to_string(), source };
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| StartError::DataDir { dir: config.data_dir.display().to_string(), source })?;
    let store = Arc::new(Store::open(&config.data_dir).map_err(storage_err)?);
    // A hint that outlived the tombstone grace period may hold a version a reaped
    // tombstone superseded: it is dropped rather than delivered (anti-entropy repairs).
    store.set_hint_ttl(Some(Duration::from_millis(config.tombstone_grace_ms)));
    let identity = identity(&store, config.node_id.as_deref()).map_err(storage_err)?;
    tracing::info!(node_id = %identity.node_id, incarnation = identity.incarnation, "node starting");

    let bind = |addr: SocketAddr| async move {
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let local = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        Ok::<_, StartError>((listener, local))
    };
    let (api_listener, api_addr) = bind(config.listen).await?;
    let (peer_listener, peer_addr) = bind(config.peer_listen).await?;

    let me = MemberInfo {
        node_id: identity.node_id.clone(),
        incarnation: identity.incarnation,
        peer_addr: config.peer_advertise.clone().unwrap_or_else(|| peer_addr.to_string()),
        api_addr: config.advertise.clone().unwrap_or_else(|| api_addr.to_string()),
    };
    let params = ClusterParams {
        partitions: config.partitions,
        replicas: config.effective_replicas(),
        vnodes: config.vnodes,
    };
    let peers = PeerClient::new(config.peer_max_in_flight, Duration::from_millis(config.peer_timeout_ms));
    let metrics = Arc::new(Metrics::new());
    let detector = DetectorConfig {
        heartbeat: Duration::from_millis(config.heartbeat_interval_ms),
        phi_threshold: config.phi_threshold,
    };
    let cluster = Arc::new(Cluster::new(me, params, config.seeds.clone(), peers, detector, metrics.clone()));

    let journal_sync = (config.journal_sync_ms > 0).then(|| Duration::from_millis(config.journal_sync_ms));
    let local = LocalStore::new(store.clone(), config.storage_threads, journal_sync);
    let background = TaskTracker::new();
    let coordinator = Coordinator::new(
        identity,
        local.clone(),
        cluster.clone(),
        metrics.clone(),
        background.clone(),
        config.hinted_handoff,
    );
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let handoff = Arc::new(Handoff::new(
        local.clone(),
        cluster.clone(),
        metrics.clone(),
        HandoffConfig { batch: config.hint_batch, rate: config.hint_rate, poll: Duration::from_millis(500) },
    ));
    handoff.refresh_pending().await.map_err(StartError::Hints)?;
    let anti_entropy = Arc::new(AntiEntropy::new(
        local.clone(),
        cluster.clone(),
        metrics.clone(),
        AntiEntropyConfig {
            interval: Duration::from_millis(config.aae_interval_ms),
            rebuild_interval: Duration::from_secs(config.aae_rebuild_interval_s),
            tombstone_grace: Duration::from_millis(config.tombstone_grace_ms),
        },
    ));
    let state = Arc::new(NodeState {
        config,
        coordinator,
        metrics,
        local,
        handoff: handoff.clone(),
        anti_entropy: anti_entropy.clone(),
        started: Instant::now(),
    });

    let workers = TaskTracker::new();
    let worker_stop = CancellationToken::new();
    workers.spawn(cluster.clone().run_greeter(worker_stop.clone()));
    workers.spawn(cluster.clone().run_detector(worker_stop.clone()));
    workers.spawn(crate::worker::run(handoff, worker_stop.clone()));
    workers.spawn(crate::worker::run(anti_entropy, worker_stop.clone()));
    let peer_stop = CancellationToken::new();
    let peer_server = workers.spawn(crate::server::serve(
        "peer",
        peer_listener,
        state.clone(),
        crate::peer::server::handle,
        peer_stop.clone(),
        grace,
    ));

    tracing::info!(api = %api_addr, peer = %peer_addr, "serving");
    if let Some(ready) = ready {
        let _ = ready.send((api_addr, peer_addr));
    }
    crate::server::serve("api", api_listener, state.clone(), crate::api::handle, shutdown.clone(), grace)
        .await;

    // Client requests are drained; let their background replication finish, then stop
    // the workers and the peer listener.
    background.close();
    if tokio::time::timeout(grace, background.wait()).await.is_err() {
        tracing::warn!("background replication did not finish before the deadline");
    }
    worker_stop.cancel();
    peer_stop.cancel();
    workers.close();
    let _ = peer_server.await;
    let _ = tokio::time::timeout(grace, workers.wait()).await;

    tracing::info!("flushing storage");
    if let Err(e) = state.local.run(|s| s.flush()).await {
        tracing::error!(error = %e, "flush on shutdown failed");
    }
    state.local.stop();
    tracing::info!("stopped");
    Ok(())
}

/// Loads this node's id and incarnation from the data directory, creating them on the
/// first start. An empty data directory always gets a new incarnation, so a node that
/// lost its data never reuses a dot.
fn identity(store: &Store, configured: Option<&str>) -> Result<Identity, quorumkv_storage::Error> {
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
    let incarnation = match store.meta_get("incarnation")? {
        Some(v) if v.len() == 8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v);
            u64::from_le_bytes(b)
        }
        _ => {
            let inc = random_u64();
            store.meta_put("incarnation", &inc.to_le_bytes())?;
            inc
        }
    };
    Ok(Identity { actor: Actor::new(&node_id, incarnation), node_id, incarnation })
}

/// A random number from the OS-seeded hasher keys: unique enough for ids.
pub(crate) fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}
