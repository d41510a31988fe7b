//! A cluster of nodes inside the test process, talking over an in-memory network with
//! faults injected (cut links one way or both, delays, random loss, paused nodes).
//!
//! Each node is the real node — real storage in its own temporary directory, the real
//! coordinator, workers and peer handler — started through [`Node::start`] with a
//! [`MemoryNetwork`] endpoint as its transport. Tests call each node's coordinator
//! directly. What needs real processes (kill -9, SIGSTOP, sockets, the binaries' flags)
//! stays in the process tests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quorumkv_node::coordinator::{ReadOptions, WriteOptions};
use quorumkv_node::key::Key;
use quorumkv_node::peer::MemoryNetwork;
use quorumkv_node::peer::transport::Handler;
use quorumkv_node::state::NodeState;
use quorumkv_node::{Config, Error, Node};
use quorumkv_storage::{Content, Object, VersionVector};

use crate::eventually;

/// Several in-process nodes on one [`MemoryNetwork`]. Dropping it stops nothing
/// gracefully; call [`InProcess::stop_all`] to flush.
#[derive(Debug)]
pub struct InProcess {
    pub network: MemoryNetwork,
    nodes: Vec<Option<Node>>,
    configs: Vec<Config>,
    dir: tempfile::TempDir,
}

/// The name, and peer address on the network, of node `i` (from 0): `node-1`, ….
pub fn name(i: usize) -> String {
    format!("node-{}", i + 1)
}

impl InProcess {
    /// Starts `n` nodes with N = `replicas`, fast failure detection and the changes
    /// `tweak` makes to each config; waits until every node sees every other up.
    pub async fn start(n: usize, replicas: usize, tweak: impl Fn(&mut Config)) -> InProcess {
        let dir = tempfile::Builder::new().prefix("quorumkv-inproc-").tempdir().expect("tempdir");
        let network = MemoryNetwork::new(0x5eed);
        let configs: Vec<Config> = (0..n)
            .map(|i| {
                let mut c = Config {
                    node_id: Some(name(i)),
                    data_dir: dir.path().join(name(i)),
                    seeds: (0..n).filter(|&j| j != i).map(name).collect(),
                    replicas: Some(replicas),
                    peer_advertise: Some(name(i)),
                    advertise: Some(format!("{}-api", name(i))),
                    heartbeat_interval_ms: 50,
                    cluster_secret: Some(quorumkv_node::config::Secret(crate::TEST_SECRET.into())),
                    peer_timeout_ms: 500,
                    storage_threads: 1,
                    shutdown_grace_ms: 2000,
                    ..Config::default()
                };
                tweak(&mut c);
                c
            })
            .collect();
        let mut c = InProcess { network, nodes: (0..n).map(|_| None).collect(), configs, dir };
        for i in 0..n {
            c.boot(i).await;
        }
        c.wait_all_up().await;
        c
    }

    async fn boot(&mut self, i: usize) {
        self.try_boot(i).await.expect("node starts");
    }

