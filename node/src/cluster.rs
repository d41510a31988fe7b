//! Membership and the ring: who is in the cluster, where they listen, and the preference
//! list of every partition.
//!
//! Every node is started with the peer addresses of others (`--seed`). A greeter worker
//! sends each known address a `Hello` carrying this node and every member it knows, and
//! merges the members in the answer, so all nodes converge on the same member set and,
//! since the ring is a pure function of that set, on the same ring.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use quorumkv_ring::{NodeId, Ring, RingParams};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::detector::PhiAccrual;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::peer::PeerClient;
use crate::peer::wire::{ClusterParams, MemberInfo, Request, Response};

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

#[derive(Debug)]
pub struct Cluster {
    me: MemberInfo,
    params: ClusterParams,
    seeds: Vec<String>,
    members: RwLock<BTreeMap<NodeId, Member>>,
    ring: RwLock<Arc<Ring>>,
    peers: PeerClient,
    detector: DetectorConfig,
    metrics: Arc<Metrics>,
}

impl Cluster {
    pub fn new(
        me: MemberInfo,
        params: ClusterParams,
        seeds: Vec<String>,
        peers: PeerClient,
        detector: DetectorConfig,
        metrics: Arc<Metrics>,
    ) -> Cluster {
        let mut members = BTreeMap::new();
        members.insert(me.node_id.clone(), Member::new(me.clone(), detector.heartbeat));
        let ring = Arc::new(build_ring(params, &members));
        Cluster {
            me,
            params,
            seeds,
            members: RwLock::new(members),
            ring: RwLock::new(ring),
            peers,
            detector,
            metrics,
        }
    }

    pub fn me(&self) -> &MemberInfo {
        &self.me
    }

    pub fn my_id(&self) -> NodeId {
        self.me.node_id.clone()
    }

    pub fn params(&self) -> ClusterParams {
        self.params
    }

    pub fn peers(&self) -> &PeerClient {
        &self.peers
    }

    /// The current ring (cheap: an `Arc` clone).
    pub fn ring(&self) -> Arc<Ring> {
        self.ring.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The peer address of a member.
    pub fn peer_addr(&self, node: &NodeId) -> Option<String> {
        let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
        members.get(node).map(|m| m.info.peer_addr.clone())
    }

    pub fn is_me(&self, node: &NodeId) -> bool {
        *node == self.me.node_id
    }

    /// Whether the failure detector holds `node` up (this node always is).
    pub fn is_up(&self, node: &NodeId) -> bool {
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

    /// Merges members learnt from a peer; rebuilds the ring if the member set grew.
    /// Members with different cluster parameters are refused (logged), never mixed in.
    ///
    /// # Errors
    /// `cluster_mismatch` when the parameters differ.
    pub fn observe(&self, params: ClusterParams, infos: &[MemberInfo]) -> Result<(), Error> {
        if params != self.params {
            return Err(Error::bad(
                "cluster_mismatch",
                format!(
                    "cluster parameters differ: theirs partitions={} replicas={} vnodes={}, ours partitions={} replicas={} vnodes={}",
                    params.partitions,
                    params.replicas,
                    params.vnodes,
                    self.params.partitions,
                    self.params.replicas,
                    self.params.vnodes
                ),
            ));
        }
        let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
        let mut grew = false;
        for info in infos {
            if info.node_id == self.me.node_id {
                continue;
            }
            match members.get_mut(&info.node_id) {
                Some(m) if m.info == *info => {}
                Some(m) => {
                    tracing::info!(peer = %info.node_id, incarnation = info.incarnation, "member changed address or incarnation");
                    m.info = info.clone();
                }
                None => {
                    tracing::info!(peer = %info.node_id, addr = %info.peer_addr, "member joined");
                    members.insert(info.node_id.clone(), Member::new(info.clone(), self.detector.heartbeat));
                    grew = true;
                }
            }
        }
        if grew {
            let ring = Arc::new(build_ring(self.params, &members));
            *self.ring.write().unwrap_or_else(PoisonError::into_inner) = ring;
        }
        Ok(())
    }

    fn hello(&self) -> Request {
        Request::Hello { from: self.me.clone(), params: self.params, members: self.member_infos() }
    }

    /// The answer to a peer's `Hello`.
    pub fn hello_reply(&self) -> Response {
        Response::Hello { from: self.me.clone(), params: self.params, members: self.member_infos() }
    }

    fn member_infos(&self) -> Vec<MemberInfo> {
        let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
        members.values().map(|m| m.info.clone()).collect()
    }

    /// Greets every seed and known member once.
    async fn greet_all(&self) {
        let mut targets: Vec<String> = self.seeds.clone();
        targets.extend(
            self.member_infos().into_iter().filter(|m| m.node_id != self.me.node_id).map(|m| m.peer_addr),
        );
        targets.sort();
        targets.dedup();
        let hello = self.hello();
        let calls = targets.into_iter().map(|addr| {
            let hello = &hello;
            async move {
                let deadline = Instant::now() + Duration::from_secs(1);
                (addr.clone(), self.peers.call(&addr, hello, deadline).await)
            }
        });
        for (addr, result) in futures_util::future::join_all(calls).await {
            match result {
                Ok(Response::Hello { from, params, members }) => {
                    let mut all = members;
                    all.push(from.clone());
                    if let Err(e) = self.observe(params, &all) {
                        tracing::error!(peer = %addr, error = %e, "refusing member");
                    }
                }
                Ok(other) => {
                    tracing::warn!(peer = %addr, answer = ?std::mem::discriminant(&other), "unexpected answer to hello")
                }
                Err(e) => tracing::debug!(peer = %addr, error = %e, "hello failed"),
            }
        }
    }

    /// The greeter: greets quickly until every seed answered, then every few seconds.
    pub async fn run_greeter(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            self.greet_all().await;
            let settled = self.member_infos().len() > self.seeds.len();
            let pause = if settled { Duration::from_secs(2) } else { Duration::from_millis(200) };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
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
                if info.node_id != self.me.node_id && pinged.insert(info.node_id.clone()) {
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
    pub fn members_json(&self) -> Vec<Value> {
        let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
        members
            .values()
            .map(|m| {
                json!({
                    "node_id": m.info.node_id,
                    "state": m.state.as_str(),
                    "since_unix_ms": m.since.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
                    "api_addr": m.info.api_addr,
                    "peer_addr": m.info.peer_addr,
                    "incarnation": m.info.incarnation,
                })
            })
            .collect()
    }

    /// `GET /v1/ring`.
    pub fn ring_json(&self) -> Value {
        let ring = self.ring();
        let partitions: Vec<Value> = (0..ring.params().partitions)
            .map(|p| {
                json!({
                    "partition": p,
                    "preference_list": ring.preference_list(p).iter().map(NodeId::as_str).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "version": ring.version(),
            "replicas": self.params.replicas,
            "partition_count": ring.params().partitions,
            "members": self.members_json(),
            "partitions": partitions,
        })
    }
}

fn build_ring(params: ClusterParams, members: &BTreeMap<NodeId, Member>) -> Ring {
    let ring_params =
        RingParams { partitions: params.partitions, replicas: params.replicas, vnodes: params.vnodes };
    // The config was validated and the member set is never empty (it holds this node),
    // so this cannot fail; the version counts membership changes (members only join).
    Ring::new(ring_params, members.len() as u64, members.keys().cloned())
        .unwrap_or_else(|e| unreachable!("validated ring parameters: {e}"))
}
