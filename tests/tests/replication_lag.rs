//! Replication lag and read staleness as `/v1/status`, `/metrics` and `quorumkv status`
//! report them: a write counts once, on the node that coordinated it, with the time from
//! its answer to the last primary's acknowledgement, or as not landed when a primary
//! never took its copy; a quorum read counts as stale when a primary answered with less
//! than the merge.
//!
//! Most of it runs on the in-process cluster (real nodes, an in-memory network whose
//! links a test slows or pauses); the last test runs node processes and the CLI.

use std::process::Command;
use std::time::Duration;

use quorumkv_storage::VersionVector;
use quorumkv_tests::in_process::{InProcess, values};
use quorumkv_tests::{Cluster, Http, NodeProcess, eventually, member_state};
use serde_json::Value;

fn none() -> VersionVector {
    VersionVector::new()
}

/// Nothing repairs a replica behind the test's back: no hints, anti-entropy only when
/// triggered (never, here). Read repair is what the test watches.
fn no_background_repair(c: &mut quorumkv_node::Config) {
    c.hinted_handoff = false;
    c.aae_interval_ms = 3_600_000;
}

/// `part` (`replication` or `reads`) of node `i`'s `/v1/status`.
async fn status(c: &InProcess, i: usize, part: &str) -> Value {
    c.node(i).status_json().await[part].clone()
}

/// `part.since_start.field` summed over every node: a write is counted on whichever node
/// coordinated it (one with stalled storage hands its writes to another).
async fn total(c: &InProcess, part: &str, field: &str) -> u64 {
    let mut sum = 0;
    for i in 0..c.len() {
        sum += status(c, i, part).await["since_start"][field].as_u64().unwrap_or_else(|| panic!("{field}"));
    }
    sum
}

/// The value of the one sample `series` (name and labels, as exposed) on node `i`.
async fn sample(c: &InProcess, i: usize, series: &str) -> f64 {
    let text = c.node(i).metrics_text().await;
    let line = text
        .lines()
        .find(|l| l.strip_prefix(series).is_some_and(|rest| rest.starts_with(' ')))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"));
    line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

/// `series` summed over every node.
async fn sample_sum(c: &InProcess, series: &str) -> f64 {
    let mut sum = 0.0;
    for i in 0..c.len() {
        sum += sample(c, i, series).await;
    }
    sum
}

async fn wait_settled(c: &InProcess, writes: u64) {
    eventually(&format!("the copies of {writes} writes settled"), Duration::from_secs(10), || async {
        (total(c, "replication", "writes").await == writes).then_some(())
    })
    .await;
}

const LAG_COUNT: &str = "quorumkv_replication_lag_seconds_count";
const WITHIN_10MS: &str = "quorumkv_replication_lag_seconds_bucket{le=\"0.01\"}";
const NOT_LANDED: &str = "quorumkv_writes_not_landed_total";

#[tokio::test]
async fn every_write_counts_once_where_it_was_coordinated_with_its_lag() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    for k in 0..30 {
        c.put(k % 3, &format!("k{k}"), "v", 1, true, &none()).await.expect("w=1");
    }
    wait_settled(&c, 30).await;
    assert_eq!(total(&c, "replication", "not_landed").await, 0, "every replica is up");
    assert_eq!(sample_sum(&c, LAG_COUNT).await, 30.0, "each write landed, once in the histogram");
    assert_eq!(sample_sum(&c, NOT_LANDED).await, 0.0);
    for i in 0..3 {
        let r = status(&c, i, "replication").await;
        assert_eq!(r["window_seconds"], 60, "{r}");
        assert_eq!(r["writes"], r["since_start"]["writes"], "the test runs within one window: {r}");
        if r["writes"] == 0 {
            assert!(r["lag_ms"].is_null() && r["within_10ms"].is_null(), "{r}");
            continue;
        }
        let share = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k}: {r}"));
        let shares = [share("within_10ms"), share("within_100ms"), share("within_1s")];
        assert!(shares.is_sorted() && shares[2] <= 1.0, "{r}");
        let lag = |k: &str| r["lag_ms"][k].as_f64().unwrap_or_else(|| panic!("{k}: {r}"));
        let lags = [0.0, lag("p50"), lag("p90"), lag("p99"), lag("max")];
        assert!(lags.is_sorted(), "{r}");
        // The status's share within 10 ms is the histogram's bucket.
        let within = sample(&c, i, WITHIN_10MS).await;
        let writes = r["writes"].as_f64().expect("writes");
        assert_eq!((shares[0] * writes).round(), within, "{r}");
    }
    c.stop_all().await;
}

