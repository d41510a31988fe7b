//! `quorumkv-node`: parse arguments, load config, run the node (or a local dev cluster).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use quorumkv_node::Config;
use quorumkv_node::quorum::Quorum;
use tokio_util::sync::CancellationToken;

/// mimalloc instead of the system allocator: requests allocate and free many small
/// buffers across threads, where glibc's malloc cost about a tenth of a node's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A quorumkv database node. Every flag can also come from the TOML file given with
/// --config and from a QUORUMKV_<FLAG> environment variable; flags win.
#[derive(Parser, Debug)]
#[command(name = "quorumkv-node", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a local cluster on loopback for trying things out (Ctrl-C stops every node).
    Dev(DevArgs),
    /// Write a new random cluster secret to FILE (mode 600), unless FILE exists; for
    /// set-ups that make one for the operator (containers).
    Secret {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
struct NodeArgs {
    /// TOML configuration file (see node/quorumkv.example.toml).
    #[arg(long, env = "QUORUMKV_CONFIG")]
    config: Option<PathBuf>,
    /// Stable name of this node [default: generated on first start, kept in the data dir].
    #[arg(long, env = "QUORUMKV_NODE_ID")]
    node_id: Option<String>,
    /// Client API address [default: 127.0.0.1:7070].
    #[arg(long, env = "QUORUMKV_LISTEN")]
    listen: Option<SocketAddr>,
    /// Peer (internode) address [default: 127.0.0.1:7071].
    #[arg(long, env = "QUORUMKV_PEER_LISTEN")]
    peer_listen: Option<SocketAddr>,
    /// Client address others should use, if it differs from --listen.
    #[arg(long, env = "QUORUMKV_ADVERTISE")]
    advertise: Option<String>,
    /// Peer address others should use, if it differs from --peer-listen.
    #[arg(long, env = "QUORUMKV_PEER_ADVERTISE")]
    peer_advertise: Option<String>,
    /// Where everything is stored [default: ./data].
    #[arg(long, env = "QUORUMKV_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Peer address of another member (repeatable; comma-separated in the environment).
    #[arg(long = "seed", env = "QUORUMKV_SEED", value_delimiter = ',')]
    seeds: Vec<String>,
    /// N, copies of each key, fixed when a cluster is created [default: 3 with seeds, 1 alone].
    #[arg(long, env = "QUORUMKV_REPLICAS")]
    replicas: Option<usize>,
    /// Partition count, a power of two, fixed when a cluster is created [default: 64].
    #[arg(long, env = "QUORUMKV_PARTITIONS")]
    partitions: Option<u32>,
    /// Largest value accepted, in bytes [default: 1048576].
    #[arg(long, env = "QUORUMKV_MAX_VALUE_BYTES")]
    max_value_bytes: Option<usize>,
    /// Default r: a number, one, quorum or all [default: quorum].
    #[arg(long, env = "QUORUMKV_DEFAULT_R")]
    default_r: Option<Quorum>,
    /// Default w: a number, one, quorum or all [default: quorum].
    #[arg(long, env = "QUORUMKV_DEFAULT_W")]
    default_w: Option<Quorum>,
    /// Default dw [default: 0].
    #[arg(long, env = "QUORUMKV_DEFAULT_DW")]
    default_dw: Option<usize>,
    /// Default request deadline in milliseconds [default: 5000].
    #[arg(long, env = "QUORUMKV_DEFAULT_TIMEOUT_MS")]
    default_timeout_ms: Option<u64>,
    /// Virtual tokens each node places on the ring [default: 256].
    #[arg(long, env = "QUORUMKV_VNODES")]
    vnodes: Option<u32>,
    /// Deadline of one peer call in milliseconds [default: 2000].
    #[arg(long, env = "QUORUMKV_PEER_TIMEOUT_MS")]
    peer_timeout_ms: Option<u64>,
    /// Calls in flight to one peer at most [default: 256].
    #[arg(long, env = "QUORUMKV_PEER_MAX_IN_FLIGHT")]
    peer_max_in_flight: Option<usize>,
    /// Failure detector ping interval in milliseconds [default: 200].
    #[arg(long, env = "QUORUMKV_HEARTBEAT_INTERVAL_MS")]
    heartbeat_interval_ms: Option<u64>,
    /// Failure detector suspicion threshold [default: 6].
    #[arg(long, env = "QUORUMKV_PHI_THRESHOLD")]
    phi_threshold: Option<f64>,
    /// Keep hints for replicas that miss a write [default: true].
    #[arg(long, env = "QUORUMKV_HINTED_HANDOFF")]
    hinted_handoff: Option<bool>,
    /// Hints delivered per second at most [default: 5000].
    #[arg(long, env = "QUORUMKV_HINT_RATE")]
    hint_rate: Option<u32>,
    /// Keys per second this node reads for key listings at most [default: 100000].
    #[arg(long, env = "QUORUMKV_LIST_KEYS_PER_SECOND")]
    list_keys_per_second: Option<u32>,
    /// Anti-entropy sweep interval in milliseconds [default: 60000].
    #[arg(long, env = "QUORUMKV_AAE_INTERVAL_MS")]
    aae_interval_ms: Option<u64>,
    /// Merkle tree rebuild interval in seconds [default: 3600].
    #[arg(long, env = "QUORUMKV_AAE_REBUILD_INTERVAL_S")]
    aae_rebuild_interval_s: Option<u64>,
    /// The secret every member shares, at least 16 bytes (prefer the environment or a file:
    /// a flag shows in the process list).
    #[arg(long, env = "QUORUMKV_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Option<String>,
    /// A file holding the cluster secret.
    #[arg(long, env = "QUORUMKV_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// This node's weight in placement (its share of partitions is proportional) [default: 1].
    #[arg(long, env = "QUORUMKV_CAPACITY")]
    capacity: Option<u32>,
    /// This node's zone (rack, data centre): replicas spread over zones.
    #[arg(long, env = "QUORUMKV_ZONE")]
    zone: Option<String>,
    /// Anti-entropy and partition transfers, MiB per second at most; 0: no limit [default: 8].
    #[arg(long, env = "QUORUMKV_TRANSFER_RATE_MIB")]
    transfer_rate_mib: Option<u64>,
    /// Tombstone grace period in milliseconds [default: 3600000].
    #[arg(long, env = "QUORUMKV_TOMBSTONE_GRACE_MS")]
    tombstone_grace_ms: Option<u64>,
    /// Storage threads [default: half the cores, at least 1].
    #[arg(long, env = "QUORUMKV_STORAGE_THREADS")]
    storage_threads: Option<usize>,
    /// Journal fsync interval in milliseconds when anything was written; 0: off [default: 50].
    #[arg(long, env = "QUORUMKV_JOURNAL_SYNC_MS")]
    journal_sync_ms: Option<u64>,
    /// CPU niceness of the background threads (the storage engine's flushes and
    /// compactions; anti-entropy and listing scans), 0 to 19; 0 leaves them at the
    /// node's priority [default: 19].
    #[arg(long, env = "QUORUMKV_BACKGROUND_NICE")]
    background_nice: Option<u8>,
    /// How long shutdown waits for in-flight requests, in milliseconds [default: 10000].
    #[arg(long, env = "QUORUMKV_SHUTDOWN_GRACE_MS")]
    shutdown_grace_ms: Option<u64>,
    /// A request body must arrive within this many milliseconds [default: 10000].
    #[arg(long, env = "QUORUMKV_REQUEST_READ_TIMEOUT_MS")]
    request_read_timeout_ms: Option<u64>,
    /// Connections each listener serves at once [default: 1024].
    #[arg(long, env = "QUORUMKV_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Client requests served at once; past it a 503 with Retry-After [default: 1024].
    #[arg(long, env = "QUORUMKV_MAX_REQUESTS_IN_FLIGHT")]
    max_requests_in_flight: Option<usize>,
    /// A client bearer token, `rw:TOKEN` or `ro:TOKEN` (repeatable; the environment
    /// variable takes them comma-separated). None: the client API is open.
    #[arg(
        long = "client-token",
        env = "QUORUMKV_CLIENT_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    client_tokens: Vec<String>,
}

#[derive(Args, Debug)]
struct DevArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Node i serves its client API on base-port + 2i and its peer listener on base-port + 2i + 1.
    #[arg(long, default_value_t = 7070)]
    base_port: u16,
    /// Each node stores under DATA_DIR/node-i.
    #[arg(long, default_value = "./dev-data")]
    data_dir: PathBuf,
}

