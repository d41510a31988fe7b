//! quorumkv's load generator: drives the HTTP API with a chosen mix of reads and writes
//! and reports throughput, errors by kind and latency percentiles.
//!
//! `quorumkv-bench run` sends either through `quorumkv-client` (what applications use) or,
//! with `--raw`, over bare hyper connections that cost the load generator little, so the
//! figures measure the server. Closed loop finds the maximum rate; `--rate` holds a fixed
//! rate and measures latency from each operation's intended start. `baseline-server` is
//! the minimal hyper server GET throughput is compared with, and `watch` follows metrics
//! such as pending hints until they drain. `docs/benchmarks.md` records what these
//! commands measured, each figure with its command.
//!
//! # Layout
//!
//! - [`cli`] — the command line ([`Cli`]) and its parsers.
//! - [`run`] — a run: preload, warm-up, closed or open loop, recording per client.
//! - [`session`] — where requests go: [`session::Target`] (client or raw) and the
//!   per-client [`session::Session`].
//! - [`raw`] — `--raw`: lean hyper HTTP/1.1 connections, with ring routing.
//! - [`workload`] — which operation and key come next.
//! - [`latency`] — HdrHistogram latencies and their [`latency::Summary`].
//! - [`report`] — the [`report::Report`] of a run, as text or JSON.
//! - [`metrics`] — reading and summing the nodes' Prometheus `/metrics`.
//! - [`watch`] — `watch`: poll metrics until a backlog drains.
//! - [`baseline`] — `baseline-server`: a fixed body for every request.

pub mod baseline;
pub mod cli;
pub mod latency;
pub mod metrics;
pub mod raw;
pub mod report;
pub mod run;
pub mod session;
pub mod watch;
pub mod workload;

pub use cli::Cli;

/// Does what the command line asks and prints the outcome on stdout.
///
/// # Errors
/// When the target cannot be reached or a listener cannot be bound; failed requests during
/// a run are counted in its report instead.
pub async fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Run(args) => {
            let report = run::run(&args).await?;
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
