//! quorumkv's load generator: drives the HTTP API with YCSB's core workloads or a mix of
//! your own, and reports throughput, errors by kind and latency percentiles per operation,
//! second by second, as text, JSON or a self-contained HTML page.
//!
//! `quorumkv-bench run` sends either through `quorumkv-client` (what applications use) or,
//! with `--raw`, over bare hyper connections that cost the load generator little, so the
//! figures measure the server; `--target etcd` drives an etcd cluster the same way, to
//! compare with. Closed loop finds the maximum rate; `--rate` holds a fixed rate and
//! measures latency from each operation's intended start. `baseline-server` is the
//! minimal hyper server GET throughput is compared with, and `watch` follows metrics such
//! as pending hints until they drain. `docs/benchmarks.md` records what these commands
//! measured, each figure with its command.
//!
//! # Layout
//!
//! - [`cli`] — the command line ([`Cli`]) and its parsers.
//! - [`run`] — a run: warm-up, closed or open loop, recording per client.
//! - [`load`] — the load phase that writes the records first.
//! - [`workload`] — which operation, key and value come next ([`workload::Mix`],
//!   [`workload::Picker`]).
//! - [`distribution`] — uniform, zipfian and latest keys, as YCSB draws them.
//! - [`session`] — where requests go: [`session::Target`] (client, raw or etcd) and the
//!   per-client [`session::Session`].
//! - [`raw`] — `--raw`: lean hyper HTTP/1.1 connections, with ring routing.
//! - [`etcd`] — `--target etcd`: etcd's v3 JSON gateway over the same connections.
//! - [`latency`] — HdrHistogram latencies and their [`latency::Summary`].
//! - [`series`] — the run second by second, recorded per client and merged.
//! - [`progress`] — the progress bar or lines while a run runs.
//! - [`report`] — the [`report::Report`] of a run, as text or JSON.
//! - [`html`] and [`chart`] — the report as an HTML page with SVG charts.
//! - [`metrics`] — reading and summing the nodes' Prometheus `/metrics`.
//! - [`watch`] — `watch`: poll metrics until a backlog drains.
//! - [`baseline`] — `baseline-server`: a fixed body for every request.

pub mod baseline;
pub mod chart;
pub mod cli;
pub mod distribution;
pub mod etcd;
pub mod html;
pub mod latency;
pub mod load;
pub mod metrics;
pub mod progress;
pub mod raw;
pub mod report;
pub mod run;
pub mod series;
pub mod session;
pub mod watch;
pub mod workload;

pub use cli::Cli;

/// Does what the command line asks and prints the outcome on stdout (and the HTML report
/// in its file).
///
/// # Errors
/// When the flags do not go together, the target cannot be reached, a listener cannot be
/// bound or the HTML file cannot be written; failed requests during a run are counted in
/// its report instead.
pub async fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Run(args) => {
            let report = run::run(&args).await?;
            if let Some(path) = &args.html {
                std::fs::write(path, html::render(&report))
                    .map_err(|e| anyhow::anyhow!("writing the HTML report to {}: {e}", path.display()))?;
                eprintln!("HTML report: {}", path.display());
            }
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{report}");
            }
            Ok(())
        }
        cli::Command::BaselineServer(args) => baseline::serve(&args).await,
        cli::Command::Watch(args) => watch::watch(&args).await,
    }
}
