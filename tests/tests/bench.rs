//! `quorumkv-bench` against real node processes: a short YCSB workload A run loads its
//! records, reads and updates without errors, and writes a self-contained HTML report; a
//! short workload E run scans from the loaded records without errors.

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

/// Runs `quorumkv-bench run --json` with `args` against every node of `cluster`, for one
/// second of 8 clients over 1000 records; returns its JSON report and its stderr.
async fn run_bench(cluster: &Cluster, args: &[&str]) -> (serde_json::Value, String) {
    let mut cmd = Command::new(bench_binary());
    cmd.args(["run", "--records", "1000", "--duration", "1s", "--warmup", "0s"])
        .args(["--concurrency", "8", "--json"])
        .args(args);
    for node in &cluster.nodes {
        cmd.arg("--node").arg(node.api.to_string());
    }
    let out =
        tokio::task::spawn_blocking(move || cmd.output()).await.expect("join").expect("run quorumkv-bench");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "quorumkv-bench failed: {stderr}");
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (report, stderr)
}

#[tokio::test]
async fn workload_a_reads_and_updates_and_reports_in_html() {
    let cluster = Cluster::start(3, 3, &[]).await;
    let html = cluster.dir().join("r.html");
    let html_arg = html.to_str().expect("a UTF-8 temp path");
    let (report, stderr) = run_bench(&cluster, &["--workload", "a", "--html", html_arg]).await;

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

#[tokio::test]
async fn workload_e_scans_from_loaded_records() {
    let cluster = Cluster::start(3, 3, &[]).await;
    let (report, stderr) = run_bench(&cluster, &["--workload", "e", "--max-scan-length", "20"]).await;

    // Scans read records, so `--load auto` loads them on a fresh cluster.
    assert_eq!(report["load"]["loaded"], true, "{stderr}");
    assert_eq!(report["errors"], 0, "errors: {}", report["errors_by_kind"]);
    assert_eq!(report["max_scan_length"], 20);
    let scan = &report["operations"]["scan"];
    let scans = scan["latency"]["count"].as_u64().expect("scans");
    assert!(scans > 0, "{report}");
    assert_eq!(report["list"]["count"], scans, "a scan is one listing request");
    assert_eq!(report["mix"], serde_json::json!({"insert": 0.05, "scan": 0.95}));
    // Every scan starts at a loaded record, so it returns at least that one, and at most
    // the 20 it asked for.
    let keys = scan["keys"].as_u64().expect("keys");
    assert!((scans..=20 * scans).contains(&keys), "{scans} scans returned {keys} keys");
}
