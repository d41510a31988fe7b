//! Merkle anti-entropy, corruption repair and tombstone reaping against real processes.
//! Hinted handoff is off in these tests, so only anti-entropy can bring replicas together.

use std::time::Duration;

use quorumkv_tests::{Cluster, Http, NodeProcess, eventually, metric};

const FAST_AAE: &[&str] = &["--hinted-handoff", "false", "--aae-interval-ms", "1000"];

async fn local(http: &Http, node: &NodeProcess, bucket: &str, key: &str) -> quorumkv_tests::Reply {
    http.get(&node.kv(bucket, key, "local=true")).await
}

/// Every running node's Merkle roots, once they are all equal (and trees are ready).
async fn wait_converged(http: &Http, c: &Cluster, deadline: Duration) {
    eventually("every replica has equal Merkle roots", deadline, || async {
        let mut roots = Vec::new();
        for n in c.nodes.iter().filter(|n| n.is_running()) {
            let status = http.get(&n.url("/v1/status")).await.json();
            let ae = &status["workers"]["anti_entropy"];
            if ae["trees"] != "ready" {
                return None;
            }
            roots.push(ae["roots"].clone());
        }
        roots.windows(2).all(|w| w[0] == w[1]).then_some(())
    })
    .await;
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
async fn divergent_replicas_converge_to_equal_roots_and_equal_sibling_sets() {
    let mut c = Cluster::start(3, 3, FAST_AAE).await;
    let http = Http::new();
    // Each node in turn is stopped while writes at W=1 go to the others; some keys get
    // concurrent blind writes on different sides.
    for round in 0..3 {
        c.node(round).kill9();
        let up: Vec<usize> = (0..3).filter(|&i| i != round).collect();
        for i in 0..150 {
            let via = &c.nodes[up[i % 2]];
            let key = format!("k{}", i % 100);
            let r = http.put(&via.kv("dv", &key, "w=1"), &[], format!("r{round}-{i}")).await;
            assert_eq!(r.status, 204, "{}", r.text());
        }
        c.node(round).start().await;
        c.wait_members(3).await;
    }
    wait_converged(&http, &c, Duration::from_secs(90)).await;
    for i in 0..100 {
        let key = format!("k{i}");
        let first = local(&http, &c.nodes[0], "dv", &key).await;
        for n in 1..3 {
            let other = local(&http, &c.nodes[n], "dv", &key).await;
            assert_eq!(other.status, first.status, "{key}");
            assert_eq!(other.context(), first.context(), "{key}: same causal history on node-{}", n + 1);
            if first.status == 300 {
                let mut a: Vec<String> =
                    first.text().lines().filter(|l| l.starts_with('r')).map(String::from).collect();
                let mut b: Vec<String> =
                    other.text().lines().filter(|l| l.starts_with('r')).map(String::from).collect();
                a.sort();
                b.sort();
                assert_eq!(a, b, "{key}: same sibling set");
            } else {
                assert_eq!(other.text(), first.text(), "{key}");
            }
        }
    }
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
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        for i in (0..1000).step_by(37) {
            for n in 0..3 {
                let r = http.get(&c.nodes[n].kv("rp", &format!("k{i}"), "r=2")).await;
                assert_eq!(r.status, 404, "k{i} came back on node-{}: {}", n + 1, r.text());
            }
        }
        let mut left = 0;
        for n in &c.nodes {
            for i in (0..1000).step_by(7) {
                // A tombstone answers 404 with a context; a reaped key without one.
                if local(&http, n, "rp", &format!("k{i}")).await.context().is_some() {
                    left += 1;
                }
            }
        }
        if left == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{left} sampled tombstones not reaped yet");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut total = 0.0;
    for n in &c.nodes {
        total += metric(&http, n, "quorumkv_tombstones_reaped_total").await;
    }
    assert!(total >= 3000.0, "each replica reaped the 1000 tombstones: {total}");
    // And a new write after reaping starts fresh.
    let r = http.put(&c.nodes[0].kv("rp", "k1", "w=3"), &[], "new life").await;
    assert_eq!(r.status, 204);
    assert_eq!(http.get(&c.nodes[2].kv("rp", "k1", "r=3")).await.text(), "new life");
}

#[tokio::test]
async fn an_operator_can_trigger_an_exchange() {
    let c = Cluster::start(3, 3, &["--hinted-handoff", "false"]).await;
    let http = Http::new();
    let r = http
        .send(hyper::Method::POST, &c.nodes[0].url("/v1/admin/anti-entropy?partition=3"), &[], "")
        .await
        .expect("post");
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["queued"], serde_json::json!([3]));
    let r = http
        .send(hyper::Method::POST, &c.nodes[0].url("/v1/admin/anti-entropy?partition=999"), &[], "")
        .await
        .expect("post");
    assert_eq!(r.status, 400);
    eventually("partition 3 exchanged", Duration::from_secs(30), || async {
        let status = http.get(&c.nodes[0].url("/v1/status")).await.json();
        status["workers"]["anti_entropy"]["partitions"]["3"]["last_exchange_unix_ms"]
            .as_u64()
            .filter(|&t| t > 0)
    })
    .await;
}
