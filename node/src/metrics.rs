//! Prometheus metrics, named `quorumkv_<thing>_<unit>`, served at `GET /metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use quorumkv_storage::StoreStats;

use crate::lag::{self, Export, Figure};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub op: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub peer: String,
    pub to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `api` or `peer`.
    pub listener: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

/// Every metric a node exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub quorum_failures: Family<OpLabels, Counter>,
    pub read_repairs: Counter,
    /// Replication lag and read staleness: the last minute for `/v1/status`, and the
    /// totals since start, which four metrics export.
    pub lag: Arc<lag::Window>,
    pub sibling_warnings: Counter,
    pub peer_errors: Family<PeerLabels, Counter>,
    pub forwarded: Counter,
    pub stall_hand_offs: Counter,
    pub member_transitions: Family<TransitionLabels, Counter>,
    pub hints_stored: Counter,
    pub hints_delivered: Counter,
    pub hints_pending: Family<PeerLabels, Gauge>,
    pub sloppy_writes: Counter,
    pub aae_exchanges: Counter,
    pub aae_keys_repaired: Counter,
    pub aae_bytes: Counter,
    pub tombstones_reaped: Counter,
    pub layout_version: Gauge,
    pub partitions_syncing: Gauge,
    pub partitions_moving: Gauge,
    pub stray_keys_moved: Counter,
    pub not_owner_answers: Counter,
    pub refusals: Family<RefusalLabels, Counter>,
    corrupt_records: Gauge,
    hints_expired: Gauge,
    actor_renewals: Gauge,
    storage_bytes: Gauge,
    storage_syncs: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Counts a request or connection refused by a limit or by authentication.
    pub fn refused(&self, listener: &'static str, reason: &'static str) {
        self.refusals.get_or_create(&RefusalLabels { listener, reason }).inc();
    }

    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("quorumkv");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Client API requests by operation and status", requests.clone());
        let request_seconds =
            Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Client API request latency by operation and status",
            request_seconds.clone(),
        );
        let quorum_failures = Family::<OpLabels, Counter>::default();
        registry.register(
            "quorum_failures",
            "Requests that did not reach their quorum",
            quorum_failures.clone(),
        );
        let read_repairs = Counter::default();
        registry.register(
            "read_repairs",
            "Replicas repaired after a read found them stale",
            read_repairs.clone(),
        );
        let lag = Arc::new(lag::Window::new());
        for (name, help, figure) in [
            (
                "replication_lag_seconds",
                "Writes coordinated here whose copies all reached their primaries, by the time from the answer to the client until the last primary acknowledged (0: before the answer)",
                Figure::Lag,
            ),
            (
                "writes_not_landed",
                "Writes coordinated here some primary of which never acknowledged its copy (kept as a hint, or failed)",
                Figure::NotLanded,
            ),
            ("quorum_reads", "Quorum reads coordinated here", Figure::QuorumReads),
            (
                "stale_reads",
                "Quorum reads coordinated here that found a primary stale or missing the key (and repaired it)",
                Figure::StaleReads,
            ),
        ] {
            registry.register(name, help, Export::new(lag.clone(), figure));
        }
        let sibling_warnings = Counter::default();
        registry.register(
            "sibling_warnings",
            "Writes that left a key with more than 25 concurrent versions",
            sibling_warnings.clone(),
        );
        let peer_errors = Family::<PeerLabels, Counter>::default();
        registry.register("peer_errors", "Failed calls to a peer", peer_errors.clone());
        let forwarded = Counter::default();
        registry.register("forwarded_writes", "Writes forwarded to a replica of the key", forwarded.clone());
        let stall_hand_offs = Counter::default();
        registry.register(
            "stall_hand_offs",
            "Writes this node, a primary of the key, left to another primary because its storage was stalled",
            stall_hand_offs.clone(),
        );
        let member_transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "member_transitions",
            "Failure detector state changes, by peer and new state",
            member_transitions.clone(),
        );
        let hints_stored = Counter::default();
        registry.register(
            "hints_stored",
            "Copies kept as hints for a replica that missed them",
            hints_stored.clone(),
        );
        let hints_delivered = Counter::default();
        registry.register(
            "hints_delivered",
            "Hints delivered to their replica and removed",
            hints_delivered.clone(),
        );
        let hints_pending = Family::<PeerLabels, Gauge>::default();
        registry.register(
            "hints_pending",
            "Hints kept here, by the replica they wait for",
            hints_pending.clone(),
        );
        let sloppy_writes = Counter::default();
        registry.register(
            "sloppy_writes",
            "Copies sent to a fallback in place of a primary",
            sloppy_writes.clone(),
        );
        let aae_exchanges = Counter::default();
        registry.register("aae_exchanges", "Anti-entropy exchanges of one partition", aae_exchanges.clone());
        let aae_keys_repaired = Counter::default();
        registry.register(
            "aae_keys_repaired",
            "Keys anti-entropy brought up to date",
            aae_keys_repaired.clone(),
        );
        let aae_bytes = Counter::default();
        registry.register(
            "aae_bytes",
            "Bytes sent and received by anti-entropy exchanges",
            aae_bytes.clone(),
        );
        let tombstones_reaped = Counter::default();
        registry.register(
            "tombstones_reaped",
            "Tombstones removed once every replica held them",
            tombstones_reaped.clone(),
        );
        let layout_version = Gauge::default();
        registry.register(
            "layout_version",
            "Version of the cluster layout in force here",
            layout_version.clone(),
        );
        let partitions_syncing = Gauge::default();
        registry.register(
            "partitions_syncing",
            "Partitions this node gained with a layout change and has not synced yet",
            partitions_syncing.clone(),
        );
        let partitions_moving = Gauge::default();
        registry.register(
            "partitions_moving",
            "Partitions whose replicas differ between the previous layout (still live) and the one in force",
            partitions_moving.clone(),
        );
        let stray_keys_moved = Counter::default();
        registry.register(
            "stray_keys_moved",
            "Keys moved out of this node's data for partitions it does not replicate (not kept as hints where hints expire)",
            stray_keys_moved.clone(),
        );
        let not_owner_answers = Counter::default();
        registry.register(
            "not_owner_answers",
            "Replica calls for partitions this node does not replicate under its layout (kept as hints)",
            not_owner_answers.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "refusals",
            "Requests and connections refused by a limit or by authentication, by listener and reason",
            refusals.clone(),
        );
        let corrupt_records = Gauge::default();
        registry.register(
            "corrupt_records",
            "Stored records that failed their checksum",
            corrupt_records.clone(),
        );
        let hints_expired = Gauge::default();
        registry.register(
            "hints_expired",
            "Hints dropped undelivered because they outlived the tombstone grace period",
            hints_expired.clone(),
        );
        let actor_renewals = Gauge::default();
        registry.register(
            "actor_renewals",
            "Times this node began numbering versions as a new actor because it may have lost versions it numbered (not counting starts)",
            actor_renewals.clone(),
        );
        let storage_bytes = Gauge::default();
        registry.register("storage_bytes", "Bytes the store occupies on disk", storage_bytes.clone());
        let storage_syncs = Gauge::default();
        registry.register("storage_syncs", "Fsyncs made by group commit", storage_syncs.clone());
        Metrics {
            registry,
            requests,
            request_seconds,
            quorum_failures,
            read_repairs,
            lag,
            sibling_warnings,
            peer_errors,
            forwarded,
            stall_hand_offs,
            member_transitions,
            hints_stored,
            hints_delivered,
            hints_pending,
            sloppy_writes,
            aae_exchanges,
            aae_keys_repaired,
            aae_bytes,
            tombstones_reaped,
            layout_version,
            partitions_syncing,
            partitions_moving,
            stray_keys_moved,
            not_owner_answers,
            refusals,
            corrupt_records,
            hints_expired,
            actor_renewals,
            storage_bytes,
            storage_syncs,
        }
    }

    /// Records one finished client request.
    pub fn observe_request(&self, op: &'static str, status: u16, seconds: f64) {
        let labels = RequestLabels { op, status };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds.get_or_create(&labels).observe(seconds);
    }

    /// Registers a further metric (workers add theirs at start-up).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The text exposition, with storage figures read now.
    pub fn render(&self, stats: &StoreStats, disk_bytes: u64) -> String {
        self.corrupt_records.set(stats.corrupt_records.load(Ordering::Relaxed) as i64);
        self.storage_syncs.set(stats.syncs.load(Ordering::Relaxed) as i64);
        self.hints_expired.set(stats.hints_expired.load(Ordering::Relaxed) as i64);
        self.actor_renewals.set(stats.actor_renewals.load(Ordering::Relaxed) as i64);
        self.storage_bytes.set(disk_bytes as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
