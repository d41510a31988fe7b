//! What a run prints: as text for people, as one JSON object for scripts.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::cli::{Routing, RunArgs, Workload};
use crate::latency::Summary;
use crate::run::Recorder;

/// The outcome of one run, with the settings that produced it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The request mix.
    pub workload: Workload,
    /// `client` (quorumkv-client) or `raw` (bare hyper).
    pub mode: &'static str,
    /// How requests were spread over nodes.
    pub routing: Routing,
    /// Concurrent clients.
    pub concurrency: u64,
    /// Open-loop target rate, if any.
    pub target_rate: Option<f64>,
    /// Length of the measured window in seconds (after the warm-up).
    pub duration_s: f64,
    /// Bytes per value.
    pub value_size: usize,
    /// Distinct keys.
    pub keys: u64,
    /// `r`, `w`, `dw` as sent (`None`: the node's default).
    pub r: Option<String>,
    /// See `r`.
    pub w: Option<String>,
    /// See `r`.
    pub dw: Option<usize>,
    /// Successful operations in the window (an update is one operation of two requests).
    pub ops: u64,
    /// `ops` per second.
    pub ops_per_sec: f64,
    /// Successful HTTP requests per second (GETs and PUTs together).
    pub requests_per_sec: f64,
    /// Failed operations in the window.
    pub errors: u64,
    /// Failed operations by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Latency of successful operations; in open loop from their intended start.
    pub latency: Summary,
    /// Latency of successful GET requests alone.
    pub get: Summary,
    /// Latency of successful PUT requests alone.
    pub put: Summary,
    /// Change of each `--metric` over the window, summed over the nodes.
    pub metrics: BTreeMap<String, f64>,
}

impl Report {
    /// Assembles the report of a run of `args` from what its clients recorded.
    pub fn new(args: &RunArgs, mode: &'static str, rec: &Recorder, metrics: BTreeMap<String, f64>) -> Report {
        let secs = args.duration.as_secs_f64().max(f64::MIN_POSITIVE);
        let ops = rec.ops.count();
        Report {
            workload: args.workload,
            mode,
            routing: args.routing,
            concurrency: args.concurrency,
            target_rate: args.rate,
            duration_s: args.duration.as_secs_f64(),
            value_size: args.value_size,
            keys: args.keys,
            r: args.r.map(|q| q.to_string()),
            w: args.w.map(|q| q.to_string()),
            dw: args.dw,
            ops,
            ops_per_sec: ops as f64 / secs,
            requests_per_sec: (rec.gets.count() + rec.puts.count()) as f64 / secs,
            errors: rec.errors.values().sum(),
            errors_by_kind: rec.errors.clone(),
            latency: rec.ops.summary(),
            get: rec.gets.summary(),
            put: rec.puts.summary(),
            metrics,
        }
    }
}

fn quorum(q: &Option<String>) -> &str {
    q.as_deref().unwrap_or("default")
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn latency_row(f: &mut fmt::Formatter<'_>, name: &str, s: &Summary) -> fmt::Result {
    writeln!(
        f,
        "  {name:<8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        s.count,
        format!("{:.2}", s.mean_us / 1000.0),
        ms(s.p50_us),
        ms(s.p90_us),
        ms(s.p99_us),
        ms(s.p999_us),
        ms(s.max_us)
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let workload = serde_json::to_value(self.workload).unwrap_or_default();
        let routing = serde_json::to_value(self.routing).unwrap_or_default();
        writeln!(
            f,
            "workload {} via {} ({} routing), {} clients, {:.1} s measured, {}-byte values, {} keys, \
             r={} w={} dw={}",
            workload.as_str().unwrap_or("?"),
            self.mode,
            routing.as_str().unwrap_or("?"),
            self.concurrency,
            self.duration_s,
            self.value_size,
            self.keys,
            quorum(&self.r),
            quorum(&self.w),
            self.dw.map_or_else(|| "default".to_string(), |d| d.to_string()),
        )?;
        if let Some(rate) = self.target_rate {
            writeln!(f, "open loop at {rate:.0} ops/s (latency from each op's intended start)")?;
        }
        writeln!(
            f,
            "throughput: {:.0} ops/s ({} ops), {:.0} requests/s",
            self.ops_per_sec, self.ops, self.requests_per_sec
        )?;
        if self.errors == 0 {
            writeln!(f, "errors: none")?;
        } else {
            let kinds: Vec<String> = self.errors_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
            writeln!(f, "errors: {} ({})", self.errors, kinds.join(", "))?;
        }
        writeln!(
            f,
            "latency ms {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
            "count", "mean", "p50", "p90", "p99", "p99.9", "max"
        )?;
        latency_row(f, "op", &self.latency)?;
        if self.workload != Workload::Put && self.get.count > 0 {
            latency_row(f, "get", &self.get)?;
        }
        if self.workload != Workload::Get && self.put.count > 0 {
            latency_row(f, "put", &self.put)?;
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
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn report_counts_rates_over_the_window() {
        let cli = Cli::parse_from(["b", "run", "--node", "a:1", "--duration", "2s", "--workload", "update"]);
        let Command::Run(args) = cli.command else { panic!("not a run") };
        let mut rec = Recorder::default();
        for _ in 0..10 {
            rec.ops.record(Duration::from_millis(2));
            rec.gets.record(Duration::from_millis(1));
            rec.puts.record(Duration::from_millis(1));
        }
        rec.errors.insert("timeout".into(), 3);
        let report = Report::new(&args, "raw", &rec, BTreeMap::new());
        assert_eq!((report.ops, report.errors), (10, 3));
        assert_eq!(report.ops_per_sec, 5.0);
        assert_eq!(report.requests_per_sec, 10.0);
        let text = report.to_string();
        assert!(text.contains("timeout 3"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["workload"], "update");
        assert_eq!(json["latency"]["count"], 10);
    }
}
