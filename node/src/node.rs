//! Starting and stopping a node: storage, identity, the parts, the workers, the
//! listeners, shutdown.
//!
//! [`Node::start`] builds a node over any [`Transport`]; [`run`] is the binary's whole
//! life: listeners on TCP, the HTTP transport, serve until the shutdown signal, drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumkv_storage::{Store, StoreOptions, TokenKey};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::anti_entropy::{AntiEntropy, AntiEntropyConfig};
use crate::cluster::{Cluster, DetectorConfig};
use crate::config::{Config, ConfigError};
use crate::coordinator::{Coordinator, Identity};
use crate::handoff::{Handoff, HandoffConfig};
use crate::layout::{ClusterParams, MemberInfo};
use crate::local::LocalStore;
use crate::metrics::Metrics;
use crate::peer::{HttpTransport, PeerAuth, PeerClient, Transport, auth};
use crate::replica::Replicas;
use crate::state::NodeState;
use crate::stray::StrayCleanup;
use crate::worker::Background;

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
    #[error("cannot start storage threads: {0}")]
    Threads(std::io::Error),
    #[error("cannot load the node's identity or hints: {0}")]
    Load(crate::error::Error),
    #[error(
        "refusing to listen for peers on {0} without a cluster secret: anyone who reaches it could read and write everything. Set QUORUMKV_CLUSTER_SECRET (or --cluster-secret-file) on every node, or listen for peers on loopback"
    )]
    Unauthenticated(SocketAddr),
}

/// A started node: its shared state, and the tasks it owns.
#[derive(Debug)]
pub struct Node {
    state: Arc<NodeState>,
    peers: PeerClient,
    /// Replication and repair that outlive the request that started them.
    background: Background,
    workers: tokio::task::JoinSet<()>,
    worker_stop: CancellationToken,
}

