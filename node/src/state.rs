//! What every request handler shares: the node's parts, built once at start-up.
//!
//! Both entry points, the client API ([`crate::api`]) and the peer handler
//! ([`crate::rpc`]), take an `Arc<NodeState>`; nothing here knows either of them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::{Value, json};

use crate::anti_entropy::AntiEntropy;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::coordinator::Coordinator;
use crate::handoff::Handoff;
use crate::metrics::Metrics;
use crate::replica::Replicas;
use crate::stray::StrayCleanup;
use crate::worker::Worker;

#[derive(Debug)]
pub struct NodeState {
    pub config: Config,
    pub cluster: Arc<Cluster>,
    pub replicas: Replicas,
    pub coordinator: Coordinator,
    pub metrics: Arc<Metrics>,
    pub handoff: Arc<Handoff>,
    pub anti_entropy: Arc<AntiEntropy>,
    pub stray: Arc<StrayCleanup>,
    /// Signs and checks every peer message.
    pub peer_auth: Arc<crate::peer::PeerAuth>,
    /// Signs and checks the context tokens clients carry.
    pub tokens: quorumkv_storage::TokenKey,
    /// Client requests in flight: a permit each, `max_requests_in_flight` in all.
    pub in_flight: tokio::sync::Semaphore,
    /// Paces the keys this node reads for listings (`list_keys_per_second`).
    pub listing_rate: crate::listing::Rate,
    pub started: Instant,
}

impl NodeState {
    /// `GET /v1/status`.
    pub async fn status_json(&self) -> Value {
        let id = self.coordinator.identity();
        let local = self.replicas.local();
        let figures = local.figures().await.unwrap_or_default();
        let cluster = &self.cluster;
        let members = cluster.members_json();
        let n = cluster.params().replicas;
        let layout = self.layout_json();
        let corrupt = local.stats().corrupt_records.load(Ordering::Relaxed);
        let warnings = self.warnings(&members, &layout, corrupt);
        let me = cluster.my_id();
        json!({
            "node_id": id.node_id,
            "incarnation": id.incarnation,
            "versions": local.versions(),
            "version": env!("CARGO_PKG_VERSION"),
            "api_addr": cluster.me().api_addr,
            "peer_addr": cluster.me().peer_addr,
            "uptime_seconds": self.started.elapsed().as_secs(),
            "replicas": n,
            "partitions": cluster.params().partitions,
            "ring_version": cluster.ring().map(|r| r.version()).ok(),
            "partitions_owned": cluster.ring().map_or(0, |r| r.partitions_of(&me).len()),
            "layout": layout,
            "members": members,
            "warnings": warnings,
            "workers": {
                "hinted_handoff": self.handoff.status(),
                "anti_entropy": self.anti_entropy.status(),
                "stray_cleanup": self.stray.status(),
            },
            "storage": {
                "disk_bytes": figures.disk_bytes,
                "approximate_objects": figures.approximate_objects,
                "corrupt_records": corrupt,
            },
            "replication": self.metrics.lag.replication_json(),
            "reads": self.metrics.lag.reads_json(),
        })
    }

    /// What an operator should look at, in `/v1/status`'s `warnings`: too few members or
    /// too few up, members down, members up on another layout version, a layout conflict,
    /// corrupt records.
    fn warnings(&self, members: &[Value], layout: &Value, corrupt: u64) -> Vec<String> {
        let n = self.cluster.params().replicas;
        let mut warnings = Vec::new();
        if members.len() < n {
            warnings.push(format!(
                "the cluster has {} member(s), fewer than N={n}: writes needing more than {} replicas will fail",
                members.len(),
                members.len()
            ));
        }
        let up = members.iter().filter(|m| m["state"] == "up").count();
        if members.len() >= n && up < n {
            warnings.push(format!(
                "only {up} of {} members are up, fewer than N={n}: requests needing more than {up} replicas fail",
                members.len()
            ));
        }
        let down: Vec<&str> =
            members.iter().filter(|m| m["state"] == "down").filter_map(|m| m["node_id"].as_str()).collect();
        if !down.is_empty() {
            warnings.push(format!(
                "down as this node sees it: {}; their replicas miss writes until hints or anti-entropy catch them up",
                down.join(", ")
            ));
        }
        let mine = self.cluster.layout().map(|l| l.version());
        let behind: Vec<String> = members
            .iter()
            .filter(|m| m["state"] == "up")
            .filter_map(|m| Some((m["node_id"].as_str()?, m["layout_version"].as_u64()?)))
            .filter(|(_, v)| Some(*v) != mine)
            .map(|(id, v)| format!("{id} has {v}"))
            .collect();
        if !behind.is_empty() {
            warnings.push(format!(
                "members disagree on the layout version (this node has {}): {}; gossip settles this within seconds, unless a layout conflict holds it",
                mine.unwrap_or(0),
                behind.join(", ")
            ));
        }
        if let Some(conflict) = layout["conflict"].as_str() {
            warnings.push(format!("layout conflict: {conflict}"));
        }
        if corrupt > 0 {
            warnings.push(format!(
                "{corrupt} stored record(s) failed their checksum: they read as missing and are repaired from other replicas; check this node's disk"
            ));
        }
        warnings
    }

    /// The layout part of `/v1/status`, with whether this node may be stopped: it is no
    /// member (it left, or never joined), has handed all its data off and delivered all
    /// its hints.
    fn layout_json(&self) -> Value {
        let mut v = self.cluster.layout_json();
        if let Some(layout) = self.cluster.layout() {
            let handoff = self.handoff.status();
            let hints: u64 =
                handoff["pending"].as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
            let swept = self.stray.status()["swept_layout_version"].as_u64() == Some(layout.version());
            let member = layout.is_member(&self.cluster.my_id());
            v["may_stop"] = json!(!member && swept && hints == 0);
        }
        v
    }

    /// `GET /v1/ring`.
    ///
    /// # Errors
    /// No layout yet.
    pub fn ring_json(&self) -> Result<Value, crate::error::Error> {
        self.cluster.ring_json()
    }

    /// `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        let figures = self.replicas.local().figures().await.unwrap_or_default();
        self.metrics.render(self.replicas.local().stats(), figures.disk_bytes)
    }
}
