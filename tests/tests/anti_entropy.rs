//! Merkle anti-entropy, corruption repair and tombstone reaping against real processes.
//! Hinted handoff is off in these tests, so only anti-entropy can bring replicas together.

use std::time::Duration;

use quorumkv_tests::{Cluster, Http, NodeProcess, eventually, metric};

const FAST_AAE: &[&str] = &["--hinted-handoff", "false", "--aae-interval-ms", "1000"];

async fn local(http: &Http, node: &NodeProcess, bucket: &str, key: &str) -> quorumkv_tests::Reply {
    http.get(&node.kv(bucket, key, "local=true")).await
}

#[tokio::test]
async fn a_node_that_lost_its_disk_gets_every_key_back_from_anti_entropy() {
    let mut c = Cluster::start(3, 3, FAST_AAE).await;
    let http = Http::new();
    for i in 0..500 {
        let r = http.put(&c.nodes[i % 3].kv("ae", &format!("k{i}"), "w=3"), &[], format!("v{i}")).await;
        assert_eq!(r.status, 204);
    }
    let before = http.get(&c.nodes[2].url("/v1/status")).await.json()["incarnation"].clone();
    c.node(2).kill9();
    std::fs::remove_dir_all(&c.nodes[2].data_dir).expect("wipe the data directory");
    c.node(2).start().await;
    c.wait_members(3).await;
    let after = http.get(&c.nodes[2].url("/v1/status")).await.json()["incarnation"].clone();
    assert_ne!(before, after, "a node that lost its data comes back with a new incarnation");

    let node = &c.nodes[2];
    eventually("anti-entropy restores all 500 keys on node-3", Duration::from_secs(90), || async {
        for i in 0..500 {
            let r = local(&http, node, "ae", &format!("k{i}")).await;
            if r.status != 200 || r.text() != format!("v{i}") {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert!(
        metric(&http, &c.nodes[2], "quorumkv_aae_keys_repaired_total").await > 0.0
            || metric(&http, &c.nodes[0], "quorumkv_aae_keys_repaired_total").await > 0.0
    );
    // New writes through the reborn node never reuse a dot: an update with the old
    // context supersedes, a blind one is a sibling.
    let r = http.get(&c.nodes[0].kv("ae", "k1", "r=3")).await;
    let ctx = r.context().expect("context").to_string();
    let r = http.put(&c.nodes[2].kv("ae", "k1", "w=3"), &[("x-causal-context", &ctx)], "reborn").await;
    assert_eq!(r.status, 204);
    assert_eq!(http.get(&c.nodes[1].kv("ae", "k1", "r=3")).await.text(), "reborn");
}

#[tokio::test]
async fn a_flipped_byte_is_reported_never_served_and_repaired() {
    let mut c = Cluster::start(3, 3, FAST_AAE).await;
    let http = Http::new();
    let r = http.put(&c.nodes[0].kv("cr", "victim", "w=3"), &[], "precious").await;
    assert_eq!(r.status, 204);
    c.node(1).kill9();
    {
        let store =
            quorumkv_storage::Store::open(&c.nodes[1].data_dir).expect("open the stopped node's store");
        let partition = quorumkv_ring::key_partition(b"cr", b"victim", 64);
        let key = quorumkv_storage::ObjectKey { partition, bucket: b"cr", key: b"victim" };
        let mut raw = store.raw_get(key).expect("raw").expect("stored");
        let at = raw.len() - 3;
        raw[at] ^= 0x5a;
        store.raw_put(key, &raw).expect("flip");
    }
    c.node(1).start().await;
    // Never served: a corrupt replica reads as missing, or is already repaired.
    let r = local(&http, &c.nodes[1], "cr", "victim").await;
    assert!(r.status == 404 || r.text() == "precious", "corrupt bytes served: {:?}", r.body);
    eventually("corruption repaired on node-2", Duration::from_secs(60), || async {
        let r = local(&http, &c.nodes[1], "cr", "victim").await;
        (r.status == 200 && r.text() == "precious").then_some(())
    })
    .await;
    assert!(metric(&http, &c.nodes[1], "quorumkv_corrupt_records").await >= 1.0, "corruption is counted");
    let log = std::fs::read_to_string(&c.nodes[1].log).expect("log");
    assert!(log.contains("corrupt record"), "corruption is logged");
}

#[tokio::test]
async fn deleted_keys_stay_deleted_and_tombstones_are_reaped_everywhere() {
    let grace = ["--tombstone-grace-ms", "3000"];
    let args: Vec<&str> = FAST_AAE.iter().chain(grace.iter()).copied().collect();
    let mut c = Cluster::start(3, 3, &args).await;
    let http = Http::new();
    for i in 0..1000 {
        let r = http.put(&c.nodes[i % 3].kv("rp", &format!("k{i}"), "w=3"), &[], format!("v{i}")).await;
        assert_eq!(r.status, 204);
    }
    // node-3 misses every delete.
    c.node(2).kill9();
    for i in 0..1000 {
        let key = format!("k{i}");
        let r = http.get(&c.nodes[i % 2].kv("rp", &key, "r=2")).await;
        let ctx = r.context().expect("context").to_string();
        let r = http.delete(&c.nodes[i % 2].kv("rp", &key, "w=2"), &[("x-causal-context", &ctx)]).await;
        assert_eq!(r.status, 204);
    }
    c.node(2).start().await;
    c.wait_members(3).await;
    // Until everything is reaped, no deleted key reappears through any node.
    eventually("every sampled tombstone is reaped", Duration::from_secs(120), || async {
        for i in (0..1000).step_by(37) {
            for n in 0..3 {
                let r = http.get(&c.nodes[n].kv("rp", &format!("k{i}"), "r=2")).await;
                assert_eq!(r.status, 404, "k{i} came back on node-{}: {}", n + 1, r.text());
            }
        }
        for n in &c.nodes {
            for i in (0..1000).step_by(7) {
                // A tombstone answers 404 with a context; a reaped key without one.
                if local(&http, n, "rp", &format!("k{i}")).await.context().is_some() {
                    return None;
                }
            }
        }
        // Each replica reaps each of the 1000 tombstones once.
        let mut total = 0.0;
        for n in &c.nodes {
            total += metric(&http, n, "quorumkv_tombstones_reaped_total").await;
        }
        (total >= 3000.0).then_some(())
    })
    .await;
    // And a new write after reaping starts fresh.
    let r = http.put(&c.nodes[0].kv("rp", "k1", "w=3"), &[], "new life").await;
    assert_eq!(r.status, 204);
    assert_eq!(http.get(&c.nodes[2].kv("rp", "k1", "r=3")).await.text(), "new life");
}

#[tokio::test]
async fn an_operator_can_trigger_an_exchange() {
    // The regular sweep visits one partition a minute here, and after each exchange
    // waits that long: once the start-up exchanges are over, only the trigger can make
    // partition 3 exchange again within the test's deadline.
    let c = Cluster::start(3, 3, &["--hinted-handoff", "false", "--aae-interval-ms", "3600000"]).await;
    let http = Http::new();
    let node = &c.nodes[0];
    let exchanged = || async {
        let status = http.get(&node.url("/v1/status")).await.json();
        let ae = &status["workers"]["anti_entropy"];
        let partitions = ae["partitions"].as_object().cloned().unwrap_or_default();
        let times: std::collections::BTreeMap<String, u64> = partitions
            .iter()
            .map(|(p, v)| (p.clone(), v["last_exchange_unix_ms"].as_u64().unwrap_or(0)))
            .collect();
        (ae["queued"].as_u64() == Some(0)).then_some(times)
    };
    // A new node repairs every partition it holds once at start.
    let before = eventually("the start-up exchanges are over", Duration::from_secs(30), || async {
        exchanged().await.filter(|t| t.len() == 64)
    })
    .await;
    let r = http
        .send(hyper::Method::POST, &node.url("/v1/admin/anti-entropy?partition=3"), &[], "")
        .await
        .expect("post");
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["queued"], serde_json::json!([3]));
    let r = http
        .send(hyper::Method::POST, &node.url("/v1/admin/anti-entropy?partition=999"), &[], "")
        .await
        .expect("post");
    assert_eq!(r.status, 400);
    let after = eventually("partition 3 exchanged again", Duration::from_secs(30), || async {
        exchanged().await.filter(|t| t["3"] > before["3"])
    })
    .await;
    let others_moved: Vec<&String> =
        after.iter().filter(|(p, t)| *p != "3" && before.get(*p) != Some(*t)).map(|(p, _)| p).collect();
    assert!(others_moved.is_empty(), "only the triggered partition was exchanged: {others_moved:?}");
}