#[tokio::test]
async fn a_replica_behind_a_slow_link_shows_as_lag_beyond_10_ms() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    // Every copy to node-3 arrives 50 ms late (and so do heartbeats, within the
    // detector's patience); node-1 and node-2 answer at once.
    for from in ["node-1", "node-2"] {
        c.network.delay(from, "node-3", Duration::from_millis(50));
    }
    for k in 0..10 {
        c.put(0, &format!("k{k}"), "v", 2, false, &none()).await.expect("w=2");
    }
    wait_settled(&c, 10).await;
    assert_eq!(total(&c, "replication", "not_landed").await, 0, "slow, not lost");
    assert_eq!(sample_sum(&c, LAG_COUNT).await, 10.0);
    // Node-3's ack comes some 50 ms after the answer: hardly any write is within 10 ms.
    let within = sample_sum(&c, WITHIN_10MS).await;
    assert!(within <= 5.0, "{within} of 10 writes within 10 ms despite a 50 ms link");
    let mut max_ms: f64 = 0.0;
    for i in 0..3 {
        max_ms = max_ms.max(status(&c, i, "replication").await["lag_ms"]["max"].as_f64().unwrap_or(0.0));
    }
    assert!(max_ms > 10.0, "the status shows the lag too: {max_ms} ms");
    c.stop_all().await;
}

#[tokio::test]
async fn writes_a_replica_misses_are_not_landed_and_reads_then_find_it_stale() {
    let mut c = InProcess::start(3, 3, no_background_repair).await;
    c.network.pause("node-3");
    c.wait_state(0, 2, false).await;
    c.wait_state(1, 2, false).await;
    let keys: Vec<String> = (0..8).map(|k| format!("k{k}")).collect();
    for k in &keys {
        c.put(0, k, "while node-3 was away", 2, false, &none()).await.expect("w=2 without node-3");
    }
    wait_settled(&c, 8).await;
    assert_eq!(total(&c, "replication", "not_landed").await, 8, "node-3 took none of the copies");
    assert_eq!(sample_sum(&c, NOT_LANDED).await, 8.0);
    assert_eq!(sample_sum(&c, LAG_COUNT).await, 0.0, "a write that did not land has no lag");
    let r = status(&c, 0, "replication").await;
    assert_eq!(r["not_landed"], r["writes"], "{r}");
    if r["writes"] != 0 {
        assert_eq!(r["within_1s"], 0.0, "{r}");
        assert!(r["lag_ms"].is_null(), "{r}");
    }

    c.network.resume("node-3");
    c.wait_state(0, 2, true).await;
    let reads = |want: (u64, u64)| {
        let c = &c;
        async move {
            let counted = quorumkv_tests::poll_until(Duration::from_secs(10), || async {
                let r = status(c, 0, "reads").await;
                let got = (r["quorum_reads"].as_u64()?, r["found_stale"].as_u64()?);
                (got == want).then_some(r)
            })
            .await;
            let last = status(c, 0, "reads").await;
            counted.unwrap_or_else(|| {
                panic!("node-1 did not count {want:?} (quorum reads, found stale): {last}")
            })
        }
    };
    // r=3: node-3's answer is always part of the merge. It missed every key, but an
    // anti-entropy exchange (which cannot be switched off) may have brought it some of
    // them since it is back: those reads find nothing stale.
    let mut missing = 0;
    for k in &keys {
        missing += u64::from(c.local(2, k).await.is_none());
        let got = c.get(0, k, 3).await.expect("r=3");
        assert_eq!(values(got.as_ref()), ["while node-3 was away"]);
    }
    assert!(missing > 0, "node-3 missed the writes; anti-entropy exchanges a partition at a time");
    let r = reads((8, missing)).await;
    assert_eq!(r["repair_ratio"], missing as f64 / 8.0, "{r}");
    assert_eq!(r["window_seconds"], 60, "{r}");
    for k in &keys {
        eventually("read repair brought node-3 up to date", Duration::from_secs(10), || async {
            c.local(2, k).await.is_some().then_some(())
        })
        .await;
    }
    for k in &keys {
        c.get(0, k, 3).await.expect("r=3");
    }
    let r = reads((16, missing)).await;
    let ratio = missing as f64 / 16.0;
    assert_eq!(r["repair_ratio"], ratio, "{r}");
    let since_start = serde_json::json!({"quorum_reads": 16, "found_stale": missing, "repair_ratio": ratio});
    assert_eq!(r["since_start"], since_start);
    // A local read is no quorum read.
    assert!(c.local(0, &keys[0]).await.is_some());
    assert_eq!(status(&c, 0, "reads").await["quorum_reads"], 16);
    assert_eq!(sample(&c, 0, "quorumkv_quorum_reads_total").await, 16.0);
    assert_eq!(sample(&c, 0, "quorumkv_stale_reads_total").await, missing as f64);
    c.stop_all().await;
}