    /// Starts node `i`; the start's error as text if it refuses to start.
    async fn try_boot(&mut self, i: usize) -> Result<(), String> {
        let config = self.configs[i].clone();
        // A node stopped a moment ago may still be finishing a peer's call (a handler
        // holds its state until the call ends, within the caller's deadline): wait for
        // its store to be released rather than fail on the directory's lock.
        let node = crate::poll_until(Duration::from_secs(10), || {
            let (config, endpoint) = (config.clone(), self.network.endpoint(&name(i)));
            async move {
                match Node::start(config, endpoint, format!("{}-api", name(i)), name(i)).await {
                    Ok(node) => Some(Ok(node)),
                    Err(e) if e.to_string().contains("Locked") => None,
                    Err(e) => Some(Err(e)),
                }
            }
        })
        .await
        .expect("the previous instance released its store")
        .map_err(|e| e.to_string())?;
        // The network holds the node weakly: a message still in flight to a stopped node
        // does not keep its state (and its store) alive.
        let state = Arc::downgrade(node.state());
        let handler: Handler = Arc::new(move |body: Bytes| {
            let state = state.clone();
            Box::pin(async move {
                match state.upgrade() {
                    Some(state) => quorumkv_node::rpc::serve_bytes(&state, body).await,
                    None => std::future::pending().await,
                }
            })
        });
        self.network.register(&name(i), handler);
        self.nodes[i] = Some(node);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The shared state of node `i` (running).
    pub fn node(&self, i: usize) -> &Arc<NodeState> {
        self.nodes[i].as_ref().expect("node running").state()
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stops node `i` gracefully (drain, flush) and takes it off the network.
    pub async fn stop(&mut self, i: usize) {
        self.network.unregister(&name(i));
        if let Some(node) = self.nodes[i].take() {
            node.shutdown(Duration::from_secs(2)).await;
        }
    }

    /// Starts node `i` again on its data directory.
    pub async fn restart(&mut self, i: usize) {
        self.boot(i).await;
    }

    /// Starts node `i` again on its data directory; why not, if it refuses to start.
    pub async fn try_restart(&mut self, i: usize) -> Result<(), String> {
        self.try_boot(i).await
    }

    /// Starts one more node, seeded with every other node, with the changes `tweak`
    /// makes to its config; returns its index. It learns the layout from the others.
    pub async fn add(&mut self, tweak: impl Fn(&mut Config)) -> usize {
        let i = self.nodes.len();
        let mut config = self.configs[0].clone();
        config.node_id = Some(name(i));
        config.data_dir = self.dir.path().join(name(i));
        config.seeds = (0..i).map(name).collect();
        config.peer_advertise = Some(name(i));
        config.advertise = Some(format!("{}-api", name(i)));
        tweak(&mut config);
        self.configs.push(config);
        self.nodes.push(None);
        self.boot(i).await;
        i
    }

    /// Stops every running node gracefully.
    pub async fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }

    /// Waits until every running node holds every other running node up.
    pub async fn wait_all_up(&self) {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].is_some()).collect();
        for &i in &running {
            for &j in &running {
                self.wait_state(i, j, true).await;
            }
        }
    }

    /// Waits until node `observer` holds node `of` up (`true`) or down.
    pub async fn wait_state(&self, observer: usize, of: usize, up: bool) {
        let cluster = self.node(observer).cluster.clone();
        let of_id = quorumkv_ring::NodeId(name(of));
        let what = format!("{} sees {} {}", name(observer), name(of), if up { "up" } else { "down" });
        eventually(&what, Duration::from_secs(20), || {
            let member = cluster.ring().is_ok_and(|r| r.members().contains(&of_id));
            let ok = member && cluster.is_up(&of_id) == up;
            async move { ok.then_some(()) }
        })
        .await;
    }

    pub fn key(&self, bucket: &str, key: &str) -> Key {
        let q = self.configs[0].partitions;
        Key::new(q, Bytes::copy_from_slice(bucket.as_bytes()), Bytes::copy_from_slice(key.as_bytes()))
            .expect("a valid key")
    }

    /// Writes `value` through node `i` with `w` (and `dw` = 0), sloppy or not, superseding `context`.
    pub async fn put(
        &self,
        i: usize,
        key: &str,
        value: &str,
        w: usize,
        sloppy: bool,
        context: &VersionVector,
    ) -> Result<Object, Error> {
        let opts = WriteOptions { w, dw: 0, sloppy, timeout: Duration::from_secs(2) };
        let content = Content::value("text/plain", Bytes::copy_from_slice(value.as_bytes()));
        self.node(i).coordinator.put(self.key("b", key), context.clone(), content, opts).await
    }

    /// Reads through node `i` with `r`.
    pub async fn get(&self, i: usize, key: &str, r: usize) -> Result<Option<Object>, Error> {
        let opts = ReadOptions { r, timeout: Duration::from_secs(2), sloppy: true };
        self.node(i).coordinator.get(self.key("b", key), opts).await
    }

    /// Node `i`'s own replica of `key` (`?local=true`).
    pub async fn local(&self, i: usize, key: &str) -> Option<Object> {
        self.node(i).coordinator.get_local(self.key("b", key)).await.expect("local read")
    }

    /// The pending hints node `i` holds, in all.
    pub fn hints_pending(&self, i: usize) -> u64 {
        let status = quorumkv_node::worker::Worker::status(self.node(i).handoff.as_ref());
        status["pending"].as_object().map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum())
    }
}

/// The live values of an object, as text, sorted.
pub fn values(obj: Option<&Object>) -> Vec<String> {
    let mut v: Vec<String> = obj
        .map(|o| {
            o.live()
                .into_iter()
                .filter_map(|c| match c {
                    Content::Value { bytes, .. } => Some(String::from_utf8_lossy(bytes).into_owned()),
                    Content::Tombstone { .. } => None,
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
