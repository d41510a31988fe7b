//! `quorumkv-bench` against real node processes: a short YCSB workload A run loads its
//! records, reads and updates without errors, and writes a self-contained HTML report.

use std::path::PathBuf;
use std::process::Command;

use quorumkv_tests::Cluster;

/// Where the bench binary is: `$QUORUMKV_BENCH_BIN`, else beside the node binary
/// (`cargo build --workspace --bins` puts both there).
fn bench_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("QUORUMKV_BENCH_BIN") {
        return PathBuf::from(path);
    }
    let bin = quorumkv_tests::process::node_binary().with_file_name("quorumkv-bench");
    assert!(bin.exists(), "{} not found: build it with `cargo build --workspace --bins`", bin.display());
    bin
}

#[tokio::test]
async fn workload_a_reads_and_updates_and_reports_in_html() {
    let cluster = Cluster::start(3, 3, &[]).await;
    let html = cluster.dir().join("r.html");
    let mut cmd = Command::new(bench_binary());
    cmd.args(["run", "--workload", "a", "--records", "1000", "--duration", "1s", "--warmup", "0s"])
        .args(["--concurrency", "8", "--json", "--html"])
        .arg(&html);
    for node in &cluster.nodes {
        cmd.arg("--node").arg(node.api.to_string());
    }
    let out =
        tokio::task::spawn_blocking(move || cmd.output()).await.expect("join").expect("run quorumkv-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "quorumkv-bench failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));

    // A fresh cluster: the records are loaded first, so no read is a 404.
    assert_eq!(report["load"]["loaded"], true, "{stderr}");
    assert_eq!(report["load"]["records"], 1000);
    assert!(report["ops"].as_u64().expect("ops") > 0, "{report}");
    assert_eq!(report["errors"], 0, "errors: {}", report["errors_by_kind"]);
    let reads = report["operations"]["read"]["latency"]["count"].as_u64().expect("reads");
    let updates = report["operations"]["update"]["latency"]["count"].as_u64().expect("updates");
    assert!(reads > 0 && updates > 0, "reads {reads}, updates {updates}");
    assert!(!report["series"].as_array().expect("series").is_empty());

    let page = std::fs::read_to_string(&html).expect("the HTML report was written");
    assert!(page.contains("<svg"), "no chart in the report");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the report refers to something outside it"
    );
}
