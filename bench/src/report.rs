//! What a run prints: as text for people, as one JSON object for scripts (the HTML
//! report in [`crate::html`] is made from the same [`Report`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{Routing, RunArgs, System};
use crate::distribution::Distribution;
use crate::latency::Summary;
use crate::load::LoadReport;
use crate::run::Recorder;
use crate::series::SecondSummary;
use crate::workload::{Mix, Op, ValueSize};

/// The outcome of one run, with the settings that produced it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The system driven.
    pub target: System,
    /// The workload's name (`a`, `get`, ... or `custom` for `--mix`).
    pub workload: &'static str,
    /// Each operation's share.
    pub mix: Mix,
    /// How keys were chosen.
    pub distribution: Distribution,
    /// `client` (quorumkv-client), `raw` (bare hyper) or `etcd-gateway`.
    pub mode: &'static str,
    /// How requests were spread over nodes.
    pub routing: Routing,
    /// The nodes given.
    pub nodes: Vec<String>,
    /// Concurrent clients.
    pub concurrency: u64,
    /// Open-loop target rate, if any.
    pub target_rate: Option<f64>,
    /// `--operations`, if the run measured a number of operations instead of a duration.
    pub operations_limit: Option<u64>,
    /// Length of the warm-up in seconds.
    pub warmup_s: f64,
    /// Length of the measured window in seconds (after the warm-up).
    pub duration_s: f64,
    /// Bytes per value.
    pub value_size: ValueSize,
    /// The longest scan asked for (`--max-scan-length`), when the mix scans.
    pub max_scan_length: Option<u64>,
    /// Records the run worked on (before its inserts).
    pub records: u64,
    /// New keys inserted during the run (warm-up included).
    pub inserted: u64,
    /// `r`, `w`, `dw` as sent (`None`: the node's default).
    pub r: Option<String>,
    /// See `r`.
    pub w: Option<String>,
    /// See `r`.
    pub dw: Option<usize>,
    /// What the load phase did.
    pub load: LoadReport,
    /// Successful operations in the window (a read-modify-write is one operation of two
    /// requests).
    pub ops: u64,
    /// `ops` per second.
    pub ops_per_sec: f64,
    /// Successful requests per second (GETs, PUTs and listings together).
    pub requests_per_sec: f64,
    /// Failed operations in the window.
    pub errors: u64,
    /// Failed operations by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Latency of successful operations of every kind; in open loop from their intended
    /// start.
    pub latency: Summary,
    /// Per operation of the mix, by name.
    pub operations: BTreeMap<&'static str, OpReport>,
    /// Latency of successful GET requests alone.
    pub get: Summary,
    /// Latency of successful PUT requests alone.
    pub put: Summary,
    /// Latency of successful listing requests (scans) alone.
    pub list: Summary,
    /// Change of each `--metric` over the window, summed over the nodes.
    pub metrics: BTreeMap<String, f64>,
    /// The run second by second, warm-up included.
    pub series: Vec<SecondSummary>,
}

/// One operation's figures over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpReport {
    /// Successful operations per second.
    pub ops_per_sec: f64,
    /// Failed operations.
    pub errors: u64,
    /// Failed operations by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Latency of the successful ones (`count` is how many).
    pub latency: Summary,
    /// Scans only: the keys the successful ones returned, together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
}

/// What a run measured, besides its arguments.
#[derive(Debug, Clone)]
pub struct Outcome<'a> {
    /// `client`, `raw` or `etcd-gateway`.
    pub mode: &'static str,
    /// Every client's recording, merged.
    pub recorder: &'a Recorder,
    /// The per-second series.
    pub series: Vec<SecondSummary>,
    /// How long the measured window lasted.
    pub window: Duration,
    /// What the load phase did.
    pub load: LoadReport,
    /// New keys inserted.
    pub inserted: u64,
    /// Change of each `--metric`.
    pub metrics: BTreeMap<String, f64>,
}

