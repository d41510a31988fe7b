//! The command line: what `quorumkv-bench --help` teaches.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use quorumkv_client::Quorum;

/// Load generator for quorumkv's HTTP API. Send load to loopback or to machines you own,
/// and quote medians of several runs: one run on a shared machine is an anecdote.
#[derive(Debug, Parser)]
#[command(name = "quorumkv-bench", version)]
pub struct Cli {
    /// Worker threads of the bench's own runtime [default: one per core]. On a small
    /// machine the bench competes with the nodes for the same cores.
    #[arg(long, global = true)]
    pub threads: Option<usize>,

    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive a workload against one or more nodes and report ops/s, errors and latency.
    Run(RunArgs),
    /// Serve a fixed body to every request: the minimal hyper server GETs are compared with.
    BaselineServer(BaselineArgs),
    /// Poll the nodes' /metrics and print chosen metrics (summed over nodes) until one of
    /// them reaches zero: for example hints draining after a node returns.
    Watch(WatchArgs),
}

/// The mix of requests a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Reads only (use `--preload`, or every read is a 404 counted as an error).
    Get,
    /// Blind writes of the same bytes per run: identical blind writes collapse into one
    /// sibling, so keys do not grow.
    Put,
    /// `--read-ratio` reads, the rest blind writes as in `put`.
    Mixed,
    /// Read-modify-write: a GET, then a PUT with the GET's context (one read and one
    /// update per op).
    Update,
}

/// Which node each request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// Straight to a replica of the key, from the cluster's ring (the client's default).
    Ring,
    /// Everything to the first `--node`; the node forwards or coordinates.
    First,
    /// Client i sends everything to node i mod n, like a load balancer would.
    RoundRobin,
}

/// `quorumkv-bench run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Client API address of a node (`host:port`); repeat for several. Their /metrics are
    /// what `--metric` reads, so give every node when you ask for metrics.
    #[arg(long = "node", required = true)]
    pub nodes: Vec<String>,

    /// The request mix.
    #[arg(long, value_enum, default_value = "get")]
    pub workload: Workload,

    /// Fraction of reads in the `mixed` workload.
    #[arg(long, default_value_t = 0.5, value_parser = parse_ratio)]
    pub read_ratio: f64,

    /// Concurrent clients: requests in flight in closed loop, schedules in `--rate` mode.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency: u64,

    /// How long to measure, after the warm-up (`10s`, `500ms`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// How long to run before measuring.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Bytes per value.
    #[arg(long, default_value_t = 1024)]
    pub value_size: usize,

    /// Distinct keys, chosen uniformly at random.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,

    /// Bucket the keys live in.
    #[arg(long, default_value = "bench")]
    pub bucket: String,

    /// Write every key once before the run (blind, at `--w`/`--dw`). With `--duration 0s`
    /// and `--warmup 0s` a run only preloads: a fixed number of writes, e.g. to make hints.
    #[arg(long)]
    pub preload: bool,

    /// `r` of every read: a number, one, quorum or all [default: the node's].
    #[arg(long)]
    pub r: Option<Quorum>,

    /// `w` of every write [default: the node's].
    #[arg(long)]
    pub w: Option<Quorum>,

    /// `dw` of every write: how many of the `w` acknowledgements come after an fsync
    /// [default: the node's].
    #[arg(long)]
    pub dw: Option<usize>,

    /// Deadline of one request.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Open loop: start ops at this fixed total rate (ops/s) whatever the latency, and
    /// measure each from its intended start, so a stall is not hidden (no coordinated
    /// omission). Without it, each client sends its next op when the last one answered.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Drive the HTTP API with a lean hyper connection per client and node instead of
    /// `quorumkv-client`, so the figures measure the server rather than the client.
    #[arg(long)]
    pub raw: bool,

    /// Which node each request goes to.
    #[arg(long, value_enum, default_value = "ring")]
    pub routing: Routing,

    /// A metric to read from every `--node`'s /metrics at the start and the end of the
    /// measured window (summed over nodes and label sets); the report shows the change.
    /// Repeatable, e.g. `--metric quorumkv_storage_syncs`.
    #[arg(long = "metric")]
    pub metrics: Vec<String>,

    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// Print a line per second on stderr (operations, errors, slowest operation), to see
    /// stalls that a whole-run percentile blurs.
    #[arg(long)]
    pub progress: bool,
}

/// `quorumkv-bench baseline-server`.
#[derive(Debug, Clone, Args)]
pub struct BaselineArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Bytes in every answer's body.
    #[arg(long, default_value_t = 1024)]
    pub body_size: usize,
}

