//! The cluster's ring as `GET /v1/ring` shows it, and the routing table built from it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One version of the cluster's ring: who is a member and which nodes hold each partition.
///
/// A key's partition is [`quorumkv_ring::key_partition`] of its bucket and raw key bytes;
/// the first [`replicas`](Ring::replicas) entries of that partition's preference list are
/// the key's replicas, the rest are fallbacks that take writes (with a hint) while a
/// replica is down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    /// Grows with every membership change.
    pub version: u64,
    /// N, the number of copies of each key.
    pub replicas: usize,
    /// Q, the number of partitions (a power of two).
    pub partition_count: u32,
    /// Every member with its client address and state.
    pub members: Vec<Member>,
    /// Each partition's preference list.
    pub partitions: Vec<Partition>,
}

/// A member of the ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's stable id.
    pub node_id: String,
    /// Where the node serves the client API (`host:port`), if it said.
    #[serde(default)]
    pub api_addr: Option<String>,
    /// Up, down, joining or leaving, as the answering node sees it.
    #[serde(default)]
    pub state: MemberState,
}

/// A member's state, as the answering node's failure detector and membership see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Serving requests (also assumed when a node does not say).
    #[default]
    Up,
    /// Not answering its peers.
    Down,
    /// Taking over partitions.
    Joining,
    /// Handing its partitions over.
    Leaving,
    /// A state this client does not know.
    #[serde(other)]
    Unknown,
}

impl MemberState {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Up => "up",
            MemberState::Down => "down",
            MemberState::Joining => "joining",
            MemberState::Leaving => "leaving",
            MemberState::Unknown => "unknown",
        }
    }
}

/// One partition and the nodes that hold it, replicas first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// The partition number, `0..partition_count`.
    pub partition: u32,
    /// Node ids: the first N are the replicas, the rest fallbacks in order.
    pub preference_list: Vec<String>,
}

impl Ring {
    /// The partition of a key (`key` as raw bytes, not percent-encoded).
    ///
    /// ```
    /// # use quorumkv_client::ring::Ring;
    /// let ring = Ring { version: 1, replicas: 1, partition_count: 64, members: vec![], partitions: vec![] };
    /// assert!(ring.partition_of("users", b"alice") < 64);
    /// ```
    pub fn partition_of(&self, bucket: &str, key: &[u8]) -> u32 {
        quorumkv_ring::key_partition(bucket.as_bytes(), key, self.partition_count)
    }

    /// The whole preference list of a key's partition (replicas, then fallbacks); empty if
    /// the ring does not list that partition.
    pub fn preference_list(&self, bucket: &str, key: &[u8]) -> &[String] {
        let p = self.partition_of(bucket, key);
        let by_index = self.partitions.get(p as usize).filter(|entry| entry.partition == p);
        by_index
            .or_else(|| self.partitions.iter().find(|entry| entry.partition == p))
            .map_or(&[], |entry| entry.preference_list.as_slice())
    }

    /// The node ids of a key's N replicas.
    pub fn replicas_of(&self, bucket: &str, key: &[u8]) -> &[String] {
        let list = self.preference_list(bucket, key);
        &list[..list.len().min(self.replicas)]
    }

    /// The member with this node id.
    pub fn member(&self, node_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.node_id == node_id)
    }
}

/// A node the client can send to, by index in [`Routes::nodes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteNode {
    pub addr: String,
    pub up: bool,
}

/// The ring turned into what the request path needs: per partition, the addresses of the
/// replicas and then the fallbacks, as indexes into one node table.
#[derive(Debug)]
pub(crate) struct Routes {
    pub ring: Ring,
    pub nodes: Vec<RouteNode>,
    /// Indexed by partition: (replica indexes, fallback indexes).
    table: Vec<(Vec<usize>, Vec<usize>)>,
}