impl Report {
    /// Assembles the report of a run of `args` from what it measured.
    pub fn new(args: &RunArgs, outcome: Outcome<'_>) -> Report {
        let rec = outcome.recorder;
        let secs = outcome.window.as_secs_f64().max(f64::MIN_POSITIVE);
        let mix = args.op_mix();
        let mut all = crate::latency::Latencies::new();
        for l in &rec.ops {
            all.merge(l);
        }
        let mut errors_by_kind = BTreeMap::<String, u64>::new();
        for ((_, kind), n) in &rec.errors {
            *errors_by_kind.entry(kind.clone()).or_default() += n;
        }
        let operations = mix
            .ops()
            .map(|op| {
                let latency = rec.ops[op.index()].summary();
                let errors_by_kind: BTreeMap<String, u64> = rec
                    .errors
                    .iter()
                    .filter(|((o, _), _)| *o == op)
                    .map(|((_, k), n)| (k.clone(), *n))
                    .collect();
                let report = OpReport {
                    ops_per_sec: latency.count as f64 / secs,
                    errors: errors_by_kind.values().sum(),
                    errors_by_kind,
                    latency,
                    keys: (op == Op::Scan).then_some(rec.scanned),
                };
                (op.name(), report)
            })
            .collect();
        let ops = all.count();
        Report {
            target: args.target,
            workload: args.workload_name(),
            mix,
            distribution: args.key_distribution(),
            mode: outcome.mode,
            routing: args.routing,
            nodes: args.nodes.clone(),
            concurrency: args.concurrency,
            target_rate: args.rate,
            operations_limit: args.operations,
            warmup_s: args.warmup.as_secs_f64(),
            duration_s: outcome.window.as_secs_f64(),
            value_size: args.value_size,
            max_scan_length: mix.has(Op::Scan).then_some(args.max_scan_length),
            records: args.records,
            inserted: outcome.inserted,
            r: args.r.map(|q| q.to_string()),
            w: args.w.map(|q| q.to_string()),
            dw: args.dw,
            load: outcome.load,
            ops,
            ops_per_sec: ops as f64 / secs,
            requests_per_sec: (rec.gets.count() + rec.puts.count() + rec.lists.count()) as f64 / secs,
            errors: errors_by_kind.values().sum(),
            errors_by_kind,
            latency: all.summary(),
            operations,
            get: rec.gets.summary(),
            put: rec.puts.summary(),
            list: rec.lists.summary(),
            metrics: outcome.metrics,
            series: outcome.series,
        }
    }

    /// One line of settings: workload, mix, keys, values, scan lengths.
    pub fn workload_line(&self) -> String {
        format!(
            "workload {} ({}), {} keys over {} records{}, {}-byte values{}",
            self.workload,
            self.mix,
            self.distribution.name(),
            self.records,
            if self.inserted > 0 { format!(" (+{} inserted)", self.inserted) } else { String::new() },
            self.value_size,
            self.max_scan_length.map_or_else(String::new, |n| format!(", scans of 1 to {n} keys")),
        )
    }

    /// How many keys the scans returned, in all and per scan; `None` without scans.
    pub fn scan_line(&self) -> Option<String> {
        let scan = self.operations.get(Op::Scan.name())?;
        let keys = scan.keys.unwrap_or(0);
        let per_scan = keys as f64 / scan.latency.count.max(1) as f64;
        Some(format!("scans returned {keys} keys, {per_scan:.1} per scan"))
    }

