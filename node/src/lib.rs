//! The quorumkv node: the client API, the coordinator and (with a cluster) peer RPC and
//! the background workers that bring replicas together.
//!
//! The binary `quorumkv-node` only parses arguments and calls [`node::run`]; tests start
//! the same binary as a process.
//!
//! # Layout
//! - [`config`]: the configuration struct, its defaults and validation.
//! - [`quorum`]: replica counts (`one`, `quorum`, `all`, a number).
//! - [`api`]: the HTTP client API of API.md, with its one error-to-status mapping.
//! - [`cluster`]: membership, the greeter, the current ring.
//! - [`peer`]: the internode protocol, client and server.
//! - [`coordinator`]: turns requests into replica calls and waits for quorums.
//! - [`anti_entropy`]: Merkle-tree exchanges and tombstone reaping.
//! - [`detector`]: phi-accrual failure detection.
//! - [`handoff`]: delivers hints to the replicas they were kept for.
//! - [`worker`]: the shape and runner of background workers.
//! - [`local`]: the storage boundary (blocking pool).
//! - [`metrics`]: Prometheus metrics.
//! - [`server`]: the HTTP/1.1 listener with graceful drain.
//! - [`node`]: start-up, identity, shutdown.

pub mod anti_entropy;
pub mod api;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod detector;
pub mod handoff;
pub mod local;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod quorum;
pub mod server;
pub mod worker;

pub use config::Config;
pub use node::run;
