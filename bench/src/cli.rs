//! The command line: what `quorumkv-bench --help` teaches.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use quorumkv_client::Quorum;

use crate::distribution::Distribution;
use crate::workload::{DEFAULT_MAX_SCAN_LENGTH, Mix, Op, ValueSize};

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
    Run(Box<RunArgs>),
    /// Serve a fixed body to every request: the minimal hyper server GETs are compared with.
    BaselineServer(BaselineArgs),
    /// Poll the nodes' /metrics and print chosen metrics (summed over nodes) until one of
    /// them reaches zero: for example hints draining after a node returns.
    Watch(WatchArgs),
}

/// The mix of operations a run sends: YCSB's core workloads by letter, or the bench's
/// older single-purpose workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// YCSB A, update heavy: 50% reads, 50% updates (zipfian keys).
    A,
    /// YCSB B, read mostly: 95% reads, 5% updates (zipfian keys).
    B,
    /// YCSB C, read only (zipfian keys).
    C,
    /// YCSB D, read latest: 95% reads, 5% inserts, reads skewed to the newest keys.
    D,
    /// YCSB E, short ranges: 95% scans (each lists up to `--max-scan-length` keys from
    /// a zipfian start record), 5% inserts.
    E,
    /// YCSB F, read-modify-write: 50% reads, 50% read-modify-writes (zipfian keys).
    F,
    /// Reads only (uniform keys).
    Get,
    /// Blind writes (uniform keys). A key's value is the same bytes on every write, and
    /// identical blind writes collapse into one sibling, so keys do not grow.
    Put,
    /// `--read-ratio` reads, the rest blind writes as in `put` (uniform keys).
    Mixed,
    /// Read-modify-writes only: a GET, then a PUT with the GET's context (one operation
    /// of two requests; uniform keys).
    Update,
    /// The mix `--mix` gives (not a `--workload` value).
    #[value(skip)]
    Custom,
}

impl Workload {
    /// The name `--workload` takes (`custom` for a `--mix`).
    pub fn name(self) -> &'static str {
        match self {
            Workload::A => "a",
            Workload::B => "b",
            Workload::C => "c",
            Workload::D => "d",
            Workload::E => "e",
            Workload::F => "f",
            Workload::Get => "get",
            Workload::Put => "put",
            Workload::Mixed => "mixed",
            Workload::Update => "update",
            Workload::Custom => "custom",
        }
    }
}

/// The system a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// quorumkv's HTTP API.
    Quorumkv,
    /// An etcd 3.4 cluster through its v3 JSON gateway (`--node` its client addresses), to
    /// compare with.
    Etcd,
}

/// Whether a run first writes its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Load {
    /// Load when the workload reads and a sample of 100 records does not read back.
    Auto,
    /// Write every record before the run.
    Always,
    /// Never load.
    Never,
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

    /// The system the nodes are.
    #[arg(long, value_enum, default_value = "quorumkv")]
    pub target: System,

    /// The operation mix: a YCSB core workload (a, b, c, d, e, f) or get, put, mixed, update.
    #[arg(long, value_enum, default_value = "get")]
    pub workload: Workload,

    /// A mix of your own instead of `--workload`: weights of read, update, insert, rmw
    /// (read-modify-write), put (blind write) and scan (a listing of the keys from a
    /// record on), e.g. `read=90,update=10`.
    #[arg(long, conflicts_with = "workload")]
    pub mix: Option<Mix>,

    /// Fraction of reads in the `mixed` workload.
    #[arg(long, default_value_t = 0.5, value_parser = parse_ratio)]
    pub read_ratio: f64,

    /// Which keys operations touch, and where scans start [default: zipfian for a, b,
    /// c, e, f and --mix; latest for d; uniform for get, put, mixed, update].
    #[arg(long, value_enum)]
    pub distribution: Option<Distribution>,

    /// Records the workload works on: keys `k0000000000` up to this count (inserts add
    /// more beyond it).
    #[arg(long, visible_alias = "keys", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub records: u64,

    /// Bytes per value: a size, or a range `min..max` over which keys' sizes are spread
    /// uniformly (each key keeps its size).
    #[arg(long, default_value = "1024")]
    pub value_size: ValueSize,

    /// The longest scan: each asks for a number of keys uniform over 1 to this (YCSB's
    /// `maxscanlength`; a listing page holds at most 10,000).
    #[arg(long, default_value_t = DEFAULT_MAX_SCAN_LENGTH, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_scan_length: u64,

    /// Write the records before the run (blind, at `--w`/`--dw`, all clients): `auto`
    /// loads when the workload reads or scans and a sample of them does not read back.
    #[arg(long, value_enum, default_value = "auto")]
    pub load: Load,

    /// The same as `--load always`. With `--duration 0s` and `--warmup 0s` a run only
    /// loads: a fixed number of writes, e.g. to make hints.
    #[arg(long, conflicts_with = "load")]
    pub preload: bool,

    /// Concurrent clients: requests in flight in closed loop, schedules in `--rate` mode.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency: u64,

    /// How long to measure, after the warm-up (`10s`, `500ms`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Measure this many operations instead of a duration (after the warm-up).
    #[arg(long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub operations: Option<u64>,

    /// How long to run before measuring.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Bucket the keys live in (with etcd, a prefix: `bucket/key`).
    #[arg(long, default_value = "bench")]
    pub bucket: String,

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
    /// (The etcd target always uses such connections.)
    #[arg(long)]
    pub raw: bool,

    /// Which node each request goes to (quorumkv; etcd requests rotate over the nodes).
    #[arg(long, value_enum, default_value = "ring")]
    pub routing: Routing,

    /// A metric to read from every `--node`'s /metrics at the start and the end of the
    /// measured window (summed over nodes and label sets); the report shows the change.
    /// Repeatable, e.g. `--metric quorumkv_storage_syncs`.
    #[arg(long = "metric")]
    pub metrics: Vec<String>,

    /// Print the report as one JSON object (with the per-second series) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Also write the report as one self-contained HTML file with charts over time.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Print a line per second on stderr (operations, errors, p99 and slowest operation)
    /// when stderr is not a terminal; on a terminal a progress bar is always shown.
    #[arg(long)]
    pub progress: bool,
}

