//! Several node processes seeded with each other, in one temporary directory.

use crate::process::NodeProcess;

/// A cluster of real node processes. Dropping it kills them all and removes their data.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<NodeProcess>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes with `replicas` = N, each seeded with every other node's peer
    /// address, plus `extra` flags; waits until every node is healthy.
    pub async fn start(n: usize, replicas: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new().prefix("quorumkv-test-").tempdir().expect("tempdir");
        let mut nodes: Vec<NodeProcess> =
            (0..n).map(|i| NodeProcess::new(&format!("node-{}", i + 1), dir.path(), Vec::new())).collect();
        let peers: Vec<String> = nodes.iter().map(|p| p.peer.to_string()).collect();
        for (i, node) in nodes.iter_mut().enumerate() {
            let mut args = vec!["--replicas".to_string(), replicas.to_string()];
            for (j, peer) in peers.iter().enumerate() {
                if i != j {
                    args.push("--seed".into());
                    args.push(peer.clone());
                }
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            node.set_args(args);
            node.spawn();
        }
        // A node becomes healthy once it has the layout, which needs every seed: wait
        // for all of them together, so a node that died is named, not the one waiting.
        let http = crate::Http::new();
        let all_healthy = crate::poll_until(std::time::Duration::from_secs(30), || {
            for node in nodes.iter_mut() {
                node.assert_alive();
            }
            let urls: Vec<String> = nodes.iter().map(|n| n.url("/v1/health")).collect();
            let http = http.clone();
            async move {
                for url in &urls {
                    let r = http.send(hyper::Method::GET, url, &[], bytes::Bytes::new()).await.ok()?;
                    if r.status != 200 {
                        return None;
                    }
                }
                Some(())
            }
        })
        .await;
        if all_healthy.is_none() {
            let logs: Vec<String> =
                nodes.iter().map(|n| format!("--- {}:\n{}", n.name, n.log_tail())).collect();
            panic!("the cluster did not become healthy in 30 s:\n{}", logs.join("\n"));
        }
        let cluster = Cluster { nodes, dir };
        cluster.wait_members(n).await;
        cluster
    }

    /// Waits until every running node lists `n` members, all up.
    pub async fn wait_members(&self, n: usize) {
        let http = crate::Http::new();
        for node in self.nodes.iter().filter(|p| p.is_running()) {
            let url = node.url("/v1/status");
            let name = node.name.clone();
            crate::eventually(
                &format!("{name} sees {n} members up"),
                std::time::Duration::from_secs(20),
                || {
                    let http = http.clone();
                    let url = url.clone();
                    async move {
                        let status = http.get(&url).await.json();
                        let members = status["members"].as_array()?;
                        (members.len() == n && members.iter().all(|m| m["state"] == "up")).then_some(())
                    }
                },
            )
            .await;
        }
    }

    /// Starts one more node, seeded with every node's peer address, with `replicas` = N
    /// and `extra` flags; waits until it is healthy (it has learnt the layout). It is not
    /// a member until a layout change joins it. Returns its index.
    pub async fn add_node(&mut self, replicas: usize, extra: &[&str]) -> usize {
        let i = self.nodes.len();
        let mut args = vec!["--replicas".to_string(), replicas.to_string()];
        for n in &self.nodes {
            args.push("--seed".into());
            args.push(n.peer.to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut node = NodeProcess::new(&format!("node-{}", i + 1), self.dir.path(), args);
        node.start().await;
        self.nodes.push(node);
        i
    }

    /// One node on its own (N = 1), with `extra` flags.
    pub async fn single(extra: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new().prefix("quorumkv-test-").tempdir().expect("tempdir");
        let mut node = NodeProcess::new("node-1", dir.path(), extra.iter().map(|s| s.to_string()).collect());
        node.start().await;
        Cluster { nodes: vec![node], dir }
    }

    pub fn node(&mut self, i: usize) -> &mut NodeProcess {
        &mut self.nodes[i]
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
