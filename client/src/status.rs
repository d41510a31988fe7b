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
    /// How far behind the replicas of the writes this node coordinated are (`None` from
    /// a node that does not report it).
    pub replication: Option<Replication>,
    /// How often this node's quorum reads found a stale or missing replica.
    pub reads: Option<Reads>,
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

/// The replication lag of the writes a node coordinated: over the last
/// [`window_seconds`](Replication::window_seconds) and since it started.
///
/// A write's lag runs from the coordinator's answer to the client until the last primary
/// of its preference list acknowledged its own copy (0 if every one did before the
/// answer). A write some primary of which never took its copy (a fallback kept it as a
/// hint, or it failed) is *not landed* and has no lag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Replication {
    /// The length of the window, in seconds.
    pub window_seconds: u64,
    /// The writes of the window.
    #[serde(flatten)]
    pub recent: WriteFigures,
    /// Lag percentiles of the writes of the window that landed; `None` if none did.
    pub lag_ms: Option<LagMillis>,
    /// The writes since the node started.
    pub since_start: WriteFigures,
}

/// Writes whose copies have all settled, and how fast they landed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WriteFigures {
    /// Writes coordinated by the node whose copies all settled, landed or not.
    pub writes: u64,
    /// The share (0 to 1) of them whose copies all landed within 10 ms of the answer;
    /// `None` without writes.
    pub within_10ms: Option<f64>,
    /// The same within 100 ms.
    pub within_100ms: Option<f64>,
    /// The same within 1 s.
    pub within_1s: Option<f64>,
    /// Writes some copy of which never landed on its primary.
    pub not_landed: u64,
}

/// Lag percentiles in milliseconds: each the upper bound of the histogram bucket it
/// falls in (at most `max`), so the true percentile is at most this.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LagMillis {
    /// Half the writes landed within this.
    pub p50: f64,
    /// 90% of them within this.
    pub p90: f64,
    /// 99% of them within this.
    pub p99: f64,
    /// The largest lag, exact.
    pub max: f64,
}

/// The quorum reads a node coordinated: over the last
/// [`window_seconds`](Reads::window_seconds) and since it started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reads {
    /// The length of the window, in seconds.
    pub window_seconds: u64,
    /// The reads of the window.
    #[serde(flatten)]
    pub recent: ReadFigures,
    /// The reads since the node started.
    pub since_start: ReadFigures,
}

/// Quorum reads and how many of them found a replica to repair.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReadFigures {
    /// Quorum reads (not `local=true` ones) whose answers all came in or timed out.
    pub quorum_reads: u64,
    /// Of those, the reads a primary of which answered with less than the merge of all
    /// answers (stale, or missing the key), which read repair then brought up to date.
    pub found_stale: u64,
    /// `found_stale / quorum_reads`; `None` without reads.
    pub repair_ratio: Option<f64>,
}