impl Routes {
    /// Builds the table; `None` if the ring is not usable for routing (then every request
    /// goes to the configured nodes, which works, one hop slower).
    pub fn new(ring: Ring) -> Option<Routes> {
        let q = ring.partition_count;
        if q == 0 || !q.is_power_of_two() || ring.replicas == 0 {
            return None;
        }
        let mut nodes = Vec::new();
        let mut index_of = HashMap::new();
        for m in &ring.members {
            if let Some(addr) = m.api_addr.as_deref().and_then(|a| crate::addr::normalise(a).ok()) {
                index_of.insert(m.node_id.clone(), nodes.len());
                nodes.push(RouteNode { addr, up: m.state == MemberState::Up });
            }
        }
        let mut table = vec![(Vec::new(), Vec::new()); q as usize];
        for entry in &ring.partitions {
            let slot = table.get_mut(entry.partition as usize)?;
            for (i, id) in entry.preference_list.iter().enumerate() {
                if let Some(&n) = index_of.get(id) {
                    if i < ring.replicas {
                        slot.0.push(n);
                    } else {
                        slot.1.push(n);
                    }
                }
            }
        }
        Some(Routes { ring, nodes, table })
    }

    /// (replicas, fallbacks) of a key, as node indexes.
    pub fn lookup(&self, bucket: &str, key: &[u8]) -> (&[usize], &[usize]) {
        let p = self.ring.partition_of(bucket, key) as usize;
        self.table.get(p).map_or((&[], &[]), |(r, f)| (r.as_slice(), f.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_json() -> &'static str {
        r#"{"version": 3, "replicas": 2, "partition_count": 4,
            "members": [
              {"node_id": "a", "api_addr": "127.0.0.1:1", "state": "up"},
              {"node_id": "b", "api_addr": "127.0.0.1:2", "state": "down"},
              {"node_id": "c", "api_addr": "127.0.0.1:3", "state": "rebalancing"},
              {"node_id": "d"}
            ],
            "partitions": [
              {"partition": 0, "preference_list": ["a", "b", "c", "d"]},
              {"partition": 1, "preference_list": ["b", "c", "d", "a"]},
              {"partition": 2, "preference_list": ["c", "d", "a", "b"]},
              {"partition": 3, "preference_list": ["d", "a", "b", "c"]}
            ]}"#
    }

    #[test]
    fn parses_the_api_shape_and_tolerates_unknown_states() {
        let ring: Ring = serde_json::from_str(ring_json()).unwrap();
        assert_eq!(ring.members[1].state, MemberState::Down);
        assert_eq!(ring.members[2].state, MemberState::Unknown);
        assert_eq!(ring.members[3].state, MemberState::Up);
        assert_eq!(ring.members[3].api_addr, None);
    }

    #[test]
    fn routes_follow_the_shared_partition_function() {
        let ring: Ring = serde_json::from_str(ring_json()).unwrap();
        let routes = Routes::new(ring.clone()).unwrap();
        for key in ["alice", "bob", "carol", "dave", "erin", "frank"] {
            let p = quorumkv_ring::key_partition(b"users", key.as_bytes(), 4);
            assert_eq!(ring.partition_of("users", key.as_bytes()), p);
            let list = &ring.partitions[p as usize].preference_list;
            assert_eq!(ring.replicas_of("users", key.as_bytes()), &list[..2]);
            let (replicas, fallbacks) = routes.lookup("users", key.as_bytes());
            // Members without an address ("d") cannot be routed to.
            let addr = |id: &str| ring.member(id).and_then(|m| m.api_addr.clone());
            let want: Vec<String> = list[..2].iter().filter_map(|id| addr(id)).collect();
            let got: Vec<String> = replicas.iter().map(|&i| routes.nodes[i].addr.clone()).collect();
            assert_eq!(got, want);
            let want: Vec<String> = list[2..].iter().filter_map(|id| addr(id)).collect();
            let got: Vec<String> = fallbacks.iter().map(|&i| routes.nodes[i].addr.clone()).collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn unusable_rings_are_refused() {
        let mut ring: Ring = serde_json::from_str(ring_json()).unwrap();
        ring.partition_count = 3;
        assert!(Routes::new(ring.clone()).is_none());
        ring.partition_count = 4;
        ring.partitions[0].partition = 9;
        assert!(Routes::new(ring).is_none());
    }
}