/// `quorumkv-bench watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Client API address of a node; repeat for every node to sum over.
    #[arg(long = "node", required = true)]
    pub nodes: Vec<String>,

    /// A metric to print, summed over nodes and label sets; repeatable.
    #[arg(long = "metric", required = true)]
    pub metrics: Vec<String>,

    /// Stop when this metric's sum is zero (after it was seen above zero, or at once if
    /// it never is within `--timeout`).
    #[arg(long)]
    pub until_zero: Option<String>,

    /// A counter whose growth is the work done (e.g. `quorumkv_hints_delivered_total`):
    /// the summary divides it by the time it took.
    #[arg(long)]
    pub rate_of: Option<String>,

    /// Time between polls.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub interval: Duration,

    /// Give up after this long.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Parses `250ms`, `10s`, `1.5s`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| format!("`{text}` is not a duration like 500ms, 10s or 2m"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit `{other}` in `{text}`: use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{text}` is not a fraction between 0 and 1")),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("`{text}` is not a positive rate in ops/s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("quorumkv-bench").chain(args.iter().copied()))
    }

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn run_has_the_documented_defaults() {
        let Command::Run(run) = parse(&["run", "--node", "127.0.0.1:9000"]).unwrap().command else {
            panic!("not a run");
        };
        assert_eq!(run.nodes, ["127.0.0.1:9000"]);
        assert_eq!(run.workload, Workload::Get);
        assert_eq!((run.concurrency, run.value_size, run.keys), (64, 1024, 100_000));
        assert_eq!((run.duration, run.warmup), (Duration::from_secs(10), Duration::from_secs(2)));
        assert_eq!(run.read_ratio, 0.5);
        assert_eq!((run.r, run.w, run.dw, run.rate), (None, None, None, None));
        assert_eq!(run.routing, Routing::Ring);
        assert!(!run.raw && !run.preload && !run.json && !run.progress);
    }

    #[test]
    fn run_takes_every_option() {
        let cli = parse(&[
            "--threads",
            "1",
            "run",
            "--node",
            "a:1",
            "--node",
            "b:2",
            "--workload",
            "update",
            "--read-ratio",
            "0.9",
            "--concurrency",
            "8",
            "--duration",
            "500ms",
            "--warmup",
            "0s",
            "--value-size",
            "10",
            "--keys",
            "5",
            "--r",
            "quorum",
            "--w",
            "2",
            "--dw",
            "1",
            "--rate",
            "1000",
            "--raw",
            "--routing",
            "round-robin",
            "--metric",
            "x",
            "--json",
            "--preload",
        ])
        .unwrap();
        assert_eq!(cli.threads, Some(1));
        let Command::Run(run) = cli.command else { panic!("not a run") };
        assert_eq!(run.nodes, ["a:1", "b:2"]);
        assert_eq!(run.workload, Workload::Update);
        assert_eq!((run.r, run.w, run.dw), (Some(Quorum::Majority), Some(Quorum::Count(2)), Some(1)));
        assert_eq!(run.rate, Some(1000.0));
        assert_eq!(run.duration, Duration::from_millis(500));
        assert_eq!(run.routing, Routing::RoundRobin);
        assert_eq!(run.metrics, ["x"]);
        assert!(run.raw && run.preload && run.json);
    }

    #[test]
    fn run_refuses_what_cannot_work() {
        assert!(parse(&["run"]).is_err(), "a node is required");
        assert!(parse(&["run", "--node", "a:1", "--read-ratio", "1.5"]).is_err());
        assert!(parse(&["run", "--node", "a:1", "--rate", "0"]).is_err());
        assert!(parse(&["run", "--node", "a:1", "--concurrency", "0"]).is_err());
        assert!(parse(&["run", "--node", "a:1", "--keys", "0"]).is_err());
        assert!(parse(&["run", "--node", "a:1", "--r", "most"]).is_err());
        assert!(parse(&["run", "--node", "a:1", "--workload", "scan"]).is_err());
    }

    #[test]
    fn baseline_and_watch_parse() {
        let Command::BaselineServer(b) =
            parse(&["baseline-server", "--listen", "127.0.0.1:1"]).unwrap().command
        else {
            panic!("not baseline-server");
        };
        assert_eq!((b.listen.as_str(), b.body_size), ("127.0.0.1:1", 1024));
        let Command::Watch(w) = parse(&[
            "watch",
            "--node",
            "a:1",
            "--metric",
            "quorumkv_hints_pending",
            "--until-zero",
            "quorumkv_hints_pending",
            "--interval",
            "1s",
        ])
        .unwrap()
        .command
        else {
            panic!("not watch");
        };
        assert_eq!(w.until_zero.as_deref(), Some("quorumkv_hints_pending"));
        assert_eq!(w.interval, Duration::from_secs(1));
    }
}