    /// One line of settings: target, clients, loop, window, quorums.
    pub fn setup_line(&self) -> String {
        let target = match self.target {
            System::Quorumkv => format!(
                "quorumkv via {} ({} routing), r={} w={} dw={}",
                self.mode,
                routing_name(self.routing),
                quorum(&self.r),
                quorum(&self.w),
                self.dw.map_or_else(|| "default".to_string(), |d| d.to_string())
            ),
            System::Etcd => "etcd via its JSON gateway (round robin)".to_string(),
        };
        let pacing = match self.target_rate {
            Some(rate) => format!("open loop at {rate:.0} ops/s (latency from each op's intended start)"),
            None => "closed loop".to_string(),
        };
        let window = match self.operations_limit {
            Some(n) => format!("{n} operations measured in {:.1} s", self.duration_s),
            None => format!("{:.1} s measured", self.duration_s),
        };
        format!(
            "{target}, {} clients, {pacing}, {window} after {:.1} s warm-up",
            self.concurrency, self.warmup_s
        )
    }

    /// The rows of the latency table: each operation, all operations, then each request
    /// kind that happened (GET, PUT, LIST), as (name, ops/s, errors, summary).
    pub fn rows(&self) -> Vec<(String, Option<f64>, Option<u64>, Summary)> {
        let secs = self.duration_s.max(f64::MIN_POSITIVE);
        let mut rows: Vec<_> = self
            .operations
            .iter()
            .map(|(name, op)| (name.to_string(), Some(op.ops_per_sec), Some(op.errors), op.latency))
            .collect();
        // Report order (read, update, insert, rmw, put, scan), not alphabetical.
        rows.sort_by_key(|(name, ..)| Op::ALL.iter().position(|op| op.name() == name));
        if self.operations.len() > 1 {
            rows.push(("all".into(), Some(self.ops_per_sec), Some(self.errors), self.latency));
        }
        for (name, summary) in [("GET req", self.get), ("PUT req", self.put), ("LIST req", self.list)] {
            if summary.count > 0 {
                rows.push((name.into(), Some(summary.count as f64 / secs), None, summary));
            }
        }
        rows
    }

    /// Failed operations by kind and operation: `timeout 3 (read 2, update 1)`.
    pub fn error_lines(&self) -> Vec<String> {
        self.errors_by_kind
            .iter()
            .map(|(kind, n)| {
                let by_op: Vec<String> = self
                    .operations
                    .iter()
                    .filter_map(|(op, r)| r.errors_by_kind.get(kind).map(|k| format!("{op} {k}")))
                    .collect();
                format!("{kind} {n} ({})", by_op.join(", "))
            })
            .collect()
    }

    /// What the load phase did, in one line.
    pub fn load_line(&self) -> String {
        if self.load.loaded {
            let errors: u64 = self.load.errors.values().sum();
            format!(
                "load: wrote {} records in {:.1} s ({:.0} records/s, {errors} errors; {})",
                self.load.records, self.load.seconds, self.load.records_per_sec, self.load.reason
            )
        } else {
            format!("load: skipped ({})", self.load.reason)
        }
    }
}

fn routing_name(routing: Routing) -> &'static str {
    match routing {
        Routing::Ring => "ring",
        Routing::First => "first",
        Routing::RoundRobin => "round-robin",
    }
}

fn quorum(q: &Option<String>) -> &str {
    q.as_deref().unwrap_or("default")
}

/// Microseconds as milliseconds with two decimals.
/// One row of the latency table after its name, as text: count, ops/s, errors, p50, p95,
/// p99, p99.9 and max (an absent rate or error count is an empty cell).
pub fn cells(rate: Option<f64>, errors: Option<u64>, s: &Summary) -> [String; 8] {
    [
        s.count.to_string(),
        rate.map_or_else(String::new, |r| format!("{r:.0}")),
        errors.map_or_else(String::new, |e| e.to_string()),
        ms(s.p50_us),
        ms(s.p95_us),
        ms(s.p99_us),
        ms(s.p999_us),
        ms(s.max_us),
    ]
}