/// `quorumkv status` against `node`, as a person reads it.
fn cli_status(node: &NodeProcess) -> String {
    let cli = quorumkv_tests::process::node_binary().with_file_name("quorumkv");
    assert!(cli.exists(), "{} not found: build it with `cargo build --workspace --bins`", cli.display());
    let out = Command::new(cli)
        .arg("status")
        .env("QUORUMKV_NODE", node.api.to_string())
        .output()
        .expect("run quorumkv status");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The line of `quorumkv status` that starts with `name`.
fn line<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with("  ")))
        .unwrap_or_else(|| panic!("no {name} line in:\n{status}"))
}

#[tokio::test]
async fn quorumkv_status_says_how_far_behind_the_replicas_are() {
    let mut c = Cluster::start(3, 3, &[]).await;
    let http = Http::new();
    let urls: Vec<String> = c.nodes.iter().map(|n| n.url("/v1/status")).collect();
    let replication = |i: usize| {
        let (http, url) = (http.clone(), urls[i].clone());
        async move { http.get(&url).await.json()["replication"].clone() }
    };
    let before = cli_status(&c.nodes[0]);
    assert!(line(&before, "replication").ends_with("last 60 s: no writes coordinated here"), "{before}");
    assert!(line(&before, "reads").ends_with("last 60 s: no quorum reads coordinated here"), "{before}");

    for k in 0..20 {
        let r = http.put(&c.nodes[0].kv("b", &format!("k{k}"), "w=1"), &[], "v").await;
        assert!(r.status.is_success(), "{r:?}");
    }
    eventually("node-1's writes settled", Duration::from_secs(10), || async {
        let mut writes = 0;
        for i in 0..3 {
            writes += replication(i).await["writes"].as_u64()?;
        }
        (writes == 20).then_some(())
    })
    .await;
    let writes = replication(0).await["writes"].as_u64().expect("writes");
    let status = cli_status(&c.nodes[0]);
    let row = line(&status, "replication");
    if writes > 0 {
        assert!(row.contains(&format!("last 60 s, {writes} writes: all copies within 10 ms ")), "{status}");
        assert!(row.contains("; lag p50 ") && row.ends_with("; 0 not landed"), "{status}");
    }
    let r = http.get(&c.nodes[0].kv("b", "k0", "r=3")).await;
    assert!(r.status.is_success(), "{r:?}");
    eventually("the read is counted", Duration::from_secs(10), || async {
        let status = cli_status(&c.nodes[0]);
        line(&status, "reads")
            .ends_with("last 60 s: 0% found a stale or missing replica (0 of 1)")
            .then_some(())
    })
    .await;

    // A replica that is gone takes no copies: node-1's writes are not landed.
    c.node(2).kill9();
    eventually("node-1 holds node-3 down", Duration::from_secs(20), || async {
        (member_state(&http, &c.nodes[0], "node-3").await.as_deref() == Some("down")).then_some(())
    })
    .await;
    for k in 0..10 {
        let r = http.put(&c.nodes[0].kv("b", &format!("gone{k}"), "w=1"), &[], "v").await;
        assert!(r.status.is_success(), "{r:?}");
    }
    let not_landed = eventually("the writes without node-3 settled", Duration::from_secs(10), || async {
        let (a, b) = (replication(0).await, replication(1).await);
        let sum = a["not_landed"].as_u64()? + b["not_landed"].as_u64()?;
        (sum == 10).then(|| a["not_landed"].as_u64())?
    })
    .await;
    let status = cli_status(&c.nodes[0]);
    assert!(line(&status, "replication").ends_with(&format!("; {not_landed} not landed")), "{status}");
}
