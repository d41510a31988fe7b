//! A node's own report, `GET /v1/status`.

use serde::{Deserialize, Serialize};

use crate::ring::MemberState;

/// What a node reports about itself and the members it knows.
///
/// The fields this client knows are typed; the node may report more than this version of
/// the client knows (pending hints, anti-entropy progress, ...): [`raw`](NodeStatus::raw)
/// has the whole answer as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeStatus {
    /// The node's stable id.
    pub node_id: String,
    /// Bumped when the node comes back without its data.
    pub incarnation: Option<u64>,
    /// The node's software version.
    pub version: String,
    /// Client API address.
    pub api_addr: String,
    /// Peer (internode) address.
    pub peer_addr: Option<String>,
    /// Seconds since the process started.
    pub uptime_seconds: Option<u64>,
    /// N, copies of each key.
    pub replicas: Option<usize>,
    /// Q, the partition count.
    pub partitions: Option<u32>,
    /// Every member the node knows, with its state.
    pub members: Vec<StatusMember>,
    /// The node's whole answer, including fields this client does not type.
    #[serde(skip)]
    pub raw: serde_json::Value,
}

/// A member as a node's status reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusMember {
    /// The member's node id.
    pub node_id: String,
    /// Up, down, joining or leaving.
    pub state: MemberState,
    /// Its client API address.
    pub api_addr: Option<String>,
    /// Its peer address.
    pub peer_addr: Option<String>,
}
