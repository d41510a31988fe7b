//! The `quorumkv-bench` binary: parse the command line, start a runtime, call the library.

use clap::Parser;
use quorumkv_bench::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        runtime.worker_threads(threads.max(1));
    }
    runtime.enable_all().build()?.block_on(quorumkv_bench::main(cli))
}