impl Node {
    /// Opens storage, loads the identity, builds the parts and starts the workers. Peers
    /// are reached through `transport`; `api_addr` and `peer_addr` are what others are
    /// told (the config's advertised addresses win over them).
    pub async fn start(
        config: Config,
        transport: Arc<dyn Transport>,
        api_addr: String,
        peer_addr: String,
    ) -> Result<Node, StartError> {
        config.validate()?;
        let secret = config.secret()?;
        if secret.is_none() {
            tracing::warn!(
                "no cluster secret configured: peer messages are not authenticated, so peers are served on loopback only"
            );
        }
        let secret = secret.as_deref().unwrap_or(auth::DEV_SECRET);
        let peer_auth = Arc::new(PeerAuth::new(secret));
        let tokens = TokenKey::new(auth::derive(secret, "token"));
        let dir = config.data_dir.clone();
        let storage_err = |source| StartError::Storage { dir: dir.display().to_string(), source };
        let open_dir = dir.clone();
        let background_nice = config.background_nice;
        let opened = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&open_dir)
                .map_err(|source| StartError::DataDir { dir: open_dir.display().to_string(), source })?;
            let options = StoreOptions {
                worker_nice: (background_nice > 0).then_some(i32::from(background_nice)),
                ..StoreOptions::default()
            };
            Store::open_with(&open_dir, &options)
                .map_err(|source| StartError::Storage { dir: open_dir.display().to_string(), source })
        })
        .await
        .map_err(|e| storage_err(quorumkv_storage::Error::Unavailable(e.to_string())))??;
        let store = Arc::new(opened);
        // A hint that outlived the tombstone grace period may hold a version a reaped
        // tombstone superseded: it is dropped rather than delivered (anti-entropy repairs).
        store.set_hint_ttl(Some(Duration::from_millis(config.tombstone_grace_ms)));
        let journal_sync =
            (config.journal_sync_ms > 0).then(|| Duration::from_millis(config.journal_sync_ms));
        let scan_nice = (config.background_nice > 0).then_some(i32::from(config.background_nice));
        let local = LocalStore::new(store, config.storage_threads, journal_sync, scan_nice)
            .map_err(StartError::Threads)?;
        let (node_id, incarnation, fresh) =
            local.identity(config.node_id.clone()).await.map_err(|e| StartError::Load(e.into()))?;
        let identity = Identity { node_id, incarnation };
        tracing::info!(node_id = %identity.node_id, incarnation = identity.incarnation, "node starting");

        let me = MemberInfo {
            node_id: identity.node_id.clone(),
            incarnation: identity.incarnation,
            peer_addr: config.peer_advertise.clone().unwrap_or(peer_addr),
            api_addr: config.advertise.clone().unwrap_or(api_addr),
            capacity: config.capacity,
            zone: config.zone.clone(),
        };
        let params = ClusterParams {
            partitions: config.partitions,
            replicas: config.effective_replicas(),
            vnodes: config.vnodes,
        };
        let peers = PeerClient::new(
            transport,
            peer_auth.clone(),
            config.peer_max_in_flight,
            Duration::from_millis(config.peer_timeout_ms),
        );
        let metrics = Arc::new(Metrics::new());
        let detector = DetectorConfig {
            heartbeat: Duration::from_millis(config.heartbeat_interval_ms),
            phi_threshold: config.phi_threshold,
        };
        let cluster = Cluster::open(
            me,
            params,
            config.seeds.clone(),
            local.clone(),
            peers.clone(),
            detector,
            metrics.clone(),
        )
        .await
        .map_err(StartError::Load)?;
        let cluster = Arc::new(cluster);
        let replicas = Replicas::new(local, cluster.clone(), metrics.clone());
        let background = Background::default();
        let coordinator = Coordinator::new(
            identity,
            replicas.clone(),
            metrics.clone(),
            background.clone(),
            config.hinted_handoff,
        );
        let handoff = Arc::new(Handoff::new(
            replicas.clone(),
            metrics.clone(),
            HandoffConfig {
                batch: config.hint_batch,
                rate: config.hint_rate,
                poll: Duration::from_millis(500),
            },
        ));
        handoff.refresh_pending().await.map_err(StartError::Load)?;
        let anti_entropy = Arc::new(AntiEntropy::new(
            replicas.clone(),
            metrics.clone(),
            AntiEntropyConfig {
                interval: Duration::from_millis(config.aae_interval_ms),
                rebuild_interval: Duration::from_secs(config.aae_rebuild_interval_s),
                rate: (config.transfer_rate_mib > 0).then(|| config.transfer_rate_mib * 1024 * 1024),
                tombstone_grace: Duration::from_millis(config.tombstone_grace_ms),
            },
        ));
        if fresh {
            anti_entropy.repair_everything();
        }
        let config_in_flight = config.max_requests_in_flight;
        let config_list_rate = config.list_keys_per_second;
        let stray = Arc::new(StrayCleanup::new(
            replicas.local().clone(),
            cluster.clone(),
            metrics.clone(),
            Duration::from_secs(config.aae_rebuild_interval_s),
        ));
        let state = Arc::new(NodeState {
            config,
            cluster: cluster.clone(),
            replicas,
            coordinator,
            metrics,
            handoff: handoff.clone(),
            anti_entropy: anti_entropy.clone(),
            stray: stray.clone(),
            peer_auth,
            tokens,
            in_flight: tokio::sync::Semaphore::new(config_in_flight),
            listing_rate: crate::listing::Rate::new(config_list_rate),
            started: Instant::now(),
        });

        let mut workers = tokio::task::JoinSet::new();
        let worker_stop = CancellationToken::new();
        workers.spawn(cluster.clone().run_greeter(worker_stop.clone()));
        workers.spawn(cluster.run_detector(worker_stop.clone()));
        workers.spawn(crate::worker::run(handoff, worker_stop.clone()));
        workers.spawn(crate::worker::run(anti_entropy, worker_stop.clone()));
        workers.spawn(crate::worker::run(stray, worker_stop.clone()));
        Ok(Node { state, peers, background, workers, worker_stop })
    }

    pub fn state(&self) -> &Arc<NodeState> {
        &self.state
    }

    /// Stops the node once its client requests are drained: lets background replication
    /// finish (for at most `grace`), stops the workers and the peer client, flushes
    /// storage and joins its threads.
    pub async fn shutdown(self, grace: Duration) {
        self.background.drain(grace).await;
        self.worker_stop.cancel();
        let mut workers = self.workers;
        let all_ended = async { while workers.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_ended).await.is_err() {
            // A unit of work is never cancelled halfway, except here: past the deadline.
            tracing::warn!("workers did not stop before the deadline; aborting them");
            workers.shutdown().await;
        }
        self.peers.close();
        if tokio::time::timeout(grace, self.peers.wait()).await.is_err() {
            tracing::warn!("peer calls did not end before the deadline");
        }
        tracing::info!("flushing storage");
        self.state.replicas.local().shutdown().await;
        tracing::info!("stopped");
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
    if config.secret()?.is_none() && !config.peer_listen.ip().is_loopback() {
        return Err(StartError::Unauthenticated(config.peer_listen));
    }
    let bind = |addr: SocketAddr| async move {
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let local = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        Ok::<_, StartError>((listener, local))
    };
    let (api_listener, api_addr) = bind(config.listen).await?;
    let (peer_listener, peer_addr) = bind(config.peer_listen).await?;
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let transport = Arc::new(HttpTransport::new(
        config.peer_max_in_flight,
        Duration::from_millis(config.peer_timeout_ms),
    ));
    let node = Node::start(config, transport, api_addr.to_string(), peer_addr.to_string()).await?;
    let state = node.state().clone();

    let peer_stop = CancellationToken::new();
    let limits = crate::server::Limits { max_connections: state.config.max_connections };
    let peer_server = tokio::spawn(crate::server::serve(
        "peer",
        peer_listener,
        state.clone(),
        crate::rpc::handle,
        peer_stop.clone(),
        grace,
        limits,
        |s: &NodeState, reason| s.metrics.refused("peer", reason),
    ));
    tracing::info!(api = %api_addr, peer = %peer_addr, "serving");
    if let Some(ready) = ready {
        let _ = ready.send((api_addr, peer_addr));
    }
    crate::server::serve(
        "api",
        api_listener,
        state,
        crate::api::handle,
        shutdown.clone(),
        grace,
        limits,
        |s: &NodeState, reason| s.metrics.refused("api", reason),
    )
    .await;

    // Client requests are drained. Our background replication goes to the peer
    // listeners of others, so ours can stop before it; storage stops last.
    peer_stop.cancel();
    let _ = peer_server.await;
    node.shutdown(grace).await;
    Ok(())
}
