//! The quorumkv node: the client API, the coordinator and (with a cluster) peer RPC and
//! the background workers that bring replicas together.
//!
//! The binary `quorumkv-node` only parses arguments and calls [`node::run`]; tests start
//! the same binary as a process.
//!
//! # Layout
//!
//! Two entry points, [`api`] (clients) and [`rpc`] (peers), share a [`state::NodeState`].
//! Below them the [`coordinator`] decides whom to ask; [`replica`] asks (locally through
//! [`local`], remotely through [`peer`]) and [`quorum`] counts the answers. No module
//! below the entry points knows them; see `docs/DESIGN.md` for the whole table.
//!
//! - [`config`]: the configuration struct, its defaults and validation.
//! - [`error`]: the node's one error type, mapped once to HTTP and once to the wire.
//! - [`key`]: the one validated object name (partition, bucket, key).
//! - [`api`]: the HTTP client API of API.md.
//! - [`rpc`]: the peer listener's handler.
//! - [`state`]: what both entry points share.
//! - [`coordinator`]: reads, writes, forwarding and read repair.
//! - [`replica`]: the replica-call layer: local or remote, one message to many.
//! - [`quorum`]: the counting of answers, a pure state machine.
//! - [`layout`]: the stored, versioned cluster layout.
//! - [`cluster`]: the layout in force, gossip, the failure detector loops.
//! - [`detector`]: phi-accrual failure detection.
//! - [`handoff`]: delivers hints to the replicas they were kept for.
//! - [`anti_entropy`]: Merkle-tree exchanges and tombstone reaping.
//! - [`stray`]: hands data of partitions this node does not replicate to their owners.
//! - [`worker`]: the shape and runner of background workers.
//! - [`local`]: the storage boundary: the only way into the store.
//! - [`peer`]: the wire format, the transport seam and the peer client.
//! - [`metrics`]: Prometheus metrics.
//! - [`lag`]: the recent replication lag and read staleness `/v1/status` reports.
//! - [`server`]: the HTTP/1.1 listener with graceful drain.
//! - [`throttle`]: at most one line per interval for log lines others can provoke.
//! - [`node`]: start-up and shutdown.

pub mod anti_entropy;
pub mod api;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod detector;
pub mod error;
pub mod handoff;
pub mod key;
pub mod lag;
pub mod layout;
pub mod listing;
pub mod local;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod quorum;
pub mod replica;
pub mod rpc;
pub mod server;
pub mod state;
pub mod stray;
pub mod throttle;
pub mod worker;

pub use config::Config;
pub use error::Error;
pub use node::{Node, run};