impl NodeArgs {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                Config::from_toml(&text).with_context(|| format!("in {}", path.display()))?
            }
            None => Config::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { c.$field = v; } )* };
        }
        set!(
            listen,
            peer_listen,
            data_dir,
            partitions,
            max_value_bytes,
            default_r,
            default_w,
            default_dw,
            default_timeout_ms,
            vnodes,
            peer_timeout_ms,
            peer_max_in_flight,
            shutdown_grace_ms,
            heartbeat_interval_ms,
            phi_threshold,
            hint_rate,
            list_keys_per_second,
            storage_threads,
            journal_sync_ms,
            background_nice,
            hinted_handoff,
            aae_interval_ms,
            aae_rebuild_interval_s,
            transfer_rate_mib,
            tombstone_grace_ms,
            capacity,
            request_read_timeout_ms,
            max_connections,
            max_requests_in_flight
        );
        if !self.client_tokens.is_empty() {
            c.client_tokens = self.client_tokens.into_iter().map(quorumkv_node::config::Secret).collect();
        }
        if self.zone.is_some() {
            c.zone = self.zone;
        }
        if let Some(secret) = self.cluster_secret {
            c.cluster_secret = Some(quorumkv_node::config::Secret(secret));
        }
        if self.cluster_secret_file.is_some() {
            c.cluster_secret_file = self.cluster_secret_file;
        }
        if self.node_id.is_some() {
            c.node_id = self.node_id;
        }
        if self.advertise.is_some() {
            c.advertise = self.advertise;
        }
        if self.peer_advertise.is_some() {
            c.peer_advertise = self.peer_advertise;
        }
        if self.replicas.is_some() {
            c.replicas = self.replicas;
        }
        if !self.seeds.is_empty() {
            c.seeds = self.seeds;
        }
        c.validate()?;
        Ok(c)
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = tokio::spawn(stop_on_signal(shutdown.clone()));
        let ran = match cli.command {
            None => match cli.node.into_config() {
                Ok(config) => quorumkv_node::run(config, shutdown, None).await.map_err(anyhow::Error::from),
                Err(e) => Err(e),
            },
            Some(Command::Dev(dev)) => run_dev(dev, cli.node, shutdown).await,
            Some(Command::Secret { out }) => ensure_secret(&out).map(|made| {
                let what = if made { "wrote a new cluster secret to" } else { "kept the cluster secret in" };
                println!("{what} {}", out.display());
            }),
        };
        signals.abort();
        ran
    })
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}

