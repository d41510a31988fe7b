//! Node configuration: one serde struct read from TOML, overridden by `QUORUMKV_*`
//! environment variables and then by flags, validated on load.
//!
//! `node/quorumkv.example.toml` documents every field and is parsed by a unit test.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::quorum::Quorum;

/// A secret from the configuration: never shown by `Debug`, so never logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Shortest cluster secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// Everything a node needs to start. Every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Stable name of this node. Generated on first start and kept in the data dir if unset.
    pub node_id: Option<String>,
    /// Client API listener.
    pub listen: SocketAddr,
    /// Peer (internode) listener.
    pub peer_listen: SocketAddr,
    /// Address other nodes use to reach this node's peer listener, if it differs from
    /// `peer_listen` (for example behind NAT or in containers).
    pub peer_advertise: Option<String>,
    /// Address clients use to reach this node's client API, if it differs from `listen`.
    pub advertise: Option<String>,
    /// Where everything is stored.
    pub data_dir: PathBuf,
    /// Peer addresses of other members.
    pub seeds: Vec<String>,
    /// The secret every member shares (at least 16 bytes): it signs every peer message
    /// and the causal-context tokens clients carry. Without one (nor a file), a node
    /// only listens for peers on loopback.
    pub cluster_secret: Option<Secret>,
    /// A file holding the cluster secret (surrounding whitespace ignored); wins over
    /// `cluster_secret`.
    pub cluster_secret_file: Option<PathBuf>,
    /// This node's weight in placement, 1 to 1000000: its share of the partitions is
    /// proportional to it (use one unit on every node, e.g. GiB of disk). Taken into the
    /// layout when the node becomes a member.
    pub capacity: u32,
    /// This node's failure domain (a rack, a data centre), if any: every partition's
    /// replicas span as many zones as N allows. Taken into the layout when the node
    /// becomes a member.
    pub zone: Option<String>,
    /// N, the number of copies of each key. Default: 3 with seeds, 1 alone.
    pub replicas: Option<usize>,
    /// Partition count, a power of two; fixed when a cluster is created.
    pub partitions: u32,
    /// Virtual tokens each node places on the ring.
    pub vnodes: u32,
    /// Largest value accepted, in bytes; larger is a 413.
    pub max_value_bytes: usize,
    /// Default replicas that must answer a read.
    pub default_r: Quorum,
    /// Default replicas that must acknowledge a write.
    pub default_w: Quorum,
    /// Default replicas of those that must fsync before acknowledging.
    pub default_dw: usize,
    /// Default deadline for a whole request, in milliseconds.
    pub default_timeout_ms: u64,
    /// Deadline of one peer call, in milliseconds (capped by the request's own deadline).
    pub peer_timeout_ms: u64,
    /// Requests in flight to one peer at most; more wait for a slot.
    pub peer_max_in_flight: usize,
    /// How long shutdown waits for in-flight requests, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// A request body must arrive within this many milliseconds, or it is a 408.
    pub request_read_timeout_ms: u64,
    /// Connections each listener serves at once; past it, a few more get a 503 (and
    /// `/v1/health` still answers), the rest are closed.
    pub max_connections: usize,
    /// Client requests served at once; past it, a 503 `overloaded` with `Retry-After`.
    pub max_requests_in_flight: usize,
    /// Client bearer tokens, each `rw:TOKEN` (read and write) or `ro:TOKEN` (read only),
    /// TOKEN at least 16 bytes. Empty: the client API is open (local development).
    pub client_tokens: Vec<Secret>,
    /// Threads that run storage calls (off the async threads), in batches. Default: half
    /// the cores, at least one: more threads than that only add hand-offs between them
    /// and the async threads (on 2 cores, 1 thread instead of 3 gave the dev cluster
    /// 14% more GETs/s and single nodes the same figures; see docs/benchmarks.md).
    pub storage_threads: usize,
    /// The journal is fsynced this often (milliseconds) when anything was written, so
    /// fjall's fsync of a whole journal when it rotates one has little left to do and
    /// does not stall writes; it also bounds what a power loss takes from `dw=0`
    /// writes. 0 turns it off.
    pub journal_sync_ms: u64,
    /// CPU niceness (0–19) of the background threads: the storage engine's flush and
    /// compaction threads, and the scan thread (anti-entropy, tree rebuilds, key
    /// listings). At 19 they use the cycles requests leave idle, so a flush or a listing
    /// does not stall requests; 0 leaves them at the node's priority. Applies from the
    /// next start.
    pub background_nice: u8,
    /// How often each peer is pinged by the failure detector, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Suspicion (phi) above which a silent peer is marked down. With the default
    /// heartbeat, 6 means about 2.8 s of silence.
    pub phi_threshold: f64,
    /// Whether a coordinator keeps hints for replicas that missed a write (existing hints
    /// are delivered either way).
    pub hinted_handoff: bool,
    /// Hints delivered per peer call (one fsync on the receiver).
    pub hint_batch: usize,
    /// Hints delivered per second at most, so handoff does not starve client requests.
    pub hint_rate: u32,
    /// Keys per second this node reads for key listings at most, shared by every listing
    /// it serves, so a listing of a big bucket takes longer rather than slowing requests.
    pub list_keys_per_second: u32,
    /// Anti-entropy exchanges every partition this node holds once per this many
    /// milliseconds, spread evenly.
    pub aae_interval_ms: u64,
    /// Merkle trees are rebuilt from storage this often (seconds); also at start.
    pub aae_rebuild_interval_s: u64,
    /// Anti-entropy (and so a new owner's transfer of the partitions it gains) sends
    /// and receives at most this many MiB per second, so moving data leaves room for
    /// clients. 0: no limit.
    pub transfer_rate_mib: u64,
    /// A tombstone younger than this (milliseconds) is never reaped. Hints older than
    /// this are dropped, not delivered, so they cannot bring back a reaped delete; it
    /// should outlast the outages hints are meant to cover.
    pub tombstone_grace_ms: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            node_id: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            peer_listen: SocketAddr::from(([127, 0, 0, 1], 7071)),
            peer_advertise: None,
            advertise: None,
            data_dir: PathBuf::from("./data"),
            seeds: Vec::new(),
            cluster_secret: None,
            cluster_secret_file: None,
            capacity: 1,
            zone: None,
            replicas: None,
            partitions: 64,
            vnodes: quorumkv_ring::RingParams::default().vnodes,
            max_value_bytes: 1024 * 1024,
            default_r: Quorum::Majority,
            default_w: Quorum::Majority,
            default_dw: 0,
            default_timeout_ms: 5000,
            peer_timeout_ms: 2000,
            peer_max_in_flight: 256,
            shutdown_grace_ms: 10_000,
            request_read_timeout_ms: 10_000,
            max_connections: 1024,
            max_requests_in_flight: 1024,
            client_tokens: Vec::new(),
            storage_threads: default_storage_threads(),
            journal_sync_ms: 50,
            background_nice: 19,
            heartbeat_interval_ms: 200,
            phi_threshold: 6.0,
            hinted_handoff: true,
            hint_batch: 100,
            hint_rate: 5000,
            list_keys_per_second: 100_000,
            aae_interval_ms: 60_000,
            aae_rebuild_interval_s: 3600,
            transfer_rate_mib: 8,
            tombstone_grace_ms: 3_600_000,
        }
    }
}