pub fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.workload_line())?;
        writeln!(f, "{}", self.setup_line())?;
        writeln!(f, "{}", self.load_line())?;
        writeln!(
            f,
            "throughput: {:.0} ops/s ({} ops), {:.0} requests/s",
            self.ops_per_sec, self.ops, self.requests_per_sec
        )?;
        if self.errors == 0 {
            writeln!(f, "errors: none")?;
        } else {
            writeln!(f, "errors: {} ({})", self.errors, self.error_lines().join("; "))?;
        }
        if let Some(line) = self.scan_line() {
            writeln!(f, "{line}")?;
        }
        writeln!(
            f,
            "{:<10} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9}",
            "latency ms", "count", "ops/s", "errors", "p50", "p95", "p99", "p99.9", "max"
        )?;
        for (name, rate, errors, s) in self.rows() {
            let [count, rate, errors, p50, p95, p99, p999, max] = cells(rate, errors, &s);
            writeln!(
                f,
                "{name:<10} {count:>9} {rate:>9} {errors:>7} {p50:>8} {p95:>8} {p99:>8} {p999:>8} {max:>9}"
            )?;
        }
        for (name, delta) in &self.metrics {
            write!(f, "metric {name}: +{delta}")?;
            if *delta > 0.0 && self.put.count > 0 {
                write!(f, " (one per {:.1} PUTs)", self.put.count as f64 / delta)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, Instant};

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command, Load};
    use crate::series::{SecondRecorder, Series};

    /// A report of a made-up run of `args` (after `run --node a:1`): ten reads and ten
    /// updates a second for three seconds, with a stall in the second, and a few errors.
    pub(crate) fn sample(args: &[&str]) -> Report {
        let mut rec = Recorder::default();
        let start = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut seconds = SecondRecorder::new(start, tx);
        for s in 0..3u64 {
            for i in 0..10u64 {
                let latency = Duration::from_millis(if s == 1 { 400 } else { 2 + i });
                let at = start + Duration::from_secs(s) + Duration::from_millis(i * 50);
                for op in [Op::Read, Op::Update] {
                    rec.ops[op.index()].record(latency);
                    seconds.record(op, at, latency, true);
                }
                rec.gets.record(latency);
                rec.puts.record(latency);
            }
        }
        rec.error(Op::Read, "timeout".into());
        rec.error(Op::Read, "timeout".into());
        rec.error(Op::Update, "timeout".into());
        rec.error(Op::Update, "quorum_failed".into());
        seconds.record(Op::Update, start, Duration::from_secs(5), false);
        drop(seconds);
        let mut series = Series::default();
        while let Ok(flush) = rx.try_recv() {
            series.add(flush);
        }
        let series = series.summary(&[Op::Read, Op::Update], Duration::from_secs(1), Duration::from_secs(3));
        report_of(args, &rec, series)
    }

    /// The report of a made-up run of `args` (after `run --node a:1`) that recorded
    /// `rec` over a window of two seconds, after loading.
    fn report_of(args: &[&str], rec: &Recorder, series: Vec<SecondSummary>) -> Report {
        let all: Vec<&str> = ["b", "run", "--node", "a:1"].into_iter().chain(args.iter().copied()).collect();
        let Command::Run(args) = Cli::parse_from(all).command else { panic!("not a run") };
        let load = LoadReport {
            mode: Load::Auto,
            loaded: true,
            reason: "100 of 100 sampled records did not read back".into(),
            records: 1000,
            seconds: 0.5,
            records_per_sec: 2000.0,
            errors: BTreeMap::new(),
        };
        Report::new(
            &args,
            Outcome {
                mode: "raw",
                recorder: rec,
                series,
                window: Duration::from_secs(2),
                load,
                inserted: 0,
                metrics: BTreeMap::new(),
            },
        )
    }

    #[test]
    fn report_counts_rates_over_the_window() {
        let report = sample(&["--workload", "a", "--duration", "2s"]);
        assert_eq!((report.ops, report.errors), (60, 4));
        assert_eq!(report.ops_per_sec, 30.0);
        assert_eq!(report.requests_per_sec, 30.0);
        assert_eq!(report.operations["read"].latency.count, 30);
        assert_eq!(report.operations["read"].ops_per_sec, 15.0);
        assert_eq!(report.operations["update"].errors, 2);
        assert_eq!(report.errors_by_kind["timeout"], 3);
        assert_eq!(report.error_lines(), ["quorum_failed 1 (update 1)", "timeout 3 (read 2, update 1)"]);
    }

    #[test]
    fn scans_report_their_keys_and_requests() {
        let mut rec = Recorder::default();
        for latency in [3, 4, 5, 6] {
            rec.ops[Op::Scan.index()].record(Duration::from_millis(latency));
            rec.lists.record(Duration::from_millis(latency));
        }
        rec.scanned = 100;
        rec.ops[Op::Insert.index()].record(Duration::from_millis(1));
        rec.puts.record(Duration::from_millis(1));
        let report = report_of(&["--workload", "e", "--max-scan-length", "50"], &rec, Vec::new());
        assert_eq!((report.ops, report.requests_per_sec), (5, 2.5), "a scan is one request");
        assert_eq!(report.operations["scan"].keys, Some(100));
        assert_eq!(report.operations["insert"].keys, None);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["max_scan_length"], 50);
        assert_eq!(json["operations"]["scan"]["keys"], 100);
        assert_eq!(json["list"]["count"], 4);
        assert!(json["operations"]["insert"].get("keys").is_none(), "keys are counted for scans only");
        let text = report.to_string();
        assert!(text.contains("(insert 5%, scan 95%), zipfian keys"), "{text}");
        assert!(text.contains("scans of 1 to 50 keys"), "{text}");
        assert!(text.contains("scans returned 100 keys, 25.0 per scan"), "{text}");
        let names: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("latency ms"))
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(names, ["insert", "scan", "all", "PUT", "LIST"], "{text}");
        let read_only = sample(&["--workload", "a"]);
        assert_eq!((read_only.max_scan_length, read_only.scan_line()), (None, None));
    }

    #[test]
    fn text_has_a_row_per_operation() {
        let report = sample(&["--workload", "a"]);
        let text = report.to_string();
        assert!(
            text.starts_with("workload a (read 50%, update 50%), zipfian keys over 100000 records"),
            "{text}"
        );
        assert!(text.contains("load: wrote 1000 records in 0.5 s (2000 records/s"), "{text}");
        assert!(
            text.contains("errors: 4 (quorum_failed 1 (update 1); timeout 3 (read 2, update 1))"),
            "{text}"
        );
        let rows: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("latency ms")).collect();
        assert!(rows[0].contains("p50") && rows[0].contains("p95") && rows[0].contains("p99.9"), "{text}");
        let names: Vec<&str> = rows[1..].iter().filter_map(|l| l.split_whitespace().next()).collect();
        assert_eq!(names, ["read", "update", "all", "GET", "PUT"], "{text}");
        assert!(rows[1].split_whitespace().nth(1) == Some("30"), "{}", rows[1]);
    }

    #[test]
    fn json_has_everything() {
        let report = sample(&["--mix", "read=1,update=1", "--value-size", "10..20", "--rate", "100"]);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["workload"], "custom");
        assert_eq!(json["target"], "quorumkv");
        assert_eq!(json["mix"]["read"], 0.5);
        assert_eq!(json["distribution"], "zipfian");
        assert_eq!(json["value_size"], serde_json::json!({"min": 10, "max": 20}));
        assert_eq!(json["latency"]["count"], 60);
        assert_eq!(json["operations"]["update"]["latency"]["count"], 30);
        assert!(json["operations"]["update"]["latency"]["p95_us"].as_u64().unwrap() > 0);
        assert_eq!(json["load"]["loaded"], true);
        let series = json["series"].as_array().unwrap();
        assert_eq!(series.len(), 3);
        assert_eq!(series[0]["warmup"], true);
        assert_eq!(series[1]["ops"]["read"]["count"], 10);
        assert!(series[1]["ops"]["read"]["p99_us"].as_u64().unwrap() >= 390_000);
        assert_eq!(series[0]["ops"]["update"]["errors"], 1);
    }
}