/// Writes 32 random hex digits to `path` (mode 600) unless it exists; whether it wrote.
fn ensure_secret(path: &std::path::Path) -> anyhow::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut random = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut random)?;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(path, hex + "\n").with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(true)
}

/// Runs `dev.nodes` nodes in this process, each with its own data directory and ports.
async fn run_dev(dev: DevArgs, base: NodeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut base = base.into_config()?;
    if base.secret()?.is_none() {
        // The dev cluster's nodes share a secret made on its first start and kept beside
        // their data, so a node started by hand can join them.
        let path = dev.data_dir.join("cluster.secret");
        ensure_secret(&path)?;
        println!("cluster secret: {} (give it to a node that joins: --cluster-secret-file)", path.display());
        base.cluster_secret_file = Some(path);
    }
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let port = |i: u16, peer: u16| -> anyhow::Result<u16> {
        dev.base_port.checked_add(2 * i + peer).context("--base-port too high for that many nodes")
    };
    let mut peers = Vec::new();
    for i in 0..dev.nodes {
        peers.push(addr(port(i, 1)?).to_string());
    }
    let mut nodes = tokio::task::JoinSet::new();
    for i in 0..dev.nodes {
        let config = Config {
            node_id: Some(format!("node-{}", i + 1)),
            listen: addr(port(i, 0)?),
            peer_listen: addr(port(i, 1)?),
            data_dir: dev.data_dir.join(format!("node-{}", i + 1)),
            seeds: if dev.nodes > 1 {
                peers.iter().filter(|p| **p != peers[i as usize]).cloned().collect()
            } else {
                vec![]
            },
            ..base.clone()
        };
        println!(
            "node-{}: client API http://{}  peer {}  data {}",
            i + 1,
            config.listen,
            config.peer_listen,
            config.data_dir.display()
        );
        nodes.spawn(quorumkv_node::run(config, shutdown.clone(), None));
    }
    println!("Ctrl-C stops every node.");
    while let Some(result) = nodes.join_next().await {
        if let Err(e) = result? {
            shutdown.cancel();
            return Err(e.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag reaches the config (a flag that parses but is dropped is worse than none).
    #[test]
    fn every_flag_overrides_its_config_field() {
        let cli = Cli::try_parse_from([
            "quorumkv-node",
            "--node-id=n1",
            "--listen=127.0.0.1:1",
            "--peer-listen=127.0.0.1:2",
            "--advertise=a:1",
            "--peer-advertise=a:2",
            "--data-dir=/tmp/x",
            "--seed=s1:1",
            "--seed=s2:1",
            "--replicas=2",
            "--partitions=128",
            "--max-value-bytes=77",
            "--default-r=one",
            "--default-w=all",
            "--default-dw=1",
            "--default-timeout-ms=99",
            "--vnodes=16",
            "--peer-timeout-ms=98",
            "--peer-max-in-flight=7",
            "--heartbeat-interval-ms=97",
            "--phi-threshold=3.5",
            "--hinted-handoff=false",
            "--hint-rate=96",
            "--storage-threads=5",
            "--journal-sync-ms=91",
            "--shutdown-grace-ms=95",
            "--aae-interval-ms=94",
            "--aae-rebuild-interval-s=93",
            "--transfer-rate-mib=90",
            "--capacity=4",
            "--zone=rack-2",
            "--tombstone-grace-ms=92",
            "--background-nice=7",
        ])
        .expect("parses");
        let c = cli.node.into_config().expect("valid");
        let expected = Config {
            node_id: Some("n1".into()),
            listen: "127.0.0.1:1".parse().expect("addr"),
            peer_listen: "127.0.0.1:2".parse().expect("addr"),
            advertise: Some("a:1".into()),
            peer_advertise: Some("a:2".into()),
            data_dir: "/tmp/x".into(),
            seeds: vec!["s1:1".into(), "s2:1".into()],
            replicas: Some(2),
            partitions: 128,
            max_value_bytes: 77,
            default_r: Quorum::One,
            default_w: Quorum::All,
            default_dw: 1,
            default_timeout_ms: 99,
            vnodes: 16,
            peer_timeout_ms: 98,
            peer_max_in_flight: 7,
            heartbeat_interval_ms: 97,
            phi_threshold: 3.5,
            hinted_handoff: false,
            hint_rate: 96,
            storage_threads: 5,
            journal_sync_ms: 91,
            background_nice: 7,
            shutdown_grace_ms: 95,
            aae_interval_ms: 94,
            aae_rebuild_interval_s: 93,
            transfer_rate_mib: 90,
            capacity: 4,
            zone: Some("rack-2".into()),
            tombstone_grace_ms: 92,
            ..Config::default()
        };
        assert_eq!(c, expected);
    }
}