/// Half the cores this process may use, at least 1 and at most 16.
fn default_storage_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    (cores / 2).clamp(1, 16)
}

/// A configuration that cannot work, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("config field `{field}`: {message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

impl Config {
    /// Parses a TOML document (unknown fields are an error, so typos are caught).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError { field: "(file)", message: e.to_string() })
    }

    /// The cluster secret's bytes: the file's content if a file is configured, else
    /// `cluster_secret`; `None` without either.
    ///
    /// # Errors
    /// An unreadable file, or a secret shorter than [`MIN_SECRET_BYTES`].
    pub fn secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        let secret = match (&self.cluster_secret_file, &self.cluster_secret) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    field: "cluster_secret_file",
                    message: format!("cannot read {}: {e}", path.display()),
                })?;
                text.trim().as_bytes().to_vec()
            }
            (None, Some(secret)) => secret.0.as_bytes().to_vec(),
            (None, None) => return Ok(None),
        };
        if secret.len() < MIN_SECRET_BYTES {
            let field =
                if self.cluster_secret_file.is_some() { "cluster_secret_file" } else { "cluster_secret" };
            return Err(ConfigError {
                field,
                message: format!(
                    "the cluster secret must be at least {MIN_SECRET_BYTES} bytes (for example 32 random hex digits: `openssl rand -hex 16`)"
                ),
            });
        }
        Ok(Some(secret))
    }

    /// N for this node: configured, else 3 in a cluster and 1 alone.
    pub fn effective_replicas(&self) -> usize {
        self.replicas.unwrap_or(if self.seeds.is_empty() { 1 } else { 3 })
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, message: &str| Err(ConfigError { field, message: message.to_string() });
        if !self.partitions.is_power_of_two() || self.partitions > 65536 {
            return err("partitions", "must be a power of two between 1 and 65536");
        }
        if self.effective_replicas() == 0 || self.effective_replicas() > 16 {
            return err("replicas", "must be between 1 and 16");
        }
        if self.vnodes == 0 || self.vnodes > 4096 {
            return err("vnodes", "must be between 1 and 4096");
        }
        if self.max_value_bytes == 0 || self.max_value_bytes > 64 * 1024 * 1024 {
            return err("max_value_bytes", "must be between 1 and 67108864");
        }
        if self.default_timeout_ms == 0 || self.default_timeout_ms > 60_000 {
            return err("default_timeout_ms", "must be between 1 and 60000");
        }
        if self.peer_timeout_ms == 0 {
            return err("peer_timeout_ms", "must be at least 1");
        }
        if self.storage_threads == 0 || self.storage_threads > 64 {
            return err("storage_threads", "must be between 1 and 64");
        }
        if self.journal_sync_ms > 60_000 {
            return err("journal_sync_ms", "must be at most 60000 (0 turns it off)");
        }
        if self.background_nice > 19 {
            return err("background_nice", "must be between 0 and 19");
        }
        if !(10..=60_000).contains(&self.heartbeat_interval_ms) {
            return err("heartbeat_interval_ms", "must be between 10 and 60000");
        }
        if !(self.phi_threshold > 0.5 && self.phi_threshold < 100.0) {
            return err("phi_threshold", "must be between 0.5 and 100");
        }
        if self.hint_batch == 0 || self.hint_batch > 10_000 {
            return err("hint_batch", "must be between 1 and 10000");
        }
        if self.hint_rate == 0 {
            return err("hint_rate", "must be at least 1");
        }
        if self.list_keys_per_second == 0 {
            return err("list_keys_per_second", "must be at least 1");
        }
        if self.aae_interval_ms < 10 {
            return err("aae_interval_ms", "must be at least 10");
        }
        if self.aae_rebuild_interval_s == 0 {
            return err("aae_rebuild_interval_s", "must be at least 1");
        }
        if let Some(secret) = &self.cluster_secret
            && secret.0.len() < MIN_SECRET_BYTES
        {
            return err("cluster_secret", "must be at least 16 bytes");
        }
        if self.capacity == 0 || self.capacity > quorumkv_ring::MAX_WEIGHT {
            return err("capacity", "must be between 1 and 1000000");
        }
        if let Some(zone) = &self.zone
            && (zone.is_empty()
                || zone.len() > quorumkv_ring::MAX_ZONE_LEN
                || zone.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return err("zone", "must be 1 to 64 bytes without spaces");
        }
        if !(100..=600_000).contains(&self.request_read_timeout_ms) {
            return err("request_read_timeout_ms", "must be between 100 and 600000");
        }
        if self.max_connections == 0 || self.max_connections > 1_000_000 {
            return err("max_connections", "must be between 1 and 1000000");
        }
        if self.max_requests_in_flight == 0 || self.max_requests_in_flight > 1_000_000 {
            return err("max_requests_in_flight", "must be between 1 and 1000000");
        }
        for token in &self.client_tokens {
            let ok = token
                .0
                .split_once(':')
                .is_some_and(|(role, t)| (role == "rw" || role == "ro") && t.len() >= MIN_SECRET_BYTES);
            if !ok {
                return err(
                    "client_tokens",
                    "each must be rw:TOKEN or ro:TOKEN, the token at least 16 bytes",
                );
            }
        }
        if self.peer_max_in_flight == 0 {
            return err("peer_max_in_flight", "must be at least 1");
        }
        if let Some(id) = &self.node_id
            && (id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return err("node_id", "must be 1 to 128 characters without spaces");
        }
        let n = self.effective_replicas();
        for (field, q) in [("default_r", self.default_r), ("default_w", self.default_w)] {
            if q.resolve(n).is_err() {
                return err(field, "must be between 1 and replicas, or one/quorum/all");
            }
        }
        if self.default_w.resolve(n).is_ok_and(|w| self.default_dw > w) {
            return err("default_dw", "must not exceed default_w");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses_and_validates() {
        let text = include_str!("../quorumkv.example.toml");
        let config = Config::from_toml(text).expect("example parses");
        config.validate().expect("example validates");
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 7070)));
        assert_eq!(config.partitions, 64);
    }

    proptest::proptest! {
        /// Any text, and the example file with bytes changed, parses to a config or an
        /// error naming the problem; a config that parses validates or names a field.
        #[test]
        fn any_config_text_parses_or_is_refused(
            text in ".{0,200}",
            edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<char>()), 1..4),
        ) {
            if let Ok(c) = Config::from_toml(&text) {
                let _ = c.validate();
            }
            let mut example: Vec<char> = include_str!("../quorumkv.example.toml").chars().collect();
            for (pos, ch) in edits {
                let i = pos.index(example.len());
                example[i] = ch;
            }
            let example: String = example.into_iter().collect();
            match Config::from_toml(&example) {
                Ok(c) => { let _ = c.validate(); }
                Err(e) => proptest::prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn unknown_fields_and_bad_values_name_the_field() {
        let e = Config::from_toml("partitons = 64").expect_err("typo");
        assert!(e.to_string().contains("partitons"), "{e}");
        let c = Config { partitions: 48, ..Config::default() };
        assert_eq!(c.validate().expect_err("not a power of two").field, "partitions");
        let c = Config { default_dw: 3, ..Config::default() };
        assert_eq!(c.validate().expect_err("dw > w").field, "default_dw");
    }
}