impl RunArgs {
    /// The workload's name as the report gives it (`custom` for `--mix`).
    pub fn workload_name(&self) -> &'static str {
        if self.mix.is_some() { Workload::Custom.name() } else { self.workload.name() }
    }

    /// The operation mix `--mix` or `--workload` asks for.
    pub fn op_mix(&self) -> Mix {
        if let Some(mix) = self.mix {
            return mix;
        }
        let only = |op| Mix::new(&[(op, 1.0)]).unwrap_or_else(|_| Mix::ycsb_c());
        match self.workload {
            Workload::A => Mix::ycsb_a(),
            Workload::B => Mix::ycsb_b(),
            Workload::C | Workload::Custom => Mix::ycsb_c(),
            Workload::D => Mix::ycsb_d(),
            Workload::E => Mix::ycsb_e(),
            Workload::F => Mix::ycsb_f(),
            Workload::Get => only(Op::Read),
            Workload::Put => only(Op::Put),
            Workload::Update => only(Op::Rmw),
            Workload::Mixed => Mix::new(&[(Op::Read, self.read_ratio), (Op::Put, 1.0 - self.read_ratio)])
                .unwrap_or_else(|_| only(Op::Read)),
        }
    }

    /// The key distribution `--distribution` asks for, or the workload's.
    pub fn key_distribution(&self) -> Distribution {
        if let Some(d) = self.distribution {
            return d;
        }
        if self.mix.is_some() {
            return Distribution::Zipfian;
        }
        match self.workload {
            Workload::A | Workload::B | Workload::C | Workload::E | Workload::F | Workload::Custom => {
                Distribution::Zipfian
            }
            Workload::D => Distribution::Latest,
            Workload::Get | Workload::Put | Workload::Mixed | Workload::Update => Distribution::Uniform,
        }
    }

    /// `--load`, with `--preload` as `always`.
    pub fn load_mode(&self) -> Load {
        if self.preload { Load::Always } else { self.load }
    }

    /// Refuses combinations of flags that cannot work together.
    ///
    /// # Errors
    /// A message naming the flags.
    pub fn check(&self) -> Result<(), String> {
        if self.target == System::Etcd && (self.r.is_some() || self.w.is_some() || self.dw.is_some()) {
            return Err("--r, --w and --dw are quorumkv's: etcd has no per-request quorum".into());
        }
        if self.target == System::Etcd && !self.metrics.is_empty() {
            return Err("--metric reads quorumkv's /metrics; etcd's are not summed here".into());
        }
        Ok(())
    }
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
        assert_eq!(run.target, System::Quorumkv);
        assert_eq!((run.concurrency, run.records), (64, 100_000));
        assert_eq!(run.value_size, ValueSize { min: 1024, max: 1024 });
        assert_eq!((run.duration, run.warmup), (Duration::from_secs(10), Duration::from_secs(2)));
        assert_eq!(run.read_ratio, 0.5);
        assert_eq!((run.r, run.w, run.dw, run.rate, run.operations), (None, None, None, None, None));
        assert_eq!(run.routing, Routing::Ring);
        assert_eq!(run.load_mode(), Load::Auto);
        assert_eq!(run.key_distribution(), Distribution::Uniform);
        assert_eq!(run.op_mix().to_string(), "read 100%");
        assert_eq!(run.max_scan_length, 100, "YCSB's maxscanlength");
        assert!(!run.raw && !run.preload && !run.json && !run.progress && run.html.is_none());
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
        assert_eq!(run.records, 5, "--keys is --records");
        assert_eq!(run.load_mode(), Load::Always, "--preload is --load always");
        assert_eq!(run.op_mix().to_string(), "rmw 100%", "the old update workload is a read-modify-write");
        assert_eq!((run.r, run.w, run.dw), (Some(Quorum::Majority), Some(Quorum::Count(2)), Some(1)));
        assert_eq!(run.rate, Some(1000.0));
        assert_eq!(run.duration, Duration::from_millis(500));
        assert_eq!(run.routing, Routing::RoundRobin);
        assert_eq!(run.metrics, ["x"]);
        assert!(run.raw && run.preload && run.json);
    }

    fn run_args(args: &[&str]) -> RunArgs {
        let all: Vec<&str> = ["run", "--node", "a:1"].into_iter().chain(args.iter().copied()).collect();
        match parse(&all) {
            Ok(Cli { command: Command::Run(run), .. }) => *run,
            other => panic!("{args:?} did not parse as a run: {other:?}"),
        }
    }

    #[test]
    fn ycsb_workloads_have_their_mixes_and_distributions() {
        for (name, mix, distribution) in [
            ("a", "read 50%, update 50%", Distribution::Zipfian),
            ("b", "read 95%, update 5%", Distribution::Zipfian),
            ("c", "read 100%", Distribution::Zipfian),
            ("d", "read 95%, insert 5%", Distribution::Latest),
            ("e", "insert 5%, scan 95%", Distribution::Zipfian),
            ("f", "read 50%, rmw 50%", Distribution::Zipfian),
            ("get", "read 100%", Distribution::Uniform),
            ("put", "put 100%", Distribution::Uniform),
            ("update", "rmw 100%", Distribution::Uniform),
        ] {
            let run = run_args(&["--workload", name]);
            assert_eq!(run.op_mix().to_string(), mix, "{name}");
            assert_eq!(run.key_distribution(), distribution, "{name}");
            assert_eq!(run.workload_name(), name);
        }
        let mixed = run_args(&["--workload", "mixed", "--read-ratio", "0.9"]);
        assert_eq!(mixed.op_mix().to_string(), "read 90%, put 10%");
        let latest_a = run_args(&["--workload", "a", "--distribution", "uniform"]);
        assert_eq!(latest_a.key_distribution(), Distribution::Uniform);
    }

    #[test]
    fn run_takes_the_ycsb_options() {
        let run = run_args(&[
            "--mix",
            "read=90,update=10",
            "--records",
            "1000",
            "--value-size",
            "512..2048",
            "--load",
            "never",
            "--operations",
            "5000",
            "--target",
            "etcd",
            "--html",
            "r.html",
        ]);
        assert_eq!(run.workload_name(), "custom");
        assert_eq!(run.op_mix().to_string(), "read 90%, update 10%");
        assert_eq!(run.key_distribution(), Distribution::Zipfian);
        assert_eq!((run.records, run.operations), (1000, Some(5000)));
        assert_eq!(run.value_size, ValueSize { min: 512, max: 2048 });
        assert_eq!(run.load_mode(), Load::Never);
        assert_eq!(run.target, System::Etcd);
        assert_eq!(run.html.as_deref(), Some(std::path::Path::new("r.html")));
        assert_eq!(run.check(), Ok(()));
        let quorum = run_args(&["--target", "etcd", "--w", "2"]);
        assert!(quorum.check().unwrap_err().contains("etcd has no per-request quorum"));
    }

    #[test]
    fn scans_parse_in_a_mix_and_for_etcd() {
        let run = run_args(&["--mix", "scan=1", "--max-scan-length", "5"]);
        assert_eq!(run.op_mix().to_string(), "scan 100%");
        assert_eq!((run.max_scan_length, run.key_distribution()), (5, Distribution::Zipfian));
        assert_eq!(run_args(&["--workload", "e", "--target", "etcd"]).check(), Ok(()));
    }

    #[test]
    fn bad_ycsb_options_say_why() {
        let error = |args: &[&str]| {
            let all: Vec<&str> = ["run", "--node", "a:1"].into_iter().chain(args.iter().copied()).collect();
            parse(&all).expect_err("should be refused").to_string()
        };
        assert!(error(&["--mix", "read=-1"]).contains("non-negative"));
        assert!(error(&["--mix", "read=0"]).contains("sum to more than zero"));
        assert!(error(&["--mix", "list=1"]).contains("unknown operation `list`"));
        assert!(error(&["--max-scan-length", "0"]).contains("0"));
        assert!(error(&["--max-scan-length", "10001"]).contains("10001"));
        assert!(error(&["--mix", "read=1", "--workload", "a"]).contains("cannot be used with"));
        assert!(error(&["--value-size", "9..3"]).contains("smallest size comes first"));
        assert!(error(&["--operations", "5", "--duration", "1s"]).contains("cannot be used with"));
        assert!(error(&["--operations", "0"]).contains("0"));
        assert!(error(&["--preload", "--load", "never"]).contains("cannot be used with"));
        assert!(error(&["--distribution", "pareto"]).contains("pareto"));
        assert!(error(&["--target", "redis"]).contains("redis"));
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
